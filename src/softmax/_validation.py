"""Input checks shared by the estimators: parameters, labels and weights.

Everything here either returns new arrays or raises; nothing writes into an
array it was given, so a failed ``fit`` leaves the caller's data as it was.
Messages say what was wrong and what to do about it, in the style of
scikit-learn's own (several estimator checks match on their wording).

The helpers also hide the differences between scikit-learn releases:
``validate_data`` became a public function in 1.6 (before it was the private
method ``BaseEstimator._validate_data``) and ``force_all_finite`` was renamed
``ensure_all_finite`` at the same time.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

__all__ = [
    "FINITE_KEYWORD",
    "check_finite_input",
    "check_in_range",
    "check_int_at_least",
    "check_positive",
    "check_sample_weight",
    "class_weight_vector",
    "encode_labels",
    "encode_with_classes",
    "validate_data",
]

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data

    #: Name of check_array's "reject NaN/inf" keyword in this scikit-learn.
    FINITE_KEYWORD = "ensure_all_finite"
except ImportError:  # pragma: no cover - scikit-learn 1.4 / 1.5
    _sk_validate_data = None
    FINITE_KEYWORD = "force_all_finite"


def validate_data(estimator: Any, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:
    """scikit-learn's ``validate_data`` on any supported scikit-learn release.

    Sets or checks ``n_features_in_`` and ``feature_names_in_`` and returns the
    validated ``X`` (or ``(X, y)`` when ``y`` is given).
    """
    if "ensure_all_finite" in kwargs and FINITE_KEYWORD != "ensure_all_finite":
        kwargs[FINITE_KEYWORD] = kwargs.pop("ensure_all_finite")  # pragma: no cover
    if _sk_validate_data is not None:
        return _sk_validate_data(estimator, X, y, **kwargs)
    return estimator._validate_data(X, y, **kwargs)  # pragma: no cover


# -- parameters ---------------------------------------------------------------


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive(value: object, name: str) -> float:
    """``value`` as a float; ValueError unless it is a finite number > 0."""
    if not _is_real(value) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return float(value)


def check_in_range(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a float; ValueError unless ``low <= value <= high``."""
    if not _is_real(value) or not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]; got {value!r}.")
    return float(value)


def check_int_at_least(value: object, name: str, low: int) -> int:
    """``value`` as an int; ValueError unless it is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


# -- data ---------------------------------------------------------------------


def check_finite_input(X: Any, what: str = "X") -> None:
    """Raise scikit-learn's error for NaN or infinity in ``X`` (dense or sparse).

    Used on the slow path only: the prediction methods first check the cheap
    ``(n_samples, n_classes)`` result and look at ``X`` only when that failed.
    """
    values = X.data if hasattr(X, "tocsr") else np.asarray(X)
    if values.dtype.kind not in "fc":
        return
    if np.isnan(values).any():
        raise ValueError(
            f"Input {what} contains NaN. Missing values are not supported; "
            "impute them first (e.g. sklearn.impute.SimpleImputer) or drop those rows."
        )
    if not np.isfinite(values).all():
        raise ValueError(
            f"Input {what} contains infinity or a value too large for {values.dtype!r}. "
            "Remove or clip those values before calling this method."
        )


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray:
    """Validated per-row weights as a new float64 array of shape (n_samples,).

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), scalar or None
        None means every row weighs 1; a scalar is the same weight for all.
    n_samples : int
        Number of rows of X.

    Returns
    -------
    weights : ndarray of shape (n_samples,), float64
        Always a fresh array, safe to scale in place.

    Raises
    ------
    ValueError
        Wrong shape, NaN/inf, a negative weight, or all weights zero.
    """
    if sample_weight is None:
        return np.ones(n_samples, dtype=np.float64)
    if _is_real(sample_weight):
        weights = np.full(n_samples, float(sample_weight))
    else:
        try:
            weights = np.array(sample_weight, dtype=np.float64)  # np.array: always a copy
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"sample_weight must be an array of numbers; could not convert it ({exc})."
            ) from exc
        if weights.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1D array or scalar; got an array of shape {weights.shape}."
            )
        if weights.shape[0] != n_samples:
            raise ValueError(
                f"sample_weight.shape == {weights.shape}, expected ({n_samples},): one "
                f"weight per row of X."
            )
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight contains NaN or infinity; weights must be finite.")
    if (weights < 0).any():
        raise ValueError(
            f"Negative values in sample_weight (smallest {weights.min():g}); weights "
            "must be >= 0 (0 drops a row)."
        )
    if n_samples and not (weights > 0).any():
        raise ValueError(
            "Sample weights must contain at least one non-zero number; all "
            f"{n_samples} weights are 0, which leaves nothing to fit."
        )
    return weights


# -- labels -------------------------------------------------------------------


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and each row's code, like ``LabelEncoder``.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels of any sortable type (ints, strings, bools, floats that are
        whole class labels).

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        ``np.unique(y)``; code ``k`` stands for ``classes[k]``.
    codes : ndarray of shape (n_samples,), intp
        ``classes[codes] == y``.
    """
    check_classification_targets(y)  # rejects continuous and multilabel targets
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes.reshape(-1).astype(np.intp, copy=False)


