r"""Action-selection policies for multi-armed bandits, vectorised over runs.

Every policy keeps its state for ``n_runs`` independent runs in arrays of
shape ``(n_runs, n_arms)`` and moves all runs one step at a time:

>>> import numpy as np
>>> from softmax.bandits import SoftmaxPolicy
>>> policy = SoftmaxPolicy(temperature=0.5).reset(n_arms=3, random_state=0)
>>> policy.action_probabilities()          # all estimates start at 0
array([0.33333333, 0.33333333, 0.33333333])
>>> arm = policy.select()                  # an int when n_runs is None
>>> _ = policy.update(arm, 1.0)            # observed reward 1.0
>>> int(policy.counts_.sum())
1

With ``reset(n_arms, n_runs=2000)`` the same calls take and return arrays of
shape ``(n_runs,)``, which is how :func:`softmax.bandits.testbed` runs 2000
bandit problems at once.

Each policy chooses by drawing from its :meth:`Policy.action_probabilities`
(exact inverse-CDF sampling, one uniform per run), so greedy choices break
ties uniformly at random and the probabilities a policy reports are exactly
the ones it samples from.

Rewards or costs: every policy takes ``objective="reward"`` (maximise the
outcome, the default) or ``objective="cost"`` (minimise it). The value
estimates are kept in the units of the outcomes either way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax.bandits._checks import (
    Objective,
    check_int,
    check_objective,
    check_real,
    objective_sign,
)
from softmax.bandits.estimates import ActionValues, check_step_size
from softmax.bandits.sampling import _boltzmann_rows, argmax_probabilities, sample_rows
from softmax.bandits.schedules import Schedule, _format_schedule, as_schedule

__all__ = ["UCB", "EpsilonGreedy", "GradientBandit", "Greedy", "Policy", "SoftmaxPolicy"]


class Policy(ABC):
    """Base class: parameters in ``__init__``, state created by :meth:`reset`.

    Subclasses implement ``_reset_state``, ``_probabilities`` (of shape
    (n_runs, n_arms)) and ``_learn``.

    Attributes
    ----------
    n_arms_ : int
        Number of arms (after :meth:`reset`).
    n_runs_ : int
        Number of independent runs (1 in single-run mode).
    step_ : int
        Number of updates so far (the time step, 0 before the first action).
    """

    _param_names: ClassVar[tuple[str, ...]] = ("objective",)

    def __init__(self, *, objective: Objective = "reward") -> None:
        self.objective = check_objective(objective)
        self._sign = objective_sign(self.objective)

    # ----------------------------------------------------------- lifecycle
    def reset(
        self,
        n_arms: int,
        n_runs: int | None = None,
        random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> Policy:
        """Start afresh on ``n_arms`` arms for ``n_runs`` independent runs.

        Parameters
        ----------
        n_arms : int
            Number of arms, >= 2.
        n_runs : int or None, default None
            Number of runs stepped together, >= 1. ``None`` is single-run
            mode: :meth:`select` returns an int, :meth:`update` takes scalars
            and :meth:`action_probabilities` has shape (n_arms,).
        random_state : int, Generator, SeedSequence or None
            Seed of the policy's own random choices.

        Returns
        -------
        self
        """
        self.n_arms_ = check_int("n_arms", n_arms, low=2)
        self._single = n_runs is None
        self.n_runs_ = 1 if n_runs is None else check_int("n_runs", n_runs, low=1)
        self.step_ = 0
        self._rng = np.random.default_rng(random_state)
        self._offsets = np.arange(self.n_runs_) * self.n_arms_  # flat row starts
        self._cache: tuple[int, NDArray[np.float64]] | None = None
        self._reset_state()
        return self

    def clone(self) -> Policy:
        """A new, unreset policy with the same parameters."""
        return type(self)(**self.get_params())

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as given."""
        return {name: getattr(self, name) for name in self._param_names}

    # ------------------------------------------------------------- acting
    def action_probabilities(self) -> NDArray[np.float64]:
        """Probability of each arm at the current step.

        Returns
        -------
        ndarray of shape (n_runs, n_arms), or (n_arms,) in single-run mode
            What :meth:`select` samples from (a fresh array).
        """
        probs = self._current_probabilities().copy()
        return probs[0] if self._single else probs

    def select(self) -> NDArray[np.int64] | int:
        """Choose an arm in every run by sampling :meth:`action_probabilities`.

        Returns
        -------
        ndarray of int64 of shape (n_runs,), or int in single-run mode
        """
        actions = sample_rows(self._current_probabilities(), self._rng)
        return int(actions[0]) if self._single else actions

    def update(self, actions: ArrayLike, outcomes: ArrayLike) -> Policy:
        """Learn from the outcome of the arm pulled in each run, and advance a step.

        Parameters
        ----------
        actions : array_like of int of shape (n_runs,), or int in single-run mode
            Arm pulled in each run, in ``[0, n_arms)``.
        outcomes : array_like of float of shape (n_runs,), or float
            Observed reward (or cost, for ``objective="cost"``), finite.

        Returns
        -------
        self
        """
        self._check_reset()
        if (
            self._single
            and isinstance(actions, (int, np.integer))
            and not isinstance(actions, (bool, np.bool_))
            and isinstance(outcomes, (int, float, np.integer, np.floating))
        ):
            # One agent, one step: check scalars in Python, which is several
            # times cheaper than the array checks below for a 1-element array.
            arm, value = int(actions), float(outcomes)
            if not 0 <= arm < self.n_arms_:
                raise ValueError(f"actions must be in [0, {self.n_arms_}), got {arm}.")
            if not math.isfinite(value):
                raise ValueError("outcomes must be finite (no NaN or inf).")
            self._step(np.array([arm]), np.array([value]))
            return self
        a = np.asarray(actions)
        r = np.asarray(outcomes, dtype=np.float64)
        shape = () if self._single else (self.n_runs_,)
        if a.shape != shape or r.shape != shape:
            want = "scalars" if self._single else f"arrays of shape ({self.n_runs_},)"
            raise ValueError(
                f"actions and outcomes must be {want}, got shapes {a.shape} and {r.shape}."
            )
        # Integer-valued floats (from JSON, say) are accepted; 0.5 is not.
        is_integral = a.dtype.kind in "iu" or (
            a.dtype.kind == "f" and bool(np.array_equal(a, np.round(a)))
        )
        if not is_integral:
            raise TypeError(f"actions must be integers, got {a.dtype} values.")
        a = a.astype(np.int64).reshape(self.n_runs_)
        if ((a < 0) | (a >= self.n_arms_)).any():
            raise ValueError(f"actions must be in [0, {self.n_arms_}), got {a.min()}..{a.max()}.")
        r = r.reshape(self.n_runs_)
        if not np.isfinite(r).all():
            raise ValueError("outcomes must be finite (no NaN or inf).")
        self._step(a, r)
        return self

    def _step(self, actions: NDArray[np.int64], outcomes: NDArray[np.float64]) -> None:
        """Validated update: learn, then advance the clock (the testbed calls this)."""
        self._learn(actions, outcomes)
        self.step_ += 1

    def _current_probabilities(self) -> NDArray[np.float64]:
        """Probabilities at this step, computed once per step (select + update share them)."""
        self._check_reset()
        if self._cache is None or self._cache[0] != self.step_:
            self._cache = (self.step_, self._probabilities())
        return self._cache[1]

    def _check_reset(self) -> None:
        if not hasattr(self, "step_"):
            raise RuntimeError(
                f"{type(self).__name__} has no state yet: call reset(n_arms, n_runs, "
                f"random_state) first."
            )

    # ------------------------------------------------------ for subclasses
    @abstractmethod
    def _reset_state(self) -> None: ...

    @abstractmethod
    def _probabilities(self) -> NDArray[np.float64]: ...

    @abstractmethod
    def _learn(self, actions: NDArray[np.int64], outcomes: NDArray[np.float64]) -> None: ...

    # -------------------------------------------------------------- names
    @property
    def label(self) -> str:
        """Short human-readable name with the parameters, for tables and legends."""
        text = self._label()
        return text + " (cost)" if self.objective == "cost" else text

    @abstractmethod
    def _label(self) -> str: ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class _ValuePolicy(Policy):
    """A policy that acts on sample-average or constant-step value estimates."""

    _param_names: ClassVar[tuple[str, ...]] = ("step_size", "initial_value", "objective")

    def __init__(
        self,
        *,
        step_size: float | None = None,
        initial_value: float = 0.0,
        objective: Objective = "reward",
    ) -> None:
        super().__init__(objective=objective)
        self.step_size = check_step_size(step_size)
        self.initial_value = check_real("initial_value", initial_value)

    @property
    def values_(self) -> NDArray[np.float64]:
        """Value estimates, of shape (n_runs, n_arms) ((n_arms,) in single-run mode)."""
        self._check_reset()
        v = self._estimates.values
        return v[0] if self._single else v

    @property
    def counts_(self) -> NDArray[np.int64]:
        """Pull counts, of shape (n_runs, n_arms) ((n_arms,) in single-run mode)."""
        self._check_reset()
        c = self._estimates.counts
        return c[0] if self._single else c

    def _reset_state(self) -> None:
        self._estimates = ActionValues(
            self.n_runs_, self.n_arms_, step_size=self.step_size, initial_value=self.initial_value
        )

    def _learn(self, actions: NDArray[np.int64], outcomes: NDArray[np.float64]) -> None:
        self._estimates.update(actions, outcomes)

    def _preferences(self) -> NDArray[np.float64]:
        """Estimates oriented so that larger is better."""
        v = self._estimates.values
        return v if self._sign > 0 else -v

    def _estimate_label(self) -> str:
        parts = []
        if self.step_size is not None:
            parts.append(f"alpha={self.step_size:g}")
        if self.initial_value != 0.0:
            parts.append(f"Q1={self.initial_value:g}")
        return "".join(" " + p for p in parts)


