"""Exact Newton (IRLS) with the full Hessian and a Cholesky solve.

The Newton-Raphson method for multiclass logistic regression (Bishop, PRML
4.3.4): at each iteration form the Hessian ``H`` of the objective (``K q x
K q`` with ``q = n_features + fit_intercept``), solve ``H d = -g`` by
Cholesky, and take a damped step along ``d``. Convergence is quadratic near
the optimum, so a handful of iterations reach machine precision; each costs
``O(n (K q)^2)`` for the Hessian and ``O((K q)^3)`` for the factorisation,
which is why ``solver="auto"`` uses it only when ``K q`` is small.

The symmetric parametrisation makes ``H`` singular: softmax ignores a vector
added to every class's coefficients, so the data term is flat along ``1 (x)
v``. The L2 penalty lifts that for the weights but not for the (unpenalised)
intercepts, so ``u = (0, ..., 0, 1 | ... | 0, ..., 1) / sqrt(K)`` (the same
shift of every intercept) has ``H u = 0``; without a penalty (``C = inf``)
every column's shift is such a direction. The gradient is orthogonal to them
(the gradients of each row sum to zero over the classes), so solving with
``H + c U^T U`` (``U``'s rows spanning them,
:meth:`~softmax.solvers._base.Objective.null_space`) gives exactly the
minimum-norm Newton step, and the Cholesky factorisation stays well posed.
With a reference class the fixed row is not a variable: the objective hands
over ``H`` restricted to the free rows (see ``Objective.smooth_hessian``) and
there is no flat direction.

Stopping: the Newton decrement ``lambda^2 = -g.d`` gives ``f - f* ~
lambda^2 / 2``; when that is below ``tol * |f|`` the step ``d`` already
computed is taken as well (one more loss-gradient pass, no Hessian): Newton's
quadratic convergence leaves a gap of order ``lambda^4`` after it, so the
result is at the optimum to about the square of ``tol`` rather than at
``tol`` (what statistics on the fit need; see :func:`newton_iterations`).
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


def newton_direction(H: np.ndarray, g: np.ndarray, U: np.ndarray | None) -> np.ndarray:
    """Solve ``H d = -g`` for symmetric positive (semi-)definite ``H``.

    The system is solved equilibrated, ``(D^-1 H D^-1) (D d) = -D^-1 g`` with
    ``D = sqrt(diag(H))``, so that its conditioning does not include the
    ratio of the features' scales: with features of size ``1e8`` beside the
    intercept's column of ones, ``H``'s diagonal spans 16 orders of
    magnitude, and a Cholesky factorisation of ``H`` itself (or a jitter
    relative to its largest entry) lost the intercept's block and returned a
    wrong step whose small decrement then passed for convergence. The flat
    directions ``u`` of ``H`` are ``D u`` for the equilibrated matrix.

    Parameters
    ----------
    H : ndarray of shape (n, n)
        Overwritten (it is the caller's scratch copy).
    g : ndarray of shape (n,)
    U : ndarray of shape (n_null, n) or None
        Orthonormal rows spanning null directions of ``H`` orthogonal to
        ``g`` (see module doc); a single vector of shape (n,) is one row.

    Returns
    -------
    d : ndarray of shape (n,)
    """
    diag = np.diag(H).copy()
    # a zero diagonal (a column of zeros, unpenalised) is left unscaled
    D = np.sqrt(np.where(diag > 0, diag, 1.0))
    H /= D[:, None]
    H /= D[None, :]
    gs = g / D
    if U is not None:
        # the flat directions of the equilibrated matrix, orthonormal again
        Q, _ = np.linalg.qr((np.atleast_2d(U) * D).T)
        H += Q @ Q.T  # diag(H) is now 1 (or 0): a unit weight on them
    jitter = 0.0
    for _ in range(12):
        try:
            cf = scipy.linalg.cho_factor(H, lower=False, overwrite_a=False, check_finite=False)
            ds = scipy.linalg.cho_solve(cf, -gs, check_finite=False)
            if np.all(np.isfinite(ds)):
                return ds / D
        except np.linalg.LinAlgError:
            pass
        # numerically indefinite (tiny penalty, separable data): regularise
        new = 1e-12 if jitter == 0 else jitter * 100
        H[np.diag_indices_from(H)] += new - jitter
        jitter = new
    # give up on Newton: steepest descent scaled by the diagonal
    return -gs / D


@dataclass(frozen=True)
class NewtonCholesky(Solver):
    """Newton's method with the full Hessian and a Cholesky solve (no options)."""

    name: ClassVar[str] = "newton-cholesky"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.HESSIAN})
    tol_controls: ClassVar[str] = (
        "half the Newton decrement g^T H^-1 g, relative to |F|; the step it was "
        "computed for is then taken too"
    )

    def _solve(self, run: Run) -> SolverResult:
        U: Any = None  # the flat directions, found at the first iteration

        def direction(obj: Any, x: np.ndarray, it: int) -> tuple[float, Any, float, bool]:
            nonlocal U
            f, g, H = obj.smooth_hessian(x.reshape(obj.shape))
            g = g.ravel()
            if U is None:
                U0 = obj.null_space()
                U = False if U0 is None else U0
            d = newton_direction(H, g, None if U is False else U)
            dec = -float(g @ d)  # Newton decrement squared
            if dec <= 0:
                d = -g
                dec = float(g @ g)
            return f, d, dec, True

        return newton_iterations(self.name, run, direction)
