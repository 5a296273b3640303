r"""The k-armed testbed of Sutton & Barto (2nd ed., section 2.3), vectorised.

Each of ``n_runs`` independent bandit problems has arm means
:math:`q_*(a) \sim N(\mu, 1)` (``true_mean`` :math:`= \mu`), and pulling arm
:math:`a` pays :math:`q_*(a) + N(0, 1)`. All runs advance together: one step
is a handful of NumPy operations on arrays of shape ``(n_runs, n_arms)``, so
2000 runs of 1000 steps take a fraction of a second per policy.

Several policies are compared with *common random numbers*: every policy
sees the same arm means in each run, the same reward noise sequence and the
same stream of uniforms for its own choices, so differences between their
curves come from the policies, not from luck (two identical policies give
identical results).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from softmax.bandits._checks import check_int, check_real
from softmax.bandits.policies import Policy

__all__ = ["TestbedResult", "compare_policies", "testbed"]

RandomState = int | np.random.SeedSequence | np.random.Generator | None


@dataclass(frozen=True, eq=False)
class TestbedResult:
    """Learning curves of one policy on the testbed.

    Attributes
    ----------
    label : str
        The policy's label.
    average_reward : ndarray of shape (n_steps,)
        Reward at each step, averaged over the runs.
    optimal_action : ndarray of shape (n_steps,)
        Fraction of runs that pulled their best arm at each step.
    regret : ndarray of shape (n_steps,)
        Expected regret per step, averaged over the runs:
        :math:`q_*(a^*) - q_*(A_t)` (true means, so it carries no reward noise
        and is never negative).
    rewards : ndarray of float32 of shape (n_steps, n_runs)
        Every reward received (float32 to halve the memory; the curves above
        are accumulated in float64). For per-run statistics and standard errors.
    optimal : ndarray of bool of shape (n_steps, n_runs)
        Whether each choice was the run's best arm.
    arm_means : ndarray of shape (n_runs, n_arms)
        The true arm means :math:`q_*` of each run.
    seconds : float
        Wall-clock time of the simulation.
    """

    __test__ = False  # "Test..." class name: keep pytest from collecting it

    label: str
    average_reward: NDArray[np.float64]
    optimal_action: NDArray[np.float64]
    regret: NDArray[np.float64]
    rewards: NDArray[np.float32] = field(repr=False)
    optimal: NDArray[np.bool_] = field(repr=False)
    arm_means: NDArray[np.float64] = field(repr=False)
    seconds: float = 0.0

    @property
    def n_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_runs(self) -> int:
        return self.rewards.shape[1]

    @property
    def cumulative_regret(self) -> NDArray[np.float64]:
        """Total expected regret up to each step, of shape (n_steps,)."""
        return np.cumsum(self.regret)

    @property
    def best_reward(self) -> float:
        """Mean over runs of the best arm's mean: the expected reward of an oracle."""
        return float(self.arm_means.max(axis=1).mean())

    def summary(self, last: int = 100) -> dict[str, float | str | int]:
        """Means over the last ``last`` steps, with standard errors across runs.

        Each run's average over the window is one observation; the runs are
        independent, so the standard error is their standard deviation over
        :math:`\\sqrt{n_{runs}}`.

        Parameters
        ----------
        last : int, default 100
            Window length, 1 <= last <= n_steps.

        Returns
        -------
        dict
            ``label``, ``window``, ``average_reward``, ``average_reward_se``,
            ``optimal_action``, ``optimal_action_se`` (fractions),
            ``total_regret`` (cumulative expected regret at the end) and
            ``seconds``.
        """
        last = check_int("last", last, low=1)
        if last > self.n_steps:
            raise ValueError(f"last must be <= n_steps={self.n_steps}, got {last}.")
        per_run_reward = self.rewards[-last:].mean(axis=0, dtype=np.float64)
        per_run_optimal = self.optimal[-last:].mean(axis=0, dtype=np.float64)
        root_n = np.sqrt(self.n_runs)
        ddof = 1 if self.n_runs > 1 else 0
        return {
            "label": self.label,
            "window": last,
            "average_reward": float(per_run_reward.mean()),
            "average_reward_se": float(per_run_reward.std(ddof=ddof) / root_n),
            "optimal_action": float(per_run_optimal.mean()),
            "optimal_action_se": float(per_run_optimal.std(ddof=ddof) / root_n),
            "total_regret": float(self.regret.sum()),
            "seconds": self.seconds,
        }


def testbed(
    policy: Policy,
    n_arms: int = 10,
    n_runs: int = 2000,
    n_steps: int = 1000,
    true_mean: float = 0.0,
    random_state: RandomState = 0,
) -> TestbedResult:
    """Run one policy on ``n_runs`` independent k-armed bandit problems.

    Parameters
    ----------
    policy : Policy
        The policy to run; it is cloned, so the object passed is not changed.
    n_arms : int, default 10
        Arms per problem, >= 2.
    n_runs : int, default 2000
        Independent problems, stepped together, >= 1.
    n_steps : int, default 1000
        Steps per run, >= 1.
    true_mean : float, default 0.0
        Mean of the distribution the arm means are drawn from (4.0 for
        Sutton & Barto's gradient-bandit figure 2.5).
    random_state : int, SeedSequence, Generator or None, default 0
        Seeds the arm means, the reward noise and the policy's choices.

    Returns
    -------
    TestbedResult
        Curves of length ``n_steps``: ``average_reward``, ``optimal_action``
        (fraction of runs choosing their best arm) and ``regret``.

    Notes
    -----
    A policy with ``objective="cost"`` is handed the cost ``-reward``, so it
    faces the same problems; the results are reported in rewards.

    Examples
    --------
    >>> from softmax.bandits import SoftmaxPolicy, testbed
    >>> result = testbed(SoftmaxPolicy(temperature=0.1), n_runs=200, n_steps=500)
    >>> result.average_reward.shape
    (500,)
    """
    return compare_policies([policy], n_arms, n_runs, n_steps, true_mean, random_state)[
        _labels([policy])[0]
    ]


