"""Tests of the softmax function family against independent references.

References: mpmath at 50 digits, SciPy, scikit-learn, PyTorch (a test
dependency), finite differences, and the numerics table of DESIGN.md section 3.
Every test runs on the NumPy kernels and on the
compiled kernels too (the ``kernel`` fixture).
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import scipy.special as sps
from numpy.testing import assert_allclose, assert_array_equal

from softmax import _kernels
from softmax.functions import (
    cross_entropy,
    log_softmax,
    logsumexp,
    softmax,
    softmax_jacobian,
    softmax_jvp,
    softmax_vjp,
)

inf, nan = np.inf, np.nan
mpmath.mp.dps = 50

# numba is a test dependency: both kernels are always tested (a missing numba
# fails here instead of silently halving the suite).
import numba  # noqa: E402, F401

KERNELS = ["numpy", "numba"]


@pytest.fixture(params=KERNELS, autouse=True)
def kernel(request, monkeypatch):
    """Run each test with the NumPy kernels and with the numba kernels."""
    monkeypatch.setattr(_kernels, "USE_NUMBA", request.param == "numba")
    monkeypatch.setattr(_kernels, "NUMBA_MIN_SIZE", 0)  # small test arrays too
    return request.param


# ---------------------------------------------------------------- references


def mp_rows(x: np.ndarray):
    """softmax, log_softmax, logsumexp of each row of 2-D x in 50-digit mpmath."""
    sm, lsm, lse = [], [], []
    for row in x:
        terms = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        total = mpmath.fsum(terms)
        log_total = mpmath.log(total)
        sm.append([float(t / total) for t in terms])
        lsm.append([float(mpmath.mpf(float(v)) - log_total) for v in row])
        lse.append(float(log_total))
    return np.array(sm), np.array(lsm), np.array(lse)


def assert_close(got, ref, rtol, atol):
    """assert_allclose with an array ``atol`` (one tolerance per entry)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    err = np.abs(got - ref)
    ok = same | (err <= np.broadcast_to(atol, ref.shape) + rtol * np.abs(ref))
    assert np.all(ok), f"max error {np.max(np.where(ok, 0, err))} at {np.argwhere(~ok)[:5]}"


# ------------------------------------------------------------ worked example


def test_worked_example():
    # the example of the softmax article (Wikipedia), to three decimals
    expected = [0.024, 0.064, 0.175, 0.475, 0.024, 0.064, 0.175]
    assert_array_equal(np.round(softmax([1, 2, 3, 4, 1, 2, 3]), 3), expected)


# ------------------------------------------------------ high precision (mpmath)


@pytest.mark.parametrize(
    ("shape", "scale"),
    [((4, 1), 1.0), ((5, 3), 1.0), ((6, 10), 30.0), ((3, 70), 5.0), ((2, 300), 1.0)],
)
def test_float64_matches_mpmath(shape, scale):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * scale
    sm, lsm, lse = mp_rows(x)
    assert_allclose(softmax(x), sm, rtol=1e-13, atol=0)
    assert_allclose(logsumexp(x), lse, rtol=1e-13, atol=0)
    # log_softmax = x - lse cancels where an entry carries almost all the
    # mass, so its error is relative to the size of the terms, not the result
    atol = 1e-15 * np.max(np.abs(x), axis=1, keepdims=True)
    assert_close(log_softmax(x), lsm, rtol=1e-13, atol=atol)


def test_huge_finite_values_match_mpmath():
    x = np.array([[1e308, 1e308 - 1e292, -1e308], [-1e308, -1e308, -1e308], [700.0, 710.0, 0.0]])
    sm, _, lse = mp_rows(x)
    got = softmax(x)
    assert np.all(np.isfinite(got))
    assert_allclose(got, sm, rtol=1e-13, atol=1e-300)
    assert_allclose(logsumexp(x), lse, rtol=1e-13)
    ref2 = [
        -10.0 - np.log1p(np.exp(-10.0)),
        -np.log1p(np.exp(-10.0)),
        -710 - np.log1p(np.exp(-10.0)),
    ]
    assert_allclose(log_softmax(x)[2], ref2, rtol=1e-13, atol=1e-15 * 710)


# ----------------------------------------------------------- numerics table


