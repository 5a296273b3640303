"""``softmax bandit``: compare action-selection policies on the 10-armed testbed.

Each ``--policy`` starts a policy; the options after it (``--temperature``,
``--epsilon``, ``--c``, ``--alpha``, ``--initial-value``, ``--no-baseline``)
set its parameters. A comma list (``--temperature 0.05,0.1,0.2``) expands
into one policy per value, which makes a sweep one command::

    softmax bandit --policy softmax --temperature 0.05,0.1,0.2 \\
                   --policy epsilon-greedy --epsilon 0.1 --plot curves.png

All policies face the same problems (common random numbers). Only the
standard library is imported until :func:`run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from softmax.cli._args import Command

__all__ = ["COMMAND", "add_arguments", "run"]

# CLI name -> (class name in softmax.bandits, {option dest: constructor argument})
_POLICIES: dict[str, tuple[str, dict[str, str]]] = {
    "softmax": (
        "SoftmaxPolicy",
        {"temperature": "temperature", "alpha": "step_size", "initial_value": "initial_value"},
    ),
    "epsilon-greedy": (
        "EpsilonGreedy",
        {"epsilon": "epsilon", "alpha": "step_size", "initial_value": "initial_value"},
    ),
    "greedy": ("Greedy", {"alpha": "step_size", "initial_value": "initial_value"}),
    "ucb": ("UCB", {"c": "c", "alpha": "step_size", "initial_value": "initial_value"}),
    "gradient": ("GradientBandit", {"alpha": "alpha", "baseline": "baseline"}),
}
_ALIASES = {"boltzmann": "softmax", "egreedy": "epsilon-greedy", "eps-greedy": "epsilon-greedy"}
# Used when no --policy is given: the classic comparison.
_DEFAULT_POLICIES = (
    ("greedy", {}),
    ("epsilon-greedy", {"epsilon": "0.1"}),
    ("softmax", {"temperature": "0.2"}),
)


class _PolicyAction(argparse.Action):
    """``--policy NAME``: start a new policy; later options apply to it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        name = _ALIASES.get(str(values), str(values))
        if name not in _POLICIES:
            parser.error(f"unknown policy {values!r}; choose from {', '.join(_POLICIES)}")
        specs = list(getattr(namespace, "policies", None) or [])
        specs.append((name, {}))
        namespace.policies = specs


class _ParamAction(argparse.Action):
    """A policy parameter: stored (as text) on the most recent ``--policy``."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        specs = getattr(namespace, "policies", None)
        if not specs:
            parser.error(f"{option_string} must come after the --policy it belongs to")
        name, params = specs[-1]
        if self.dest not in _POLICIES[name][1]:
            usable = ", ".join("--" + d.replace("_", "-") for d in _POLICIES[name][1]) or "none"
            parser.error(
                f"{option_string} does not apply to --policy {name} (its options: {usable})"
            )
        params[self.dest] = values if self.nargs != 0 else "false"


COMMAND = Command(
    description="Run action-selection policies on Sutton & Barto's k-armed testbed "
    "(arm means ~ N(true-mean, 1), rewards ~ N(arm mean, 1)) and print a comparison "
    "table. Each --policy starts a policy; the options after it set its parameters; "
    "comma lists (--temperature 0.05,0.1,0.2) expand into one policy per value.",
    epilog="Example: softmax bandit --policy softmax --temperature 0.2 "
    "--policy epsilon-greedy --epsilon 0.1 --plot out.png",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The policies, the testbed and the output options of ``softmax bandit``."""
    g = p.add_argument_group("policies (repeatable; options apply to the preceding --policy)")
    g.add_argument(
        "--policy",
        action=_PolicyAction,
        metavar="NAME",
        help=f"one of {', '.join(_POLICIES)} (default: greedy, epsilon-greedy 0.1, softmax 0.2)",
    )
    g.add_argument(
        "--temperature",
        action=_ParamAction,
        metavar="T",
        help="softmax temperature >= 0 (0 = greedy); or exp:T0:DECAY[:MIN] or "
        "linear:T0:T1:STEPS for a schedule",
    )
    g.add_argument(
        "--epsilon", action=_ParamAction, metavar="EPS", help="exploration probability in [0, 1]"
    )
    g.add_argument("--c", action=_ParamAction, metavar="C", help="UCB exploration weight >= 0")
    g.add_argument(
        "--alpha",
        "--step-size",
        dest="alpha",
        action=_ParamAction,
        metavar="ALPHA",
        help="step size: the gradient bandit's alpha > 0, or a constant step size in (0, 1] "
        "for the value estimates of the others (default: sample averages)",
    )
    g.add_argument(
        "--initial-value",
        dest="initial_value",
        action=_ParamAction,
        metavar="Q1",
        help="initial value estimates (optimistic when large, e.g. 5)",
    )
    g.add_argument(
        "--no-baseline",
        dest="baseline",
        action=_ParamAction,
        nargs=0,
        help="gradient bandit without the average-reward baseline",
    )
    t = p.add_argument_group("testbed")
    t.add_argument("--n-arms", type=int, default=10, metavar="K", help="arms (default 10)")
    t.add_argument("--n-runs", type=int, default=2000, metavar="N", help="runs (default 2000)")
    t.add_argument(
        "--n-steps", type=int, default=1000, metavar="T", help="steps per run (default 1000)"
    )
    t.add_argument(
        "--true-mean",
        type=float,
        default=0.0,
        metavar="MU",
        help="mean of the arm means (default 0; 4 for the gradient-bandit figure)",
    )
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    o = p.add_argument_group("output")
    o.add_argument(
        "--last",
        type=int,
        default=100,
        metavar="W",
        help="summarise the last W steps (default 100)",
    )
    o.add_argument("--plot", metavar="PATH", help="save learning curves (.png, .svg, .pdf)")
    o.add_argument("--title", help="plot title")
    p.set_defaults(policies=None)


