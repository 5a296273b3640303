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
the arguments a softmax needs (``x <= 0``, and up to 280 / 40 above 0 for the
one-pass shift below), including gradual underflow to subnormals and 0
(tests/test_functions_exp.py).

Long rows (K > 64): one row at a time. One pass reads the row, exponentiates it
shifted by the max of its first 16 entries (a shift below the row max only
scales every term, as long as exp stays in range) and sums; a row whose max is
too far above its first entries (its sum shows it) is redone with the max. Then
a scaling pass (softmax) or the subtraction (log-softmax) in L1. Short rows up
to ``_VEC_MAX_K`` (16): groups of 16 float32 / 8 float64 rows are loaded as
plain vectors and transposed in registers by constant shuffles, so that max,
exp, sum and log run across rows, one SIMD lane per row (LLVM vector IR written
out below, one kernel compiled per K); rows of 17 to 64: blocks of rows
transposed through a buffer. ``rows_into_`` reads ``x`` and writes ``out`` in
the same pass, without the copy an in-place kernel needs; large short-row
outputs are written with non-temporal stores.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

# No "afn" (np.log must stay exact) and no "nnan"/"ninf" (callers rely on a
# NaN or inf in a row giving a non-finite logsumexp for that row, and on -inf
# entries giving exp = 0). "reassoc" lets LLVM vectorise the sum reductions;
# where reassociation would hurt (the two-step Cody-Waite reduction in
# _exp_neg, (x - m) - log s in the long kernels) explicit intrinsics keep the
# order (see _sub_shift: numba's pass flags every float instruction that has
# no flag of its own).
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


@intrinsic
def _mul_exact(typingctx, a, b):
    # a * b without "reassoc": LLVM may not fold it with the product that
    # made a (p * 2**(n + k0) * 2**-k0 must round once, at the end). The
    # "contract" flag keeps numba's fast-math pass off it (see _sub_shift).
    sig = a(a, a)

    def codegen(context, builder, signature, args):
        return builder.fmul(args[0], args[1], flags=("contract",))

    return sig, codegen


@intrinsic
def _sub_shift(typingctx, x, m, ls):
    # (x - m) - ls in x's dtype, in that order, inside fast-math code. numba's
    # fast-math pass adds its flags to every float instruction that has none
    # (inlined callees and intrinsics included), and with "reassoc" LLVM
    # folds the expression into x - (m + ls), which rounds m + ls at m's
    # scale. An instruction that already carries a flag is left alone:
    # "contract" (fuse a multiply-add) is a no-op on a lone subtraction.
    # float32: m is a float32 entry of the row (exact), ls rounds once more
    # (as in _sub_group), and the row stays at 16 lanes a vector.
    if not all(isinstance(a, types.Float) for a in (x, m, ls)):
        return None
    sig = x(x, m, ls)

    def codegen(context, builder, signature, args):
        xd, md, ld = (
            context.cast(builder, a, t, signature.return_type)
            for a, t in zip(args, signature.args, strict=True)
        )
        d = builder.fsub(xd, md, flags=("contract",))
        return builder.fsub(d, ld, flags=("contract",))

    return sig, codegen


def _as_dtype(arr, v):  # pragma: no cover - replaced by the overload below
    raise NotImplementedError


@overload(_as_dtype, inline="always")
def _as_dtype_impl(arr, v):
    # v (float64) rounded to the dtype of the array arr
    if arr.dtype == types.float32:
        return lambda arr, v: np.float32(v)
    return lambda arr, v: v


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
            # p * 2**n as (p * 2**(n + 600)) * 2**-600: the first product is
            # exact and normal for every n >= -1587, the second rounds once,
            # so results below 2**-1022 round to the right subnormal
            scale = _bits_to_f64((np.int64(n) + (1023 + 600)) << 52)
            return _mul_exact(p * scale, 2.0**-600)

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
            scale = _bits_to_f32(np.int32((np.int32(n) + np.int32(127 + 64)) << 23))
            return _mul_exact(p * scale, np.float32(2.0**-64))

        return impl
    return None


