"""L1 and elastic-net penalties: orthant-wise L-BFGS with proximal safeguards.

The objective ``f(w) + c ||W||_1`` (``f`` smooth: data term plus the L2 part)
is non-differentiable where weights are zero. This solver is OWL-QN (Andrew &
Gao, 2007), the quasi-Newton method for L1-regularised log-linear models:

- the *pseudo-gradient* ``pg`` is the minimum-norm subgradient of the whole
  objective (zero exactly at the optimum; the intercept is unpenalised);
- the L-BFGS two-loop recursion (curvature pairs from the smooth part only,
  with the same centring/scaling preconditioner as ``lbfgs``) turns ``-pg``
  into a direction ``d``, with every vector restricted to the free variables
  (non-zero, unpenalised, or zero with ``pg != 0``), so that it estimates
  the inverse of the Hessian's free block (:func:`free_direction`);
  components of ``d`` that disagree in sign with ``-pg`` are zeroed, so
  ``d`` is a descent direction;
- the step stays in the orthant of the current point: a coordinate that
  would cross zero is set to zero (this is where sparsity appears), and a
  backtracking Armijo search on the full objective picks the step length.

When that search fails (a rare breakdown of the curvature model), one
proximal-gradient step (soft thresholding, with backtracking) is taken and
the history is cleared. Stopping is as in ``lbfgs``: the larger of the
curvature estimate ``-pg.d / 2`` and the rate estimate from the recent
decrease must fall below ``tol * |F|``.

OWL-QN converges linearly, and slowly on ill-conditioned problems (weak
penalties). Where the full Hessian is cheap (small dense problems), a fit
still running after ``newton_after`` iterations is handed to proximal Newton
(:mod:`softmax.solvers.proximal_newton`), whose steps converge
superlinearly from there.

It reaches the same optimum as scikit-learn's ``saga`` with a tight tolerance
(checked in the tests) in far fewer passes over the rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from softmax.solvers._base import (
    Callback,
    Monitor,
    RateGapEstimate,
    Run,
    f_noise_level,
    gap_not_reached,
    takes_gap,
)
from softmax.solvers._preconditioners import diagonal
from softmax.solvers._problem import SolverResult
from softmax.solvers.lbfgs import LBFGSMemory, QuasiNewton, make_memory
from softmax.solvers.proximal_newton import ProximalNewton, full_hessian_is_cheap

__all__ = ["Proximal"]


def free_direction(
    mem: LBFGSMemory,
    pg: np.ndarray,
    free: np.ndarray,
    M: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """``-H_F pg``: the L-BFGS direction on the free variables ``F`` alone.

    The two-loop recursion over the stored pairs with every vector masked to
    ``F`` (pairs whose masked curvature ``s.y`` is not safely positive are
    skipped), from ``gamma P M P`` with ``P`` the mask. This estimates the
    inverse of the Hessian's free block, ``(B_FF)^-1``, the Newton step on
    the face the iterate is on. The plain recursion's free block, ``(B^-1)_FF``,
    is the inverse of a Schur complement instead: larger along every
    direction where free weights correlate with weights held at zero. On
    digits (pure L1, C = 30 ``min_c``, correlated pixels) that made the
    direction about 40 times too long, so the line search settled on steps
    of 0.025 and OWL-QN stopped at ``max_iter`` with a relative gap of 8e-5.

    Parameters
    ----------
    mem : LBFGSMemory
        The pairs ``(s, y)`` (smooth-gradient differences).
    pg : ndarray of shape (n,)
        The pseudo-gradient (zero outside ``free`` except by rounding).
    free : ndarray of bool, shape (n,)
    M : callable, optional
        The preconditioner ``g -> M g``.

    Returns
    -------
    ndarray of shape (n,)
        Zero outside ``free``.
    """
    k = mem.count
    order = (mem.head - 1 - np.arange(k)) % mem.m  # newest first
    S = mem.S[order].astype(np.float64) * free
    Y = mem.Y[order].astype(np.float64) * free
    sy = np.einsum("ij,ij->i", S, Y)
    ss = np.einsum("ij,ij->i", S, S)
    yy = np.einsum("ij,ij->i", Y, Y)
    keep = (sy > 1e-12 * np.sqrt(ss * yy)) & (yy > 0)
    S, Y, sy = S[keep], Y[keep], sy[keep]

    def precondition(v: np.ndarray) -> np.ndarray:
        return v if M is None else np.asarray(M(v), dtype=np.float64) * free

    q = pg * free
    if not len(sy):
        return -precondition(q)
    rho = 1.0 / sy
    alpha = np.empty(len(sy))
    for i in range(len(sy)):
        alpha[i] = rho[i] * float(S[i] @ q)
        q -= alpha[i] * Y[i]
    gamma = sy[0] / float(Y[0] @ precondition(Y[0]))
    r = gamma * precondition(q)
    for i in reversed(range(len(sy))):
        r += (alpha[i] - rho[i] * float(Y[i] @ r)) * S[i]
    return -r


def _orthant_project(x: np.ndarray, orthant: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the penalised coordinates of ``x`` that left ``orthant``."""
    out = x.copy()
    out[mask & (np.sign(out) != orthant)] = 0.0
    return out