def run(args: argparse.Namespace) -> int:
    """Run the comparison and print the table (or JSON); 0 on success."""
    import importlib.util
    import json

    from softmax import bandits

    specs = args.policies or [(name, dict(params)) for name, params in _DEFAULT_POLICIES]
    policies = [policy for name, params in specs for policy in _build(bandits, name, params)]
    if args.last < 1 or args.last > args.n_steps:
        raise ValueError(f"--last must be between 1 and --n-steps={args.n_steps}, got {args.last}")
    if args.plot:
        # Fail before a long simulation, not after it.
        from pathlib import Path

        from softmax.cli._common import CLIError, install_hint

        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError(f"--plot needs matplotlib: {install_hint('matplotlib')}")
        parent = Path(args.plot).parent
        if not parent.is_dir():
            raise CLIError(f"--plot {args.plot}: directory {str(parent)!r} does not exist")
    results = bandits.compare_policies(
        policies,
        n_arms=args.n_arms,
        n_runs=args.n_runs,
        n_steps=args.n_steps,
        true_mean=args.true_mean,
        random_state=args.seed,
    )
    summaries = [r.summary(last=args.last) for r in results.values()]
    best = next(iter(results.values())).best_reward
    if args.plot:
        bandits.plot_results(results, args.plot, title=args.title)
    settings = {
        "n_arms": args.n_arms,
        "n_runs": args.n_runs,
        "n_steps": args.n_steps,
        "true_mean": args.true_mean,
        "seed": args.seed,
        "last": args.last,
    }
    if args.json:
        document = {
            "settings": settings,
            "best_reward": best,
            "policies": summaries,
            "plot": args.plot,
        }
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        print(_table(summaries, settings, best))
        if args.plot:
            print(f"\nlearning curves written to {args.plot}")
    return 0


def _build(bandits: Any, name: str, params: dict[str, str]) -> list[Any]:
    """Policies for one --policy: one per value of each comma list (their product)."""
    import itertools

    cls = getattr(bandits, _POLICIES[name][0])
    mapping = _POLICIES[name][1]
    keys = list(params)
    choices = [params[k].split(",") if k != "baseline" else [params[k]] for k in keys]
    out = []
    for combo in itertools.product(*choices):
        kwargs = {mapping[k]: _convert(bandits, k, v.strip()) for k, v in zip(keys, combo)}
        try:
            out.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--policy {name}: {exc}") from None
    return out


def _convert(bandits: Any, key: str, text: str) -> Any:
    """Parse one option value; a ValueError names the option and the value."""
    option = "--" + key.replace("_", "-")
    if key == "baseline":
        return False
    try:
        if key == "temperature" and ":" in text:
            kind, *nums = text.split(":")
            values = [float(x) for x in nums]
            if kind in ("exp", "exponential") and len(values) in (2, 3):
                return bandits.ExponentialDecay(*values)
            if kind in ("lin", "linear") and len(values) == 3:
                return bandits.LinearDecay(values[0], values[1], int(values[2]))
            raise ValueError("use exp:T0:DECAY[:MIN] or linear:T0:T1:STEPS")
        return float(text)
    except ValueError as exc:
        raise ValueError(f"{option} {text!r}: {exc}") from None


def _table(summaries: list[dict[str, Any]], settings: dict[str, Any], best: float) -> str:
    window = settings["last"]
    head = (
        f"{settings['n_arms']}-armed testbed: {settings['n_runs']} runs x "
        f"{settings['n_steps']} steps, arm means ~ N({settings['true_mean']:g}, 1), "
        f"seed {settings['seed']}\n"
        f"best possible average reward (mean of each run's best arm): {best:.3f}\n"
        f"(mean over the last {window} steps, +- one standard error across runs)\n"
    )
    rows = [("policy", "avg reward", "% optimal", "total regret", "time (s)")]
    for s in summaries:
        rows.append(
            (
                str(s["label"]),
                f"{s['average_reward']:.3f} +- {s['average_reward_se']:.3f}",
                f"{100 * s['optimal_action']:.1f} +- {100 * s['optimal_action_se']:.1f}",
                f"{s['total_regret']:.1f}",
                f"{s['seconds']:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return head + "\n".join(lines)
