"""L-BFGS with a strong-Wolfe line search, for the L2-penalised objective.

Why our own L-BFGS rather than ``scipy.optimize.minimize(method="L-BFGS-B")``:

- the stopping rule. The two-loop recursion gives ``d = -H_k g`` with
  ``H_k`` the current inverse-Hessian estimate, so ``-g.d / 2`` estimates the
  gap ``f - f*`` (it is exact for a quadratic with exact ``H``). We stop when
  that estimate falls below ``tol * |f|``: ``tol`` is a *relative objective
  gap*, which is what users compare solvers by, independent of ``C``, ``n``
  and the scale of ``X``. SciPy's ``ftol``/``pgtol`` tests depend on those.
- the history size: ill-conditioned problems (raw pixels, large ``C``) need a
  long history (see ``docs/solvers.md`` for measurements); the two-loop
  costs ``4 m n_coef`` flops, small next to a pass over the rows.
- one pass per trial step, gradient included, and a cubic-interpolating
  strong-Wolfe search that almost always accepts the first (unit) step.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.linalg.blas import dtrsv as _dtrsv

from softmax.backends._base import RowData
from softmax.solvers._base import (
    RateGapEstimate,
    Run,
    Solver,
    f_noise_level,
)
from softmax.solvers._lbfgs_policy import (
    HISTORY_BYTES,
    KRONECKER_START,
    default_history,
    refresh_due,
    use_class_blocks,
    use_class_scaled,
    use_kronecker,
)
from softmax.solvers._linesearch import wolfe_line_search
from softmax.solvers._preconditioners import (
    CLASS_BLOCK_RANK,
    FeatureBasis,
    class_blocks,
    class_scaled,
    diagonal,
    kronecker,
)
from softmax.solvers._problem import SolverResult

__all__ = [
    "LBFGS",
    "LBFGSMemory",
    "QuasiNewton",
    "default_history",
    "make_memory",
    "use_kronecker",
]


def _same_basis(a: FeatureBasis | None, b: FeatureBasis | None) -> bool:
    """Whether two bases (None: the variables themselves) are the same rotation."""
    return a is b or (a is not None and b is not None and a.Q is b.Q)


def _change_of_basis(
    old: FeatureBasis | None, new: FeatureBasis | None
) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of coordinates in ``old`` -> the same vectors' coordinates in ``new``."""

    def change(V: np.ndarray) -> np.ndarray:
        V = old.back(V) if old is not None else V
        return new.forward(V) if new is not None else V

    return change


