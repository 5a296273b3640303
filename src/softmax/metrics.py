"""Classification metrics for probabilistic classifiers, and a readable report.

Calibration (:func:`expected_calibration_error`, :func:`reliability_curve`)
is computed here; accuracy, log loss, precision/recall/F1 and the confusion
matrix come from :mod:`sklearn.metrics`. :func:`classification_report` puts
them together in one JSON-friendly dict, and :func:`format_report` renders it
as text for the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "classification_report",
    "expected_calibration_error",
    "format_report",
    "reliability_curve",
]


def _top_label(
    y_true: Any, proba: Any, classes: Sequence[Any] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (max probability) and correctness of the top label, per sample."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_samples, n_classes), got shape {proba.shape}")
    y_true = np.asarray(y_true)
    if y_true.shape != (proba.shape[0],):
        raise ValueError(f"y_true has shape {y_true.shape}, but proba has {proba.shape[0]} rows")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba contains NaN or infinite values")
    if classes is None:
        classes = np.arange(proba.shape[1])
    classes = np.asarray(classes)
    if classes.shape != (proba.shape[1],):
        raise ValueError(f"{len(classes)} classes given for {proba.shape[1]} probability columns")
    # argmax picks the first of tied columns, as predict does.
    top = proba.argmax(axis=1)
    confidence = proba[np.arange(proba.shape[0]), top]
    correct = classes[top] == y_true
    return confidence, correct.astype(np.float64)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    # Bins (0, 1/B], (1/B, 2/B], ..., as in Guo et al. (2017); a confidence of
    # exactly 0 (impossible for a top label) falls in the first bin.
    index = np.ceil(confidence * n_bins).astype(np.intp) - 1
    return np.clip(index, 0, n_bins - 1)


def reliability_curve(
    y_true: Any,
    proba: Any,
    *,
    classes: Sequence[Any] | np.ndarray | None = None,
    n_bins: int = 15,
) -> dict[str, np.ndarray]:
    """Accuracy against confidence of the top label, in equal-width bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (values of ``classes``).
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,), optional
        Label of each column; default ``0 .. n_classes - 1``.
    n_bins : int, default=15
        Number of equal-width confidence bins on [0, 1].

    Returns
    -------
    curve : dict
        ``bin_edges`` of shape (n_bins + 1,); ``confidence`` and ``accuracy``
        of shape (n_bins,): mean top-label probability and fraction correct in
        each bin (NaN for empty bins); ``count`` of shape (n_bins,).
    """
    confidence, correct = _top_label(y_true, proba, classes)
    index = _bin_index(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    return {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1),
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "count": count,
    }


def expected_calibration_error(
    y_true: Any,
    proba: Any,
    *,
    classes: Sequence[Any] | np.ndarray | None = None,
    n_bins: int = 15,
) -> float:
    r"""Expected calibration error of the top label (Guo et al., 2017).

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{n}
            \left| \mathrm{acc}_b - \mathrm{conf}_b \right|

    over ``n_bins`` equal-width bins of the top-label probability. 0 is
    perfectly calibrated; 1 is always certain and always wrong.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
    classes : array-like of shape (n_classes,), optional
        Label of each column; default ``0 .. n_classes - 1``.
    n_bins : int, default=15

    Returns
    -------
    ece : float
        In [0, 1].

    Examples
    --------
    >>> ece = expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], n_bins=10)
    >>> round(ece, 6)  # (|1 - 0.9| + |0 - 0.8|) / 2
    0.45
    """
    confidence, correct = _top_label(y_true, proba, classes)
    n = confidence.shape[0]
    if n == 0:
        raise ValueError("expected_calibration_error needs at least one sample")
    index = _bin_index(confidence, n_bins)
    gap = np.bincount(index, weights=correct - confidence, minlength=n_bins)
    # sum_b |sum_{i in b} (correct_i - conf_i)| / n  ==  sum_b n_b/n |acc_b - conf_b|
    return float(np.abs(gap).sum() / n)


def classification_report(
    y_true: Any,
    proba: Any,
    classes: Sequence[Any] | np.ndarray,
    *,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Everything the command line reports about a probabilistic classifier.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,)
        The model's classes (``estimator.classes_``).
    n_bins : int, default=15
        Bins for the calibration error.

    Returns
    -------
    report : dict
        JSON-serialisable: ``n_samples``, ``accuracy``, ``log_loss``,
        ``ece``, ``classes`` (as strings), ``per_class`` (list of dicts with
        ``class``, ``precision``, ``recall``, ``f1``, ``support``),
        ``macro_f1``, ``confusion_matrix`` (rows: true class, columns:
        predicted class, in the order of ``classes``). Labels in ``y_true``
        that the model never saw count as errors.
    """
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    proba = np.asarray(proba, dtype=np.float64)
    classes = np.asarray(classes)
    y_true = np.asarray(y_true)
    confidence, correct = _top_label(y_true, proba, classes)
    y_pred = classes[proba.argmax(axis=1)]
    labels = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0.0
    )
    # log loss of labels the model cannot predict is infinite; report it only
    # over known labels rather than fail the whole report.
    known = np.isin(y_true, classes)
    if known.any():
        ll = float(log_loss(y_true[known], proba[known], labels=labels))
    else:
        ll = float("nan")
    return {
        "n_samples": int(y_true.shape[0]),
        "accuracy": float(correct.mean()) if correct.size else float("nan"),
        "log_loss": ll,
        "ece": expected_calibration_error(y_true, proba, classes=classes, n_bins=n_bins),
        "classes": [str(c) for c in classes],
        "per_class": [
            {
                "class": str(c),
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        ],
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "unknown_labels": int((~known).sum()),
        "mean_confidence": float(confidence.mean()) if confidence.size else float("nan"),
    }


def format_report(report: dict[str, Any]) -> str:
    """Render :func:`classification_report`'s dict as plain text.

    Parameters
    ----------
    report : dict
        As returned by :func:`classification_report`.

    Returns
    -------
    text : str
        Summary lines, a per-class table and the confusion matrix.
    """
    lines = [
        f"samples   {report['n_samples']}",
        f"accuracy  {report['accuracy']:.4f}",
        f"log loss  {report['log_loss']:.4f}",
        f"ECE       {report['ece']:.4f}  (expected calibration error, 15 bins; "
        f"mean confidence {report['mean_confidence']:.4f})",
    ]
    if report.get("unknown_labels"):
        lines.append(f"note: {report['unknown_labels']} samples have labels the model never saw")
    width = max(5, *(len(c) for c in report["classes"]))
    lines += ["", f"{'class':>{width}}  precision  recall     f1  support"]
    for row in report["per_class"]:
        lines.append(
            f"{row['class']:>{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
            f"{row['f1']:5.3f}  {row['support']:7d}"
        )
    lines.append(f"{'macro':>{width}}  {'':9}  {'':6}  {report['macro_f1']:5.3f}")
    matrix = np.asarray(report["confusion_matrix"])
    cell = max(len(str(int(matrix.max(initial=0)))), *(len(c) for c in report["classes"]), 3)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * (width + 1) + " ".join(f"{c:>{cell}}" for c in report["classes"]))
    for name, row in zip(report["classes"], matrix):
        lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(lines)
