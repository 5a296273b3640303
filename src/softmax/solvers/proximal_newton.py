"""Proximal Newton for non-smooth penalties: the group lasso across classes (and L1).

The objective ``F(x) = f(x) + R(x)`` has a smooth part ``f`` (data term and
the L2 part of the penalty) and a non-smooth part ``R`` whose proximal
operator is in closed form (:meth:`softmax.penalties.Penalty.prox`: block
soft thresholding for the group norm, soft thresholding for L1). Each outer
iteration (Lee, Sun & Saunders, "Proximal Newton-type methods", 2014):

1. at ``x``: ``f``, its gradient ``g`` and Hessian ``H`` (the full matrix
   in one pass when it is small, else Hessian-vector products);
2. an inexact minimiser ``z`` of the quadratic model
   ``q(z) = g.(z - x) + (z - x)' H (z - x) / 2 + R(z)``, by FISTA with
   adaptive restarts (O'Donoghue & Candes, 2015) and a backtracked step
   ``1 / L`` (``L`` from a few power iterations on ``H``), stopped when its
   proximal-gradient residual falls below ``eta`` times that of ``x``
   (``eta = min(0.1, residual)``: a forcing sequence that keeps the outer
   convergence superlinear);
3. a backtracking Armijo search along ``d = z - x`` on ``F`` with the
   model's decrease ``Delta = g.d + R(z) - R(x) < 0``.

For the group norm with the full Hessian, once FISTA's set of non-zero
columns has been stable for 20 iterations, Newton's method on the model
restricted to those columns (where the group norm is smooth) finishes the
inner solve exactly (:func:`support_newton`); it is kept when the model's
KKT conditions then hold on the zero columns, else FISTA goes on. After a
full step with a relative gap below 1e-4 the next model reuses the last
Hessian once (a pass instead of ``O(n (K q)^2)``).

The sparsity pattern comes from the prox inside the model, so zero groups
are exact zeros. Near the optimum the full step is taken and convergence is
quadratic, which is what the KKT conditions of a path need (each zero group's
gradient block at most the penalty weight in norm; each non-zero group's
equal to minus the weight times its unit direction).

Stopping: ``-Delta`` plays the Newton decrement's part (``F - F* ~ -Delta /
2`` near the optimum); when it is below ``tol * |F|`` the step already
computed is taken as well when it lowers ``F`` (as in ``newton-cholesky``),
leaving a gap of order ``tol`` squared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from softmax.backends._base import Capability, RowData
from softmax.penalties import GroupLasso, Penalty
from softmax.solvers._base import Objective, Run, Solver, gap_not_reached
from softmax.solvers._problem import SolverResult
from softmax.solvers.newton_cholesky import newton_direction

__all__ = ["ProximalNewton", "fista_model", "full_hessian_is_cheap"]

#: the full Hessian is formed (one pass, ``O(n (K q)^2)``) when the backend
#: offers it and ``K q`` is at most this; otherwise each inner FISTA step
#: costs one Hessian-vector product (a pass over the rows)
FULL_HESSIAN_MAX_COEF = 2000
#: a full Hessian counts as cheap for :func:`full_hessian_is_cheap` while
#: ``n_samples * n_coef^2`` (its multiply-adds) is at most this: on digits
#: (1,797 x 650 coefficients, 7.6e8) one takes about 0.06 s on one thread
CHEAP_HESSIAN_WORK = 2_000_000_000
#: rounds of (FISTA until its support is stable, Newton on the face) per
#: outer iteration for the elementwise L1 norm, before FISTA alone finishes
POLISH_ROUNDS = 5


def full_hessian_is_cheap(data: RowData) -> bool:
    """Whether ``proximal-newton`` on ``data`` forms full Hessians that are cheap to form and use.

    Dense rows from a backend with full Hessians, at most
    ``FULL_HESSIAN_MAX_COEF`` coefficients, at least as many rows as
    coefficients and ``n_samples * n_coef**2 <= CHEAP_HESSIAN_WORK``. Where
    these fail, proximal Newton was many times slower than OWL-QN
    (``benchmarks/results/l1.md``): with more coefficients than rows (200 x
    500, 3 classes) the model is singular and FISTA crawls; on CSR rows
    (4,000 x 300, 4 classes) the Hessians are slow to form.
    """
    n_coef = data.coef_shape[0] * data.coef_shape[1]
    return (
        not data.is_sparse
        and Capability.HESSIAN in data.capabilities
        and n_coef <= FULL_HESSIAN_MAX_COEF
        and data.n_samples >= n_coef
        and data.n_samples * n_coef**2 <= CHEAP_HESSIAN_WORK
    )


def _largest_eigenvalue(hop: Callable[[np.ndarray], np.ndarray], v: np.ndarray, n: int) -> float:
    """A power-iteration estimate of ``H``'s largest eigenvalue (``v`` is updated in place)."""
    lam = 0.0
    for _ in range(n):
        norm = float(np.linalg.norm(v))
        if not norm > 0:
            return lam
        v /= norm
        w = hop(v)
        lam = float(v.ravel() @ w.ravel())
        v[...] = w
    return lam


