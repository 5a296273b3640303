"""Variance-reduced stochastic steps ("vr"): preconditioned SAGA and SVRG.

The default optimizer of :mod:`softmax.solvers.sgd` when there is no L1
term. A damped Kronecker-factored inverse Hessian (class curvature at equal
probabilities times the covariance of the rows seen, stored as its leading
eigendirections plus a multiple of the identity) preconditions the steps; the
step is ``VR_STEP / lambda_max`` of the preconditioned minibatch Hessian
(power iteration). :func:`softmax.solvers.sgd.partial_fit_step` runs SAGA with
per-chunk residual memory; ``solver="sgd"`` runs SVRG anchored at the exact
gradient each epoch's stopping test computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmax.linear_loss import block_hessp, decision_function
from softmax.losses import softmax_rows_

#: The "vr" constants were measured on MNIST (first 8,000 digits / 255, C=1,
#: chunks of 500, batch 256) and checked on the digits, a synthetic set and
#: a sparse one (tests/test_sgd_convergence.py); figures before
#: VR_INNER_PASSES were taken with one SAGA pass a visit.
#: "vr": the step is VR_STEP / lambda_max(M H_B). On MNIST (last iterates,
#: one pass a visit) 0.5 -> 7.6% above the optimum after 20 epochs,
#: 0.8 -> 4.5%, 1.0 stalled at 12% (past the stability limit of some
#: minibatches); with the averaged iterate (VR_AVERAGE_ETA) 1.0 -> 3.3%.
VR_STEP = 1.0
#: "vr" in partial_fit: passes of SAGA steps over a chunk seen before, per
#: call. The second pass steps with the chunk's memory just refreshed (an
#: almost exact gradient of the chunk, the others' as remembered): on MNIST
#: 20 epochs 3.3% -> 0.8% above the optimum (3 passes: 1.6%, the held-out
#: loss overshooting), for twice the arithmetic after the first epoch.
VR_INNER_PASSES = 2
#: "vr" in partial_fit: plain steps (a chunk's first visit, no memory yet)
#: are this much shorter (noisier; 1.0 -> 0.88, 0.7 -> 0.89 one-epoch accuracy).
VR_FIRST_VISIT_FACTOR = 0.7
#: "vr" in partial_fit, learning_rate="auto": steps shrink as 1 / sqrt(1 +
#: passes / VR_DECAY_EPOCHS), passes counting the SAGA passes over the data
#: (VR_INNER_PASSES an epoch). Without it the iterates of some data sets
#: hover near the optimum (MNIST, random_state 0: 1.05% above it after 20
#: epochs, 0.64% after 30); 100: 0.83%, 0.36%; 25: 1.11%, 0.57%.
VR_DECAY_EPOCHS = 100.0
#: "vr" in partial_fit: coef_ is the polynomial-decay average of the SAGA
#: iterates from the second epoch on (as AVERAGE_ETA): on a synthetic
#: well-conditioned set 20 epochs 0.19% -> 0.01% above the optimum.
VR_AVERAGE_ETA = 8.0
#: "vr": damping that holds the preconditioned rows' mean leverage (effective
#: dimension) at this fraction of the minibatch rows (see _damping).
VR_DIM_FRACTION = 0.25
#: ... for the diagonal one (sparse or wide rows): on a sparse set of 2,000
#: features 0.25 -> 22% above the optimum after 10 epochs, 1.0 -> 10%.
VR_DIM_FRACTION_DIAGONAL = 1.0
#: ... and at least this fraction of the mean feature variance.
VR_MIN_DAMPING = 0.01
#: "vr": full (Kronecker) feature factor up to this many features (a p x p
#: product per update, dense or sparse rows alike); diagonal beyond.
VR_FULL_MAX_FEATURES = 1024
#: ... whose products run in float32 from this many features.
VR_FLOAT32_FEATURES = 512
VR_POWER_ITERATIONS = 10
#: "vr": eigendirections of the feature covariance with eigenvalues below
#: this fraction of the damping are left to the damping alone (their
#: preconditioner entry is within this fraction of it).
VR_LOW_RANK_TOL = 0.1
#: "vr" in partial_fit rebuilds its preconditioner (an eigendecomposition of
#: the p x p second moment, ~60 ms at p = 784) when the weight of the rows
#: seen has grown this much: log(n) builds, 2 in the first MNIST epoch (500
#: and 8,000 rows; 16-fold measured as good as doubling there).
VR_REBUILD_GROWTH = 16.0
#: "vr" in partial_fit: the second moment is summed over every k-th row of a
#: chunk, k such that at most this many rows a chunk enter it (a p x p
#: product per row: the whole of a 500-row MNIST chunk cost as much as its
#: updates).
VR_STATS_ROWS = 256
#: "vr" in partial_fit: bytes of remembered residuals (float32, K a row);
#: chunks beyond it are not remembered (plain steps on them).
VR_MEMORY_BYTES = 1 << 27
#: "vr" partial_fit from a fitted model: the steps on not-yet-remembered
#: chunks are this much shorter, so they do not throw away what fit found.
#: MNIST, held-out log loss: fit on 4,000 digits (0.413), then 8 chunks of
#: 500 new ones: 0.1 -> 0.404, 0.5 -> 0.383, 1.0 -> 0.373; fit on 8,000
#: (0.3776), then one epoch over the same chunks: 0.1 -> 0.3778, 0.5 ->
#: 0.3799, 1.0 -> 0.3852 (adam: 0.401 in the first case).
VR_WARM_START_SCALE = 0.5


@dataclass
class _FeatureStats:
    """Weighted sums of the rows seen: ``sum s``, ``sum s x``, ``sum s x x^T`` (or its diagonal).

    The feature factor of the ``"vr"`` preconditioner, accumulated from the
    chunks as they arrive (``partial_fit``) or read once from the backend
    (``fit``). ``full`` keeps the whole second-moment matrix (at most
    ``VR_FULL_MAX_FEATURES`` features, dense or sparse rows), else its
    diagonal.
    """

    n_features: int
    full: bool
    weight: float = 0.0
    s1: np.ndarray | None = None
    s2: np.ndarray | None = None
    #: the rows themselves while fewer than n_features: the first build
    #: then decomposes their small Gram matrix instead of the p x p one
    rows: list[tuple[np.ndarray, np.ndarray | None]] | None = field(default_factory=list)
    n_rows: int = 0

    def __post_init__(self) -> None:
        p = self.n_features
        if self.s1 is None:
            self.s1 = np.zeros(p)
        if self.s2 is None:
            self.s2 = np.zeros((p, p) if self.full else p)

    def add(self, X: Any, w: np.ndarray | None) -> None:
        import scipy.sparse as sp

        assert self.s1 is not None and self.s2 is not None
        sparse = sp.issparse(X)
        if self.full and X.shape[0] > VR_STATS_ROWS:
            # an even stride of rows: the moments are estimates anyway
            k = -(-X.shape[0] // VR_STATS_ROWS)
            X, w = X[::k], (None if w is None else w[::k])
        self.weight += float(X.shape[0] if w is None else np.sum(w))
        self.n_rows += X.shape[0]
        if self.full and self.rows is not None:
            if self.n_rows < self.n_features:
                rows = X.toarray() if sparse else np.array(X, dtype=np.float64)
                self.rows.append((rows, None if w is None else w.copy()))
            else:
                self.rows = None
        if sparse:
            Xw = X if w is None else sp.csr_matrix(X.multiply(w[:, None]))
            self.s1 += np.asarray(Xw.sum(axis=0), dtype=np.float64).ravel()
            if self.full:
                self.s2 += (X.T @ Xw).toarray()
            else:
                self.s2 += np.asarray(Xw.multiply(X).sum(axis=0), dtype=np.float64).ravel()
            return
        Xw = X if w is None else X * w[:, None].astype(X.dtype)
        self.s1 += Xw.sum(axis=0, dtype=np.float64)
        if self.full:
            # float32 products for many features (twice as fast): the
            # preconditioner needs the shape, not the digits
            ct = np.float32 if self.n_features >= VR_FLOAT32_FEATURES else np.float64
            Xc = np.asarray(X, dtype=ct)
            self.s2 += Xc.T @ (Xc if w is None else np.asarray(Xw, dtype=ct))  # BLAS syrk
        else:
            self.s2 += np.einsum("ij,ij->j", X, Xw, dtype=np.float64)

    def moments(self, centred: bool) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (centred when asked) second moment: matrix or diagonal."""
        assert self.s1 is not None and self.s2 is not None
        sw = max(self.weight, 1e-300)
        mean = self.s1 / sw
        second = self.s2 / sw
        if centred:
            second = second - (np.outer(mean, mean) if self.full else mean * mean)
        return mean, second


