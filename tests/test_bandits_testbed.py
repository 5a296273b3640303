"""The testbed against published results (Sutton & Barto, 2nd ed., 2018).

Figure 2.2 (sample averages, 10 arms, arm means ~ N(0, 1), 2000 runs, 1000
steps) and figure 2.5 (gradient bandit, arm means ~ N(4, 1)). The published
numbers are read off the figures near step 1000, so each comparison allows
the reading uncertainty plus 3 standard errors of our own estimate, computed
here from the per-run averages over the last 100 steps (runs are independent).

Also checked: the best possible average reward E[max of 10 N(0, 1)] = 1.5388
(computed here by numerical integration) is never exceeded beyond noise; the
vectorised testbed agrees in distribution with a plain per-run Python loop;
common random numbers; the plot and the command line.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from softmax.bandits import (
    EpsilonGreedy,
    GradientBandit,
    Greedy,
    SoftmaxPolicy,
    compare_policies,
    plot_results,
    testbed,
)

# Uncertainty of reading a value off a printed curve.
READ_REWARD = 0.04
READ_PERCENT = 3.0


def _last_window(result, last=100):
    """Per-run averages over the last steps -> (mean, standard error) for reward and %."""
    reward = result.rewards[-last:].mean(axis=0, dtype=np.float64)
    optimal = 100.0 * result.optimal[-last:].mean(axis=0, dtype=np.float64)
    n = reward.size
    return (
        (reward.mean(), reward.std(ddof=1) / math.sqrt(n)),
        (optimal.mean(), optimal.std(ddof=1) / math.sqrt(n)),
    )


def _expected_max_of_normals(k=10):
    """E[max] and sd[max] of k iid N(0, 1), by quadrature of the max's density."""
    density = lambda x: k * stats.norm.pdf(x) * stats.norm.cdf(x) ** (k - 1)  # noqa: E731
    m1 = integrate.quad(lambda x: x * density(x), -np.inf, np.inf, epsabs=1e-12)[0]
    m2 = integrate.quad(lambda x: x * x * density(x), -np.inf, np.inf, epsabs=1e-12)[0]
    return m1, math.sqrt(m2 - m1 * m1)


@pytest.fixture(scope="module")
def figure_2_2():
    policies = {"greedy": Greedy(), "0.01": EpsilonGreedy(0.01), "0.1": EpsilonGreedy(0.1)}
    return compare_policies(policies, n_runs=2000, n_steps=1000, random_state=2018)


@pytest.fixture(scope="module")
def figure_2_5():
    policies = {
        "0.1": GradientBandit(0.1),
        "0.4": GradientBandit(0.4),
        "0.1 nb": GradientBandit(0.1, baseline=False),
        "0.4 nb": GradientBandit(0.4, baseline=False),
    }
    return compare_policies(policies, n_runs=2000, n_steps=1000, true_mean=4.0, random_state=2018)


@pytest.mark.parametrize(
    ("key", "reward", "percent"),
    [("greedy", 1.0, 35.0), ("0.01", 1.3, 61.0), ("0.1", 1.39, 80.0)],
)
def test_figure_2_2_epsilon_greedy(figure_2_2, key, reward, percent):
    (r, r_se), (p, p_se) = _last_window(figure_2_2[key])
    assert abs(r - reward) <= READ_REWARD + 3 * r_se, (r, r_se)
    assert abs(p - percent) <= READ_PERCENT + 3 * p_se, (p, p_se)


def test_figure_2_2_ordering(figure_2_2):
    # What the figure teaches: exploring beats greedy, eps=0.1 learns fastest.
    (g, _), _ = _last_window(figure_2_2["greedy"])
    (e1, _), _ = _last_window(figure_2_2["0.01"])
    (e2, _), _ = _last_window(figure_2_2["0.1"])
    assert g < e1 < e2


@pytest.mark.parametrize(
    ("key", "percent"), [("0.1", 85.0), ("0.4", 72.0), ("0.1 nb", 49.0), ("0.4 nb", 28.0)]
)
def test_figure_2_5_gradient_bandit(figure_2_5, key, percent):
    _, (p, p_se) = _last_window(figure_2_5[key])
    assert abs(p - percent) <= READ_PERCENT + 3 * p_se, (p, p_se)


