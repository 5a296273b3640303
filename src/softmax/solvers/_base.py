"""What every solver shares: the interface, the scaled objective, progress, stopping.

:class:`Solver` is the one interface: ``solver.solve(problem, coef0, *, tol,
max_iter, callback) -> SolverResult``. Each solver is a frozen dataclass
whose fields are its options (history sizes, preconditioners, the stochastic
optimizer), declares what it asks of the rows (``needs``, a set of
:class:`~softmax.backends._base.Capability`) and whether it handles an L1
term, and says in ``tol_controls`` what its ``tol`` stops on.

``tol`` has one meaning for every solver: the *relative objective gap*
``(F - F*) / |F|`` the solver aims for. Each solver estimates the gap its own
way (Newton decrement, quasi-Newton curvature, the rate of decrease) and
says how in ``tol_controls``; :func:`check_stopping` validates ``tol`` and
``max_iter`` once, for all of them.

Solvers work on the rescaled ``f = F / (C * weight_sum)`` (:class:`Objective`):
the data term becomes a weighted *mean* (of order one whatever ``n`` and
``C``), which keeps first step sizes and curvature estimates sensible; it
changes neither the minimiser nor relative objective gaps. Results report
``F`` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from softmax.backends._base import Capability, RowData
from softmax.penalties import Penalty, make_penalty
from softmax.solvers._problem import Problem, SolverResult

__all__ = [
    "BLAS_THREADS",
    "Callback",
    "Monitor",
    "Objective",
    "RateGapEstimate",
    "Run",
    "Solver",
    "check_stopping",
    "f_noise_level",
    "gap_not_reached",
    "initial_coef",
    "sum_zero_subspace",
    "takes_gap",
]

#: ``callback(iteration, objective)``, or ``callback(iteration, objective, gap=...)``
#: for a callback that takes ``gap`` (see :class:`Monitor`)
Callback = Callable[..., None]

#: BLAS threads the solvers run with (None: leave the pools as they are).
#: One, deliberately: a pass works in row blocks that fit in cache, i.e. many
#: small GEMMs, and on a 2-core machine two OpenBLAS threads made such a pass
#: 7x *slower* (thread wake-ups per call, two pools contending), while they
#: sped the bare big products up only 1.7x. Measured in
#: benchmarks/results/loss.md; see docs/solvers.md. Row threads
#: (softmax.backends.memory.N_THREADS) use the other cores instead.
BLAS_THREADS: int | None = 1


def check_stopping(tol: Any, max_iter: Any) -> tuple[float, int]:
    """``tol`` and ``max_iter`` validated (the one check, for every solver).

    Raises
    ------
    ValueError
        For a negative or non-numeric ``tol`` or a negative or non-integer
        ``max_iter``.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.integer, np.floating))
        or not tol >= 0
    ):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    return float(tol), int(max_iter)