def fista_model(
    x: np.ndarray,
    g: np.ndarray,
    hop: Callable[[np.ndarray], np.ndarray],
    prox: Callable[[np.ndarray, np.ndarray], np.ndarray],
    nonsmooth: Callable[[np.ndarray], float],
    metric: np.ndarray,
    L: float,
    rtol: float,
    max_iter: int,
    z0: np.ndarray | None = None,
    patience: int | None = None,
) -> tuple[np.ndarray, float, float, int]:
    """Minimise ``q(z) = g.(z - x) + (z - x)' H (z - x) / 2 + R(z)`` by FISTA with restarts.

    The steps are taken in the metric ``L M``, ``M`` constant on each column
    of ``coef`` (``metric``): a Jacobi-like scaling that keeps the group
    prox in closed form (:meth:`softmax.penalties.Penalty.prox` with a step
    per column) and evens out features of very different scales.

    Parameters
    ----------
    x, g : ndarray of shape (n_classes, n_features + fit_intercept)
        The expansion point and the smooth gradient there.
    hop : callable
        ``V -> H V`` (same shape).
    prox : callable
        ``(V, steps) -> prox`` of ``R`` with one step per column.
    nonsmooth : callable
        ``R``.
    metric : ndarray of shape (n_features + fit_intercept,)
        ``M``'s value on each column (> 0).
    L : float
        First estimate of the largest eigenvalue of ``M^-1/2 H M^-1/2``
        (doubled while a step fails the quadratic upper bound).
    rtol : float
        Stop when ``||L M (y - z)||`` (the proximal-gradient residual of the
        model) is at most ``rtol``.
    max_iter : int
    z0 : ndarray, optional
        Where to start (``x`` when None).
    patience : int, optional
        Also stop once the set of non-zero columns has not changed for this
        many iterations (enough for the support-Newton polish to take over).

    Returns
    -------
    z : ndarray
        The (inexact) minimiser; never worse in ``q`` than ``x``.
    q_decrease : float
        ``q(z) - q(x)`` (<= 0).
    L : float
        The final step constant (a start for the next call).
    n_iter : int
        Hessian products used.
    """
    Rx = nonsmooth(x)
    if z0 is None:
        z = x.copy()
        Hz = np.zeros_like(x)  # H (z - x)
        n_hop = 0
    else:
        z = z0.copy()
        Hz = hop(z - x)
        n_hop = 1
    y, Hy = z, Hz
    t = 1.0
    support = z.any(axis=0)
    stable = 0
    for _ in range(max_iter):
        grad = g + Hy
        while True:
            steps = 1.0 / (L * metric)
            z_new = prox(y - grad * steps, steps)
            D = z_new - y
            HD = hop(D)
            n_hop += 1
            DM = D * metric
            dMd = float(np.einsum("ij,ij->", D, DM))
            if float(np.einsum("ij,ij->", D, HD)) <= L * dMd * (1 + 1e-12) or dMd == 0:
                break
            L *= 2.0
        Hz_new = Hy + HD
        residual = L * float(np.linalg.norm(DM))
        # restart when the momentum points uphill (the gradient-mapping test)
        if float(np.einsum("ij,ij->", DM, z - z_new)) > 0:
            t = 1.0
            y_next, Hy_next = z_new, Hz_new
        else:
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            beta = (t - 1.0) / t_new
            y_next = z_new + beta * (z_new - z)
            Hy_next = Hz_new + beta * (Hz_new - Hz)
            t = t_new
        z, Hz, y, Hy = z_new, Hz_new, y_next, Hy_next
        if residual <= rtol:
            break
        if patience is not None:
            new_support = z.any(axis=0)
            stable = stable + 1 if np.array_equal(new_support, support) else 0
            support = new_support
            if stable >= patience:
                break
    d = z - x
    dq = float(np.einsum("ij,ij->", g, d)) + 0.5 * float(np.einsum("ij,ij->", d, Hz))
    dq += nonsmooth(z) - Rx
    if not dq <= 0:
        # an unfinished accelerated run can end above its start: one proximal
        # gradient step from x always decreases q (L M bounds H on the step)
        steps = 1.0 / (L * metric)
        z = prox(x - g * steps, steps)
        d = z - x
        Hd = hop(d)
        n_hop += 1
        dq = float(np.einsum("ij,ij->", g, d)) + 0.5 * float(np.einsum("ij,ij->", d, Hd))
        dq += nonsmooth(z) - Rx
    return z, min(dq, 0.0), L, n_hop


