"""The L-BFGS iteration on the rows' own device (rows that declare ``DEVICE_ARRAYS``).

The same method as :class:`softmax.solvers.lbfgs.LBFGS` (same options, the
same preconditioners, the same stopping rule, line search and refresh
schedule) written with the operations of the rows' Array API namespace, so
that on a GPU the iterate, the gradient, the direction, the ``(s, y)``
history with its two-loop recursion, and the preconditioner (diagonal or
Kronecker, its eigendecomposition by ``xp.linalg.eigh``) all stay on the
device. What crosses to the host, per iteration, is scalars only: at each
trial step of the line search the objective, the directional derivative and
the gradient's largest entry (one transfer of three numbers); the
directional derivative of the new direction; and the new pair's ``s.y``,
``y.y``, ``s.s``, ``y.M.y`` (one transfer of four). The host keeps what
decides (the line search's bracketing, the gap estimates, the monitor);
the coefficients come back once, at the end.

Why a second loop and not the NumPy one made generic: the NumPy road is
tuned for CPUs (numba-compiled recursion for small problems, in-place ring
buffers, LAPACK calls), and JAX arrays cannot be written in place. Here every
update is functional (``concat``, ``where``), and the history is kept
oldest-first and rolled rather than written into a ring, so the one code
runs on PyTorch, CuPy, JAX and ``array_api_strict`` (whose ``device1``
refuses any hidden move to the host: the tests run there).

The two-loop recursion is solved in its Gram form (as
``LBFGSMemory._direction_gram``): four matrix-vector products over the
history and two ``m x m`` unit triangular solves (``torch.linalg
.solve_triangular`` on PyTorch; ``xp.linalg.solve`` elsewhere), a handful
of kernels per iteration instead of ``4 m`` small ones.

What stays on the host: the class factor of the Kronecker preconditioner
is decomposed on the device too (``K x K``), so nothing of size ``K`` or
``p`` crosses during a fit; only a problem with a reference class (a fixed
row), which the estimator does not send to the device, runs the NumPy road.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from softmax._array_api import library_of
from softmax.backends import array_api as _backend
from softmax.backends._base import Capability
from softmax.solvers._base import Objective, RateGapEstimate, Run, f_noise_level
from softmax.solvers._lbfgs_policy import (
    HISTORY_BYTES,
    KRONECKER_START,
    default_history,
    refresh_due,
    use_kronecker,
)
from softmax.solvers._linesearch import wolfe_line_search
from softmax.solvers._preconditioners import KRONECKER_FLOAT32_FEATURES
from softmax.solvers._problem import Problem, SolverResult

__all__ = ["DeviceMemory", "applies", "solve_on_device"]

Vec = Any  # a 1-D array of the rows' namespace, on their device
Precond = Callable[[Vec], Vec]


def applies(problem: Problem) -> bool:
    """Whether an L-BFGS fit of ``problem`` takes the device road.

    Rows that answer on their device (``Capability.DEVICE_ARRAYS``), and no
    reference class (whose fixed row the NumPy road handles).
    """
    return Capability.DEVICE_ARRAYS in problem.data.capabilities and problem.reference is None


def _cast(xp: Any, a: Any, dtype: Any) -> Any:
    """``a`` in ``dtype``; itself when it is already (no kernel, no copy)."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def to_host(xp: Any, *values: Any) -> list[float]:
    """0-d device arrays as host floats, in one transfer (one sync on a GPU)."""
    dt = values[0].dtype
    flat = xp.stack([_cast(xp, v, dt) for v in values])
    out = _backend._to_numpy(xp, flat)  # the one helper through which data leaves
    return [float(v) for v in out]


