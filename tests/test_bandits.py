"""Unit tests of softmax.bandits: probabilities, sampling, schedules, estimates, policies.

References are independent of the code under test: mpmath at 50 digits for
the Boltzmann probabilities, chi-square goodness-of-fit tests (scipy.stats)
for the sampling, np.bincount and closed forms for the value estimates, and a
scalar transcription of Sutton & Barto's update rules for the policies.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
from scipy import stats

from softmax.bandits import (
    UCB,
    Constant,
    EpsilonGreedy,
    ExponentialDecay,
    GradientBandit,
    Greedy,
    LinearDecay,
    SoftmaxPolicy,
    action_probabilities,
    compare_policies,
    sample_actions,
    testbed,
)
from softmax.bandits.estimates import ActionValues

# A goodness-of-fit test at this level fails a correct sampler once in 1000
# seeds; every seed below is fixed, so a failure means a real discrepancy.
P_MIN = 1e-3


def _mp_boltzmann(values, temperature):
    """exp(q/T) / sum exp(q/T) at 50 significant digits."""
    with mpmath.workdps(50):
        q = [mpmath.mpf(float(v)) / mpmath.mpf(float(temperature)) for v in values]
        top = max(q)
        e = [mpmath.exp(x - top) for x in q]
        s = mpmath.fsum(e)
        return np.array([float(x / s) for x in e])


def _chisquare_p(counts, probs):
    probs = np.asarray(probs, dtype=float)
    keep = probs > 0
    return stats.chisquare(counts[keep], counts.sum() * probs[keep] / probs[keep].sum()).pvalue


# --------------------------------------------------------------- probabilities
@pytest.mark.parametrize(
    ("scale", "temperature"),
    [(1.0, 1.0), (1.0, 0.1), (100.0, 0.5), (1e3, 1e-2), (1e-3, 1e-4), (5.0, 1e3)],
)
def test_action_probabilities_match_mpmath(scale, temperature):
    rng = np.random.default_rng(7)
    values = rng.normal(scale=scale, size=(6, 9))
    ours = action_probabilities(values, temperature)
    ref = np.array([_mp_boltzmann(row, temperature) for row in values])
    big = ref > 1e-290  # below, both are (sub)normal dust
    np.testing.assert_allclose(ours[big], ref[big], rtol=1e-12)
    assert np.all(ours[~big] < 1e-280)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=1e-14)


def test_temperature_zero_splits_mass_over_ties():
    probs = action_probabilities([1.0, 3.0, 3.0, 2.0, 3.0], temperature=0.0)
    np.testing.assert_array_equal(probs, [0, 1 / 3, 1 / 3, 0, 1 / 3])


@pytest.mark.parametrize("temperature", [5e-324, 1e-300, 1e-10, 1.0, 1e300, 1e308])
def test_huge_values_and_extreme_temperatures_never_overflow(temperature):
    values = [1e308, -1e308, 5e307, -5e307]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow/invalid warning fails
        probs = action_probabilities(values, temperature)
    ref = _mp_boltzmann(values, temperature)
    np.testing.assert_allclose(probs, ref, rtol=1e-12, atol=1e-300)
    assert np.isfinite(probs).all()


def test_tiny_temperature_separates_close_values():
    # Dividing first would give inf/inf for both; the shift keeps them apart.
    probs = action_probabilities([1e300, 2e300], temperature=1e-10)
    np.testing.assert_array_equal(probs, [0.0, 1.0])
    probs = action_probabilities([1.0, 1.0 + 1e-12], temperature=1e-300)
    np.testing.assert_array_equal(probs, [0.0, 1.0])


def test_infinite_values_are_the_limit():
    np.testing.assert_array_equal(action_probabilities([np.inf, 1.0, np.inf]), [0.5, 0, 0.5])
    np.testing.assert_array_equal(action_probabilities([-np.inf, 0.0]), [0.0, 1.0])
    np.testing.assert_array_equal(action_probabilities([-np.inf, -np.inf]), [0.5, 0.5])


def test_cost_objective_prefers_small_values():
    values = np.array([[0.3, -1.2, 2.0], [5.0, 5.0, 4.0]])
    for t in (0.0, 0.3, 2.0):
        np.testing.assert_array_equal(
            action_probabilities(values, t, objective="cost"), action_probabilities(-values, t)
        )


def test_axis_and_no_mutation():
    values = np.random.default_rng(0).normal(size=(4, 3))
    copy = values.copy()
    np.testing.assert_allclose(
        action_probabilities(values, 0.5, axis=0), action_probabilities(values.T, 0.5).T
    )
    np.testing.assert_array_equal(values, copy)


# ------------------------------------------------------------------- sampling
def test_sampling_frequencies_match_probabilities():
    probs = action_probabilities([0.3, 1.2, -0.4, 0.9, 0.0, 0.85], temperature=0.5)
    rows = np.broadcast_to(probs, (200_000, probs.size))
    actions = sample_actions(rows, random_state=3)
    counts = np.bincount(actions, minlength=probs.size)
    assert _chisquare_p(counts, probs) > P_MIN


def test_sampling_never_draws_zero_probability_arms_and_accepts_weights():
    weights = np.array([0.0, 1.0, 0.0, 3.0, 0.0])  # unnormalised
    actions = sample_actions(np.broadcast_to(weights, (100_000, 5)), random_state=1)
    counts = np.bincount(actions, minlength=5)
    assert counts[[0, 2, 4]].sum() == 0
    assert _chisquare_p(counts, weights) > P_MIN
    assert isinstance(sample_actions([0.2, 0.8], random_state=0), int)


@pytest.mark.parametrize(
    "bad", [[[0.5, np.nan]], [[-0.1, 1.1]], [[0.0, 0.0]], [[np.inf, 1.0]], np.ones((2, 2, 2))]
)
def test_sample_actions_rejects_bad_probabilities(bad):
    with pytest.raises(ValueError, match="probabilities"):
        sample_actions(bad)


# ------------------------------------------------------------------ schedules
def test_schedules_follow_their_formulas():
    exp = ExponentialDecay(2.0, 0.5, minimum=0.1)
    assert [exp(t) for t in (0, 1, 3, 10)] == [2.0, 1.0, 0.25, 0.1]
    lin = LinearDecay(1.0, 0.2, n_steps=4)
    assert [lin(t) for t in (0, 2, 4, 100)] == [1.0, pytest.approx(0.6), 0.2, 0.2]
    assert LinearDecay(0.0, 1.0, n_steps=2)(1) == 0.5  # warming up is allowed
    assert Constant(0.3)(12345) == 0.3


def test_softmax_policy_uses_the_schedule_at_each_step():
    calls = []

    def temperature(step):
        calls.append(step)
        return 1.0 / (step + 1)

    policy = SoftmaxPolicy(temperature=temperature).reset(n_arms=4, n_runs=3, random_state=0)
    rng = np.random.default_rng(1)
    for step in range(5):
        expected = action_probabilities(policy.values_, 1.0 / (step + 1))
        np.testing.assert_allclose(policy.action_probabilities(), expected, rtol=1e-15)
        actions = policy.select()
        policy.update(actions, rng.normal(size=3))
    assert sorted(set(calls)) == [0, 1, 2, 3, 4]


def test_bad_schedule_value_fails_at_its_step():
    policy = SoftmaxPolicy(temperature=lambda t: 1.0 - t).reset(n_arms=2, random_state=0)
    policy.update(policy.select(), 1.0)
    policy.update(policy.select(), 1.0)
    with pytest.raises(ValueError, match="temperature schedule at step 2"):
        policy.select()
    eps = EpsilonGreedy(epsilon=lambda t: 1.5).reset(n_arms=2)
    with pytest.raises(ValueError, match="epsilon"):
        eps.select()


# ------------------------------------------------------------------ estimates
def test_sample_average_estimates_are_per_arm_means():
    rng = np.random.default_rng(2)
    n_runs, n_arms, n = 3, 5, 400
    est = ActionValues(n_runs, n_arms, initial_value=7.0)  # forgotten at the first pull
    actions = rng.integers(n_arms, size=(n, n_runs))
    outcomes = rng.normal(size=(n, n_runs))
    for a, r in zip(actions, outcomes):
        est.update(a, r)
    for run in range(n_runs):
        counts = np.bincount(actions[:, run], minlength=n_arms)
        sums = np.bincount(actions[:, run], weights=outcomes[:, run], minlength=n_arms)
        np.testing.assert_array_equal(est.counts[run], counts)
        expected = np.where(counts > 0, sums / np.maximum(counts, 1), 7.0)
        np.testing.assert_allclose(est.values[run], expected, rtol=1e-12)


def test_constant_step_size_is_recency_weighted_average():
    alpha, q1 = 0.1, 5.0
    rewards = np.random.default_rng(4).normal(size=50)
    est = ActionValues(1, 2, step_size=alpha, initial_value=q1)
    for r in rewards:
        est.update(np.array([1]), np.array([r]))
    n = rewards.size
    # Sutton & Barto eq. 2.6: Q_{n+1} = (1-a)^n Q_1 + sum_i a (1-a)^(n-i) R_i
    weights = alpha * (1 - alpha) ** (n - 1 - np.arange(n))
    expected = (1 - alpha) ** n * q1 + weights @ rewards
    assert est.values[0, 1] == pytest.approx(expected, rel=1e-12)
    assert est.values[0, 0] == q1


# ------------------------------------------------------------------- policies
def _tied_policy(policy, n_runs=60_000):
    """All runs with arm 0 at -1 and arms 1..9 tied at 0."""
    policy.reset(n_arms=10, n_runs=n_runs, random_state=5)
    policy.update(np.zeros(n_runs, dtype=int), np.full(n_runs, -1.0))
    return policy


@pytest.mark.parametrize(
    "policy",
    [SoftmaxPolicy(0.0), SoftmaxPolicy(1e-300), Greedy(), EpsilonGreedy(0.0)],
    ids=["tau=0", "tau=1e-300", "greedy", "eps=0"],
)
def test_greedy_limit_breaks_ties_uniformly(policy):
    actions = _tied_policy(policy).select()
    counts = np.bincount(actions, minlength=10)
    assert counts[0] == 0
    assert _chisquare_p(counts[1:], np.ones(9)) > P_MIN


def test_epsilon_greedy_probabilities_and_frequencies():
    policy = _tied_policy(EpsilonGreedy(0.3))
    probs = policy.action_probabilities()[0]
    np.testing.assert_allclose(probs, [0.03] + [0.03 + 0.7 / 9] * 9, rtol=1e-14)
    counts = np.bincount(policy.select(), minlength=10)
    assert _chisquare_p(counts, probs) > P_MIN


def test_ucb_tries_every_arm_once_then_follows_the_bound():
    n_runs, n_arms, c = 4, 6, 1.5
    policy = UCB(c).reset(n_arms=n_arms, n_runs=n_runs, random_state=0)
    rng = np.random.default_rng(0)
    pulled = []
    for _ in range(n_arms):
        a = policy.select()
        pulled.append(a)
        policy.update(a, rng.normal(size=n_runs))
    assert (np.sort(np.array(pulled), axis=0) == np.arange(n_arms)[:, None]).all()
    for _ in range(20):
        q, n, t = policy.values_.copy(), policy.counts_.copy(), policy.step_ + 1
        scores = q + c * np.sqrt(math.log(t) / n)
        a = policy.select()
        np.testing.assert_array_equal(a, scores.argmax(axis=1))  # no ties with real noise
        policy.update(a, rng.normal(size=n_runs))


def test_gradient_bandit_matches_the_textbook_update():
    alpha = 0.25
    for baseline in (True, False):
        policy = GradientBandit(alpha, baseline=baseline).reset(n_arms=4, random_state=1)
        rng = np.random.default_rng(2)
        h, total = [0.0] * 4, 0.0
        for t in range(1, 60):
            e = [math.exp(x - max(h)) for x in h]
            pi = [x / sum(e) for x in e]
            np.testing.assert_allclose(policy.action_probabilities(), pi, rtol=1e-13)
            a = policy.select()
            r = float(rng.normal(loc=1.0 + a))
            total += r
            b = total / t if baseline else 0.0  # average reward including this one
            h = [h[i] + alpha * (r - b) * ((i == a) - pi[i]) for i in range(4)]
            policy.update(a, r)
            np.testing.assert_allclose(policy.preferences_, h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: SoftmaxPolicy(0.2, objective=o),
        lambda o: SoftmaxPolicy(ExponentialDecay(1.0, 0.99), step_size=0.1, objective=o),
        lambda o: EpsilonGreedy(0.1, initial_value=3.0, objective=o),
        lambda o: Greedy(objective=o),
        lambda o: UCB(2.0, objective=o),
        lambda o: GradientBandit(0.2, objective=o),
    ],
    ids=["softmax", "softmax-sched", "egreedy", "greedy", "ucb", "gradient"],
)
def test_minimising_costs_mirrors_maximising_rewards(make):
    # The testbed hands a cost policy -reward: it must act exactly the same.
    kw = {"n_runs": 50, "n_steps": 200, "random_state": 3}
    if "Gradient" in type(make("reward")).__name__:
        kw["true_mean"] = 4.0
    if "EpsilonGreedy" in type(make("reward")).__name__:
        make_cost = lambda o: EpsilonGreedy(0.1, initial_value=-3.0, objective=o)  # noqa: E731
    else:
        make_cost = make
    rewards = testbed(make("reward"), **kw)
    costs = testbed(make_cost("cost"), **kw)
    np.testing.assert_array_equal(rewards.rewards, costs.rewards)
    assert costs.label.endswith("(cost)")


def test_greedy_limits_agree_exactly():
    kw = {"n_runs": 100, "n_steps": 100, "random_state": 9}
    results = compare_policies([Greedy(), EpsilonGreedy(0.0), SoftmaxPolicy(0.0)], **kw)
    a, b, c = results.values()
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.rewards, c.rewards)


def test_single_run_mode_and_state():
    policy = SoftmaxPolicy(0.5).reset(n_arms=3, random_state=0)
    assert policy.action_probabilities().shape == (3,)
    arm = policy.select()
    assert isinstance(arm, int)
    policy.update(arm, 2.0)
    assert policy.values_[arm] == 2.0
    assert policy.counts_.sum() == 1
    assert policy.step_ == 1
    assert repr(policy).startswith("SoftmaxPolicy(temperature=0.5")


def test_testbed_leaves_the_policy_untouched():
    policy = SoftmaxPolicy(0.1)
    testbed(policy, n_runs=5, n_steps=5)
    assert not hasattr(policy, "step_")


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SoftmaxPolicy(-0.1), "temperature must be >= 0"),
        (lambda: SoftmaxPolicy(float("nan")), "temperature must be finite"),
        (lambda: EpsilonGreedy(-0.01), "epsilon must be >= 0"),
        (lambda: EpsilonGreedy(1.01), "epsilon must be <= 1"),
        (lambda: GradientBandit(0.0), "alpha must be > 0"),
        (lambda: GradientBandit(-1.0), "alpha must be > 0"),
        (lambda: UCB(-0.5), "c must be >= 0"),
        (lambda: Greedy(step_size=0.0), "step_size must be > 0"),
        (lambda: Greedy(step_size=1.5), "step_size must be <= 1"),
        (lambda: Greedy(objective="profit"), "objective must be 'reward'"),
        (lambda: ExponentialDecay(1.0, 1.5), "decay must be <= 1"),
        (lambda: LinearDecay(1.0, 0.0, n_steps=0), "n_steps must be >= 1"),
        (lambda: SoftmaxPolicy(0.1).reset(n_arms=1), "n_arms must be >= 2"),
        (lambda: testbed(Greedy(), n_arms=1), "n_arms must be >= 2"),
        (lambda: testbed(Greedy(), n_runs=0), "n_runs must be >= 1"),
        (lambda: testbed(Greedy(), n_steps=0), "n_steps must be >= 1"),
        (lambda: testbed(Greedy(), n_steps=5).summary(last=6), "last must be <="),
        (lambda: action_probabilities([1.0, np.nan]), "NaN"),
        (lambda: action_probabilities([1.0, 2.0], -1.0), "temperature must be >= 0"),
        (lambda: Greedy().reset(3, 2).update([0, 3], [1.0, 1.0]), r"actions must be in \[0, 3\)"),
        (lambda: Greedy().reset(3, 2).update([0, 1], [1.0, np.nan]), "outcomes must be finite"),
        (lambda: Greedy().reset(3, 2).update([0], [1.0]), "shape"),
    ],
)
def test_bad_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: SoftmaxPolicy("0.1"),
        lambda: GradientBandit(0.1, baseline="yes"),
        lambda: testbed(object()),
        lambda: testbed(Greedy(), random_state=1.5),
        lambda: Greedy().reset(3, 1).update([0.5], [1.0]),
    ],
)
def test_wrong_types_raise_type_error(make):
    with pytest.raises(TypeError):
        make()


def test_acting_before_reset_says_what_to_do():
    with pytest.raises(RuntimeError, match="call reset"):
        SoftmaxPolicy().select()
