"""Tests of softmax.losses: the multinomial loss in logit space."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import log_loss

from softmax.losses import (
    multinomial_hessian_product,
    multinomial_loss,
    multinomial_residuals_,
)


def residuals(raw, y, w=None):
    """Summed loss and residuals of ``raw`` without touching it (a copy goes in place)."""
    z = np.array(raw, order="C")
    loss = multinomial_residuals_(z, y, w)
    return loss, z


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, k = 50, 4
    raw = rng.normal(scale=3, size=(n, k))
    y = rng.integers(0, k, n)
    w = rng.uniform(0.1, 3.0, n)
    return raw, y, w


def test_loss_matches_sklearn_log_loss(problem):
    raw, y, w = problem
    proba = scipy_softmax(raw, axis=1)
    expected = log_loss(y, proba, sample_weight=w, normalize=False, labels=np.arange(4))
    assert multinomial_loss(raw, y, w).sum() == pytest.approx(expected, rel=1e-12)
    unweighted = log_loss(y, proba, normalize=False, labels=np.arange(4))
    assert multinomial_loss(raw, y).sum() == pytest.approx(unweighted, rel=1e-12)


def test_loss_does_not_modify_input(problem):
    raw, y, w = problem
    before = raw.copy()
    multinomial_loss(raw, y, w)
    np.testing.assert_array_equal(raw, before)


def test_gradient_matches_finite_differences(problem):
    raw, y, w = problem
    loss, g = residuals(raw, y, w)
    assert loss == pytest.approx(multinomial_loss(raw, y, w).sum(), rel=1e-13)
    eps = 1e-6
    num = np.empty_like(raw)
    for j in range(raw.shape[1]):
        e = np.zeros_like(raw)
        e[:, j] = eps
        num[:, j] = (multinomial_loss(raw + e, y, w) - multinomial_loss(raw - e, y, w)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_gradient_closed_form(problem):
    raw, y, w = problem
    expected = w[:, None] * (scipy_softmax(raw, axis=1) - np.eye(4)[y])
    np.testing.assert_allclose(residuals(raw, y, w)[1], expected, rtol=1e-12, atol=1e-15)
    # unweighted: onehot subtracted, no weighting
    expected1 = scipy_softmax(raw, axis=1) - np.eye(4)[y]
    np.testing.assert_allclose(residuals(raw, y)[1], expected1, rtol=1e-12, atol=1e-15)


def test_hessian_product_matches_finite_differences(problem):
    raw, y, w = problem
    rng = np.random.default_rng(1)
    v = rng.normal(size=raw.shape)
    proba = scipy_softmax(raw, axis=1)
    hv = multinomial_hessian_product(proba, v, w)
    eps = 1e-6
    num = (residuals(raw + eps * v, y, w)[1] - residuals(raw - eps * v, y, w)[1]) / (2 * eps)
    np.testing.assert_allclose(hv, num, rtol=1e-5, atol=1e-8)
    # the all-ones direction is in the null space (softmax is shift invariant)
    ones = np.ones_like(raw)
    np.testing.assert_allclose(multinomial_hessian_product(proba, ones, w), 0, atol=1e-14)


def test_residuals_into_out_keep_the_probabilities(problem):
    """With ``out``, z becomes softmax(z) (Hessian products reuse it) and G goes to out."""
    raw, y, w = problem
    z = raw.copy()
    out = np.empty_like(z)
    loss = multinomial_residuals_(z, y, w, out=out, rows=np.arange(100))
    np.testing.assert_allclose(z, scipy_softmax(raw, axis=1), rtol=1e-12)
    np.testing.assert_allclose(out, residuals(raw, y, w)[1], rtol=1e-12)
    assert loss == pytest.approx(residuals(raw, y, w)[0], rel=1e-14)
    z = raw.copy()
    loss_only = multinomial_residuals_(z, y, w, need_residuals=False)
    assert loss_only == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(z, scipy_softmax(raw, axis=1), rtol=1e-12)


def test_float32_logits_give_a_float64_loss(problem):
    raw, y, w = problem
    loss32, g32 = residuals(raw.astype(np.float32), y, w)
    assert isinstance(loss32, float)
    assert g32.dtype == np.float32
    assert loss32 == pytest.approx(multinomial_loss(raw, y, w).sum(), rel=1e-5)


def test_huge_logits_do_not_overflow():
    raw = np.array([[1e300, 0.0, -1e300], [700.0, 710.0, 720.0]])
    y = np.array([0, 0])
    loss = multinomial_loss(raw, y)
    assert np.all(np.isfinite(loss))
    assert loss[0] == 0.0
    # logsumexp(700, 710, 720) - 700, computed stably
    expected = 720 + np.log1p(np.exp(-10) + np.exp(-20)) - 700
    assert loss[1] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_class_major_residuals_match_scipy(dtype, eps):
    """``class_major=True``: the same loss and the transposed residuals as SciPy's softmax."""
    from scipy.special import log_softmax

    from softmax.losses import multinomial_residuals_

    rng = np.random.default_rng(11)
    n, k = 37, 6
    Z = (rng.normal(size=(n, k)) * 4).astype(dtype)
    y = rng.integers(0, k, n)
    w = rng.uniform(0.1, 3.0, n)
    T = (1 - eps) * np.eye(k)[y] + eps / k
    logp = log_softmax(Z.astype(np.float64), axis=1)
    ref_loss = float(w @ -(T * logp).sum(axis=1))
    ref_G = w[:, None] * (np.exp(logp) - T)
    Zt = np.ascontiguousarray(Z.T)
    loss = multinomial_residuals_(Zt, y, w, label_smoothing=eps, class_major=True)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert loss == pytest.approx(ref_loss, rel=rtol)
    np.testing.assert_allclose(Zt.T, ref_G, rtol=rtol * 10, atol=rtol)