class _Space:
    """The device, its namespace and dtypes, and the vector operations the loop needs."""

    def __init__(self, data: Any) -> None:
        self.xp = data.xp
        self.device = data.device
        self.dtype = data.work_dtype  # iterates and gradients: float64 where the device has it
        # the history in the rows' dtype, as on the host (make_memory): float32
        # rows give float32 pairs, half the memory traffic of the recursion
        self.hist_dtype = data.X.dtype
        self.torch = library_of(data.X) == "torch"

    def asarray(self, a: np.ndarray) -> Vec:
        return self.xp.asarray(np.asarray(a), dtype=self.dtype, device=self.device)

    def dot(self, a: Vec, b: Vec) -> Any:
        """``a . b`` (0-d) of two 1-D arrays: one kernel (BLAS dot), not a product and a sum."""
        return a @ b

    def solve_unit(self, A: Any, b: Vec, upper: bool) -> Vec:
        """``A^-1 b`` for a unit triangular ``A`` (``m x m``), on the device."""
        if self.torch:  # a triangular substitution, and no sync to check for errors
            import torch

            out = torch.linalg.solve_triangular(A, b[:, None], upper=upper, unitriangular=True)
        else:
            out = self.xp.linalg.solve(A, b[:, None])
        return out[:, 0]


class _DeviceObjective:
    """:class:`~softmax.solvers._base.Objective`'s smooth part and ``restrict``, on the device."""

    def __init__(self, obj: Objective, space: _Space) -> None:
        xp = space.xp
        self.obj = obj
        self.data = obj.data
        self.space = space
        self.shape = obj.shape
        K, q = obj.shape
        self.p = self.data.n_features
        self.loss_scale = obj.loss_scale
        # the L2 weight of each column of coef: the intercept column is unpenalised
        l2 = obj.penalty.smooth_l2
        self.l2 = l2
        mask = np.full(q, l2)
        if self.data.fit_intercept:
            mask[-1] = 0.0
        self.l2_columns = space.asarray(mask)[None, :]
        self.sum_zero = obj.sum_zero and K > 1
        self.feature_factor: Any = None  # (mean, lam, U) on the device, once
        del xp

    def restrict(self, v: Vec) -> Vec:
        """``Objective.restrict`` of a flat vector: the class sums of every column zero."""
        if not self.sum_zero:
            return v
        xp = self.space.xp
        V = xp.reshape(v, self.shape)
        return xp.reshape(V - xp.mean(V, axis=0, keepdims=True), (-1,))

    def smooth(self, x: Vec) -> tuple[Any, Vec]:
        """Smooth ``f`` (0-d) and its restricted gradient (flat) at flat ``x``; one pass."""
        xp = self.space.xp
        coef = xp.reshape(x, self.shape)
        loss, grad = self.data.device_loss_gradient(coef)
        f = loss * self.loss_scale
        grad = grad * self.loss_scale
        if self.l2:
            f = f + 0.5 * xp.sum(coef * coef * self.l2_columns)
            grad = grad + coef * self.l2_columns
        return f, self.restrict(xp.reshape(grad, (-1,)))


# --------------------------------------------------------------------------- history


