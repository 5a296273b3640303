"""The function family on non-NumPy arrays: array-api-strict always, torch if installed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special as sps
from numpy.testing import assert_allclose, assert_array_equal

from softmax.functions import (
    cross_entropy,
    log_softmax,
    logsumexp,
    softmax,
    softmax_jacobian,
    softmax_jvp,
    softmax_vjp,
)

xps = pytest.importorskip("array_api_strict")

inf, nan = np.inf, np.nan
X = np.array(
    [
        [1.0, 2.0, 3.0, 4.0],
        [1e308, 1e308, -1e308, 0.0],
        [1.0, -inf, 2.0, -inf],
        [-inf, -inf, -inf, -inf],
        [inf, 1.0, inf, 0.0],
        [nan, 1.0, 2.0, 3.0],
    ]
)
# the numerics table, row by row (softmax, log_softmax, logsumexp)
l2 = np.log(2.0)
S2, L2 = sps.softmax([1.0, 2.0]), sps.log_softmax([1.0, 2.0])
SM = [
    sps.softmax([1.0, 2, 3, 4]),
    [0.5, 0.5, 0, 0],
    [S2[0], 0, S2[1], 0],
    [0] * 4,
    [0.5, 0, 0.5, 0],
    [nan] * 4,
]
LSM = [
    sps.log_softmax([1.0, 2, 3, 4]),
    [-l2, -l2, -inf, -1e308 - l2],
    [L2[0], -inf, L2[1], -inf],
    [-inf] * 4,
    [-l2, -inf, -l2, -inf],
    [nan] * 4,
]
LSE = [sps.logsumexp([1.0, 2, 3, 4]), 1e308 + l2, sps.logsumexp([1.0, 2]), -inf, inf, nan]


def check_table(xp, to_numpy, **kw):
    x = xp.asarray(X, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sm, lsm, lse = softmax(x), log_softmax(x), logsumexp(x)
    for got, ref in ((sm, SM), (lsm, LSM), (lse, LSE)):
        assert type(got) is type(x)
        assert_allclose(to_numpy(got), np.array(ref, dtype=np.float64), rtol=1e-14)
    return sm


def test_array_api_strict_table():
    sm = check_table(xps, np.asarray)
    assert sm.device == xps.asarray(X).device


def test_array_api_strict_other_functions():
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((3, 4))
    vn = rng.standard_normal((3, 4))
    x, v = xps.asarray(xn), xps.asarray(vn)
    h = 1e-6
    fd = (sps.softmax(xn + h * vn, axis=1) - sps.softmax(xn - h * vn, axis=1)) / (2 * h)
    assert_allclose(np.asarray(softmax_jvp(x, v)), fd, atol=1e-8)
    assert_allclose(np.asarray(softmax_vjp(x, v)), fd, atol=1e-8)  # J symmetric
    jac = softmax_jacobian(x, axis=0)
    assert tuple(jac.shape) == (4, 3, 3)
    s = sps.softmax(xn[:, 1])
    assert_allclose(np.asarray(jac)[1], np.diag(s) - np.outer(s, s), rtol=1e-13, atol=1e-17)
    assert_allclose(np.asarray(softmax(x, 0, temperature=0.5)), sps.softmax(xn / 0.5, axis=0))
    mask = xps.asarray(xn > 0)
    got = np.asarray(softmax(x, where=mask))
    for i in range(3):
        if np.any(xn[i] > 0):
            assert_allclose(got[i, xn[i] > 0], sps.softmax(xn[i, xn[i] > 0]), rtol=1e-14)
    b = xps.asarray(vn)
    lse, sign = logsumexp(x, b=b, return_sign=True)
    rl, rs = sps.logsumexp(xn, axis=-1, b=vn, return_sign=True)
    assert_allclose(np.asarray(lse), rl, rtol=1e-13)
    assert_array_equal(np.asarray(sign), rs)
    assert tuple(logsumexp(x, 0, keepdims=True).shape) == (1, 4)
    y = xps.asarray([0, 3, 1])
    ce = cross_entropy(x, y)
    ref = -np.mean(sps.log_softmax(xn, axis=1)[[0, 1, 2], [0, 3, 1]])
    assert_allclose(float(ce), ref, rtol=1e-13)
    # int input: computed in float64
    assert softmax(xps.asarray([1, 2, 3])).dtype == xps.float64
    with pytest.raises(TypeError, match="complex"):
        softmax(xps.asarray([1 + 1j]))
    with pytest.raises(TypeError, match="out="):
        softmax(x, out=np.empty((3, 4)))


def test_torch_table_and_device():
    torch = pytest.importorskip("torch")
    sm = check_table(torch, lambda t: t.numpy(), dtype=torch.float64)
    assert sm.device == torch.device("cpu")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.func
def test_torch_matches_torch_functions():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    for dtype, rtol in ((torch.float32, 2e-6), (torch.float64, 1e-13)):
        x = torch.randn(5, 7, generator=gen, dtype=dtype) * 5
        for axis in (0, 1):
            got = softmax(x, axis)
            assert got.dtype == dtype and isinstance(got, torch.Tensor)
            torch.testing.assert_close(got, torch.softmax(x, axis), rtol=rtol, atol=1e-7)
            torch.testing.assert_close(
                log_softmax(x, axis), torch.log_softmax(x, axis), rtol=rtol, atol=1e-6
            )
            torch.testing.assert_close(
                logsumexp(x, axis), torch.logsumexp(x, axis), rtol=rtol, atol=1e-6
            )
        y = torch.randint(0, 7, (5,), generator=gen)
        torch.testing.assert_close(
            cross_entropy(x, y, label_smoothing=0.1),
            torch.nn.functional.cross_entropy(x, y, label_smoothing=0.1),
            rtol=rtol,
            atol=1e-6,
        )
        # Python lists next to a tensor are converted onto its device
        assert isinstance(cross_entropy(x, y.tolist()), torch.Tensor)
        # jvp against autograd
        v = torch.randn(5, 7, generator=gen, dtype=dtype)
        _, jvp = torch.func.jvp(lambda z: torch.softmax(z, -1), (x,), (v,))
        torch.testing.assert_close(softmax_jvp(x, v), jvp, rtol=rtol * 10, atol=1e-6)


def test_several_axes_on_array_api_strict():
    """axis=None and tuples keep the namespace and match SciPy on the NumPy twin."""
    rng = np.random.default_rng(21)
    xn = rng.standard_normal((3, 4, 5)) * 5
    x = xps.asarray(xn)
    for axis in (None, (0, 2)):
        got = softmax(x, axis)
        assert isinstance(got, type(x))
        assert_allclose(np.asarray(got), sps.softmax(xn, axis=axis), rtol=1e-14)
        got = log_softmax(x, axis, where=x > -3.0)
        ref = sps.log_softmax(np.where(xn > -3.0, xn, -inf), axis=axis)
        assert_allclose(np.asarray(got), ref, rtol=1e-13, atol=1e-14)
        got = logsumexp(x, axis, keepdims=True)
        assert tuple(got.shape) == sps.logsumexp(xn, axis=axis, keepdims=True).shape
        assert_allclose(np.asarray(got), sps.logsumexp(xn, axis=axis, keepdims=True), rtol=1e-14)