def test_minus_inf_entries():
    x = np.array([[1.0, -inf, 2.0, -inf]])
    ref = sps.softmax(np.array([1.0, 2.0]))
    assert_allclose(softmax(x), [[ref[0], 0.0, ref[1], 0.0]], rtol=1e-15)
    lsm = log_softmax(x)
    assert_allclose(lsm[0, [0, 2]], np.log(ref), rtol=1e-15)
    assert np.all(lsm[0, [1, 3]] == -inf)
    assert_allclose(logsumexp(x), sps.logsumexp([1.0, 2.0]), rtol=1e-15)


@pytest.mark.parametrize("shape", [(1, 3), (4, 1), (2, 50), (3, 100)])
def test_all_minus_inf_row(shape):
    x = np.zeros(shape)
    x[0] = -inf
    assert_array_equal(softmax(x)[0], 0.0)
    assert np.all(log_softmax(x)[0] == -inf)
    assert logsumexp(x)[0] == -inf
    # the other rows are unaffected
    assert_allclose(softmax(x)[1:], sps.softmax(x[1:], axis=-1), rtol=1e-15)


@pytest.mark.parametrize("k", [3, 80])
def test_plus_inf_entries_split_the_mass(k):
    x = np.zeros((2, k))
    x[0, [0, 2]] = inf
    x[0, 1] = 1e308
    x[1, 1] = inf
    x[1, 2] = -inf
    sm = softmax(x)
    expected0 = np.zeros(k)
    expected0[[0, 2]] = 0.5
    assert_array_equal(sm[0], expected0)
    assert_array_equal(sm[1], np.eye(k)[1])
    lsm = log_softmax(x)
    assert_allclose(lsm[0, [0, 2]], -np.log(2), rtol=1e-15)
    assert np.all(np.delete(lsm[0], [0, 2]) == -inf)
    assert lsm[1, 1] == 0.0
    assert_array_equal(logsumexp(x), [inf, inf])


@pytest.mark.parametrize("k", [3, 100])
def test_nan_row_is_all_nan(k):
    x = np.ones((3, k))
    x[1, 1] = nan
    x[2, 0] = inf  # +inf does not hide a NaN elsewhere
    x[2, 2] = nan
    for f in (softmax, log_softmax):
        got = f(x)
        assert np.all(np.isnan(got[1:]))
        assert not np.any(np.isnan(got[0]))
    lse = logsumexp(x)
    assert np.isnan(lse[1]) and np.isnan(lse[2]) and np.isfinite(lse[0])


def test_empty_axis():
    x = np.zeros((3, 0))
    assert softmax(x).shape == (3, 0)
    assert log_softmax(x).shape == (3, 0)
    assert_array_equal(logsumexp(x), [-inf, -inf, -inf])
    assert softmax(np.zeros((0, 4))).shape == (0, 4)
    lse, sign = logsumexp(x, b=np.ones((3, 0)), return_sign=True)
    assert_array_equal(lse, [-inf] * 3)
    assert_array_equal(sign, [0.0] * 3)
    assert logsumexp(np.zeros((0, 4))).shape == (0,)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, np.bool_])
def test_int_and_bool_input_in_float64(dtype):
    x = np.array([[1, 0, 1], [0, 0, 1]], dtype=dtype)
    ref = sps.softmax(x.astype(np.float64), axis=-1)
    for f, r in ((softmax, ref), (log_softmax, np.log(ref))):
        got = f(x)
        assert got.dtype == np.float64
        assert_allclose(got, r, rtol=1e-15)
    assert logsumexp(x).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 200])
def test_float_dtype_kept(dtype, k):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, k)) * 3).astype(dtype)
    ref_sm, ref_lsm, ref_lse = mp_rows(x.astype(np.float64))
    rtol = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-13}[dtype]
    sm, lsm, lse = softmax(x), log_softmax(x), logsumexp(x)
    assert sm.dtype == lsm.dtype == lse.dtype == dtype
    tiny = float(np.finfo(dtype).tiny)
    assert_allclose(sm.astype(np.float64), ref_sm, rtol=rtol, atol=tiny * 16)
    assert_allclose(lse.astype(np.float64), ref_lse, rtol=rtol)
    atol = rtol * np.max(np.abs(ref_lsm), axis=1, keepdims=True)
    assert_close(lsm, ref_lsm, rtol=rtol, atol=atol)


# --------------------------------------------------------------- temperature


def test_temperature_is_softmax_of_scaled_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6)) * 10
    for t in (0.3, 2.5):
        sm, lsm, _ = mp_rows(x / t)
        assert_allclose(softmax(x, temperature=t), sm, rtol=1e-13)
        atol = 1e-15 * np.max(np.abs(x / t))
        assert_allclose(log_softmax(x, temperature=t), lsm, rtol=1e-13, atol=atol)