class DeviceMemory:
    """The last ``m`` pairs ``(s, y)`` on the device, oldest first, and the two-loop recursion.

    Parameters
    ----------
    space : _Space
    m : int
        History size.
    precond : callable or None
        ``g -> M g`` (device vectors), the initial inverse Hessian up to
        ``gamma``; it may offer ``precond.quad(y)`` (a 0-d device array).

    Attributes
    ----------
    S, Y : arrays of shape (count, n), the rows' dtype
        The pairs, oldest first.
    rho : array of shape (count,)
        ``1 / s.y``.
    G : array of shape (count, count)
        ``G[t, u] = s_t . y_u``, kept up to date by :meth:`push`.
    """

    def __init__(self, space: _Space, m: int, precond: Precond | None) -> None:
        if m < 1:
            raise ValueError(f"history_size must be >= 1, got {m}")
        self.space = space
        self.m = m
        self.M = precond
        self.gamma = 1.0
        self._mask_cache: dict[int, tuple[Any, Any, Any]] = {}
        self.clear()

    @property
    def count(self) -> int:
        return 0 if self.S is None else int(self.S.shape[0])

    def clear(self) -> None:
        self.S = self.Y = self.rho = self.G = None

    def transform(self, change: Callable[[Any], Any]) -> None:
        """Re-express the pairs in new coordinates (``change`` linear and orthogonal)."""
        if self.S is not None:
            xp, hd = self.space.xp, self.space.hist_dtype
            self.S = _cast(xp, change(self.S), hd)
            self.Y = _cast(xp, change(self.Y), hd)

    def curvature(self, s: Vec, y: Vec) -> tuple[list[float], Any]:
        """``[s.y, y.y, s.s, y.M.y]`` on the host, in one transfer; and ``s.y`` on the device."""
        sp = self.space
        if self.M is None:
            yMy = sp.dot(y, y)
        else:
            quad = getattr(self.M, "quad", None)
            yMy = quad(y) if quad is not None else sp.dot(y, self.M(y))
        sy = sp.dot(s, y)
        return to_host(sp.xp, sy, sp.dot(y, y), sp.dot(s, s), yMy), sy

    def push(self, s: Vec, y: Vec) -> bool:
        """Store a pair if its curvature ``s.y`` is safely positive."""
        (sy, yy, ss, yMy), sy_device = self.curvature(s, y)
        if not (sy > 1e-12 * math.sqrt(ss * yy) and yy > 0):
            return False  # would break positive definiteness: skip the update
        sp = self.space
        xp, dt, hd = sp.xp, sp.dtype, sp.hist_dtype
        s_h, y_h = _cast(xp, s, hd)[None, :], _cast(xp, y, hd)[None, :]
        # from the device's own s.y: no host-to-device copy (a sync on a GPU)
        rho = xp.reshape(1.0 / _cast(xp, sy_device, dt), (1,))
        if self.S is None:
            self.S, self.Y, self.rho = s_h, y_h, rho
            self.G = xp.reshape(_cast(xp, sp.dot(s_h[0, :], y_h[0, :]), dt), (1, 1))
        else:
            S, Y, G, old_rho = self.S, self.Y, self.G, self.rho
            if S.shape[0] == self.m:  # the oldest pair leaves
                S, Y, G, old_rho = S[1:, :], Y[1:, :], G[1:, 1:], old_rho[1:]
            col = _cast(xp, S @ y_h[0, :], dt)  # s_t . y_new
            row = _cast(xp, Y @ s_h[0, :], dt)  # s_new . y_u
            corner = xp.reshape(_cast(xp, self.space.dot(s_h[0, :], y_h[0, :]), dt), (1, 1))
            top = xp.concat([G, col[:, None]], axis=1)
            bottom = xp.concat([row[None, :], corner], axis=1)
            self.G = xp.concat([top, bottom], axis=0)
            self.S = xp.concat([S, s_h], axis=0)
            self.Y = xp.concat([Y, y_h], axis=0)
            self.rho = xp.concat([old_rho, rho])
        self.gamma = sy / yMy
        return True

    def _masks(self, k: int) -> tuple[Any, Any, Any]:
        """``I``, and the 0/1 masks of the strict upper and lower triangles (``k x k``), cached."""
        if k not in self._mask_cache:
            sp = self.space
            xp = sp.xp
            eye = xp.eye(k, dtype=sp.dtype, device=sp.device)
            idx = xp.arange(k, device=sp.device)
            above = _cast(xp, idx[:, None] < idx[None, :], sp.dtype)
            below = _cast(xp, idx[:, None] > idx[None, :], sp.dtype)
            self._mask_cache[k] = (eye, above, below)
        return self._mask_cache[k]

    def direction(self, g: Vec) -> Vec:
        """``-H_k g`` by the two-loop recursion in its Gram form, on the device.

        Oldest first (``t = 0 .. k-1``), the first loop's ``alpha_t = rho_t
        s_t.(g - sum_{u>t} alpha_u y_u)`` is the unit upper triangular system
        ``(I + diag(rho) triu(G, 1)) alpha = rho * (S g)``; ``r = gamma M (g -
        Y^T alpha)``; the second loop's ``c = alpha - beta`` solves the unit
        lower triangular ``(I + diag(rho) tril(G^T, -1)) c = alpha - rho *
        (Y r)``; the direction is ``-(r + S^T c)`` (see
        ``LBFGSMemory._direction_gram`` for the newest-first form).
        """
        sp = self.space
        xp, dt, hd = sp.xp, sp.dtype, sp.hist_dtype
        S, Y, G, rho = self.S, self.Y, self.G, self.rho
        eye, above, below = self._masks(S.shape[0])
        upper = eye + rho[:, None] * (G * above)
        lower = eye + rho[:, None] * (xp.permute_dims(G, (1, 0)) * below)
        q = _cast(xp, g, hd)
        alpha = sp.solve_unit(upper, rho * _cast(xp, S @ q, dt), upper=True)
        q = q - _cast(xp, alpha, hd) @ Y
        if self.M is not None:  # applied in the working dtype, like the gradients
            q = _cast(xp, self.M(_cast(xp, q, dt)), hd)
        q = q * self.gamma
        c = sp.solve_unit(lower, alpha - rho * _cast(xp, Y @ q, dt), upper=False)
        q = q + _cast(xp, c, hd) @ S
        return -_cast(xp, q, dt)