def _damping(eig: np.ndarray, target: float) -> float:
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


@dataclass
class _Preconditioner:
    """``g -> M g``: a damped Kronecker-factored inverse of the Hessian of ``f``.

    The Hessian of the data term is ``mean_i s_i A_i (x) x~_i x~_i^T``. With
    the class factor at equal probabilities, ``A = (I - 11^T / K) / K``
    (its eigenvalues are ``1/K``, ``K - 1`` times, and 0 along ``1``), and
    the feature factor the weighted covariance ``Sigma = U diag(lam) U^T``
    of the rows seen, in the variables ``(W, b' = b + W mu)``,

    .. math::

        M = (I - 11^T/K) \\otimes U \\mathrm{diag}\\big(1 / ((\\lambda + \\delta)/K
            + l_2)\\big) U^T + \\tfrac{1}{K} 11^T \\otimes I / l_2 ,
        \\qquad b': K ,

    where ``delta`` (:func:`_damping`) bounds the leverage of single rows.
    The class factor is not re-estimated as the model grows confident: its
    mean shrinks, but the few rows that stay uncertain carry the largest
    curvature, and steps sized from the mean were unstable (measured on
    MNIST). Without an intercept the second moment is not centred; beyond
    ``VR_FULL_MAX_FEATURES`` features (and in ``fit`` on sparse rows, whose
    backend gives only the diagonal) only its diagonal is kept.
    """

    n_classes: int
    mean: np.ndarray | None  # (p,) when centring (fit_intercept)
    base: np.ndarray  # (p,) diagonal part of the feature factor
    basis: np.ndarray | None  # (p, r): M's feature factor is diag(base) + U diag(scale) U^T
    scale: np.ndarray | None  # (r,)
    delta: float

    @property
    def n_features(self) -> int:
        return self.base.shape[0]

    @classmethod
    def _low_rank(
        cls,
        lam: np.ndarray,
        U: np.ndarray,
        delta: float,
        K: int,
        l2: float,
        mean: np.ndarray | None,
    ) -> _Preconditioner:
        """``rest I + U_r diag(m_r - rest) U_r^T``: the directions where ``m`` differs from rest.

        ``m = 1 / ((lam + delta) / K + l2)``; where ``lam`` is small against
        ``delta`` it is within ``VR_LOW_RANK_TOL`` of ``rest = 1 / (delta / K
        + l2)``, and those directions are dropped (MNIST: 150 of 784 kept, so
        a product costs a third of the dense one).
        """
        p = U.shape[0]
        rest = 1.0 / (delta / K + l2)
        keep = lam > VR_LOW_RANK_TOL * delta
        ct = np.float32 if p >= VR_FLOAT32_FEATURES else np.float64
        basis = np.ascontiguousarray(U[:, keep], dtype=ct)
        scale = (1.0 / ((lam[keep] + delta) / K + l2) - rest).astype(ct)
        return cls(K, mean, np.full(p, rest), basis, scale, delta)

    @classmethod
    def build(
        cls,
        mean: np.ndarray,
        second: np.ndarray,
        n_classes: int,
        l2: float,
        rows: int,
        fit_intercept: bool,
    ) -> _Preconditioner:
        """From the feature mean and second moment (matrix, or its diagonal).

        ``second`` is centred when ``fit_intercept`` (the covariance), else
        not; ``rows`` is the minibatch size the damping is made for.
        """
        K = n_classes
        target = (VR_DIM_FRACTION if second.ndim == 2 else VR_DIM_FRACTION_DIAGONAL) * max(1, rows)
        mu = np.array(mean, dtype=np.float64) if fit_intercept else None
        if second.ndim == 2:
            lam, U = np.linalg.eigh(second)
            lam = np.maximum(lam, 0.0)
            delta = _damping(lam, target)
            return cls._low_rank(lam, U, delta, K, l2, mu)
        lam = np.maximum(second, 0.0)
        delta = _damping(lam, target)
        return cls(K, mu, 1.0 / ((lam + delta) / K + l2), None, None, delta)

    @classmethod
    def from_rows(
        cls,
        X: np.ndarray,
        w: np.ndarray | None,
        mean: np.ndarray,
        n_classes: int,
        l2: float,
        rows: int,
        fit_intercept: bool,
    ) -> _Preconditioner:
        """As :meth:`build`, from ``m < p`` rows: ``eigh`` of their ``m x m`` Gram matrix.

        The second moment ``Z^T Z`` (``Z`` the centred rows scaled by
        ``sqrt(s_i / S)``) has the eigenvalues of ``Z Z^T`` and the
        eigenvectors ``Z^T v / sqrt(lambda)``; the other ``p - m`` are 0.
        """
        K, p = n_classes, X.shape[1]
        sw = float(X.shape[0] if w is None else np.sum(w))
        Z = X.astype(np.float64) - (mean if fit_intercept else 0.0)
        Z *= np.sqrt((np.ones(len(Z)) if w is None else w) / max(sw, 1e-300))[:, None]
        lam, V = np.linalg.eigh(Z @ Z.T)
        keep = lam > 1e-10 * max(float(lam.max(initial=0.0)), 1e-300)
        lam, V = lam[keep], V[:, keep]
        U = (Z.T @ V) / np.sqrt(lam)
        delta = _damping(np.concatenate([lam, np.zeros(p - lam.size)]), VR_DIM_FRACTION * rows)
        mu = np.array(mean, dtype=np.float64) if fit_intercept else None
        return cls._low_rank(lam, U, delta, K, l2, mu)

    def matrix(self) -> np.ndarray:
        """The feature factor of ``M`` as a dense (p, p) array (for tests)."""
        out = np.diag(self.base)
        if self.basis is not None and self.scale is not None:
            B = self.basis.astype(np.float64)
            out += (B * self.scale.astype(np.float64)) @ B.T
        return out

    def apply(self, G: np.ndarray, l2: float) -> np.ndarray:
        """``M G`` for a gradient ``G`` of shape (n_classes, n_features + fit_intercept)."""
        K = self.n_classes
        p = self.n_features
        GW = G[:, :p]
        if self.mean is not None:
            gb = G[:, p]
            GW = GW - np.outer(gb, self.mean)  # gradient in (W, b')
        cm = GW.mean(axis=0)  # along 1 (x) v only the L2 term curves f
        Gc = GW - cm
        out = np.empty_like(G)
        np.multiply(Gc, self.base, out=out[:, :p])
        if self.basis is not None and self.scale is not None:
            R = Gc.astype(self.basis.dtype, copy=False) @ self.basis
            R *= self.scale
            out[:, :p] += R @ self.basis.T
        out[:, :p] += cm / l2 if l2 > 0 else 0.0
        if self.mean is not None:
            out[:, p] = K * gb - out[:, :p] @ self.mean  # back to b = b' - W mu
        return out


