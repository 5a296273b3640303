"""Exact Newton (IRLS) with the full Hessian and a Cholesky solve.

The Newton-Raphson method for multiclass logistic regression (Bishop, PRML
4.3.4): at each iteration form the Hessian ``H`` of the objective (``K q x
K q`` with ``q = n_features + fit_intercept``), solve ``H d = -g`` by
Cholesky, and take a damped step along ``d``. Convergence is quadratic near
the optimum, so a handful of iterations reach machine precision; each costs
``O(n (K q)^2)`` for the Hessian and ``O((K q)^3)`` for the factorisation,
which is why ``solver="auto"`` uses it only when ``K q`` is small.

The symmetric parametrisation makes ``H`` singular along one direction: the
intercepts enter only through softmax, which ignores a constant added to all
logits, and they are not penalised, so ``u = (0, ..., 0, 1 | ... | 0, ..., 1)
/ sqrt(K)`` (the same shift of every intercept) has ``H u = 0``. The gradient
is orthogonal to ``u`` (the intercept gradients of each row sum to zero), so
solving with ``H + c u u^T`` gives exactly the minimum-norm Newton step, and
the Cholesky factorisation stays well posed. (The weights have no such
direction: the L2 penalty makes ``H`` positive definite on them.)

Stopping: the Newton decrement ``lambda^2 = -g.d`` gives ``f - f* ~
lambda^2 / 2``; we stop when that is below ``tol * |f|``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

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

__all__ = ["NEEDS", "SUPPORTS_L1", "newton_direction", "solve"]

SUPPORTS_L1 = False
NEEDS = "hessian"


def newton_direction(H: np.ndarray, g: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """Solve ``H d = -g`` for symmetric positive (semi-)definite ``H``.

    Parameters
    ----------
    H : ndarray of shape (n, n)
        Overwritten (it is the caller's scratch copy).
    g : ndarray of shape (n,)
    u : ndarray of shape (n,) or None
        Unit null direction of ``H`` orthogonal to ``g`` (see module doc).

    Returns
    -------
    d : ndarray of shape (n,)
    """
    scale = float(np.max(np.abs(np.diag(H)), initial=0.0)) or 1.0
    if u is not None:
        H += scale * np.outer(u, u)
    jitter = 0.0
    for _ in range(12):
        try:
            cf = scipy.linalg.cho_factor(H, lower=False, overwrite_a=False, check_finite=False)
            d = scipy.linalg.cho_solve(cf, -g, check_finite=False)
            if np.all(np.isfinite(d)):
                return d
        except np.linalg.LinAlgError:
            pass
        # numerically indefinite (tiny penalty, separable data): regularise
        new = scale * 1e-12 if jitter == 0 else jitter * 100
        H[np.diag_indices_from(H)] += new - jitter
        jitter = new
    # give up on Newton: steepest descent scaled by the diagonal
    return -g / scale


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
    **options: Any,
) -> SolverResult:
    """Minimise the L2-penalised objective by Newton's method with the full Hessian.

    Parameters
    ----------
    data : RowData
        The rows; ``hessian`` and ``loss`` are used.
    C, l1_ratio, coef0, tol, max_iter, verbose, callback, random_state
        As in :func:`softmax.solvers.solve`; ``l1_ratio`` must be 0.

    Returns
    -------
    SolverResult
    """
    reject_options("newton-cholesky", options)
    if l1_ratio > 0:
        raise ValueError(
            "solver 'newton-cholesky' supports only the L2 penalty; use solver='proximal'"
        )
    obj = Objective(data, C, l1_ratio)
    mon = Monitor("newton-cholesky", obj, verbose, callback)
    shape = obj.shape
    u = obj.intercept_direction()
    u = None if u is None else u.ravel()
    x = initial_coef(data, coef0).ravel()
    noise = f_noise_level(data)
    recent: list[float] = []
    converged = False
    message = f"reached max_iter={max_iter} before the Newton decrement fell below tol"
    it = 0
    f = math.nan
    while True:
        f, g, H = obj.smooth_hessian(x.reshape(shape))
        g = g.ravel()
        if not math.isfinite(f):
            message = "the objective is not finite; scale the features or lower C"
            break
        d = newton_direction(H, g, u)
        dec = -float(g @ d)  # Newton decrement squared
        if dec <= 0:
            d = -g
            dec = float(g @ g)
        if 0.5 * dec <= tol * abs(f):
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
