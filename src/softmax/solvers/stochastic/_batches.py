"""Minibatches and what the stochastic optimizers compute on them.

- :class:`Batch` (rows, labels, weights, and for ``partial_fit`` the rows'
  slots in the :class:`RowIndex`) and :class:`Scale` (what turns sums over a
  batch into the gradient of ``f = F / (C * weight_sum)``);
- :func:`batch_residuals` / :func:`residual_gradient`: the loss and the
  residuals ``G = s (P - onehot)`` of a batch (computed by
  :func:`softmax.losses.multinomial_residuals_`, the one place they are
  written) and their lift ``G^T [X 1]`` to coefficients;
- :func:`row_digests` and :class:`RowIndex`: rows recognised by a 64-bit
  digest of their features, label and weight, so that ``partial_fit`` knows
  which rows it has seen, whatever chunks they come in;
- :class:`FeatureStats`: the weighted second moment of the rows seen (the
  feature factor of the ``"vr"`` preconditioner);
- small helpers: :func:`even_batches`, :func:`minibatch_threads`, :func:`seed_of`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from softmax.linear_loss import decision_function
from softmax.losses import multinomial_residuals_

__all__ = [
    "Batch",
    "FeatureStats",
    "RowIndex",
    "Scale",
    "batch_residuals",
    "check_finite",
    "even_batches",
    "minibatch_threads",
    "residual_gradient",
    "row_digests",
    "seed_of",
    "set_digest",
]

#: Minibatch products below this many multiply-adds run on one BLAS thread.
MINIBATCH_SINGLE_THREAD_WORK = 1 << 24
#: "vr" in partial_fit: the second moment is summed over every k-th row of a
#: chunk, k such that at most this many rows a chunk enter it (a p x p
#: product per row: the whole of a 500-row MNIST chunk cost as much as its
#: updates).
STATS_ROWS = 256
#: Rows partial_fit recognises at most (16 bytes each in its index, at most
#: half full); rows beyond count as new every time they are passed.
MAX_REMEMBERED_ROWS = 1 << 22


@dataclass
class Batch:
    """A minibatch: rows ``X`` (dense or CSR), label codes, weights ``s_i`` (None: ones).

    ``slots`` (``partial_fit``) are the rows' places in the :class:`RowIndex`
    (-1 for rows it could not remember).
    """

    X: Any
    y: np.ndarray
    w: np.ndarray | None
    slots: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def weight(self) -> float:
        return float(self.n_rows if self.w is None else np.sum(self.w))


@dataclass(frozen=True)
class Scale:
    """What turns sums over a batch into gradients of ``f``.

    ``f``'s data term is the weighted mean ``sum_i s_i CE_i / weight``; a
    batch of ``b`` rows estimates it by ``sum_B s_i CE_i / (b * mean_weight)``.

    Attributes
    ----------
    fit_intercept : bool
    n_rows : int
        Rows of the data set (``partial_fit``: the distinct rows seen so far).
    weight : float
        Their total weight.
    l2, l1 : float
        The penalty of ``f``: ``l2 / 2 ||W||^2 + l1 ||W||_1``.
    fixed_row : int or None
        The row of ``coef`` held at zero (a reference class), or None.
    label_smoothing : float
        ``eps`` of the smoothed targets the residuals are taken against.
    """

    fit_intercept: bool
    n_rows: int
    weight: float
    l2: float
    l1: float = 0.0
    fixed_row: int | None = None
    label_smoothing: float = 0.0

    @property
    def mean_weight(self) -> float:
        return self.weight / max(self.n_rows, 1)

    def complete(self, coef: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """A batch's data-term gradient (or Hessian product) made that of ``f``, in place.

        Adds ``l2 W`` on the weight columns and zeroes the fixed row: the
        optimizers step on the free rows only, and their preconditioners keep
        a zero row zero (see :mod:`softmax.solvers._preconditioners`).
        """
        if self.l2:
            p = coef.shape[1] - int(self.fit_intercept)
            grad[:, :p] += self.l2 * coef[:, :p]
        if self.fixed_row is not None:
            grad[self.fixed_row] = 0.0
        return grad


def batch_residuals(
    coef: np.ndarray, batch: Batch, fit_intercept: bool, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Summed weighted loss of a batch and its residuals ``s_i (p_i - t_i)``, float64.

    ``t_i`` is the one-hot label, smoothed by ``label_smoothing``. The
    gradient of the summed loss is ``residual_gradient(R, X)``.
    """
    Z = np.ascontiguousarray(
        decision_function(coef, batch.X, fit_intercept=fit_intercept), dtype=np.float64
    )
    loss = multinomial_residuals_(Z, batch.y, batch.w, label_smoothing=label_smoothing)
    return loss, Z


