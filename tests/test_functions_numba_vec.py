"""Tests of the SIMD-group kernels for short rows in :mod:`softmax._numba_kernels`.

Rows of ``K <= _VEC_MAX_K`` are processed ``G`` rows at a time as vectors
(transposed in registers), with a vector exp and log of their own; a head of
rows before the first 64-byte aligned one and a tail of fewer than ``G`` rows
go through the same kernel padded to ``G`` rows; large outputs are written
with non-temporal stores.
References: SciPy and float64 / ``np.longdouble`` arithmetic, mpmath at 50
digits, and the always-available NumPy path of :mod:`softmax._kernels`.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import scipy.special as sps
from numpy.testing import assert_allclose, assert_array_equal

from softmax import _kernels
from softmax import functions as F

pytest.importorskip("numba")  # the optional dependency: skip without it
from softmax import _numba_kernels as nk

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def _reference(x: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    lse = sps.logsumexp(x64, axis=1)
    return (x64 - lse[:, None] if log else sps.softmax(x64, axis=1)), lse


def _assert_close(got, ref, rtol, atol) -> None:
    """|got - ref| <= atol + rtol |ref| elementwise (atol may be an array); inf/NaN equal."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    with np.errstate(invalid="ignore"):
        ok = same | (np.abs(got - ref) <= atol + rtol * np.abs(ref))
    if not ok.all():
        i = tuple(np.argwhere(~ok)[0])
        raise AssertionError(f"{(~ok).sum()} mismatches, first at {i}: {got[i]!r} vs {ref[i]!r}")


def _check(x: np.ndarray, out: np.ndarray, lse: np.ndarray, log: bool) -> None:
    dtype = x.dtype.type
    ref, ref_lse = _reference(x, log)
    rtol = RTOL[dtype]
    assert_allclose(lse, ref_lse, rtol=rtol, atol=rtol)
    if log:
        # x - lse cancels where one entry carries almost all the mass
        atol = rtol * np.maximum(np.abs(x).max(axis=1, keepdims=True), 1.0)
        _assert_close(out, ref, rtol, atol)
    else:
        assert_allclose(out, ref, rtol=2 * rtol, atol=4 * float(np.finfo(dtype).tiny))


