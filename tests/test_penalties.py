"""Tests of softmax.penalties: values, gradients, proximal operators."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from softmax.penalties import L1, L2, ElasticNet, make_penalty


@pytest.fixture
def coef():
    return np.random.default_rng(0).normal(size=(3, 5))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.3, 1.0])
def test_value_matches_formula_and_skips_intercept(coef, fit_intercept, l1_ratio):
    pen = make_penalty(l1_ratio, fit_intercept=fit_intercept, strength=2.5)
    W = coef[:, :-1] if fit_intercept else coef
    expected = 2.5 * ((1 - l1_ratio) / 2 * np.sum(W**2) + l1_ratio * np.abs(W).sum())
    assert pen.value(coef) == pytest.approx(expected, rel=1e-14)
    if fit_intercept:
        changed = coef.copy()
        changed[:, -1] += 100.0
        assert pen.value(changed) == pytest.approx(pen.value(coef), rel=1e-14)


def test_make_penalty_types():
    assert type(make_penalty(0.0, fit_intercept=True)) is L2
    assert type(make_penalty(1.0, fit_intercept=True)) is L1
    assert type(make_penalty(0.5, fit_intercept=True)) is ElasticNet
    with pytest.raises(ValueError, match="l1_ratio"):
        ElasticNet(1.5, fit_intercept=True)
    with pytest.raises(ValueError, match="strength"):
        L2(fit_intercept=True, strength=-1.0)


def test_smooth_gradient_matches_finite_differences(coef):
    pen = ElasticNet(0.4, fit_intercept=True, strength=0.7)
    g = pen.smooth_gradient(coef)
    eps = 1e-6
    num = np.zeros_like(coef)
    for idx in np.ndindex(coef.shape):
        e = np.zeros_like(coef)
        e[idx] = eps
        num[idx] = (pen.smooth_value(coef + e) - pen.smooth_value(coef - e)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)
    assert np.all(g[:, -1] == 0)
    V = np.ones_like(coef)
    np.testing.assert_allclose(
        pen.add_smooth_hessp(V, np.zeros_like(V)),
        pen.smooth_hessian_diagonal(coef.shape).reshape(coef.shape) * V,
    )


def test_prox_is_the_argmin_of_its_definition(coef):
    pen = L1(fit_intercept=True, strength=0.8)
    step = 0.6
    out = pen.prox(coef, step)

    def objective(u):
        u = u.reshape(coef.shape)
        return 0.5 * np.sum((u - coef) ** 2) + step * pen.nonsmooth_value(u)

    # the prox is the unique minimiser: any perturbation increases the objective
    rng = np.random.default_rng(1)
    base = objective(out.ravel())
    for _ in range(50):
        assert objective(out.ravel() + 1e-3 * rng.normal(size=coef.size)) > base
    num = minimize(
        objective, coef.ravel(), method="Powell", options={"xtol": 1e-10, "ftol": 1e-14}
    )
    np.testing.assert_allclose(out.ravel(), num.x, atol=1e-5)
    np.testing.assert_array_equal(out[:, -1], coef[:, -1])  # intercept untouched


def test_prox_of_l2_only_is_identity(coef):
    np.testing.assert_array_equal(L2(fit_intercept=False).prox(coef, 3.0), coef)


def test_min_norm_subgradient_is_zero_at_a_lasso_optimum():
    # minimise 0.5 (w - a)^2 + c |w| per coordinate: w* = soft(a, c)
    a = np.array([[3.0, -0.2, 0.5, -4.0]])
    c = 1.0
    pen = L1(fit_intercept=False, strength=c)
    w = pen.prox(a, 1.0)
    np.testing.assert_allclose(w, [[2.0, 0.0, 0.0, -3.0]])
    sub = pen.min_norm_subgradient(w, w - a)
    np.testing.assert_allclose(sub, 0.0, atol=1e-15)
    # away from the optimum it is not zero
    assert np.abs(pen.min_norm_subgradient(a, np.zeros_like(a))).sum() > 0