class Objective:
    """The rescaled objective ``f = F / (C * weight_sum)`` of a :class:`Problem`.

    Parameters
    ----------
    problem : Problem

    Attributes
    ----------
    data : RowData
    scale : float
        ``F = scale * f``: ``C * weight_sum``, or ``weight_sum`` when ``C = inf``
        (``F`` is then the data term alone).
    loss_scale : float
        ``1 / weight_sum``: the data term of ``f`` is ``loss_scale`` times the sum.
    penalty : Penalty
        The penalty of ``f``: strength ``1 / (C * weight_sum)`` (0 when ``C = inf``).
    shape : tuple of int
        ``coef_shape``.
    """

    def __init__(self, problem: Problem) -> None:
        data = problem.data
        self.problem = problem
        self.data: RowData = data
        self.C = problem.C
        self.l1_ratio = problem.l1_ratio
        weight_sum = float(data.weight_sum)
        self.loss_scale = 1.0 / weight_sum
        self.scale = self.C * weight_sum if problem.penalised else weight_sum
        strength = 1.0 / self.scale if problem.penalised else 0.0
        self.penalty: Penalty = make_penalty(
            self.l1_ratio,
            fit_intercept=data.fit_intercept,
            strength=strength,
            l1_type=problem.l1_type,
        )
        self.shape = data.coef_shape
        #: the row of ``coef`` fixed at zero (the reference class), or None
        self.fixed_row: int | None = problem.reference
        #: whether the solvers move in the class-sum-zero subspace (see restrict)
        self.sum_zero: bool = sum_zero_subspace(problem)
        #: whether the solvers keep the intercepts summing to zero (see restrict)
        self.center_intercepts: bool = centered_intercepts(problem) and not self.sum_zero
        # what depends on the rows alone, kept on them (see feature_factor)
        self._row_cache = _row_cache(data)

    @property
    def feature_factor(self) -> Any:
        """The feature factor of the Kronecker preconditioner, or None before it is built.

        See :mod:`softmax.solvers._preconditioners`. It depends on the rows
        alone (their covariance), so it is kept on ``data``: a
        regularisation path refits the same rows object at every ``C``
        (``SoftmaxRegression._kept_in_memory_data``) and builds it once.
        """
        return self._row_cache.get("feature_factor")

    @feature_factor.setter
    def feature_factor(self, value: Any) -> None:
        self._row_cache["feature_factor"] = value

    @property
    def block_split(self) -> Any:
        """The leading/trailing split of that factor's eigenbasis (class blocks), or None.

        Kept with the factor (its identity also keeps the backend's projected
        rows, ``subspace_curvature``, from one fit to the next).
        """
        return self._row_cache.get("block_split")

    @block_split.setter
    def block_split(self, value: Any) -> None:
        self._row_cache["block_split"] = value

    # -- the reference class: the solvers see only the free rows ------------------
    def restrict(self, V: np.ndarray) -> np.ndarray:
        """Project ``V`` (shape of ``coef``) in place onto the solvers' subspace; return it.

        With a reference class, zero its fixed row. Otherwise, where
        :func:`sum_zero_subspace` holds, subtract the mean over the classes
        from every column, so that the columns sum to zero over the classes;
        where only :func:`centered_intercepts` holds (an elementwise L1
        part), from the intercept column alone.

        Applied to every gradient, Hessian product and Hessian this objective
        returns (and by L-BFGS to its directions), so that a solver's steps
        never leave the subspace: its directions are combinations of
        restricted gradients, and every preconditioner keeps a zero row zero
        (see :mod:`softmax.solvers._preconditioners`).

        Why the class sums: softmax ignores a vector added to every class row,
        so the exact gradient's class sums are zero at any point whose
        weights sum to zero. In float32 they are not: each row adds ``(sum_k
        p_ik - 1) x_i``, rounding of order ``1e-7 |x_i|``, and on features of
        raw scale (thousands) these sums are no longer small. The Kronecker
        preconditioner has no data curvature along that direction (only the
        penalty's, ``1 / (C n)``), so it scales the noise up by ``C n`` and
        the weights drift along a direction that only costs penalty: the line
        search then stalls above a relative gap of 1e-6.

        Why the intercepts under an L1 part: the objective is exactly flat
        along an equal shift of the unpenalised intercepts, so nothing bounds
        a solver's steps along it but its own curvature model. OWL-QN on
        digits (pure L1, C = 1000 ``min_c``) drifted there to intercepts of
        1e10, where the logits lose six digits to rounding and the line
        search fails at a relative gap of 6e-5.
        """
        if self.fixed_row is not None:
            V[self.fixed_row] = 0.0
        elif self.sum_zero and V.shape[0] > 1:
            # V.mean(axis=0), the same numbers without _methods._mean's overhead
            # (a quarter of the call; several calls per Newton-CG step)
            V -= np.add.reduce(V, axis=0) / V.shape[0]
        elif self.center_intercepts:
            V[:, -1] -= V[:, -1].mean()
        return V

    # -- smooth part: data term plus the L2 part of the penalty ----------------
    def smooth(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        """Smooth part of ``f`` and its gradient at ``coef`` (one pass)."""
        loss, grad = self.data.loss_gradient(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        return f, self.restrict(grad)

    def smooth_value(self, coef: np.ndarray) -> float:
        """Smooth part of ``f`` alone (one pass, no gradient product)."""
        return self.data.loss(coef) * self.loss_scale + self.penalty.smooth_value(coef)

    def smooth_hessp(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Smooth ``f``, its gradient and ``V -> H V`` (each product one pass)."""
        loss, grad, hp = self.data.gradient_hessian_product(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        pen = self.penalty
        s = self.loss_scale
        fixed = self.fixed_row

        def hessp(V: np.ndarray) -> np.ndarray:
            if (fixed is not None and np.any(V[fixed])) or self.sum_zero:
                # P H P: the free rows, or the class-sum-zero subspace, only
                V = self.restrict(np.array(V, dtype=np.float64))
            out = hp(V)
            out *= s
            return self.restrict(pen.add_smooth_hessp(V, out))

        return f, self.restrict(grad), hessp

    def smooth_hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Smooth ``f``, gradient, and full Hessian (C-order flattening of ``coef``)."""
        loss, grad, H = self.data.hessian(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        H *= self.loss_scale
        H[np.diag_indices_from(H)] += self.penalty.smooth_hessian_diagonal(self.shape)
        if self.fixed_row is not None:
            # P H P on the free rows, and a positive diagonal on the fixed row's
            # entries (their gradient is zero, so Newton steps leave them at 0)
            q = self.shape[1]
            rows = slice(self.fixed_row * q, (self.fixed_row + 1) * q)
            diag = np.diag(H)
            unit = float(diag[diag > 0].mean()) if np.any(diag > 0) else 1.0
            H[rows, :] = 0.0
            H[:, rows] = 0.0
            H[rows, rows] = unit * np.eye(q)
        return f, self.restrict(grad), H

    def nonsmooth(self, coef: np.ndarray) -> float:
        """The L1 part of ``f``."""
        return self.penalty.nonsmooth_value(coef)

    def unscaled(self, f: float) -> float:
        """``F`` from ``f``."""
        return f * self.scale

    def null_space(self) -> np.ndarray | None:
        """Orthonormal rows spanning the directions along which ``f`` is flat, or None.

        Softmax ignores a vector added to every class's coefficients, so the
        data term is flat along ``1 (x) v``. With an L2 penalty only the
        intercepts' shift (``v = e_intercept``) stays flat (the intercept is
        unpenalised); without a penalty (``C = inf``) every column's shift
        does; with a fixed reference row none does. The Hessian is singular
        along these directions and the gradient orthogonal to them.

        Returns
        -------
        ndarray of shape (n_null, n_coef) or None
            Rows are C-order flattenings of ``coef``-shaped directions.
        """
        if self.fixed_row is not None:
            return None
        K, q = self.shape
        if self.problem.penalised:
            if not self.data.fit_intercept:
                return None
            cols = [q - 1]
        else:
            cols = list(range(q))
        U = np.zeros((len(cols), K, q))
        for i, j in enumerate(cols):
            U[i, :, j] = 1.0 / math.sqrt(K)
        return U.reshape(len(cols), K * q)


def takes_gap(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` accepts a ``gap`` keyword (named, or through ``**kwargs``)."""
    import inspect

    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the plain form
        return False
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(
        (p.name == "gap" and p.kind in named) or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


class Monitor:
    """Records the objective per iteration, calls the callback, prints progress.

    Parameters
    ----------
    name : str
        Solver name, for messages.
    objective : Objective
    callback : callable or None
        ``callback(iteration, objective)`` with the unscaled objective; a
        callback that takes a ``gap`` keyword also gets the solver's estimate
        of the relative objective gap ``(F - F*) / |F|`` that ``tol`` is
        compared with (None from solvers that make none, e.g. "sgd"), so that
        a progress display can show how far the fit is from ``tol``.
    """

    def __init__(self, name: str, objective: Objective, callback: Callback | None) -> None:
        self.name = name
        self.objective = objective
        self.verbose = objective.problem.verbose
        self.callback = callback
        self._gap = callback is not None and takes_gap(callback)
        self.history: list[float] = []
        self._t0 = time.perf_counter()

    def __call__(self, iteration: int, f_scaled: float, **info: float) -> None:
        F = self.objective.unscaled(f_scaled)
        self.history.append(F)
        if self.verbose:
            extra = "".join(f"  {k}={v:.3e}" for k, v in info.items())
            print(
                f"[{self.name}] iter {iteration:4d}  objective={F:.10e}{extra}  "
                f"passes={self.objective.data.n_passes}  "
                f"t={time.perf_counter() - self._t0:.2f}s",
                flush=True,
            )
        if self._gap:
            gap = info.get("gap")
            self.callback(iteration, F, gap=None if gap is None else float(gap))
        elif self.callback is not None:
            self.callback(iteration, F)

    def result(
        self, coef: np.ndarray, n_iter: int, converged: bool, f_scaled: float, message: str
    ) -> SolverResult:
        if self.verbose:
            print(f"[{self.name}] {message}", flush=True)
        coef = np.array(coef, dtype=np.float64, order="C")
        obj = self.objective
        if obj.fixed_row is not None:
            coef[obj.fixed_row] = 0.0  # kept there by every step; exact zeros
        elif not obj.problem.penalised:
            # No penalty: the objective is flat along the same vector added to
            # every class's coefficients; report the representative whose
            # coefficients sum to zero over the classes, whatever the path.
            coef -= coef.mean(axis=0)
        elif obj.data.fit_intercept:
            # The objective is flat along an equal shift of all intercepts;
            # report the representative with intercepts summing to zero (what
            # scikit-learn's solvers return), whatever path the solver took.
            coef[:, -1] -= coef[:, -1].mean()
        return SolverResult(
            coef=coef,
            n_iter=int(n_iter),
            converged=bool(converged),
            objective=float(self.objective.unscaled(f_scaled)),
            n_passes=int(self.objective.data.n_passes),
            message=message,
            history=list(self.history),
        )


def _row_cache(data: RowData) -> dict[str, Any]:
    """A dict kept on ``data`` for what solvers derive from the rows alone.

    Rows are never changed after a backend is built, so what depends on them
    only (not on ``C`` or the coefficients) stays valid for every problem on
    the same rows object; backends that do not take attributes get a dict
    per objective.
    """
    cache = getattr(data, "_solver_row_cache", None)
    if cache is None:
        cache = {}
        # slotted or frozen backends: a dict per objective
        with contextlib.suppress(AttributeError):
            data._solver_row_cache = cache  # type: ignore[attr-defined]
    return cache


class RateGapEstimate:
    """Estimate of ``f - f*`` from the recent decrease of ``f``.

    Curvature-based estimates (``g^T H_k^-1 g / 2`` from L-BFGS) see only
    the directions the method has explored and underestimate the gap on
    ill-conditioned problems (measured: by 20-50x on raw digits). A linearly
    converging method, though, shows its rate: if the decrease over the last
    ``window`` iterations is ``D2`` and over the ``window`` before ``D1``, then
    with ``rho = D2 / D1`` the remaining gap is about
    ``D2 rho / (1 - rho)`` (a geometric series). Solvers stop only when this
    and their own estimate are both small.

    Parameters
    ----------
    window : int
        Iterations per window.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = int(window)
        self.values: list[float] = []

    def add(self, f: float) -> None:
        self.values.append(float(f))

    def estimate(self) -> float:
        """The estimated gap (``inf`` until two windows have been seen)."""
        w = self.window
        v = self.values
        if len(v) < 2 * w + 1:
            return math.inf
        d1 = v[-2 * w - 1] - v[-w - 1]
        d2 = v[-w - 1] - v[-1]
        if d2 <= 0:
            return 0.0  # no decrease at all over a whole window: stalled
        if d1 <= 0:
            return math.inf
        rho = min(d2 / d1, 0.999)
        return d2 * rho / (1.0 - rho)


def gap_not_reached(max_iter: int, tol: float) -> str:
    """The message of a solver stopped by ``max_iter``."""
    return f"reached max_iter={max_iter} before the estimated relative gap fell below {tol:g}"


def f_noise_level(data: RowData) -> float:
    """Relative rounding noise of the objective computed on ``data``'s rows.

    float32 logits carry relative errors near 6e-8, so the summed loss is
    only reliable to about 1e-6 relative; line searches then judge decrease
    from directional derivatives (see ``wolfe_line_search``).
    """
    return 1e-6 if np.dtype(data.dtype) == np.float32 else 1e-13


def sum_zero_subspace(problem: Problem) -> bool:
    """Whether an optimum of ``problem`` has coefficients summing to zero over the classes.

    True without a reference class and with no L1 part: the data term is
    flat along a vector added to every class row, and the L2 penalty (when
    there is one) is smallest, along that direction, where the rows sum to
    zero; the unpenalised intercepts are flat along it. The solvers then
    start there (:func:`initial_coef`) and stay there
    (:meth:`Objective.restrict`). An L1 part is not smallest at the mean, and
    a reference row pins the representative. The group norm of a column is,
    like its squared norm, smallest along that direction at the mean (both
    depend on the column's Euclidean norm alone), and block soft thresholding
    scales a column, keeping its sum zero: the grouped penalty stays here.
    """
    return problem.reference is None and (problem.l1_ratio == 0.0 or problem.l1_type == "grouped")


def centered_intercepts(problem: Problem) -> bool:
    """Whether the solvers keep the intercepts summing to zero over the classes.

    True for a penalised problem with an intercept, more than one class and
    no reference class: the objective is flat along an equal shift of the
    unpenalised intercepts (softmax ignores it), whatever the penalty.
    """
    return (
        problem.reference is None
        and problem.penalised
        and problem.data.fit_intercept
        and problem.coef_shape[0] > 1
    )


def initial_coef(problem: Problem, coef0: np.ndarray | None) -> np.ndarray:
    """A float64 C-contiguous copy of ``coef0`` checked against the problem, or zeros.

    With a reference class the reference row is subtracted from every row
    (the same probabilities, the reference row at zero). Where
    :func:`sum_zero_subspace` holds, the class mean is subtracted from every
    column (the same probabilities, a penalty no larger).
    """
    shape = problem.coef_shape
    if coef0 is None:
        return np.zeros(shape, dtype=np.float64)
    coef = np.array(coef0, dtype=np.float64, order="C", copy=True)
    if coef.shape != shape:
        raise ValueError(
            f"coef0 has shape {coef.shape}; expected {shape} "
            "(n_classes, n_features + fit_intercept)"
        )
    if not np.all(np.isfinite(coef)):
        raise ValueError("coef0 contains NaN or inf")
    if problem.reference is not None:
        # the same probabilities with the reference row at zero
        coef -= coef[problem.reference]
    elif sum_zero_subspace(problem) and coef.shape[0] > 1:
        coef -= coef.mean(axis=0)
    elif centered_intercepts(problem):
        coef[:, -1] -= coef[:, -1].mean()  # the same probabilities and penalty
    return coef


@dataclasses.dataclass(frozen=True)
class Run:
    """One call of a solver: the problem, where to start, when to stop, whom to tell.

    Attributes
    ----------
    problem : Problem
    coef0 : ndarray of shape (n_classes, n_features + fit_intercept)
        The starting point, checked and copied (the solver may overwrite it).
    tol : float
        The relative objective gap to reach (see ``Solver.tol_controls``).
    max_iter : int
    callback : callable or None
        ``callback(iteration, objective)`` once per iteration.
    """

    problem: Problem
    coef0: np.ndarray
    tol: float
    max_iter: int
    callback: Callback | None = None

    def objective(self, name: str) -> tuple[Objective, Monitor]:
        """The problem's scaled objective, and a monitor reporting under ``name``."""
        obj = Objective(self.problem)
        return obj, Monitor(name, obj, self.callback)


@dataclasses.dataclass(frozen=True)
class Solver(ABC):
    """One minimisation method behind the one interface.

    Subclasses are frozen dataclasses whose fields are their options, and set
    the class attributes below. :meth:`solve` checks the problem against
    what the solver needs, validates ``tol`` and ``max_iter`` and the
    starting point, limits the BLAS threads and runs :meth:`_solve`.
    """

    #: the name the estimator's ``solver=`` uses
    name: ClassVar[str]
    #: what the solver asks of the rows beyond loss and gradient
    needs: ClassVar[frozenset[Capability]] = frozenset()
    #: whether it handles an L1 part of the penalty
    supports_l1: ClassVar[bool] = False
    #: whether it handles the group norm (``l1_type="grouped"``)
    supports_group: ClassVar[bool] = False
    #: what ``tol`` stops on, in this solver (for messages and docs)
    tol_controls: ClassVar[str]

    def with_options(self, **options: Any) -> Solver:
        """A copy with some options changed.

        Raises
        ------
        TypeError
            For an option this solver does not have (the message lists those it has).
        """
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"solver {self.name!r} got unknown option(s): {', '.join(unknown)}; "
                f"its options are: {', '.join(known) or 'none'}"
            )
        return dataclasses.replace(self, **options)

    def unmet_needs(self, data: RowData) -> frozenset[Capability]:
        """The capabilities this solver needs that ``data`` does not offer."""
        return self.needs - data.capabilities

    def check(self, problem: Problem) -> None:
        """Raise ValueError, naming a solver that can, if this one cannot solve ``problem``."""
        if problem.has_group and not self.supports_group:
            raise ValueError(
                f"solver {self.name!r} cannot do the grouped penalty (l1_type='grouped', "
                f"l1_ratio={problem.l1_ratio}): its steps have no block soft-thresholding; "
                "use solver='proximal-newton' (or 'auto')"
            )
        if problem.has_l1 and not self.supports_l1:
            raise ValueError(
                f"solver {self.name!r} supports only the L2 penalty (l1_ratio=0), got "
                f"l1_ratio={problem.l1_ratio}; use solver='proximal' (or 'auto') for "
                "L1 / elastic net"
            )
        missing = self.unmet_needs(problem.data)
        if missing:
            raise ValueError(
                f"solver {self.name!r} needs {sorted(c.value for c in missing)}, which the "
                f"{type(problem.data).__name__} backend does not provide; use solver='lbfgs'"
            )

    def solve(
        self,
        problem: Problem,
        coef0: np.ndarray | None = None,
        *,
        tol: float = 1e-7,
        max_iter: int = 1000,
        callback: Callback | None = None,
    ) -> SolverResult:
        """Minimise the problem's objective.

        Parameters
        ----------
        problem : Problem
        coef0 : ndarray of shape (n_classes, n_features + fit_intercept), optional
            Starting point (warm start); zeros when None.
        tol : float, default 1e-7
            The relative objective gap to reach (see ``tol_controls``).
        max_iter : int, default 1000
            Most iterations (epochs for the stochastic solver).
        callback : callable, optional
            ``callback(iteration, objective)`` once per iteration.

        Returns
        -------
        SolverResult
        """
        tol, max_iter = check_stopping(tol, max_iter)
        self.check(problem)
        run = Run(problem, initial_coef(problem, coef0), tol, max_iter, callback)
        if BLAS_THREADS is None:
            return self._solve(run)
        from softmax._threads import blas_limit

        with blas_limit(BLAS_THREADS):
            return self._solve(run)

    @abstractmethod
    def _solve(self, run: Run) -> SolverResult:
        """The method itself (``run.coef0`` is checked and a fresh copy)."""