@pytest.mark.slow  # compiles one kernel per (K, dtype, function) on a cold cache
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_every_short_k_matches_scipy_and_numpy_path(dtype, log):
    rng = np.random.default_rng(0)
    for k in range(1, nk._VEC_MAX_K + 2):
        # 16 * 3 + 5 rows: whole groups plus a tail for either group size
        x = (rng.standard_normal((53, k)) * 8).astype(dtype)
        x0 = x.copy()
        out = np.empty_like(x)
        lse = nk.rows_into_(x, out, log)
        assert_array_equal(x, x0)  # input untouched
        _check(x, out, lse, log)
        # the NumPy path computes the same thing
        z = x.copy()
        _kernels.USE_NUMBA = False
        try:
            lse_np = _kernels._rows_(z, log)
        finally:
            _kernels.USE_NUMBA = True
        assert_allclose(lse, lse_np, rtol=RTOL[dtype])
        atol = RTOL[dtype] * (np.abs(x).max(axis=1, keepdims=True) if log else 1e-30)
        _assert_close(out, z, 4 * RTOL[dtype], atol)
        # in place (out is x) gives the same result
        z = x.copy()
        lse_in = nk.rows_(z, log)
        assert_array_equal(lse_in, lse)
        assert_array_equal(z, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("k", [3, 10])
def test_streaming_stores_any_alignment(monkeypatch, dtype, log, k):
    # force the non-temporal path (normally only outputs of 8 MiB and more)
    # and start the output at every offset from a 64-byte boundary: the head
    # rows before the first aligned one, the groups and the tail must all
    # be right (a misaligned streaming store would crash)
    monkeypatch.setattr(nk, "_STREAM_BYTES", 0)
    rng = np.random.default_rng(1)
    n = 77
    x = (rng.standard_normal((n, k)) * 5).astype(dtype)
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(n * k + 64, dtype=dtype)
    base = (-buf.ctypes.data % 64) // itemsize
    for shift in range(64 // itemsize):
        out = buf[base + shift : base + shift + n * k].reshape(n, k)
        out[:] = np.nan
        lse = nk.rows_into_(x, out, log)
        _check(x, out, lse, log)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_rows_do_not_mix_within_a_group(dtype, log):
    # softmax reduces each row where it lies in the group's lanes (segmented
    # max and sum by lane shifts): a window reaching into the next row would
    # take that row's max or its exps. Neighbouring rows here are hundreds
    # apart (either way) and each row's max moves through every column, so
    # a leak gives 0, inf or NaN instead of the SciPy result.
    rng = np.random.default_rng(6)
    n = 16 * 4 + 5
    i = np.arange(n)
    for k in range(1, nk._VEC_MAX_K + 1):
        x = rng.standard_normal((n, k))
        x[i, i % k] += 7.0
        x += (np.where(i % 2, 150.0, -150.0) * (i % 5))[:, None]
        x = x.astype(dtype)
        out = np.empty_like(x)
        lse = nk.rows_into_(x, out, log)
        _check(x, out, lse, log)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("k", [6, 10, 16])
def test_special_values_in_every_row_position(dtype, log, k):
    # a NaN, a +inf, all -inf and some -inf in rows at each position of a
    # group and in the tail: the kernel gives exact -inf entries and a
    # non-finite logsumexp for the other special rows (softmax.functions
    # recomputes those), and no warnings
    n = 45
    g = nk._group_rows(np.dtype(dtype))
    rng = np.random.default_rng(2)
    for pos in range(0, n, 7):
        x = rng.standard_normal((n, k)).astype(dtype)
        nan_row, inf_row, ninf_row, some_row = pos, (pos + 1) % n, (pos + 2) % n, (pos + 3) % n
        x[nan_row, pos % k] = np.nan
        x[inf_row, (pos + 1) % k] = np.inf
        x[ninf_row] = -np.inf
        x[some_row, [0, k - 1]] = -np.inf
        out = np.empty_like(x)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error")
            lse = nk.rows_into_(x, out, log)
        assert not np.isfinite(lse[[nan_row, inf_row, ninf_row]]).any()
        assert np.isnan(lse[nan_row])
        finite = np.setdiff1d(np.arange(n), [nan_row, inf_row, ninf_row])
        assert np.isfinite(lse[finite]).all()
        _check(x[finite], out[finite], lse[finite], log)
        assert_array_equal(out[some_row, [0, k - 1]], -np.inf if log else 0.0)
        assert g in (8, 16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_functions_special_rows_large(dtype):
    # through softmax / log_softmax on an input large enough for numba,
    # with special rows inside groups and in the tail
    rng = np.random.default_rng(3)
    n, k = 5003, 10
    x = (rng.standard_normal((n, k)) * 4).astype(dtype)
    x[17, 3] = np.nan
    x[18, 4] = np.inf
    x[19, 5] = np.inf
    x[19, 6] = np.inf
    x[20] = -np.inf
    x[n - 1, 2] = -np.inf
    x[n - 2, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sm = F.softmax(x)
        lsm = F.log_softmax(x)
    assert sm.dtype == lsm.dtype == dtype
    assert np.isnan(sm[17]).all() and np.isnan(lsm[17]).all()
    assert_array_equal(sm[18], np.eye(k)[4])
    assert_array_equal(sm[19], [0, 0, 0, 0, 0, 0.5, 0.5, 0, 0, 0])
    assert_allclose(lsm[19, 5:7], -np.log(2), rtol=RTOL[dtype])
    assert_array_equal(sm[20], 0.0)
    assert_array_equal(lsm[20], -np.inf)
    assert_array_equal(sm[n - 2], np.eye(k)[0])
    normal = np.setdiff1d(np.arange(n), [17, 18, 19, 20, n - 2])
    ref_sm, _ = _reference(x[normal], False)
    assert_allclose(sm[normal], ref_sm, rtol=2 * RTOL[dtype], atol=1e-37)
    assert sm[n - 1, 2] == 0 and lsm[n - 1, 2] == -np.inf


def test_non_contiguous_and_fortran_input():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6000, 20))
    for x in (base[:, ::2], np.asfortranarray(base[:, :10]), base[::2, 3:13]):
        for f, g in ((F.softmax, sps.softmax), (F.log_softmax, sps.log_softmax)):
            assert_allclose(f(x), g(x, axis=-1), rtol=1e-13, atol=1e-300)
            assert_allclose(f(x.astype(np.float32)), g(x, axis=-1), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("k", [2, 7, 16])
def test_float64_matches_mpmath(k):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((21, k)) * 20
    out, lout = np.empty_like(x), np.empty_like(x)
    lse = nk.rows_into_(x, out, False)
    nk.rows_into_(x, lout, True)
    with mpmath.workdps(50):
        for i in range(x.shape[0]):
            terms = [mpmath.exp(mpmath.mpf(float(v))) for v in x[i]]
            total = mpmath.fsum(terms)
            ltot = mpmath.log(total)
            assert abs(lse[i] - float(ltot)) <= 2 * np.spacing(abs(float(ltot)))
            m = float(np.max(x[i]))
            for j in range(k):
                exact = float(terms[j] / total)
                # exp(x - max): the rounding of x - max (|x - max| eps
                # relative) plus about 2 ulp for exp, the sum and 1/sum
                tol = (abs(x[i, j] - m) * 2**-53 + 2**-51) * exact
                assert abs(out[i, j] - exact) <= tol
                le = float(mpmath.mpf(float(x[i, j])) - ltot)
                # x - lse: one rounding of the difference, plus the lse error
                tol = 2 * np.spacing(abs(le)) + 2 * np.spacing(abs(float(ltot)))
                assert abs(lout[i, j] - le) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_exp_over_the_whole_range(dtype):
    # rows (0, -t): softmax[1] = e / (1 + e) with e = exp(-t), over t down to
    # past the underflow edge; checks the vector exp (with subnormal results)
    # against np.longdouble (80-bit where available) or mpmath
    hi = 110.0 if dtype == np.float32 else 760.0
    t = np.concatenate([np.linspace(0.0, hi, 20011), [np.inf]]).astype(dtype)
    x = np.stack([np.zeros_like(t), -t], axis=1)
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        nk.rows_into_(x, out, False)
    assert out[-1, 1] == 0 and out[-1, 0] == 1  # the -inf entry is exactly 0
    t = t[:-1].astype(np.float64)
    got = out[:-1, 1]
    if np.finfo(np.longdouble).nmant >= 63:
        e = np.exp(-t.astype(np.longdouble))
        exact = e / (1 + e)
    else:  # pragma: no cover - no extended precision: a sparser mpmath check
        t, got = t[::50], got[::50]
        exact = np.array([float(1 / (1 + mpmath.exp(mpmath.mpf(v)))) for v in t])
    fi = np.finfo(dtype)
    normal = exact >= fi.tiny
    spacing = np.spacing(exact[normal].astype(dtype)).astype(np.longdouble)
    ulp = np.abs(got[normal].astype(np.longdouble) - exact[normal]) / spacing
    assert ulp.max() <= 2.5  # exp (~1 ulp), the sum and 1/sum roundings
    sub = np.abs(got[~normal].astype(np.longdouble) - exact[~normal])
    assert sub.max() <= 2 * float(fi.smallest_subnormal)
    assert np.all(np.diff(got) <= 0)  # monotone