# --------------------------------------------------------------------------- preconditioners


def _inverse(xp: Any, a: Any) -> Any:
    """``1 / a`` where ``a > 0``, else 0 (a flat direction: no step along it)."""
    pos = a > 0
    return xp.where(pos, 1.0 / xp.where(pos, a, xp.ones_like(a)), xp.zeros_like(a))


def diagonal(dobj: _DeviceObjective, coef: Any | None) -> Precond | None:
    """:func:`softmax.solvers._preconditioners.diagonal`, built and applied on the device."""
    data, sp = dobj.data, dobj.space
    xp = sp.xp
    K, q = dobj.shape
    p = dobj.p
    if coef is not None and Capability.CURVATURE_MOMENTS in data.capabilities:
        s0, s1, s2 = data.device_curvature_moments(coef)
    elif Capability.FEATURE_MOMENTS in data.capabilities:
        mean, sq = data.device_feature_moments()
        c = (1.0 / K) * (1.0 - 1.0 / K)  # p (1 - p) at p = 1/K
        sw = float(data.weight_sum)
        s0 = xp.full((K,), c * sw, dtype=sp.dtype, device=sp.device)
        s1 = xp.broadcast_to(c * sw * mean[None, :], (K, p))
        s2 = xp.broadcast_to(c * sw * sq[None, :], (K, p))
    else:
        return None
    scale, l2 = dobj.loss_scale, dobj.l2
    one = xp.ones((), dtype=sp.dtype, device=sp.device)
    if data.fit_intercept:
        mu = s1 / xp.where(s0 > 0, s0, one)[:, None]  # (K, p) curvature-weighted means
        dw = xp.maximum(s2 - s1 * mu, 0.0 * one) * scale + l2
        db = s0 * scale
        inv_b = 1.0 / xp.where(db <= 0, one, db)
    else:
        dw = s2 * scale + l2
    # constant features with no penalty: curvature unknown, any scale works
    inv_w = 1.0 / xp.where(dw <= 0, one, dw)
    if not data.fit_intercept:
        inv = xp.reshape(inv_w, (-1,))

        def apply_diag(g: Vec) -> Vec:
            return inv * g

        return apply_diag

    def apply(g: Vec) -> Vec:
        Gm = xp.reshape(g, (K, q))
        gb = Gm[:, p]
        W = (Gm[:, :p] - gb[:, None] * mu) * inv_w  # T^T g, then D^-1
        b = gb * inv_b - xp.sum(W * mu, axis=1)  # then T: back to b = b' - W mu
        return xp.reshape(xp.concat([W, b[:, None]], axis=1), (-1,))

    return apply