# --------------------------------------------------------------------------
# short rows as SIMD vectors: G rows of K values, one vector per column
# --------------------------------------------------------------------------
# For K <= _VEC_MAX_K a group of G consecutive rows (G*K values, contiguous in
# memory) is loaded with plain vector loads and transposed in registers with
# constant shuffles into K vectors of G lanes, one per column (log_softmax).
# The row max, exp and row sum then run across rows, G lanes at a time;
# log_softmax needs no transpose back: x - lse is computed in row order, each
# row's lse spread to its K entries by one in-register permute per vector.
# softmax stays in row order throughout: segmented reductions by lane shifts
# put each row's max and sum in its first lane (see _seg_reduce). No transpose buffer,
# no gather/scatter, one pass over memory (log_softmax re-reads its chunk of
# rows from L1). The code is LLVM vector IR written out below (K is a
# compile-time constant, so every shuffle mask is constant): numba's loop
# vectoriser turns scalar loops with stride K into scalar code. LLVM lowers the
# generic vector IR to whatever the CPU has (AVX-512: one zmm per column;
# AVX2: two ymm). One kernel is compiled per (K, dtype, softmax/log_softmax,
# streaming stores or not) on first use (~0.3 s) and cached on disk.
# Measured on 1e6 x 10 float32 (AMD EPYC, AVX-512; one run, same load):
# softmax 17.5 -> 7.8 ms, log_softmax 18.8 -> 7.7 ms, np.exp 6.2 ms
# (benchmarks/results/functions.md).

_VEC_MAX_K = 16
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()

# exp(r) on |r| <= ln(2)/2. float64: degree 12, the Chebyshev fit of exp on
# that interval (mpmath.chebyfit(mpmath.exp, [-ln2/2, ln2/2], 13) at 40
# digits), coefficients rounded to float64: relative error 4.5e-19 (0.004
# ulp; Taylor to r**13 in _exp_neg: 4.3e-18) with one multiply-add fewer
# (1e6 x 10 float64 softmax: 2.7% faster). float32: Cephes' expf minimax
# polynomial, the same as _exp_neg above.
_EXP64_POLY = [
    2.09215799649503e-09,
    2.5114869528657765e-08,
    2.7557251904174915e-07,
    2.7557224958392624e-06,
    2.4801587350110797e-05,
    0.000198412699092171,
    0.001388888888887189,
    0.008333333333309528,
    0.04166666666666669,
    0.16666666666666702,
    0.5,
    1.0,
    1.0,
]
_EXP32_POLY = [
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
]
# fdlibm's e_log.c: log(1 + f) = f - f**2/2 + s*(f**2/2 + R(s**2)), s = f/(2 + f)
_LG = [
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
]
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


def _llvm_fn(module, name, fnty):
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, fnty, name)


class _Vec:
    """Emits elementwise IR on vectors of ``width`` lanes of one float type.

    Plain IR instructions without fast-math flags: LLVM keeps the order of
    the operations written here, which the error analyses of exp and log
    rely on.
    """

    def __init__(self, builder, fty, width):
        self.b = builder
        self.fty = fty
        self.w = width
        self.vty = ir.VectorType(fty, width)
        self.is64 = isinstance(fty, ir.DoubleType)
        self.ity = ir.VectorType(_I64 if self.is64 else _I32, width)
        sfx = f"v{width}f{64 if self.is64 else 32}"
        mod = builder.module
        self._floor = _llvm_fn(mod, f"llvm.floor.{sfx}", ir.FunctionType(self.vty, [self.vty]))
        self._fma = _llvm_fn(mod, f"llvm.fma.{sfx}", ir.FunctionType(self.vty, [self.vty] * 3))

    def c(self, v):
        return ir.Constant(self.vty, [ir.Constant(self.fty, v)] * self.w)

    def ci(self, v):
        return ir.Constant(self.ity, [ir.Constant(self.ity.element, v)] * self.w)

    def fma(self, a, b, c):
        return self.b.call(self._fma, [a, b, c])

    def max(self, v, acc):
        # v if v > acc else acc (one vmaxps): a NaN is kept only as acc; a
        # NaN entry either becomes the max (the row is all NaN) or reaches
        # exp, so the row sum, and the row's logsumexp, are NaN either way
        return self.b.select(self.b.fcmp_ordered(">", v, acc), v, acc)

    def exp_neg(self, x):
        """exp(x) for x <= 0 (and NaN): the algorithm of _exp_neg (float64 with
        the shorter polynomial _EXP64_POLY)."""
        b = self.b
        if self.is64:
            lo, log2e, c1, c2 = -1100.0, 1.4426950408889634, _LN2_HI, _LN2_LO
            poly, bias, shift, k0 = _EXP64_POLY, 1023, 52, 600
        else:
            lo, log2e, c1, c2 = -110.0, 1.442695, 0.693359375, -2.12194440e-4
            poly, bias, shift, k0 = _EXP32_POLY, 127, 23, 64
        # below lo exp underflows to 0 anyway; -inf becomes lo (exp = 0 exactly)
        x = b.select(b.fcmp_ordered("<", x, self.c(lo)), self.c(lo), x)
        n = b.call(self._floor, [self.fma(x, self.c(log2e), self.c(0.5))])
        nn = b.fneg(n)
        r = self.fma(nn, self.c(c1), x)
        r = self.fma(nn, self.c(c2), r)
        p = self.c(poly[0])
        for cf in poly[1:]:
            p = self.fma(p, r, self.c(cf))
        if not self.is64:
            p = b.fadd(self.fma(p, b.fmul(r, r), r), self.c(1.0))
        # p * 2**n as (p * 2**(n + k0)) * 2**-k0: the first product is exact
        # and normal for every n >= lo * log2(e), the second rounds once, so
        # results in the subnormal range are rounded correctly
        ni = b.fptosi(n, self.ity)
        scale = b.bitcast(b.shl(b.add(ni, self.ci(bias + k0)), self.ci(shift)), self.vty)
        return b.fmul(b.fmul(p, scale), self.c(2.0**-k0))


