"""What a solver is asked to do (:class:`Problem`) and what it answers (:class:`SolverResult`).

A solver sees a :class:`Problem`, never an estimator: the rows (a
:class:`~softmax.backends._base.RowData`, with the sample and class weights
already folded into one weight per row), the penalty and its strength, and
the settings that are not the solver's own (verbosity, randomness). How a
solver goes about it (history sizes, preconditioners, the stochastic
optimizer) are options of the solver object itself, so that one problem can
be handed to any solver: compared, warm-started along a path of ``C``, or
solved again by another method.

The objective is scikit-learn's ``LogisticRegression`` objective
(``docs/solvers.md``):

.. math::

    F(W, b) = C \\sum_i s_i \\, CE(t_i, \\operatorname{softmax}(W x_i + b))
              + \\frac{1 - \\rho}{2} \\lVert W \\rVert_F^2 + \\rho \\lVert W \\rVert_1 ,

with ``t_i`` the one-hot label, or its smoothed form (``label_smoothing``,
carried by the rows). With ``l1_type="grouped"``, ``rho sum_j ||W[:, j]||_2``
replaces ``rho ||W||_1`` (:class:`~softmax.penalties.GroupLasso`).
``C = inf`` is the unpenalised problem (the penalty term vanishes and ``F``
is reported as the data term alone). Without a penalty the symmetric
parametrisation is not identifiable: adding one vector to every class's
coefficients changes nothing. Solvers then return the representative whose
coefficients sum to zero over the classes (column by column), or, with a
*reference class*, the one whose reference row is zero.

A reference class (``reference``, a class code) fixes one row of ``coef`` at
zero: the baseline-category parametrisation of statsmodels' ``MNLogit`` and
R's ``nnet::multinom``, in which the other rows are log-odds against that
class. It is handled once, in :class:`~softmax.solvers._base.Objective`:
gradients, Hessian products and Hessians are restricted to the free rows and
every preconditioner keeps the fixed row's zeros, so each solver, unchanged,
works on the free rows only. The penalty, being a sum over rows, then falls
on the free rows alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmax.backends._base import RowData
from softmax.penalties import L1_TYPES, Penalty, make_penalty

__all__ = ["Problem", "SolverResult"]


@dataclass(frozen=True)
class Problem:
    """A penalised softmax regression problem over some rows.

    Parameters
    ----------
    data : RowData
        The rows, wherever they live; their weights ``s_i`` are folded in.
    C : float, default 1.0
        Inverse regularisation strength, ``0 < C <= inf`` (``inf``: no penalty).
    l1_ratio : float in [0, 1], default 0.0
        Share of the L1 norm in the penalty (elastic net).
    verbose : int, default 0
        Progress lines (and bars, for the stochastic solver) when > 0.
    random_state : int, numpy.random.Generator or None, default None
        Randomness of the stochastic solver (shuffles); unused by the others.
    reference : int or None, default None
        Code of the reference class: its row of ``coef`` (weights and
        intercept) is fixed at zero and the solvers work on the other rows.
        None: the symmetric parametrisation (one free row per class).
    l1_type : {"elementwise", "grouped"}, default "elementwise"
        What the ``l1_ratio`` share of the penalty sums: the absolute values
        of the weights (L1 / elastic net), or, ``"grouped"``, the Euclidean
        norms of the features' columns ``W[:, j]`` (the group lasso across
        classes, :class:`~softmax.penalties.GroupLasso`).

    Raises
    ------
    ValueError
        For a ``C`` that is not a positive number, an ``l1_ratio`` outside
        [0, 1], a ``reference`` that is not a class code, an unknown
        ``l1_type``, or rows whose weights sum to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax.backends.memory import InMemoryData
    >>> rows = InMemoryData(np.eye(3), np.arange(3), None, np.arange(3), fit_intercept=False)
    >>> problem = Problem(rows, C=10.0, l1_ratio=0.5)
    >>> problem.coef_shape, problem.penalty.l2, problem.has_l1
    ((3, 3), 0.5, True)
    """

    data: RowData
    C: float = 1.0
    l1_ratio: float = 0.0
    verbose: int = 0
    random_state: Any = field(default=None, compare=False)
    reference: int | None = None
    l1_type: str = "elementwise"

    def __post_init__(self) -> None:
        C = self.C
        if (
            isinstance(C, bool)
            or not isinstance(C, (int, float, np.integer, np.floating))
            or not C > 0
            or math.isnan(C)
        ):
            raise ValueError(f"C must be a positive number (inf: no penalty), got {C!r}")
        if not 0.0 <= self.l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio!r}")
        if self.l1_type not in L1_TYPES:
            raise ValueError(f"l1_type must be one of {list(L1_TYPES)}, got {self.l1_type!r}")
        if not self.data.weight_sum > 0:
            raise ValueError("the sum of the sample weights must be positive")
        ref = self.reference
        if ref is not None:
            K = int(self.data.n_classes)
            if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not 0 <= ref < K:
                raise ValueError(
                    f"reference must be a class code in 0..{K - 1} or None, got {ref!r}"
                )
            object.__setattr__(self, "reference", int(ref))
        object.__setattr__(self, "C", float(C))
        object.__setattr__(self, "l1_ratio", float(self.l1_ratio))
        object.__setattr__(self, "verbose", int(self.verbose or 0))

    @property
    def label_smoothing(self) -> float:
        """``eps`` of the rows' smoothed targets (``RowData.label_smoothing``; 0: none).

        It belongs to the rows, like their weights: every backend computes
        its data term with it, and solvers that form residuals themselves
        (the stochastic ones) read it here.
        """
        return float(self.data.label_smoothing)

    @property
    def penalised(self) -> bool:
        """Whether the objective has a penalty term (``C < inf``)."""
        return math.isfinite(self.C)

    @property
    def penalty(self) -> Penalty:
        """The penalty ``r(W)`` at unit strength (weight 1 in ``F``; 0 when ``C = inf``)."""
        return make_penalty(
            self.l1_ratio, fit_intercept=self.data.fit_intercept, l1_type=self.l1_type
        )

    @property
    def has_l1(self) -> bool:
        """Whether the penalty has a non-smooth part (an L1 or group norm)."""
        return self.penalised and self.l1_ratio > 0

    @property
    def has_group(self) -> bool:
        """Whether the non-smooth part is the group norm (``l1_type="grouped"``)."""
        return self.has_l1 and self.l1_type == "grouped"

    @property
    def coef_shape(self) -> tuple[int, int]:
        """``(n_classes, n_features + fit_intercept)``."""
        return self.data.coef_shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype the rows are computed in."""
        return np.dtype(self.data.dtype)


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes
    ----------
    coef : ndarray of shape (n_classes, n_features + fit_intercept), float64
        The solution; the last column holds the intercepts when fitted.
    n_iter : int
        Iterations done (outer iterations for Newton solvers, epochs for sgd).
    converged : bool
        Whether the stopping criterion was met before ``max_iter``.
    objective : float
        ``C * sum_i s_i CE_i + r(W)`` at ``coef`` (scikit-learn's objective;
        the data term alone when ``C = inf``).
    n_passes : int
        Passes over the rows (loss/gradient evaluations and Hessian products).
    message : str
        Why the solver stopped.
    history : list of float
        The objective after each iteration.
    """

    coef: np.ndarray
    n_iter: int
    converged: bool
    objective: float
    n_passes: int
    message: str = ""
    history: list[float] = field(default_factory=list)
