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
from collections.abc import Callable
from typing import Any

import numpy as np

from softmax.backends._base import RowData
from softmax.solvers._base import (
    Callback,
    Monitor,
    Objective,
    RateGapEstimate,
    SolverResult,
    f_noise_level,
    initial_coef,
    reject_options,
)
from softmax.solvers._linesearch import wolfe_line_search

__all__ = ["NEEDS", "SUPPORTS_L1", "LBFGSMemory", "default_history", "solve", "use_kronecker"]

SUPPORTS_L1 = False
NEEDS = "gradient"

#: Default number of correction pairs kept. On MNIST digits (X / 255, C=1)
#: m = 10, 50, 100 took 231, 200, 175 iterations to a 1e-6 gap; see
#: docs/solvers.md. The history is capped at HISTORY_BYTES of memory.
HISTORY_SIZE = 100
#: Memory the (s, y) history may take at most (two float64 vectors per pair).
HISTORY_BYTES = 64 << 20


#: Multiply-adds per pass (n_samples * n_features * n_classes) from which
#: ``preconditioner="auto"`` considers the Kronecker preconditioner.
KRONECKER_WORK = 10_000_000
#: Iteration after which the Kronecker preconditioner replaces the diagonal
#: one (then refreshed every ``precondition_every``). Problems solved within
#: it never pay for the feature covariance; on MNIST (X / 255, C = 1)
#: switching after 5 rather than 20 iterations took 79 -> 72 iterations to a
#: 1e-6 gap (class curvature from a row subsample, 2048 rows).
KRONECKER_START = 5


def use_kronecker(data: RowData) -> bool:
    """Whether ``"auto"`` picks the Kronecker preconditioner for ``data``.

    When the backend offers ``feature_covariance`` (dense X of at most 2048
    features in memory) and a pass is big enough that the preconditioner's
    ``O(K p^2)`` products and its setup are small next to the passes it saves.
    Measured (docs/solvers.md): on MNIST (8000 x 784) 149 -> 75 iterations at
    C = 1 and 554 -> 330 at C = 100; on digits (1797 x 64) no gain.
    """
    if not hasattr(data, "feature_covariance"):
        return False
    return data.n_samples * data.n_features * data.n_classes >= KRONECKER_WORK


def _refresh_due(iteration: int, every: int, first: int) -> bool:
    """Whether to rebuild the preconditioner after ``iteration`` iterations.

    At ``first`` (0: at ``every``), then every ``every`` iterations; never when
    ``every`` is 0.
    """
    if not every:
        return False
    first = first or every
    return iteration >= first and (iteration - first) % every == 0


def default_history(data: RowData) -> int:
    """History size for ``data``: ``HISTORY_SIZE`` for big passes, 30 for small ones.

    The two-loop recursion is ``4 m`` vector operations of Python overhead
    each; when a pass over the rows takes well under a millisecond (digits),
    a long history costs more time than the iterations it saves.
    """
    work = data.n_samples * max(1, data.n_features) * max(1, data.n_classes)
    return HISTORY_SIZE if work >= 10_000_000 else 30