def _log64(b, x):
    """fdlibm's log (error < 1 ulp) of float64 lanes x that are positive and
    normal (here: row sums in [1, K]) or NaN (kept)."""
    v = _Vec(b, _F64, x.type.count)
    bits = b.bitcast(x, v.ity)
    hx = b.lshr(bits, v.ci(32))
    k = b.sub(b.lshr(hx, v.ci(20)), v.ci(1023))
    hxm = b.and_(hx, v.ci(0x000FFFFF))
    # mantissa >= sqrt(2): use x/2 (and k + 1), so that f = m - 1 is in [-0.29, 0.41]
    i = b.and_(b.add(hxm, v.ci(0x95F64)), v.ci(0x100000))
    hi = b.or_(hxm, b.xor(i, v.ci(0x3FF00000)))
    k = b.add(k, b.lshr(i, v.ci(20)))
    xn = b.bitcast(b.or_(b.shl(hi, v.ci(32)), b.and_(bits, v.ci(0xFFFFFFFF))), v.vty)
    f = b.fsub(xn, v.c(1.0))
    s = b.fdiv(f, b.fadd(v.c(2.0), f))
    dk = b.sitofp(k, v.vty)
    z = b.fmul(s, s)
    w = b.fmul(z, z)
    t1 = b.fmul(w, b.fadd(v.c(_LG[1]), b.fmul(w, b.fadd(v.c(_LG[3]), b.fmul(w, v.c(_LG[5]))))))
    t2 = b.fmul(
        z,
        b.fadd(
            v.c(_LG[0]),
            b.fmul(w, b.fadd(v.c(_LG[2]), b.fmul(w, b.fadd(v.c(_LG[4]), b.fmul(w, v.c(_LG[6])))))),
        ),
    )
    r = b.fadd(t2, t1)
    hfsq = b.fmul(v.c(0.5), b.fmul(f, f))
    # k*ln2_hi - ((hfsq - (s*(hfsq + R) + k*ln2_lo)) - f)
    inner = b.fadd(b.fmul(s, b.fadd(hfsq, r)), b.fmul(dk, v.c(_LN2_LO)))
    res = b.fsub(b.fmul(dk, v.c(_LN2_HI)), b.fsub(b.fsub(hfsq, inner), f))
    return b.select(b.fcmp_unordered("uno", x, x), x, res)


def _store(b, value, ptr, size, streaming):
    if streaming:
        # non-temporal store (the caller guarantees 64-byte alignment): a
        # large output is not read back here, and bypassing the cache saves
        # reading each output line from memory before overwriting it
        st = b.store(value, ptr, align=64)
        st.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(_I32, 1)]))
    else:
        b.store(value, ptr, align=size)


def _vec_ptr(builder, arr, offset, ty):
    return builder.bitcast(builder.gep(arr.data, [offset], inbounds=True), ty.as_pointer())