def test_figure_2_3_optimistic_initial_values():
    # Optimistic greedy (Q1 = 5, alpha = 0.1) ends ahead of realistic
    # epsilon-greedy (Q1 = 0, eps = 0.1, alpha = 0.1) in % optimal action; the
    # paired difference per run (common random numbers) must exceed 3 SE.
    results = compare_policies(
        [Greedy(step_size=0.1, initial_value=5.0), EpsilonGreedy(0.1, step_size=0.1)],
        n_runs=2000,
        n_steps=1000,
        random_state=2018,
    )
    optimistic, realistic = (r.optimal[-100:].mean(axis=0) for r in results.values())
    diff = optimistic - realistic
    assert diff.mean() > 3 * diff.std(ddof=1) / math.sqrt(diff.size)


def test_expected_maximum_is_the_published_value():
    e_max, _ = _expected_max_of_normals()
    assert e_max == pytest.approx(1.5388, abs=5e-5)


@pytest.mark.parametrize("figure", ["figure_2_2", "figure_2_5"])
def test_best_possible_reward_is_never_exceeded(request, figure):
    results = request.getfixturevalue(figure)
    shift = 4.0 if figure == "figure_2_5" else 0.0
    e_max, sd_max = _expected_max_of_normals()
    for result in results.values():
        n = result.n_runs
        # The testbed's arm means: their best has the right mean (4 SE).
        assert abs(result.best_reward - (shift + e_max)) <= 4 * sd_max / math.sqrt(n)
        # No step's average reward beats the oracle by more than 5 SE of that
        # step (5 sigma: 1000 steps x 7 policies stay far from a false alarm).
        step_se = result.rewards.std(axis=1, dtype=np.float64) / math.sqrt(n)
        assert np.all(result.average_reward <= shift + e_max + 5 * step_se)
        # Expected regret per step uses the true means: never negative.
        assert np.all(result.regret >= 0)


def _naive_softmax_runs(temperature, n_runs, n_steps, seed):
    """Sutton & Barto's softmax action selection, one run at a time, plain Python."""
    rng = np.random.default_rng(seed)
    totals, optimal = [], []
    for _ in range(n_runs):
        q = rng.normal(size=10)
        best = int(np.argmax(q))
        est, cnt = [0.0] * 10, [0] * 10
        total = hits = 0
        noise, uniforms = rng.normal(size=n_steps), rng.random(n_steps)
        for t in range(n_steps):
            top = max(est)
            w = [math.exp((x - top) / temperature) for x in est]
            u, acc, a = uniforms[t] * sum(w), 0.0, 9
            for i, wi in enumerate(w):
                acc += wi
                if u < acc:
                    a = i
                    break
            r = q[a] + noise[t]
            cnt[a] += 1
            est[a] += (r - est[a]) / cnt[a]
            total += r
            hits += a == best
        totals.append(total / n_steps)
        optimal.append(hits / n_steps)
    return np.array(totals), np.array(optimal)


@pytest.mark.slow
def test_vectorised_testbed_agrees_with_a_plain_loop():
    temperature, n_steps = 0.2, 300
    naive_reward, naive_optimal = _naive_softmax_runs(temperature, 300, n_steps, seed=11)
    result = testbed(SoftmaxPolicy(temperature), n_runs=2000, n_steps=n_steps, random_state=12)
    ours_reward = result.rewards.mean(axis=0, dtype=np.float64)
    ours_optimal = result.optimal.mean(axis=0, dtype=np.float64)
    # Welch's t-test on the per-run averages: same distribution of outcomes.
    assert stats.ttest_ind(ours_reward, naive_reward, equal_var=False).pvalue > 1e-3
    assert stats.ttest_ind(ours_optimal, naive_optimal, equal_var=False).pvalue > 1e-3


def test_common_random_numbers():
    kw = {"n_runs": 200, "n_steps": 150, "random_state": 4}
    alone = testbed(SoftmaxPolicy(0.3), **kw)
    together = compare_policies([EpsilonGreedy(0.1), SoftmaxPolicy(0.3), SoftmaxPolicy(0.3)], **kw)
    labels = list(together)
    assert labels == ["epsilon-greedy eps=0.1", "softmax tau=0.3", "softmax tau=0.3 #2"]
    np.testing.assert_array_equal(alone.rewards, together["softmax tau=0.3"].rewards)
    np.testing.assert_array_equal(alone.rewards, together["softmax tau=0.3 #2"].rewards)
    np.testing.assert_array_equal(alone.arm_means, together["epsilon-greedy eps=0.1"].arm_means)
    other = testbed(SoftmaxPolicy(0.3), **{**kw, "random_state": 5})
    assert not np.array_equal(alone.arm_means, other.arm_means)