class FeatureBasis:
    """``v -> v Q`` of each class's weights, on the device (see the NumPy ``FeatureBasis``)."""

    def __init__(self, Q: Any, space: _Space, shape: tuple[int, int], precond: Precond) -> None:
        self.Q = Q
        self.QT = space.xp.permute_dims(Q, (1, 0))
        self.space = space
        self.shape = shape
        self.precond = precond

    def _map(self, V: Any, Q: Any) -> Any:
        xp = self.space.xp
        K, q = self.shape
        p = Q.shape[0]
        G = xp.reshape(V, (-1, K, q))
        W = xp.reshape(_cast(xp, G[:, :, :p], Q.dtype), (-1, p)) @ Q
        W = _cast(xp, xp.reshape(W, (-1, K, p)), self.space.dtype)
        out = xp.concat([W, _cast(xp, G[:, :, p:], self.space.dtype)], axis=2)
        return xp.reshape(out, tuple(V.shape))

    def forward(self, V: Any) -> Any:
        """Coordinates in the basis, ``(n,)`` or ``(r, n)``."""
        return self._map(V, self.Q)

    def back(self, V: Any) -> Any:
        """Back from the basis; inverse of :meth:`forward`."""
        return self._map(V, self.QT)


def _feature_factor(dobj: _DeviceObjective) -> tuple[Any, Any, Any] | None:
    """``(mean, lam, U)``: the feature covariance's eigendecomposition on the device, once.

    ``xp.linalg.eigh`` in float32 from ``KRONECKER_FLOAT32_FEATURES`` features
    on (as on the host: a preconditioner needs no more digits). Constant
    features are not split off as on the host: their zero rows and columns
    are an exact invariant subspace, and ``M`` is the same on any basis of
    that eigenvalue's space.
    """
    if dobj.feature_factor is not None:
        return dobj.feature_factor or None
    data, sp = dobj.data, dobj.space
    xp = sp.xp
    if Capability.FEATURE_COVARIANCE not in data.capabilities:
        dobj.feature_factor = ()
        return None
    mean, S = data.device_feature_covariance()
    if not data.fit_intercept:
        S = S + mean[:, None] * mean[None, :]
    dt = xp.float32 if dobj.p >= KRONECKER_FLOAT32_FEATURES else sp.dtype
    lam, U = xp.linalg.eigh(_cast(xp, S, dt))
    dobj.feature_factor = (mean, _cast(xp, lam, sp.dtype), U)
    return dobj.feature_factor


def _class_factor(sp: _Space, K: int, A: Any | None) -> tuple[Any, Any, Any]:
    """``(Ua, la, inv_b)``, as the NumPy ``_class_factor``, on the device.

    The all-ones vector is split off exactly (last column of ``Ua``,
    eigenvalue 0); ``inv_b`` inverts ``A`` on the intercepts with the mean
    positive eigenvalue along the all-ones shift.
    """
    xp, dt, dev = sp.xp, sp.dtype, sp.device
    eye = xp.eye(K, dtype=dt, device=dev)
    if A is None:
        A = (eye - 1.0 / K) / K
    A = 0.5 * (A + xp.permute_dims(A, (1, 0)))
    ones = xp.full((K, 1), 1.0 / math.sqrt(K), dtype=dt, device=dev)
    Q = xp.linalg.qr(xp.concat([ones, eye[:, : K - 1]], axis=1))[0][:, 1:]
    la, V = xp.linalg.eigh(xp.permute_dims(Q, (1, 0)) @ A @ Q)
    Ua = xp.concat([Q @ V, ones], axis=1)
    zero = xp.zeros((1,), dtype=dt, device=dev)
    la = xp.concat([xp.maximum(la, zero), zero])
    pos = la > 0
    n_pos = xp.sum(_cast(xp, pos, dt))
    total = xp.sum(xp.where(pos, la, xp.zeros_like(la)))
    mean_pos = total / xp.maximum(n_pos, xp.ones_like(n_pos))
    fill = xp.where(n_pos > 0, mean_pos, xp.ones_like(mean_pos))
    lab = xp.where(pos, la, fill)
    inv_b = (Ua / lab[None, :]) @ xp.permute_dims(Ua, (1, 0))
    return Ua, la, inv_b


