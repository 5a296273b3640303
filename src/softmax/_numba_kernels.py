"""Compiled row-wise softmax kernels (optional extra ``fast``: numba).

Imported lazily by :mod:`softmax._kernels`; importing this module imports
numba. The NumPy kernels in :mod:`softmax._kernels` compute the same thing and
are always available.

Why a hand-written ``exp``: numba's ``math.exp`` calls the scalar libm
routine, which stops LLVM from vectorising the loop and is several times
slower than NumPy's SIMD ``exp``. The ``exp`` below is branch free (Cody-Waite
range reduction, a Taylor polynomial on ``|r| <= ln(2)/2`` and an exponent
built from bits), so the exp-and-sum pass vectorises; it is accurate to about
1 ulp for the arguments a softmax needs (``x <= 0``), including gradual
underflow to subnormals and 0. Each row is then handled in three passes that
stay in cache: max, exp and sum, scale. Short rows (K <= 64) are transposed
block by block so that those passes run across rows instead.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# No "afn" (np.log must stay exact) and no "nnan"/"ninf" (callers rely on a
# NaN or inf in a row giving a non-finite logsumexp for that row, and on -inf
# entries giving exp = 0). "reassoc" lets LLVM vectorise the sum reductions;
# the one place where reassociation would hurt (the two-step Cody-Waite
# reduction in _exp_neg) uses explicit fma intrinsics, which LLVM keeps.
_FASTMATH = {"reassoc", "nsz", "contract", "arcp"}
# Rows up to this long are processed in transposed blocks (see _rows_short):
# an inner loop of length K would leave most SIMD lanes idle.
_SHORT = 64
_BLOCK = 2048  # elements per block of short rows (16 KiB of float64, in L1)


@intrinsic
def _bits_to_f64(typingctx, x):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _bits_to_f32(typingctx, x):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):
    # a * b + c with one rounding (llvm.fma), opaque to reassociation
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fnty = ir.FunctionType(ty, [ty, ty, ty])
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], fnty)
        return builder.call(fn, args)

    return sig, codegen


def _exp_neg(x):  # pragma: no cover - replaced by the overloads below
    raise NotImplementedError


@overload(_exp_neg, inline="always", jit_options={"fastmath": _FASTMATH})
def _exp_neg_impl(x):
    if x == types.float64:

        def impl(x):
            # exp(x) for x <= 0. Below -1100, exp underflows to 0 anyway;
            # the clamp keeps the integer conversion defined.
            x = max(x, -1100.0)
            n = np.floor(x * 1.4426950408889634 + 0.5)
            # fdlibm's split of ln 2: n * hi is exact for |n| < 2**20
            r = _fma(-n, 6.93147180369123816490e-01, x)
            r = _fma(-n, 1.90821492927058770002e-10, r)
            p = 1.0 / 6227020800.0  # Taylor to r**13: truncation < 5e-18
            p = p * r + 1.0 / 479001600.0
            p = p * r + 1.0 / 39916800.0
            p = p * r + 1.0 / 3628800.0
            p = p * r + 1.0 / 362880.0
            p = p * r + 1.0 / 40320.0
            p = p * r + 1.0 / 5040.0
            p = p * r + 1.0 / 720.0
            p = p * r + 1.0 / 120.0
            p = p * r + 1.0 / 24.0
            p = p * r + 1.0 / 6.0
            p = p * r + 0.5
            p = p * r + 1.0
            p = p * r + 1.0
            ni = np.int64(n)
            # 2**n as two normal factors, so results below 2**-1022 round
            # once to the right subnormal instead of flushing to 0
            n1 = max(ni, -1022)
            n2 = ni - n1
            return p * _bits_to_f64((n1 + 1023) << 52) * _bits_to_f64((n2 + 1023) << 52)

        return impl
    if x == types.float32:

        def impl(x):
            x = max(x, np.float32(-110.0))
            n = np.floor(x * np.float32(1.442695) + np.float32(0.5))
            r = _fma(-n, np.float32(0.693359375), x)
            r = _fma(-n, np.float32(-2.12194440e-4), r)
            p = np.float32(1.0 / 40320.0)  # Taylor to r**8: truncation < 1e-9
            p = p * r + np.float32(1.0 / 5040.0)
            p = p * r + np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            p = p * r + np.float32(1.0)
            ni = np.int32(n)
            n1 = max(ni, np.int32(-126))
            n2 = ni - n1
            return (
                p
                * _bits_to_f32(np.int32((n1 + 127) << 23))
                * _bits_to_f32(np.int32((n2 + 127) << 23))
            )

        return impl
    return None


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_max(xr, acc):
    # Max of a row with 16 independent accumulators: LLVM does not vectorise
    # a float max reduction written as one running max, but it does
    # vectorise this elementwise form (about 3x faster).
    k = xr.shape[0]
    k16 = k - k % 16
    if k16 == 0:
        m = xr[0]
        for j in range(1, k):
            v = xr[j]
            m = v if v > m else m
        return m
    for t in range(16):
        acc[t] = xr[t]
    for j in range(16, k16, 16):
        for t in range(16):
            v = xr[j + t]
            a = acc[t]
            acc[t] = v if v > a else a
    m = acc[0]
    for t in range(1, 16):
        v = acc[t]
        m = v if v > m else m
    for j in range(k16, k):
        v = xr[j]
        m = v if v > m else m
    return m


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_expsum(zr, m, store):
    # sum(exp(zr - m)) in float64 (also for float32 rows); stores
    # exp(zr - m) in zr if asked
    s = 0.0
    if store:
        for j in range(zr.shape[0]):
            e = _exp_neg(zr[j] - m)
            zr[j] = e
            s += e
    else:
        for j in range(zr.shape[0]):
            s += _exp_neg(zr[j] - m)
    return s


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _rows_long(z, log, lse):
    # One row at a time: the row stays in L1/L2 across the three passes.
    # In place on purpose: with separate input and output arrays LLVM must
    # assume they may overlap and falls back to scalar code when they do.
    n, k = z.shape
    acc = np.empty(16, dtype=z.dtype)
    for i in range(n):
        zr = z[i]
        m = _row_max(zr, acc)
        s = _row_expsum(zr, m, not log)
        logs = np.log(s)
        lse[i] = m + logs
        if log:
            shift = m + logs  # one subtraction: z - (m + log s)
            for j in range(k):
                zr[j] = zr[j] - shift
        else:
            inv = 1.0 / s
            for j in range(k):
                zr[j] = zr[j] * inv


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _rows_short(z, log, mx, sm, t, mb):
    # Short rows: a block of rows is transposed into t (k, b) so that the max
    # and exp-sum passes run along the block, vectorised across rows, instead
    # of along rows of length k (a K = 10 inner loop leaves most SIMD lanes
    # idle). Writes the row max to mx and the row sum of exp(z - max) to sm;
    # the logs are left to NumPy's vectorised np.log (a libm call per row
    # would cost as much as the exps). For log=True z becomes z - max.
    n, k = z.shape
    b = t.shape[1]
    for start in range(0, n, b):
        r = min(b, n - start)
        zb = z[start : start + r]
        m = mb  # in the input dtype, so float32 rows use the float32 exp
        s = sm[start : start + r]
        for i in range(r):
            for j in range(k):
                t[j, i] = zb[i, j]
        for i in range(r):
            m[i] = t[0, i]
        for j in range(1, k):
            tj = t[j]
            for i in range(r):
                v = tj[i]
                a = m[i]
                m[i] = v if v > a else a
        for i in range(r):
            s[i] = 0.0
        for j in range(k):
            tj = t[j]
            for i in range(r):
                e = _exp_neg(tj[i] - m[i])
                tj[i] = e
                s[i] += e
        if log:
            for i in range(r):
                mi = m[i]
                for j in range(k):
                    zb[i, j] = zb[i, j] - mi
        else:
            for i in range(r):
                inv = 1.0 / s[i]
                for j in range(k):
                    zb[i, j] = t[j, i] * inv
        for i in range(r):
            mx[start + i] = m[i]


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _sub_rows(z, v):
    # z[i, :] -= v[i]
    n, k = z.shape
    for i in range(n):
        vi = v[i]
        for j in range(k):
            z[i, j] = z[i, j] - vi


def rows_(z: np.ndarray, log: bool) -> np.ndarray:
    """Row-wise (log-)softmax of finite ``z`` (n, k), in place.

    C-contiguous float32/float64, ``k >= 1``. Returns the float64 row
    logsumexp of the original ``z``.
    """
    n, k = z.shape
    lse = np.empty(n, dtype=np.float64)
    if k > _SHORT:
        _rows_long(z, log, lse)
        return lse
    b = max(16, _BLOCK // k)
    sums = np.empty(n, dtype=np.float64)
    _rows_short(z, log, lse, sums, np.empty((k, b), dtype=z.dtype), np.empty(b, dtype=z.dtype))
    logs = np.log(sums, out=sums)
    if log:
        _sub_rows(z, logs)
    lse += logs
    return lse
