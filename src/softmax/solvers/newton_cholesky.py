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

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from softmax.backends._base import Capability
from softmax.solvers._base import Run, Solver
from softmax.solvers._linesearch import newton_iterations
from softmax.solvers._problem import SolverResult

__all__ = ["NewtonCholesky", "newton_direction"]


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


@dataclass(frozen=True)
class NewtonCholesky(Solver):
    """Newton's method with the full Hessian and a Cholesky solve (no options)."""

    name: ClassVar[str] = "newton-cholesky"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.HESSIAN})
    tol_controls: ClassVar[str] = "half the Newton decrement g^T H^-1 g, relative to |F|"

    def _solve(self, run: Run) -> SolverResult:
        u: Any = None  # the intercepts' null direction, found at the first iteration

        def direction(obj: Any, x: np.ndarray, it: int) -> tuple[float, Any, float, bool]:
            nonlocal u
            f, g, H = obj.smooth_hessian(x.reshape(obj.shape))
            g = g.ravel()
            if u is None:
                u0 = obj.intercept_direction()
                u = False if u0 is None else u0.ravel()
            d = newton_direction(H, g, None if u is False else u)
            dec = -float(g @ d)  # Newton decrement squared
            if dec <= 0:
                d = -g
                dec = float(g @ g)
            return f, d, dec, True

        return newton_iterations(self.name, run, direction)