def _residuals(
    coef: np.ndarray, X: Any, y: np.ndarray, w: np.ndarray | None, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Summed weighted loss of a minibatch and its residuals ``s_i (p_i - e_{y_i})``.

    The gradient of the summed loss is ``R^T [X 1]``; SAGA keeps ``R`` (``K``
    numbers a row) instead of whole gradients.
    """
    Z = np.ascontiguousarray(decision_function(coef, X, fit_intercept=fit_intercept), np.float64)
    rows = np.arange(len(y))
    zy = Z[rows, y]
    lse = softmax_rows_(Z)  # Z now holds the probabilities
    losses = lse - zy
    Z[rows, y] -= 1.0
    if w is not None:
        Z *= w[:, None]
        return float(losses @ w), Z
    return float(losses.sum()), Z


def _residual_gradient(R: np.ndarray, X: Any, fit_intercept: bool) -> np.ndarray:
    """``R^T [X 1]`` of shape (n_classes, n_features + fit_intercept), float64."""
    import scipy.sparse as sp

    K, p = R.shape[1], X.shape[1]
    out = np.empty((K, p + fit_intercept))
    if sp.issparse(X):
        out[:, :p] = (X.T @ R).T
    else:
        out[:, :p] = R.T.astype(X.dtype, copy=False) @ X
    if fit_intercept:
        out[:, p] = R.sum(axis=0)
    return out


def _top_curvature(
    pre: _Preconditioner,
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    fit_intercept: bool,
    mean_weight: float,
    l2: float,
) -> float:
    """Largest eigenvalue of ``M H_B`` (power iteration), ``H_B`` the minibatch Hessian of f.

    Sets the step of ``"vr"``: the preconditioner has the Hessian's shape,
    this measures how far a minibatch's curvature overshoots it.
    """
    _, _, hessp = block_hessp(coef, X, y, w, fit_intercept=fit_intercept)
    scale = 1.0 / (X.shape[0] * mean_weight)
    p = X.shape[1]
    # a fixed start: the estimate (and the fit) must not depend on where the
    # caller's generator is (weighted rows vs the same rows repeated)
    v = np.random.default_rng(0).standard_normal(coef.shape)
    lam = 1.0
    for _ in range(VR_POWER_ITERATIONS):
        v /= np.linalg.norm(v)
        Hv = hessp(v)
        Hv *= scale
        Hv[:, :p] += l2 * v[:, :p]
        u = pre.apply(Hv, l2)
        lam = float(np.linalg.norm(u))
        if not (lam > 0 and math.isfinite(lam)):
            return 1.0
        v = u
    return max(lam, 1e-12)


@dataclass
class _VR:
    """State of the ``"vr"`` update: preconditioner, its statistics, step, SAGA memory."""

    learning_rate: Any
    shape: tuple[int, int]
    stats: _FeatureStats | None = None  # None: the preconditioner is given (fit)
    decay: float = 100.0
    t: int = 0
    pre: _Preconditioner | None = None
    stats_weight_at_build: float = 0.0
    lam: float = float("nan")  # top eigenvalue of M H_B at the last build
    memory: dict[bytes, np.ndarray | None] = field(default_factory=dict)  # residuals per chunk
    memory_bytes: int = 0
    gsum: np.ndarray | None = None  # sum over remembered rows of r_i x~_i^T
    step_scale: float = 1.0  # < 1 for the first visits after a warm start
    saga_rows: int = 0  # rows of the SAGA (not first-visit) steps so far
    passes: float = 0.0  # epochs of SAGA steps so far (partial_fit)
    pass_decay: bool = False  # "auto" shortens the steps with the passes (partial_fit)
    snapshot: np.ndarray | None = None  # fit (SVRG): the anchor point
    snapshot_grad: np.ndarray | None = None  # and the data-term gradient of f there

    def __post_init__(self) -> None:
        if self.gsum is None:
            self.gsum = np.zeros(self.shape)

    def rate(self) -> float:
        lr = self.learning_rate
        if callable(lr) and not isinstance(lr, str):
            out = float(lr(self.t))
            if not (out > 0 and math.isfinite(out)):
                raise ValueError(f"learning_rate({self.t}) returned {out!r}; it must be > 0")
            return out
        if not isinstance(lr, str):
            return float(lr)
        base = VR_STEP / self.lam
        if lr == "invscaling":
            return base / math.sqrt(1.0 + self.t / self.decay)
        if lr == "auto" and self.pass_decay:
            return base / math.sqrt(1.0 + self.passes / VR_DECAY_EPOCHS)
        return base

    def refresh(self, n_classes: int, l2: float, rows: int, fit_intercept: bool) -> None:
        """Rebuild the preconditioner when the rows seen grew ``VR_REBUILD_GROWTH``-fold."""
        st = self.stats
        grown = st is not None and st.weight >= VR_REBUILD_GROWTH * self.stats_weight_at_build
        if st is None or (self.pre is not None and not grown):
            return
        mean, second = st.moments(centred=fit_intercept)
        if st.rows:  # fewer rows than features: the eigenvectors from the rows' Gram matrix
            Xs = np.concatenate([r[0] for r in st.rows])
            ws = None
            if any(r[1] is not None for r in st.rows):
                ws = np.concatenate([np.ones(len(x)) if v is None else v for x, v in st.rows])
            self.pre = _Preconditioner.from_rows(Xs, ws, mean, n_classes, l2, rows, fit_intercept)
        else:
            self.pre = _Preconditioner.build(mean, second, n_classes, l2, rows, fit_intercept)
        self.stats_weight_at_build = st.weight
        self.lam = float("nan")  # measured again on the next minibatch

    def ensure_step(
        self,
        coef: np.ndarray,
        X: Any,
        y: np.ndarray,
        w: np.ndarray | None,
        *,
        fit_intercept: bool,
        mean_weight: float,
        l2: float,
    ) -> None:
        """Measure ``lambda_max(M H_B)`` on this minibatch if the preconditioner is new."""
        if math.isnan(self.lam) and self.pre is not None:
            self.lam = _top_curvature(
                self.pre, coef, X, y, w, fit_intercept=fit_intercept, mean_weight=mean_weight,
                l2=l2,
            )  # fmt: skip

    def step(
        self, coef: np.ndarray, G: np.ndarray, l2: float, fit_intercept: bool, factor: float = 1.0
    ) -> None:
        """``coef -= rate * M (G + l2 W)`` (``G``: the data-term gradient estimate of f)."""
        assert self.pre is not None
        p = self.pre.n_features
        G[:, :p] += l2 * coef[:, :p]
        lr = self.rate() * factor
        self.t += 1
        coef -= lr * self.pre.apply(G, l2)

    def state(self) -> dict[str, np.ndarray]:
        out = {"t": np.int64(self.t), "lam": np.float64(self.lam)}
        if self.snapshot is not None and self.snapshot_grad is not None:
            out["snapshot"] = self.snapshot
            out["snapshot_grad"] = self.snapshot_grad
        return out

    def load(self, st: dict[str, np.ndarray]) -> None:
        self.t = int(st["t"])
        self.lam = float(st["lam"])
        if "snapshot" in st:
            self.snapshot = np.array(st["snapshot"])
            self.snapshot_grad = np.array(st["snapshot_grad"])
