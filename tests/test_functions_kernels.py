"""Tests of the in-place row kernels (softmax._kernels), NumPy and numba paths."""

from __future__ import annotations

import subprocess
import sys
import warnings

# numba is a test dependency: both kernels are always tested (a missing numba
# fails here instead of silently halving the suite).
import numba  # noqa: F401
import numpy as np
import pytest
import scipy.special as sps
from numpy.testing import assert_allclose, assert_array_equal

from softmax import _kernels

PATHS = ["numpy", "numba"]


@pytest.fixture(params=PATHS, autouse=True)
def path(request, monkeypatch):
    monkeypatch.setattr(_kernels, "USE_NUMBA", request.param == "numba")
    monkeypatch.setattr(_kernels, "NUMBA_MIN_SIZE", 0)  # small test arrays too
    return request.param


SHAPES = [(1, 1), (5, 1), (7, 3), (3000, 10), (33, 64), (33, 65), (17, 1000), (2, 70000)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_scipy(shape, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 20).astype(dtype)
    ref_lse = sps.logsumexp(x.astype(np.float64), axis=1)
    ref_sm = sps.softmax(x.astype(np.float64), axis=1)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    z = x.copy()
    lse = _kernels.softmax_rows_(z)
    assert lse.dtype == np.float64 and lse.shape == (shape[0],)
    assert z.dtype == dtype
    assert_allclose(lse, ref_lse, rtol=rtol)
    tiny = float(np.finfo(dtype).tiny)
    assert_allclose(z, ref_sm, rtol=rtol * 5, atol=tiny * 4)
    z = x.copy()
    lse2 = _kernels.log_softmax_rows_(z)
    assert_allclose(lse2, ref_lse, rtol=rtol)
    # log-softmax error is relative to the terms (x - lse cancels)
    atol = rtol * np.max(np.abs(x.astype(np.float64))) + tiny
    assert_allclose(z, x.astype(np.float64) - ref_lse[:, None], rtol=rtol, atol=atol)
    # the out-of-place helper gives the same, leaving its input alone
    x0 = x.copy()
    out = np.empty_like(x)
    # (the one-pass kernel shifts by the max of the first entries, this one by
    # the row max: float32 partial sums round differently)
    assert_allclose(_kernels.rows_into(x, out, False), lse, rtol=float(np.finfo(dtype).eps))
    assert_array_equal(x, x0)
    assert_allclose(out, ref_sm, rtol=rtol * 5, atol=tiny * 4)


def test_exp_accuracy_down_to_underflow():
    # softmax([0, -a]) = [1, e^-a] / (1 + e^-a): checks the kernels' exp over
    # the whole range, including gradual underflow to subnormals and to 0
    a = np.concatenate([np.linspace(0, 745.2, 20001), [746.0, 800.0, 1e5, 1e308]])
    z = np.stack([np.zeros_like(a), -a], axis=1)
    _kernels.softmax_rows_(z)
    e = np.exp(-a)
    ref = e / (1 + e)
    normal = ref > np.finfo(np.float64).tiny
    assert_allclose(z[normal, 1], ref[normal], rtol=5e-16)  # a few ulp
    assert_allclose(z[~normal, 1], ref[~normal], rtol=0, atol=5e-324)
    assert_allclose(z[:, 0], 1 / (1 + e), rtol=3.4e-16)


def test_exp_accuracy_float32():
    a = np.linspace(0, 104, 20001).astype(np.float32)
    z = np.stack([np.zeros_like(a), -a], axis=1)
    _kernels.softmax_rows_(z)
    e = np.exp(-a.astype(np.float64))
    ref = e / (1 + e)
    normal = ref > np.finfo(np.float32).tiny
    assert_allclose(z[normal, 1], ref[normal], rtol=3e-7)
    assert_allclose(z[~normal, 1], ref[~normal], atol=4.3e-45)  # 3 subnormal ulp


@pytest.mark.parametrize("k", [4, 100])
def test_minus_inf_entries_and_flagged_rows(k):
    # Contract used by softmax.functions: -inf entries are exact (exp = 0),
    # and a row with NaN, +inf or only -inf gives a non-finite logsumexp.
    z = np.zeros((5, k))
    z[0, 1] = -np.inf
    z[1, 2] = np.nan
    z[2, 0] = np.inf
    z[3] = -np.inf
    z[4, 0] = -1e308
    z[4, 1] = 1e308
    ref0 = sps.softmax(np.delete(z[0], 1))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        lse = _kernels.softmax_rows_(z)
    assert_allclose(np.delete(z[0], 1), ref0, rtol=1e-15)
    assert z[0, 1] == 0
    assert np.all(np.isfinite(lse[[0, 4]]))
    assert not np.any(np.isfinite(lse[1:4]))
    assert_array_equal(z[4, :2], [0, 1])


def test_empty_and_contract_errors():
    assert_array_equal(_kernels.softmax_rows_(np.zeros((3, 0))), [-np.inf] * 3)
    assert _kernels.log_softmax_rows_(np.zeros((0, 5))).shape == (0,)
    with pytest.raises(TypeError):
        _kernels.softmax_rows_(np.zeros(3))
    with pytest.raises(TypeError):
        _kernels.softmax_rows_(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        _kernels.softmax_rows_(np.zeros((3, 2)).T)


def test_optional_packages_imported_lazily():
    # NumPy calls below the numba threshold import neither numba nor
    # array_api_compat (both optional extras)
    code = (
        "import sys, numpy as np\n"
        "from softmax.functions import softmax, logsumexp\n"
        "softmax(np.ones((3, 4))); logsumexp([1.0, 2.0])\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "assert 'array_api_compat' not in sys.modules, 'array_api_compat imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
