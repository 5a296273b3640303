"""The tables of docs/bandits.md: Sutton & Barto's testbed figures, and a temperature sweep.

Run:  python benchmarks/bandit_tables.py       (about a minute on 2 cores)

Writes two results files, which docs/bandits.md quotes between include
markers (``python benchmarks/sync_docs.py`` refreshes the copies):

- ``benchmarks/results/bandits_sutton_barto.md``: figures 2.2 and 2.5 of
  Sutton & Barto (2nd edition, 2018), the values read off the book's figures
  beside ours (2000 runs x 1000 steps, seed 0, means over the last 100 steps
  with one standard error across runs);
- ``benchmarks/results/bandits_sweep.md``: softmax temperatures against
  epsilon-greedy, greedy, UCB and the gradient bandit on the standard testbed,
  all with common random numbers, and the paired difference between the
  best constant temperature and the best epsilon-greedy.

Everything is seeded: a rerun on any machine gives the same numbers (the
bandit code draws all randomness from ``numpy.random.Generator``).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

from softmax.bandits import (
    UCB,
    EpsilonGreedy,
    ExponentialDecay,
    GradientBandit,
    Greedy,
    LinearDecay,
    SoftmaxPolicy,
    compare_policies,
)

RESULTS = Path(__file__).resolve().parent / "results"
N_RUNS, N_STEPS, SEED, LAST = 2000, 1000, 0, 100

# (figure, policy label in the table, published reward or None, published % optimal)
# read off the figures of the book's 2nd edition: a few hundredths (and a few
# percentage points) of reading uncertainty.
FIGURE_2_2 = [
    ("2.2", "greedy", Greedy(), "about 1.0, 35%"),
    ("2.2", "epsilon = 0.01", EpsilonGreedy(0.01), "about 1.3, 61%"),
    ("2.2", "epsilon = 0.1", EpsilonGreedy(0.1), "about 1.39, 80%"),
]
FIGURE_2_5 = [
    ("2.5", "gradient, alpha = 0.1, baseline", GradientBandit(0.1), "85%"),
    ("2.5", "gradient, alpha = 0.4, baseline", GradientBandit(0.4), "72%"),
    ("2.5", "gradient, alpha = 0.1, no baseline", GradientBandit(0.1, baseline=False), "49%"),
    ("2.5", "gradient, alpha = 0.4, no baseline", GradientBandit(0.4, baseline=False), "28%"),
]
TEMPERATURES = [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0]


def _sweep_policies() -> list[tuple[str, object]]:
    policies: list[tuple[str, object]] = [
        (f"softmax tau = {t:g}", SoftmaxPolicy(temperature=t)) for t in TEMPERATURES
    ]
    policies += [
        ("softmax tau = max(0.1, 0.99^t)", SoftmaxPolicy(ExponentialDecay(1.0, 0.99, 0.1))),
        ("softmax tau = max(0.05, 0.995^t)", SoftmaxPolicy(ExponentialDecay(1.0, 0.995, 0.05))),
        (
            "softmax tau linear 0.5 -> 0.05 over 500 steps",
            SoftmaxPolicy(LinearDecay(0.5, 0.05, 500)),
        ),
        ("epsilon-greedy, epsilon = 0.01", EpsilonGreedy(0.01)),
        ("epsilon-greedy, epsilon = 0.1", EpsilonGreedy(0.1)),
        ("greedy", Greedy()),
        ("UCB, c = 2", UCB(2.0)),
        ("gradient bandit, alpha = 0.1", GradientBandit(0.1)),
    ]
    return policies


def _all_steps(result) -> tuple[float, float]:
    """Mean reward over every step, and its standard error across runs."""
    per_run = result.rewards.mean(axis=0, dtype=np.float64)
    return float(per_run.mean()), float(per_run.std(ddof=1) / np.sqrt(per_run.size))


def _header(command: str) -> list[str]:
    return [
        f"Command: `{command}`; {N_RUNS} runs x {N_STEPS} steps, 10 arms, seed {SEED}; "
        f"numpy {np.__version__}, python {platform.python_version()}. Means over the last "
        f"{LAST} steps unless a column says otherwise, +- one standard error across runs.",
        "",
    ]


def sutton_barto_table() -> str:
    lines = _header("python benchmarks/bandit_tables.py")
    lines += [
        "| figure | policy | published: reward, % optimal | softmax.bandits: reward | % optimal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rows, true_mean in ((FIGURE_2_2, 0.0), (FIGURE_2_5, 4.0)):
        results = compare_policies(
            {label: policy for _, label, policy, _ in rows},
            n_runs=N_RUNS,
            n_steps=N_STEPS,
            true_mean=true_mean,
            random_state=SEED,
        )
        for figure, label, _, published in rows:
            s = results[label].summary(last=LAST)
            lines.append(
                f"| {figure} | {label} | {published} | {s['average_reward']:.3f} +- "
                f"{s['average_reward_se']:.3f} | {100 * s['optimal_action']:.1f} +- "
                f"{100 * s['optimal_action_se']:.1f} |"
            )
    lines += ["", "Figure 2.5's testbed has arm means ~ N(4, 1) (`--true-mean 4`)."]
    return "\n".join(lines) + "\n"


def sweep_table() -> str:
    policies = _sweep_policies()
    results = compare_policies(dict(policies), n_runs=N_RUNS, n_steps=N_STEPS, random_state=SEED)
    lines = _header("python benchmarks/bandit_tables.py")
    lines += [
        "| policy | reward, all steps | reward, last 100 | % optimal, last 100 | total regret |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, _ in policies:
        result = results[label]
        s = result.summary(last=LAST)
        mean, se = _all_steps(result)
        lines.append(
            f"| {label} | {mean:.3f} +- {se:.3f} | {s['average_reward']:.3f} +- "
            f"{s['average_reward_se']:.3f} | {100 * s['optimal_action']:.1f} +- "
            f"{100 * s['optimal_action_se']:.1f} | {s['total_regret']:.1f} |"
        )
    best, eps = results["softmax tau = 0.25"], results["epsilon-greedy, epsilon = 0.1"]
    # Common random numbers: the paired difference per run is far less noisy.
    diff = (best.rewards - eps.rewards).mean(axis=0, dtype=np.float64)
    regret_best, regret_eps = best.regret.sum(), eps.regret.sum()
    lines += [
        "",
        f"softmax tau = 0.25 against epsilon-greedy 0.1 over steps 1-{N_STEPS}: paired "
        f"difference of the reward per run {diff.mean():.3f} +- "
        f"{diff.std(ddof=1) / np.sqrt(diff.size):.3f}; total regret {regret_best:.1f} "
        f"against {regret_eps:.1f} ({100 * (1 - regret_best / regret_eps):.0f}% lower).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    for name, render in (
        ("bandits_sutton_barto.md", sutton_barto_table),
        ("bandits_sweep.md", sweep_table),
    ):
        text = render()
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