@dataclass(frozen=True)
class Proximal(QuasiNewton):
    """OWL-QN for the elastic net (and L1, and L2), with proximal-gradient safeguards.

    Options as :class:`softmax.solvers.lbfgs.QuasiNewton`'s (the
    preconditioner is the diagonal one), and ``newton_after`` (default 100):
    after that many iterations without convergence, on rows where the full
    Hessian is cheap (small dense problems, see
    :func:`~softmax.solvers.proximal_newton.full_hessian_is_cheap`), the fit
    is finished by :class:`~softmax.solvers.proximal_newton.ProximalNewton`
    from the current point (``n_iter`` counts both; the message says so).
    OWL-QN converges linearly, slowly where the problem is ill-conditioned
    (weak penalties): on digits, pure L1 at C = 1000 ``min_c``, it stopped
    at ``max_iter=1000`` with a relative gap of 2e-5, while 100 iterations
    and then 3-4 proximal Newton steps reached 1e-13 in less time
    (``benchmarks/results/l1.md``). None turns the hand-over off.
    """

    name: ClassVar[str] = "proximal"
    #: OWL-QN iterations after which a fit not yet converged is finished by
    #: proximal Newton, where its full Hessian is cheap
    #: (:func:`softmax.solvers.proximal_newton.full_hessian_is_cheap`); None: never
    newton_after: int | None = 100
    supports_l1: ClassVar[bool] = True
    tol_controls: ClassVar[str] = (
        "the larger of -pg.d/2 (pg the minimum-norm subgradient, d the OWL-QN direction) "
        "and the rate estimate of the last 20 iterations' decrease, relative to |F|"
    )

    def _solve(self, run: Run) -> SolverResult:
        """The OWL-QN iteration (see the module docstring)."""
        obj, mon = run.objective(self.name)
        data, tol, max_iter = run.problem.data, run.tol, run.max_iter
        precondition, precondition_every = self.precondition, self.precondition_every
        shape = obj.shape
        pen = obj.penalty
        c = pen.l1_weight
        mask = np.ones(shape, dtype=bool)
        if data.fit_intercept:
            mask[:, -1] = False  # the intercept is not penalised
        # without an L1 part nothing is non-smooth: no orthant constraints at all
        mask = mask.ravel() & (c > 0)
        noise = f_noise_level(data)

        def full(x: np.ndarray) -> tuple[float, float, np.ndarray]:
            fs, gs = obj.smooth(x.reshape(shape))
            return fs + pen.nonsmooth_value(x.reshape(shape)), fs, gs.ravel()

        def pseudo_gradient(x: np.ndarray, g: np.ndarray) -> np.ndarray:
            return pen.min_norm_subgradient(x.reshape(shape), g.reshape(shape)).ravel()

        x = run.coef0.ravel()
        F, _, g = full(x)
        M = diagonal(obj) if precondition else None
        mem = make_memory(data, x.size, self.history_size, M)
        rate = RateGapEstimate()
        rate.add(F)
        converged = False
        message = gap_not_reached(max_iter, tol)
        it = 0
        prox_step = 1.0
        while True:
            if not math.isfinite(F):
                message = "the objective is not finite; scale the features or lower C"
                break
            pg = pseudo_gradient(x, g)
            if not np.any(pg):
                converged, message = True, "the minimum-norm subgradient is exactly zero"
                break
            # the free variables: unpenalised, non-zero, or zero with a way down
            free = ~mask | (x != 0) | (pg != 0)
            d = free_direction(mem, pg, free, M) if mem.count else -(pg if M is None else M(pg))
            obj.restrict(d.reshape(shape))  # the diagonal M may leave the subspace
            d[mask & (d * pg >= 0)] = 0.0  # keep only descent components
            dg = float(pg @ d)
            if not dg < 0:
                mem.clear()
                d = -pg
                dg = float(pg @ d)
            if mem.count:
                gap = max(-0.5 * dg, rate.estimate())
            elif M is not None:
                # the preconditioner has the Hessian's scale: trusted only when tiny
                gap = -0.5 * dg * 100.0
            else:  # no curvature information: a unit-length first step
                scale = 1.0 / max(float(np.linalg.norm(d)), 1e-300)
                d *= scale
                dg *= scale
                gap = math.inf
            if gap <= tol * abs(F):
                converged = True
                message = f"estimated relative gap {gap / abs(F):.2e} <= tol={tol:g}"
                break
            if it >= max_iter:
                break
            if it == self.newton_after and full_hessian_is_cheap(data):
                return self._newton_finish(run, x.reshape(shape), it, mon)
            # orthant of the step: the sign of x, or of -pg where x is zero
            orthant = np.where(x != 0, np.sign(x), np.sign(-pg))
            t = 1.0
            accepted = False
            for _ in range(30):
                xt = _orthant_project(x + t * d, orthant, mask)
                Ft, _, gt = full(xt)
                if math.isfinite(Ft) and (
                    Ft <= F + 1e-4 * float(pg @ (xt - x)) or (Ft <= F + noise * abs(F) and Ft < F)
                ):
                    accepted = True
                    break
                t *= 0.5 if t < 1 else 0.1  # a failed unit step is usually far too long
            if not accepted and mem.count:
                # a stale curvature history can mislead: retry from the
                # preconditioned steepest-descent direction before anything else
                mem.clear()
                continue
            if not accepted:
                # proximal-gradient step with backtracking on the smooth part
                fs, _gs = obj.smooth(x.reshape(shape))
                step = prox_step
                for _ in range(50):
                    xt = pen.prox((x - step * g).reshape(shape), step).ravel()
                    Ft, fst, gt = full(xt)
                    diff = xt - x
                    if math.isfinite(fst) and fst <= fs + g @ diff + (diff @ diff) / (2 * step):
                        break
                    step *= 0.5
                prox_step = step * 2
                if not Ft < F:
                    message = "no further decrease possible (rounding level reached)"
                    converged = gap <= math.sqrt(tol) * abs(F)
                    break
            mem.push(xt - x, gt - g)
            x, F, g = xt, Ft, gt
            if precondition and precondition_every and (it + 1) % precondition_every == 0:
                M_new = diagonal(obj, x.reshape(shape))
                if M_new is not None:
                    M = mem.M = M_new
            rate.add(F)
            it += 1
            mon(it, F, gap=gap / abs(F))
        return mon.result(x.reshape(shape), it, converged, F, message)

    def _newton_finish(self, run: Run, x: np.ndarray, it: int, mon: Monitor) -> SolverResult:
        """Proximal Newton from ``x`` for the rest of the iterations (see ``newton_after``)."""
        callback = run.callback
        shifted: Callback | None = None
        if callback is not None:
            if takes_gap(callback):

                def shifted(i: int, F: float, **info: Any) -> None:
                    callback(it + i, F, **info)

            else:

                def shifted(i: int, F: float) -> None:
                    callback(it + i, F)

        rest = ProximalNewton()._solve(
            dataclasses.replace(run, coef0=x.copy(), max_iter=run.max_iter - it, callback=shifted)
        )
        return dataclasses.replace(
            rest,
            n_iter=it + rest.n_iter,
            message=f"{rest.message} (proximal Newton after {it} OWL-QN iterations)",
            history=mon.history + rest.history,
        )