def test_temperature_limits():
    x = np.array([[0.1, 2.0, -3.0, 1.9], [5.0, 5.0, 1.0, -inf]])
    # T -> 0: one-hot on the max (ties split); T = 0 is that limit exactly
    hard = np.array([[0, 1, 0, 0], [0.5, 0.5, 0, 0]])
    assert_allclose(softmax(x, temperature=1e-4), hard, atol=1e-12)
    assert_array_equal(softmax(x, temperature=0), hard)
    assert_array_equal(softmax(x, temperature=0.0), softmax(x, temperature=1e-300))
    lh = log_softmax(x, temperature=0)
    assert lh[0, 1] == 0 and lh[1, 0] == lh[1, 1] == -np.log(2)
    assert np.all(lh[0, [0, 2, 3]] == -inf) and np.all(lh[1, 2:] == -inf)
    # large T: uniform over the entries that are not -inf
    assert_allclose(
        softmax(x, temperature=1e12), [[0.25] * 4, [1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-10
    )


def test_temperature_extremes_no_overflow():
    x = np.array([[1e308, -1e308, 0.0], [2.0, 3.0, 1.0]])
    # small T: x / T alone would overflow
    assert_array_equal(softmax(x, temperature=1e-300), [[1, 0, 0], [0, 1, 0]])
    # large T: x - max alone would overflow; the true values are finite
    lsm = log_softmax(x, temperature=7.0)
    assert_allclose(lsm[0], [0.0, -(1e308 / 7) * 2, -1e308 / 7], rtol=1e-15)


@pytest.mark.parametrize("bad", [-1.0, nan, inf, -inf, "1", None, True])
@pytest.mark.parametrize("f", [softmax, log_softmax, softmax_jacobian])
def test_invalid_temperature(f, bad):
    with pytest.raises(ValueError, match="temperature"):
        f([1.0, 2.0], temperature=bad)


def test_derivatives_reject_zero_temperature():
    with pytest.raises(ValueError, match="positive temperature"):
        softmax_jvp([1.0, 2.0], [1.0, 0.0], temperature=0)


# ---------------------------------------------------------------- where mask


@pytest.mark.parametrize("k", [6, 90])
def test_masked_equals_unmasked_slice(k):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, k)) * 4
    mask = rng.random((5, k)) < 0.6
    mask[:, 0] = True
    mask[3] = False  # a fully masked row
    x[~mask] = rng.choice([nan, inf, -inf, 1e308], size=int((~mask).sum()))  # ignored
    sm, lsm, lse = softmax(x, where=mask), log_softmax(x, where=mask), logsumexp(x, where=mask)
    for i in range(5):
        keep = mask[i]
        assert np.all(sm[i, ~keep] == 0) and np.all(lsm[i, ~keep] == -inf)
        if keep.any():
            assert_allclose(sm[i, keep], sps.softmax(x[i, keep]), rtol=1e-14)
            assert_allclose(lsm[i, keep], sps.log_softmax(x[i, keep]), rtol=1e-14, atol=1e-15)
            assert_allclose(lse[i], sps.logsumexp(x[i, keep]), rtol=1e-14)
        else:
            assert lse[i] == -inf
    assert_allclose(sm.sum(axis=1), [1, 1, 1, 0, 1], rtol=1e-14)


def test_where_broadcasts_and_temperature():
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    mask = np.array([True, False, True])
    got = softmax(x, where=mask, temperature=0.5)
    assert_allclose(got[:, [0, 2]], sps.softmax(x[:, [0, 2]] / 0.5, axis=1), rtol=1e-14)
    assert np.all(got[:, 1] == 0)
    assert_array_equal(softmax(x, where=mask, temperature=0), [[0, 0, 1], [1, 0, 0]])


def test_where_errors():
    with pytest.raises(ValueError, match="broadcast"):
        softmax(np.zeros((2, 3)), where=np.ones(4, bool))
    with pytest.raises(TypeError, match="boolean"):
        softmax(np.zeros((2, 3)), where=np.ones(3))


# ------------------------------------------------------------- axes and out


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_any_axis_matches_scipy(axis):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5)) * 5
    assert_allclose(softmax(x, axis), sps.softmax(x, axis=axis), rtol=1e-14)
    assert_allclose(log_softmax(x, axis), sps.log_softmax(x, axis=axis), rtol=1e-13, atol=1e-14)
    assert_allclose(logsumexp(x, axis), sps.logsumexp(x, axis=axis), rtol=1e-14)
    assert_allclose(
        logsumexp(x, axis, keepdims=True), sps.logsumexp(x, axis=axis, keepdims=True), rtol=1e-14
    )


