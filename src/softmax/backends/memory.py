"""Rows held in memory: a NumPy array or a SciPy CSR matrix.

The estimator validates ``X`` (finite, float32/float64, C-contiguous or CSR),
encodes the labels and folds class weights into the row weights before it
builds an :class:`InMemoryData`; this class only computes. It keeps one set of
block buffers (and, for Hessian products, one ``(n_samples, n_classes)``
probability buffer) for the whole fit, so a solver iteration allocates
nothing of the size of ``X``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from softmax.backends._base import BLOCK_SUMS, Capability, RowData, check_batch_size
from softmax.linear_loss import (
    Workspace,
    block_curvature_moments,
    block_hessian,
    block_hessp,
    block_information,
    block_loss_gradient,
    column_moments,
    decision_function,
    mirror_upper,
)
from softmax.losses import check_label_smoothing, softmax_rows_

__all__ = ["COVARIANCE_MAX_FEATURES", "N_THREADS", "THREADED_WORK", "InMemoryData"]

#: Widest dense X for which :meth:`InMemoryData.feature_covariance` answers
#: (the matrix is ``n_features ** 2`` float64 and its eigendecomposition
#: ``n_features ** 3`` flops).
COVARIANCE_MAX_FEATURES = 2048
#: Work spent on the covariance, in loss-gradient passes (``4 n K p`` flops
#: each): rows beyond ``COVARIANCE_PASSES * 4 n K / p`` are subsampled. ``X^T X``
#: runs near BLAS peak while a pass is memory-bound: on MNIST (p = 784, K = 10)
#: all rows (20 passes of flops) took 8 passes of time; a 1/5 subsample
#: raised the L-BFGS iterations at C = 100 from 331 to 419.
COVARIANCE_PASSES = 20
#: ...but never fewer than this many rows per feature.
COVARIANCE_MIN_ROWS = 2
#: Rows per block when forming ``X^T X`` (a block of float64 rows of 784
#: features is 3 MiB: big enough for BLAS, small next to X).
_COV_BLOCK_ROWS = 512

#: Loss passes run on a C-contiguous copy of X's columns that are non-zero in
#: some (weighted) row when at least this fraction of the columns is zero in
#: every row (they add nothing to a logit or to the data gradient) and the
#: copy is at most ``COMPACT_COPY_BYTES`` (it adds to the fit's resident set,
#: which docs/performance.md keeps below 1.5x X). MNIST: 117 of 784 pixels,
#: a 21 MB copy made in about one pass's time; each pass 10% faster.
COMPACT_MIN_ZERO_FRACTION = 0.1
#: See ``COMPACT_MIN_ZERO_FRACTION``; below ``COMPACT_MIN_BYTES`` of X the
#: column-moments pass that finds the zero columns is not repaid.
COMPACT_COPY_BYTES = 32 * 1024 * 1024
COMPACT_MIN_BYTES = 1024 * 1024

#: Rows from which :meth:`InMemoryData.class_curvature` estimates its ``K x K``
#: mean (an even stride of rows when there are more).
CURVATURE_ROWS = 2048

#: Python threads splitting each loss-gradient pass into row ranges (each with
#: its own block buffers and single-threaded BLAS, or the nogil numba pass);
#: the partial sums are added in a fixed order. None (default) chooses: the
#: ``SOFTMAX_NUM_THREADS`` environment variable if set, else the usable cores
#: (at most 4), for passes of at least THREADED_WORK multiply-adds; one
#: thread below. Measured on MNIST (8,000 x 784, float32) on an idle 2-core
#: machine: 0.62 -> 0.50 s to a 1e-6 gap with 2 threads; on a machine whose
#: cores other jobs hold, the second thread gains nothing (docs/solvers.md).
#: Set 1 to keep fits on one core.
N_THREADS: int | None = None
#: Multiply-adds per pass (n_samples * n_features * n_classes) from which the
#: automatic setting (N_THREADS = None) uses more than one thread.
THREADED_WORK = 20_000_000
#: Most row threads the automatic setting uses.
MAX_AUTO_THREADS = 4


def _usable_cores() -> int:
    env = os.environ.get("SOFTMAX_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(
                f"SOFTMAX_NUM_THREADS must be a positive integer, got {env!r}"
            ) from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_THREADS))


def _n_threads(X: Any, n_classes: int, override: int | None = None) -> int:
    if override is not None:
        return max(1, int(override))
    if N_THREADS is not None:
        return max(1, int(N_THREADS))
    work = X.shape[0] * max(1, X.shape[1]) * max(1, n_classes)
    return _usable_cores() if work >= THREADED_WORK else 1


def _aligned_rows(n: int, m: int, dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous ``(n, m')`` array, ``m' >= m`` whole 64-byte rows.

    Every row then starts on a cache line: the fused pass reads rows with
    32-byte vector loads, which cost more when they straddle lines
    (MNIST's 667 varying pixels, float32: 4.8 ms a pass at 667 columns, 4.3
    ms at 672 on 64-byte boundaries, 4.7 ms at 672 on 16-byte ones, which
    is how NumPy aligns large arrays).
    """
    dtype = np.dtype(dtype)
    per = 64 // dtype.itemsize
    width = -(-m // per) * per
    buf = np.empty(n * width * dtype.itemsize + 64, dtype=np.uint8)
    skip = -buf.ctypes.data % 64
    return buf[skip : skip + n * width * dtype.itemsize].view(dtype).reshape(n, width)


class InMemoryData(RowData):
    """Validated in-memory rows answering the :class:`RowData` questions.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR matrix of shape (n_samples, n_features)
        float32 or float64, finite, C-contiguous when dense. Not copied: the
        caller must not modify it during the fit.
    y_codes : ndarray of shape (n_samples,)
        Integer label codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_samples,) or None
        Row weights ``s_i`` (sample weight times class weight); None means
        all ones.
    classes : ndarray of shape (n_classes,)
        The original labels (``classes[k]`` is code ``k``).
    fit_intercept : bool
        Whether ``coef`` carries an intercept column.
    label_smoothing : float in [0, 1), default 0.0
        Smoothed targets ``(1 - eps) onehot(y) + eps / n_classes`` in the
        data term (see :func:`softmax.losses.multinomial_residuals_`).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> data = InMemoryData(X, np.array([0, 1, 1]), None, np.array(["a", "b"]),
    ...                     fit_intercept=True)
    >>> loss, grad = data.loss_gradient(np.zeros(data.coef_shape))
    >>> bool(round(loss / 3, 6) == round(np.log(2), 6)), data.n_passes
    (True, 1)
    """

    #: Row threads per pass; None follows the module's N_THREADS rule.
    row_threads: int | None = None
    #: Whether loss passes may run on a copy of the non-zero columns (see
    #: ``COMPACT_MIN_ZERO_FRACTION``).
    compact_columns: bool = True

    def __init__(
        self,
        X: Any,
        y_codes: np.ndarray,
        weights: np.ndarray | None,
        classes: np.ndarray,
        *,
        fit_intercept: bool,
        label_smoothing: float = 0.0,
    ) -> None:
        self.label_smoothing = check_label_smoothing(label_smoothing)
        if sp.issparse(X):
            if X.format != "csr":
                raise TypeError(f"sparse X must be CSR, got {X.format}; use X.tocsr()")
        elif not isinstance(X, np.ndarray) or X.ndim != 2:
            raise TypeError("X must be a 2-D numpy array or a scipy.sparse CSR matrix")
        elif not X.flags.c_contiguous:
            raise ValueError("dense X must be C-contiguous; use np.ascontiguousarray(X)")
        if np.dtype(X.dtype) not in (np.float32, np.float64):
            raise TypeError(f"X must be float32 or float64, got {X.dtype}")
        n = X.shape[0]
        y_codes = np.asarray(y_codes)
        if y_codes.shape != (n,):
            raise ValueError(f"y_codes has shape {y_codes.shape}; expected ({n},)")
        classes = np.asarray(classes)
        if n and (y_codes.min() < 0 or y_codes.max() >= len(classes)):
            raise ValueError(f"y_codes must lie in 0..{len(classes) - 1}")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (n,):
                raise ValueError(f"weights has shape {weights.shape}; expected ({n},)")
            if np.all(weights == 1.0):
                # unit weights (no sample or class weights) take the unweighted
                # kernels: the feature covariance as a rank-k update, half the
                # flops of the weighted product (MNIST: 104 -> 66 ms)
                weights = None
        self.X = X
        self.y = y_codes.astype(np.intp, copy=False)  # fancy indexing wants intp
        self.weights = weights
        self.classes = classes
        self.n_samples = n
        self.n_features = X.shape[1]
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype(X.dtype)
        self.weight_sum = float(n if weights is None else weights.sum())
        self.n_passes = 0
        self.is_sparse = bool(sp.issparse(X))
        caps = BLOCK_SUMS | {Capability.CLASS_CURVATURE}
        if not self.is_sparse and 0 < self.n_features <= COVARIANCE_MAX_FEATURES:
            caps |= {Capability.FEATURE_COVARIANCE, Capability.SUBSPACE_CURVATURE}
        self.capabilities = caps
        self._ws: Workspace | None = None
        # (columns kept, their aligned copy, its workspace) or None: _compact()
        self._compact_rows: tuple[np.ndarray, np.ndarray, Workspace] | None = None
        self._compact_checked = False
        self._moments: tuple[np.ndarray, np.ndarray] | None = None
        self._projected: tuple[np.ndarray, np.ndarray] | None = None  # (V, rows @ V)

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of each feature and of its square.

        :attr:`Capability.FEATURE_MOMENTS`: solvers precondition with it (see
        ``docs/solvers.md``). Computed once (one pass over the rows, not
        counted in ``n_passes``) and cached.

        Returns
        -------
        mean, sq_mean : ndarray of shape (n_features,), float64
            ``sum_i s_i x_ij / sum_i s_i`` and ``sum_i s_i x_ij^2 / sum_i s_i``.
        """
        if self._moments is None:
            s1, s2 = column_moments(self.X, self.weights)
            w = max(self.weight_sum, 1e-300)
            self._moments = (s1 / w, s2 / w)
        return self._moments

    def feature_covariance(self, passes: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean and centred covariance of the features.

        :attr:`Capability.FEATURE_COVARIANCE`, declared for dense X of at most
        ``COVARIANCE_MAX_FEATURES`` features (solvers keep the diagonal
        preconditioner otherwise): L-BFGS builds a Kronecker-factored
        preconditioner from it (see ``docs/solvers.md``).
        Computed at each call (callers keep what they need: a ``p x p``
        matrix is a large part of a fit's memory when there are few rows) in
        row blocks, in X's dtype (not counted in ``n_passes``; a
        preconditioner needs no more digits); when forming it from every row
        would cost more than ``passes`` passes (default
        ``COVARIANCE_PASSES``), from an even stride of rows (a preconditioner
        needs its shape, not its digits).

        Parameters
        ----------
        passes : float, optional
            The work budget in loss-gradient passes (``4 n K p`` flops each).

        Returns
        -------
        mean : ndarray of shape (n_features,), float64
            ``sum_i s_i x_i / sum_i s_i``.
        cov : ndarray of shape (n_features, n_features), X's dtype
            ``sum_i s_i (x_i - mean)(x_i - mean)^T / sum_i s_i`` (over the
            rows used).
        """
        if Capability.FEATURE_COVARIANCE not in self.capabilities:
            raise self._missing(Capability.FEATURE_COVARIANCE)
        X = self.X
        n, p = X.shape
        passes = COVARIANCE_PASSES if passes is None else passes
        budget = int(passes * 4 * max(1, self.n_classes) * n // p)
        stride = max(1, -(-n // max(budget, COVARIANCE_MIN_ROWS * p, 1)))
        # rows start::stride of each block of _COV_BLOCK_ROWS used rows, by
        # slices: no index or weight arrays of n entries
        span = _COV_BLOCK_ROWS * stride
        total = -(-n // stride) if self.weights is None else self.weights[::stride].sum()
        mean, sq = self.feature_moments()
        # columns that are zero in every (weighted) row have zero rows and
        # columns in cov: left out of the product (MNIST: 117 of 784 pixels,
        # 28% of its flops)
        cols = np.flatnonzero(sq > 0)
        some = cols.size < p
        shift = mean[cols].astype(X.dtype)  # centre blocks first: no cancellation
        # BLAS syrk adds each block's X_b^T X_b into one triangle of cov in
        # place: no p x p temporary per block
        from scipy.linalg.blas import get_blas_funcs

        syrk = get_blas_funcs("syrk", dtype=X.dtype)
        cov = np.zeros((cols.size, cols.size), dtype=X.dtype, order="F")
        # the loss passes' copy of the non-zero columns (same columns: both
        # from feature_moments) spares the gather; the values are the same
        compact = self._compact() if some else None
        for start in range(0, n, span):
            if compact is not None:
                Xb = compact[1][start : start + span : stride, : cols.size] - shift
            else:
                Xb = X[start : start + span : stride]
                Xb = (Xb[:, cols] if some else Xb) - shift
            if self.weights is not None:  # weights >= 0: rows scaled by sqrt(s_i)
                w = self.weights[start : start + span : stride, None]
                Xb *= np.sqrt(w).astype(X.dtype)
            # Xb.T is Fortran-ordered: no copy; C = A A^T with A = Xb^T
            cov = syrk(1.0, Xb.T, beta=1.0, c=cov, trans=0, lower=0, overwrite_c=1)
        mirror_upper(cov)
        cov /= max(float(total), 1e-300)
        if some:
            full = np.zeros((p, p), dtype=X.dtype)
            full[np.ix_(cols, cols)] = cov
            cov = full
        return mean, cov

    def class_curvature(self, coef: np.ndarray) -> np.ndarray:
        """Mean logit Hessian ``sum_i s_i (diag(p_i) - p_i p_i^T) / sum_i s_i``.

        :attr:`Capability.CLASS_CURVATURE` (the class factor of the Kronecker
        preconditioner). A ``K x K`` mean needs few rows: from
        more than ``2 * CURVATURE_ROWS`` rows it is taken over an even
        stride of them (not counted as a pass); otherwise over all rows,
        counted as one pass (it is half of one).

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)

        Returns
        -------
        A : ndarray of shape (n_classes, n_classes), float64
        """
        n = self.n_samples
        stride = max(1, n // CURVATURE_ROWS)
        if stride == 1:
            self.n_passes += 1
        K = self.n_classes
        A = np.zeros((K, K))
        step = max(256, (1 << 19) // max(1, self.n_features * self.dtype.itemsize))
        total = 0.0
        for start in range(0, n, step * stride):
            stop = min(n, start + step * stride)
            Xb = self.X[start:stop:stride]
            P = decision_function(coef, Xb, fit_intercept=self.fit_intercept)
            softmax_rows_(P, load_compiled=False)  # one-off: see softmax_rows_
            P = P.astype(np.float64, copy=False)
            if self.weights is None:
                sP = P
                total += P.shape[0]
            else:
                s = self.weights[start:stop:stride]
                sP = P * s[:, None]
                total += float(s.sum())
            A[np.diag_indices(K)] += sP.sum(axis=0)
            A -= sP.T @ P
        A /= max(total, 1e-300)
        return A

    def subspace_curvature(
        self, coef: np.ndarray, V: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each class's curvature in the feature subspace of ``V`` (see :class:`RowData`).

        :attr:`Capability.SUBSPACE_CURVATURE` (dense rows, with
        ``feature_covariance``). Over the even stride of rows that
        :meth:`class_curvature` uses (all rows, counted as one pass, when
        there are at most ``2 * CURVATURE_ROWS``). The projected rows
        (``m x r``, float32) are kept while the same ``V`` comes back: a
        preconditioner refresh then costs the logits of the ``m`` rows and
        ``K`` products of ``r x m x r``, in float32 (a preconditioner needs
        the blocks' shape, not their last digits; half the time of float64:
        1.7 against 3.6 ms for 10 classes of 1,437 x 65 rows).
        """
        if Capability.SUBSPACE_CURVATURE not in self.capabilities:
            raise self._missing(Capability.SUBSPACE_CURVATURE)
        n = self.n_samples
        stride = max(1, n // CURVATURE_ROWS)
        if stride == 1:
            self.n_passes += 1
        Xs = self.X[::stride]
        m, step = Xs.shape[0], _COV_BLOCK_ROWS
        # row blocks: the centred (and, when strided, gathered) rows are
        # copies, bounded by a block rather than m x p
        if self._projected is None or self._projected[0] is not V:
            r = V.shape[1]
            Vx = V.astype(Xs.dtype, copy=False)
            shift = self.feature_moments()[0].astype(Xs.dtype) if self.fit_intercept else None
            Z = np.empty((m, r + int(self.fit_intercept)), dtype=Xs.dtype)
            for start in range(0, m, step):
                Xb = Xs[start : start + step]
                Z[start : start + step, :r] = (Xb if shift is None else Xb - shift) @ Vx
            if self.fit_intercept:
                Z[:, r] = 1
            self._projected = (V, Z.astype(np.float32, copy=False))
        Z = self._projected[1]
        P = np.empty((m, self.n_classes), dtype=Xs.dtype)
        for start in range(0, m, step):
            P[start : start + step] = decision_function(
                coef, Xs[start : start + step], fit_intercept=self.fit_intercept
            )
        softmax_rows_(P, load_compiled=False)  # one-off: see softmax_rows_
        P = P.astype(np.float64, copy=False)
        W = P * (1.0 - P)
        if self.weights is not None:
            W *= self.weights[::stride, None]
        total = Xs.shape[0] if self.weights is None else self.weights[::stride].sum()
        total = max(float(total), 1e-300)
        W /= total
        K, r = P.shape[1], Z.shape[1]
        blocks = np.empty((K, r, r))
        from scipy.linalg.blas import get_blas_funcs

        # each block is A A^T with A = (Z sqrt(w_k))^T (F-ordered: no copy):
        # BLAS syrk forms one triangle, half the flops of a product
        syrk = get_blas_funcs("syrk", dtype=Z.dtype)
        root = np.sqrt(W).astype(Z.dtype)
        upper = np.triu_indices(r, 1)
        for k in range(K):
            Bk = syrk(1.0, (Z * root[:, k : k + 1]).T, trans=0, lower=0)
            Bk[upper[1], upper[0]] = Bk[upper]
            blocks[k] = Bk
        a = W.sum(axis=0)
        # Kish's effective number of rows behind each class's block; the
        # noise against the blocks over every row shrinks with the fraction
        # sampled (finite population correction): none when every row is used
        sq = np.einsum("ik,ik->k", W, W)
        rows = np.divide(a * a, sq, out=np.zeros(K), where=sq > 0)
        rows = rows / (1.0 - Xs.shape[0] / n) if stride > 1 else np.full(K, np.inf)
        return blocks, a, rows

    def n_threads(self) -> int:
        """Row threads of this data's passes (see :data:`N_THREADS`)."""
        return _n_threads(self.X, self.n_classes, self.row_threads)

    def _workspace(self, keep_proba: bool = False) -> Workspace:
        if self._ws is None or (keep_proba and self._ws.proba is None):
            self._ws = Workspace(
                self.X,
                self.n_classes,
                keep_proba=keep_proba,
                n_threads=self.n_threads(),
            )
        return self._ws

    def curvature_moments(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curvature-weighted row moments at ``coef`` (:attr:`Capability.CURVATURE_MOMENTS`).

        See :func:`softmax.linear_loss.block_curvature_moments`; solvers use
        them to refresh their preconditioner. Counts as one pass.
        """
        self.n_passes += 1
        return block_curvature_moments(
            coef,
            self.X,
            self.weights,
            fit_intercept=self.fit_intercept,
            workspace=self._workspace(),
        )

    def _compact(self) -> tuple[np.ndarray, np.ndarray, Workspace] | None:
        """Columns of X non-zero in some weighted row, their copy and its workspace.

        The copy (see :func:`_aligned_rows`) has zero columns after the kept
        ones, up to whole 64-byte rows.

        None unless dense X of at least ``COMPACT_MIN_BYTES`` has at least
        ``COMPACT_MIN_ZERO_FRACTION`` of its columns zero in every row of
        positive weight and the copy fits ``COMPACT_COPY_BYTES``. Decided once
        per data object, from the cached :meth:`feature_moments` (the
        preconditioners need them anyway), so a fit's result does not depend
        on what ran before it.
        """
        if self._compact_checked:
            return self._compact_rows
        self._compact_checked = True
        X = self.X
        if (
            not self.compact_columns
            or self.is_sparse
            or X.nbytes < COMPACT_MIN_BYTES
            or self.n_features < 2
        ):
            return None
        cols = np.flatnonzero(self.feature_moments()[1] > 0)
        zero = self.n_features - cols.size
        if zero < COMPACT_MIN_ZERO_FRACTION * self.n_features or cols.size == 0:
            return None
        if X.shape[0] * cols.size * X.dtype.itemsize > COMPACT_COPY_BYTES:
            return None
        Xc = _aligned_rows(X.shape[0], cols.size, X.dtype)
        m = cols.size
        Xc[:, m:] = 0  # padding: zero columns with zero coefficients
        # in row blocks: a gather of whole X runs far slower than of blocks
        # that stay in cache
        step = max(1, (256 * 1024) // max(1, self.n_features * X.dtype.itemsize))
        for start in range(0, X.shape[0], step):
            Xc[start : start + step, :m] = X[start : start + step, cols]
        ws = Workspace(Xc, self.n_classes, n_threads=self.n_threads())
        self._compact_rows = (cols, Xc, ws)
        return self._compact_rows

    def _loss_pass(self, coef: np.ndarray, need_gradient: bool) -> tuple[float, Any]:
        self.n_passes += 1
        compact = self._compact()
        if compact is not None:
            # a zero column adds nothing to a logit, and its data gradient is
            # zero: the pass runs on the other columns
            cols, Xc, ws = compact
            m, width, p = cols.size, Xc.shape[1], self.n_features
            coef_c = np.zeros((coef.shape[0], width + self.fit_intercept))
            coef_c[:, :m] = coef[:, cols]
            if self.fit_intercept:
                coef_c[:, width] = coef[:, p]
            loss, grad_c = block_loss_gradient(
                coef_c,
                Xc,
                self.y,
                self.weights,
                fit_intercept=self.fit_intercept,
                need_gradient=need_gradient,
                workspace=ws,
                label_smoothing=self.label_smoothing,
            )
            if grad_c is None:
                return loss, None
            grad = np.zeros((coef.shape[0], coef.shape[1]), dtype=grad_c.dtype)
            grad[:, cols] = grad_c[:, :m]
            if self.fit_intercept:
                grad[:, p] = grad_c[:, width]
            return loss, grad
        return block_loss_gradient(
            coef,
            self.X,
            self.y,
            self.weights,
            fit_intercept=self.fit_intercept,
            need_gradient=need_gradient,
            workspace=self._workspace(),
            label_smoothing=self.label_smoothing,
        )

    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        return self._loss_pass(coef, True)

    def loss(self, coef: np.ndarray) -> float:
        return self._loss_pass(coef, False)[0]

    def gradient_hessian_product(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        self.n_passes += 1
        loss, grad, hessp = block_hessp(
            coef,
            self.X,
            self.y,
            self.weights,
            fit_intercept=self.fit_intercept,
            workspace=self._workspace(keep_proba=True),
            label_smoothing=self.label_smoothing,
        )

        def counted_hessp(V: np.ndarray) -> np.ndarray:
            self.n_passes += 1
            return hessp(V)

        return loss, grad, counted_hessp

    def hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        self.n_passes += 1
        return block_hessian(
            coef,
            self.X,
            self.y,
            self.weights,
            fit_intercept=self.fit_intercept,
            workspace=self._workspace(),
            label_smoothing=self.label_smoothing,
        )

    def information(
        self,
        coef: np.ndarray,
        reference: int,
        *,
        meat: str | None = None,
        groups: np.ndarray | None = None,
    ) -> Any:
        """Log-likelihood, score, information and meat in the reference form (one pass).

        :attr:`Capability.INFORMATION`: see
        :func:`softmax.linear_loss.block_information`. The only backend that
        takes ``groups`` (the cluster meat visits the rows in group order).
        """
        self._check_unsmoothed("the information")
        coef = np.asarray(coef, dtype=np.float64)
        if coef.shape != self.coef_shape:
            raise ValueError(f"coef has shape {coef.shape}; expected {self.coef_shape}")
        if groups is not None and np.shape(groups) != (self.n_samples,):
            raise ValueError(f"groups has shape {np.shape(groups)}; expected ({self.n_samples},)")
        return block_information(
            coef,
            self.X,
            self.y,
            self.weights,
            reference=reference,
            fit_intercept=self.fit_intercept,
            meat=meat,
            groups=groups,
        )

    def iter_minibatches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """One epoch of minibatches of shuffled rows (see :meth:`RowData.iter_minibatches`).

        Batches of ``batch_size`` rows, the last one shorter.
        """
        check_batch_size(batch_size)
        self.n_passes += 1
        order = rng.permutation(self.n_samples)
        for start in range(0, self.n_samples, batch_size):
            idx = np.sort(order[start : start + batch_size])  # sorted: cache-friendly gather
            w = np.ones(len(idx), dtype=np.float64) if self.weights is None else self.weights[idx]
            yield self.X[idx], self.y[idx], w
