"""A strong-Wolfe line search (Nocedal & Wright, Algorithms 3.5 and 3.6).

Each trial costs one loss-and-gradient pass, and returns the gradient too, so
the directional derivative at every trial is free: cubic interpolation uses
it, and the curvature condition guarantees ``s^T y > 0`` for quasi-Newton
updates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["LineSearchResult", "newton_iterations", "newton_line_step", "wolfe_line_search"]

Phi = Callable[[float], tuple[float, np.ndarray, float]]


class LineSearchResult:
    """Outcome of a line search: step ``t``, value, gradient, success flag."""

    __slots__ = ("f", "g", "n_evals", "ok", "t")

    def __init__(self, t: float, f: float, g: np.ndarray | None, ok: bool, n_evals: int):
        self.t, self.f, self.g, self.ok, self.n_evals = t, f, g, ok, n_evals


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float:
    """Minimiser of the cubic through two points with slopes; NaN if none."""
    if a == b:
        return math.nan
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0:
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0:
        return math.nan
    return b - (b - a) * (db + d2 - d1) / den


def wolfe_line_search(
    phi: Phi,
    f0: float,
    d0: float,
    t: float = 1.0,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evals: int = 30,
    f_noise: float = 0.0,
) -> LineSearchResult:
    """Find ``t`` with ``f(t) <= f0 + c1 t d0`` and ``|f'(t)| <= c2 |d0|``.

    Parameters
    ----------
    phi : callable
        ``phi(t) -> (f, gradient, directional derivative)`` along the search
        direction.
    f0, d0 : float
        Value and directional derivative (< 0) at ``t = 0``.
    t : float, default 1.0
        First trial step.
    c1, c2 : float
        Sufficient decrease and curvature constants.
    max_evals : int
        Evaluations allowed.
    f_noise : float, default 0
        Absolute rounding noise of ``f``. Near the optimum of a float32 fit
        the decrease of ``f`` drowns in it; a step is then also accepted by
        the *approximate* Armijo condition of Hager & Zhang (2005),
        ``f'(t) <= (2 c1 - 1) f'(0)`` with ``f(t) <= f0 + f_noise``, which
        judges the decrease from the (accurate) directional derivatives.

    Returns
    -------
    LineSearchResult
        ``ok`` is False when no step satisfying both conditions was found; the
        best step with sufficient decrease (if any) is still returned.
    """
    lo_t, lo_f, lo_d, lo_g = 0.0, f0, d0, None
    hi: tuple[float, float, float] | None = None
    for n in range(1, max_evals + 1):
        f, g, dp = phi(t)
        if not (math.isfinite(f) and math.isfinite(dp)):
            hi = (t, math.inf, math.nan)  # overflow: step far too long
        elif not (
            (f <= f0 + c1 * t * d0 and f < lo_f)
            or (f_noise > 0 and f <= f0 + f_noise and dp <= (2 * c1 - 1) * d0 and dp < 0)
        ):
            hi = (t, f, dp)
        else:
            if abs(dp) <= -c2 * d0:
                return LineSearchResult(t, f, g, True, n)
            # keep the minimiser bracketed (N&W Alg. 3.6, and 3.5 when hi is unset)
            if (hi is None and dp >= 0) or (hi is not None and dp * (hi[0] - lo_t) >= 0):
                hi = (lo_t, lo_f, lo_d)
            lo_t, lo_f, lo_d, lo_g = t, f, dp, g
        # next trial
        if hi is None:
            t = 4.0 * t  # still descending steeply: extrapolate
            continue
        a, b = lo_t, hi[0]
        width = abs(b - a)
        if width <= 1e-12 * max(abs(a), abs(b), 1e-300):
            break
        cand = (
            _cubic_min(a, lo_f, lo_d, b, hi[1], hi[2])
            if math.isfinite(hi[1]) and math.isfinite(hi[2])
            else math.nan
        )
        lo_b, up_b = min(a, b) + 0.1 * width, max(a, b) - 0.1 * width
        t = cand if math.isfinite(cand) and lo_b <= cand <= up_b else 0.5 * (a + b)
    return LineSearchResult(lo_t, lo_f, lo_g, False, n)


def newton_line_step(
    obj: Any,
    x: np.ndarray,
    f: float,
    d: np.ndarray,
    dec: float,
    *,
    it: int,
    shape: tuple[int, int],
    noise: float,
    tol: float,
    recent: list[float],
    mon: Any,
) -> tuple[np.ndarray, float, int, str | None, bool]:
    """One line-searched Newton step and the stopping rules the Newton solvers share.

    Parameters
    ----------
    obj : Objective
        Answers ``smooth(coef) -> (f, grad)``.
    x : ndarray of shape (n_coef,)
        Current point (flat).
    f : float
        Objective at ``x``.
    d : ndarray of shape (n_coef,)
        Newton (or fallback) direction.
    dec : float
        Newton decrement squared, ``-g . d`` (> 0).
    it : int
        Iterations done so far.
    shape : tuple of int
        Shape of the coefficients.
    noise : float
        Relative rounding level of ``f`` in the data's dtype.
    tol : float
        Relative objective gap wanted.
    recent : list of float
        Objective values of the last steps (appended to).
    mon : Monitor
        Records the step.

    Returns
    -------
    x, f, it : the new point, its objective and the iteration count
    stop : str or None
        Why to stop, or None to go on.
    converged : bool
        With ``stop``: whether the point counts as converged (the gap
        estimate is within ``sqrt(tol)``, the most the dtype allows).
    """

    def phi(t: float) -> tuple[float, np.ndarray, float]:
        ft, gt = obj.smooth((x + t * d).reshape(shape))
        gt = gt.ravel()
        return ft, gt, float(gt @ d)

    # the unit Newton step is almost always accepted; the gradient at the
    # trial lets float32 fits judge decrease below the rounding of f
    ls = wolfe_line_search(phi, f, -dec, 1.0, f_noise=noise * abs(f))
    if ls.g is None:
        converged = 0.5 * dec <= math.sqrt(tol) * abs(f)
        return x, f, it, "the line search found no decrease (rounding level reached)", converged
    t, ft = ls.t, ls.f
    x = x + t * d
    it += 1
    recent.append(ft)
    mon(it, ft, gap=0.5 * dec / abs(f), step=t)
    if len(recent) > 3 and recent[-4] - ft <= 0.1 * noise * abs(ft):
        # three steps without a decrease above the rounding of f: the
        # gradient is as small as the data's dtype lets it get
        converged = 0.5 * dec <= math.sqrt(tol) * abs(ft)
        return (
            x,
            ft,
            it,
            "no decrease above rounding in 3 iterations (dtype precision reached)",
            converged,
        )
    return x, ft, it, None, False


#: ``direction(objective, x, iteration) -> (f, d, dec, trusted)``: the smooth
#: objective at ``x``, the Newton direction (None when the gradient is exactly
#: zero), the decrement ``-g.d`` and whether it is accurate enough to stop on.
NewtonDirection = Callable[[Any, np.ndarray, int], tuple[float, Any, float, bool]]


def newton_iterations(name: str, run: Any, direction: NewtonDirection) -> Any:
    """The outer loop the Newton solvers share: direction, stopping test, line search.

    Stops when half the decrement (``f - f*`` for a quadratic) is below ``tol
    * |f|`` and ``direction`` trusts it, after ``max_iter`` iterations, or by
    the rules of :func:`newton_line_step`. When the decrement stops it, the
    direction just computed is taken with a unit step if that does not raise
    ``f`` above its rounding (one value-only pass): the gap left is then of
    the order of the square of the one the test saw.

    Parameters
    ----------
    name : str
        The solver's name, for messages.
    run : softmax.solvers._base.Run
        The problem, starting point and stopping rule.
    direction : callable
        See :data:`NewtonDirection`.

    Returns
    -------
    SolverResult
    """
    from softmax.solvers._base import f_noise_level

    tol, max_iter = run.tol, run.max_iter
    obj, mon = run.objective(name)
    shape = obj.shape
    x = run.coef0.ravel()
    noise = f_noise_level(run.problem.data)
    recent: list[float] = []
    converged = False
    message = f"reached max_iter={max_iter} before the Newton decrement fell below tol"
    it = 0
    f = math.nan
    while True:
        f, d, dec, trusted = direction(obj, x, it)
        if not math.isfinite(f):
            message = "the objective is not finite; scale the features or lower C"
            break
        if d is None:
            converged, message = True, "the gradient is exactly zero"
            break
        if trusted and 0.5 * dec <= tol * abs(f):
            converged = True
            message = f"estimated relative gap {0.5 * dec / abs(f):.2e} <= tol={tol:g}"
            if it < max_iter:
                # The step is computed already (the Hessian was the cost): take
                # it. Near the optimum Newton's unit step leaves a gap of the
                # order of the square of this one, so the coefficients land on
                # the optimum to rounding rather than sqrt(tol) away from it
                # (a relative gap of 1e-10 is a step of ~1e-5 standard errors
                # on a likelihood; statistics need the optimum itself).
                xt = x + d
                ft = obj.smooth_value(xt.reshape(shape))
                if math.isfinite(ft) and ft <= f + noise * abs(f):
                    x, f = xt, ft
                    it += 1
                    mon(it, f, gap=0.5 * dec / abs(f), step=1.0)
                    message += "; the last Newton step taken"
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
