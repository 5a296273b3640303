"""What every solver shares: the objective, the result, progress reporting.

The objective of every solver is scikit-learn's (``docs/solvers.md``):

.. math::

    F(W, b) = C \\sum_i s_i \\, CE(y_i, \\operatorname{softmax}(W x_i + b))
              + \\frac{1 - \\rho}{2} \\lVert W \\rVert_F^2 + \\rho \\lVert W \\rVert_1 .

Solvers work on the rescaled ``f = F / (C * weight_sum)``: the data term
becomes a weighted *mean* (of order one whatever ``n`` and ``C``), which keeps
first step sizes and curvature estimates sensible; it changes neither the
minimiser nor relative objective gaps. Results report ``F`` itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmax.backends._base import RowData
from softmax.penalties import Penalty, make_penalty

__all__ = [
    "Monitor",
    "Objective",
    "RateGapEstimate",
    "SolverResult",
    "f_noise_level",
    "initial_coef",
    "reject_options",
]

Callback = Callable[[int, float], None]


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes
    ----------
    coef : ndarray of shape (n_classes, n_features + fit_intercept), float64
        The solution; the last column holds the intercepts when fitted.
    n_iter : int
        Iterations done (outer iterations for Newton solvers).
    converged : bool
        Whether the stopping criterion was met before ``max_iter``.
    objective : float
        ``C * sum_i s_i CE_i + r(W)`` at ``coef`` (scikit-learn's objective).
    n_passes : int
        Passes over the rows (loss/gradient evaluations and Hessian products).
    message : str
        Why the solver stopped.
    history : list of float
        The objective after each iteration.
    """

    coef: np.ndarray
    n_iter: int
    converged: bool
    objective: float
    n_passes: int
    message: str = ""
    history: list[float] = field(default_factory=list)


#: From this many features on, the Kronecker preconditioner's products run in
#: float32 (they are memory-bound on the p x p eigenvector matrix).
KRONECKER_FLOAT32_FEATURES = 256