@pytest.mark.parametrize("axis", [None, (0, 2), (2, 0), (1,), (-1, -2), (0, 1, 2)])
def test_several_axes_match_scipy(axis):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 4, 5)) * 5
    x[0, 1, 2] = -inf
    assert_allclose(softmax(x, axis), sps.softmax(x, axis=axis), rtol=1e-14, atol=1e-300)
    assert_allclose(log_softmax(x, axis), sps.log_softmax(x, axis=axis), rtol=1e-13, atol=1e-14)
    for keepdims in (False, True):
        got = logsumexp(x, axis, keepdims=keepdims)
        ref = sps.logsumexp(x, axis=axis, keepdims=keepdims)
        assert np.shape(got) == np.shape(ref)
        assert_allclose(got, ref, rtol=1e-14)
    b = rng.standard_normal((4, 5))  # broadcasts; negative weights need the sign
    lse, sign = logsumexp(x, axis, b=b, return_sign=True)
    lse_ref, sign_ref = sps.logsumexp(x, axis=axis, b=b, return_sign=True)
    assert_allclose(lse, lse_ref, rtol=1e-13)
    assert_array_equal(sign, sign_ref)


def test_several_axes_equal_the_flattened_slice():
    """A masked softmax over axes (0, 2) is the softmax of the kept entries of that slab."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 4, 5))
    mask = rng.random((3, 1, 5)) > 0.4  # broadcasts over axis 1
    got = softmax(x, (0, 2), where=mask, temperature=0.5)
    for j in range(4):
        kept = x[:, j, :][mask[:, 0, :]]
        expect = np.zeros((3, 5))
        expect[mask[:, 0, :]] = sps.softmax(kept / 0.5)
        assert_allclose(got[:, j, :], expect, rtol=1e-14)
    out = np.empty_like(x)
    assert softmax(x, None, out=out) is out
    assert_allclose(out.sum(), 1.0, rtol=1e-14)
    assert float(softmax(np.float64(3.0), axis=None)) == 1.0  # a 0-d input has one entry
    # no axes: every entry its own one-long row (-inf: an all -inf row, 0 by policy)
    x[0, 0, 0] = -inf
    assert_array_equal(softmax(x, ()), np.where(x == -inf, 0.0, 1.0))
    assert_array_equal(logsumexp(x, ()), x)
    with pytest.raises(ValueError, match="twice"):
        log_softmax(x, (0, -3))
    with pytest.raises(np.exceptions.AxisError, match="out of bounds"):
        logsumexp(x, (0, 3))
    with pytest.raises(ValueError, match="out has shape"):
        softmax(x, (0, 1), out=np.empty((3, 4)))


def test_axis_with_special_rows():
    x = np.zeros((4, 3))
    x[1, 0] = inf
    x[2, 2] = nan
    got = softmax(x, axis=0)
    assert_array_equal(got[:, 0], [0, 1, 0, 0])
    assert_allclose(got[:, 1], 0.25)
    assert np.all(np.isnan(got[:, 2]))


@pytest.mark.parametrize("axis", [2, -3, 5])
def test_axis_out_of_range(axis):
    for f in (softmax, log_softmax, logsumexp, softmax_jacobian):
        with pytest.raises(np.exceptions.AxisError, match="out of bounds"):
            f(np.zeros((2, 3)), axis)
    with pytest.raises(ValueError, match="0-d"):
        softmax(3.0)


def test_out_and_input_untouched():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5))
    x[0, 0] = inf
    x[1, 1] = -inf
    x0 = x.copy()
    for f in (softmax, log_softmax):
        out = np.empty_like(x)
        res = f(x, out=out)
        assert res is out
        assert_array_equal(out, f(x))
        assert_array_equal(x, x0)
        for t in (0, 0.5, 3):
            f(x, temperature=t, where=x > -1)
            assert_array_equal(x, x0)
    logsumexp(x, b=np.ones(5), where=x > 0)
    softmax_jacobian(x)
    softmax_jvp(x, x)
    cross_entropy(x[1:], np.arange(5) % 5)
    assert_array_equal(x, x0)
    # in place on request, float32 out for float64 input
    y = x.copy()
    softmax(y, out=y)
    assert_array_equal(y, softmax(x))
    out32 = np.empty(x.shape, np.float32)
    softmax(x, out=out32)
    assert_allclose(out32, softmax(x), rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        softmax(x, out=np.empty((5, 5)))
    with pytest.raises(TypeError, match="dtype"):
        softmax(x, out=np.empty(x.shape, dtype=np.int64))


def test_strided_and_fortran_input():
    rng = np.random.default_rng(15)
    base = rng.standard_normal((40, 30)) * 5
    for x in (base[:, ::3], base[::2], np.asfortranarray(base), base.T):
        assert_allclose(softmax(x), sps.softmax(x, axis=-1), rtol=1e-14)
        assert_allclose(log_softmax(x, 0), sps.log_softmax(x, axis=0), rtol=1e-13, atol=1e-14)
        assert_allclose(logsumexp(x), sps.logsumexp(x, axis=-1), rtol=1e-14)


def test_large_input_with_special_rows():
    # big enough for the blocked kernels (and numba), with special rows spread out
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3000, 40)) * 10
    x[5, 3] = inf
    x[700, :] = -inf
    x[2999, 1] = nan
    x[1500, 7] = -inf
    ref = sps.softmax(np.where(np.isinf(x) | np.isnan(x), 0, x), axis=1)  # placeholder rows
    got = softmax(x)
    normal = np.setdiff1d(np.arange(3000), [5, 700, 2999, 1500])
    assert_allclose(got[normal], ref[normal], rtol=1e-13)
    assert_array_equal(got[5], np.eye(40)[3])
    assert_array_equal(got[700], 0.0)
    assert np.all(np.isnan(got[2999]))
    r1500 = np.delete(x[1500], 7)
    assert_allclose(np.delete(got[1500], 7), sps.softmax(r1500), rtol=1e-13)
    assert got[1500, 7] == 0


@pytest.mark.parametrize("bad", [np.array([1 + 1j, 2]), np.array([1, "a"], dtype=object)])
def test_bad_dtypes(bad):
    for f in (softmax, log_softmax, logsumexp):
        with pytest.raises(TypeError, match=r"complex|unsupported"):
            f(bad)


def test_no_runtime_warnings_on_special_values():
    x = np.array([[1e308, -1e308, inf, -inf, nan, 0.0]] * 3)
    x[1, 4] = 1.0
    x[2] = -inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (0, 1e-300, 1, 1e300):
            softmax(x, temperature=t)
            log_softmax(x, temperature=t)
        logsumexp(x)
        logsumexp(x, b=np.array([1, -1, 0, 2, 1, 3.0]), return_sign=True)


# --------------------------------------------------------------- logsumexp


def test_logsumexp_matches_scipy_with_weights():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 7)) * 20
    b = rng.standard_normal((4, 7))
    got, sign = logsumexp(x, b=b, return_sign=True)
    ref, ref_sign = sps.logsumexp(x, axis=-1, b=b, return_sign=True)
    assert_allclose(got, ref, rtol=1e-12)
    assert_array_equal(sign, ref_sign)
    # negative sum without return_sign: NaN, as scipy
    neg = ref_sign < 0
    assert np.all(np.isnan(logsumexp(x, b=b)[neg]))
    bp = np.abs(b)
    assert_allclose(logsumexp(x, b=bp), sps.logsumexp(x, axis=-1, b=bp), rtol=1e-13)
    assert_allclose(
        logsumexp(x, 0, b=bp[0:1], keepdims=True),
        sps.logsumexp(x, axis=0, b=np.broadcast_to(bp[0:1], x.shape), keepdims=True),
        rtol=1e-13,
    )


@pytest.mark.parametrize(
    ("x", "b"),
    [
        ([inf, 2.0], [0.0, 1.0]),  # zero weight ignores the inf
        ([inf, inf], [1.0, -1.0]),  # inf - inf: NaN
        ([inf, 2.0], [-1.0, 1.0]),  # +inf with sign -1
        ([1.0, 1.0], [1.0, -1.0]),  # exact cancellation: -inf, sign 0
        ([-inf, -inf], [1.0, 1.0]),
        ([1e308, 1e308], [1.0, 1.0]),
        ([1.0, 2.0], [nan, 1.0]),
    ],
)
def test_logsumexp_special_weights_match_scipy(x, b):
    got = logsumexp(np.array(x), b=np.array(b), return_sign=True)
    ref = sps.logsumexp(np.array(x), b=np.array(b), return_sign=True)
    assert_allclose(got[0], ref[0], rtol=1e-15)
    assert_allclose(got[1], ref[1])


def test_logsumexp_sign_without_weights():
    lse, sign = logsumexp(np.array([[1.0, 2.0], [-inf, -inf], [nan, 1.0]]), return_sign=True)
    assert_array_equal(sign[:2], [1.0, 0.0]) and np.isnan(sign[2])
    assert lse[1] == -inf


def test_logsumexp_b_shape_error():
    with pytest.raises(ValueError, match="broadcast"):
        logsumexp(np.zeros((2, 3)), b=np.ones((4,)))


def test_softmax_is_gradient_of_logsumexp():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(6) * 3
    h = 1e-6
    grad = np.array([(logsumexp(x + h * e) - logsumexp(x - h * e)) / (2 * h) for e in np.eye(6)])
    assert_allclose(softmax(x), grad, rtol=1e-8)
    # and exactly, with mpmath's numerical derivative at 50 digits
    f = lambda i, t: mpmath.log(  # noqa: E731
        mpmath.fsum(
            mpmath.exp(mpmath.mpf(float(v)) + (t if j == i else 0)) for j, v in enumerate(x)
        )
    )
    exact = [float(mpmath.diff(lambda t, i=i: f(i, t), 0)) for i in range(6)]
    assert_allclose(softmax(x), exact, rtol=1e-13)


# ------------------------------------------------- logsumexp with temperature


def mp_lse_t(row, t):
    """``T * log(sum(exp(x / T)))`` of one row at 50 digits (-inf entries skipped)."""
    terms = [mpmath.exp(mpmath.mpf(float(v)) / mpmath.mpf(t)) for v in row if v != -inf]
    return float(mpmath.mpf(t) * mpmath.log(mpmath.fsum(terms)))


@pytest.mark.parametrize("t", [1e-3, 0.3, 2.5, 1e4])
def test_logsumexp_temperature_matches_mpmath(t):
    rng = np.random.default_rng(31)
    x = rng.standard_normal((5, 9)) * 10
    x[1, :3] = -inf
    ref = [mp_lse_t(r, t) for r in x]
    assert_allclose(logsumexp(x, temperature=t), ref, rtol=1e-14)
    # SciPy's logsumexp of x / T, times T, where x / T stays in range
    assert_allclose(logsumexp(x, temperature=t), t * sps.logsumexp(x / t, axis=-1), rtol=1e-13)
    # the other axis, keepdims, axis tuples and None
    assert_allclose(
        logsumexp(x, 0, temperature=t, keepdims=True),
        [[mp_lse_t(c, t) for c in x.T]],
        rtol=1e-14,
    )
    assert_allclose(logsumexp(x, None, temperature=t), mp_lse_t(x.ravel(), t), rtol=1e-14)


def test_logsumexp_temperature_huge_values_match_mpmath():
    # x / T overflows the float range; T * logsumexp(x / T) does not
    x = np.array([[1e307, 0.999e307, -1e307], [1e308, 1e308, 0.0], [-1e308, 1.0, 2.0]])
    for t in (1e-3, 0.5, 7.0):
        ref = [mp_lse_t(r, t) for r in x]
        got = logsumexp(x, temperature=t)
        assert np.all(np.isfinite(got))
        assert_allclose(got, ref, rtol=1e-14)


def test_logsumexp_temperature_is_consistent_with_softmax():
    rng = np.random.default_rng(32)
    x = rng.standard_normal(6) * 3
    for t in (0.2, 4.0):
        # its gradient is softmax(x, T) (finite differences)
        h = 1e-6
        grad = [
            (logsumexp(x + h * e, temperature=t) - logsumexp(x - h * e, temperature=t)) / (2 * h)
            for e in np.eye(6)
        ]
        assert_allclose(grad, sps.softmax(x / t), rtol=1e-7, atol=1e-9)
        # log_softmax(x, T) = (x - lse_T(x)) / T
        lse = logsumexp(x, temperature=t)
        assert_allclose(log_softmax(x, temperature=t), (x - lse) / t, rtol=1e-13, atol=1e-14)
        # max <= lse_T <= max + T log K
        assert x.max() <= lse <= x.max() + t * np.log(6)


def test_logsumexp_zero_temperature_is_the_max():
    x = np.array([[0.1, 2.0, -3.0, 2.0], [-inf] * 4, [1.0, inf, 0.0, 2.0], [1.0, nan, inf, 0.0]])
    got = logsumexp(x, temperature=0)
    assert_array_equal(got[:3], [2.0, -inf, inf]) and np.isnan(got[3])
    # the limit T -> 0+: two tied maxima add T log 2, which vanishes
    assert_allclose(logsumexp(x[:1], temperature=1e-9), [2.0 + 1e-9 * np.log(2)], rtol=1e-15)
    lse, sign = logsumexp(x, temperature=0, return_sign=True)
    assert_array_equal(lse[:3], got[:3])
    assert_array_equal(sign[:3], [1.0, 0.0, 1.0]) and np.isnan(sign[3])
    # masks and empty axes
    assert_array_equal(logsumexp(x[:1], temperature=0, where=x[:1] < 1), [0.1])
    assert_array_equal(logsumexp(np.zeros((2, 0)), temperature=0), [-inf, -inf])
    with pytest.raises(ValueError, match="weights b"):
        logsumexp(x, temperature=0, b=np.ones(4))


def test_logsumexp_temperature_with_weights_and_special_values():
    rng = np.random.default_rng(33)
    x = rng.standard_normal((3, 5))
    b = rng.standard_normal((3, 5))
    for t in (0.5, 3.0):
        got, sign = logsumexp(x, b=b, temperature=t, return_sign=True)
        ref, ref_sign = sps.logsumexp(x / t, axis=-1, b=b, return_sign=True)
        assert_allclose(got, t * ref, rtol=1e-13)
        assert_array_equal(sign, ref_sign)
    special = np.array([[1.0, inf, 2.0], [-inf, -inf, -inf], [nan, 1.0, 2.0]])
    got = logsumexp(special, temperature=0.25)
    assert got[0] == inf and got[1] == -inf and np.isnan(got[2])
    for bad in (-1.0, nan, inf, "1"):
        with pytest.raises(ValueError, match="temperature"):
            logsumexp(x, temperature=bad)


def test_shift_invariance():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 9))
    for c in (-700.0, 1e3, 1e6):
        assert_allclose(softmax(x + c), softmax(x), rtol=1e-9)  # x + c rounds at ~1e-10
        assert_allclose(softmax(x + c), sps.softmax(x, axis=1), rtol=1e-9)


# ------------------------------------------------------ Jacobian and products


def fd_jacobian(x, axis=-1, t=1.0, h=1e-6):
    """Central finite-difference Jacobian of scipy's softmax of one vector."""
    k = x.size
    cols = [
        (sps.softmax((x + h * e) / t, axis=axis) - sps.softmax((x - h * e) / t, axis=axis))
        / (2 * h)
        for e in np.eye(k)
    ]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("t", [1.0, 0.7])