def encode_with_classes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Codes of ``y`` in a known, sorted ``classes`` array.

    Raises
    ------
    ValueError
        When ``y`` holds a label that is not in ``classes``.
    """
    check_classification_targets(y)
    codes = np.searchsorted(classes, y)
    np.clip(codes, 0, len(classes) - 1, out=codes)
    unknown = classes[codes] != y
    if np.any(unknown):
        bad = np.unique(np.asarray(y)[unknown])[:5].tolist()
        raise ValueError(
            f"y contains labels {bad} that are not in classes_ {classes.tolist()}; "
            "pass every label that can occur in `classes` on the first call."
        )
    return codes.astype(np.intp, copy=False)


def _python_key(value: object) -> object:
    """A hashable, numpy-free version of a label, for dictionary look-ups."""
    return value.item() if isinstance(value, np.generic) else value


def class_weight_vector(
    class_weight: Mapping[Any, float] | str | None,
    classes: np.ndarray,
    y_codes: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Weight of each class, with scikit-learn's ``class_weight`` semantics.

    Parameters
    ----------
    class_weight : dict, "balanced" or None
        ``{label: weight}`` (labels not named weigh 1), ``"balanced"``, or None
        (all 1). ``"balanced"`` gives class ``k`` the weight
        ``sum(s) / (n_classes * sum_{i: y_i = k} s_i)`` with ``s`` the sample
        weights (ones when None), as ``sklearn.utils.class_weight
        .compute_class_weight`` does when given ``sample_weight``.
    classes : ndarray of shape (n_classes,)
    y_codes : ndarray of shape (n_samples,)
        Codes into ``classes``.
    sample_weight : ndarray of shape (n_samples,) or None

    Returns
    -------
    weights : ndarray of shape (n_classes,), float64

    Raises
    ------
    ValueError
        A dict naming a label that is not a class, a negative or non-finite
        weight, or an unknown string.
    """
    n_classes = len(classes)
    if class_weight is None:
        return np.ones(n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be a dict, 'balanced' or None; got {class_weight!r}."
            )
        counts = np.bincount(y_codes, weights=sample_weight, minlength=n_classes)
        with np.errstate(divide="ignore"):
            # A class with zero total weight contributes nothing to the loss,
            # so its (infinite) balancing weight is irrelevant; use 0.
            weights = np.where(counts > 0, counts.sum() / (n_classes * counts), 0.0)
        return weights
    if not isinstance(class_weight, Mapping):
        raise ValueError(
            "class_weight must be a dict {label: weight}, 'balanced' or None; got "
            f"{type(class_weight).__name__}."
        )
    index = {_python_key(c): k for k, c in enumerate(classes.tolist())}
    weights = np.ones(n_classes)
    unknown = []
    for label, value in class_weight.items():
        k = index.get(_python_key(label))
        if k is None:
            unknown.append(label)
            continue
        if not _is_real(value) or not np.isfinite(value) or value < 0:
            raise ValueError(
                f"class_weight[{label!r}] must be a finite number >= 0; got {value!r}."
            )
        weights[k] = float(value)
    if unknown:
        raise ValueError(
            f"class_weight names labels {unknown} that are not classes of y; the classes "
            f"are {classes.tolist()}."
        )
    return weights
