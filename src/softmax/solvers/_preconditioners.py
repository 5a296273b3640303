"""Approximate inverse Hessians ``g -> M g`` for the solvers.

Three kinds, all in the variables ``(W, b' = b + W mu)`` that decouple each
class's weights from its intercept (``mu`` a weighted feature mean):

- :func:`diagonal`: ``M = T D^-1 T^T`` with ``D`` the Hessian diagonal in
  those variables, from per-class curvature-weighted feature moments (the
  backend's ``feature_moments`` / ``curvature_moments``). Undoes features on
  different scales and non-zero means; any backend that offers moments.
- :class:`Kronecker`: the data term's Hessian ``sum_i s_i A_i (x) x~_i
  x~_i^T`` approximated, as K-FAC does for a linear layer, by ``A (x)
  (Sigma + delta I)`` plus the L2 curvature: ``A`` a class factor (``K x
  K``), ``Sigma`` the weighted feature covariance. With ``A = Ua La Ua^T``
  and ``Sigma = Ub Lb Ub^T``, ``M`` applies in ``O(K p r)``:
  ``Ua [(Ua^T G_W Ub) / (la_i lb_j + l2)] Ub^T``. It sees correlated
  features (pixels), which a diagonal cannot. The one construction serves
  two uses that differ only in their factors:

  * L-BFGS (:func:`kronecker`): ``A`` the mean class curvature at the
    current point (the backend's ``class_curvature``), ``Sigma`` the
    backend's exact covariance in its full eigenbasis, no damping; L-BFGS
    keeps its history in that basis (:class:`FeatureBasis`).
  * the stochastic ``"vr"`` steps (:func:`damped_kronecker`): ``A`` at equal
    probabilities, ``(I - 11^T/K) / K``, ``Sigma`` estimated from the rows
    (or the backend), damped by ``delta`` so that single rows cannot
    dominate a minibatch's Newton-like step, and kept as its leading
    eigendirections plus ``delta`` for the rest (low rank), or as its
    diagonal beyond ``VR_FULL_MAX_FEATURES`` features.
- :func:`class_blocks` (L-BFGS's default where Kronecker pays): each class's
  own curvature block in the leading eigendirections of ``Sigma``, with the
  Kronecker diagonal on the rest; applied as ``P M P`` onto the objective's
  subspace (:meth:`Objective.restrict`), which also keeps a fixed row zero.

Along ``1 (x) v`` (the same vector added to every class) the data term is
flat: ``A``'s all-ones eigenvector is split off exactly with eigenvalue 0,
leaving the L2 curvature there. Along the equal shift of all intercepts the
objective is flat too and any scale serves: the mean class curvature is used.

With a reference class (a row of ``coef`` fixed at zero; the objective
restricts every gradient to the other rows) each preconditioner keeps a zero
row zero: the diagonal one acts row by row, and the Kronecker one uses the
class factor of the free rows (``A`` without the fixed row and column, which
has no flat direction), with the fixed row's unit vector split off. The
solvers' directions, combinations of restricted gradients and preconditioned
ones, so never move the fixed row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from softmax.backends._base import Capability

__all__ = [
    "FeatureBasis",
    "Kronecker",
    "class_blocks",
    "class_scaled",
    "damped_kronecker",
    "damping",
    "diagonal",
    "kronecker",
]

Precond = Callable[[np.ndarray], np.ndarray]

#: Feature eigendirections (the leading ones of the covariance) in which
#: :func:`class_blocks` keeps each class's own curvature block; the rest get
#: the Kronecker diagonal. On MNIST digits (8,000 x 784, C = 1) L-BFGS took
#: 72 iterations to a 1e-6 gap with the Kronecker preconditioner, and with
#: class blocks of rank 100 / 150 / 300 / 784 (2,667 rows; 784: every row)
#: 37 / 38 / 38 / 30.
CLASS_BLOCK_RANK = 100
#: Fraction of the sampling-noise band under which :func:`_denoise` keeps a
#: class block's eigenvalues (relative to its Kronecker value; 1: the whole
#: Marchenko-Pastur lower half). Iterations to a 1e-8 gap with class blocks
#: (a stride of about 2,048 rows), for 1 / 0.5 / 0.25 / no denoising: the
#: low-signal 10,000 x 200 set (5 classes, docs/solvers.md) 59 / 62 / 70 /
#: 104 (Kronecker 56), covertype-like 20,000 x 54 28 / 27 / 26 / 71
#: (Kronecker 46), MNIST digits 49 / 46 / 46 / 45 (Kronecker 106), dense784
#: at 6,000 rows 79 / 81 / 80 / 83 (Kronecker 94).
CLASS_BLOCK_NOISE = 0.5
#: Work budget (in loss-gradient passes) of the feature covariance when class
#: blocks are the first to ask for it (the backend's default,
#: ``COVARIANCE_PASSES`` = 20, serves the Kronecker preconditioner). The
#: blocks measure the curvature of the leading directions themselves; the
#: covariance gives them the basis and the other directions' scale, which
#: every other row estimates as well (MNIST digits, auto, float32,
#: iterations to tol 1e-7 at C = 1 / C = 100, budget 20 / 10 / 5 passes:
#: 43 / 44 / 44 and 187 / 182 / 203), at half the cost (MNIST: 40 -> 20 ms,
#: a tenth of the fit). The Kronecker preconditioner relies on the
#: covariance in every direction: at C = 100 it took 375 / 393 iterations.
CLASS_BLOCK_COVARIANCE_PASSES = 10

#: From this many features on, the batch Kronecker preconditioner's products
#: run in float32 (they are memory-bound on the p x p eigenvector matrix).
KRONECKER_FLOAT32_FEATURES = 256
#: "vr": full (low-rank plus damping) feature factor up to this many features;
#: its diagonal beyond.
VR_FULL_MAX_FEATURES = 1024
#: ... whose products run in float32 from this many features.
VR_FLOAT32_FEATURES = 512
#: "vr": the damping holds the preconditioned rows' mean leverage (effective
#: dimension) at this fraction of the minibatch rows or of the features,
#: whichever is fewer (see damping()).
VR_DIM_FRACTION = 0.25
#: ... for the diagonal one (sparse or wide rows): on a sparse set of 2,000
#: features 0.25 -> 22% above the optimum after 10 epochs, 1.0 -> 10%.
VR_DIM_FRACTION_DIAGONAL = 1.0
#: ... and at least this fraction of the mean feature variance.
VR_MIN_DAMPING = 0.01
#: "vr": eigendirections of the feature covariance with eigenvalues below
#: this fraction of the damping are left to the damping alone (their
#: preconditioner entry is within this fraction of it).
VR_LOW_RANK_TOL = 0.1


# --------------------------------------------------------------------------- diagonal


def diagonal(objective: Any, coef: np.ndarray | None = None) -> Precond | None:
    """An approximate inverse Hessian ``M = T D^-1 T^T`` as ``g -> M g``, or None.

    Two ill-conditionings dominate unscaled data: features on different
    scales (pixels in 0..255 next to an intercept of 1), and features with a
    non-zero mean, which couple every weight with the intercept. ``M`` undoes
    both. With curvature weights ``w_ik = s_i p_ik (1 - p_ik)`` and per-class
    weighted feature means ``mu_k``, in the variables ``(W, b'_k = b_k + W_k .
    mu_k)`` the Hessian of the data term has the diagonal ``sum_i w_ik (x_ij
    - mu_kj)^2`` (plus the L2 weight) and ``sum_i w_ik`` for the intercept;
    ``T`` is the change of variables and ``D`` that diagonal. Solvers rescale
    ``M`` by a scalar, so only its shape matters.

    Parameters
    ----------
    objective : softmax.solvers._base.Objective
    coef : ndarray, optional
        Where to take the curvature (one pass; backends with
        ``curvature_moments``); None uses equal class probabilities and only
        the feature moments (backends with ``feature_moments``).

    Returns
    -------
    callable or None
        None when the backend offers neither.
    """
    data = objective.data
    K, q = objective.shape
    if coef is not None and Capability.CURVATURE_MOMENTS in data.capabilities:
        s0, s1, s2 = (np.asarray(a, dtype=np.float64) for a in data.curvature_moments(coef))
    elif Capability.FEATURE_MOMENTS in data.capabilities:
        mean, sq = (np.asarray(a, dtype=np.float64) for a in data.feature_moments())
        c = (1.0 / K) * (1.0 - 1.0 / K)  # p (1 - p) at p = 1/K
        sw = float(data.weight_sum)
        s0 = np.full(K, c * sw)
        s1 = np.broadcast_to(c * sw * mean, (K, mean.size))
        s2 = np.broadcast_to(c * sw * sq, (K, mean.size))
    else:
        return None
    scale = objective.loss_scale
    p = s1.shape[1]
    fit_intercept = data.fit_intercept
    l2 = objective.penalty.smooth_l2
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


# --------------------------------------------------------------------------- Kronecker


def _times(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``A @ Q`` for a few rows ``A``, with ``Q`` read in its own memory order.

    ``(Q^T A^T)^T`` when ``Q`` is a transposed view: BLAS then streams the
    ``p x p`` matrix row by row (MNIST, 10 x 667 by 667 x 667 float32: 0.19
    ms, against 0.31 ms for ``A @ Q`` on the transposed view).
    """
    return A @ Q if Q.flags.c_contiguous else (Q.T @ A.T).T