def support_newton(
    x: np.ndarray,
    g: np.ndarray,
    H: np.ndarray,
    z: np.ndarray,
    pen: GroupLasso,
    U: np.ndarray | None,
    rtol: float,
    max_iter: int = 20,
) -> np.ndarray | None:
    """Newton's method on the model ``q`` restricted to the non-zero columns of ``z``.

    On the columns ``S`` where ``z`` is non-zero (and the intercept) the
    group norm is smooth, with gradient ``c z_j / ||z_j||`` and Hessian ``c
    (I - u u') / ||z_j||`` (``u = z_j / ||z_j||``), so ``q`` restricted to
    them is minimised by a few damped Newton steps with a Cholesky solve of
    the ``(K |S|)``-square system: exact where FISTA, near the optimum, would
    crawl. ``U`` (null directions of ``H``, as in ``newton-cholesky``) keeps
    the intercepts' shift, along which nothing is curved, well posed. Stops
    once the gradient on ``S`` is below ``rtol / 10`` in norm (the caller's
    tolerance for the model's KKT residual).

    Returns
    -------
    ndarray or None
        The minimiser over ``S`` (the other columns zero), or None when a
        column of ``S`` shrank to zero on the way (the support was wrong).
    """
    K, q = z.shape
    p = q - int(pen.fit_intercept)
    c = pen.group_weight
    cols = np.flatnonzero(z.any(axis=0))
    if pen.fit_intercept and (q - 1) not in cols:
        cols = np.append(cols, q - 1)
    idx = (np.arange(K)[:, None] * q + cols[None, :]).ravel()
    HS = H[np.ix_(idx, idx)]
    US = None if U is None else U[:, idx]
    zS = z[:, cols].copy()
    xS = x[:, cols]
    gS = g[:, cols]
    pos = np.flatnonzero(cols < p)  # positions of penalised columns within S

    def q_and_grad(zS: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        dS = zS - xS
        HdS = (HS @ dS.ravel()).reshape(K, -1)
        norms = np.sqrt(np.einsum("kj,kj->j", zS[:, pos], zS[:, pos]))
        value = float(np.einsum("kj,kj->", gS, dS)) + 0.5 * float(np.einsum("kj,kj->", dS, HdS))
        value += c * float(norms.sum())
        grad = gS + HdS
        grad[:, pos] += c * zS[:, pos] / np.maximum(norms, 1e-300)
        return value, grad, norms

    # below this the gradient is rounding: Newton steps would only fail their search
    floor = 1e-12 * (float(np.linalg.norm(gS)) + c * math.sqrt(max(len(pos), 1)))
    value, grad, norms = q_and_grad(zS)
    for _ in range(max_iter):
        if not np.all(norms > 0):
            return None
        if float(np.linalg.norm(grad)) <= max(0.1 * rtol, floor):
            break
        A = HS.copy()
        A4 = A.reshape(K, len(cols), K, len(cols))
        u = zS[:, pos] / norms
        for i, j in enumerate(pos):
            A4[:, j, :, j] += (c / norms[i]) * (np.eye(K) - np.outer(u[:, i], u[:, i]))
        d = newton_direction(A, grad.ravel(), US).reshape(K, -1)
        dec = -float(np.einsum("kj,kj->", grad, d))
        if not dec > 1e-30 * max(abs(value), 1.0):
            break
        step = 1.0
        for _ in range(20):
            new = zS + step * d
            v_new, g_new, n_new = q_and_grad(new)
            if v_new <= value - 1e-4 * step * dec:
                break
            step *= 0.5
        else:
            break
        zS, value, grad, norms = new, v_new, g_new, n_new
    if not np.all(norms > 0):
        return None
    out = np.zeros_like(z)
    out[:, cols] = zS
    return out


def support_newton_l1(
    x: np.ndarray,
    g: np.ndarray,
    H: np.ndarray,
    z: np.ndarray,
    pen: Penalty,
    U: np.ndarray | None,
    max_iter: int = 5,
) -> np.ndarray:
    """Newton's method on the model ``q`` over the face of ``z`` (support and signs fixed).

    On the coordinates ``S`` where ``z`` is non-zero (and the intercepts),
    with the signs ``sigma`` of ``z`` there, the L1 norm is the linear
    function ``c sigma.z``, so ``q`` on that face is a quadratic whose
    minimiser is one Newton step away: ``H_SS dz = -(g + H (z - x) + c
    sigma)_S`` (a Cholesky solve of a ``|S|``-square system; ``U``, the flat
    directions of ``H`` as in ``newton-cholesky``, keeps the intercepts'
    shift well posed). When the step would take a weight across zero, it
    is projected on the orthant of ``z`` or cut where the first weight
    reaches zero, whichever lowers ``q`` more; the weights at zero leave
    ``S`` and the step is recomputed (an active-set method: ``q`` decreases
    at every step). Exact where FISTA,
    near the optimum, would crawl along an ill-conditioned face; whether
    zero weights should enter is the caller's check (the model's KKT
    conditions).

    Returns
    -------
    ndarray
        Never worse in ``q`` than ``z``; zero off the final ``S``.
    """
    K, q = z.shape
    penalised = np.ones(K * q, dtype=bool)
    if pen.fit_intercept:
        penalised.reshape(K, q)[:, -1] = False
    c = pen.l1_weight
    zf = z.ravel().copy()
    xf = x.ravel()
    gf = g.ravel()

    def model(v: np.ndarray) -> float:
        d = v - xf
        return float(gf @ d + 0.5 * d @ (H @ d) + c * np.abs(v[penalised]).sum())

    value = model(zf)
    for _ in range(max_iter):
        idx = np.flatnonzero((zf != 0) | ~penalised)
        sigma = np.sign(zf[idx]) * penalised[idx]
        grad = gf[idx] + H[idx] @ (zf - xf) + c * sigma
        # the flat directions (the intercepts' shift) lie inside S, orthogonal to grad
        US = None if U is None else U[:, idx]
        step = newton_direction(H[np.ix_(idx, idx)], grad, US)
        new = zf[idx] + step
        crossing = np.flatnonzero(np.sign(new) * sigma < 0)
        if not len(crossing):
            zf[idx] = new
            break
        # weights that would cross zero leave the face: either all at once
        # (the step projected on the orthant) or the first one (the step cut
        # where it reaches zero, a decrease of q for sure); the lower q wins
        projected = zf.copy()
        projected[idx] = np.where(np.sign(new) * sigma < 0, 0.0, new)
        ratios = -zf[idx][crossing] / step[crossing]
        first = int(np.argmin(ratios))
        cut = zf.copy()
        cut[idx] += ratios[first] * step
        cut[idx[crossing[first]]] = 0.0
        cut[idx[np.sign(cut[idx]) * sigma < 0]] = 0.0  # rounding at the boundary
        candidates = [(model(v), i, v) for i, v in enumerate((projected, cut))]
        best_value, _, best = min(candidates)
        if not best_value < value:
            break
        zf, value = best, best_value
    return zf.reshape(K, q)


def _model_value(
    x: np.ndarray,
    g: np.ndarray,
    hop: Callable[[np.ndarray], np.ndarray],
    pen: Penalty,
    z: np.ndarray,
) -> tuple[float, np.ndarray]:
    """``q(z) - R(x)`` and the smooth model gradient ``g + H (z - x)``."""
    d = z - x
    Hd = hop(d)
    value = float(np.einsum("ij,ij->", g, d)) + 0.5 * float(np.einsum("ij,ij->", d, Hd))
    return value + pen.nonsmooth_value(z), g + Hd


def column_metric(H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The largest eigenvalue of each column's diagonal block of ``H``, of shape (q,).

    ``H`` is the full Hessian (C-order flattening of ``coef``, shape ``(K q,
    K q)``); the block of column ``j`` couples its ``K`` class weights.
    Floored at ``1e-8`` of the largest, so that a feature with no curvature
    (a constant-zero column) gets a finite step.
    """
    K, q = shape
    H4 = H.reshape(K, q, K, q)
    blocks = np.einsum("kjlj->jkl", H4)
    top = np.linalg.eigvalsh(blocks)[:, -1]
    floor = 1e-8 * max(float(top.max(initial=0.0)), 1e-300)
    return np.maximum(top, floor)


@dataclass(frozen=True)
class ProximalNewton(Solver):
    """Proximal Newton with a FISTA inner solver: the group lasso's solver (and L1's).

    Parameters
    ----------
    max_inner_iter : int, default 1000
        Most FISTA iterations per outer iteration.
    full_hessian : {"auto", True, False}, default "auto"
        Form the full Hessian once per outer iteration (then each inner step
        is a small matrix product) or use Hessian-vector products (one pass
        over the rows per inner step). ``"auto"``: the full Hessian when the
        backend offers it and ``n_coef <= FULL_HESSIAN_MAX_COEF``.
    """

    name: ClassVar[str] = "proximal-newton"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.HESSP})
    supports_l1: ClassVar[bool] = True
    supports_group: ClassVar[bool] = True
    tol_controls: ClassVar[str] = (
        "the decrease -Delta = -(g.d + R(x+d) - R(x)) promised by the proximal Newton "
        "step d (the analogue of the Newton decrement), relative to |F|"
    )

    max_inner_iter: int = 1000
    full_hessian: bool | str = "auto"

    def _use_full(self, obj: Objective) -> bool:
        if self.full_hessian != "auto":
            return bool(self.full_hessian)
        n_coef = obj.shape[0] * obj.shape[1]
        return Capability.HESSIAN in obj.data.capabilities and n_coef <= FULL_HESSIAN_MAX_COEF

    def _solve(self, run: Run) -> SolverResult:
        """The proximal Newton iteration (see the module docstring)."""
        obj, mon = run.objective(self.name)
        pen = obj.penalty
        shape = obj.shape
        tol, max_iter = run.tol, run.max_iter
        full = self._use_full(obj)

        def F_at(x: np.ndarray) -> float:
            return obj.smooth_value(x) + pen.nonsmooth_value(x)

        stale: list[Any] = []  # the last full Hessian and its metric

        def model_at(
            x: np.ndarray, reuse: bool
        ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray], np.ndarray, Any]:
            if full:
                if reuse and stale:
                    # Near the optimum, after a full step, the Hessian has hardly
                    # moved: the last one serves this model (one pass, where a new
                    # Hessian costs n (K q)^2); the next model gets a fresh one.
                    fs, g = obj.smooth(x)
                    H, metric = stale
                else:
                    fs, g, H = obj.smooth_hessian(x)
                    metric = column_metric(H, shape)
                    stale[:] = [H, metric]

                def hop(V: np.ndarray) -> np.ndarray:
                    return obj.restrict((H @ V.ravel()).reshape(shape))

                return fs, g, hop, metric, H
            fs, g, hp = obj.smooth_hessp(x)
            return fs, g, hp, np.ones(shape[1]), None

        # Newton on the support of FISTA's answer: for the group norm, with the full Hessian
        polish = full and isinstance(pen, GroupLasso) and pen.group_weight > 0
        # ... and for the elementwise L1 norm, on the face (support and signs)
        polish_l1 = full and not isinstance(pen, GroupLasso) and pen.l1_weight > 0
        U = obj.null_space() if polish or polish_l1 else None
        x = run.coef0
        v = obj.restrict(np.ones(shape) + np.arange(x.size).reshape(shape) / x.size)
        L = 0.0
        converged = False
        message = gap_not_reached(max_iter, tol)
        it = 0
        F = math.nan
        reuse = False
        while True:
            fs, g, hop, metric, H = model_at(x, reuse)
            F = fs + pen.nonsmooth_value(x)
            if not math.isfinite(F):
                message = "the objective is not finite; scale the features or lower C"
                break
            root = np.sqrt(metric)

            def scaled(V: np.ndarray, hop=hop, root=root) -> np.ndarray:
                return hop(V / root) / root

            # power iteration on M^-1/2 H M^-1/2 (a few steps from the last vector)
            L = max(1.05 * _largest_eigenvalue(scaled, v, 8 if it else 30), L / 4, 1e-12)
            # proximal-gradient residual at x in the same metric (zero exactly at the optimum)
            steps = 1.0 / (L * metric)
            r0 = L * float(np.linalg.norm((x - pen.prox(x - g * steps, steps)) * metric))
            if r0 == 0.0:
                converged, message = True, "the proximal-gradient residual is exactly zero"
                break
            rtol = min(0.1, r0) * r0

            def inner(
                z0: Any, patience: Any, L: float, x=x, g=g, hop=hop, metric=metric, rtol=rtol
            ) -> Any:
                return fista_model(
                    x,
                    g,
                    hop,
                    pen.prox,
                    pen.nonsmooth_value,
                    metric,
                    L,
                    rtol,
                    self.max_inner_iter,
                    z0=z0,
                    patience=patience,
                )

            z, _, L, _ = inner(None, 20 if polish or polish_l1 else None, L)
            # FISTA finds the support, Newton the weights on it; for L1, a few
            # rounds (a weight entering the face sends FISTA back for 20 steps)
            for _ in range(POLISH_ROUNDS if polish_l1 else 1 if polish else 0):
                if polish:
                    zp = support_newton(x, g, H, z, pen, U, rtol)
                else:
                    zp = support_newton_l1(x, g, H, z, pen, U)
                done = False
                if zp is not None:
                    qz, _ = _model_value(x, g, hop, pen, z)
                    qp, gq = _model_value(x, g, hop, pen, zp)
                    if qp <= qz:
                        z = zp
                        # the model's own KKT residual: is the support complete?
                        done = float(np.linalg.norm(pen.min_norm_subgradient(zp, gq))) <= rtol
                if done:
                    break
                z, _, L, _ = inner(z, 20 if polish_l1 else None, L)
            else:
                if polish_l1:
                    z, _, L, _ = inner(z, None, L)
            d = z - x
            delta = float(np.einsum("ij,ij->", g, d))
            delta += pen.nonsmooth_value(z) - pen.nonsmooth_value(x)
            gap = -delta
            if gap <= tol * abs(F):
                # the step already computed lowers F by about the gap: take it
                Fz = F_at(z)
                if Fz <= F:
                    x, F = z, Fz
                converged = True
                message = f"estimated relative gap {gap / abs(F):.2e} <= tol={tol:g}"
                break
            if it >= max_iter:
                break
            step = 1.0
            for _ in range(40):
                xt = x + step * d if step < 1 else z
                Ft = F_at(xt)
                if math.isfinite(Ft) and Ft <= F + 1e-4 * step * delta:
                    break
                step *= 0.5
            else:
                message = "no further decrease possible (rounding level reached)"
                converged = gap <= math.sqrt(tol) * abs(F)
                break
            # a stale Hessian only right after a fresh one, a full step and a small gap
            reuse = not reuse and step == 1.0 and gap <= 1e-4 * abs(F)
            x = xt
            it += 1
            mon(it, Ft, gap=gap / abs(F))
        return mon.result(x, it, converged, F, message)
