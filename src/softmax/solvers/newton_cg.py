"""Truncated (inexact) Newton: preconditioned conjugate gradients on ``H d = -g``.

Each outer iteration computes the gradient (one pass, which also keeps the
probabilities), then solves the Newton system approximately by
preconditioned CG with Hessian-vector products (one pass each), and takes a
backtracking line search step (value-only passes). The inner tolerance
follows the forcing sequence ``eta_k = min(0.5, sqrt(||g_k|| / ||g_0||))``
(Nocedal & Wright 7.1), which gives superlinear convergence without solving
far-from-optimum systems exactly.

The preconditioner is the one L-BFGS uses (centred, scaled features; see
:meth:`softmax.solvers._base.Objective.preconditioner`), so badly scaled data
costs few CG iterations too. The Hessian is singular along the equal-shift of
all intercepts; CG never needs that direction because the gradient is
orthogonal to it, and the objective is constant along it.

Stopping: CG's estimate of the Newton decrement ``g^T H^-1 g`` (``-g.d``)
gives ``f - f* ~ -g.d / 2``; we stop when it is below ``tol * |f|`` and CG
was solved tightly enough to trust it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from softmax.backends._base import Capability
from softmax.solvers._base import Run, Solver
from softmax.solvers._linesearch import newton_iterations
from softmax.solvers._preconditioners import diagonal
from softmax.solvers._problem import SolverResult

__all__ = ["NewtonCG", "pcg"]


def pcg(
    hessp: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    M: Callable[[np.ndarray], np.ndarray] | None,
    rtol: float,
    maxiter: int,
) -> tuple[np.ndarray, int]:
    """Preconditioned CG for ``H x = b`` with ``H`` positive semi-definite.

    Parameters
    ----------
    hessp : callable
        ``v -> H v`` on flat vectors.
    b : ndarray of shape (n,)
    M : callable or None
        ``r -> M r``, an approximate inverse of ``H``.
    rtol : float
        Stop when ``||r|| <= rtol ||b||``.
    maxiter : int

    Returns
    -------
    x : ndarray of shape (n,)
    n_iter : int
        Hessian-vector products used.
    """
    x = np.zeros_like(b)
    r = b.copy()
    z = r if M is None else M(r)
    p = z.copy()
    rz = float(r @ z)
    bnorm = float(np.linalg.norm(b))
    for k in range(1, maxiter + 1):
        Hp = hessp(p)
        pHp = float(p @ Hp)
        if pHp <= 0 or not math.isfinite(pHp):
            # flat or negative curvature (rounding): keep what we have
            if k == 1:
                x = p * (rz / max(float(p @ p), 1e-300))
            return x, k
        alpha = rz / pHp
        x += alpha * p
        r -= alpha * Hp
        if float(np.linalg.norm(r)) <= rtol * bnorm:
            return x, k
        z = r if M is None else M(r)
        rz_new = float(r @ z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, maxiter


@dataclass(frozen=True)
class NewtonCG(Solver):
    """Truncated Newton: preconditioned CG on ``H d = -g``, then a line search.

    Parameters
    ----------
    max_cg_iter : int, default 200
        Most Hessian-vector products per outer iteration.
    precondition : bool, default True
        Precondition CG with the diagonal preconditioner, refreshed at every
        outer iteration (backends with ``curvature_moments``).
    """

    name: ClassVar[str] = "newton-cg"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.HESSP})
    tol_controls: ClassVar[str] = (
        "half CG's estimate of the Newton decrement g^T H^-1 g, relative to |F|, "
        "once CG is solved tightly (forcing term <= 0.1)"
    )

    max_cg_iter: int = 200
    precondition: bool = True

    def _solve(self, run: Run) -> SolverResult:
        M: Any = None
        g0norm: float | None = None

        def direction(
            obj: Any, x: np.ndarray, it: int
        ) -> tuple[float, np.ndarray, Any, float, bool]:
            nonlocal M, g0norm
            shape = obj.shape
            f, G, hp = obj.smooth_hessp(x.reshape(shape))
            g = G.ravel()
            if not math.isfinite(f):
                return f, None, 0.0, False
            gnorm = float(np.linalg.norm(g))
            if gnorm == 0:
                return f, None, 0.0, True
            if g0norm is None:
                g0norm = gnorm
            eta = min(0.5, math.sqrt(gnorm / g0norm))

            def hessp(v: np.ndarray) -> np.ndarray:
                return hp(v.reshape(shape)).ravel()

            if self.precondition:
                # curvature at the current point after the first iteration
                # (one pass; far fewer CG steps)
                M = (diagonal(obj, x.reshape(shape)) or M) if it > 0 else diagonal(obj)
            # a diagonal preconditioner may leave the objective's subspace: P M P
            PM = None if M is None else (lambda r: obj.restrict(M(r).reshape(shape)).ravel())
            d, _ = pcg(hessp, -g, PM, eta, self.max_cg_iter)
            dec = -float(g @ d)
            if not dec > 0:
                d = -g if M is None else -PM(g)
                dec = -float(g @ d)
            # a loose CG solve underestimates the decrement: trust it once CG is
            # tight, or when it is far below tol (e.g. a warm start at the solution)
            trusted = eta <= 0.1 or 50 * dec <= run.tol * abs(f)
            return f, d, dec, trusted

        return newton_iterations(self.name, run, direction)