def test_result_arrays_and_summary():
    result = testbed(EpsilonGreedy(0.1), n_arms=5, n_runs=300, n_steps=80, random_state=0)
    assert result.average_reward.shape == result.optimal_action.shape == (80,)
    assert result.regret.shape == (80,)
    assert result.rewards.shape == result.optimal.shape == (80, 300)
    np.testing.assert_allclose(result.average_reward, result.rewards.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(result.optimal_action, result.optimal.mean(axis=1))
    np.testing.assert_allclose(result.cumulative_regret[-1], result.regret.sum())
    s = result.summary(last=20)
    assert s["average_reward"] == pytest.approx(result.rewards[-20:].mean(), rel=1e-6)
    assert 0 < s["optimal_action_se"] < 0.1


def test_plot_results(tmp_path):
    pytest.importorskip("matplotlib")
    results = compare_policies([Greedy(), SoftmaxPolicy(0.1)], n_runs=20, n_steps=30)
    path = tmp_path / "curves.svg"
    fig = plot_results(results, path, title="test")
    top, bottom = fig.axes
    assert len(bottom.lines) == 2
    assert [t.get_text() for t in top.get_legend().get_texts()][:2] == list(results)
    assert path.read_text().lstrip().startswith("<?xml")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_cli_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from softmax.cli import main

    png = tmp_path / "out.png"
    argv = ["bandit", "--policy", "softmax", "--temperature", "0.1,0.5", "--policy",
            "epsilon-greedy", "--epsilon", "0.1", "--n-runs", "50", "--n-steps", "60",
            "--last", "10"]  # fmt: skip
    assert main([*argv, "--plot", str(png), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    labels = [p["label"] for p in doc["policies"]]
    assert labels == ["softmax tau=0.1", "softmax tau=0.5", "epsilon-greedy eps=0.1"]
    assert doc["settings"]["n_runs"] == 50 and doc["policies"][0]["window"] == 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "softmax tau=0.5" in out and "% optimal" in out


def test_cli_schedules_and_value_options(capsys):
    from softmax.cli import main

    argv = ["bandit", "--policy", "softmax", "--temperature", "exp:1:0.99:0.1,linear:0.5:0.05:50",
            "--policy", "greedy", "--alpha", "0.1", "--initial-value", "5",
            "--policy", "gradient", "--alpha", "0.2", "--no-baseline",
            "--n-runs", "20", "--n-steps", "30", "--last", "5", "--json"]  # fmt: skip
    assert main(argv) == 0
    labels = [p["label"] for p in json.loads(capsys.readouterr().out)["policies"]]
    assert labels == [
        "softmax tau=exp(1*0.99^t,min=0.1)",
        "softmax tau=lin(0.5->0.05 in 50)",
        "greedy alpha=0.1 Q1=5",
        "gradient alpha=0.2 no baseline",
    ]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--policy", "softmax", "--temperature", "-1"], 1, "temperature must be >= 0"),
        (["--policy", "epsilon-greedy", "--epsilon", "1.5"], 1, "epsilon must be <= 1"),
        (["--policy", "gradient", "--alpha", "0"], 1, "alpha must be > 0"),
        (["--policy", "ucb", "--c", "-1"], 1, "c must be >= 0"),
        (["--n-arms", "1"], 1, "n_arms must be >= 2"),
        (["--temperature", "0.1"], 2, "must come after the --policy"),
        (["--policy", "softmax", "--epsilon", "0.1"], 2, "does not apply"),
        (["--policy", "softmx"], 2, "unknown policy"),
        (["--policy", "softmax", "--temperature", "exp:1"], 1, "use exp:T0:DECAY"),
        (["--policy", "softmax", "--temperature", "hot"], 1, "--temperature 'hot'"),
        (["--plot", "/nonexistent-softmax-dir/x.png"], 1, "does not exist"),
    ],
)
def test_cli_errors(capsys, argv, status, message):
    from softmax.cli import main

    assert main(["bandit", *argv, "--n-runs", "2", "--n-steps", "2", "--last", "1"]) == status
    assert message in capsys.readouterr().err
