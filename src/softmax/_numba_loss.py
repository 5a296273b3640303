"""Fused loss-and-gradient pass over dense rows (optional extra ``fast``: numba).

Imported lazily by :mod:`softmax.linear_loss`, which calls
:func:`loss_grad_range` instead of its BLAS block loop when numba is
installed, ``X`` is a dense C-contiguous float array and the problem is one
where this kernel is measured to be faster (``benchmarks/bench_loss_kernel.py``,
``benchmarks/results/loss_kernel.md``). The BLAS path in
:mod:`softmax.linear_loss` computes the same numbers and is always available.

Why fuse: the BLAS path is two skinny products per block of rows, ``Z = X_b
W^T`` and ``G^T X_b``, each of which streams the block of ``X`` from L3 or
memory; with few classes (``K = 10``) OpenBLAS runs far from its peak on
these shapes. Here the rows are taken 8 at a time. While the 8 rows are in
L1 (the columns are cut into chunks of at most ``_GROUP_BYTES`` when they
would not fit), the kernel computes their logits (8 rows x 2 classes = 16
vector accumulators, 10 loads per 16 FMAs), their softmax and ``G`` in a
transposed ``(n_classes, 8)`` buffer (so the ``exp`` runs across rows, at SIMD
width), and adds ``sum_r g_rk x_r`` to row ``k`` of the block gradient. ``X``
is read from memory once per pass.

Numerics are those of the BLAS path: logits, ``exp`` and ``G`` in the dtype of
``X``; the row sums of ``exp``, the loss and the intercept gradient in
float64; the weight gradient of a block of rows in the dtype of ``X``, added
into a float64 total once per block.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Only _exp_neg (a branch-free exp for x <= 0 that LLVM vectorises; numba's
# math.exp is a scalar libm call) is taken from the softmax kernels module.
from softmax._numba_kernels import _exp_neg

# "reassoc" lets LLVM vectorise the dot-product reductions; no "nnan"/"ninf"
# (a non-finite logit must give a non-finite loss, as on the BLAS path) and no
# "afn" (log stays exact).
_FASTMATH = {"reassoc", "nsz", "contract", "arcp"}
#: Rows per register-blocked group.
_ROWS = 8
#: Bytes of the group's rows per column chunk: they must stay in L1 (32-48 KiB)
#: while the logits of all classes, then all gradient rows, are computed.
_GROUP_BYTES = 32 * 1024


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _logits_group(X, W, b, has_b, i, chunk, z):  # pragma: no cover - compiled
    """``z[k, r] = X[i + r] . W[k] + b[k]`` for the 8 rows ``i .. i + 7``."""
    p = X.shape[1]
    K = W.shape[0]
    # a zero of the compute dtype: a literal 0.0 would make float32
    # accumulators float64 (half the SIMD width)
    zero = np.zeros(1, X.dtype)[0]
    for k in range(K):
        bk = b[k] if has_b else zero
        for r in range(_ROWS):
            z[k, r] = bk
    for j0 in range(0, p, chunk):
        j1 = min(p, j0 + chunk)
        # slices, so that the inner loops index from 0: an index that might be
        # negative (numba wraps those) would keep LLVM from vectorising
        m = j1 - j0
        x0 = X[i, j0:j1]
        x1 = X[i + 1, j0:j1]
        x2 = X[i + 2, j0:j1]
        x3 = X[i + 3, j0:j1]
        x4 = X[i + 4, j0:j1]
        x5 = X[i + 5, j0:j1]
        x6 = X[i + 6, j0:j1]
        x7 = X[i + 7, j0:j1]
        k = 0
        # two classes at a time: 16 accumulators, 8 row loads + 2 weight loads
        while k + 2 <= K:
            wa = W[k, j0:j1]
            wb = W[k + 1, j0:j1]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = zero
            for j in range(m):
                u = wa[j]
                v = wb[j]
                e = x0[j]
                a0 += e * u
                c0 += e * v
                e = x1[j]
                a1 += e * u
                c1 += e * v
                e = x2[j]
                a2 += e * u
                c2 += e * v
                e = x3[j]
                a3 += e * u
                c3 += e * v
                e = x4[j]
                a4 += e * u
                c4 += e * v
                e = x5[j]
                a5 += e * u
                c5 += e * v
                e = x6[j]
                a6 += e * u
                c6 += e * v
                e = x7[j]
                a7 += e * u
                c7 += e * v
            z[k, 0] += a0
            z[k, 1] += a1
            z[k, 2] += a2
            z[k, 3] += a3
            z[k, 4] += a4
            z[k, 5] += a5
            z[k, 6] += a6
            z[k, 7] += a7
            z[k + 1, 0] += c0
            z[k + 1, 1] += c1
            z[k + 1, 2] += c2
            z[k + 1, 3] += c3
            z[k + 1, 4] += c4
            z[k + 1, 5] += c5
            z[k + 1, 6] += c6
            z[k + 1, 7] += c7
            k += 2
        if k < K:
            wa = W[k, j0:j1]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
            for j in range(m):
                u = wa[j]
                a0 += x0[j] * u
                a1 += x1[j] * u
                a2 += x2[j] * u
                a3 += x3[j] * u
                a4 += x4[j] * u
                a5 += x5[j] * u
                a6 += x6[j] * u
                a7 += x7[j] * u
            z[k, 0] += a0
            z[k, 1] += a1
            z[k, 2] += a2
            z[k, 3] += a3
            z[k, 4] += a4
            z[k, 5] += a5
            z[k, 6] += a6
            z[k, 7] += a7


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _add_outer_group(X, i, chunk, z, gtmp):  # pragma: no cover - compiled
    """``gtmp[k] += sum_r z[k, r] * X[i + r]`` for the 8 rows ``i .. i + 7``."""
    p = X.shape[1]
    K = z.shape[0]
    for j0 in range(0, p, chunk):
        j1 = min(p, j0 + chunk)
        # slices, so that the inner loops index from 0: an index that might be
        # negative (numba wraps those) would keep LLVM from vectorising
        m = j1 - j0
        x0 = X[i, j0:j1]
        x1 = X[i + 1, j0:j1]
        x2 = X[i + 2, j0:j1]
        x3 = X[i + 3, j0:j1]
        x4 = X[i + 4, j0:j1]
        x5 = X[i + 5, j0:j1]
        x6 = X[i + 6, j0:j1]
        x7 = X[i + 7, j0:j1]
        k = 0
        # two classes at a time: each of the 8 row loads feeds 2 FMAs
        while k + 2 <= K:
            a0, a1, a2, a3 = z[k, 0], z[k, 1], z[k, 2], z[k, 3]
            a4, a5, a6, a7 = z[k, 4], z[k, 5], z[k, 6], z[k, 7]
            c0, c1, c2, c3 = z[k + 1, 0], z[k + 1, 1], z[k + 1, 2], z[k + 1, 3]
            c4, c5, c6, c7 = z[k + 1, 4], z[k + 1, 5], z[k + 1, 6], z[k + 1, 7]
            ga = gtmp[k, j0:j1]
            gc = gtmp[k + 1, j0:j1]
            for j in range(m):
                e0 = x0[j]
                e1 = x1[j]
                e2 = x2[j]
                e3 = x3[j]
                e4 = x4[j]
                e5 = x5[j]
                e6 = x6[j]
                e7 = x7[j]
                ga[j] += (
                    a0 * e0 + a1 * e1 + a2 * e2 + a3 * e3 + a4 * e4 + a5 * e5 + a6 * e6 + a7 * e7
                )
                gc[j] += (
                    c0 * e0 + c1 * e1 + c2 * e2 + c3 * e3 + c4 * e4 + c5 * e5 + c6 * e6 + c7 * e7
                )
            k += 2
        if k < K:
            a0, a1, a2, a3 = z[k, 0], z[k, 1], z[k, 2], z[k, 3]
            a4, a5, a6, a7 = z[k, 4], z[k, 5], z[k, 6], z[k, 7]
            ga = gtmp[k, j0:j1]
            for j in range(m):
                ga[j] += (
                    a0 * x0[j]
                    + a1 * x1[j]
                    + a2 * x2[j]
                    + a3 * x3[j]
                    + a4 * x4[j]
                    + a5 * x5[j]
                    + a6 * x6[j]
                    + a7 * x7[j]
                )


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _softmax_group(
    z, r0, r1, i, y, sw, has_w, P, keep_p, need_g, gb, scr, scr64, eps
):  # pragma: no cover
    """Turn the logits ``z`` of rows ``i .. i + 7`` into ``G``; return the loss of ``r0:r1``.

    ``z`` is ``(n_classes, 8)``, one column per row, so that every loop below
    runs across the 8 rows at SIMD width (the ``exp`` included). Only rows
    ``i + r0 .. i + r1 - 1`` count: the last group of a block is moved back to
    end at the block's end, so its first rows were counted by the group
    before; the others get weight 0. ``scr`` (dtype of ``z``) and ``scr64``
    (float64) are ``(2, 8)`` and ``(4, 8)`` scratch. ``eps`` is the label
    smoothing: the target is ``(1 - eps) e_y + eps / K``.
    """
    K = z.shape[0]
    m = scr[0]  # row max, then the row sum in the compute dtype
    c = scr[1]  # row weight in the compute dtype
    s = scr64[0]  # row sum of exp, float64 as on the BLAS path
    t = scr64[1]  # m - z_y, float64
    w = scr64[2]  # row weight (0 for padding)
    u = scr64[3]  # with label smoothing: z_y - mean_k z_k, float64
    for r in range(_ROWS):
        m[r] = z[0, r]
        s[r] = 0.0
    for k in range(1, K):
        for r in range(_ROWS):
            m[r] = max(m[r], z[k, r])
    smooth = eps > 0.0
    if smooth:
        # lse - t^T z = (lse - z_y) + eps (z_y - mean_k z_k)
        for r in range(_ROWS):
            u[r] = 0.0
        for k in range(K):
            for r in range(_ROWS):
                u[r] += np.float64(z[k, r])
        for r in range(_ROWS):
            u[r] = eps * (np.float64(z[y[i + r], r]) - u[r] / K) if r0 <= r < r1 else 0.0
    for r in range(_ROWS):
        if r0 <= r < r1:
            t[r] = np.float64(m[r]) - np.float64(z[y[i + r], r])
            w[r] = sw[i + r] if has_w else 1.0
        else:
            t[r] = 0.0
            w[r] = 0.0
    for k in range(K):
        for r in range(_ROWS):
            e = _exp_neg(z[k, r] - m[r])
            z[k, r] = e
            s[r] += e
    loss = 0.0
    for r in range(_ROWS):
        loss += w[r] * (t[r] + math.log(s[r]))
        m[r] = s[r]
        c[r] = w[r]
    if smooth:
        for r in range(_ROWS):
            loss += w[r] * u[r]
    for k in range(K):
        for r in range(_ROWS):
            z[k, r] = z[k, r] / m[r]
    if keep_p:
        for r in range(r0, r1):
            for k in range(K):
                P[i + r, k] = z[k, r]
    if not need_g:
        return loss
    if smooth:
        # the compute dtype's eps / K and 1 - eps (float32 stays float32)
        off = scr[0]
        off[0] = eps / K
        off[1] = 1.0 - eps
        for k in range(K):
            for r in range(_ROWS):
                z[k, r] -= off[0]
        for r in range(r0, r1):
            z[y[i + r], r] -= off[1]
    else:
        for r in range(r0, r1):
            z[y[i + r], r] -= 1
    # G = w (P - onehot); multiplying by a weight of 1 is exact
    for k in range(K):
        acc = 0.0
        for r in range(_ROWS):
            g = z[k, r] * c[r]
            z[k, r] = g
            acc += g
        gb[k] += acc
    return loss


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _loss_grad_kernel(
    X, y, sw, has_w, W, b, has_b, P, keep_p, need_g, lo, hi, step, chunk, gtmp, gW, gb, eps
):  # pragma: no cover - compiled
    """Loss of rows ``lo:hi``; adds their gradient into ``gW``, ``gb`` (float64)."""
    p = X.shape[1]
    K = W.shape[0]
    dt = X.dtype
    z = np.empty((K, _ROWS), dt)
    scr = np.empty((2, _ROWS), dt)
    scr64 = np.empty((4, _ROWS))
    loss = 0.0
    for start in range(lo, hi, step):
        stop = min(hi, start + step)
        if need_g:
            gtmp[:, :] = 0
        i = start
        while i < stop:
            # groups of 8 rows of X (it has at least 8); a last group of fewer
            # rows is moved back to end at the block's end, the rows outside
            # i:stop masked out
            g = max(0, min(i, stop - _ROWS))
            _logits_group(X, W, b, has_b, g, chunk, z)
            r1 = min(_ROWS, stop - g)
            loss += _softmax_group(
                z, i - g, r1, g, y, sw, has_w, P, keep_p, need_g, gb, scr, scr64, eps
            )
            if need_g:
                _add_outer_group(X, g, chunk, z, gtmp)
            i = g + _ROWS
        if need_g:
            # the block's gradient, summed in the compute dtype, joins the
            # float64 total (as the BLAS path adds each block's product)
            for k in range(K):
                for j in range(p):
                    gW[k, j] += gtmp[k, j]
    return loss


def _chunk(n_features: int, itemsize: int) -> int:
    """Columns per chunk: 8 rows of a chunk fit in ``_GROUP_BYTES``; equal chunks."""
    cap = max(16, _GROUP_BYTES // (_ROWS * itemsize))
    n_chunks = -(-n_features // cap)
    per = -(-n_features // max(1, n_chunks))
    return max(1, -(-per // 16) * 16)  # whole cache lines of float32


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def loss_grad_range(
    W: np.ndarray,
    b: np.ndarray | None,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    need_gradient: bool,
    gtmp: np.ndarray,
    proba_out: np.ndarray | None,
    lo: int,
    hi: int,
    step: int,
    *,
    label_smoothing: float = 0.0,
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Loss, weight gradient and intercept gradient of rows ``lo:hi`` of dense ``X``.

    The fused counterpart of ``softmax.linear_loss._loss_grad_range`` (same
    arguments and results, to rounding).

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
        C-contiguous, in the dtype of ``X``.
    b : ndarray of shape (n_classes,) or None
        Intercepts in the dtype of ``X``; None without intercept.
    X : ndarray of shape (n_rows, n_features)
        C-contiguous float32 or float64 rows.
    y : ndarray of shape (n_rows,)
        Integer label codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_rows,) or None
        Row weights; None means all ones.
    need_gradient : bool
        False computes the loss (and ``proba_out``) only.
    gtmp : ndarray of shape (n_classes, n_features)
        Scratch in the dtype of ``X`` (one per thread): a block's gradient.
    proba_out : ndarray of shape (n_rows, n_classes) or None
        When given, rows ``lo:hi`` receive the probabilities.
    lo, hi : int
        The rows to process.
    step : int
        Rows per block: the weight gradient is summed in the dtype of ``X``
        within a block and in float64 across blocks.
    label_smoothing : float in [0, 1), default 0.0
        The target is ``(1 - eps) onehot(y) + eps / n_classes``.

    Returns
    -------
    loss : float
    gW : ndarray of shape (n_classes, n_features), float64, or None
    gb : ndarray of shape (n_classes,), float64, or None
    """
    K, p = W.shape
    dt = np.dtype(X.dtype)
    if dt not in (np.float32, np.float64) or X.ndim != 2 or not X.flags.c_contiguous:
        raise TypeError(f"X must be a C-contiguous 2-D float32/float64 array; got {dt}")
    if X.shape[1] != p or gtmp.shape != (K, p) or gtmp.dtype != dt:
        raise ValueError(f"W {W.shape} and gtmp {gtmp.shape} must be (n_classes, {X.shape[1]})")
    y = np.ascontiguousarray(y, dtype=np.intp)
    if hi > lo and (y[lo:hi].min() < 0 or y[lo:hi].max() >= K):
        # the kernel indexes with the labels: never let one run out of bounds
        raise ValueError(f"labels must be integer codes in 0 .. {K - 1}")
    gW = np.zeros((K, p), dtype=np.float64)
    gb = np.zeros(K, dtype=np.float64)
    has_w = weights is not None
    sw = np.ascontiguousarray(weights, dtype=np.float64) if has_w else np.zeros(1)
    has_b = b is not None
    bb = np.ascontiguousarray(b, dtype=dt) if has_b else np.zeros(K, dtype=dt)
    keep_p = proba_out is not None
    P = proba_out if keep_p else np.zeros((1, K), dtype=dt)
    if keep_p and (P.shape != (X.shape[0], K) or P.dtype != dt or not P.flags.c_contiguous):
        raise ValueError(f"proba_out must be a C-contiguous ({X.shape[0]}, {K}) {dt} array")
    # Read-only views of the inputs: numba compiles one specialisation per
    # array type, and a caller's read-only X (a memory map) would otherwise
    # cost a second multi-second compile.
    X, y, sw, Wc, bb = (_readonly(a) for a in (X, y, sw, np.ascontiguousarray(W, dtype=dt), bb))
    n = X.shape[0]
    if n < _ROWS and hi > lo:
        # fewer rows than a group: pad them at the front with zero rows of weight 0
        shift = _ROWS - n
        Xp = np.zeros((_ROWS, p), dtype=dt)
        Xp[shift:] = X
        yp = np.zeros(_ROWS, dtype=np.intp)
        yp[shift:] = y
        Pp = np.zeros((_ROWS, K), dtype=dt)
        swp = np.zeros(_ROWS)
        if has_w:
            swp[shift:] = sw
        loss, gW_, gb_ = loss_grad_range(
            W,
            b,
            Xp,
            yp,
            swp if has_w else None,
            need_gradient,
            gtmp,
            Pp if keep_p else None,
            lo + shift,
            hi + shift,
            step,
            label_smoothing=label_smoothing,
        )
        if keep_p:
            proba_out[lo:hi] = Pp[lo + shift : hi + shift]
        return loss, gW_, gb_
    loss = _loss_grad_kernel(
        X,
        y,
        sw,
        has_w,
        Wc,
        bb,
        has_b,
        P,
        keep_p,
        bool(need_gradient),
        lo,
        hi,
        max(1, step),
        _chunk(p, dt.itemsize),
        gtmp,
        gW,
        gb,
        float(label_smoothing),
    )
    if not need_gradient:
        return float(loss), None, None
    return float(loss), gW, gb if has_b else None