# The name starts with "test": keep pytest from collecting it in the test
# modules of anyone who imports it.
testbed.__test__ = False  # type: ignore[attr-defined]


def compare_policies(
    policies: Sequence[Policy] | Mapping[str, Policy],
    n_arms: int = 10,
    n_runs: int = 2000,
    n_steps: int = 1000,
    true_mean: float = 0.0,
    random_state: RandomState = 0,
) -> dict[str, TestbedResult]:
    """Run several policies on the same problems, with common random numbers.

    Parameters
    ----------
    policies : sequence of Policy, or mapping from label to Policy
        Policies to compare (each is cloned). A sequence is labelled by each
        policy's ``label`` (made unique with a ``#2`` suffix if needed).
    n_arms, n_runs, n_steps, true_mean, random_state
        As for :func:`testbed`.

    Returns
    -------
    dict from str to TestbedResult
        In the order given. ``testbed(p, ..., random_state=s)`` equals the
        entry for ``p`` here with the same seed.
    """
    n_arms = check_int("n_arms", n_arms, low=2)
    n_runs = check_int("n_runs", n_runs, low=1)
    n_steps = check_int("n_steps", n_steps, low=1)
    true_mean = check_real("true_mean", true_mean)
    if isinstance(policies, Mapping):
        labels, items = [str(k) for k in policies], list(policies.values())
    else:
        items = list(policies)
        labels = _labels(items)
    if not items:
        raise ValueError("policies is empty; give at least one policy.")
    for p in items:
        if not isinstance(p, Policy):
            raise TypeError(
                f"expected softmax.bandits policies (SoftmaxPolicy, EpsilonGreedy, ...), "
                f"got {type(p).__name__}."
            )

    # Three independent streams, re-created for each policy from the same
    # seeds: that is what makes the random numbers common to all policies.
    means_seed, noise_seed, choice_seed = _seed_sequence(random_state).spawn(3)
    arm_means = np.random.default_rng(means_seed).normal(true_mean, 1.0, size=(n_runs, n_arms))
    results = {}
    for label, policy in zip(labels, items):
        results[label] = _simulate(
            policy.clone(), label, arm_means, n_steps, noise_seed, choice_seed
        )
    return results


def _simulate(
    policy: Policy,
    label: str,
    arm_means: NDArray[np.float64],
    n_steps: int,
    noise_seed: np.random.SeedSequence,
    choice_seed: np.random.SeedSequence,
) -> TestbedResult:
    """Step one policy through all runs; the inner loop of the testbed."""
    n_runs, n_arms = arm_means.shape
    start = time.perf_counter()
    policy.reset(n_arms, n_runs, random_state=np.random.Generator(np.random.PCG64(choice_seed)))
    noise = np.random.Generator(np.random.PCG64(noise_seed))
    best_arm = arm_means.argmax(axis=1)
    best_mean = arm_means.max(axis=1)
    flat_means = np.ascontiguousarray(arm_means).reshape(-1)
    offsets = np.arange(n_runs) * n_arms  # flat index of each run's first arm
    sign = -1.0 if policy.objective == "cost" else 1.0

    rewards = np.empty((n_steps, n_runs), dtype=np.float32)
    optimal = np.empty((n_steps, n_runs), dtype=bool)
    average_reward = np.empty(n_steps)
    optimal_action = np.empty(n_steps)
    regret = np.empty(n_steps)
    for t in range(n_steps):
        actions = policy.select()
        chosen_mean = flat_means[offsets + actions]
        reward = chosen_mean + noise.standard_normal(n_runs)
        policy._step(actions, reward if sign > 0 else -reward)
        rewards[t] = reward
        np.equal(actions, best_arm, out=optimal[t])
        average_reward[t] = reward.mean()
        optimal_action[t] = np.count_nonzero(optimal[t]) / n_runs
        regret[t] = (best_mean - chosen_mean).mean()
    return TestbedResult(
        label=label,
        average_reward=average_reward,
        optimal_action=optimal_action,
        regret=regret,
        rewards=rewards,
        optimal=optimal,
        arm_means=arm_means,
        seconds=time.perf_counter() - start,
    )


def _seed_sequence(random_state: RandomState) -> np.random.SeedSequence:
    """A SeedSequence from an int, a SeedSequence, a Generator or None."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        # Draw the entropy from the generator (advancing it, as consuming
        # randomness should); works on NumPy versions without Generator.spawn.
        return np.random.SeedSequence(random_state.integers(0, 2**63, size=4).tolist())
    if random_state is None or (
        isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)
    ):
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
        return np.random.SeedSequence(random_state)
    raise TypeError(
        f"random_state must be an int, None, numpy.random.SeedSequence or "
        f"numpy.random.Generator, got {type(random_state).__name__}."
    )


def _labels(policies: list[Policy]) -> list[str]:
    """Policy labels, made unique by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for p in policies:
        base = p.label if isinstance(p, Policy) else type(p).__name__
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return out
