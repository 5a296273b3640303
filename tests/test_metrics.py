"""Calibration metrics and the report, against scikit-learn and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from softmax.metrics import (
    classification_report,
    expected_calibration_error,
    format_report,
    reliability_curve,
)


def _random_proba(rng, n, k):
    z = rng.standard_normal((n, k)) * 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _naive_ece(y, proba, n_bins):
    """Guo et al. (2017), written as the paper states it, one bin at a time."""
    conf = proba.max(axis=1)
    pred = proba.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            acc = np.mean(pred[in_bin] == y[in_bin])
            total += in_bin.mean() * abs(acc - conf[in_bin].mean())
    return total


@pytest.mark.parametrize("n_bins", [1, 5, 15, 40])
def test_ece_matches_definition(n_bins):
    rng = np.random.default_rng(0)
    proba = _random_proba(rng, 500, 4)
    y = rng.integers(0, 4, 500)
    ece = expected_calibration_error(y, proba, n_bins=n_bins)
    assert ece == pytest.approx(_naive_ece(y, proba, n_bins), abs=1e-12)


def test_ece_extremes():
    # Certain and always wrong: 1. Certain and always right: 0.
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error([1, 0], proba) == pytest.approx(1.0)
    assert expected_calibration_error([0, 1], proba) == 0.0


def test_ece_of_calibrated_predictions_is_small():
    # Labels drawn from the predicted probabilities are calibrated by construction.
    rng = np.random.default_rng(1)
    proba = _random_proba(rng, 100_000, 3)
    y = (rng.random(100_000)[:, None] > proba.cumsum(axis=1)).sum(axis=1)
    assert expected_calibration_error(y, proba) < 0.01
    # The same predictions with the labels shuffled are badly calibrated.
    assert expected_calibration_error(rng.permutation(y), proba) > 0.2


def test_ece_with_string_classes():
    proba = np.array([[0.9, 0.1], [0.8, 0.2]])
    ece = expected_calibration_error(["a", "b"], proba, classes=["a", "b"], n_bins=10)
    assert ece == pytest.approx((0.1 + 0.8) / 2)


def test_reliability_curve_matches_sklearn_calibration_curve():
    # Binary, with p(class 1) >= 0.5 everywhere: the top label is always class
    # 1, so the top-label curve is scikit-learn's positive-class curve.
    rng = np.random.default_rng(2)
    p1 = rng.uniform(0.5, 1.0, 2000)
    y = (rng.random(2000) < p1**2).astype(int)
    proba = np.column_stack([1 - p1, p1])
    curve = reliability_curve(y, proba, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p1, n_bins=10, strategy="uniform")
    filled = curve["count"] > 0
    np.testing.assert_allclose(curve["accuracy"][filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(curve["confidence"][filled], prob_pred, rtol=1e-12)
    assert np.isnan(curve["accuracy"][~filled]).all()
    assert curve["count"].sum() == 2000 and curve["bin_edges"].shape == (11,)


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        expected_calibration_error([0], [0.5])
    with pytest.raises(ValueError, match="rows"):
        expected_calibration_error([0, 1, 1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error([0], [[np.nan, 0.5]])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0], [[0.5, 0.5]], n_bins=0)
    with pytest.raises(ValueError, match="classes"):
        expected_calibration_error([0], [[0.5, 0.5]], classes=[0, 1, 2])


def test_report_matches_sklearn():
    rng = np.random.default_rng(3)
    classes = np.array(["cat", "dog", "owl"])
    proba = _random_proba(rng, 300, 3)
    y = classes[rng.integers(0, 3, 300)]
    report = classification_report(y, proba, classes)
    y_pred = classes[proba.argmax(axis=1)]
    assert report["accuracy"] == pytest.approx(accuracy_score(y, y_pred))
    assert report["log_loss"] == pytest.approx(log_loss(y, proba, labels=classes))
    p, r, f, s = precision_recall_fscore_support(y, y_pred, labels=classes)
    for row, pi, ri, fi, si in zip(report["per_class"], p, r, f, s):
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((pi, ri, fi))
        assert row["support"] == si
    assert report["confusion_matrix"] == confusion_matrix(y, y_pred, labels=classes).tolist()
    assert report["ece"] == pytest.approx(_naive_ece(np.searchsorted(classes, y), proba, 15))
    text = format_report(report)
    assert f"accuracy  {report['accuracy']:.4f}" in text
    assert "confusion matrix" in text and "owl" in text


def test_report_counts_unknown_labels_as_errors():
    proba = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    report = classification_report([0, 1, 5], proba, [0, 1])
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["unknown_labels"] == 1
    assert np.isfinite(report["log_loss"])
    assert "never saw" in format_report(report)
