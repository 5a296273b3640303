"""scikit-learn's ``array_api_dispatch`` for :class:`SoftmaxRegression`.

Under ``sklearn.config_context(array_api_dispatch=True)`` a fit on a
non-NumPy Array API array (torch, CuPy, JAX, array_api_strict) keeps ``X``
and the row weights on the array's device and fits through the one road
(``Problem`` -> solver registry -> :class:`~softmax.backends.array_api.ArrayAPIData`);
``coef_`` and ``intercept_`` are then arrays of the input's namespace on
its device, and the prediction methods answer in that namespace. The labels
are read on the host once (to find and encode the classes), as scikit-learn
does. What the device path does not offer is refused, never done by moving
``X`` to the host behind the caller's back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softmax._array_api import array_namespace, device_of, library_of
from softmax.backends.array_api import ArrayAPIData, _to_numpy

__all__ = ["device_namespace", "device_predict", "device_rows", "fitted_on_device", "publish"]


def _dispatch_on() -> bool:
    import sklearn

    return bool(sklearn.get_config().get("array_api_dispatch", False))


def device_namespace(X: Any) -> Any:
    """The namespace of ``X`` when the fit should run on its device, else None."""
    if isinstance(X, np.ndarray) or not _dispatch_on():
        return None
    if library_of(X) is None and not hasattr(X, "__array_namespace__"):
        return None  # lists, frames, sparse matrices: the NumPy road
    return array_namespace(X)


def _host(xp: Any, a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray) or not hasattr(a, "__array_namespace__"):
        return np.asarray(a)
    try:
        return np.asarray(a)
    except (TypeError, RuntimeError, ValueError):
        return (
            _to_numpy(xp, a)
            if xp.isdtype(a.dtype, "real floating")
            else np.asarray(a.to_device(xp.__array_namespace_info__().default_device()))
        )


def device_rows(est: Any, xp: Any, X: Any, y: Any, sample_weight: Any, params: dict) -> Any:
    """Check what the device path supports; return the rows as :class:`ArrayAPIData`."""
    from softmax._validation import encode_labels, row_weights

    refused = []
    if est.solver not in ("auto", "lbfgs"):
        refused.append(f"solver={est.solver!r} (use 'lbfgs' or 'auto')")
    if params["l1_ratio"] != 0:
        refused.append(f"l1_ratio={params['l1_ratio']!r} (L1 needs the proximal solver)")
    if est.reference_class is not None:
        refused.append("reference_class (use reference_class=None)")
    if est.warm_start:
        refused.append("warm_start=True")
    if refused:
        raise ValueError(
            "Fitting on device arrays under array_api_dispatch supports only L-BFGS "
            "with an L2 penalty; refused: " + "; ".join(refused) + ". Or pass NumPy arrays "
            "(e.g. X.cpu().numpy()) to use every solver on the CPU."
        )
    if getattr(X, "ndim", None) != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {tuple(X.shape)}")
    if not xp.isdtype(X.dtype, "real floating"):
        raise TypeError(f"X must be a real floating array on the device path, got {X.dtype}")
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError("Input X contains NaN or infinity.")
    y_host = _host(xp, y).ravel()
    if y_host.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y_host.shape[0]} labels for {X.shape[0]} rows of X")
    classes, codes = encode_labels(y_host)
    if len(classes) < 2:
        raise ValueError(f"y must hold at least 2 classes; got {classes.tolist()}")
    sw = None if sample_weight is None else _host(xp, sample_weight)
    weights = row_weights(codes, classes, sw, est.class_weight)
    dev = device_of(X)
    wdtype = xp.float32 if X.dtype != xp.float64 else xp.float64
    return ArrayAPIData(
        X,
        xp.asarray(codes.astype(np.int64), device=dev),
        xp.asarray(weights.astype(np.float32 if wdtype == xp.float32 else np.float64), device=dev),
        classes,
        fit_intercept=params["fit_intercept"],
        label_smoothing=params["label_smoothing"],
    )


def publish(est: Any, data: ArrayAPIData) -> None:
    """Move the fitted ``coef_`` and ``intercept_`` to the rows' namespace and device."""
    xp, dev = data.xp, data.device
    dt = xp.float32 if data.dtype == np.float32 else xp.float64
    est.coef_ = xp.asarray(np.asarray(est.coef_, dtype=data.dtype), dtype=dt, device=dev)
    est.intercept_ = xp.asarray(np.asarray(est.intercept_, dtype=data.dtype), dtype=dt, device=dev)


def fitted_on_device(est: Any) -> bool:
    """Whether the estimator's coefficients live in a non-NumPy namespace."""
    coef = getattr(est, "coef_", None)
    return coef is not None and not isinstance(coef, np.ndarray)


def device_predict(est: Any, X: Any, method: str) -> Any:
    """The prediction ``method`` (decision_function, predict_proba, ...) in X's namespace."""
    xp = array_namespace(est.coef_)
    if type(X) is not type(est.coef_):
        raise TypeError(
            f"This model was fitted on {type(est.coef_).__module__} arrays under "
            f"array_api_dispatch; pass X of the same library and device (got "
            f"{type(X).__name__})."
        )
    if X.ndim != 2 or X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has shape {tuple(X.shape)}; expected (n_samples, {est.n_features_in_})"
        )
    coef = est.coef_
    Xc = xp.astype(X, coef.dtype) if X.dtype != coef.dtype else X
    Z = Xc @ xp.permute_dims(coef, (1, 0)) + est.intercept_[None, :]
    if method == "decision_function":
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z
    if method == "predict":
        idx = xp.argmax(Z, axis=1)
        classes = est.classes_
        if np.issubdtype(classes.dtype, np.number) or classes.dtype == bool:
            return xp.take(xp.asarray(classes, device=device_of(X)), idx, axis=0)
        return classes[_host(xp, idx)]
    logp = Z - xp.max(Z, axis=1, keepdims=True)
    logp = logp - xp.log(xp.sum(xp.exp(logp), axis=1, keepdims=True))
    return logp if method == "predict_log_proba" else xp.exp(logp)