def test_jacobian_matches_finite_differences(t):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5))
    jac = softmax_jacobian(x, temperature=t)
    assert jac.shape == (3, 5, 5)
    for i in range(3):
        assert_allclose(jac[i], fd_jacobian(x[i], t=t), atol=1e-8)
        assert_allclose(jac[i], jac[i].T, atol=1e-17)


def test_jacobian_other_axis_shape():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 3, 2))
    jac = softmax_jacobian(x, axis=1)
    assert jac.shape == (4, 2, 3, 3)
    assert_allclose(jac[1, 0], fd_jacobian(x[1, :, 0]), atol=1e-8)


@pytest.mark.parametrize("axis", [-1, 0])
def test_jvp_vjp_match_finite_differences(axis):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 6))
    v = rng.standard_normal((4, 6))
    h = 1e-6
    fd = (sps.softmax(x + h * v, axis=axis) - sps.softmax(x - h * v, axis=axis)) / (2 * h)
    assert_allclose(softmax_jvp(x, v, axis), fd, atol=1e-8)
    # vjp: g^T J, with J from finite differences column by column
    g = rng.standard_normal((4, 6))
    xm, gm = np.moveaxis(x, axis, -1), np.moveaxis(g, axis, -1)
    ref = np.stack([gm[i] @ fd_jacobian(xm[i]) for i in range(xm.shape[0])])
    assert_allclose(np.moveaxis(softmax_vjp(x, g, axis), axis, -1), ref, atol=1e-8)
    t = 2.0
    fd_t = (sps.softmax((x + h * v) / t, axis=axis) - sps.softmax((x - h * v) / t, axis=axis)) / (
        2 * h
    )
    assert_allclose(softmax_jvp(x, v, axis, temperature=t), fd_t, atol=1e-8)