class LBFGSMemory:
    """The last ``m`` correction pairs ``(s, y)`` and the two-loop recursion.

    Parameters
    ----------
    m : int
        History size.
    n : int
        Number of variables.
    """

    def __init__(
        self, m: int, n: int, precond: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        if m < 1:
            raise ValueError(f"history_size must be >= 1, got {m}")
        self.m = m
        self.S = np.empty((m, n))
        self.Y = np.empty((m, n))
        self.rho = np.empty(m)
        self.alpha = np.empty(m)
        self.count = 0  # pairs stored
        self.head = 0  # next slot to write
        self.gamma = 1.0  # scaling of the initial inverse Hessian
        # H_0 = gamma * M with M a diagonal preconditioner (identity when None)
        self.M = precond

    def clear(self) -> None:
        self.count = 0
        self.head = 0

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
        q = g.copy()
        order = [(self.head - 1 - j) % self.m for j in range(self.count)]  # newest first
        for i in order:
            a = self.rho[i] * float(self.S[i] @ q)
            self.alpha[i] = a
            q -= a * self.Y[i]
        if self.M is not None:
            q = self.M(q)
        q *= self.gamma
        for i in reversed(order):
            b = self.rho[i] * float(self.Y[i] @ q)
            q += (self.alpha[i] - b) * self.S[i]
        q *= -1.0
        return q


def solve(
    data: RowData,
    *,
    C: float,
    l1_ratio: float = 0.0,
    coef0: np.ndarray | None = None,
    tol: float = 1e-7,
    max_iter: int = 1000,
    verbose: int = 0,
    callback: Callback | None = None,
    random_state: Any = None,
    history_size: int | None = None,
    precondition: bool = True,
    precondition_every: int = 20,
    preconditioner: str = "auto",
    **options: Any,
) -> SolverResult:
    """Minimise the L2-penalised objective by L-BFGS.

    Parameters
    ----------
    data : RowData
        The rows; only ``loss_gradient`` is used (one call per trial step).
    C : float
        Inverse regularisation strength.
    l1_ratio : float
        Must be 0 (use the ``"proximal"`` solver for L1 / elastic net).
    coef0 : ndarray of shape (n_classes, n_features + fit_intercept), optional
        Starting point; zeros when None.
    tol : float
        Stop when the estimated relative objective gap ``-g.d / (2 |f|)`` is
        below ``tol`` (``d`` the L-BFGS direction).
    max_iter : int
        Maximum number of iterations.
    verbose : int
        Print one line per iteration when > 0.
    callback : callable, optional
        ``callback(iteration, objective)`` after each iteration.
    random_state : ignored
        The solver is deterministic.
    history_size : int, optional
        Correction pairs kept (at most ``HISTORY_BYTES`` of memory); by
        default :func:`default_history`.
    precondition : bool, default True
        Scale the initial inverse Hessian by the inverse of an estimate of the
        Hessian diagonal (when the backend offers ``feature_moments``).
    precondition_every : int, default 20
        Refresh the preconditioner at the current point every this many
        iterations (one pass; backends with ``curvature_moments``); 0 never.
    preconditioner : {"auto", "kronecker", "diagonal"}, default "auto"
        Which preconditioner: ``"kronecker"`` (class curvature times feature
        covariance, :meth:`Objective.kronecker_preconditioner`; dense X of at
        most 2048 features, else the diagonal one), ``"diagonal"``
        (:meth:`Objective.preconditioner`), or ``"auto"``: where it pays
        (:func:`use_kronecker`), diagonal for the first ``KRONECKER_START``
        iterations and Kronecker from then on (refreshed every
        ``precondition_every``), so problems solved within them never pay for
        the covariance.

    Returns
    -------
    SolverResult
    """
    reject_options("lbfgs", options)
    if l1_ratio > 0:
        raise ValueError("solver 'lbfgs' supports only the L2 penalty; use solver='proximal'")
    if preconditioner not in ("auto", "kronecker", "diagonal"):
        raise ValueError(
            f"preconditioner must be 'auto', 'kronecker' or 'diagonal', got {preconditioner!r}"
        )
    obj = Objective(data, C, l1_ratio)
    mon = Monitor("lbfgs", obj, verbose, callback)
    shape = obj.shape
    x = initial_coef(data, coef0).ravel()
    f, g = obj.smooth(x.reshape(shape))
    g = g.ravel()
    # "auto" starts diagonal and switches at the first refresh: problems
    # solved in fewer iterations never pay for the covariance
    kron = precondition and (
        preconditioner == "kronecker" or (preconditioner == "auto" and use_kronecker(data))
    )

    def make_M(coef: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray] | None:
        use = kron and (coef is not None or preconditioner == "kronecker")
        M = obj.kronecker_preconditioner(coef) if use else None
        return M if M is not None else obj.preconditioner(coef)

    M = make_M(None) if precondition else None
    m = min(
        default_history(data) if history_size is None else int(history_size),
        max(5, HISTORY_BYTES // (16 * x.size)),
    )
    mem = LBFGSMemory(m, x.size, M)
    message = f"reached max_iter={max_iter} before the estimated relative gap fell below {tol:g}"
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
        if mem.count:
            d = mem.direction(g)
            gd = float(g @ d)
            if not gd < 0:  # numerical breakdown: restart from steepest descent
                mem.clear()
        if not mem.count:
            if M is None:  # no curvature information at all: a unit-length step
                d = -g / max(float(np.linalg.norm(g)), 1e-300)
                gd = float(g @ d)
                gap = math.inf
            else:  # the preconditioner has the Hessian's scale: a Newton-like step
                d = -M(g)
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

        def phi(t: float, d: np.ndarray = d, x: np.ndarray = x) -> tuple[float, np.ndarray, float]:
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
        first = KRONECKER_START if kron else 0
        if precondition and _refresh_due(it + 1, precondition_every, first):
            M_new = make_M(x.reshape(shape))
            if M_new is not None:
                M = mem.M = M_new
        mem.push(s, ls.g - g)
        f, g = ls.f, ls.g
        rate.add(f)
        it += 1
        mon(it, f, gap=gap / abs(f), step=ls.t)
    return mon.result(x.reshape(shape), it, converged, f, message)
