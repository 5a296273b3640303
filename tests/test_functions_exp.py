"""Tests of the compiled kernels' own exp, the one-pass numba path and the small-input path.

The exp of :mod:`softmax._numba_kernels` is checked against an independent
reference (mpmath at 50 digits, and ``np.longdouble``'s ``expl`` where that
type has extra precision) over dense grids down to and beyond the underflow
edge, with the worst ulp error asserted.
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

numba = pytest.importorskip("numba")  # the optional dependency: skip without it
from softmax import _numba_kernels as nk  # noqa: E402  (ours: a broken import must fail)


@numba.njit
def _exp_array(x, out):
    for i in range(x.shape[0]):
        out[i] = nk._exp_neg(x[i])


def kernel_exp(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _exp_array(x, out)
    return out


def _mp_exp(x: np.ndarray) -> np.ndarray:
    with mpmath.workdps(50):
        return np.array([mpmath.exp(mpmath.mpf(float(v))) for v in x], dtype=object)


def _ulp_error(got: np.ndarray, exact, dtype) -> np.ndarray:
    """|got - exact| in units of the spacing of the exact value rounded to dtype."""
    if isinstance(exact, np.ndarray) and exact.dtype == object:
        with mpmath.workdps(50):
            err = np.array([abs(mpmath.mpf(float(g)) - e) for g, e in zip(got, exact)])
            ref = np.array([float(e) for e in exact], dtype=dtype)
            return np.array(
                [float(e / float(s)) for e, s in zip(err, np.spacing(ref))], dtype=np.float64
            )
    ref = exact.astype(dtype)
    return np.abs(got.astype(exact.dtype) - exact) / np.abs(np.spacing(ref)).astype(exact.dtype)


GRIDS = {
    # down to the last value that rounds to the smallest subnormal and past it
    np.float64: (-746.0, 1e-308, 1.0),
    np.float32: (-104.0, float(np.finfo(np.float32).tiny), 1.0),
}
HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant >= 63


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_ulp_error_dense_grid(dtype):
    if not HAS_LONGDOUBLE:  # pragma: no cover - platforms without 80-bit long double
        pytest.skip("np.longdouble has no extra precision here; the mpmath test covers exp")
    lo, tiny, _ = GRIDS[dtype]
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            np.linspace(lo, 0.0, 400_001),
            -rng.exponential(3.0, 200_000),  # where softmax inputs concentrate
            -np.abs(rng.standard_normal(50_000)) * 1e-6,  # tiny arguments
        ]
    ).astype(dtype)
    got = kernel_exp(x)
    exact = np.exp(x.astype(np.longdouble))
    normal = exact >= tiny
    ulp = _ulp_error(got[normal], exact[normal], dtype)
    assert ulp.max() <= 1.5, f"max ulp error {ulp.max():.3f}"  # measured: 1.14 / 0.97
    assert np.mean(ulp <= 0.5) > 0.9  # mostly correctly rounded
    # subnormal results: within one unit of the smallest subnormal
    sub_err = np.abs(got[~normal].astype(np.longdouble) - exact[~normal])
    assert sub_err.max() <= np.finfo(dtype).smallest_subnormal


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_against_mpmath(dtype):
    lo = GRIDS[dtype][0]
    rng = np.random.default_rng(2)
    x = np.concatenate([np.linspace(lo / 1.2, 0.0, 1500), -rng.exponential(2.0, 500)]).astype(
        dtype
    )
    got = kernel_exp(x)
    exact = _mp_exp(x)
    ulp = _ulp_error(got, exact, dtype)
    assert ulp.max() <= 1.5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_edges(dtype):
    fi = np.finfo(dtype)
    x = np.array([0.0, -0.0, -np.inf, np.nan, -1e4, -1100.0, float(fi.min)], dtype=dtype)
    got = kernel_exp(x)
    assert got[0] == 1.0 and got[1] == 1.0  # exact
    assert got[2] == 0.0  # -inf entries are exactly 0
    assert np.isnan(got[3])  # NaN propagates (callers rely on it)
    assert_array_equal(got[4:], 0.0)  # far below the underflow edge: 0, not garbage
    # the underflow edge itself: the smallest subnormal and the first argument that gives 0
    ln_min = np.log(float(fi.smallest_subnormal))
    edge = np.array([ln_min, ln_min - 0.75], dtype=dtype)  # exp = tiny_sub, ~0.47 tiny_sub
    e = kernel_exp(edge)
    assert e[0] == fi.smallest_subnormal
    assert e[1] == 0.0
    # monotone over a fine grid (no jumps at the range-reduction boundaries)
    g = kernel_exp(np.linspace(-20, 0, 100_001).astype(dtype))
    assert np.all(np.diff(g) >= 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_positive_arguments_up_to_the_cap(dtype):
    # the long-row kernels shift by the max of a row's first entries, not the
    # row max, so exp also sees arguments above 0, up to the cap (280 / 40)
    cap = 280.0 if dtype == np.float64 else 40.0
    rng = np.random.default_rng(7)
    x = np.concatenate([np.linspace(0.0, cap, 20_001), rng.uniform(0, 5, 5000)]).astype(dtype)
    got = kernel_exp(x)
    if HAS_LONGDOUBLE:
        ulp = _ulp_error(got, np.exp(x.astype(np.longdouble)), dtype)
        assert ulp.max() <= 1.5, f"max ulp error {ulp.max():.3f}"
    sample = x[:: len(x) // 700]
    assert _ulp_error(kernel_exp(sample), _mp_exp(sample), dtype).max() <= 1.5
    # no jumps at the range-reduction boundaries
    assert np.all(np.diff(kernel_exp(np.linspace(0, cap, 100_001).astype(dtype))) >= 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [100, 1000])
@pytest.mark.parametrize("log", [False, True])
def test_long_rows_max_far_from_the_first_entries(dtype, k, log):
    """The one-pass shift (the max of the first 16 entries) and its redo with the row max."""
    cap = 280.0 if dtype == np.float64 else 40.0
    gaps = [0.5 * cap, cap - 1, cap + 1, 3 * cap, 1e30]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((len(gaps) + 3, k))
    for i, g in enumerate(gaps):
        x[i, 40] = x[i, :16].max() + g  # the row max, past the first 16 entries
        x[i, 70] = x[i, 40] - 1.0
    n = len(gaps)
    x[n, :16] = -np.inf  # the first entries all -inf, finite ones later
    x[n + 1, 50] = np.inf  # +inf past the first 16: non-finite lse (contract)
    x[n + 2, 60] = np.nan
    x = x.astype(dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = np.empty_like(x)
        lse = nk.rows_into_(x, out, log)
        z = x.copy()
        lse2 = nk.rows_(z, log)
    fin = slice(0, n + 1)
    x64 = x[fin].astype(np.float64)
    ref_lse = sps.logsumexp(x64, axis=1)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    assert_allclose(lse[fin], ref_lse, rtol=rtol)
    assert_allclose(lse2[fin], ref_lse, rtol=rtol)
    if log:
        ref = x64 - ref_lse[:, None]
        atol = rtol * np.abs(x64[np.isfinite(x64)]).max()
    else:
        ref = sps.softmax(x64, axis=1)
        atol = 4 * float(np.finfo(dtype).tiny)
    assert_allclose(out[fin], ref, rtol=5 * rtol, atol=atol)
    if log:  # the in-place kernel takes the same one-pass shift for log_softmax
        assert_allclose(z[fin], ref, rtol=5 * rtol, atol=atol)
    assert not np.any(np.isfinite(lse[n + 1 :])) and not np.any(np.isfinite(lse2[n + 1 :]))


# --------------------------------------------------------------------------
# one-pass x -> out numba kernels (softmax.functions' path for large inputs)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3000, 10), (500, 3), (300, 64), (300, 65), (4, 20000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_rows_into_numba_matches_numpy_path(shape, dtype, log):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 30).astype(dtype)
    x0 = x.copy()
    out = np.empty_like(x)
    lse = nk.rows_into_(x, out, log)
    assert_array_equal(x, x0)  # input untouched
    ref_lse = sps.logsumexp(x.astype(np.float64), axis=1)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    assert_allclose(lse, ref_lse, rtol=rtol)
    if log:
        ref = x.astype(np.float64) - ref_lse[:, None]
        atol = rtol * np.abs(x).max()
        assert_allclose(out, ref, rtol=rtol, atol=atol)
    else:
        ref = sps.softmax(x.astype(np.float64), axis=1)
        assert_allclose(out, ref, rtol=5 * rtol, atol=4 * float(np.finfo(dtype).tiny))
    # the in-place kernel agrees (its softmax shifts by the row max, the
    # one-pass kernels by the max of the first entries: float32 sums round
    # differently)
    z = x.copy()
    lse2 = nk.rows_(z, log)
    assert_allclose(lse2, lse, rtol=1e-15 if dtype == np.float64 else np.finfo(dtype).eps)
    # exp(x - shift) carries the rounding of its argument, |x - shift| eps
    # relative, at different shifts in the two kernels
    rel = np.finfo(dtype).eps * (4 + 2 * np.ptp(x.astype(np.float64)))
    assert_allclose(z, out, rtol=rel, atol=4 * float(np.finfo(dtype).tiny))


@pytest.mark.parametrize("k", [4, 100])
@pytest.mark.parametrize("log", [False, True])
def test_rows_into_numba_special_values(k, log):
    # the contract softmax.functions builds on: -inf entries exact, and a row
    # with a NaN, a +inf or only -inf gets a non-finite logsumexp
    x = np.zeros((6, k))
    x[0, 1] = -np.inf
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    x[3] = -np.inf
    x[4, 0], x[4, 1] = -1e308, 1e308
    x[5, 0] = np.nan  # NaN first: the row max starts from it
    out = np.empty_like(x)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        lse = nk.rows_into_(x, out, log)
    assert np.all(np.isfinite(lse[[0, 4]]))
    assert not np.any(np.isfinite(lse[[1, 2, 3, 5]]))
    row0 = sps.log_softmax(np.delete(x[0], 1)) if log else sps.softmax(np.delete(x[0], 1))
    assert_allclose(np.delete(out[0], 1), row0, rtol=1e-15)
    assert out[0, 1] == (-np.inf if log else 0.0)
    if not log:
        assert_array_equal(out[4, :2], [0, 1])


def test_rows_into_dispatch(monkeypatch):
    # large same-dtype C-contiguous input takes the one-pass kernel; anything
    # else (other dtype, strided, overlapping) the copy path, with equal results
    monkeypatch.setattr(_kernels, "NUMBA_MIN_SIZE", 0)
    calls = []
    real = nk.rows_into_
    monkeypatch.setattr(nk, "rows_into_", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 7))
    out = np.empty_like(x)
    lse = _kernels.rows_into(x, out, False)
    assert calls == [1]
    out2 = np.empty((50, 7), np.float32)
    _kernels.rows_into(x, out2, False)  # float64 -> float32: copy path
    xt = np.asfortranarray(x)
    out3 = np.empty_like(x)
    lse3 = _kernels.rows_into(xt, out3, False)  # not C-contiguous: copy path
    assert calls == [1]
    assert_allclose(lse3, lse, rtol=1e-15)
    assert_allclose(out3, out, rtol=1e-15)
    assert_allclose(out2, out, rtol=1e-6)


# --------------------------------------------------------------------------
# small-input fast path of softmax / log_softmax
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(10,), (1, 10), (7, 3), (4, 8), (33,), (100, 10), (2, 2048), (1, 1)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_small_path_equals_general_path(shape, dtype, log):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    if x.size > 2:
        x.flat[1] = -np.inf  # -inf entries are exact on the small path
    x0 = x.copy()
    fast = F._np_small(x, -1, 1.0, log)
    assert fast is not None
    general = F._np_softmax(x, -1, 1.0, None, None, log)
    assert fast.dtype == dtype and fast.shape == x.shape
    if x.size > F._TINY:
        assert_array_equal(fast, general)  # the same formula, bit for bit
    else:  # Python floats: float64 math.exp, rounded once (within an ulp)
        eps = np.finfo(dtype).eps
        scale = np.abs(general[np.isfinite(general)]).max()  # log_softmax cancels
        assert_allclose(fast, general, rtol=2 * eps, atol=2 * eps * scale)
    assert_array_equal(x, x0)
    # and it is what the public functions return
    f = F.log_softmax if log else F.softmax
    assert_array_equal(f(x), fast)
    ref = (sps.log_softmax if log else sps.softmax)(x.astype(np.float64), axis=-1)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    assert_allclose(fast, ref, rtol=5 * rtol, atol=1e-300)


@pytest.mark.parametrize("log", [False, True])
def test_small_path_declines_what_it_does_not_handle(log):
    x = np.array([[1.0, 2.0, 3.0]])
    declined = [
        (x.astype(np.float16), -1, 1.0),
        (x.astype(np.int64), -1, 1.0),
        (x.tolist(), -1, 1.0),
        (x, 0, 1.0),
        (x, -1, 2.0),
        (x, -1, True),
        (x, np.int64(-1), 1.0),
        (np.zeros((2, 0)), -1, 1.0),
        (np.ones((2, 2, 2)), -1, 1.0),
        (np.ones((100, 100)), -1, 1.0),  # above _SMALL
        (np.array([[np.nan, 1.0]]), -1, 1.0),
        (np.array([[1.0, np.inf]]), -1, 1.0),
        (np.array([1.0, np.inf]), -1, 1.0),
        (np.full(40, -np.inf), -1, 1.0),
        (np.array([[-np.inf, -np.inf], [0.0, 1.0]]), -1, 1.0),
        (np.ma.masked_array(x), -1, 1.0),
    ]
    for a, axis, t in declined:
        assert F._np_small(a, axis, t, log) is None, (a, axis, t)


def test_tiny_path_nan_after_the_first_entry():
    # the Python-float path does not see a NaN past a row's first entry in
    # its max; the row still comes out all NaN, the others untouched
    for log in (False, True):
        f = F.log_softmax if log else F.softmax
        for x in (np.array([1.0, np.nan, 2.0]), np.array([[1.0, 2.0], [0.5, np.nan]])):
            got = f(x)
            rows = np.atleast_2d(got)
            assert np.isnan(rows[-1]).all()
            if x.ndim == 2:
                ref = (sps.log_softmax if log else sps.softmax)(x[0])
                assert_allclose(got[0], ref, rtol=1e-15)


def test_small_path_huge_range_no_warning():
    x = np.array([[-1e308, 1e308, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = F.softmax(x)
        ls = F.log_softmax(x)
    assert_array_equal(s, [[0.0, 1.0, 0.0]])
    assert ls[0, 1] == 0.0 and ls[0, 0] == -np.inf


def test_small_path_huge_maxima_no_warning():
    # the finiteness check sums the row maxima: an overflow there must not warn
    x = np.array([[1.1847317e38], [2.2180918e38]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(F.softmax(x), [[1.0], [1.0]])
        assert_array_equal(F.log_softmax(x), [[0.0], [0.0]])


@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0])
def test_float32_long_row_sums(scale):
    # float32 partial sums (blocks of _CHUNK entries, then float64) keep the
    # row sum of 200000 terms within a few float32 ulp: log-sum error below 4 eps
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((8, 200_000)) * scale).astype(np.float32)
    out = np.empty_like(x)
    lse = nk.rows_into_(x, out, False)
    ref = sps.logsumexp(x.astype(np.float64), axis=1)
    eps = float(np.finfo(np.float32).eps)
    assert np.abs(lse - ref).max() < 4 * eps
    assert np.abs(out.sum(axis=1, dtype=np.float64) - 1).max() < 4 * eps
    z = x.copy()
    assert np.abs(nk.rows_(z, True) - ref).max() < 4 * eps