def test_products_broadcast_and_errors():
    x = np.zeros((2, 3))
    assert_allclose(softmax_jvp(x, np.array([1.0, 0.0, 0.0])), [[2 / 9, -1 / 9, -1 / 9]] * 2)
    with pytest.raises(ValueError, match="broadcast"):
        softmax_jvp(x, np.ones(4))
    with pytest.raises(ValueError, match="broadcast"):
        softmax_vjp(x, np.ones((3, 3)))


# ------------------------------------------------------------ cross_entropy


def test_cross_entropy_matches_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(12)
    logits = rng.standard_normal((50, 4)) * 3
    y = rng.integers(0, 4, 50)
    w = rng.random(50)
    p = sps.softmax(logits, axis=1)
    assert_allclose(cross_entropy(logits, y), log_loss(y, p, labels=range(4)), rtol=1e-12)
    assert_allclose(
        cross_entropy(logits, y, sample_weight=w),
        log_loss(y, p, sample_weight=w, labels=range(4)),
        rtol=1e-12,
    )
    assert_allclose(
        cross_entropy(logits, y, reduction="none"), -np.log(p[np.arange(50), y]), rtol=1e-12
    )
    # probability targets equal to one-hot rows give the same loss
    assert_allclose(cross_entropy(logits, np.eye(4)[y]), log_loss(y, p, labels=range(4)))


