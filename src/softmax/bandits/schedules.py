"""Schedules: a parameter (temperature, epsilon) as a function of the time step.

A schedule is any callable ``schedule(step) -> float``, where ``step`` is the
number of decisions already taken (0 for the first action). The classes here
cover the usual cases and validate their parameters; a plain function or
lambda works too and is checked each time it is called.

Examples
--------
>>> from softmax.bandits import ExponentialDecay, LinearDecay
>>> ExponentialDecay(1.0, 0.5)(2)
0.25
>>> LinearDecay(1.0, 0.0, n_steps=4)(1)
0.75
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from softmax.bandits._checks import check_int, check_real

__all__ = ["Constant", "ExponentialDecay", "LinearDecay", "Schedule", "as_schedule"]

#: What policies accept for a scheduled parameter: a number or a callable of the step.
Schedule = float | Callable[[int], float]


@dataclass(frozen=True)
class Constant:
    """The same value at every step.

    Parameters
    ----------
    value : float
        The value, >= 0.
    """

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_real("value", self.value, low=0.0))

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class ExponentialDecay:
    """``max(minimum, initial * decay ** step)``: geometric cooling.

    Parameters
    ----------
    initial : float
        Value at step 0, >= 0.
    decay : float
        Factor applied per step, in (0, 1]. ``0.99`` halves the value about
        every 69 steps.
    minimum : float, default 0.0
        Floor the value never goes below, >= 0 (a positive floor keeps some
        exploration forever).
    """

    initial: float
    decay: float
    minimum: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", check_real("initial", self.initial, low=0.0))
        object.__setattr__(
            self, "decay", check_real("decay", self.decay, low=0.0, low_inclusive=False, high=1.0)
        )
        object.__setattr__(self, "minimum", check_real("minimum", self.minimum, low=0.0))

    def __call__(self, step: int) -> float:
        # decay ** step underflows gracefully to 0.0 for large steps (no warning
        # for Python floats), so the floor takes over.
        return max(self.minimum, self.initial * self.decay**step)


@dataclass(frozen=True)
class LinearDecay:
    """Straight line from ``initial`` at step 0 to ``final`` at ``n_steps``, then ``final``.

    Parameters
    ----------
    initial : float
        Value at step 0, >= 0.
    final : float
        Value from step ``n_steps`` on, >= 0 (it may be larger than
        ``initial``, for a schedule that warms up).
    n_steps : int
        Length of the ramp, >= 1.
    """

    initial: float
    final: float
    n_steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", check_real("initial", self.initial, low=0.0))
        object.__setattr__(self, "final", check_real("final", self.final, low=0.0))
        object.__setattr__(self, "n_steps", check_int("n_steps", self.n_steps, low=1))

    def __call__(self, step: int) -> float:
        frac = min(step, self.n_steps) / self.n_steps
        # Interpolate as a convex combination so that both end points are exact.
        return (1.0 - frac) * self.initial + frac * self.final


def as_schedule(
    value: Schedule, name: str, *, high: float | None = None
) -> Callable[[int], float]:
    """Turn a number or a callable into a validated schedule.

    Parameters
    ----------
    value : float or callable
        A number (checked now: finite, >= 0 and <= ``high``) or a callable of
        the step (its results are checked on every call).
    name : str
        Parameter name used in error messages (``"temperature"``).
    high : float, optional
        Upper bound for the values (1 for epsilon).

    Returns
    -------
    callable
        ``schedule(step) -> float``.
    """
    if isinstance(value, (Constant, ExponentialDecay, LinearDecay)):
        # Validated when built; only the upper bound (epsilon <= 1) is left.
        if high is not None and value(0) > high:
            raise ValueError(f"{name} must be <= {high:g}, got {value(0)!r} at step 0.")
        return _CheckedSchedule(value, name, high) if high is not None else value
    if callable(value):
        return _CheckedSchedule(value, name, high)
    check_real(name, value, low=0.0, high=high)
    return Constant(float(value))


@dataclass(frozen=True)
class _CheckedSchedule:
    """Wraps a user callable so a bad value fails loudly at the step it appears."""

    function: Callable[[int], float]
    name: str
    high: float | None

    def __call__(self, step: int) -> float:
        value = self.function(step)
        try:
            return check_real(self.name, value, low=0.0, high=self.high)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{self.name} schedule at step {step}: {exc}") from None

    def __repr__(self) -> str:
        return repr(self.function)


def _format_schedule(schedule: Callable[[int], float]) -> str:
    """Short text for labels: the number, the decay formula, or the function name."""
    if isinstance(schedule, Constant):
        return f"{schedule.value:g}"
    if isinstance(schedule, ExponentialDecay):
        floor = f",min={schedule.minimum:g}" if schedule.minimum else ""
        return f"exp({schedule.initial:g}*{schedule.decay:g}^t{floor})"
    if isinstance(schedule, LinearDecay):
        return f"lin({schedule.initial:g}->{schedule.final:g} in {schedule.n_steps})"
    if isinstance(schedule, _CheckedSchedule):
        schedule = schedule.function
        if isinstance(schedule, (Constant, ExponentialDecay, LinearDecay)):
            return _format_schedule(schedule)
    name = getattr(schedule, "__name__", None)
    return name if name and name != "<lambda>" else "schedule"