class SoftmaxPolicy(_ValuePolicy):
    r"""Boltzmann exploration: draw arm :math:`a` with probability :math:`\propto e^{Q(a)/\tau}`.

    Parameters
    ----------
    temperature : float or callable, default 1.0
        :math:`\tau \ge 0`, or a schedule ``temperature(step) -> float`` such
        as :class:`~softmax.bandits.ExponentialDecay`; ``step`` counts the
        decisions already taken. ``0`` is greedy with random tie-breaking.
        It is in the units of the rewards: on the standard testbed (arm means
        of standard deviation 1) 0.2-0.25 does best among constants, and a
        cooling schedule does better still (docs/bandits.md).
    step_size : float or None, default None
        ``None``: sample-average estimates; else a constant step size in (0, 1].
    initial_value : float, default 0.0
        Initial value estimate (optimistic when above the rewards expected).
    objective : {"reward", "cost"}, default "reward"
        Maximise rewards or minimise costs (:math:`\propto e^{-Q(a)/\tau}`).

    See Also
    --------
    softmax.bandits.action_probabilities : the probabilities as a function.

    Examples
    --------
    >>> from softmax.bandits import SoftmaxPolicy, ExponentialDecay
    >>> SoftmaxPolicy(temperature=ExponentialDecay(1.0, 0.99, minimum=0.05)).label
    'softmax tau=exp(1*0.99^t,min=0.05)'
    """

    _param_names: ClassVar[tuple[str, ...]] = ("temperature", *_ValuePolicy._param_names)

    def __init__(
        self,
        temperature: Schedule = 1.0,
        *,
        step_size: float | None = None,
        initial_value: float = 0.0,
        objective: Objective = "reward",
    ) -> None:
        super().__init__(step_size=step_size, initial_value=initial_value, objective=objective)
        self.temperature = temperature
        self._temperature: Callable[[int], float] = as_schedule(temperature, "temperature")

    def _probabilities(self) -> NDArray[np.float64]:
        return _boltzmann_rows(self._preferences(), self._temperature(self.step_))

    def _label(self) -> str:
        return f"softmax tau={_format_schedule(self._temperature)}" + self._estimate_label()