def residual_gradient(R: np.ndarray, X: Any, fit_intercept: bool) -> np.ndarray:
    """``R^T [X 1]`` of shape (n_classes, n_features + fit_intercept), float64."""
    K, p = R.shape[1], X.shape[1]
    out = np.empty((K, p + fit_intercept))
    if sp.issparse(X):
        out[:, :p] = (X.T @ R).T
    else:
        out[:, :p] = R.T.astype(X.dtype, copy=False) @ X
    if fit_intercept:
        out[:, p] = R.sum(axis=0)
    return out


# --------------------------------------------------------------------------- row identity

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (a bijection that spreads every bit)."""
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _bits(values: np.ndarray) -> np.ndarray:
    """The bit patterns of float32/float64 values as uint64."""
    values = np.ascontiguousarray(values)
    if values.dtype.itemsize == 8:
        return values.view(np.uint64)
    return values.view(np.uint32).astype(np.uint64)


def set_digest(digests: np.ndarray) -> int:
    """A 64-bit digest of a set of row digests (order does not matter), the same in any process."""
    import hashlib

    h = hashlib.blake2b(np.sort(digests).tobytes(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def row_digests(X: Any, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """A 64-bit digest of each row's features (bit patterns), label and weight.

    Equal rows (same features, label and weight) get equal digests wherever
    they appear; different rows collide with probability about ``2^-64`` a
    pair (each feature's bits, mixed with its column, are mixed again and
    summed modulo ``2^64``).

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_rows, n_features), float32 or float64
    y : ndarray of shape (n_rows,)
    w : ndarray of shape (n_rows,) or None

    Returns
    -------
    ndarray of shape (n_rows,), uint64
    """
    n, p = X.shape
    with np.errstate(over="ignore"):
        if sp.issparse(X):
            cols = X.indices.astype(np.uint64)
            terms = _mix(_bits(X.data) ^ _mix(cols * _GOLDEN + _GOLDEN))
            csum = np.concatenate([[np.uint64(0)], np.cumsum(terms, dtype=np.uint64)])
            h = csum[X.indptr[1:]] - csum[X.indptr[:-1]]  # wraps: a sum modulo 2^64
        else:
            cols = _mix(np.arange(p, dtype=np.uint64) * _GOLDEN + _GOLDEN)
            h = _mix(_bits(X).reshape(n, p) ^ cols).sum(axis=1, dtype=np.uint64)
        h ^= _mix(np.asarray(y, dtype=np.int64).view(np.uint64) + _GOLDEN)
        if w is not None:
            h += _mix(_bits(np.asarray(w, dtype=np.float64)) ^ _M1)
    return _mix(h)


@dataclass
class RowIndex:
    """The rows ``partial_fit`` has seen: digest -> slot, and how many copies of each.

    An open-addressing hash table in NumPy arrays (digests, slots), at most
    half full, so that a chunk's rows are looked up and added with a few
    vectorised probes: at most about 30 bytes a remembered row. A row
    passed again (same digest) keeps its slot; its multiplicity is the
    most copies seen in one call (exact duplicates
    spread over different calls of the first epoch count once until two
    copies arrive together). At most ``MAX_REMEMBERED_ROWS`` rows get a
    slot; the others get -1 and count as new every time.

    Attributes
    ----------
    n_slots : int
        Distinct rows remembered.
    n_rows : int
        Rows of the data set so far (remembered rows with their
        multiplicity, plus every row passed without a slot).
    weight : float
        Their total weight.
    """

    capacity: int = 1 << 12
    n_slots: int = 0
    n_rows: int = 0
    weight: float = 0.0
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    used: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    copies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __post_init__(self) -> None:
        if self.keys.size == 0:
            self._allocate(self.capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys = np.zeros(capacity, np.uint64)
        self.values = np.full(capacity, -1, np.int32)
        self.used = np.zeros(capacity, bool)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table positions of ``keys``: where each is, or the empty cell that ends its probe."""
        mask = np.uint64(self.capacity - 1)
        pos = (keys & mask).astype(np.int64)
        found = np.zeros(keys.size, bool)
        todo = np.arange(keys.size)
        while todo.size:
            at = pos[todo]
            hit = self.used[at] & (self.keys[at] == keys[todo])
            empty = ~self.used[at]
            found[todo[hit]] = True
            todo = todo[~(hit | empty)]
            pos[todo] = (pos[todo] + 1) & (self.capacity - 1)  # linear probing
        return pos, found

    def _grow(self) -> None:
        keys, values = self.keys[self.used], self.values[self.used]
        self._allocate(self.capacity * 2)
        self._insert(keys, values)

    def _insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Put distinct ``keys``, none of them in the table yet."""
        while keys.size:
            pos, _ = self._find(keys)
            # several keys may end at the same empty cell: the first one takes it
            cells, first = np.unique(pos, return_index=True)
            self.keys[cells] = keys[first]
            self.values[cells] = values[first]
            self.used[cells] = True
            rest = np.ones(keys.size, bool)
            rest[first] = False
            keys, values = keys[rest], values[rest]

    def add(self, digests: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Slots of a call's rows, adding those not seen before.

        Parameters
        ----------
        digests : ndarray of shape (n_rows,), uint64
        w : ndarray of shape (n_rows,) or None
            The rows' weights (for :attr:`weight`).

        Returns
        -------
        slots : ndarray of shape (n_rows,), int64
            -1 for rows beyond ``MAX_REMEMBERED_ROWS``.
        new : ndarray of shape (n_rows,), bool
            Rows that add to the data set (first seen, or more copies than before).
        """
        uniq, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
        pos, found = self._find(uniq)
        slots = np.where(found, self.values[pos], -1).astype(np.int64)
        fresh = np.flatnonzero(~found)
        room = max(0, MAX_REMEMBERED_ROWS - self.n_slots)
        take = fresh[:room]
        if take.size:
            while 2 * (self.n_slots + take.size) > self.capacity:
                self._grow()
            slots[take] = self.n_slots + np.arange(take.size)
            self._insert(uniq[take], slots[take])
            self.copies = np.concatenate([self.copies, np.zeros(take.size, np.int32)])
            self.n_slots += int(take.size)
        # multiplicity: the most copies seen in one call
        remembered = slots >= 0
        before = np.zeros(uniq.size, np.int64)
        before[remembered] = self.copies[slots[remembered]]
        extra = np.maximum(counts - before, 0)
        self.copies[slots[remembered]] = np.maximum(before[remembered], counts[remembered])
        row_slots = slots[inverse.reshape(-1)]
        # the first `extra` copies of each digest in the call are the new rows
        order = np.argsort(inverse.reshape(-1), kind="stable")
        rank = np.empty(order.size, np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[order] = np.arange(order.size) - np.repeat(starts, counts)
        new = rank < extra[inverse.reshape(-1)]
        self.n_rows += int(new.sum())
        self.weight += float(new.sum() if w is None else np.sum(w[new]))
        return row_slots, new


@dataclass
class FeatureStats:
    """Weighted sums of the rows seen: ``sum s``, ``sum s x``, ``sum s x x^T`` (or its diagonal).

    The feature factor of the ``"vr"`` preconditioner in ``partial_fit``,
    accumulated from the rows as they first arrive. ``full`` keeps the whole
    second-moment matrix (dense or sparse rows), else its diagonal.
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
        assert self.s1 is not None and self.s2 is not None
        sparse = sp.issparse(X)
        if self.full and X.shape[0] > STATS_ROWS:
            # an even stride of rows: the moments are estimates anyway
            k = -(-X.shape[0] // STATS_ROWS)
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
            ct = np.float32 if self.n_features >= 512 else np.float64
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

    def sample(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The rows kept while fewer than ``n_features`` (and their weights), or None."""
        if not self.rows:
            return None
        X = np.concatenate([r[0] for r in self.rows])
        w = None
        if any(r[1] is not None for r in self.rows):
            w = np.concatenate([np.ones(len(x)) if v is None else v for x, v in self.rows])
        return X, w


# --------------------------------------------------------------------------- helpers


def even_batches(batches: Any, batch_size: int) -> Any:
    """Merge a batch of fewer than ``batch_size / 2`` rows into the one before it.

    A backend that cuts an epoch into fixed-size batches leaves a short last
    batch (5 rows of 1,797 with ``batch_size=256``); its noisy gradient would
    get a full step every epoch, which measurably stalls convergence.
    """
    held = None
    for batch in batches:
        if held is not None and batch[0].shape[0] < batch_size / 2:
            X = (
                sp.vstack([held[0], batch[0]], format="csr")
                if sp.issparse(batch[0])
                else np.concatenate([held[0], batch[0]])
            )
            held = (X, np.concatenate([held[1], batch[1]]), np.concatenate([held[2], batch[2]]))
            continue
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


def minibatch_threads(batch_rows: int, n_features: int, n_classes: int) -> Any:
    """One BLAS thread for small minibatch products, where threads only contend.

    A (256 x 784) by (784 x 10) product takes ~0.1 ms on one core; splitting
    it over threads costs more in start-up than it saves (measured 5x slower
    per epoch on MNIST with two threads on a busy machine).
    """
    if batch_rows * max(1, n_features) * max(1, n_classes) >= MINIBATCH_SINGLE_THREAD_WORK:
        return contextlib.nullcontext()
    from softmax._threads import blas_limit

    return blas_limit(1)


def seed_of(random_state: Any) -> int:
    """An integer seed from ``random_state`` (stored in checkpoints)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    raise ValueError(f"random_state must be None, an int or a Generator, got {random_state!r}")


def check_finite(loss: float, coef: np.ndarray, t: int) -> None:
    """Raise FloatingPointError once an update made the loss or ``coef`` non-finite.

    Checked at every update: one inf would turn every later logit into NaN.
    """
    if not (math.isfinite(loss) and np.isfinite(coef).all()):
        raise FloatingPointError(
            f"the stochastic updates diverged (non-finite coefficients after update "
            f"{t}); lower learning_rate or scale the features"
        )