def kronecker(dobj: _DeviceObjective, coef: Any | None) -> Precond | None:
    """:func:`softmax.solvers._preconditioners.kronecker`, built and applied on the device.

    Returns ``g -> M g`` with ``quad`` and ``basis`` (a :class:`FeatureBasis`
    whose ``precond`` is ``M`` in that basis), or None without
    ``feature_covariance`` or without an L2 part.
    """
    factor = _feature_factor(dobj) if dobj.l2 > 0 else None
    if factor is None:
        return None
    mean, lb, Ub = factor
    data, sp = dobj.data, dobj.space
    xp = sp.xp
    K, q = dobj.shape
    p = dobj.p
    A = None
    if coef is not None and Capability.CLASS_CURVATURE in data.capabilities:
        A = data.device_class_curvature(coef)
    Ua, la, inv_b = _class_factor(sp, K, A)
    lb = xp.maximum(lb, xp.zeros_like(lb))
    l2 = dobj.l2
    inv_w = _inverse(xp, la[:, None] * lb[None, :] + l2)
    UaT = xp.permute_dims(Ua, (1, 0))
    mean_r = None
    if data.fit_intercept:
        mean_r = _cast(xp, _cast(xp, mean, Ub.dtype) @ Ub, sp.dtype)

    def centred(g: Vec) -> tuple[Any, Any]:
        Gm = xp.reshape(g, (K, q))
        GW = Gm[:, :p]
        if mean_r is None:
            return GW, None
        gb = Gm[:, p]
        return GW - gb[:, None] * mean_r[None, :], gb  # T^T g: the gradient in (W, b')

    def apply_r(g: Vec) -> Vec:
        GW, gb = centred(g)
        W = Ua @ ((UaT @ GW) * inv_w)
        if gb is None:
            return xp.reshape(W, (-1,))
        b = inv_b @ gb - W @ mean_r  # back to b = b' - W mu
        return xp.reshape(xp.concat([W, b[:, None]], axis=1), (-1,))

    def quad_r(g: Vec) -> Any:
        GW, gb = centred(g)
        R = UaT @ GW
        value = xp.sum(R * R * inv_w)
        return value if gb is None else value + xp.sum(gb * (inv_b @ gb))

    apply_r.quad = quad_r  # type: ignore[attr-defined]
    basis = FeatureBasis(Ub, sp, (K, q), apply_r)

    def apply(g: Vec) -> Vec:
        return basis.back(apply_r(basis.forward(g)))

    def quad(g: Vec) -> Any:
        return quad_r(basis.forward(g))

    apply.quad = quad  # type: ignore[attr-defined]
    apply.basis = basis  # type: ignore[attr-defined]
    return apply


def _same_basis(a: FeatureBasis | None, b: FeatureBasis | None) -> bool:
    return a is b or (a is not None and b is not None and a.Q is b.Q)


def _change_of_basis(old: FeatureBasis | None, new: FeatureBasis | None) -> Callable[[Any], Any]:
    def change(V: Any) -> Any:
        V = old.back(V) if old is not None else V
        return new.forward(V) if new is not None else V

    return change


# --------------------------------------------------------------------------- the iteration