class EpsilonGreedy(_ValuePolicy):
    r"""With probability :math:`\varepsilon` a uniformly random arm, else a greedy one.

    The greedy choice breaks ties uniformly at random, and the random arm may
    be the greedy one, so the greedy arm has probability
    :math:`1 - \varepsilon + \varepsilon / k` (Sutton & Barto, section 2.2).

    Parameters
    ----------
    epsilon : float or callable, default 0.1
        Exploration probability in [0, 1], or a schedule of the step.
    step_size, initial_value, objective
        As for :class:`SoftmaxPolicy`.
    """

    _param_names: ClassVar[tuple[str, ...]] = ("epsilon", *_ValuePolicy._param_names)

    def __init__(
        self,
        epsilon: Schedule = 0.1,
        *,
        step_size: float | None = None,
        initial_value: float = 0.0,
        objective: Objective = "reward",
    ) -> None:
        super().__init__(step_size=step_size, initial_value=initial_value, objective=objective)
        self.epsilon = epsilon
        self._epsilon: Callable[[int], float] = as_schedule(epsilon, "epsilon", high=1.0)

    def _probabilities(self) -> NDArray[np.float64]:
        eps = self._epsilon(self.step_)
        probs = argmax_probabilities(self._preferences())
        if eps > 0.0:
            probs *= 1.0 - eps
            probs += eps / self.n_arms_
        return probs

    def _label(self) -> str:
        return f"epsilon-greedy eps={_format_schedule(self._epsilon)}" + self._estimate_label()


class Greedy(_ValuePolicy):
    """Always an arm with the best estimate, ties broken uniformly at random.

    Parameters
    ----------
    step_size, initial_value, objective
        As for :class:`SoftmaxPolicy`. With optimistic initial values greedy
        selection still explores early on (Sutton & Barto, figure 2.3).
    """

    def _probabilities(self) -> NDArray[np.float64]:
        return argmax_probabilities(self._preferences())

    def _label(self) -> str:
        return "greedy" + self._estimate_label()


