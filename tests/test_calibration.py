"""Temperature scaling: the exact 1-D optimum, the wrapper, and what it must show.

References: SciPy's ``minimize_scalar`` on an independently written NLL
(``scipy.special.logsumexp``), repeated rows for weights, the binary sigmoid
NLL, and the held-out ECE of an over-fitted model on the shipped MNIST digits.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from softmax import SoftmaxRegression, TemperatureScaling
from softmax.calibration import fit_temperature
from softmax.metrics import expected_calibration_error


def _nll(logits, y, T, w=None):
    """Held-out NLL of softmax(logits / T), written with SciPy."""
    z = logits / T
    per_row = logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    return float(per_row.sum() if w is None else w @ per_row)


def _scipy_temperature(logits, y, w=None):
    res = minimize_scalar(
        lambda log_t: _nll(logits, y, np.exp(log_t), w),
        bracket=(-2.0, 2.0),
        method="brent",
        options={"xtol": 1e-12},
    )
    return float(np.exp(res.x))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])  # under- and over-confident logits
def test_temperature_is_scipys_optimum(seed, scale):
    rng = np.random.default_rng(seed)
    n, k = 400, 6
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5  # informative, but noisy
    logits *= scale
    w = rng.uniform(0.2, 2.0, n)
    for weights in (None, w):
        T = fit_temperature(logits, y, sample_weight=weights)
        T_ref = _scipy_temperature(logits, y, weights)
        assert pytest.approx(T_ref, rel=1e-6) == T
        # and no point nearby does better (the optimum to rounding)
        best = _nll(logits, y, T, weights)
        for factor in (1 - 1e-6, 1 + 1e-6):
            assert best <= _nll(logits, y, T * factor, weights) + 1e-9 * abs(best)


def test_weights_equal_repeated_rows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 50)
    logits = rng.normal(size=(50, 4)) * 4
    logits[np.arange(50), y] += 3.0
    counts = rng.integers(0, 4, 50)
    T_weighted = fit_temperature(logits, y, sample_weight=counts)
    T_repeated = fit_temperature(np.repeat(logits, counts, axis=0), np.repeat(y, counts))
    assert T_weighted == pytest.approx(T_repeated, rel=1e-12)


def test_shift_invariance_and_no_change_to_inputs():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 100)
    logits = rng.normal(size=(100, 3)) * 5
    logits[np.arange(100), y] += 4.0
    before = logits.copy()
    T = fit_temperature(logits, y)
    np.testing.assert_array_equal(logits, before)
    shifted = logits + rng.normal(size=(100, 1)) * 100  # per-row constants
    assert fit_temperature(shifted, y) == pytest.approx(T, rel=1e-9)


def test_limits_warn():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    with pytest.warns(UserWarning, match="T = 0"):
        assert fit_temperature(logits, np.array([0, 1, 0])) == 0.0  # always right
    with pytest.warns(UserWarning, match="T = inf"):
        assert fit_temperature(logits, np.array([1, 0, 1])) == np.inf  # always wrong


def test_bad_input():
    good = np.zeros((3, 2))
    for logits, y, match in [
        (np.zeros(3), [0, 1, 0], "2-D"),
        (np.array([[0.0, np.nan]]), [0], "NaN"),
        (good, [0, 1], "shape"),
        (good, [0, 2, 0], "class indices"),
        (good, [0.5, 1, 0], "class indices"),
    ]:
        with pytest.raises(ValueError, match=match):
            fit_temperature(logits, np.asarray(y))


# -- the wrapper ------------------------------------------------------------------


def test_binary_log_odds_use_the_sigmoid_nll():
    X, y = load_digits(n_class=2, return_X_y=True)
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(X[:200], y[:200])
    ts = TemperatureScaling(clf).fit(X[200:], y[200:])
    d = clf.decision_function(X[200:])
    t = y[200:]

    def sigmoid_nll(log_t):  # -log sigmoid(+-d / T), independently
        s = np.where(t == 1, d, -d) / np.exp(log_t)
        return float(np.logaddexp(0.0, -s).sum())

    ref = np.exp(minimize_scalar(sigmoid_nll, bracket=(-2, 2), options={"xtol": 1e-12}).x)
    assert ts.temperature_ == pytest.approx(ref, rel=1e-6)
    proba = ts.predict_proba(X[200:])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-d / ts.temperature_)), rtol=1e-10)
    np.testing.assert_array_equal(ts.predict(X[200:]), clf.predict(X[200:]))


def test_logits_mode_with_string_classes():
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 3, 80)
    logits = rng.normal(size=(80, 3)) * 6
    logits[np.arange(80), codes] += 5.0
    classes = np.array(["cat", "dog", "eel"])
    ts = TemperatureScaling(classes=classes).fit(logits, classes[codes])
    assert ts.temperature_ == pytest.approx(fit_temperature(logits, codes), rel=1e-12)
    np.testing.assert_array_equal(ts.predict(logits), classes[np.argmax(logits, axis=1)])
    np.testing.assert_allclose(
        ts.predict_log_proba(logits), np.log(ts.predict_proba(logits)), rtol=1e-10
    )
    with pytest.raises(ValueError, match="columns"):
        ts.predict_proba(logits[:, :2])
    with pytest.raises(ValueError, match="not in classes_"):
        TemperatureScaling(classes=classes).fit(logits, np.array(["cat"] * 79 + ["fox"]))


def test_probability_only_estimators_are_calibrated_in_log_space():
    X, y = load_digits(return_X_y=True)
    nb = GaussianNB().fit(X[:1000], y[:1000])  # very over-confident, and no decision_function
    ts = TemperatureScaling(nb).fit(X[1000:1400], y[1000:1400])
    log_p = np.log(np.maximum(nb.predict_proba(X[1000:1400]), np.finfo(float).tiny))
    assert ts.temperature_ == pytest.approx(_scipy_temperature(log_p, y[1000:1400]), rel=1e-6)
    np.testing.assert_array_equal(ts.predict(X[1400:]), nb.predict(X[1400:]))


def test_unfitted_estimator_and_bad_parameters():
    with pytest.raises(NotFittedError, match="held-out"):
        TemperatureScaling(SoftmaxRegression()).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="response_method"):
        TemperatureScaling(response_method="predict").fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(NotFittedError):
        TemperatureScaling().predict_proba(np.zeros((2, 2)))


def test_lowers_held_out_ece_of_an_over_fitted_mnist_model_and_keeps_its_predictions():
    from softmax.datasets import load_mnist_sample

    X, y = load_mnist_sample(return_X_y=True, scale=True)
    # the demo's split (first 8,000 train, last 2,000 test); a fraction of the
    # training rows is enough to over-fit at a large C
    X_train, y_train = X[:1500], y[:1500]
    X_val, y_val = X[6000:8000], y[6000:8000]
    X_test, y_test = X[-2000:], y[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # far from separable: fine
        clf = SoftmaxRegression(C=1e3, max_iter=150).fit(X_train, y_train)
    ts = TemperatureScaling(clf).fit(X_val, y_val)
    before = expected_calibration_error(y_test, clf.predict_proba(X_test))
    after = expected_calibration_error(y_test, ts.predict_proba(X_test))
    assert ts.temperature_ > 1.5  # over-confident: the temperature softens
    assert after < 0.5 * before
    assert before > 0.05
    np.testing.assert_array_equal(ts.predict(X_test), clf.predict(X_test))
    np.testing.assert_array_equal(
        np.argmax(ts.predict_proba(X_test), axis=1), np.argmax(clf.predict_proba(X_test), axis=1)
    )
    # the held-out log loss falls too (what the temperature minimises on X_val)
    nll = -np.log(clf.predict_proba(X_test)[np.arange(2000), y_test]).mean()
    nll_ts = -ts.predict_log_proba(X_test)[np.arange(2000), y_test].mean()
    assert nll_ts < nll


def test_clone_and_params():
    from sklearn.base import clone

    clf = SoftmaxRegression()
    ts = TemperatureScaling(clf, response_method="predict_proba")
    assert clone(ts).get_params()["response_method"] == "predict_proba"
    assert ts.get_params()["estimator"] is clf