def test_cross_entropy_huge_logits_finite():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    assert_allclose(cross_entropy(logits, [1, 1], reduction="none"), [1000.0, 1000.0])
    # a zero target where the model puts no mass contributes 0 (0 log 0 = 0)
    assert cross_entropy(np.array([[0.0, -inf]]), np.array([[1.0, 0.0]])) == 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_matches_torch(reduction, eps, weighted, soft):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((8, 5)) * 2
    if soft:
        target = rng.random((8, 5))
        target /= target.sum(axis=1, keepdims=True)
        tt = torch.tensor(target)
    else:
        target = rng.integers(0, 5, 8)
        tt = torch.tensor(target)
    cw = rng.random(5) + 0.5 if weighted else None
    ref = F.cross_entropy(
        torch.tensor(logits),
        tt,
        weight=None if cw is None else torch.tensor(cw),
        label_smoothing=eps,
        reduction=reduction,
    ).numpy()
    got = cross_entropy(logits, target, class_weight=cw, label_smoothing=eps, reduction=reduction)
    assert_allclose(got, ref, rtol=1e-12)


def test_cross_entropy_class_axis():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    logits = rng.standard_normal((3, 4, 5))  # (N, C, d) as torch wants it
    y = rng.integers(0, 4, (3, 5))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(y)).item()
    assert_allclose(cross_entropy(logits, y, axis=1), ref, rtol=1e-12)


