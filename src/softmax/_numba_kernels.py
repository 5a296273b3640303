"""Compiled row-wise softmax kernels (optional extra ``fast``: numba).

Imported lazily by :mod:`softmax._kernels`; importing this module imports
numba. The NumPy kernels in :mod:`softmax._kernels` compute the same thing and
are always available.

Why a hand-written ``exp``: numba's ``math.exp`` calls the scalar libm
routine, which stops LLVM from vectorising the loop and is several times
slower than NumPy's SIMD ``exp``. The ``exp`` below is branch free (Cody-Waite
range reduction, a polynomial on ``|r| <= ln(2)/2``: Taylor to ``r**13`` for
float64, Cephes' degree-7 minimax for float32, and ``2**n`` built from bits),
so LLVM vectorises it at full AVX-512 width (16 float32 / 8 float64 lanes).
It is accurate to 1.14 ulp (float64) and 0.97 ulp (float32) at worst over
the arguments a softmax needs (``x <= 0``), including gradual underflow to
subnormals and 0 (tests/test_functions_exp.py).

Long rows (K > 64): one row at a time, three passes that stay in L1/L2 (max,
exp and sum, scale). Short rows: blocks of rows are transposed so that those
passes run across rows instead. ``rows_into_`` reads ``x`` and writes
``out`` in the same pass, without the copy an in-place kernel needs.
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
# Rows up to this long are processed in transposed blocks (see _short_into):
# an inner loop of length K would leave most SIMD lanes idle.
_SHORT = 64
_BLOCK_ROWS = 256  # rows per transposed block of short rows (<= 128 KiB, in L2)
#: Elements per chunk of short rows for the out-of-place log-softmax (L2-sized).
_LOG_CHUNK = 1 << 16


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
            # Cephes' expf minimax polynomial: exp(r) = 1 + r + r**2 P(r),
            # relative error below 1 ulp (float32) on |r| <= ln(2)/2
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * (r * r) + r + np.float32(1.0)
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


def _zero(x):  # pragma: no cover - replaced by the overload below
    raise NotImplementedError


@overload(_zero, inline="always")
def _zero_impl(x):
    # 0 in the dtype of the array x (the partial sums below stay in that dtype)
    if x.dtype == types.float32:
        return lambda x: np.float32(0.0)
    return lambda x: 0.0


# Partial sums of exp run in the row's dtype over chunks of this many terms
# (a float32 vector accumulator is 16 lanes wide with AVX-512, a float64 one
# 8: summing float32 terms in float64 halves the width of the whole loop;
# measured 0.47 against 0.61 ns per float32 entry in cache); the chunk sums
# are added in float64. Each SIMD lane sums at most _CHUNK / 16 = 8 terms in
# (0, 1], then 4 levels of pairwise adds, so the float32 row sum is within
# ~12 ulp worst case (~1 ulp typically) whatever the row length. 128 is as
# fast as 256; 64 measured slower.
_CHUNK = 128


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_expsum(zr, m, store):
    # sum(exp(zr - m)) (float64); stores exp(zr - m) in zr if asked
    k = zr.shape[0]
    s = 0.0
    # chunks as slices: a loop from a start that LLVM cannot prove >= 0
    # keeps numba's negative-index wraparound and is not vectorised
    for c in range(0, k, _CHUNK):
        zc = zr[c : c + _CHUNK]
        sc = _zero(zr)
        if store:
            for j in range(zc.shape[0]):
                e = _exp_neg(zc[j] - m)
                zc[j] = e
                sc += e
        else:
            for j in range(zc.shape[0]):
                sc += _exp_neg(zc[j] - m)
        s += sc
    return s


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_expsum_into(xr, orow, m):
    # sum(exp(xr - m)) (float64), storing exp(xr - m) in orow (another array)
    k = xr.shape[0]
    s = 0.0
    for c in range(0, k, _CHUNK):
        xc = xr[c : c + _CHUNK]
        oc = orow[c : c + _CHUNK]
        sc = _zero(xr)
        for j in range(xc.shape[0]):
            e = _exp_neg(xc[j] - m)
            oc[j] = e
            sc += e
        s += sc
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
    if k > _SHORT:
        lse = np.empty(n, dtype=np.float64)
        _rows_long(z, log, lse)
        return lse
    return _short(z, z, log)


# --------------------------------------------------------------------------
# out-of-place kernels: x -> out, x untouched (softmax.functions' path)
# --------------------------------------------------------------------------
# Reading x and writing out in one pass saves the separate copy (a full
# pass over memory) that an in-place kernel needs. x and out must not
# overlap (LLVM checks at run time and would fall back to scalar code).


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _long_into(x, out, log, lse):
    n, k = x.shape
    acc = np.empty(16, dtype=x.dtype)
    for i in range(n):
        xr = x[i]
        orow = out[i]
        m = _row_max(xr, acc)
        if log:
            s = _row_expsum(xr, m, False)
            shift = m + np.log(s)
            lse[i] = shift
            for j in range(k):
                orow[j] = xr[j] - shift
        else:
            s = _row_expsum_into(xr, orow, m)
            lse[i] = m + np.log(s)
            inv = 1.0 / s
            for j in range(k):
                orow[j] = orow[j] * inv


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _short_into(x, out, write, mx, sm, t, mb, sb):
    # Short rows: a block of rows is transposed into t (k, b) so that the max
    # and exp-sum passes run along the block, vectorised across rows, instead
    # of along rows of length k (a K = 10 inner loop leaves most SIMD lanes
    # idle). Writes the row max to mx and the row sum of exp(x - max) to sm
    # (float64); with write, also the softmax to out (out may be x: each
    # block is read into t before it is written). The K-term sums run in the
    # input dtype (sb): at most _SHORT terms in (0, 1]. The logs are left to
    # NumPy's vectorised np.log: a libm call per row here would cost as much
    # as the exps.
    # Flat unsigned indices (no negative-index wraparound) and column-order
    # transposes measured ~10-35% faster than 2-D indexing.
    n, k = x.shape
    b = t.shape[1]
    xf = x.ravel()
    of = out.ravel()
    tf = t.ravel()
    for start in range(0, n, b):
        r = min(b, n - start)
        base = start * k
        for j in range(k):
            for i in range(r):
                tf[np.uint64(j * b + i)] = xf[np.uint64(base + i * k + j)]
        for i in range(r):
            mb[i] = tf[i]
        for j in range(1, k):
            tj = t[j]
            for i in range(r):
                v = tj[i]
                a = mb[i]
                mb[i] = v if v > a else a
        for i in range(r):
            sb[i] = 0.0
        for j in range(k):
            tj = t[j]
            for i in range(r):
                e = _exp_neg(tj[i] - mb[i])
                tj[i] = e
                sb[i] += e
        for i in range(r):
            mx[start + i] = mb[i]
            sm[start + i] = sb[i]
        if write:
            for i in range(r):
                sb[i] = 1.0 / sb[i]
            for j in range(k):
                for i in range(r):
                    of[np.uint64(base + i * k + j)] = tf[np.uint64(j * b + i)] * sb[i]


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _sub_into(x, out, v):
    # out[i, :] = x[i, :] - v[i]
    n, k = x.shape
    for i in range(n):
        vi = v[i]
        for j in range(k):
            out[i, j] = x[i, j] - vi


def rows_into_(x: np.ndarray, out: np.ndarray, log: bool) -> np.ndarray:
    """Row-wise (log-)softmax of finite ``x`` (n, k) written to ``out``.

    ``x`` and ``out``: C-contiguous, same shape and float32/float64 dtype,
    not overlapping, ``k >= 1``. Returns the float64 row logsumexp.
    """
    n, k = x.shape
    if k > _SHORT:
        lse = np.empty(n, dtype=np.float64)
        _long_into(x, out, log, lse)
        return lse
    return _short(x, out, log)


def _short(x: np.ndarray, out: np.ndarray, log: bool) -> np.ndarray:
    # rows of k <= _SHORT, x -> out (out may be x)
    n, k = x.shape
    lse = np.empty(n, dtype=np.float64)
    sums = np.empty(n, dtype=np.float64)
    t = np.empty((k, _BLOCK_ROWS), dtype=x.dtype)
    mb = np.empty(_BLOCK_ROWS, dtype=x.dtype)
    sb = np.empty(_BLOCK_ROWS, dtype=x.dtype)
    if not log:
        _short_into(x, out, True, lse, sums, t, mb, sb)
        lse += np.log(sums, out=sums)
        return lse
    # log: x - max - log(sum) needs the logs first, so work in chunks of rows
    # that stay in L2 between the two passes over x
    step = max(_BLOCK_ROWS, _LOG_CHUNK // k)
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        xc, oc = x[s0:s1], out[s0:s1]
        lc, sc = lse[s0:s1], sums[s0:s1]
        _short_into(xc, oc, False, lc, sc, t, mb, sb)
        lc += np.log(sc, out=sc)
        if x is out:
            _sub_rows(oc, lc)
        else:
            _sub_into(xc, oc, lc)
    return lse
