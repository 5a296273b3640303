"""The multinomial loss lifted to coefficients, for a block of rows.

Layout
------
``coef`` has shape ``(n_classes, n_features + fit_intercept)`` and is float64;
row ``k`` holds the weight vector ``theta_k`` of class ``k`` and, when
``fit_intercept``, its intercept ``b_k`` in the last column. With
``Z = X W^T + b`` (shape ``(n_rows, n_classes)``), ``P = softmax(Z)`` row-wise
and ``G = s * (P - onehot(y))``, the data term and its derivatives are

.. math::

    L = \\sum_i s_i (\\operatorname{logsumexp}(Z_i) - Z_{i y_i}), \\quad
    \\nabla_W L = G^\\top X, \\quad \\nabla_b L = G^\\top 1,

    (H V)_W = R^\\top X, \\quad (H V)_b = R^\\top 1, \\quad
    R = s \\odot P \\odot (U - (P \\odot U) 1), \\quad U = X V_W^\\top + v_b.

Full Hessians are laid out in the C-order flattening of ``coef`` (index
``k * (n_features + fit_intercept) + j``).

The *information* (:func:`block_information`) is the same Hessian in the
baseline-category parametrisation the statistics of :mod:`softmax.inference`
use: for a reference class ``r`` the free coefficients are ``theta_k = beta_k -
beta_r`` (``k != r``), and with ``p_i``, ``e_i`` restricted to the other classes

.. math::

    \\text{score} = \\sum_i s_i (e_i - p_i) \\otimes \\tilde x_i, \\quad
    I = \\sum_i s_i (\\operatorname{diag}(p_i) - p_i p_i^\\top)
        \\otimes \\tilde x_i \\tilde x_i^\\top.

Both Hessians are assembled by one routine (:func:`_add_curvature`): per block
of rows, the block-diagonal part ``X~^T diag(s p_k) X~`` for every class by one
GEMM, and ``- M^T M`` (``M_i = sqrt(s_i) p_i (x) x~_i``) by one symmetric
rank-k update (BLAS ``syrk``: the upper triangle only, half the flops of a
general product) into a Fortran-ordered float64 accumulator.

How it is fast
--------------
A loss-and-gradient evaluation is two matrix products (``X W^T`` and
``G^T X``) plus ``O(n K)`` work. The rows are processed in blocks small
enough that a block of ``X`` stays in the L2 cache between the two products,
so ``X`` streams from memory once per evaluation; the logits of a block are
turned into ``G`` in place (no ``n x K`` temporaries besides one block
buffer); ``X`` is never copied or cast. float32 rows are computed in float32
(the products run at twice the float64 speed), while the loss and the
gradient are accumulated across blocks in float64: summing millions of float32
terms in float32 would stall solvers near a relative objective gap of 1e-6.

Sparse CSR rows are sliced into blocks without copying their data.

Every backend (memory, file stream, Dask) computes its blocks with these
functions, so all give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from softmax._kernels import softmax_columns_
from softmax.losses import multinomial_hessian_product, multinomial_residuals_, softmax_rows_

__all__ = [
    "INFORMATION_BLOCK_BYTES",
    "InformationSums",
    "Workspace",
    "block_curvature_moments",
    "block_hessian",
    "block_hessp",
    "block_information",
    "block_loss_gradient",
    "column_moments",
    "decision_function",
    "mirror_upper",
]

#: Target size in bytes of one block of dense rows: a block of X plus its
#: logits should stay in cache between the two products while the block is
#: still large enough for BLAS to run near peak. Measured by
#: ``benchmarks/bench_fit.py --block-sweep`` (results/fit_blocks.md): 2 MiB was
#: 14-21% faster than 512 KiB on MNIST and 100-feature data, and larger
#: blocks gained nothing.
BLOCK_BYTES = 2 * 1024 * 1024
#: From this many classes on, blocks of dense rows take ``MANY_CLASSES_BLOCK_BYTES``:
#: the logits no longer fit in cache beside the block anyway, and the two
#: products (``X_b W^T``, ``G_b^T X_b``) run far from BLAS's peak on short
#: blocks. On linear-probe rows (50,000 x 256, 1,000 classes, float32, one
#: thread) a loss-gradient pass took 1.65 s with 32 MiB blocks (6,678 rows)
#: against 1.9 s with 16 MiB, 3.4 s with 8 MiB and 5.3 s with 2 MiB (417 rows;
#: best of 4 passes each, interleaved, on a loaded 2-core machine).
MANY_CLASSES = 256
#: Target bytes of a block of dense rows with ``MANY_CLASSES`` classes or more.
MANY_CLASSES_BLOCK_BYTES = 32 * 1024 * 1024
#: Rows per block never go below this (BLAS efficiency, Python overhead).
MIN_BLOCK_ROWS = 256
#: Rows per block for CSR input (no cache argument: sparse products stream).
SPARSE_BLOCK_ROWS = 16384
#: Dense passes over at most this many classes hold the logits class-major,
#: ``(n_classes, n_rows)``: the softmax over a few classes is then a handful of
#: elementwise operations on contiguous rows instead of a loop over strided
#: columns, and ``W @ X^T`` / ``G @ X`` are plain products. On digits (1,437
#: x 64, 10 classes) a loss-gradient pass took 137 us instead of 288 us.
CLASS_MAJOR_MAX_CLASSES = 16
#: Dense X of at most this many bytes is also kept transposed (a copy, in the
#: workspace of the backend that owns X) for the class-major logits ``W @
#: X^T``, which BLAS computes about twice as fast from contiguous rows of
#: ``X^T`` as from the transposed view (35 us against 70 us on digits). The
#: gain shrinks as X grows (about 15% of a one-thread pass on covertype-like
#: rows of 10-30 MB) while the copy adds X's size to the fit's resident set,
#: which the fit keeps below 1.5x X (docs/performance.md): small X only.
TRANSPOSED_COPY_BYTES = 8 * 1024 * 1024


def _is_sparse(X: Any) -> bool:
    return sp.issparse(X)


def _block_rows(X: Any, n_classes: int) -> int:
    n = X.shape[0]
    if _is_sparse(X):
        rows = SPARSE_BLOCK_ROWS
    else:
        row_bytes = (X.shape[1] + n_classes) * X.dtype.itemsize
        target = MANY_CLASSES_BLOCK_BYTES if n_classes >= MANY_CLASSES else BLOCK_BYTES
        rows = max(MIN_BLOCK_ROWS, target // max(1, row_bytes))
    return max(1, min(n, rows))


def _row_block(X: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of ``X`` without copying the data (also for CSR)."""
    if not _is_sparse(X):
        return X[start:stop]
    indptr = X.indptr
    a, b = indptr[start], indptr[stop]
    return sp.csr_matrix(
        (X.data[a:b], X.indices[a:b], indptr[start : stop + 1] - a),
        shape=(stop - start, X.shape[1]),
    )