class UCB(_ValuePolicy):
    r"""Upper confidence bound: :math:`\arg\max_a Q(a) + c\sqrt{\ln t / N(a)}`.

    :math:`t` is the 1-based time step and :math:`N(a)` the pulls of arm
    :math:`a` so far; an arm never pulled counts as maximising, so every arm
    is tried once first. Ties are broken uniformly at random. For costs the
    rule is the lower bound :math:`\arg\min_a Q(a) - c\sqrt{\ln t / N(a)}`.

    Parameters
    ----------
    c : float, default 2.0
        Exploration weight, >= 0 (0 is greedy after the first round).
    step_size, initial_value, objective
        As for :class:`SoftmaxPolicy`.
    """

    _param_names: ClassVar[tuple[str, ...]] = ("c", *_ValuePolicy._param_names)

    def __init__(
        self,
        c: float = 2.0,
        *,
        step_size: float | None = None,
        initial_value: float = 0.0,
        objective: Objective = "reward",
    ) -> None:
        super().__init__(step_size=step_size, initial_value=initial_value, objective=objective)
        self.c = check_real("c", c, low=0.0)

    def _probabilities(self) -> NDArray[np.float64]:
        counts = self._estimates.counts
        log_t = math.log(self.step_ + 1)
        scores = self._preferences() + self.c * np.sqrt(log_t / np.maximum(counts, 1))
        # An untried arm has an infinite bonus; set it directly rather than
        # computing c * inf, which is NaN for c = 0.
        scores[counts == 0] = np.inf
        return argmax_probabilities(scores)

    def _label(self) -> str:
        return f"UCB c={self.c:g}" + self._estimate_label()


class GradientBandit(Policy):
    r"""Gradient bandit: softmax of learned preferences (Sutton & Barto, section 2.8).

    Arm :math:`a` is drawn with probability
    :math:`\pi(a) = e^{H(a)} / \sum_b e^{H(b)}`, and after reward :math:`R`
    for arm :math:`A` the preferences move by stochastic gradient ascent on
    the expected reward,

    .. math::

        H(a) \leftarrow H(a) + \alpha (R - \bar R)(\mathbb{1}_{a=A} - \pi(a)),

    where the baseline :math:`\bar R` is the average of all rewards so far,
    this one included (or 0 without a baseline). For costs, :math:`R - \bar R`
    is replaced by :math:`\bar C - C`.

    Parameters
    ----------
    alpha : float, default 0.1
        Step size, > 0.
    baseline : bool, default True
        Subtract the running average reward. Without it, learning is much
        slower whenever rewards are far from 0 (figure 2.5 of the book).
    objective : {"reward", "cost"}, default "reward"

    Attributes
    ----------
    preferences_ : ndarray of shape (n_runs, n_arms) ((n_arms,) in single-run mode)
    baseline_ : ndarray of shape (n_runs,) (float in single-run mode)
        Average outcome so far (0 before the first step).
    """

    _param_names: ClassVar[tuple[str, ...]] = ("alpha", "baseline", "objective")

    def __init__(
        self, alpha: float = 0.1, *, baseline: bool = True, objective: Objective = "reward"
    ) -> None:
        super().__init__(objective=objective)
        self.alpha = check_real("alpha", alpha, low=0.0, low_inclusive=False)
        if not isinstance(baseline, (bool, np.bool_)):
            raise TypeError(f"baseline must be True or False, got {baseline!r}.")
        self.baseline = bool(baseline)

    @property
    def preferences_(self) -> NDArray[np.float64]:
        self._check_reset()
        return self._h[0] if self._single else self._h

    @property
    def baseline_(self) -> NDArray[np.float64] | float:
        self._check_reset()
        return float(self._mean[0]) if self._single else self._mean

    def _reset_state(self) -> None:
        self._h = np.zeros((self.n_runs_, self.n_arms_))
        self._mean = np.zeros(self.n_runs_)

    def _probabilities(self) -> NDArray[np.float64]:
        return _boltzmann_rows(self._h, 1.0)

    def _learn(self, actions: NDArray[np.int64], outcomes: NDArray[np.float64]) -> None:
        pi = self._current_probabilities()  # the policy the action was drawn from
        self._mean += (outcomes - self._mean) / (self.step_ + 1)
        advantage = outcomes - self._mean if self.baseline else outcomes
        step = self.alpha * self._sign * advantage
        self._h -= step[:, None] * pi
        self._h.reshape(-1)[self._offsets + actions] += step

    def _label(self) -> str:
        return f"gradient alpha={self.alpha:g}" + ("" if self.baseline else " no baseline")
