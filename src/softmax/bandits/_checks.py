"""Argument checks shared by the bandit modules.

Every public constructor and function validates its arguments here, so that a
bad parameter fails at once with a message naming the parameter, the value it
got and the range it needs, rather than as a NaN deep inside a simulation.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np

Objective = Literal["reward", "cost"]

_OBJECTIVES = ("reward", "cost")


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a finite float, or raise a ValueError/TypeError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}."
        )
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}.")
    if low is not None and (x < low or (x == low and not low_inclusive)):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {bound} {low:g}, got {x!r}.")
    if high is not None and (x > high or (x == high and not high_inclusive)):
        bound = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {bound} {high:g}, got {x!r}.")
    return x


def check_int(name: str, value: object, *, low: int) -> int:
    """Return ``value`` as an int >= ``low``, or raise a ValueError/TypeError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}."
        )
    n = int(value)
    if n < low:
        raise ValueError(f"{name} must be >= {low}, got {n}.")
    return n


def check_objective(objective: object) -> Objective:
    """Return ``objective`` if it is ``"reward"`` or ``"cost"``, else raise ValueError."""
    if objective not in _OBJECTIVES:
        raise ValueError(
            f"objective must be 'reward' (maximise the outcome) or 'cost' (minimise it), "
            f"got {objective!r}."
        )
    return objective  # type: ignore[return-value]


def objective_sign(objective: Objective) -> float:
    """+1 for rewards, -1 for costs: the policies maximise ``sign * outcome``."""
    return 1.0 if objective == "reward" else -1.0
