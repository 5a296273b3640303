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
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

__all__ = [
    "FINITE_KEYWORD",
    "check_class_totals",
    "check_finite_input",
    "check_in_range",
    "check_int_at_least",
    "check_positive",
    "check_sample_weight",
    "check_weight_values",
    "class_weight_vector",
    "encode_labels",
    "encode_with_classes",
    "labelled_rows",
    "row_weights",
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
    # scikit-learn tests finiteness on the sum of X first, which overflows for
    # finite rows near the dtype's limit (a RuntimeWarning); it then checks
    # every element, so the warning says nothing about the data: silenced.
    with np.errstate(over="ignore", invalid="ignore"):
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


def check_weight_values(nonfinite: bool, minimum: float, what: str = "sample_weight") -> None:
    """Raise the error for non-finite or negative row weights.

    The one rule for weights, whatever holds them: an array in memory
    (:func:`check_sample_weight`), a file's weight column checked block by
    block, or Dask chunks summarised on the workers.

    Parameters
    ----------
    nonfinite : bool
        Whether any weight is NaN or infinite.
    minimum : float
        The smallest weight (``inf`` when there are none).
    what : str, default "sample_weight"
        What the weights are called in the message.
    """
    if nonfinite:
        raise ValueError(f"{what} contains NaN or infinity; weights must be finite.")
    if minimum < 0:
        raise ValueError(
            f"Negative values in {what} (smallest {minimum:g}); weights must be >= 0 "
            "(0 drops a row)."
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
    check_weight_values(
        not np.isfinite(weights).all(), float(weights.min()) if weights.size else np.inf
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
    # the sorted labels, then each row's position among them: a sort of y and
    # one intp array (return_inverse keeps an argsort and three more
    # n-sized arrays: 8 MB for 200,000 rows)
    classes = np.unique(y)
    codes = np.searchsorted(classes, np.ravel(y))
    return classes, codes.astype(np.intp, copy=False)


def encode_with_classes(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Codes of ``y`` in a known, sorted ``classes`` array.

    ``classes`` were checked as class labels when they were found; a ``y``
    whose every label is one of them needs no check of its own (this runs
    on every ``partial_fit`` call, where scikit-learn's target-type check
    cost as much as the update).

    Raises
    ------
    ValueError
        When ``y`` holds a label that is not in ``classes``.
    """
    try:
        codes = np.searchsorted(classes, y)
    except TypeError:  # labels that do not compare with the classes at all
        check_classification_targets(y)
        raise ValueError(f"y holds labels that are not in classes_ {classes.tolist()}.") from None
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
    class_totals: np.ndarray | None = None,
    class_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Weight of each class, with scikit-learn's ``class_weight`` semantics.

    The one rule for every backend: the in-memory fit computes the class
    totals from its arrays, the stream backend in one pass over the labels,
    the Dask backend in its validation pass.

    Parameters
    ----------
    class_weight : dict, "balanced" or None
        ``{label: weight}`` (labels not named weigh 1), ``"balanced"``, or None
        (all 1).
    classes : ndarray of shape (n_classes,)
        Every class of the fit (a stream or Dask fit may declare classes that
        never occur).
    class_totals : ndarray of shape (n_classes,), optional
        Sum of the sample weights of each class's rows (row counts when
        unweighted). Needed for ``"balanced"``.
    class_counts : ndarray of shape (n_classes,), optional
        Rows of each class (default: ``class_totals > 0``). Needed for
        ``"balanced"`` to tell a class that occurs from one that does not.

    Returns
    -------
    weights : ndarray of shape (n_classes,), float64

    Raises
    ------
    ValueError
        A dict naming a label that is not a class, a negative or non-finite
        weight, or an unknown string.

    Notes
    -----
    ``"balanced"`` gives class ``k`` the weight ``S / (m * S_k)``, with
    ``S_k`` its total sample weight, ``S = sum_k S_k`` and ``m`` the number of
    classes that occur in the data: ``sklearn.utils.class_weight.
    compute_class_weight("balanced", classes=<the classes that occur>, y=y,
    sample_weight=...)``. A class without weight (declared but absent from
    the data, or all its rows weighing 0) adds nothing to the loss whatever
    its weight; it gets 0 (scikit-learn raises for a declared class absent
    from ``y``, and divides by zero for a weightless one). Declaring extra
    classes therefore never changes the weights of the others.
    """
    n_classes = len(classes)
    if class_weight is None:
        return np.ones(n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be a dict, 'balanced' or None; got {class_weight!r}."
            )
        if class_totals is None:
            raise ValueError("class_weight='balanced' needs the class totals of the data.")
        totals = np.asarray(class_totals, dtype=np.float64)
        counts = totals if class_counts is None else np.asarray(class_counts)
        occurring = int(np.count_nonzero(counts > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.where(totals > 0, totals.sum() / (max(occurring, 1) * totals), 0.0)
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


def row_weights(
    codes: np.ndarray,
    classes: np.ndarray,
    sample_weight: Any,
    class_weight: Mapping[Any, float] | str | None,
) -> np.ndarray:
    """``s_i = sample_weight_i * class_weight[y_i]`` of rows in memory, validated.

    :func:`check_sample_weight`, then :func:`class_weight_vector` from the
    rows' class totals: what the estimator's fit, the model-selection folds
    and inference fold into one weight per row.

    Parameters
    ----------
    codes : ndarray of shape (n_samples,)
        Label codes into ``classes``.
    classes : ndarray of shape (n_classes,)
    sample_weight : array-like of shape (n_samples,), scalar or None
    class_weight : dict, "balanced" or None

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    weights = check_sample_weight(sample_weight, codes.shape[0])
    if class_weight is None:
        return weights
    K = len(classes)
    per_class = class_weight_vector(
        class_weight,
        classes,
        np.bincount(codes, weights=weights, minlength=K),
        np.bincount(codes, minlength=K),
    )
    return weights * per_class[codes]


def check_class_totals(classes: np.ndarray, totals: np.ndarray, *, stacklevel: int = 3) -> None:
    """At least two classes must carry weight; warn about classes that carry none.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
    totals : ndarray of shape (n_classes,)
        Total row weight ``s_i`` (sample times class weight) of each class.
    stacklevel : int, default 3
        Of the warning.
    """
    alive = np.asarray(totals) > 0
    if alive.sum() < 2:
        raise ValueError(
            "SoftmaxRegression needs at least 2 classes with positive total weight, but "
            f"only class {classes[alive].tolist()} has any: the sample weights or "
            "class_weight remove every other class."
        )
    if not alive.all():
        warnings.warn(
            f"Classes {classes[~alive].tolist()} have zero total weight: the fit drives "
            "their probabilities towards 0 (their intercepts towards -infinity). Give "
            "them weight, or drop those rows to leave them out of classes_.",
            UserWarning,
            stacklevel=stacklevel,
        )


def labelled_rows(
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    class_weight: Mapping[Any, float] | str | None,
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """In-memory rows, labels and row weights of a classifier's ``fit``, validated.

    ``validate_data`` (float64 or float32, CSR for sparse, C order), the
    labels encoded, at least two classes, then :func:`row_weights`. The
    caller checks the class totals (its own message and warnings).

    Returns
    -------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        The labels as validated.
    classes : ndarray of shape (n_classes,)
    codes : ndarray of shape (n_samples,)
    weights : ndarray of shape (n_samples,), float64
    """
    X, y = validate_data(
        estimator,
        X,
        y,
        accept_sparse="csr",
        dtype=(np.float64, np.float32),
        order="C",
        y_numeric=False,
        multi_output=False,
    )
    classes, codes = encode_labels(y)
    if len(classes) < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs samples of at least 2 classes in the data, "
            f"but the data contain only one class: {classes.tolist()}."
        )
    return X, y, classes, codes, row_weights(codes, classes, sample_weight, class_weight)