@pytest.mark.parametrize(
    ("target", "err", "match"),
    [
        (np.array([0, 3]), ValueError, r"in \[0, 3\)"),
        (np.array([-1, 0]), ValueError, r"in \[0, 3\)"),
        (np.array([[0.5, 0.6, -0.1], [1, 0, 0]]), ValueError, "non-negative"),
        (np.array([[0.5, 0.6, 0.1], [1, 0, 0]]), ValueError, "sum to 1"),
        (np.array([0.5, 1.0]), TypeError, "integers"),
        (np.array([0, 1, 2]), ValueError, "fits neither"),
    ],
)
def test_cross_entropy_errors(target, err, match):
    with pytest.raises(err, match=match):
        cross_entropy(np.zeros((2, 3)), target)


def test_cross_entropy_empty_and_zero_weights():
    torch = pytest.importorskip("torch")
    empty = np.zeros((0, 3))
    ref = torch.nn.functional.cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=int))
    assert np.isnan(cross_entropy(empty, np.zeros(0, int))) and torch.isnan(ref)
    assert cross_entropy(empty, np.zeros(0, int), reduction="sum") == 0.0
    assert np.isnan(cross_entropy(np.zeros((2, 3)), [0, 1], sample_weight=[0.0, 0.0]))


def test_cross_entropy_argument_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(x, [0, 1], reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(x, [0, 1], label_smoothing=1.5)
    with pytest.raises(ValueError, match="class_weight"):
        cross_entropy(x, [0, 1], class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="sample_weight"):
        cross_entropy(x, [0, 1], sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-negative"):
        cross_entropy(x, [0, 1], sample_weight=[1.0, -2.0])