class FeatureBasis:
    """The orthogonal change of variables ``v -> v Q`` of each class's weights.

    ``Q`` (``p x p``, orthogonal: the eigenvectors of the feature covariance)
    rotates the weight part of every class row of a ``(K, p + fit_intercept)``
    vector; intercepts are left as they are. In this basis the Kronecker
    preconditioner is a ``K x K`` product and an elementwise scaling
    (``precond``), so L-BFGS can keep its history there and pay two ``p x p``
    products per iteration (the new gradient in, the direction out) rather
    than four.

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
    split : tuple (constant, active, Qa), optional
        ``Q``'s structure when some features are constant (zero variance):
        its first ``len(constant)`` columns are the unit vectors of the
        features ``constant``, and its other columns are zero outside the
        rows ``active``, where they are ``Qa`` (C-contiguous). The products
        then run on ``Qa`` alone (MNIST: 667 of 784 pixels vary, 28% fewer
        flops).
    """

    def __init__(
        self,
        Q: np.ndarray,
        n_classes: int,
        n_coef: int,
        precond: Precond,
        split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.Q = Q
        self.QT = Q.T
        self.shape = (n_classes, n_coef)
        self.precond = precond
        self.split = split

    def _map(self, V: np.ndarray, forward: bool) -> np.ndarray:
        K, q = self.shape
        p = self.Q.shape[0]
        G = V.reshape(-1, K, q)
        out = np.empty(G.shape)
        # one product for every row of every vector: (r K, p) @ (p, p)
        # astype first: one copy makes the strided weight part contiguous
        if self.split is None:
            Q = self.Q if forward else self.QT
            A = G[:, :, :p].astype(Q.dtype).reshape(-1, p)
            out[:, :, :p] = _times(A, Q).reshape(-1, K, p)
        else:
            constant, active, Qa = self.split
            n0 = constant.size
            GW, OW = G[:, :, :p], out[:, :, :p]
            if forward:
                OW[:, :, :n0] = GW[:, :, constant]
                A = GW[:, :, active].astype(Qa.dtype).reshape(-1, active.size)
                OW[:, :, n0:] = _times(A, Qa).reshape(-1, K, active.size)
            else:
                OW[:, :, constant] = GW[:, :, :n0]
                A = GW[:, :, n0:].astype(Qa.dtype).reshape(-1, active.size)
                OW[:, :, active] = _times(A, Qa.T).reshape(-1, K, active.size)
        out[:, :, p:] = G[:, :, p:]
        return out.reshape(V.shape)

    def forward(self, V: np.ndarray) -> np.ndarray:
        """Coordinates in the basis, ``v -> Q^T v``, of shape ``(n,)`` or ``(r, n)``, float64."""
        return self._map(V, True)

    def back(self, V: np.ndarray) -> np.ndarray:
        """Back from the basis, ``v' -> Q v'``; inverse of :meth:`forward`, float64."""
        return self._map(V, False)


def _class_factor(
    K: int, A: np.ndarray | None, fixed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Ua, la, inv_b)``: eigenvectors and -values of the class factor, intercept block.

    ``A`` None is the class curvature at equal probabilities, ``(I - 11^T/K)
    / K``. The all-ones vector is an exact null vector of every ``A_i``: it
    is split off exactly (the last column of ``Ua``, eigenvalue 0) so that
    rounding cannot invent curvature there. ``inv_b`` inverts ``A`` on the
    intercepts, with the mean positive eigenvalue along the all-ones shift
    (where the objective is flat and any scale serves).

    With ``fixed`` (a reference class: that row of ``coef`` is held at zero)
    the factor is that of the free rows, ``A`` without row and column
    ``fixed`` (positive definite: no flat direction is left), and the fixed
    row's unit vector is the split-off last column instead; every block of
    ``M`` then maps a vector whose fixed row is zero to another such vector.
    """
    if A is None:
        A = (np.eye(K) - 1.0 / K) / K
    A = 0.5 * (A + A.T)
    if fixed is not None:
        free = np.flatnonzero(np.arange(K) != fixed)
        la, V = np.linalg.eigh(A[np.ix_(free, free)])
        Ua = np.zeros((K, K))
        Ua[np.ix_(free, np.arange(K - 1))] = V
        Ua[fixed, K - 1] = 1.0
        la = np.append(np.maximum(la, 0.0), 0.0)
        lab = la.copy()
        pos = lab > 0
        lab[~pos] = lab[pos].mean() if pos.any() else 1.0
        return Ua, la, (Ua / lab) @ Ua.T
    ones = np.full((K, 1), 1.0 / math.sqrt(K))
    Q = np.linalg.qr(np.hstack([ones, np.eye(K)[:, : K - 1]]))[0][:, 1:]
    la, V = np.linalg.eigh(Q.T @ A @ Q)
    Ua = np.hstack([Q @ V, ones])
    la = np.append(np.maximum(la, 0.0), 0.0)
    lab = la.copy()
    pos = lab > 0
    lab[~pos] = lab[pos].mean() if pos.any() else 1.0
    inv_b = (Ua / lab) @ Ua.T  # (K, K)
    return Ua, la, inv_b


def _inverse(a: np.ndarray) -> np.ndarray:
    """``1 / a`` where ``a > 0``, else 0 (a flat direction: no step along it)."""
    return np.divide(1.0, a, out=np.zeros(np.shape(a)), where=np.asarray(a) > 0)


@dataclass
class Kronecker:
    """``M``, the inverse of ``A (x) (Sigma + delta I) + l2 I`` on the weights (see module doc).

    Build it with :func:`kronecker` or :func:`damped_kronecker`.

    Attributes
    ----------
    Ua : ndarray of shape (K, K)
        Eigenvectors of the class factor; the last is the all-ones direction.
    la : ndarray of shape (K,)
        Its eigenvalues (0 for the all-ones direction).
    inv_b : ndarray of shape (K, K)
        The intercept block of ``M``.
    mean : ndarray of shape (p,) or None
        The feature mean of the change of variables (None without intercept).
    Ub : ndarray of shape (p, r) or None
        Feature eigendirections kept (orthonormal columns); None: the
        feature factor is diagonal (``lb`` per feature).
    lb : ndarray of shape (r,) or (p,)
        Their eigenvalues, damping included.
    lb_rest : float
        The eigenvalue assumed for the directions outside ``Ub`` (the
        damping, for a low-rank factor; unused when ``Ub`` is square).
    l2 : float
        The L2 curvature of ``f``.
    """

    Ua: np.ndarray
    la: np.ndarray
    inv_b: np.ndarray
    mean: np.ndarray | None
    Ub: np.ndarray | None
    lb: np.ndarray
    lb_rest: float
    l2: float

    def __post_init__(self) -> None:
        # 1 / (la_i lb_j + l2): the whole of M on the weights, in the eigenbases;
        # without a penalty the all-ones class direction is flat: M is 0 there
        self.inv_w = _inverse(np.outer(self.la, self.lb) + self.l2)
        self.inv_rest = _inverse(self.la * self.lb_rest + self.l2)  # (K,)
        dt = self.Ub.dtype if self.Ub is not None else np.float64
        # the low-rank correction in Ub's dtype (float32 products for wide rows)
        self.low_rank_scale = (self.inv_w - self.inv_rest[:, None]).astype(dt)
        # in Ub's dtype: no float64 copy of a p x p float32 Ub
        self.mean_r = (
            None
            if self.mean is None or self.Ub is None or not self.square
            else (self.mean.astype(dt) @ self.Ub).astype(np.float64)
        )

    @property
    def n_features(self) -> int:
        return self.lb.shape[0] if self.Ub is None else self.Ub.shape[0]

    @property
    def square(self) -> bool:
        """Whether ``Ub`` is a full basis (every feature direction kept)."""
        return self.Ub is not None and self.Ub.shape[1] == self.Ub.shape[0]

    def _centred(self, G: np.ndarray, mean: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """``(G_W - g_b mean^T, g_b)``: the gradient in the variables ``(W, b')``."""
        p = self.n_features
        GW = G[:, :p]
        if mean is None:
            return GW, None
        gb = G[:, p]
        return GW - np.outer(gb, mean), gb

    def apply(self, G: np.ndarray) -> np.ndarray:
        """``M G`` for ``G`` of shape (n_classes, n_features + fit_intercept), float64."""
        p = self.n_features
        GW, gb = self._centred(G, self.mean)
        R = self.Ua.T @ GW
        if self.Ub is None:  # diagonal feature factor
            R *= self.inv_w
        else:
            B = self.Ub
            S = R.astype(B.dtype, copy=False) @ B
            S *= self.low_rank_scale
            R *= self.inv_rest[:, None]
            R += S @ B.T
        out = np.empty(G.shape)
        out[:, :p] = self.Ua @ R
        if gb is not None:
            out[:, p] = self.inv_b @ gb - out[:, :p] @ self.mean  # back to b = b' - W mu
        return out

    def in_basis(self, K: int, q: int) -> Precond:
        """``g' -> M' g'`` in the coordinates of :meth:`basis` (flat vectors), with ``.quad``.

        ``M' = Q^T M Q`` needs only ``K x K`` products and an elementwise
        scaling: L-BFGS keeps its history in this basis.
        """
        Ua, inv_w, inv_b, mean_r = self.Ua, self.inv_w, self.inv_b, self.mean_r
        p = q - int(mean_r is not None)

        def apply_r(g: np.ndarray) -> np.ndarray:
            G = g.reshape(K, q)
            GW = G[:, :p]
            if mean_r is not None:
                gb = G[:, p]
                GW = GW - np.outer(gb, mean_r)  # T^T g: gradient in (W, b')
            out = np.empty((K, q))
            out[:, :p] = Ua @ ((Ua.T @ GW) * inv_w)
            if mean_r is not None:
                out[:, p] = inv_b @ gb - out[:, :p] @ mean_r  # back to b = b' - W mu
            return out.ravel()

        def quad_r(g: np.ndarray) -> float:
            # g^T M' g = |D^-1/2 T^T g|^2 (L-BFGS scales its initial matrix by y^T M y)
            G = g.reshape(K, q)
            GW = G[:, :p]
            value = 0.0
            if mean_r is not None:
                gb = G[:, p]
                GW = GW - np.outer(gb, mean_r)
                value = float(gb @ inv_b @ gb)
            R = Ua.T @ GW
            return value + float(np.einsum("ij,ij,ij->", R, R, inv_w))

        apply_r.quad = quad_r  # type: ignore[attr-defined]
        return apply_r

    def basis(self, K: int, q: int, split: Any = None) -> FeatureBasis:
        """The :class:`FeatureBasis` of ``Ub`` (square ``Ub`` only) with :meth:`in_basis`.

        ``split``: ``Ub``'s structure, as :class:`FeatureBasis` takes it.
        """
        assert self.square and self.Ub is not None
        return FeatureBasis(self.Ub, K, q, self.in_basis(K, q), split)

    def matrix(self) -> np.ndarray:
        """The feature factor ``Ub diag(1/(lb/K + l2)) Ub^T + rest`` at equal probabilities, dense.

        For tests of the damped factor: the feature part of ``M`` for a class
        direction orthogonal to the all-ones vector (``la = 1/K``).
        """
        la = 1.0 / self.la.size
        rest = 1.0 / (la * self.lb_rest + self.l2)
        p = self.n_features
        if self.Ub is None:
            return np.diag(1.0 / (la * self.lb + self.l2))
        B = self.Ub.astype(np.float64)
        out = rest * np.eye(p)
        out += (B * (1.0 / (la * self.lb + self.l2) - rest)) @ B.T
        return out


def _feature_factor(
    objective: Any, passes: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None:
    """The feature factor of the batch Kronecker preconditioner, once per objective.

    Returns ``(mean, lam, U, split)``: the weighted feature mean and the
    eigendecomposition ``S = U diag(lam) U^T`` of the centred covariance
    (of ``E[x x^T]`` without intercept), eigenvalues ascending, and ``U``'s
    structure when some features are constant (``(constant, active, Ua)``,
    see :class:`FeatureBasis`; else None), or None when the backend has no
    ``feature_covariance``.

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

    ``passes`` is the covariance's work budget (the backend's
    ``feature_covariance``; None: its default), used by the first caller.
    """
    cache = objective.feature_factor  # the rows are fixed: computed once
    if cache is not None:
        return cache or None
    data = objective.data
    if Capability.FEATURE_COVARIANCE not in data.capabilities:
        objective.feature_factor = ()
        return None
    import scipy.linalg

    # the backend keeps no copy: S is ours
    mean, S = data.feature_covariance() if passes is None else data.feature_covariance(passes)
    if not data.fit_intercept:
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
        split = None
    else:
        sub = S[np.ix_(active, active)].astype(dt, copy=False)
        del S
        Ua = None
        if active.size:  # before U exists: LAPACK's workspace is 2 p^2 numbers
            la, Ua = scipy.linalg.eigh(sub.T, driver="evd", overwrite_a=True, check_finite=False)
        del sub
        # columns by ascending eigenvalue, as eigh orders them: the constant
        # features' unit vectors (eigenvalue 0) first, then the eigenvectors of
        # the others, so that the last columns are the leading directions
        # (class_blocks keeps the last CLASS_BLOCK_RANK of them)
        constant = np.flatnonzero(np.isin(np.arange(p), active, invert=True))
        n0 = constant.size
        U = np.zeros((p, p), dtype=dt)
        U[constant, np.arange(n0)] = 1.0
        if Ua is not None:
            U[np.ix_(active, np.arange(n0, p))] = Ua
            lam[n0:] = la
        Ua = np.ascontiguousarray(Ua) if Ua is not None else np.zeros((0, 0), dtype=dt)
        split = (constant, active, Ua)
    objective.feature_factor = cache = (mean, lam, U, split)
    return cache


def kronecker(objective: Any, coef: np.ndarray | None = None) -> Precond | None:
    """The batch Kronecker-factored approximate inverse Hessian ``g -> M g``, or None.

    ``A`` is the mean class curvature at ``coef`` (one pass; backends with
    ``class_curvature``), or at equal probabilities when ``coef`` is None;
    ``Sigma`` the backend's feature covariance (:func:`_feature_factor`),
    undamped, in its full eigenbasis.

    Returns
    -------
    callable or None
        ``g -> M g`` (flat vectors) with attributes ``quad`` (``g -> g^T M
        g``) and ``basis`` (the :class:`FeatureBasis` in which ``M`` is
        cheap); None when the backend does not offer ``feature_covariance``,
        or the penalty has no L2 part.
    """
    K, q = objective.shape
    l2 = objective.penalty.smooth_l2
    factor = _feature_factor(objective) if l2 > 0 else None
    if factor is None:
        return None
    mean, lb, Ub, split = factor
    data = objective.data
    A = None
    if coef is not None and Capability.CLASS_CURVATURE in data.capabilities:
        A = np.asarray(data.class_curvature(coef), dtype=np.float64)
    Ua, la, inv_b = _class_factor(K, A, objective.fixed_row)
    kron = Kronecker(
        Ua,
        la,
        inv_b,
        mean if data.fit_intercept else None,
        Ub,
        np.maximum(lb, 0.0),
        0.0,
        l2,
    )
    basis = kron.basis(K, q, split)
    apply_r = basis.precond

    def apply(g: np.ndarray) -> np.ndarray:
        return basis.back(apply_r(basis.forward(g)))

    def quad(g: np.ndarray) -> float:
        return apply_r.quad(basis.forward(g))  # type: ignore[attr-defined]

    apply.quad = quad  # type: ignore[attr-defined]
    apply.basis = basis  # type: ignore[attr-defined]
    return apply


# --------------------------------------------------------------------------- damped


def damping(eig: np.ndarray, target: float) -> float:
    """``delta`` with ``sum eig / (eig + delta) = target`` (effective dimension), floored.

    A Newton-like step on a minibatch of ``b`` rows is stable only where the
    rows' leverage ``x^T (Sigma + delta)^-1 x`` (whose mean is this effective
    dimension) is small against ``b``: undamped, rare features (a pixel
    that few digits touch) get steps ``n / b`` times too long.
    """
    eig = np.maximum(eig, 0.0)
    scale = float(eig.mean()) if eig.size else 0.0
    if not scale > 0:
        return 1.0
    floor = VR_MIN_DAMPING * scale
    if float(np.sum(eig / (eig + floor))) <= target:
        return floor
    lo, hi = math.log(floor), math.log(float(eig.max()) * 1e6)
    for _ in range(60):  # bisection in log(delta): the sum falls as delta grows
        mid = 0.5 * (lo + hi)
        if float(np.sum(eig / (eig + math.exp(mid)))) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


def damped_kronecker(
    mean: np.ndarray,
    second: np.ndarray | None,
    n_classes: int,
    l2: float,
    rows: int,
    fit_intercept: bool,
    *,
    sample: tuple[np.ndarray, np.ndarray | None] | None = None,
    fixed: int | None = None,
) -> Kronecker:
    """The damped Kronecker preconditioner of the ``"vr"`` steps.

    Parameters
    ----------
    mean : ndarray of shape (p,)
        Weighted feature mean.
    second : ndarray of shape (p, p) or (p,), or None
        The second moment, centred when ``fit_intercept`` (the covariance),
        else not; a vector is its diagonal (wide or sparse rows). None with
        ``sample``.
    n_classes : int
    l2 : float
        The L2 curvature of ``f``.
    rows : int
        The minibatch size the damping is made for: the effective dimension
        is held at ``VR_DIM_FRACTION`` of ``min(rows, p)``.
    fit_intercept : bool
    sample : tuple (X, w), optional
        Instead of ``second``: ``m < p`` rows (dense) and their weights,
        whose ``m x m`` Gram matrix gives the eigenvectors more cheaply (the
        other ``p - m`` eigenvalues are 0).
    fixed : int, optional
        The row of ``coef`` held at zero (a reference class): the class
        factor is that of the other rows (see :func:`_class_factor`).

    Returns
    -------
    Kronecker
        Class factor at equal probabilities; the feature eigendirections
        with eigenvalues above ``VR_LOW_RANK_TOL * delta`` kept (MNIST: 150
        of 784), the others left to ``delta`` (their entry is within that
        fraction of it), or the diagonal for a vector ``second``.
    """
    K = n_classes
    mu = np.array(mean, dtype=np.float64) if fit_intercept else None
    p = mean.shape[0]
    Ua, la, inv_b = _class_factor(K, None, fixed)
    if second is not None and second.ndim == 1:
        lam = np.maximum(second, 0.0)
        delta = damping(lam, VR_DIM_FRACTION_DIAGONAL * max(1, rows))
        return Kronecker(Ua, la, inv_b, mu, None, lam + delta, delta, l2)
    target = VR_DIM_FRACTION * max(1, min(rows, p))
    if sample is not None:
        X, w = sample
        sw = float(X.shape[0] if w is None else np.sum(w))
        Z = X.astype(np.float64) - (mean if fit_intercept else 0.0)
        Z *= np.sqrt((np.ones(len(Z)) if w is None else w) / max(sw, 1e-300))[:, None]
        lam, V = np.linalg.eigh(Z @ Z.T)
        nz = lam > 1e-10 * max(float(lam.max(initial=0.0)), 1e-300)
        lam, V = lam[nz], V[:, nz]
        U = (Z.T @ V) / np.sqrt(lam)
        delta = damping(np.concatenate([lam, np.zeros(p - lam.size)]), target)
    else:
        assert second is not None
        import scipy.linalg

        # LAPACK's divide and conquer (syevd): 1.7x NumPy's eigh at 784 features
        lam, U = scipy.linalg.eigh(second, driver="evd", check_finite=False)
        lam = np.maximum(lam, 0.0)
        delta = damping(lam, target)
    keep = lam > VR_LOW_RANK_TOL * delta
    ct = np.float32 if p >= VR_FLOAT32_FEATURES else np.float64
    Ub = np.ascontiguousarray(U[:, keep], dtype=ct)
    return Kronecker(Ua, la, inv_b, mu, Ub, lam[keep] + delta, delta, l2)


# --------------------------------------------------------------------------- class blocks


def class_blocks(objective: Any, coef: np.ndarray) -> Precond | None:
    """Each class's own curvature block in the leading feature subspace, or None.

    The data term's Hessian is ``sum_i s_i A_i (x) x~_i x~_i^T`` with ``A_i =
    diag(p_i) - p_i p_i^T``. The Kronecker preconditioner replaces every
    ``A_i`` by their mean, so one feature covariance serves all classes. Near
    the optimum most rows are classified with confidence. A class's
    curvature then comes from the rows where that class is in doubt, and
    those rows span different feature directions for each class. Here, in
    the variables ``(W, b' = b + W mu)`` of the Kronecker preconditioner:

    * the ``r = CLASS_BLOCK_RANK`` leading eigendirections ``V`` of the
      feature covariance (:func:`_feature_factor`) and the intercept get, for
      each class ``k``, the exact block ``mean_i s_i p_ik (1 - p_ik) z_i
      z_i^T + l2`` with ``z_i = (V^T x~_i, 1)``. These come from the
      backend's ``subspace_curvature``, over a row subsample;
    * the other directions get the Kronecker diagonal ``a_k lam_j + l2``,
      with ``a_k`` the class's mean curvature and ``lam_j`` the covariance
      eigenvalue.

    The cross-class blocks (``-p_ik p_il``) are left out. The result is
    applied as ``P M P`` onto the objective's subspace
    (:meth:`Objective.restrict`), so it stays symmetric positive definite
    there.

    Parameters
    ----------
    objective : softmax.solvers._base.Objective
    coef : ndarray of shape (n_classes, n_features + fit_intercept)
        The point whose curvature is used.

    Returns
    -------
    callable or None
        ``g -> M g`` on flat vectors, with ``quad`` (``g -> g^T M g``) and
        ``basis`` (the :class:`FeatureBasis` of the covariance's eigenvectors,
        in which ``M`` needs no ``p x p`` product); None without an L2 part,
        or when the backend lacks ``feature_covariance`` or
        ``subspace_curvature``.
    """
    K, q = objective.shape
    l2 = objective.penalty.smooth_l2
    data = objective.data
    if not l2 > 0 or Capability.SUBSPACE_CURVATURE not in data.capabilities:
        return None
    factor = _feature_factor(objective, CLASS_BLOCK_COVARIANCE_PASSES)
    if factor is None:
        return None
    mean, lam, U, structure = factor
    p = mean.size
    if objective.block_split is None:
        r = min(CLASS_BLOCK_RANK, p)
        # eigh returns ascending eigenvalues: the leading r are U's last
        # columns, V (a view: U's coordinates serve both parts in one product)
        objective.block_split = (U[:, p - r :], np.maximum(lam[: p - r], 0.0))
    V, lam_rest = objective.block_split
    r = V.shape[1]
    fi = data.fit_intercept
    blocks, a, rows = data.subspace_curvature(coef, V)
    _denoise(blocks, a, rows, np.maximum(lam[p - r :], 0.0), fi)
    # each block plus the penalty (not on the intercept): a direction no
    # sampled row reaches keeps 1 / l2
    reg = np.full(r + fi, l2)
    if fi:
        reg[-1] = 0.0
    blocks[:, np.arange(r + fi), np.arange(r + fi)] += reg
    inv_top = _inverse_blocks(blocks)  # (K, r + fi, r + fi)
    inv_rest = 1.0 / (np.outer(np.maximum(a, 0.0), lam_rest) + l2)  # (K, p - r)
    cut = p - r
    # everything below is in U's coordinates (FeatureBasis: L-BFGS keeps its
    # history there, so an iteration pays two p x p products, as with
    # Kronecker); the class projection of restrict() commutes with the
    # rotation of the features. mean in the basis: the (W, b') change there.
    mean_r = (mean.astype(U.dtype) @ U).astype(np.float64) if fi else None

    def split(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # coordinates t (restricted) -> (K, p) weights in (W, b') and the
        # leading part with the intercept (K, r + fi)
        T = objective.restrict(np.array(t, dtype=np.float64).reshape(K, q))
        TW = T[:, :p]
        if fi:
            TW = TW - np.outer(T[:, p], mean_r)  # the gradient in (W, b')
        top = np.concatenate([TW[:, cut:], T[:, p:]], axis=1) if fi else TW[:, cut:]
        return TW, top

    def apply_r(t: np.ndarray) -> np.ndarray:
        TW, top = split(t)
        top = np.einsum("kij,kj->ki", inv_top, top)
        out = np.empty((K, q))
        out[:, :cut] = TW[:, :cut] * inv_rest
        out[:, cut:p] = top[:, :r]
        if fi:
            out[:, p] = top[:, r] - out[:, :p] @ mean_r  # back from b' to b
        return objective.restrict(out).ravel()

    def quad_r(t: np.ndarray) -> float:
        TW, top = split(t)
        rest = float(np.sum(TW[:, :cut] ** 2 * inv_rest))
        return rest + float(np.einsum("ki,kij,kj->", top, inv_top, top))

    apply_r.quad = quad_r  # type: ignore[attr-defined]
    basis = FeatureBasis(U, K, q, apply_r, structure)

    def apply(g: np.ndarray) -> np.ndarray:
        return basis.back(apply_r(basis.forward(g)))

    def quad(g: np.ndarray) -> float:
        return quad_r(basis.forward(g))

    apply.basis = basis  # type: ignore[attr-defined]
    apply.quad = quad  # type: ignore[attr-defined]
    return apply


def _inverse_blocks(blocks: np.ndarray) -> np.ndarray:
    """Inverses of symmetric positive semi-definite blocks ``(K, n, n)``.

    Where every block is safely positive definite (its Cholesky factor
    exists and no pivot falls below ``1e-6`` of the largest: a twentieth of
    the time of an eigendecomposition), the inverse itself; otherwise through
    the eigendecomposition with eigenvalues floored at ``1e-12`` of the
    largest (a direction no sampled row reaches, with no penalty).
    """
    try:
        L = np.linalg.cholesky(blocks)
    except np.linalg.LinAlgError:
        L = None
    if L is not None:
        piv = np.diagonal(L, axis1=1, axis2=2)
        if np.all(piv.min(axis=1) > 1e-6 * piv.max(axis=1)):
            inv = np.linalg.inv(blocks)
            return 0.5 * (inv + inv.transpose(0, 2, 1))
    ev, Q = np.linalg.eigh(blocks)
    floor = 1e-12 * np.maximum(ev.max(axis=1, initial=0.0), 1e-300)
    ev = np.maximum(ev, floor[:, None])
    return (Q / ev[:, None, :]) @ Q.transpose(0, 2, 1)


def _denoise(
    blocks: np.ndarray, a: np.ndarray, rows: np.ndarray, lam: np.ndarray, fit_intercept: bool
) -> None:
    """Raise what may be sampling noise in each class block to its Kronecker value; in place.

    A block is a weighted covariance of ``rows[k]`` effective rows (Kish) in
    ``n = r + 1`` dimensions. Scaled so that its Kronecker value ``T_k = a_k
    diag(lam, 1)`` (the class's mean curvature times the covariance of every
    row, which has almost no sampling noise) is the identity, pure noise
    spreads the eigenvalues around 1 with a Marchenko-Pastur lower edge
    ``(1 - sqrt(g))^2``, ``g = n / rows``. Too little curvature is the
    harmful error (a step too long along that direction); so eigenvalues
    between ``(1 - sqrt(CLASS_BLOCK_NOISE g))^2`` and 1 are set to 1, while
    those below it (a class that really lacks curvature there) and those
    above 1 are kept. See ``CLASS_BLOCK_NOISE`` for the measurements.
    """
    d = np.sqrt(np.append(lam, 1.0) if fit_intercept else lam)
    d = np.where(d > 0, d, 1.0)
    n = d.size
    ok = (a > 0) & (rows > 0) & np.isfinite(rows)
    if not ok.any():
        return
    scale = a[ok, None, None] * np.outer(d, d)
    e, Q = np.linalg.eigh(blocks[ok] / scale)
    g = CLASS_BLOCK_NOISE * n / rows[ok]
    lo = np.maximum(0.0, 1.0 - np.sqrt(g)) ** 2
    e = np.where((e > lo[:, None]) & (e < 1.0), 1.0, e)
    blocks[ok] = ((Q * e[:, None, :]) @ Q.transpose(0, 2, 1)) * scale


# --------------------------------------------------------------------------- class scales


def class_scaled(objective: Any, coef: np.ndarray | None = None) -> Precond | None:
    """Per-class means and scales on the shared feature eigenbasis, or None.

    For many classes neither of the other two fits. Each class's Hessian
    block ``sum_i w_ik x~_i x~_i^T`` (``w_ik = s_i p_ik (1 - p_ik)``) weighs
    the rows where that class is probable, which sit around *its own* mean
    ``mu_k``: in the variables ``(W, b')`` of the Kronecker preconditioner,
    with one shared mean, every block keeps a rank-one spike ``s0_k (mu_k -
    mu)(mu_k - mu)^T`` that the preconditioner does not see (with 1,000
    classes of embeddings it is hundreds of times the mean eigenvalue), and
    its ``K x K`` class factor costs ``O(K^3)`` per refresh and ``O(K^2 p)``
    per product. The :func:`diagonal` one centres each class on its own
    curvature-weighted mean, but in the coordinates of the features, which
    are correlated. Here each class ``k`` gets, in the variables ``(W_k, b_k +
    W_k . mu_k)``, the block diagonal

    ``s0_k tau_k Sigma + l2`` on the weights and ``s0_k`` on the intercept,

    with ``Sigma = U diag(lam) U^T`` the feature covariance
    (:func:`_feature_factor`, eigenbasis shared by all classes), ``s0_k =
    sum_i w_ik`` the class's curvature and ``tau_k`` the ratio of its
    curvature-weighted feature variance (about ``mu_k``) to ``trace(Sigma)``:
    the class's rows spread like all rows, on their own scale. In ``U``'s
    coordinates this is a diagonal per class: ``O(K p)`` per product,
    nothing ``K x K``. Its inputs are the backend's ``curvature_moments``
    (one pass) at ``coef``, or the feature moments at equal probabilities
    when ``coef`` is None.

    Parameters
    ----------
    objective : softmax.solvers._base.Objective
    coef : ndarray of shape (n_classes, n_features + fit_intercept), optional
        The point whose curvature is used.

    Returns
    -------
    callable or None
        ``g -> M g`` on flat vectors, with ``quad`` and ``basis`` (the
        :class:`FeatureBasis` of the covariance's eigenvectors, where ``M``
        is diagonal per class); None without an L2 part, or when the backend
        lacks ``feature_covariance`` or the moments.
    """
    K, q = objective.shape
    l2 = objective.penalty.smooth_l2
    data = objective.data
    caps = data.capabilities
    if not l2 > 0 or Capability.FEATURE_COVARIANCE not in caps:
        return None
    if coef is not None and Capability.CURVATURE_MOMENTS in caps:
        s0, s1, s2 = (np.asarray(a, dtype=np.float64) for a in data.curvature_moments(coef))
    elif Capability.FEATURE_MOMENTS in caps:
        mean, sq = (np.asarray(a, dtype=np.float64) for a in data.feature_moments())
        c = (1.0 / K) * (1.0 - 1.0 / K)  # p (1 - p) at p = 1/K
        sw = float(data.weight_sum)
        s0 = np.full(K, c * sw)
        s1 = np.tile(c * sw * mean, (K, 1))
        s2 = np.tile(c * sw * sq, (K, 1))
    else:
        return None
    factor = _feature_factor(objective)
    if factor is None:
        return None
    _, lam, U, structure = factor
    lam = np.maximum(lam, 0.0)
    p = lam.size
    fi = data.fit_intercept
    scale = objective.loss_scale
    safe0 = np.where(s0 > 0, s0, 1.0)
    # each class's curvature-weighted second moment of the features, summed
    # over them (centred on its mean with an intercept; the covariance is
    # then centred too), against the same sum for all rows (trace of Sigma)
    spread = s2.sum(axis=1) / safe0
    mu = s1 / safe0[:, None]
    if fi:
        spread -= np.einsum("kj,kj->k", mu, mu)
    total = float(lam.sum())
    tau = np.maximum(spread, 0.0) / total if total > 0 else np.ones(K)
    inv_w = _inverse(np.outer(s0 * scale * tau, lam) + l2)  # (K, p), in U's coordinates
    inv_b = 1.0 / np.where(s0 > 0, s0 * scale, 1.0)
    mu_r = (mu.astype(U.dtype) @ U).astype(np.float64) if fi else None

    def apply_r(t: np.ndarray) -> np.ndarray:
        T = np.asarray(t, dtype=np.float64).reshape(K, q)
        out = np.empty((K, q))
        if mu_r is None:
            np.multiply(T, inv_w, out=out)
            return out.ravel()
        gb = T[:, p]
        # T^T g: the gradient in (W, b'), scaled by D^-1, then back to (W, b)
        np.multiply(gb[:, None], mu_r, out=out[:, :p])
        np.subtract(T[:, :p], out[:, :p], out=out[:, :p])
        out[:, :p] *= inv_w
        out[:, p] = gb * inv_b - np.einsum("kj,kj->k", out[:, :p], mu_r)
        return out.ravel()

    def quad_r(t: np.ndarray) -> float:
        T = np.asarray(t, dtype=np.float64).reshape(K, q)
        if mu_r is None:
            return float(np.einsum("kj,kj,kj->", T, T, inv_w))
        gb = T[:, p]
        TW = T[:, :p] - gb[:, None] * mu_r
        return float(np.einsum("kj,kj,kj->", TW, TW, inv_w) + gb @ (gb * inv_b))

    apply_r.quad = quad_r  # type: ignore[attr-defined]
    basis = FeatureBasis(U, K, q, apply_r, structure)

    def apply(g: np.ndarray) -> np.ndarray:
        return basis.back(apply_r(basis.forward(g)))

    def quad(g: np.ndarray) -> float:
        return quad_r(basis.forward(g))

    apply.basis = basis  # type: ignore[attr-defined]
    apply.quad = quad  # type: ignore[attr-defined]
    return apply
