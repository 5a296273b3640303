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
gives ``f - f* ~ -g.d / 2``; we stop when it, and the rate estimate of the
recent decrease, are below ``tol * |f|``.
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
    SolverResult,
    f_noise_level,
    initial_coef,
    reject_options,
)
from softmax.solvers._linesearch import newton_line_step

__all__ = ["NEEDS", "SUPPORTS_L1", "pcg", "solve"]

SUPPORTS_L1 = False
NEEDS = "hessp"


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
    max_cg_iter: int = 200,
    precondition: bool = True,
    **options: Any,
) -> SolverResult:
    """Minimise the L2-penalised objective by truncated Newton (PCG + line search).

    Parameters
    ----------
    data : RowData
        The rows; ``gradient_hessian_product`` and ``loss`` are used.
    C, l1_ratio, coef0, tol, max_iter, verbose, callback, random_state
        As in :func:`softmax.solvers.solve`; ``l1_ratio`` must be 0.
        ``max_iter`` counts outer (Newton) iterations.
    max_cg_iter : int, default 200
        Hessian-vector products per Newton iteration at most.
    precondition : bool, default True
        Use the centring/scaling preconditioner when the backend allows.

    Returns
    -------
    SolverResult
    """
    reject_options("newton-cg", options)
    if l1_ratio > 0:
        raise ValueError("solver 'newton-cg' supports only the L2 penalty; use solver='proximal'")
    obj = Objective(data, C, l1_ratio)
    mon = Monitor("newton-cg", obj, verbose, callback)
    shape = obj.shape
    M = obj.preconditioner() if precondition else None
    x = initial_coef(data, coef0).ravel()
    noise = f_noise_level(data)
    recent: list[float] = []
    converged = False
    message = f"reached max_iter={max_iter} before the Newton decrement fell below tol"
    it = 0
    g0norm = None
    f = math.nan
    while True:
        f, G, hp = obj.smooth_hessp(x.reshape(shape))
        g = G.ravel()
        if not math.isfinite(f):
            message = "the objective is not finite; scale the features or lower C"
            break
        gnorm = float(np.linalg.norm(g))
        if gnorm == 0:
            converged, message = True, "the gradient is exactly zero"
            break
        if g0norm is None:
            g0norm = gnorm
        eta = min(0.5, math.sqrt(gnorm / g0norm))

        def hessp(v: np.ndarray, hp: Callable = hp) -> np.ndarray:
            return hp(v.reshape(shape)).ravel()

        if precondition and it > 0:
            # curvature at the current point (one pass; far fewer CG steps)
            M = obj.preconditioner(x.reshape(shape)) or M
        d, _ = pcg(hessp, -g, M, eta, max_cg_iter)
        dec = -float(g @ d)
        if not dec > 0:
            d = -g if M is None else -M(g)
            dec = -float(g @ d)
        # a loose CG solve underestimates the decrement: trust it once CG is
        # tight, or when it is far below tol (e.g. a warm start at the solution)
        if 0.5 * dec <= tol * abs(f) and (eta <= 0.1 or 50 * dec <= tol * abs(f)):
            converged = True
            message = f"estimated relative gap {0.5 * dec / abs(f):.2e} <= tol={tol:g}"
            break
        if it >= max_iter:
            break

        x, f, it, stop, stop_converged = newton_line_step(
            obj, x, f, d, dec, it=it, shape=shape, noise=noise, tol=tol, recent=recent, mon=mon
        )
        if stop is not None:
            message, converged = stop, stop_converged
            break
    return mon.result(x.reshape(shape), it, converged, f, message)
