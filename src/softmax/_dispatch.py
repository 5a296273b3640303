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

Without dispatch, scikit-learn's rule is NumPy: arrays the host can read
(CPU torch tensors, JAX CPU arrays, ``array_api_strict``'s default device)
are read as NumPy arrays, silently. Arrays on another device (CUDA tensors,
CuPy, ``array_api_strict``'s ``device1``) are copied to the host once,
explicitly, with a :class:`DeviceCopyWarning` that says how to fit on the
device instead (:func:`to_host`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from softmax._array_api import array_namespace, device_of, library_of
from softmax.backends.array_api import ArrayAPIData

__all__ = [
    "DeviceCopyWarning",
    "device_namespace",
    "device_predict",
    "device_rows",
    "fitted_on_device",
    "on_device",
    "publish",
    "to_host",
]


class DeviceCopyWarning(UserWarning):
    """Device arrays (a GPU's, another device's) were copied to host memory.

    Raised by :class:`~softmax.SoftmaxRegression` when it is given arrays
    that live on a device the host cannot read directly while scikit-learn's
    ``array_api_dispatch`` is off: they are copied to NumPy arrays once and
    the work runs on the CPU. To run on the device instead, set
    ``SCIPY_ARRAY_API=1`` before importing SciPy and call inside
    ``sklearn.config_context(array_api_dispatch=True)``; to silence it, pass
    host arrays (``X.cpu().numpy()``). Filter it with
    ``warnings.simplefilter("error", DeviceCopyWarning)`` to refuse such
    copies.
    """


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


def on_device(a: Any) -> bool:
    """Whether ``a`` is an Array API array in memory the host cannot read directly.

    CUDA (and other non-CPU) torch tensors, CuPy arrays, JAX arrays on a
    GPU/TPU, and arrays of other Array API libraries away from their
    namespace's default device (``array_api_strict``'s ``device1``). NumPy
    arrays, CPU tensors, lists, frames and sparse matrices are not.
    """
    if isinstance(a, np.ndarray):
        return False
    lib = library_of(a)
    if lib == "torch":
        return a.device.type != "cpu"
    if lib == "cupy":
        return True
    if lib == "jax":
        return any(d.platform != "cpu" for d in a.devices())
    if lib is None and hasattr(a, "__array_namespace__") and hasattr(a, "device"):
        try:
            default = a.__array_namespace__().__array_namespace_info__().default_device()
        except AttributeError:  # a namespace older than the 2023.12 standard
            return False
        return a.device != default
    return False


def to_host(method: str, *arrays: Any) -> tuple[Any, ...]:
    """``arrays`` with those :func:`on_device` copied to NumPy, warning once if any was.

    Parameters
    ----------
    method : str
        The caller (``"fit"``, ``"predict"``, ...), named in the warning.
    *arrays : array or None
        The call's arrays; others pass through unchanged.

    Returns
    -------
    tuple
        The arrays, device ones replaced by NumPy copies.
    """
    moved = [on_device(a) for a in arrays]
    if not any(moved):
        return arrays
    first = arrays[moved.index(True)]
    warnings.warn(
        DeviceCopyWarning(
            f"SoftmaxRegression.{method}: copying {type(first).__module__}."
            f"{type(first).__name__} arrays on device {device_of(first)} to host memory "
            "(array_api_dispatch is off, so the work runs with NumPy on the CPU). To "
            "run on the device, set SCIPY_ARRAY_API=1 before importing SciPy and call "
            "inside sklearn.config_context(array_api_dispatch=True); to avoid the copy "
            "warning, pass host arrays (e.g. X.cpu().numpy())."
        ),
        stacklevel=3,
    )
    return tuple(
        _host(array_namespace(a), a) if m else a for a, m in zip(arrays, moved, strict=True)
    )


def _host(xp: Any, a: Any) -> np.ndarray:
    """``a`` as a NumPy array of its own dtype, moved explicitly when the host cannot read it."""
    if isinstance(a, np.ndarray) or (
        library_of(a) is None and not hasattr(a, "__array_namespace__")
    ):
        return np.asarray(a)
    if not on_device(a):
        return np.asarray(a)
    import array_api_compat

    try:
        host = array_api_compat.to_device(a, "cpu")  # torch, CuPy, JAX
    except ValueError:
        # array_api_strict names its host device CPU_DEVICE, its default
        host = a.to_device(xp.__array_namespace_info__().default_device())
    return np.asarray(host)


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
    wdtype = np.float64 if X.dtype == xp.float64 else np.float32
    return ArrayAPIData(
        X,
        # int32 codes: every library has them (JAX without x64 has no int64)
        xp.asarray(codes.astype(np.int32), device=dev),
        # unit weights: none at all, which spares each pass two (rows, K) products
        None if np.all(weights == 1.0) else xp.asarray(weights.astype(wdtype), device=dev),
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