def _compute_dtype(X: Any) -> np.dtype:
    dt = np.dtype(X.dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got {dt}; cast it first")
    return dt


def _check_coef(coef: np.ndarray, X: Any, fit_intercept: bool) -> None:
    p = X.shape[1]
    if coef.ndim != 2 or coef.shape[1] != p + int(fit_intercept):
        raise ValueError(
            f"coef has shape {coef.shape}; expected (n_classes, {p + int(fit_intercept)}) "
            f"for X with {p} features and fit_intercept={fit_intercept}"
        )


def _split(coef: np.ndarray, p: int, fit_intercept: bool, dtype: np.dtype):
    """Weights (K, p) and intercepts (K,) of ``coef``, in the compute dtype."""
    W = np.ascontiguousarray(coef[:, :p], dtype=dtype)
    b = coef[:, p].astype(dtype) if fit_intercept else None
    return W, b


def _matmul_xt(Xb: Any, WT: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``Xb @ WT`` into ``out`` (a block buffer) for dense or CSR ``Xb``."""
    if _is_sparse(Xb):
        out[...] = Xb @ WT
        return out
    return np.matmul(Xb, WT, out=out)


def _add_gt_x(Gb: np.ndarray, Xb: Any, tmp: np.ndarray | None, acc: np.ndarray) -> None:
    """``acc += Gb^T @ Xb``; the product runs in the block dtype, the sum in float64."""
    if _is_sparse(Xb):
        acc += (Xb.T @ Gb).T
    elif tmp is None:
        acc += Gb.T @ Xb
    else:
        np.matmul(Gb.T, Xb, out=tmp)
        acc += tmp


class _Buffers:
    """Block buffers of one worker thread."""

    def __init__(self, block_rows: int, n_classes: int, n_features: int, dtype, dense: bool):
        self.z = np.empty((block_rows, n_classes), dtype=dtype)
        self.gtmp = np.empty((n_classes, n_features), dtype=dtype) if dense else None
        self.row_index = np.arange(block_rows)
        self.ones = np.ones(block_rows, dtype=dtype)


class Workspace:
    """Preallocated buffers for repeated evaluations on the same rows.

    Backends that evaluate the loss many times on the same ``X`` (every
    solver iteration) keep one and pass it as ``workspace=``; no buffer is
    then allocated per call besides small ``(n_classes, n_features)`` ones.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_rows, n_features)
        The rows (only their shape and dtype are used).
    n_classes : int
    keep_proba : bool, default False
        Also keep an ``(n_rows, n_classes)`` buffer for the probabilities,
        which Hessian-vector products reuse.
    n_threads : int, default 1
        Loss-gradient passes split the rows into this many contiguous ranges
        processed by parallel Python threads, each with its own buffers and
        single-threaded BLAS (NumPy releases the GIL in its products and
        ufuncs). A multithreaded BLAS on many small block products loses more
        to synchronisation than it gains; whole ranges per thread do not.
    """

    def __init__(
        self, X: Any, n_classes: int, *, keep_proba: bool = False, n_threads: int = 1
    ) -> None:
        self.dtype = _compute_dtype(X)
        self.n_rows, self.n_features = X.shape
        self.n_classes = n_classes
        self.block_rows = _block_rows(X, n_classes)
        self.n_threads = max(1, int(n_threads))
        dense = not _is_sparse(X)
        self.buffers = [
            _Buffers(self.block_rows, n_classes, self.n_features, self.dtype, dense)
            for _ in range(self.n_threads)
        ]
        first = self.buffers[0]
        self.z, self.gtmp, self.row_index, self.ones = (
            first.z,
            first.gtmp,
            first.row_index,
            first.ones,
        )
        self.proba = np.empty((self.n_rows, n_classes), dtype=self.dtype) if keep_proba else None
        self._xt: np.ndarray | None = None
        self._x2: np.ndarray | None = None
        self._xt_source: Any = None

    def transposed(self, X: Any) -> np.ndarray | None:
        """A C-contiguous copy of ``X.T`` kept for the class-major pass, or None.

        Made once, for dense ``X`` of at most ``TRANSPOSED_COPY_BYTES`` that
        takes the class-major pass, and handed out only for that same array
        object (a workspace may be offered other rows of the same shape).
        Rows must not be modified in place between passes (no backend does).
        """
        if self._xt_source is X:
            return self._xt
        if (
            not _class_major(X, self.n_classes)
            or X.nbytes > TRANSPOSED_COPY_BYTES
            or self.n_threads > 1
        ):
            return None
        self._xt = np.ascontiguousarray(X.T)
        self._x2 = None
        self._xt_source = X
        return self._xt

    def squared(self, X: Any) -> np.ndarray | None:
        """``X * X`` kept for :func:`block_curvature_moments`, or None.

        Under the same conditions as :meth:`transposed` (and for the same
        array object only).
        """
        if self.transposed(X) is None:
            return None
        if self._x2 is None:
            self._x2 = X * X
        return self._x2

    def fits(self, X: Any, n_classes: int) -> bool:
        return (
            X.shape == (self.n_rows, self.n_features)
            and np.dtype(X.dtype) == self.dtype
            and n_classes == self.n_classes
        )


_EXECUTOR = None


def _executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        from concurrent.futures import ThreadPoolExecutor

        _EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="softmax-rows")
    return _EXECUTOR


def _ranges(n: int, step: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous row ranges, split on block boundaries."""
    n_blocks = -(-n // step) if n else 0
    parts = max(1, min(parts, n_blocks))
    cuts = [min(n, (n_blocks * i // parts) * step) for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


#: Dense C-contiguous rows go through the fused numba pass of
#: :mod:`softmax._numba_loss` (extra ``fast``) when numba is installed, the pass
#: is at least this much work (n_rows * n_features * n_classes: below it the
#: one-off costs, a compile of about 3 s that is then cached on disk and about
#: 0.3 s per process to import numba and load the cache, outweigh the saving)
#: and it is faster there (FUSED_MIN_FEATURES).
FUSED_MIN_WORK = 20_000_000
#: By itemsize, ``(floor, per_class)``: the fused pass is used when
#: ``n_features >= max(floor, per_class * n_classes)``. It pays a fixed cost per
#: (row, class) (a horizontal vector sum) that BLAS does not, and BLAS runs
#: closer to its peak as n_classes grows, so it needs enough features per class.
#: Crossovers measured by benchmarks/bench_loss_kernel.py (results/loss_kernel.md).
FUSED_MIN_FEATURES = {4: (64, 14), 8: (48, 6)}
_fused_module: Any = None  # False once numba was found missing


def _fused_pass(X: Any, n_classes: int) -> Callable[..., Any] | None:
    """The fused dense pass when it applies to ``X`` and is faster, else None."""
    global _fused_module
    if (
        _fused_module is False
        or not isinstance(X, np.ndarray)
        or not X.flags.c_contiguous
        or X.dtype.itemsize not in FUSED_MIN_FEATURES
        or X.size * n_classes < FUSED_MIN_WORK
    ):
        return None
    floor, per_class = FUSED_MIN_FEATURES[X.dtype.itemsize]
    if X.shape[1] < max(floor, per_class * n_classes):
        return None
    if _fused_module is None:
        try:
            from softmax import _numba_loss
        except ImportError:  # numba missing: the BLAS path below is complete
            _fused_module = False
            return None
        _fused_module = _numba_loss
    return _fused_module.loss_grad_range


def _class_major(X: Any, n_classes: int) -> bool:
    """Whether passes over ``X`` hold the logits class-major (see CLASS_MAJOR_MAX_CLASSES)."""
    return not _is_sparse(X) and n_classes <= CLASS_MAJOR_MAX_CLASSES


def _loss_grad_range_class_major(
    W: np.ndarray,
    b: np.ndarray | None,
    X: np.ndarray,
    XT: np.ndarray | None,
    y: np.ndarray,
    weights: np.ndarray | None,
    need_gradient: bool,
    bufs: _Buffers,
    lo: int,
    hi: int,
    step: int,
    eps: float,
    proba_t: np.ndarray | None = None,
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """:func:`_loss_grad_range` with the logits of a block as ``(n_classes, n_rows)``.

    ``XT`` is a C-contiguous ``X.T`` (or None: the transposed view is used).
    ``proba_t``: a C-contiguous ``(n_classes, hi - lo)`` array that keeps the
    probabilities (for Hessian products; rows ``lo:hi`` in one block).
    """
    K, p = W.shape
    gW = np.zeros((K, p), dtype=np.float64) if need_gradient else None
    gb = np.zeros(K, dtype=np.float64) if need_gradient and b is not None else None
    loss = 0.0
    for start in range(lo, hi, step):
        stop = min(hi, start + step)
        r = stop - start
        # the block buffer (block_rows x K) reused as K x r, contiguous
        Gt = bufs.z.reshape(-1)[: K * r].reshape(K, r)
        Zt = Gt if proba_t is None else proba_t
        XbT = XT[:, start:stop] if XT is not None else X[start:stop].T
        np.matmul(W, XbT, out=Zt)
        if b is not None:
            Zt += b[:, None]
        sb = None if weights is None else weights[start:stop]
        loss += multinomial_residuals_(
            Zt,
            y[start:stop],
            sb,
            need_residuals=need_gradient,
            out=None if proba_t is None else Gt,
            rows=bufs.row_index,
            label_smoothing=eps,
            class_major=True,
        )
        Zt = Gt  # the residuals
        if not need_gradient:
            continue
        Xb = X[start:stop]
        if bufs.gtmp is None:
            gW += Zt @ Xb
        else:
            np.matmul(Zt, Xb, out=bufs.gtmp)
            gW += bufs.gtmp
        if gb is not None:
            gb += Zt.sum(axis=1, dtype=np.float64)
    return loss, gW, gb


def _loss_grad_range(
    W: np.ndarray,
    b: np.ndarray | None,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    need_gradient: bool,
    bufs: _Buffers,
    proba_out: np.ndarray | None,
    lo: int,
    hi: int,
    step: int,
    eps: float = 0.0,
    XT: np.ndarray | None = None,
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Loss, weight gradient and intercept gradient of rows ``lo:hi``, in blocks.

    ``XT``: a C-contiguous ``X.T`` for the class-major pass (optional).
    """
    fused = _fused_pass(X, W.shape[0])
    if fused is not None:
        return fused(
            W, b, X, y, weights, need_gradient, bufs.gtmp, proba_out, lo, hi, step,
            label_smoothing=eps,
        )  # fmt: skip
    if proba_out is None and _class_major(X, W.shape[0]):
        return _loss_grad_range_class_major(
            W, b, X, XT, y, weights, need_gradient, bufs, lo, hi, step, eps
        )
    K, p = W.shape
    WT = W.T  # F-contiguous view: BLAS reads it transposed, no copy
    gW = np.zeros((K, p), dtype=np.float64) if need_gradient else None
    gb = np.zeros(K, dtype=np.float64) if need_gradient and b is not None else None
    loss = 0.0
    for start in range(lo, hi, step):
        stop = min(hi, start + step)
        r = stop - start
        Xb = _row_block(X, start, stop)
        yb = y[start:stop]
        sb = None if weights is None else weights[start:stop]
        # proba_out doubles as the logits buffer: no copy when a caller keeps P
        Zb = bufs.z[:r] if proba_out is None else proba_out[start:stop]
        _matmul_xt(Xb, WT, Zb)
        if b is not None:
            Zb += b
        # keep P for Hessian products: then G is built in the block buffer
        Gb = bufs.z[:r] if proba_out is not None else Zb
        loss += multinomial_residuals_(
            Zb,
            yb,
            sb,
            need_residuals=need_gradient,
            out=Gb if proba_out is not None else None,
            rows=bufs.row_index,
            label_smoothing=eps,
        )
        if not need_gradient:
            continue
        _add_gt_x(Gb, Xb, bufs.gtmp, gW)
        if gb is not None:
            # column sums as a BLAS product (the block sum is short; blocks
            # are accumulated in float64)
            gb += bufs.ones[:r] @ Gb
    return loss, gW, gb


def _loss_grad(
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    fit_intercept: bool,
    need_gradient: bool,
    workspace: Workspace | None,
    proba_out: np.ndarray | None,
    eps: float = 0.0,
) -> tuple[float, np.ndarray | None]:
    """Blocked loss (and gradient); optionally stores the probabilities."""
    _check_coef(coef, X, fit_intercept)
    n, p = X.shape
    K = coef.shape[0]
    dt = _compute_dtype(X)
    ws = workspace if workspace is not None and workspace.fits(X, K) else Workspace(X, K)
    W, b = _split(coef, p, fit_intercept, dt)
    ranges = _ranges(n, ws.block_rows, ws.n_threads)
    args = (W, b, X, y, weights, need_gradient)
    if len(ranges) == 1:
        # a caller's workspace (kept across passes) may hold the transposed rows
        XT = ws.transposed(X) if ws is workspace and proba_out is None else None
        parts = [_loss_grad_range(*args, ws.buffers[0], proba_out, 0, n, ws.block_rows, eps, XT)]
    else:
        futures = [
            _executor().submit(
                _loss_grad_range, *args, ws.buffers[i], proba_out, lo, hi, ws.block_rows, eps
            )
            for i, (lo, hi) in enumerate(ranges[1:], start=1)
        ]
        lo, hi = ranges[0]
        parts = [_loss_grad_range(*args, ws.buffers[0], proba_out, lo, hi, ws.block_rows, eps)]
        parts += [f.result() for f in futures]
    # summed in a fixed order: the result does not depend on thread timing
    loss = 0.0
    for part in parts:
        loss += part[0]
    if not need_gradient:
        return loss, None
    grad = np.empty_like(coef, dtype=np.float64)
    grad[:, :p] = parts[0][1]
    for part in parts[1:]:
        grad[:, :p] += part[1]
    if fit_intercept:
        grad[:, p] = parts[0][2]
        for part in parts[1:]:
            grad[:, p] += part[2]
    return loss, grad


def block_loss_gradient(
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    *,
    fit_intercept: bool,
    need_gradient: bool = True,
    workspace: Workspace | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, np.ndarray | None]:
    """Summed weighted cross-entropy of a block of rows and its gradient.

    Parameters
    ----------
    coef : ndarray of shape (n_classes, n_features + fit_intercept), float64
        Weights, and intercepts in the last column when ``fit_intercept``.
    X : ndarray or scipy.sparse CSR matrix of shape (n_rows, n_features)
        float32 or float64 rows. Not copied; computed in its dtype.
    y : ndarray of shape (n_rows,)
        Integer label codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_rows,) or None
        Row weights ``s_i`` (float64); None means all ones.
    fit_intercept : bool
        Whether the last column of ``coef`` is the intercept.
    need_gradient : bool, default True
        False computes the loss alone (one matrix product instead of two).
    workspace : Workspace, optional
        Buffers reused across calls on the same rows.
    label_smoothing : float in [0, 1), default 0.0
        ``eps``: the cross-entropy is taken against the target
        ``(1 - eps) onehot(y_i) + eps / n_classes`` (PyTorch's definition; see
        :func:`softmax.losses.multinomial_residuals_`).

    Returns
    -------
    loss : float
        ``sum_i s_i * CE(t_i, softmax(W x_i + b))``, accumulated in float64.
    gradient : ndarray of shape (n_classes, n_features + fit_intercept) or None
        float64; None when ``need_gradient`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> y = np.array([0, 1])
    >>> loss, grad = block_loss_gradient(np.zeros((3, 3)), X, y, None, fit_intercept=True)
    >>> bool(round(loss, 6) == round(2 * np.log(3), 6)), grad.shape
    (True, (3, 3))
    """
    return _loss_grad(
        coef, X, y, weights, fit_intercept, need_gradient, workspace, None, float(label_smoothing)
    )


def block_hessp(
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    *,
    fit_intercept: bool,
    workspace: Workspace | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Loss, gradient and a Hessian-vector product function for a block of rows.

    Parameters
    ----------
    coef, X, y, weights, fit_intercept, label_smoothing
        As in :func:`block_loss_gradient` (the Hessian does not depend on
        ``label_smoothing``: the smoothed target sums to one).
    workspace : Workspace, optional
        Reused buffers; when it was made with ``keep_proba=True`` the
        probabilities are stored there instead of in a new ``(n_rows,
        n_classes)`` array.

    Returns
    -------
    loss : float
    gradient : ndarray of shape (n_classes, n_features + fit_intercept)
    hessp : callable
        ``hessp(V)`` with ``V`` of the shape of ``coef`` returns ``H V``
        (float64, same shape), where ``H`` is the Hessian of the summed loss
        at ``coef``. Each call is one pass over the rows.
    """
    n, p = X.shape
    K = coef.shape[0]
    dt = _compute_dtype(X)
    if workspace is not None and workspace.fits(X, K) and workspace.proba is not None:
        P = workspace.proba
    else:
        P = np.empty((n, K), dtype=dt)
    ws = workspace if workspace is not None and workspace.fits(X, K) else Workspace(X, K)
    XT = ws.transposed(X) if ws is workspace and n <= ws.block_rows else None
    if XT is not None:
        return _class_major_hessp(coef, X, XT, y, weights, fit_intercept, ws, P, label_smoothing)
    loss, grad = _loss_grad(coef, X, y, weights, fit_intercept, True, ws, P, label_smoothing)

    def hessp(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64).reshape(coef.shape)
        Vw, vb = _split(V, p, fit_intercept, dt)
        VT = Vw.T
        hW = np.zeros((K, p), dtype=np.float64)
        hb = np.zeros(K, dtype=np.float64) if fit_intercept else None
        step = ws.block_rows
        for start in range(0, n, step):
            stop = min(n, start + step)
            r = stop - start
            Xb = _row_block(X, start, stop)
            Ub = _matmul_xt(Xb, VT, ws.z[:r])
            if vb is not None:
                Ub += vb
            sb = None if weights is None else weights[start:stop]
            Rb = multinomial_hessian_product(P[start:stop], Ub, sb, out=Ub)
            _add_gt_x(Rb, Xb, ws.gtmp, hW)
            if hb is not None:
                hb += Rb.sum(axis=0, dtype=np.float64)
        out = np.empty(coef.shape, dtype=np.float64)
        out[:, :p] = hW
        if fit_intercept:
            out[:, p] = hb
        return out

    return loss, grad, hessp


def _class_major_hessp(
    coef: np.ndarray,
    X: np.ndarray,
    XT: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    fit_intercept: bool,
    ws: Workspace,
    P: np.ndarray,
    eps: float,
) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """:func:`block_hessp` for rows in one class-major block (see CLASS_MAJOR_MAX_CLASSES).

    The probabilities are kept as ``(n_classes, n_rows)`` in the memory of
    ``P``; each product is ``W_V @ X^T``, the logit Hessian product per
    column, and ``R @ X``: on digits (1,437 x 64, 10 classes) 110 us
    instead of 210 us.
    """
    n, p = X.shape
    K = coef.shape[0]
    dt = _compute_dtype(X)
    Pt = P.reshape(-1).reshape(K, n)  # the same memory, class-major
    W, b = _split(coef, p, fit_intercept, dt)
    bufs = ws.buffers[0]
    loss, gW, gb = _loss_grad_range_class_major(
        W, b, X, XT, y, weights, True, bufs, 0, n, max(n, 1), eps, proba_t=Pt
    )
    grad = np.empty(coef.shape, dtype=np.float64)
    grad[:, :p] = gW
    if fit_intercept:
        grad[:, p] = gb

    def hessp(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64).reshape(coef.shape)
        Vw, vb = _split(V, p, fit_intercept, dt)
        Ut = bufs.z.reshape(-1)[: K * n].reshape(K, n)
        np.matmul(Vw, XT, out=Ut)
        if vb is not None:
            Ut += vb[:, None]
        Rt = multinomial_hessian_product(Pt, Ut, weights, out=Ut, class_major=True)
        out = np.empty(coef.shape, dtype=np.float64)
        out[:, :p] = Rt @ X
        if fit_intercept:
            out[:, p] = Rt.sum(axis=1, dtype=np.float64)
        return out

    return loss, grad, hessp


def mirror_upper(S: np.ndarray, block: int = 512) -> np.ndarray:
    """Copy the upper triangle of square ``S`` onto its lower one, in place; returns ``S``.

    By column blocks, so that no temporary is larger than ``block`` columns
    (index arrays of the whole triangle would be ``2 m^2`` int64 numbers).
    """
    m = S.shape[0]
    for j0 in range(0, m, block):
        j1 = min(m, j0 + block)
        D = S[j0:j1, j0:j1]
        D[...] = np.triu(D) + np.triu(D, 1).T
        S[j1:, j0:j1] = S[j0:j1, j1:].T
    return S


def _dense_rows(Xb: Any, fit_intercept: bool, out: np.ndarray) -> np.ndarray:
    """Rows ``Xb`` as float64 with a trailing column of ones (into ``out[:rows]``)."""
    r, p = Xb.shape
    Xt = out[:r]
    Xt[:, :p] = Xb.toarray() if _is_sparse(Xb) else Xb
    if fit_intercept:
        Xt[:, p] = 1.0
    return Xt


def _add_curvature(
    acc: np.ndarray, Xt: np.ndarray, P: np.ndarray, s: np.ndarray | None, M: np.ndarray
) -> np.ndarray:
    """``acc += sum_i s_i (diag(p_i) - p_i p_i^T) (x) xt_i xt_i^T``, upper triangle.

    Parameters
    ----------
    acc : ndarray of shape (m, m), float64, Fortran order
        ``m = n_cols * q``; only its upper triangle is read and written.
    Xt : ndarray of shape (rows, q), float64
    P : ndarray of shape (rows, n_cols), float64
        The probabilities of the classes the Hessian is over.
    s : ndarray of shape (rows,) or None
        Row weights (>= 0).
    M : ndarray of shape (rows, m), float64, Fortran order
        Scratch.

    Returns
    -------
    acc
        The same array (BLAS updates it in place).
    """
    from scipy.linalg import blas

    q = Xt.shape[1]
    kc = P.shape[1]
    sq = None if s is None else np.sqrt(s)
    sqP = P if sq is None else P * sq[:, None]
    # M_i = sqrt(s_i) p_i (x) xt_i, one column block per class
    for k in range(kc):
        np.multiply(Xt, sqP[:, k : k + 1], out=M[:, k * q : (k + 1) * q])
    # the block-diagonal part X~^T diag(s p_k) X~ = (sqrt(s) X~)^T M_k: one GEMM
    Xs = Xt if sq is None else Xt * sq[:, None]
    diag = Xs.T @ M  # (q, m)
    for k in range(kc):
        sl = slice(k * q, (k + 1) * q)
        acc[sl, sl] += diag[:, sl]
    # minus M^T M (upper triangle) by a symmetric rank-k update
    return blas.dsyrk(-1.0, M, beta=1.0, c=acc, trans=1, lower=0, overwrite_c=1)


def block_hessian(
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    *,
    fit_intercept: bool,
    workspace: Workspace | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss, gradient and the full Hessian for a block of rows.

    .. math::

        H = \\sum_i s_i \\, (\\operatorname{diag}(p_i) - p_i p_i^\\top)
            \\otimes \\tilde x_i \\tilde x_i^\\top,
        \\qquad \\tilde x_i = (x_i, 1 \\text{ if fit\\_intercept}),

    assembled as ``sum_k Xt^T diag(s p_k) Xt`` on the diagonal blocks minus
    ``M^T M`` with ``M_i = sqrt(s_i) p_i (x) xt_i`` (a symmetric rank-k update
    of ``(rows, n_coef)`` blocks: the upper triangle, then mirrored); cost
    ``n * n_coef^2 / 2`` multiply-adds, meant for small ``n_coef``. CSR rows
    are densified one block at a time.

    Parameters
    ----------
    coef, X, y, weights, fit_intercept, workspace, label_smoothing
        As in :func:`block_loss_gradient` (the Hessian does not depend on
        ``label_smoothing``).

    Returns
    -------
    loss : float
    gradient : ndarray of shape (n_classes, n_features + fit_intercept)
    hessian : ndarray of shape (n_coef, n_coef), float64
        ``n_coef = n_classes * (n_features + fit_intercept)``, C-order of
        ``coef``; symmetric (Fortran-ordered in memory).
    """
    n, p = X.shape
    K = coef.shape[0]
    q = p + int(fit_intercept)
    m = K * q
    dt = _compute_dtype(X)
    P = np.empty((n, K), dtype=dt)
    loss, grad = _loss_grad(
        coef, X, y, weights, fit_intercept, True, workspace, P, label_smoothing
    )
    # Assembled in float64 even for float32 rows: H is a difference of two
    # large terms (diag(p) - p p^T), and float32 cancellation there stalls Newton.
    H = np.zeros((m, m), order="F")
    step = _information_rows(n, m)
    xbuf = np.empty((step, q))
    mbuf = np.empty((step, m), order="F")
    for start in range(0, n, step):
        stop = min(n, start + step)
        r = stop - start
        Xt = _dense_rows(_row_block(X, start, stop), fit_intercept, xbuf)
        Pb = P[start:stop].astype(np.float64, copy=False)
        sb = None if weights is None else weights[start:stop]
        M = mbuf if r == step else np.empty((r, m), order="F")
        H = _add_curvature(H, Xt, Pb, sb, M)
    # the upper triangle mirrored: exactly symmetric, for Cholesky
    return loss, grad, mirror_upper(H)


#: Target size in bytes of the ``(rows, n_coef)`` block ``M`` of the Hessian
#: and information passes: large enough that the rank-k update streams the
#: accumulator from memory rarely (each block reads and writes all of it
#: once), small next to it.
INFORMATION_BLOCK_BYTES = 32 * 1024 * 1024


def _information_rows(n: int, m: int) -> int:
    rows = max(MIN_BLOCK_ROWS, INFORMATION_BLOCK_BYTES // max(1, 8 * m))
    return max(1, min(n, rows))


@dataclass
class InformationSums:
    """Sums over rows for inference in the reference form (see :func:`block_information`).

    Attributes
    ----------
    loglik : float
        ``sum_i s_i log p_{i y_i}``.
    score : ndarray of shape ((K - 1) * q,)
        Gradient of ``loglik`` with respect to the free coefficients
        ``theta_k = beta_k - beta_r`` (``k != r``, class-major, C order).
    information : ndarray of shape ((K - 1) * q, (K - 1) * q)
        Fortran-ordered; only the upper triangle is meaningful (see
        :func:`mirror_upper`).
    meat : ndarray of the same shape or None
        Upper triangle of the HC0 meat ``sum_i s_i u_i u_i^T`` (``u_i`` the
        score of row ``i``) or of the cluster meat ``sum_g U_g U_g^T``, when
        asked for.
    class_totals : ndarray of shape (K,)
        ``sum_i s_i [y_i = k]``.
    """

    loglik: float
    score: np.ndarray
    information: np.ndarray
    meat: np.ndarray | None
    class_totals: np.ndarray

    def add(self, other: InformationSums) -> InformationSums:
        """``self + other`` (row blocks summed), in ``self``'s arrays; returns ``self``."""
        self.loglik += other.loglik
        self.score += other.score
        self.information += other.information
        if self.meat is not None and other.meat is not None:
            self.meat += other.meat
        self.class_totals += other.class_totals
        return self


def _add_outer(acc: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``acc += U^T U`` (upper triangle) by a rank-k update."""
    from scipy.linalg import blas

    return blas.dsyrk(1.0, np.asfortranarray(U), beta=1.0, c=acc, trans=1, lower=0, overwrite_c=1)


def block_information(
    coef: np.ndarray,
    X: Any,
    y: np.ndarray,
    weights: np.ndarray | None,
    *,
    reference: int,
    fit_intercept: bool,
    meat: str | None = None,
    groups: np.ndarray | None = None,
) -> InformationSums:
    """Log-likelihood, score, information (and a sandwich meat) of a block of rows.

    In the reference form (module docstring): the free coefficients are
    ``theta_k = beta_k - beta_r`` for the classes ``k != r``, flattened
    class-major. One pass over the rows by blocks of about
    :data:`INFORMATION_BLOCK_BYTES`; the information by :func:`_add_curvature`
    (``n ((K - 1) q)^2 / 2`` multiply-adds), float64 whatever the dtype of
    ``X`` (the information is a difference of two large terms and float32
    products lose the digits standard errors are made of). Memory: the
    accumulator(s) and one block.

    Parameters
    ----------
    coef : ndarray of shape (n_classes, n_features + fit_intercept)
        Coefficients in any parametrisation (only differences between rows
        matter; the intercept last when ``fit_intercept``).
    X : ndarray or CSR matrix of shape (n_rows, n_features)
        float32 or float64 rows; never copied whole.
    y : ndarray of shape (n_rows,)
        Class codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_rows,) or None
        Frequency weights ``s_i >= 0``; None means ones.
    reference : int
        Code of the reference class ``r``.
    fit_intercept : bool
    meat : {None, "hc", "cluster"}
        Also accumulate the HC0 meat ``sum_i s_i u_i u_i^T`` (frequency
        weights: a row of weight ``s`` is ``s`` identical rows, so the weight
        is not squared) or the cluster meat ``sum_g U_g U_g^T``, ``U_g`` the
        summed scores of cluster ``g``. For clusters the rows are visited in
        group order, so that one partial cluster sum at most is carried
        between blocks.
    groups : ndarray of shape (n_rows,), optional
        Cluster codes (integers); required by, and only for, ``meat="cluster"``.

    Returns
    -------
    InformationSums
    """
    n = X.shape[0]
    K, q = coef.shape
    _check_coef(coef, X, fit_intercept)
    if not 0 <= reference < K:
        raise ValueError(f"reference must be a class code in 0..{K - 1}, got {reference!r}")
    if meat not in (None, "hc", "cluster"):
        raise ValueError(f"meat must be None, 'hc' or 'cluster', got {meat!r}")
    if (meat == "cluster") != (groups is not None):
        raise ValueError("groups are needed by, and only by, meat='cluster'")
    Kr = K - 1
    m = Kr * q
    theta_full = np.asarray(coef, dtype=np.float64) - np.asarray(coef, dtype=np.float64)[reference]
    others = np.array([k for k in range(K) if k != reference])
    position = np.full(K, -1)
    position[others] = np.arange(Kr)

    info = np.zeros((m, m), order="F")
    meat_acc = np.zeros((m, m), order="F") if meat else None
    score = np.zeros((Kr, q))
    totals = np.zeros(K)
    loglik = 0.0

    order = None
    carry: np.ndarray | None = None  # partial score sum of the cluster cut by a block end
    carry_group = -1
    if meat == "cluster":
        order = np.argsort(groups, kind="stable")

    step = _information_rows(n, m)
    xbuf = np.empty((step, q))
    mbuf = np.empty((step, m), order="F")
    for start in range(0, n, step):
        stop = min(n, start + step)
        r = stop - start
        if order is None:
            Xb, index = _row_block(X, start, stop), slice(start, stop)
        else:
            index = order[start:stop]
            Xb = X[index]
        Xt = _dense_rows(Xb, fit_intercept, xbuf)
        yb = y[index]
        sb = np.ones(r) if weights is None else np.asarray(weights[index], dtype=np.float64)
        logP = Xt @ theta_full.T
        logP -= logP.max(axis=1, keepdims=True)
        logP -= np.log(np.exp(logP).sum(axis=1, keepdims=True))
        rows = np.arange(r)
        loglik += float(sb @ logP[rows, yb])
        totals += np.bincount(yb, weights=sb, minlength=K)
        P = np.exp(logP[:, others])  # (r, K - 1)
        # residuals e - p of the free classes, weighted
        R = P * -sb[:, None]
        pos = position[yb]
        hit = pos >= 0
        R[rows[hit], pos[hit]] += sb[hit]
        score += R.T @ Xt
        M = mbuf if r == step else np.empty((r, m), order="F")
        info = _add_curvature(info, Xt, P, None if weights is None else sb, M)
        if meat == "hc":
            # u_i = (e_i - p_i) (x) xt_i, weight s_i (not s_i^2): rows sqrt(s_i) u_i
            sq = np.sqrt(sb)
            Ru = R / np.where(sq > 0, sq, 1.0)[:, None]
            for k in range(Kr):
                np.multiply(Xt, Ru[:, k : k + 1], out=M[:, k * q : (k + 1) * q])
            meat_acc = _add_outer(meat_acc, M)
        elif meat == "cluster":
            for k in range(Kr):
                np.multiply(Xt, R[:, k : k + 1], out=M[:, k * q : (k + 1) * q])
            gb = groups[index]
            starts = np.flatnonzero(np.r_[True, gb[1:] != gb[:-1]])
            U = np.add.reduceat(M, starts, axis=0)  # one summed score row per cluster
            if carry is not None:
                if gb[0] == carry_group:
                    U[0] += carry
                else:  # the carried cluster ended with the previous block
                    meat_acc = _add_outer(meat_acc, carry[None, :])
            # the last cluster of the block may continue in the next one
            carry, carry_group = U[-1].copy(), gb[-1]
            if len(U) > 1:
                meat_acc = _add_outer(meat_acc, U[:-1])
    if carry is not None:
        meat_acc = _add_outer(meat_acc, carry[None, :])
    return InformationSums(loglik, score.ravel(), info, meat_acc, totals)


def block_curvature_moments(
    coef: np.ndarray,
    X: Any,
    weights: np.ndarray | None,
    *,
    fit_intercept: bool,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moments of the rows weighted by the diagonal curvature of each class.

    With ``w_ik = s_i p_ik (1 - p_ik)`` (the diagonal of the logit Hessian),
    returns ``sum_i w_ik``, ``sum_i w_ik x_ij`` and ``sum_i w_ik x_ij^2``.
    From them solvers build a preconditioner: the Hessian's diagonal in
    variables where each class's features are centred on their curvature-
    weighted mean (which decouples weights from intercepts).
    Costs about one and a half loss-gradient passes.

    Parameters
    ----------
    coef, X, weights, fit_intercept, workspace
        As in :func:`block_loss_gradient`.

    Returns
    -------
    s0 : ndarray of shape (n_classes,)
    s1, s2 : ndarray of shape (n_classes, n_features)
        float64.
    """
    _check_coef(coef, X, fit_intercept)
    n, p = X.shape
    K = coef.shape[0]
    dt = _compute_dtype(X)
    ws = workspace if workspace is not None and workspace.fits(X, K) else Workspace(X, K)
    W, b = _split(coef, p, fit_intercept, dt)
    XT = ws.transposed(X) if ws is workspace and n <= ws.block_rows else None
    if XT is not None:
        # class-major, one block (see CLASS_MAJOR_MAX_CLASSES): a caller's
        # workspace keeps X^T and X * X across refreshes
        Zt = ws.z.reshape(-1)[: K * n].reshape(K, n)
        np.matmul(W, XT, out=Zt)
        if b is not None:
            Zt += b[:, None]
        softmax_columns_(Zt)
        Zt *= 1 - Zt  # p (1 - p)
        if weights is not None:
            Zt *= weights.astype(dt)
        s0 = Zt.sum(axis=1, dtype=np.float64)
        s1 = np.asarray(Zt @ X, dtype=np.float64)
        s2 = np.asarray(Zt @ ws.squared(X), dtype=np.float64)
        return s0, s1, s2
    s0 = np.zeros(K)
    s1 = np.zeros((K, p))
    s2 = np.zeros((K, p))
    for start in range(0, n, ws.block_rows):
        stop = min(n, start + ws.block_rows)
        Xb = _row_block(X, start, stop)
        Zb = _matmul_xt(Xb, W.T, ws.z[: stop - start])
        if b is not None:
            Zb += b
        # a refresh every few iterations: not worth importing numba for
        softmax_rows_(Zb, load_compiled=False)
        Zb *= 1 - Zb  # p (1 - p)
        if weights is not None:
            Zb *= weights[start:stop, None].astype(dt)
        s0 += Zb.sum(axis=0, dtype=np.float64)
        _add_gt_x(Zb, Xb, ws.gtmp, s1)
        sq = Xb.multiply(Xb).tocsr() if _is_sparse(Xb) else Xb * Xb
        _add_gt_x(Zb, sq, ws.gtmp, s2)
    return s0, s1, s2


def column_moments(X: Any, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted column sums and sums of squares, ``sum_i s_i x_ij`` and ``sum_i s_i x_ij^2``.

    The diagonal of the Hessian at equal probabilities is proportional to
    these; solvers use them as a diagonal preconditioner, which removes the
    bad conditioning that unscaled features (pixels in 0..255 next to an
    intercept column of ones) otherwise cause.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_rows, n_features)
    weights : ndarray of shape (n_rows,) or None

    Returns
    -------
    sums, sq_sums : ndarray of shape (n_features,), float64
    """
    n, p = X.shape
    out = np.zeros(p, dtype=np.float64)
    s1 = np.zeros(p, dtype=np.float64)
    # dense: float64 blocks of 512 KiB, squared in place (one block in cache;
    # little added to a fit's resident set: 2 MiB blocks added 6 MB), summed
    # by BLAS products with ones (MNIST: 3.4 ms, 6.4 ms by sum(axis=0))
    step = SPARSE_BLOCK_ROWS if _is_sparse(X) else (512 * 1024) // max(1, p * 8)
    step = max(1, min(n, step))
    ones = None if _is_sparse(X) or weights is not None else np.ones(step)
    for start in range(0, n, step):
        stop = min(n, start + step)
        Xb = _row_block(X, start, stop)
        if _is_sparse(Xb):
            sq = Xb.multiply(Xb)
            sb = np.ones(stop - start) if weights is None else weights[start:stop]
            out += np.asarray(sq.T @ sb).ravel()
            s1 += np.asarray(Xb.T @ sb).ravel()
        else:
            # a float64 block, not X: bounded memory (a copy even when X is
            # float64: it is squared in place below)
            Xb = np.array(Xb, dtype=np.float64)
            sb = ones[: stop - start] if weights is None else weights[start:stop]
            s1 += sb @ Xb
            Xb *= Xb
            out += sb @ Xb
    return s1, out


def decision_function(coef: np.ndarray, X: Any, *, fit_intercept: bool) -> np.ndarray:
    """Logits ``X W^T + b`` of every row.

    Parameters
    ----------
    coef : ndarray of shape (n_classes, n_features + fit_intercept)
    X : ndarray or CSR matrix of shape (n_rows, n_features), float32 or float64
    fit_intercept : bool

    Returns
    -------
    logits : ndarray of shape (n_rows, n_classes), in the dtype of ``X``
    """
    _check_coef(coef, X, fit_intercept)
    dt = _compute_dtype(X)
    W, b = _split(np.asarray(coef), X.shape[1], fit_intercept, dt)
    Z = X @ W.T
    Z = np.asarray(Z)
    if b is not None:
        Z += b
    return Z