def solve_on_device(solver: Any, run: Run) -> SolverResult:
    """``solver`` (an :class:`~softmax.solvers.lbfgs.LBFGS`) on ``run``, on the rows' device.

    The loop of ``LBFGS._solve`` step for step (see the module docstring for
    what crosses to the host).
    """

    obj, mon = run.objective(solver.name)
    data, tol, max_iter = run.problem.data, run.tol, run.max_iter
    sp = _Space(data)
    xp = sp.xp
    dobj = _DeviceObjective(obj, sp)
    precondition, preconditioner = solver.precondition, solver.preconditioner
    shape = obj.shape
    x = xp.reshape(sp.asarray(run.coef0), (-1,))
    n = int(x.shape[0])
    f_dev, g = dobj.smooth(x)
    f, gnorm = to_host(xp, f_dev, xp.max(xp.abs(g)))
    kron = precondition and (
        preconditioner == "kronecker" or (preconditioner == "auto" and use_kronecker(data))
    )

    def make_M(coef: Any | None) -> Precond | None:
        use = kron and (coef is not None or preconditioner == "kronecker")
        M = kronecker(dobj, coef) if use else None
        return M if M is not None else diagonal(dobj, coef)

    M = make_M(None) if precondition else None
    basis = getattr(M, "basis", None)
    m = default_history(data) if solver.history_size is None else int(solver.history_size)
    itemsize = 4 if data.dtype == np.float32 else 8
    m = min(m, max(5, HISTORY_BYTES // (2 * itemsize * n)))
    mem = DeviceMemory(sp, m, basis.precond if basis else M)
    g_b = basis.forward(g) if basis else g
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
        if gnorm == 0.0:
            converged, message = True, "the gradient is exactly zero"
            break
        d_b = None
        if mem.count:
            d_b = dobj.restrict(mem.direction(g_b))
            d = basis.back(d_b) if basis else d_b
            (gd,) = to_host(xp, sp.dot(g, d))
            if not gd < 0:  # numerical breakdown: restart from steepest descent
                mem.clear()
                d_b = None
        if not mem.count:
            if M is None:  # no curvature information at all: a unit-length step
                norm = xp.linalg.vector_norm(g)
                d = -g / xp.maximum(norm, xp.full_like(norm, 1e-300))
                (gd,) = to_host(xp, sp.dot(g, d))
                gap = math.inf
            else:  # the preconditioner has the Hessian's scale: a Newton-like step
                d = dobj.restrict(-M(g))
                (gd,) = to_host(xp, sp.dot(g, d))
                gap = -0.5 * gd * 100.0  # trusted only when tiny
        else:
            gap = max(-0.5 * gd, rate.estimate())
        if gap <= tol * abs(f):
            converged = True
            message = f"estimated relative gap {gap / abs(f):.2e} <= tol={tol:g}"
            break
        if it >= max_iter:
            break

        def phi(t: float, d: Vec = d, x: Vec = x) -> tuple[float, Any, float]:
            ft, gt = dobj.smooth(x + t * d)
            # the value, the slope and the gradient's size: one transfer per trial
            ft_h, dp, gn = to_host(xp, ft, sp.dot(gt, d), xp.max(xp.abs(gt)))
            return ft_h, (gt, gn), dp

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
        g_new, gnorm = ls.g
        s = ls.t * d
        x = x + s
        first = KRONECKER_START if kron else 0
        if precondition and refresh_due(it + 1, solver.precondition_every, first):
            M_new = make_M(xp.reshape(x, shape))
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
        g_new_b = basis.forward(g_new) if basis else g_new
        mem.push(s_b, g_new_b - g_b)
        f, g, g_b = ls.f, g_new, g_new_b
        rate.add(f)
        it += 1
        mon(it, f, gap=gap / abs(f), step=ls.t)
    coef = _backend._to_numpy(xp, xp.reshape(x, shape))  # the one transfer of coef
    return mon.result(coef, it, converged, f, message)