def make_memory(
    data: RowData,
    n: int,
    history_size: int | None,
    precond: Callable[[np.ndarray], np.ndarray] | None,
) -> LBFGSMemory:
    """The L-BFGS history for ``n`` variables on ``data``.

    ``history_size`` pairs (by default :func:`default_history`), at most
    ``HISTORY_BYTES`` of them, stored in float32 when the rows are float32:
    the gradients carry float32 rounding anyway, and the two-loop recursion
    reads the whole history twice per iteration (on MNIST, float32 and 50
    pairs took the NumPy recursion from 0.75 to 0.47 ms per iteration, and
    the compiled loops to 0.18 ms).
    """
    dtype = np.dtype(np.float32 if np.dtype(data.dtype) == np.float32 else np.float64)
    m = default_history(data) if history_size is None else int(history_size)
    m = min(m, max(5, HISTORY_BYTES // (2 * dtype.itemsize * n)))
    # compiled loops only where numba is loaded already (the fused loss pass
    # imports it for big in-memory rows): importing it costs 0.3 s and ~100 MB
    compiled = "numba" in sys.modules
    return LBFGSMemory(m, n, precond, dtype=dtype, compiled=compiled)


_loops: Any = None  # the compiled loops' module; False once numba was found missing


def _compiled_loops() -> Any:
    """:mod:`softmax._numba_lbfgs`, or None without numba."""
    global _loops
    if _loops is None:
        try:
            from softmax import _numba_lbfgs
        except ImportError:  # numba missing: the NumPy loops are complete
            _loops = False
        else:
            _loops = _numba_lbfgs
    return _loops or None


class LBFGSMemory:
    """The last ``m`` correction pairs ``(s, y)`` and the two-loop recursion.

    Parameters
    ----------
    m : int
        History size.
    n : int
        Number of variables.
    precond : callable, optional
        ``g -> M g``, the initial inverse Hessian up to the scale ``gamma``;
        it may offer ``precond.quad(y) = y^T M y``.
    dtype : numpy dtype, default float64
        Storage and arithmetic of the pairs and the recursion; the direction
        comes back in float64 and ``rho``, ``alpha`` stay float64.
    compiled : bool, default False
        Run the recursion's loops compiled (:mod:`softmax._numba_lbfgs`) when
        numba is installed.
    """

    def __init__(
        self,
        m: int,
        n: int,
        precond: Callable[[np.ndarray], np.ndarray] | None = None,
        dtype: Any = np.float64,
        compiled: bool = False,
    ) -> None:
        if m < 1:
            raise ValueError(f"history_size must be >= 1, got {m}")
        self.m = m
        self.compiled = compiled
        self.dtype = np.dtype(dtype)
        self.S = np.empty((m, n), self.dtype)
        self.Y = np.empty((m, n), self.dtype)
        self.rho = np.empty(m)
        self.alpha = np.empty(m)
        # G[t, u] = s_t . y_u with the pairs newest first (float64), kept up to
        # date by push; _direction_gram reads the two unit triangular systems
        # of the recursion off it: its 4 m sequential vector operations become
        # four matrix-vector products and two m x m triangular solves
        self.G = np.zeros((m, m))
        self.order = np.zeros(0, dtype=np.intp)  # slots, newest first
        self.count = 0  # pairs stored
        self.head = 0  # next slot to write
        self.gamma = 1.0  # scaling of the initial inverse Hessian
        # H_0 = gamma * M with M a diagonal preconditioner (identity when None)
        self.M = precond

    def clear(self) -> None:
        self.count = 0
        self.head = 0
        self.order = self.order[:0]

    def transform(self, change: Callable[[np.ndarray], np.ndarray]) -> None:
        """Re-express the stored pairs in new coordinates.

        ``change`` maps rows of vectors (``(r, n)``) linearly and
        orthogonally, so ``rho = 1 / s.y`` and the products ``SY`` are unchanged.
        """
        k = self.count  # slots 0 .. k - 1 are filled until the ring wraps
        if k:
            self.S[:k] = change(self.S[:k])
            self.Y[:k] = change(self.Y[:k])

    def push(self, s: np.ndarray, y: np.ndarray) -> bool:
        """Store a pair if its curvature ``s.y`` is safely positive."""
        sy = float(s @ y)
        yy = float(y @ y)
        if not (sy > 1e-12 * math.sqrt(float(s @ s) * yy) and yy > 0):
            return False  # would break positive definiteness: skip the update
        i = self.head
        self.S[i] = s
        self.Y[i] = y
        self.rho[i] = 1.0 / sy
        k = min(self.count + 1, self.m)  # slots 0 .. k - 1 filled after this push
        order = (i - np.arange(k)) % self.m  # newest (this one) first
        G = self.G
        G[1:k, 1:k] = G[: k - 1, : k - 1].copy()  # the older pairs age by one
        G[:k, 0] = np.asarray(self.S[:k] @ self.Y[i], dtype=np.float64)[order]
        G[0, :k] = np.asarray(self.Y[:k] @ self.S[i], dtype=np.float64)[order]
        self.order = order
        if self.M is None:
            yMy = yy
        else:
            quad = getattr(self.M, "quad", None)
            yMy = quad(y) if quad is not None else float(y @ self.M(y))
        self.gamma = sy / yMy
        self.head = (i + 1) % self.m
        self.count = min(self.count + 1, self.m)
        return True

    def direction(self, g: np.ndarray) -> np.ndarray:
        """``-H_k g`` by the two-loop recursion (Nocedal & Wright, Alg. 7.4)."""
        dt = self.dtype.type  # scalars of the pairs' dtype: no float64 temporaries
        q = g.astype(dt)
        order = self.order  # newest first
        loops = _compiled_loops() if self.compiled else None
        if loops is None:
            return self._direction_gram(q, order)
        loops.first_loop(self.S, self.Y, self.rho, order, q, self.alpha)
        if self.M is not None:
            q = np.asarray(self.M(q), dtype=dt)
        q *= dt(self.gamma)
        loops.second_loop(self.S, self.Y, self.rho, order, q, self.alpha)
        return -q.astype(np.float64)

    def _direction_gram(self, q: np.ndarray, order: np.ndarray) -> np.ndarray:
        """The two-loop recursion with its scalar recurrences solved at once.

        With the pairs newest first (``t = 0 .. k-1``), the first loop's
        ``alpha_t = rho_t s_t.(g - sum_{u<t} alpha_u y_u)`` is the unit lower
        triangular system ``(I + diag(rho) L) alpha = rho * (S g)``, ``L[t, u] =
        s_t.y_u`` (``u < t``); then ``r = gamma M (g - Y^T alpha)``. The second
        loop's ``beta_t = rho_t y_t.(r + sum_{u>t} c_u s_u)``, ``c = alpha - beta``,
        is the unit upper triangular system ``(I + diag(rho) U) c = alpha - rho *
        (Y r)``, ``U[t, u] = y_t.s_u`` (``u > t``); the direction is ``-(r + S^T c)``.
        The same numbers as the loops (to rounding) for four matrix-vector
        products over the history instead of ``4 k`` vector operations in Python.
        Both systems are read off ``diag(rho) G`` and ``diag(rho) G^T``: the
        triangular solves take their strict triangle and a unit diagonal.
        """
        dt = self.dtype.type
        k = self.count
        S, Y = self.S[:k], self.Y[:k]  # by slot; only the small arrays are reordered
        rho = self.rho[order]
        G = self.G[:k, :k]
        Sg = np.asarray(S @ q, dtype=np.float64)[order]
        # BLAS reads a C-ordered matrix transposed: the upper triangle of
        # (diag(rho) G)^T is L^T, and trans=1 solves L alpha = rho * Sg
        alpha = _dtrsv((rho[:, None] * G).T, rho * Sg, lower=0, trans=1, diag=1)
        by_slot = np.empty(k)
        by_slot[order] = alpha
        q = q - by_slot.astype(dt) @ Y
        if self.M is not None:
            q = np.asarray(self.M(q), dtype=dt)
        q *= dt(self.gamma)
        Yr = np.asarray(Y @ q, dtype=np.float64)[order]
        # the lower triangle of (diag(rho) G^T)^T is U^T: solves U c = alpha - rho * Yr
        c = _dtrsv((rho[:, None] * G.T).T, alpha - rho * Yr, lower=1, trans=1, diag=1)
        by_slot[order] = c
        q += by_slot.astype(dt) @ S
        return -q.astype(np.float64)


@dataclass(frozen=True)
class QuasiNewton(Solver):
    """The options of the quasi-Newton solvers (L-BFGS and OWL-QN).

    Parameters
    ----------
    history_size : int, optional
        Correction pairs kept (at most ``HISTORY_BYTES`` of memory); by
        default :func:`default_history`.
    precondition : bool, default True
        Scale the initial inverse Hessian by a preconditioner (when the
        backend offers ``feature_moments``).
    precondition_every : int, default 20
        Refresh the preconditioner at the current point every this many
        iterations (one pass; backends with ``curvature_moments``); 0 never.
    """

    history_size: int | None = None
    precondition: bool = True
    precondition_every: int = 20


@dataclass(frozen=True)
class LBFGS(QuasiNewton):
    """L-BFGS with a strong-Wolfe line search, preconditioned, for the L2 penalty.

    Parameters
    ----------
    history_size, precondition, precondition_every
        As in :class:`QuasiNewton`.
    preconditioner : {"auto", "blocks", "kronecker", "scaled", "diagonal"}, default "auto"
        Which preconditioner: ``"kronecker"`` (class curvature times feature
        covariance, :func:`softmax.solvers._preconditioners.kronecker`; dense
        X of at most 2048 features, else the diagonal one), ``"blocks"``
        (each class's own curvature in the leading feature eigendirections,
        :func:`softmax.solvers._preconditioners.class_blocks`; diagonal for
        the first ``KRONECKER_START`` iterations: it needs a point with
        informative probabilities), ``"scaled"`` (per-class means and scales
        on the feature covariance's eigenbasis,
        :func:`softmax.solvers._preconditioners.class_scaled`; dense X of at
        most 2048 features, else the diagonal one), ``"diagonal"``
        (:func:`softmax.solvers._preconditioners.diagonal`), or ``"auto"``:
        where the feature covariance pays (:func:`use_kronecker`), diagonal
        for the first ``KRONECKER_START`` iterations, so problems solved
        within them never pay for the covariance, then class blocks where a
        refresh costs a few passes at most
        (:func:`softmax.solvers._lbfgs_policy.use_class_blocks`) and
        Kronecker elsewhere, refreshed every ``precondition_every``; for many
        classes (:func:`softmax.solvers._lbfgs_policy.use_class_scaled`)
        ``"scaled"`` from the start.
    """

    name: ClassVar[str] = "lbfgs"
    tol_controls: ClassVar[str] = (
        "the larger of the quasi-Newton estimate -g.d/2 (d the L-BFGS direction) and the "
        "rate estimate of the last 20 iterations' decrease, relative to |F|"
    )

    preconditioner: str = "auto"

    def __post_init__(self) -> None:
        if self.preconditioner not in ("auto", "blocks", "kronecker", "scaled", "diagonal"):
            raise ValueError(
                "preconditioner must be 'auto', 'blocks', 'kronecker', 'scaled' or "
                f"'diagonal', got {self.preconditioner!r}"
            )

    def _solve(self, run: Run) -> SolverResult:
        """The L-BFGS iteration (see the module docstring)."""
        from softmax.solvers import _device_lbfgs

        if _device_lbfgs.applies(run.problem):  # rows on a device: iterate there too
            return _device_lbfgs.solve_on_device(self, run)
        obj, mon = run.objective(self.name)
        data, tol, max_iter = run.problem.data, run.tol, run.max_iter
        precondition, preconditioner = self.precondition, self.preconditioner
        shape = obj.shape
        x = run.coef0.ravel()
        f, g = obj.smooth(x.reshape(shape))
        g = g.ravel()
        # "auto" starts diagonal and switches at the first refresh: problems
        # solved in fewer iterations never pay for the covariance
        kron = precondition and (
            preconditioner in ("kronecker", "blocks")
            or (preconditioner == "auto" and use_kronecker(data))
        )
        # many classes: per-class scales on the feature eigenbasis from the start
        scaled = precondition and (
            preconditioner == "scaled" or (preconditioner == "auto" and use_class_scaled(data))
        )

        # "auto": class blocks where their refresh is cheap next to a pass
        blocks = preconditioner == "blocks" or (
            preconditioner == "auto" and kron and use_class_blocks(data, CLASS_BLOCK_RANK)
        )

        def make_M(coef: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray] | None:
            if scaled:
                M = class_scaled(obj, coef)
                return M if M is not None else diagonal(obj, coef)
            use = kron and (coef is not None or preconditioner == "kronecker")
            M = None
            if use and coef is not None and blocks:
                M = class_blocks(obj, coef)
            if use and M is None:
                M = kronecker(obj, coef)
            return M if M is not None else diagonal(obj, coef)

        M = make_M(None) if precondition else None
        # the Kronecker preconditioner comes with an orthogonal basis in which it
        # is cheap (FeatureBasis): the history lives in that basis, and each
        # iteration maps the new gradient in and the direction out
        basis = getattr(M, "basis", None)
        mem = make_memory(data, x.size, self.history_size, basis.precond if basis else M)
        g_b = basis.forward(g) if basis else g
        message = (
            f"reached max_iter={max_iter} before the estimated relative gap fell below {tol:g}"
        )
        converged = False
        noise = f_noise_level(data)
        rate = RateGapEstimate()
        rate.add(f)
        it = 0
        while True:
            if not math.isfinite(f):
                message = "the objective is not finite; scale the features or lower C"
                break
            gnorm = float(np.abs(g).max(initial=0.0))
            if gnorm == 0.0:
                converged, message = True, "the gradient is exactly zero"
                break
            d_b = None
            if mem.count:
                # in the objective's subspace: a diagonal preconditioner and
                # float32 history can leave it by rounding (Objective.restrict)
                d_b = mem.direction(g_b)
                obj.restrict(d_b.reshape(shape))
                d = basis.back(d_b) if basis else d_b
                gd = float(g @ d)
                if not gd < 0:  # numerical breakdown: restart from steepest descent
                    mem.clear()
                    d_b = None
            if not mem.count:
                if M is None:  # no curvature information at all: a unit-length step
                    d = -g / max(float(np.linalg.norm(g)), 1e-300)
                    gd = float(g @ d)
                    gap = math.inf
                else:  # the preconditioner has the Hessian's scale: a Newton-like step
                    d = -M(g)
                    obj.restrict(d.reshape(shape))
                    gd = float(g @ d)
                    # trusted only when tiny (e.g. a warm start at the solution)
                    gap = -0.5 * gd * 100.0
            else:
                # the larger of the curvature and the rate estimates (see RateGapEstimate)
                gap = max(-0.5 * gd, rate.estimate())
            if gap <= tol * abs(f):
                converged = True
                message = f"estimated relative gap {gap / abs(f):.2e} <= tol={tol:g}"
                break
            if it >= max_iter:
                break

            def phi(
                t: float, d: np.ndarray = d, x: np.ndarray = x
            ) -> tuple[float, np.ndarray, float]:
                ft, gt = obj.smooth((x + t * d).reshape(shape))
                gt = gt.ravel()
                return ft, gt, float(gt @ d)

            ls = wolfe_line_search(phi, f, gd, 1.0, f_noise=noise * abs(f))
            if ls.g is None:
                if mem.count:  # a stale history can mislead: retry once along -g
                    mem.clear()
                    continue
                message = (
                    "the line search found no decrease; the objective is flat to "
                    "rounding (the solution is as accurate as the data's dtype allows)"
                )
                converged = gap <= math.sqrt(tol) * abs(f)
                break
            s = ls.t * d
            x = x + s
            first = KRONECKER_START if kron or scaled else 0
            if precondition and refresh_due(it + 1, self.precondition_every, first):
                M_new = make_M(x.reshape(shape))
                if M_new is not None:
                    M = M_new
                    new_basis = getattr(M, "basis", None)
                    if not _same_basis(basis, new_basis):
                        # a new basis (the switch from the diagonal preconditioner):
                        # the stored pairs and the last gradient move into it
                        mem.transform(_change_of_basis(basis, new_basis))
                        d_b = None
                        g_b = new_basis.forward(g) if new_basis else g
                    basis = new_basis
                    mem.M = basis.precond if basis else M
            s_b = ls.t * d_b if d_b is not None else (basis.forward(s) if basis else s)
            g_new_b = basis.forward(ls.g) if basis else ls.g
            mem.push(s_b, g_new_b - g_b)
            f, g, g_b = ls.f, ls.g, g_new_b
            rate.add(f)
            it += 1
            mon(it, f, gap=gap / abs(f), step=ls.t)
        return mon.result(x.reshape(shape), it, converged, f, message)