class FeatureBasis:
    """The orthogonal change of variables ``v -> v Q`` of each class's weights.

    ``Q`` (``p x p``, orthogonal: the eigenvectors of the feature covariance)
    rotates the weight part of every class row of a ``(K, p + fit_intercept)``
    vector; intercepts are left as they are. In this basis the Kronecker
    preconditioner is a ``K x K`` product and an elementwise scaling
    (``precond``), so L-BFGS can keep its history there and pay two ``p x p``
    products per iteration (the new gradient in, the direction out) rather
    than four (see :meth:`Objective.kronecker_preconditioner`).

    Parameters
    ----------
    Q : ndarray of shape (n_features, n_features)
        Orthogonal; float32 makes the products float32 (they are memory-bound
        on ``Q``, and a preconditioner needs no more digits).
    n_classes, n_coef : int
        ``K`` and ``p + fit_intercept``.
    precond : callable
        ``g' -> (Q^T M Q) g'``, the preconditioner in this basis, with
        ``precond.quad(g') = g'^T Q^T M Q g'``.
    """

    def __init__(
        self,
        Q: np.ndarray,
        n_classes: int,
        n_coef: int,
        precond: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.Q = Q
        self.QT = Q.T
        self.shape = (n_classes, n_coef)
        self.precond = precond

    def _map(self, V: np.ndarray, Q: np.ndarray) -> np.ndarray:
        K, q = self.shape
        p = Q.shape[0]
        G = V.reshape(-1, K, q)
        out = np.empty(G.shape)
        # one product for every row of every vector: (r K, p) @ (p, p)
        # astype first: one copy makes the strided weight part contiguous
        out[:, :, :p] = (G[:, :, :p].astype(Q.dtype).reshape(-1, p) @ Q).reshape(-1, K, p)
        out[:, :, p:] = G[:, :, p:]
        return out.reshape(V.shape)

    def forward(self, V: np.ndarray) -> np.ndarray:
        """Coordinates in the basis, ``v -> Q^T v``, of shape ``(n,)`` or ``(r, n)``, float64."""
        return self._map(V, self.Q)

    def back(self, V: np.ndarray) -> np.ndarray:
        """Back from the basis, ``v' -> Q v'``; inverse of :meth:`forward`, float64."""
        return self._map(V, self.QT)


class Objective:
    """The rescaled objective ``f = F / (C * weight_sum)`` over a :class:`RowData`.

    Parameters
    ----------
    data : RowData
    C : float
        Inverse regularisation strength, > 0.
    l1_ratio : float in [0, 1]

    Attributes
    ----------
    scale : float
        ``C * weight_sum``; ``F = scale * f``.
    penalty : Penalty
        The penalty with strength ``1 / scale``.
    """

    def __init__(self, data: RowData, C: float, l1_ratio: float) -> None:
        if not (
            isinstance(C, (int, float, np.floating, np.integer)) and C > 0 and math.isfinite(C)
        ):
            raise ValueError(f"C must be a positive finite number, got {C!r}")
        if not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
        if not data.weight_sum > 0:
            raise ValueError("the sum of the sample weights must be positive")
        self.data = data
        self.C = float(C)
        self.l1_ratio = float(l1_ratio)
        self.scale = self.C * float(data.weight_sum)
        self.loss_scale = 1.0 / float(data.weight_sum)
        self.penalty: Penalty = make_penalty(
            l1_ratio, fit_intercept=data.fit_intercept, strength=1.0 / self.scale
        )
        self.shape = data.coef_shape

    # -- smooth part: data term plus the L2 part of the penalty ----------------
    def smooth(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        """Smooth part of ``f`` and its gradient at ``coef`` (one pass)."""
        loss, grad = self.data.loss_gradient(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        return f, grad

    def smooth_value(self, coef: np.ndarray) -> float:
        """Smooth part of ``f`` alone (one pass, no gradient product)."""
        return self.data.loss(coef) * self.loss_scale + self.penalty.smooth_value(coef)

    def smooth_hessp(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Smooth ``f``, its gradient and ``V -> H V`` (each product one pass)."""
        loss, grad, hp = self.data.gradient_hessian_product(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        pen = self.penalty
        s = self.loss_scale

        def hessp(V: np.ndarray) -> np.ndarray:
            out = hp(V)
            out *= s
            return pen.add_smooth_hessp(V, out)

        return f, grad, hessp

    def smooth_hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Smooth ``f``, gradient, and full Hessian (C-order flattening of ``coef``)."""
        loss, grad, H = self.data.hessian(coef)
        f = loss * self.loss_scale + self.penalty.smooth_value(coef)
        grad *= self.loss_scale
        self.penalty.add_smooth_gradient(coef, grad)
        H *= self.loss_scale
        H[np.diag_indices_from(H)] += self.penalty.smooth_hessian_diagonal(self.shape)
        return f, grad, H

    def nonsmooth(self, coef: np.ndarray) -> float:
        """The L1 part of ``f``."""
        return self.penalty.nonsmooth_value(coef)

    def unscaled(self, f: float) -> float:
        """``F`` from ``f``."""
        return f * self.scale

    def preconditioner(
        self, coef: np.ndarray | None = None
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """An approximate inverse Hessian ``M`` as a function ``g -> M g``, or None.

        Two ill-conditionings dominate unscaled data: features on different
        scales (pixels in 0..255 next to an intercept of 1), and features with
        a non-zero mean, which couple every weight with the intercept. ``M``
        undoes both. With curvature weights ``w_ik = s_i p_ik (1 - p_ik)``
        and per-class weighted feature means ``mu_k``, in the variables
        ``(W, b'_k = b_k + W_k . mu_k)`` the Hessian of the data term has
        the diagonal ``sum_i w_ik (x_ij - mu_kj)^2`` (plus the L2 weight) and
        ``sum_i w_ik`` for the intercept; ``M = T D^-1 T^T`` with ``T`` the
        change of variables and ``D`` that diagonal. Solvers rescale ``M`` by a
        scalar, so only its shape matters.

        Parameters
        ----------
        coef : ndarray, optional
            Where to take the curvature (one pass, backends with
            ``curvature_moments``); None uses equal class probabilities and
            only the feature moments (backends with ``feature_moments``).

        Returns
        -------
        callable or None
            None when the backend offers neither optional method.
        """
        K, q = self.shape
        moments = getattr(self.data, "curvature_moments", None)
        if coef is not None and moments is not None:
            s0, s1, s2 = (np.asarray(a, dtype=np.float64) for a in moments(coef))
        else:
            fmoments = getattr(self.data, "feature_moments", None)
            if fmoments is None:
                return None
            mean, sq = (np.asarray(a, dtype=np.float64) for a in fmoments())
            c = (1.0 / K) * (1.0 - 1.0 / K)  # p (1 - p) at p = 1/K
            sw = float(self.data.weight_sum)
            s0 = np.full(K, c * sw)
            s1 = np.broadcast_to(c * sw * mean, (K, mean.size))
            s2 = np.broadcast_to(c * sw * sq, (K, mean.size))
        scale = self.loss_scale
        p = s1.shape[1]
        fit_intercept = self.data.fit_intercept
        l2 = self.penalty.smooth_l2
        if fit_intercept:
            safe0 = np.where(s0 > 0, s0, 1.0)
            mu = s1 / safe0[:, None]  # (K, p) curvature-weighted means
            dw = np.maximum(s2 - s1 * mu, 0.0) * scale + l2
            db = s0 * scale
            db[db <= 0] = 1.0
            inv_b = 1.0 / db
        else:
            dw = s2 * scale + l2
        # constant features with no penalty: curvature unknown, any scale works
        dw[dw <= 0] = 1.0
        inv_w = 1.0 / dw
        if not fit_intercept:
            inv = inv_w.ravel()

            def apply_diag(g: np.ndarray) -> np.ndarray:
                return inv * g

            return apply_diag

        def apply(g: np.ndarray) -> np.ndarray:
            G = g.reshape(K, q)
            out = np.empty((K, q))
            gb = G[:, p]
            # T^T g: the gradient in (W, b') variables
            np.multiply(gb[:, None], mu, out=out[:, :p])
            np.subtract(G[:, :p], out[:, :p], out=out[:, :p])
            out[:, :p] *= inv_w
            # D^-1, then T: back to (W, b) with b_k = b'_k - W_k . mu_k
            out[:, p] = gb * inv_b - np.einsum("kj,kj->k", out[:, :p], mu)
            return out.ravel()

        return apply

    def kronecker_preconditioner(
        self, coef: np.ndarray | None = None
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """A Kronecker-factored approximate inverse Hessian ``g -> M g``, or None.

        The data term's Hessian is ``sum_i s_i A_i (x) x~_i x~_i^T`` with
        ``A_i = diag(p_i) - p_i p_i^T`` and ``x~_i = (x_i, 1)``. As K-FAC does
        for a linear layer, take ``A_i`` out of the sum as its mean ``A``;
        in the variables ``(W, b' = b + W mu)`` (``mu`` the weighted feature
        mean, which decouples weights from intercepts) that leaves
        ``A (x) Sigma + l2 I`` for ``W`` (``Sigma`` the weighted feature
        covariance) and ``A`` for ``b'``. With ``A = Ua La Ua^T`` and
        ``Sigma = Ub Lb Ub^T`` the inverse costs ``O(K p^2)`` per product:
        ``Ua [(Ua^T G Ub) / (la_i lb_j + l2)] Ub^T``. Unlike the diagonal
        :meth:`preconditioner` it sees correlated features (pixels).
        Along ``1 (x) v`` (the same vector added to every class) the data
        term is flat and ``la = 0`` leaves exactly the L2 curvature; along
        the equal shift of all intercepts, where the objective is flat, any
        scale serves and the mean curvature is used.

        Parameters
        ----------
        coef : ndarray, optional
            Where to take ``A`` (one pass; backends with ``class_curvature``);
            None takes equal class probabilities, ``A = (I - 11^T / K) / K``.

        Returns
        -------
        callable or None
            ``g -> M g`` with attributes ``quad`` (``g -> g^T M g``) and
            ``basis`` (the :class:`FeatureBasis` in which ``M`` is cheap);
            None when the backend does not offer ``feature_covariance`` (or
            answers None: sparse or wide X), or ``l1_ratio`` is 1.
        """
        K, q = self.shape
        l2 = self.penalty.smooth_l2
        factor = _feature_factor(self) if l2 > 0 else None
        if factor is None:
            return None
        mean, lb, Ub = factor
        p = mean.size
        if coef is not None and hasattr(self.data, "class_curvature"):
            A = np.asarray(self.data.class_curvature(coef), dtype=np.float64)
        else:
            A = (np.eye(K) - 1.0 / K) / K
        A = 0.5 * (A + A.T)
        # the all-ones vector is an exact null vector of every A_i: split it
        # off exactly (eigenvalue 0) so rounding cannot invent curvature there
        ones = np.full((K, 1), 1.0 / math.sqrt(K))
        Q = np.linalg.qr(np.hstack([ones, np.eye(K)[:, : K - 1]]))[0][:, 1:]
        la, V = np.linalg.eigh(Q.T @ A @ Q)
        Ua = np.hstack([Q @ V, ones])
        la = np.append(np.maximum(la, 0.0), 0.0)
        lb = np.maximum(lb, 0.0)
        # A and Sigma are weighted means, as f's data term is: M^-1 = A (x) Sigma + l2 I
        inv_w = 1.0 / (np.outer(la, lb) + l2)
        lab = la.copy()
        pos = lab > 0
        lab[~pos] = lab[pos].mean() if pos.any() else 1.0
        inv_b = (Ua / lab) @ Ua.T  # (K, K)
        fit_intercept = self.data.fit_intercept
        # in the basis, T^T g = (G_W - g_b mean^T, g_b) has mean' = Ub^T mean
        # (in Ub's dtype: no float64 copy of a p x p float32 Ub)
        mean_r = (mean.astype(Ub.dtype) @ Ub).astype(np.float64)

        def apply_r(g: np.ndarray) -> np.ndarray:
            # M' = Q^T M Q: only K x K products and an elementwise D^-1
            G = g.reshape(K, q)
            GW = G[:, :p]
            if fit_intercept:
                gb = G[:, p]
                GW = GW - np.outer(gb, mean_r)  # T^T g: gradient in (W, b')
            out = np.empty((K, q))
            out[:, :p] = Ua @ ((Ua.T @ GW) * inv_w)
            if fit_intercept:
                out[:, p] = inv_b @ gb - out[:, :p] @ mean_r  # back to b = b' - W mu
            return out.ravel()

        def quad_r(g: np.ndarray) -> float:
            # g^T M' g = |D^-1/2 T^T g|^2 (L-BFGS scales its initial matrix by y^T M y)
            G = g.reshape(K, q)
            GW = G[:, :p]
            value = 0.0
            if fit_intercept:
                gb = G[:, p]
                GW = GW - np.outer(gb, mean_r)
                value = float(gb @ inv_b @ gb)
            R = Ua.T @ GW
            return value + float(np.einsum("ij,ij,ij->", R, R, inv_w))

        apply_r.quad = quad_r  # type: ignore[attr-defined]
        basis = FeatureBasis(Ub, K, q, apply_r)

        def apply(g: np.ndarray) -> np.ndarray:
            return basis.back(apply_r(basis.forward(g)))

        def quad(g: np.ndarray) -> float:
            return quad_r(basis.forward(g))

        apply.quad = quad  # type: ignore[attr-defined]
        apply.basis = basis  # type: ignore[attr-defined]
        return apply

    def intercept_direction(self) -> np.ndarray | None:
        """Unit vector adding the same constant to every intercept, or None.

        The objective is flat along it (softmax is shift-invariant and the
        intercept is unpenalised): the Hessian is singular there.
        """
        if not self.data.fit_intercept:
            return None
        u = np.zeros(self.shape)
        u[:, -1] = 1.0 / math.sqrt(self.shape[0])
        return u


class Monitor:
    """Records the objective per iteration, calls the callback, prints progress.

    Parameters
    ----------
    name : str
        Solver name, for messages.
    objective : Objective
    verbose : int
        0 silent; 1 one line per iteration.
    callback : callable or None
        ``callback(iteration, objective)`` with the unscaled objective.
    """

    def __init__(
        self, name: str, objective: Objective, verbose: int, callback: Callback | None
    ) -> None:
        self.name = name
        self.objective = objective
        self.verbose = int(verbose or 0)
        self.callback = callback
        self.history: list[float] = []
        self._t0 = time.perf_counter()

    def __call__(self, iteration: int, f_scaled: float, **info: float) -> None:
        F = self.objective.unscaled(f_scaled)
        self.history.append(F)
        if self.verbose:
            extra = "".join(f"  {k}={v:.3e}" for k, v in info.items())
            print(
                f"[{self.name}] iter {iteration:4d}  objective={F:.10e}{extra}  "
                f"passes={self.objective.data.n_passes}  "
                f"t={time.perf_counter() - self._t0:.2f}s",
                flush=True,
            )
        if self.callback is not None:
            self.callback(iteration, F)

    def result(
        self, coef: np.ndarray, n_iter: int, converged: bool, f_scaled: float, message: str
    ) -> SolverResult:
        if self.verbose:
            print(f"[{self.name}] {message}", flush=True)
        coef = np.array(coef, dtype=np.float64, order="C")
        if self.objective.data.fit_intercept:
            # The objective is flat along an equal shift of all intercepts;
            # report the representative with intercepts summing to zero (what
            # scikit-learn's solvers return), whatever path the solver took.
            coef[:, -1] -= coef[:, -1].mean()
        return SolverResult(
            coef=coef,
            n_iter=int(n_iter),
            converged=bool(converged),
            objective=float(self.objective.unscaled(f_scaled)),
            n_passes=int(self.objective.data.n_passes),
            message=message,
            history=list(self.history),
        )


class RateGapEstimate:
    """Estimate of ``f - f*`` from the recent decrease of ``f``.

    Curvature-based estimates (``g^T H_k^-1 g / 2`` from L-BFGS) see only
    the directions the method has explored and underestimate the gap on
    ill-conditioned problems (measured: by 20-50x on raw digits). A linearly
    converging method, though, shows its rate: if the decrease over the last
    ``window`` iterations is ``D2`` and over the ``window`` before ``D1``, then
    with ``rho = D2 / D1`` the remaining gap is about
    ``D2 rho / (1 - rho)`` (a geometric series). Solvers stop only when this
    and their own estimate are both small.

    Parameters
    ----------
    window : int
        Iterations per window.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = int(window)
        self.values: list[float] = []

    def add(self, f: float) -> None:
        self.values.append(float(f))

    def estimate(self) -> float:
        """The estimated gap (``inf`` until two windows have been seen)."""
        w = self.window
        v = self.values
        if len(v) < 2 * w + 1:
            return math.inf
        d1 = v[-2 * w - 1] - v[-w - 1]
        d2 = v[-w - 1] - v[-1]
        if d2 <= 0:
            return 0.0  # no decrease at all over a whole window: stalled
        if d1 <= 0:
            return math.inf
        rho = min(d2 / d1, 0.999)
        return d2 * rho / (1.0 - rho)


def _feature_factor(obj: Objective) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The feature factor of the Kronecker preconditioner, once per :class:`Objective`.

    Returns ``(mean, lam, U)``: the weighted feature mean and the
    eigendecomposition ``S = U diag(lam) U^T`` of the centred covariance
    (of ``E[x x^T]`` without intercept), or None when the backend has no
    ``feature_covariance`` for these rows.

    Constant features (zero variance: a cluster of zero eigenvalues) are
    split off as unit eigenvectors; the rest is decomposed by LAPACK's
    ``syevd`` (divide and conquer), in float32 from
    ``KRONECKER_FLOAT32_FEATURES`` features on (measured 1.5x faster than
    NumPy's float64 one at 784 x 784; MRRR, ``syevr``, was erratic on MNIST's
    clusters, QR, ``syev``, 8x slower): a preconditioner needs no more digits.
    Memory: ``p x p`` matrices are most of what a fit allocates when there are
    few rows (MNIST), so the covariance is decomposed in place (``S.T`` is
    Fortran-ordered with the same numbers: LAPACK writes the eigenvectors
    over it) and each one is dropped as soon as it is used.
    """
    cache = getattr(obj, "_feature_factor_cache", None)  # the rows are fixed
    if cache is not None:
        return cache or None
    import scipy.linalg

    fcov = getattr(obj.data, "feature_covariance", None)
    cov = fcov() if fcov is not None else None
    if cov is None:
        obj._feature_factor_cache = ()
        return None
    mean, S = cov
    del cov  # the backend keeps no copy: S is ours
    if not obj.data.fit_intercept:
        S = S + np.outer(mean, mean)
    p = mean.size
    dt = np.float32 if p >= KRONECKER_FLOAT32_FEATURES else np.float64
    active = np.flatnonzero(np.diag(S) > 0)
    lam = np.zeros(p)
    if active.size == p:
        la, U = scipy.linalg.eigh(
            S.astype(dt, copy=False).T, driver="evd", overwrite_a=True, check_finite=False
        )
        lam[:] = la
    else:
        sub = S[np.ix_(active, active)].astype(dt, copy=False)
        del S
        Ua = None
        if active.size:  # before U exists: LAPACK's workspace is 2 p^2 numbers
            la, Ua = scipy.linalg.eigh(sub.T, driver="evd", overwrite_a=True, check_finite=False)
            lam[active] = la
        del sub
        U = np.zeros((p, p), dtype=dt)
        U[np.arange(p), np.arange(p)] = 1.0  # constant features: unit vectors
        if Ua is not None:
            U[:, active] = 0.0
            U[np.ix_(active, active)] = Ua
    obj._feature_factor_cache = cache = (mean, lam, U)
    return cache


def f_noise_level(data: RowData) -> float:
    """Relative rounding noise of the objective computed on ``data``'s rows.

    float32 logits carry relative errors near 6e-8, so the summed loss is
    only reliable to about 1e-6 relative; line searches then judge decrease
    from directional derivatives (see ``wolfe_line_search``).
    """
    return 1e-6 if np.dtype(data.dtype) == np.float32 else 1e-13


def initial_coef(data: RowData, coef0: np.ndarray | None) -> np.ndarray:
    """A float64 C-contiguous copy of ``coef0`` checked against ``data``, or zeros."""
    shape = data.coef_shape
    if coef0 is None:
        return np.zeros(shape, dtype=np.float64)
    coef = np.array(coef0, dtype=np.float64, order="C", copy=True)
    if coef.shape != shape:
        raise ValueError(
            f"coef0 has shape {coef.shape}; expected {shape} "
            "(n_classes, n_features + fit_intercept)"
        )
    if not np.all(np.isfinite(coef)):
        raise ValueError("coef0 contains NaN or inf")
    return coef


def reject_options(name: str, options: dict[str, Any]) -> None:
    """Raise TypeError for options a solver does not know."""
    if options:
        raise TypeError(f"solver {name!r} got unknown option(s): {', '.join(sorted(options))}")
