r"""Action-value estimates for many independent runs at once.

Each run keeps an estimate :math:`Q(a)` of the mean outcome of each arm and
the number of times :math:`N(a)` it pulled it. After pulling arm :math:`a`
and observing outcome :math:`R`,

.. math::

    Q(a) \leftarrow Q(a) + \alpha_n \,(R - Q(a)),

with :math:`\alpha_n = 1/N(a)` for the sample average (every observation
weighs the same; the initial value is forgotten after the first pull) or a
constant :math:`\alpha` (an exponential recency-weighted average that tracks
drifting arms and remembers the initial value with weight
:math:`(1-\alpha)^n`). A large initial value is *optimistic*: it makes every
untried arm look good and drives early exploration (Sutton & Barto, 2nd ed.,
section 2.6).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from softmax.bandits._checks import check_int, check_real

__all__ = ["ActionValues"]


class ActionValues:
    """Per-run, per-arm value estimates and pull counts.

    Parameters
    ----------
    n_runs : int
        Number of independent runs, >= 1.
    n_arms : int
        Number of arms, >= 2.
    step_size : float or None, default None
        ``None`` for sample averages, else a constant step size in (0, 1].
    initial_value : float, default 0.0
        Initial estimate of every arm (finite); larger than the rewards
        expected makes the estimates optimistic.

    Attributes
    ----------
    values : ndarray of shape (n_runs, n_arms)
        Current estimates, in the units of the outcomes (rewards or costs).
    counts : ndarray of int64 of shape (n_runs, n_arms)
        Number of pulls of each arm in each run.
    """

    def __init__(
        self,
        n_runs: int,
        n_arms: int,
        *,
        step_size: float | None = None,
        initial_value: float = 0.0,
    ) -> None:
        n_runs = check_int("n_runs", n_runs, low=1)
        n_arms = check_int("n_arms", n_arms, low=2)
        self.step_size = check_step_size(step_size)
        self.initial_value = check_real("initial_value", initial_value)
        self.values = np.full((n_runs, n_arms), self.initial_value, dtype=np.float64)
        self.counts = np.zeros((n_runs, n_arms), dtype=np.int64)
        self._offsets = np.arange(n_runs) * n_arms  # start of each run's row, flat

    def update(self, actions: NDArray[np.int64], outcomes: NDArray[np.float64]) -> None:
        """Fold one outcome per run into the estimate of the arm it pulled.

        Parameters
        ----------
        actions : ndarray of int of shape (n_runs,)
            Arm pulled in each run (already validated).
        outcomes : ndarray of float64 of shape (n_runs,)
            Observed outcome in each run (already validated: finite).
        """
        # Flat indices: one 1-D gather/scatter is cheaper than 2-D fancy
        # indexing, and each run touches exactly one entry, so no duplicates.
        idx = self._offsets + actions
        counts = self.counts.reshape(-1)
        values = self.values.reshape(-1)
        counts[idx] += 1
        old = values[idx]
        if self.step_size is None:
            values[idx] = old + (outcomes - old) / counts[idx]
        else:
            values[idx] = old + self.step_size * (outcomes - old)


def check_step_size(step_size: float | None) -> float | None:
    """None (sample average) or a float in (0, 1]."""
    if step_size is None:
        return None
    return check_real("step_size", step_size, low=0.0, low_inclusive=False, high=1.0)
