"""Property-based tests (hypothesis) of the softmax function family."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.special as sps
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmax.functions import log_softmax, logsumexp, softmax

FLOATS = [np.float16, np.float32, np.float64]


@st.composite
def arrays_and_axis(draw, special: bool = True):
    dtype = np.dtype(draw(st.sampled_from(FLOATS)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    info = np.finfo(dtype)
    finite = st.floats(
        min_value=float(info.min), max_value=float(info.max), width=info.bits, allow_nan=False
    )
    values = (
        st.one_of(finite, st.sampled_from([np.inf, -np.inf, np.nan, 0.0, float(info.max)]))
        if special
        else finite
    )
    x = draw(hnp.arrays(dtype, shape, elements=values))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return x, axis


@settings(max_examples=300, deadline=None)
@given(arrays_and_axis(), st.sampled_from([1.0, 0.0, 0.5, 3.0]))
# found by Hypothesis: the answer is below -max_float32 (tests/test_functions_extremes.py)
@example((np.array([-1.0141205e31, 3.4028235e38], np.float32), 0), 1.0)
def test_softmax_properties(xa, t):
    x, axis = xa
    x0 = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = softmax(x, axis, temperature=t)
        ls = log_softmax(x, axis, temperature=t)
        lse = logsumexp(x, axis)
    np.testing.assert_array_equal(x, x0)  # input untouched
    assert s.dtype == ls.dtype == lse.dtype == x.dtype
    assert s.shape == ls.shape == x.shape
    nan_row = np.any(np.isnan(x), axis=axis, keepdims=True)
    all_neg_inf = np.all(x == -np.inf, axis=axis, keepdims=True)
    # NaN exactly where the input row had one
    np.testing.assert_array_equal(np.isnan(s), np.broadcast_to(nan_row, x.shape))
    np.testing.assert_array_equal(np.isnan(ls), np.broadcast_to(nan_row, x.shape))
    np.testing.assert_array_equal(np.isnan(lse), np.squeeze(nan_row, axis))
    ok = ~np.broadcast_to(nan_row, x.shape)
    assert np.all((s[ok] >= 0) & (s[ok] <= 1))
    assert np.all(ls[ok] <= 0)
    sums = np.sum(s.astype(np.float64), axis=axis, keepdims=True)
    expected = np.where(all_neg_inf, 0.0, 1.0)
    tol = {2: 5e-3, 4: 1e-5, 8: 1e-12}[x.dtype.itemsize]
    good = ~nan_row
    np.testing.assert_allclose(sums[good], expected[good], atol=tol * x.shape[axis])
    # exp(log_softmax) == softmax
    np.testing.assert_allclose(
        np.exp(ls[ok].astype(np.float64)), s[ok].astype(np.float64), rtol=tol * 10, atol=tol
    )
    # logsumexp: -inf exactly for all -inf rows, +inf where a +inf entry and no NaN
    np.testing.assert_array_equal(
        np.squeeze(all_neg_inf, axis) & ~np.squeeze(nan_row, axis), lse == -np.inf
    )
    has_pos = np.any(x == np.inf, axis=axis) & ~np.squeeze(nan_row, axis)
    assert np.all(lse[has_pos] == np.inf)


@settings(max_examples=200, deadline=None)
@given(arrays_and_axis(special=False))
def test_finite_input_matches_scipy(xa):
    # scipy in float64 is the reference for finite input of every dtype
    x, axis = xa
    x64 = x.astype(np.float64)
    ref = sps.softmax(x64, axis=axis)
    tol = {2: 2e-3, 4: 2e-6, 8: 1e-13}[x.dtype.itemsize]
    tiny = float(np.finfo(x.dtype).tiny)
    np.testing.assert_allclose(softmax(x, axis).astype(np.float64), ref, rtol=tol, atol=tiny * 4)
    ref_lse = sps.logsumexp(x64, axis=axis)
    if np.all(np.isfinite(ref_lse)):
        # the float16/32 result must be the rounded float64 one
        # absolute slack: rounding of the terms (lse can cancel to ~0) and
        # the dtype's subnormal spacing
        info = np.finfo(x.dtype)
        atol = float(info.eps) * float(np.max(np.abs(x64), initial=0)) + float(
            info.smallest_subnormal
        )
        got = logsumexp(x, axis).astype(np.float64)
        np.testing.assert_allclose(got, ref_lse, rtol=tol, atol=atol)