def _pairwise(op, vals):
    # (a + b) + (c + d) ...: shorter dependency chains than a running sum
    vals = list(vals)
    while len(vals) > 1:
        nxt = [op(vals[i], vals[i + 1]) for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _shuffle(b, v1, v2, idx):
    """shufflevector of v1, v2 with the lane indices idx; None: a lane nobody reads.

    Leaving unread lanes undefined lets LLVM pick a cheaper instruction (an
    in-register swap for a lane shift whose lanes never cross a register).
    """
    ins = b.shuffle_vector(
        v1, v2, ir.Constant(ir.VectorType(_I32, len(idx)), [i or 0 for i in idx])
    )
    if None in idx:
        # llvmlite's checks reject undef mask entries, which LLVM accepts
        ins.operands[2] = ir.Constant(
            ir.VectorType(_I32, len(idx)),
            [ir.Constant(_I32, ir.Undefined if i is None else i) for i in idx],
        )
    return ins


def _shift_lanes(b, v, d, need):
    # lane p + d of v in lane p, for the lanes p in need (the others undefined)
    n = v.type.count
    return _shuffle(b, v, v, [p + d if p in need else None for p in range(n)])


def _seg_reduce(b, op, v, k, idempotent, need):
    """op over lanes p .. p + k - 1 of v for each p in need: (r, step), the
    result for p in lane p // step of r.

    An even k (not a power of 2) whose windows start at even lanes first
    combines lane pairs (a shift that never crosses a register) and keeps
    every other lane: the remaining k / 2 run on half the registers (1e6 x 10
    float64: 13.7 -> 12.9 ms; float32 6.8 -> 6.6 ms). For k = 8 or 16 the
    halving measured slower than the plain doubling windows.
    """
    n = v.type.count
    if k >= 6 and k % 2 == 0 and k & (k - 1) and all(p % 2 == 0 for p in need):
        pairs = {p + 2 * j for p in need for j in range(k // 2)}
        w2 = op(v, _shift_lanes(b, v, 1, pairs))
        half = _shuffle(b, w2, w2, [2 * q if 2 * q in pairs else None for q in range(n // 2)])
        r = _seg_reduce_shifts(b, op, half, k // 2, idempotent, {p // 2 for p in need})
        return r, 2
    return _seg_reduce_shifts(b, op, v, k, idempotent, need), 1


def _seg_reduce_shifts(b, op, v, k, idempotent, need):
    """op over lanes p .. p + k - 1 of v, in lane p for each p in need.

    Windows double (2, 4, 8, ...) by shifted copies, one lane shift per
    register and level. An idempotent op (max) covers k with two overlapping
    windows; a sum adds the windows of the binary digits of k instead, a
    pairwise order (k = 10: ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 +
    x7)) + (x8 + x9), as _pairwise), so the error of a sum of k terms in
    (0, 1] stays within about log2(k) roundings. Each shift moves only the
    lanes the next step reads (see _shuffle): windows never cross into the
    next row at the lanes that are read.
    """
    top = 1
    while 2 * top <= k:
        top *= 2
    # the final combination: (window width, lane offset) terms
    if top == k:
        terms = [(top, 0)]
    elif idempotent:
        terms = [(top, 0), (top, k - top)]
    else:
        terms, off = [(top, 0)], top
        for bit in (8, 4, 2, 1):
            if bit < top and k & bit:
                terms.append((bit, off))
                off += bit
    # lanes each window is read at, from the widest down
    reads = {}
    for w, off in terms:
        reads.setdefault(w, set()).update(p + off for p in need)
    w = top
    while w > 1:
        half = reads.setdefault(w // 2, set())
        for p in reads.get(w, ()):
            half.update((p, p + w // 2))
        w //= 2
    wins = {1: v}
    w = 1
    while w < top:
        wins[2 * w] = op(wins[w], _shift_lanes(b, wins[w], w, reads[2 * w]))
        w *= 2
    acc = wins[terms[0][0]]
    for w, off in terms[1:]:
        acc = op(acc, _shift_lanes(b, wins[w], off, need))
    return acc


def _arr(b, context, sig, args, i):
    # the array struct of argument i of an intrinsic
    return context.make_array(sig.args[i])(context, b, args[i])


@intrinsic
def _rows_group(typingctx, xf, of, base, ms, ss, row, k, log, g, nt):
    """Row max and row sum of exp(x - max) of the g rows of length k at
    xf[base:base + g*k] into ms[row:row + g] and ss[row:row + g] (float64);
    unless log, also their softmax into of[base:...] (of may be xf: all is
    loaded before anything is stored); with nt, as non-temporal stores (of
    64-byte aligned). k, log, g, nt: compile-time constants."""
    lits = (k, log, g, nt)
    if not all(isinstance(a, (types.IntegerLiteral, types.BooleanLiteral)) for a in lits):
        return None
    K, LOG, G, NT = (a.literal_value for a in lits)
    sig = types.void(xf, of, base, ms, ss, row, k, log, g, nt)

    def codegen(context, builder, signature, args):
        b = builder
        xa, oa = _arr(b, context, signature, args, 0), _arr(b, context, signature, args, 1)
        ma, sa = _arr(b, context, signature, args, 3), _arr(b, context, signature, args, 4)
        fty = context.get_data_type(signature.args[0].dtype)
        size = signature.args[0].dtype.bitwidth // 8
        v = _Vec(b, fty, G)
        n = G * K
        bty = ir.VectorType(fty, n)
        dty = ir.VectorType(_F64, G)
        flat = b.load(_vec_ptr(b, xa, args[2], bty), align=size)
        if LOG:
            # the K columns, then max, exp and sum across rows (log_softmax's
            # x - lse pass in _sub_group needs no transpose back)
            cols = [
                b.shuffle_vector(
                    flat, flat, ir.Constant(ir.VectorType(_I32, G), [i * K + j for i in range(G)])
                )
                for j in range(K)
            ]
            m = _pairwise(v.max, cols)
            s = _pairwise(b.fadd, [v.exp_neg(b.fsub(c, m)) for c in cols])
        else:
            # softmax, in the rows' own layout: each row's max and sum land in
            # its first lane by segmented reductions (_seg_reduce), the max is
            # spread back to the row's K lanes for exp, and the result is
            # stored without a transpose. Only the first lanes are gathered
            # (twice), where extracting the K columns of the exps for the sum
            # cost a permute chain per column (1e6 x 10 float32: 7.9 -> 6.8 ms)
            vf = _Vec(b, fty, n)
            starts = {i * K for i in range(G)}
            mf, ms_ = _seg_reduce(b, vf.max, flat, K, True, starts)
            lead = [p // K * K // ms_ for p in range(n)]
            ef = vf.exp_neg(b.fsub(flat, _shuffle(b, mf, mf, lead)))
            sf, ss_ = _seg_reduce(b, b.fadd, ef, K, False, starts)  # K terms in (0, 1]
            m = _shuffle(b, mf, mf, [i * K // ms_ for i in range(G)])
            s = _shuffle(b, sf, sf, [i * K // ss_ for i in range(G)])
        b.store(m if v.is64 else b.fpext(m, dty), _vec_ptr(b, ma, args[5], dty), align=8)
        b.store(s if v.is64 else b.fpext(s, dty), _vec_ptr(b, sa, args[5], dty), align=8)
        if not LOG:
            inv = b.fdiv(v.c(1.0), s)
            spread = ir.Constant(ir.VectorType(_I32, n), [p // K for p in range(n)])
            res = b.fmul(ef, b.shuffle_vector(inv, inv, spread))
            _store(b, res, _vec_ptr(b, oa, args[2], bty), size, NT)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _lse_group(typingctx, ms, ss, row, lse, dst, g):
    """lse[dst:dst + g] = ms[row:row + g] + log(ss[row:row + g]); ss[...] = that log."""
    if not isinstance(g, types.IntegerLiteral):
        return None
    G = g.literal_value
    sig = types.void(ms, ss, row, lse, dst, g)

    def codegen(context, builder, signature, args):
        b = builder
        ma, sa = _arr(b, context, signature, args, 0), _arr(b, context, signature, args, 1)
        la = _arr(b, context, signature, args, 3)
        dty = ir.VectorType(_F64, G)
        m = b.load(_vec_ptr(b, ma, args[2], dty), align=8)
        s = b.load(_vec_ptr(b, sa, args[2], dty), align=8)
        logs = _log64(b, s)
        b.store(b.fadd(m, logs), _vec_ptr(b, la, args[4], dty), align=8)
        # log s kept for log_softmax's (x - m) - log s: x - lse would round
        # lse = m + log s at the scale of m, losing log s's digits when |m| is large
        b.store(logs, _vec_ptr(b, sa, args[2], dty), align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _sub_group(typingctx, xf, of, base, ms, ls, row, k, g, nt):
    """of[base + i*k + j] = (xf[base + i*k + j] - ms[row + i]) - ls[row + i] for the g rows."""
    lits = (k, g, nt)
    if not all(isinstance(a, (types.IntegerLiteral, types.BooleanLiteral)) for a in lits):
        return None
    K, G, NT = (a.literal_value for a in lits)
    sig = types.void(xf, of, base, ms, ls, row, k, g, nt)

    def codegen(context, builder, signature, args):
        b = builder
        xa, oa = _arr(b, context, signature, args, 0), _arr(b, context, signature, args, 1)
        ma, la = _arr(b, context, signature, args, 3), _arr(b, context, signature, args, 4)
        fty = context.get_data_type(signature.args[0].dtype)
        size = signature.args[0].dtype.bitwidth // 8
        is64 = isinstance(fty, ir.DoubleType)
        n = G * K
        bty = ir.VectorType(fty, n)
        dty = ir.VectorType(_F64, G)
        flat = b.load(_vec_ptr(b, xa, args[2], bty), align=size)
        m_g = b.load(_vec_ptr(b, ma, args[5], dty), align=8)
        l_g = b.load(_vec_ptr(b, la, args[5], dty), align=8)
        if not is64:
            # m is a float32 value (exact), log s is rounded once more
            vty = ir.VectorType(fty, G)
            m_g, l_g = b.fptrunc(m_g, vty), b.fptrunc(l_g, vty)
        # each row's m and log s broadcast to its K entries (an in-register
        # permute per vector): no transpose. (x - m) - log s: x - m is exact
        # or rounded once (the condition of the subtraction), log s is small
        spread = ir.Constant(ir.VectorType(_I32, n), [p // K for p in range(n)])
        res = b.fsub(
            b.fsub(flat, b.shuffle_vector(m_g, m_g, spread)), b.shuffle_vector(l_g, l_g, spread)
        )
        _store(b, res, _vec_ptr(b, oa, args[2], bty), size, NT)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_fence(typingctx):
    """Order the non-temporal stores before everything after (mfence)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


def _group_rows(dtype) -> int:
    # one 512-bit vector per column: 16 float32 or 8 float64 lanes
    return 16 if dtype == np.float32 else 8


_VEC_KERNELS: dict = {}
# Rows per chunk. The group kernel writes the row max and sum of a chunk of
# rows to small buffers; one vectorised loop then takes their logs (kept out
# of the group kernel, where its long dependency chain stalled the
# pipeline), and log_softmax makes a second pass x - lse over the chunk while
# it is still in L1. Measured best (1e6 x 10): 64 rows for log_softmax,
# 128-256 for softmax (whose output is written in the first pass; 8192 rows,
# whose buffers spill from L1, cost float32 10-15% with the segmented-reduction
# kernel; float64 1-2%).
_VEC_CHUNK_LOG = 64
_VEC_CHUNK = 256


def _vec_kernel(k: int, log: bool, g: int, nt: bool):
    """The compiled kernel for rows of length k (compiled once per key)."""
    key = (k, log, g, nt)
    f = _VEC_KERNELS.get(key)
    if f is None:
        # K, LOG, G, NT are closure constants: numba compiles (and caches on
        # disk, keyed by their values) one specialisation per key
        K, LOG, G, NT = key
        C = _VEC_CHUNK_LOG if LOG else _VEC_CHUNK

        @numba.njit(cache=True, nogil=True)
        def f(x, out, lse):
            xf = x.ravel()
            of = out.ravel()
            full = x.shape[0] - x.shape[0] % G
            ms = np.empty(C, dtype=np.float64)
            ss = np.empty(C, dtype=np.float64)
            for c0 in range(0, full, C):
                rows = min(C, full - c0)
                for r in range(0, rows, G):
                    _rows_group(xf, of, (c0 + r) * K, ms, ss, r, K, LOG, G, NT)
                for r in range(0, rows, G):
                    _lse_group(ms, ss, r, lse, c0 + r, G)
                if LOG:
                    for r in range(0, rows, G):
                        _sub_group(xf, of, (c0 + r) * K, ms, ss, r, K, G, NT)
            if NT:
                _store_fence()

        _VEC_KERNELS[key] = f
    return f


#: Out-of-place outputs of at least this many bytes are written with
#: non-temporal stores (measured on 1e6 x 10: 10-15% faster, mostly in fresh
#: memory; smaller results stay in cache for the caller).
_STREAM_BYTES = 1 << 23


def _vec_rows(x: np.ndarray, out: np.ndarray, log: bool, stream: bool) -> np.ndarray:
    # rows of k <= _VEC_MAX_K, x -> out (out may be x); stream: allow
    # non-temporal stores for a large out
    n, k = x.shape
    g = _group_rows(x.dtype)
    lse = np.empty(n, dtype=np.float64)
    head = 0
    nt = stream and out.nbytes >= _STREAM_BYTES
    if nt:
        # rows before the first one that starts on a 64-byte boundary; from
        # there every group of g rows (64 * k bytes) is aligned as well
        row_bytes = k * out.itemsize
        head = next((p for p in range(64) if (out.ctypes.data + p * row_bytes) % 64 == 0), -1)
        if not 0 <= head < min(n, g):  # (head < g whenever out is itemsize-aligned)
            nt, head = False, 0
    full = head + (n - head) // g * g
    if head:
        lse[:head] = _vec_rows_padded(x[:head], out[:head], log, g)
    if full > head:
        _vec_kernel(k, log, g, nt)(x[head:full], out[head:full], lse[head:full])
    if full < n:  # the last (n - head) % g rows
        lse[full:] = _vec_rows_padded(x[full:], out[full:], log, g)
    return lse


def _vec_rows_padded(x: np.ndarray, out: np.ndarray, log: bool, g: int) -> np.ndarray:
    # fewer than g rows: through the same kernel, padded to g rows with zeros
    # (one kernel per K serves every row, and no other needs compiling)
    r, k = x.shape
    buf = np.zeros((g, k), dtype=x.dtype)
    buf[:r] = x
    lse = np.empty(g, dtype=np.float64)
    _vec_kernel(k, log, g, False)(buf, buf, lse)
    out[...] = buf[:r]
    return lse[:r]


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_max(xr):
    # Max of a row with 8 independent scalar accumulators: LLVM does not
    # vectorise a float max reduction written as one running max (NaN
    # semantics); eight independent chains in registers run about 4x faster
    # than one, and 2x faster than 16 accumulators kept in an array.
    k = xr.shape[0]
    k8 = k - k % 8
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = xr[0]
    for j in range(0, k8, 8):
        v = xr[j]
        a0 = v if v > a0 else a0
        v = xr[j + 1]
        a1 = v if v > a1 else a1
        v = xr[j + 2]
        a2 = v if v > a2 else a2
        v = xr[j + 3]
        a3 = v if v > a3 else a3
        v = xr[j + 4]
        a4 = v if v > a4 else a4
        v = xr[j + 5]
        a5 = v if v > a5 else a5
        v = xr[j + 6]
        a6 = v if v > a6 else a6
        v = xr[j + 7]
        a7 = v if v > a7 else a7
    for j in range(k8, k):
        v = xr[j]
        a0 = v if v > a0 else a0
    a0 = a1 if a1 > a0 else a0
    a2 = a3 if a3 > a2 else a2
    a4 = a5 if a5 > a4 else a4
    a6 = a7 if a7 > a6 else a6
    a0 = a2 if a2 > a0 else a0
    a4 = a6 if a6 > a4 else a4
    return a4 if a4 > a0 else a0


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


def _exp_cap(x):  # pragma: no cover - replaced by the overload below
    raise NotImplementedError


@overload(_exp_cap, inline="always")
def _exp_cap_impl(x):
    # Largest argument (with a margin) the one-pass shift feeds _exp_neg: 2**n
    # is built in the exponent field with a bias of 600 (float64) or 64
    # (float32), so n <= 423 (x < 293) or n <= 63 (x < 43.6). exp(x) there is
    # as accurate as for x <= 0 (same reduction, same polynomial).
    if x.dtype == types.float32:
        return lambda x: np.float32(40.0)
    return lambda x: 280.0


#: exp of the caps above: a row sum at least this large may hold a capped term
_EXP_CAP64 = math.exp(280.0)
_EXP_CAP32 = math.exp(40.0)


def _exp_cap_sum(x):  # pragma: no cover - replaced by the overload below
    raise NotImplementedError


@overload(_exp_cap_sum, inline="always")
def _exp_cap_sum_impl(x):
    if x.dtype == types.float32:
        return lambda x: _EXP_CAP32
    return lambda x: _EXP_CAP64


@numba.njit(inline="always", cache=True)
def _log_redo(k):
    # A one-pass shift c below the row max m leaves log s >= m - c, and
    # (x - c) - log s then loses about (m - c) eps to cancellation; redo with
    # the true max when that could exceed the K eps the sum itself may cost.
    return math.exp(min(0.5 * (k + 4), 280.0))


def _row_expsum_shifted(xr, orow, store):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_row_expsum_shifted, inline="always", jit_options={"fastmath": _FASTMATH})
def _row_expsum_shifted_impl(xr, orow, store):
    # One pass over a row: exp(x - c) (stored in orow if asked) and its sum
    # (float64), with c the max of the first 16 entries instead of the row
    # max: shifting by c <= max only scales every term by exp(max - c), so
    # the softmax is the same as long as exp stays in range. Arguments are
    # capped at _exp_cap (a NaN passes through); a capped term alone makes
    # the sum reach _exp_cap_sum, so the caller redoes a row whose sum is not
    # below it (a far larger entry later in the row, or a row holding +inf,
    # NaN or only -inf) with the true max. Returns c, s.
    # Why: a separate max pass costs as much as the exps it precedes (its
    # loads have no work to hide behind); here the loads feed the exps
    # (1000 x 1000 float64: 1.32 -> 0.82 ms with the scaling, np.exp 0.79 ms).
    # float32 sums run in float32 over chunks of _CHUNK terms (see there);
    # float64 ones need no chunks (which cost 15% here).
    chunked = xr.dtype == types.float32

    def impl(xr, orow, store):
        k = xr.shape[0]
        c = xr[0]
        for j in range(1, min(k, 16)):
            v = xr[j]
            c = v if v > c else c
        cap = _exp_cap(xr)
        if not chunked:
            s = 0.0
            if store:
                for j in range(k):
                    d = xr[j] - c
                    e = _exp_neg(cap if d > cap else d)
                    orow[j] = e
                    s += e
            else:
                for j in range(k):
                    d = xr[j] - c
                    s += _exp_neg(cap if d > cap else d)
            return c, s
        s = 0.0
        for start in range(0, k, _CHUNK):
            xc = xr[start : start + _CHUNK]
            sc = _zero(xr)
            if store:
                oc = orow[start : start + _CHUNK]
                for j in range(xc.shape[0]):
                    d = xc[j] - c
                    e = _exp_neg(cap if d > cap else d)
                    oc[j] = e
                    sc += e
            else:
                for j in range(xc.shape[0]):
                    d = xc[j] - c
                    sc += _exp_neg(cap if d > cap else d)
            s += sc
        return c, s

    return impl


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _rows_long(z, log, lse):
    # One row at a time: the row stays in L1/L2 across its passes. In place
    # on purpose: with separate input and output arrays LLVM must assume they
    # may overlap and falls back to scalar code when they do.
    n, k = z.shape
    for i in range(n):
        zr = z[i]
        # softmax stores exp(z - c) in place: a redo must start from z, so
        # the one-pass shift is for log_softmax (which stores nothing) only
        if log:
            c, s = _row_expsum_shifted(zr, zr, False)
            if not s < min(_exp_cap_sum(zr), _log_redo(k)):
                c = _row_max(zr)
                s = _row_expsum(zr, c, False)
        else:
            c = _row_max(zr)
            s = _row_expsum(zr, c, True)
        logs = np.log(s)
        lse[i] = c + logs
        if log:
            # (z - c) - logs while the row is in L1 (see _sub_shift)
            for j in range(k):
                zr[j] = _sub_shift(zr[j], c, logs)
        else:
            inv = _as_dtype(zr, 1.0 / s)
            for j in range(k):
                zr[j] = zr[j] * inv


# no fast-math: reassoc would turn (x - m) - ls into x - (m + ls)
@numba.njit(cache=True, nogil=True)
def _sub_rows(z, m, ls):
    # z[i, :] = (z[i, :] - m[i]) - ls[i] (not z - (m + ls): rounds m + ls at m's scale)
    n, k = z.shape
    for i in range(n):
        mi = m[i]
        li = ls[i]
        for j in range(k):
            z[i, j] = (z[i, j] - mi) - li


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
    if k <= _VEC_MAX_K:
        # no streaming stores in place: the callers (losses, estimators) read
        # z right back, from cache where it fits
        return _vec_rows(z, z, log, stream=False)
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
    for i in range(n):
        xr = x[i]
        orow = out[i]
        # one pass: exp(x - c) into orow, its sum and the row max (see
        # _row_expsum_shifted); redone with the row max where c fell short
        c, s = _row_expsum_shifted(xr, orow, not log)
        if not s < (min(_exp_cap_sum(xr), _log_redo(k)) if log else _exp_cap_sum(xr)):
            c = _row_max(xr)
            s = _row_expsum(xr, c, False) if log else _row_expsum_into(xr, orow, c)
        logs = np.log(s)
        lse[i] = c + logs
        if log:
            # (x - c) - logs while the row is in L1 (see _sub_shift)
            for j in range(k):
                orow[j] = _sub_shift(xr[j], c, logs)
        else:
            inv = _as_dtype(xr, 1.0 / s)
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


# no fast-math: reassoc would turn (x - m) - ls into x - (m + ls)
@numba.njit(cache=True, nogil=True)
def _sub_into(x, out, m, ls):
    # out[i, :] = (x[i, :] - m[i]) - ls[i] (not x - (m + ls): rounds at m's scale)
    n, k = x.shape
    for i in range(n):
        mi = m[i]
        li = ls[i]
        for j in range(k):
            out[i, j] = (x[i, j] - mi) - li


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
    if k <= _VEC_MAX_K:
        return _vec_rows(x, out, log, stream=True)
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
        np.log(sc, out=sc)
        if x is out:
            _sub_rows(oc, lc, sc)
        else:
            _sub_into(xc, oc, lc, sc)
        lc += sc
    return lse
