"""The model file format: its constants, and writing a model (``save_model``).

The writing half of :mod:`softmax.io` (see its docstring for the format),
kept below the estimator: :meth:`softmax.SoftmaxRegression.save` writes
through :func:`save_model` here, while :mod:`softmax.io` reads files and
builds estimators from them, above :mod:`softmax.regression`. Nothing here
knows the estimator's class: a model is whatever has ``get_params()``,
``coef_``, ``intercept_``, ``classes_`` and ``n_features_in_``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from softmax._persist import atomic_write_bytes

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_model", "write_safetensors"]

FORMAT_NAME = "softmax.SoftmaxRegression"
# Bump when a reader of the previous version could misread a new file.
FORMAT_VERSION = 1
_METADATA_KEY = "softmax"

# safetensors dtype name <-> NumPy dtype (little-endian). BF16 and the FP8
# types have no NumPy equivalent and are refused on load.
_ST_TO_NUMPY: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NUMPY_TO_ST: dict[str, str] = {
    dt.str.replace("|", "<"): name for name, dt in _ST_TO_NUMPY.items()
}

# Fitted attributes stored in the training summary: metadata key -> attribute.
_SUMMARY_ATTRS = {
    "n_iter": "n_iter_",
    "objective": "objective_",
    "converged": "converged_",
    "n_passes": "n_passes_",
    "solver": "solver_",
}


def _st_dtype(array: np.ndarray) -> str:
    key = array.dtype.newbyteorder("<").str.replace("|", "<")
    name = _NUMPY_TO_ST.get(key)
    if name is None:
        raise TypeError(f"safetensors cannot store dtype {array.dtype}")
    return name


def _encode_safetensors(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name, value in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        array = np.asarray(value)
        dtype_name = _st_dtype(array)
        data = np.ascontiguousarray(array, dtype=_ST_TO_NUMPY[dtype_name]).tobytes()
        header[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # Pad with spaces so the buffer starts on an 8-byte boundary, which lets
    # readers that memory-map the file view F64 tensors without copying.
    header_bytes += b" " * (-(8 + len(header_bytes)) % 8)
    return b"".join([struct.pack("<Q", len(header_bytes)), header_bytes, *chunks])


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write arrays (and string metadata) to a safetensors file, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder must exist. An existing file is replaced only
        once the new one is completely on disk.
    tensors : mapping of str to ndarray
        Arrays of a numeric or bool dtype; written C-ordered, little-endian.
    metadata : mapping of str to str, optional
        Stored in the header under ``"__metadata__"``.
    """
    payload = _encode_safetensors(tensors, metadata or {})
    atomic_write_bytes(path, payload)


def _json_scalar(value: Any) -> Any:
    """A NumPy or Python scalar as a JSON value that round-trips exactly."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        # Standard JSON has no inf/nan (C=inf is a real setting): tag them.
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} in a model file")


def _encode_classes(classes: np.ndarray) -> dict[str, Any]:
    classes = np.asarray(classes)
    kind = classes.dtype.kind
    if kind in "biuf":
        return {"dtype": classes.dtype.str, "values": [_json_scalar(c) for c in classes]}
    if kind == "U":
        return {"dtype": classes.dtype.str, "values": [str(c) for c in classes]}
    if kind == "O" and all(isinstance(c, str) for c in classes):
        # What pandas columns and scikit-learn's label encoding give for strings.
        return {"dtype": "object", "values": list(classes)}
    raise TypeError(
        "model files store classes that are all numbers, booleans or strings; "
        f"got classes of dtype {classes.dtype} ({classes[:3]!r}...)"
    )


def _model_metadata(estimator: Any) -> dict[str, Any]:
    import softmax

    params: dict[str, Any] = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "class_weight" and isinstance(value, Mapping):
            # JSON keys are strings; keep the labels' types as a list of pairs.
            value = {"pairs": [[_json_scalar(k), _json_scalar(v)] for k, v in value.items()]}
        elif value is not None:
            try:
                value = _json_scalar(value)
            except TypeError:
                # e.g. a RandomState instance: not reproducible from a file anyway.
                value = None
        params[key] = value

    feature_names = getattr(estimator, "feature_names_in_", None)
    training = {
        key: _json_scalar(getattr(estimator, attr))
        for key, attr in _SUMMARY_ATTRS.items()
        if getattr(estimator, attr, None) is not None
    }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library": "softmax",
        "library_version": softmax.__version__,
        "classes": _encode_classes(estimator.classes_),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names": None if feature_names is None else [str(f) for f in feature_names],
        "params": params,
        "training": training,
    }


def save_model(estimator: Any, path: str | os.PathLike[str]) -> Path:
    """Save a fitted :class:`~softmax.SoftmaxRegression` to one safetensors file.

    Parameters
    ----------
    estimator : SoftmaxRegression
        A fitted estimator.
    path : str or path-like
        Destination file (conventionally ``*.safetensors``). Its folder must
        exist. Written atomically: on any error the previous file at ``path``
        (if any) is untouched and no temporary file is left behind.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    TypeError
        If its classes are not numbers, booleans or strings.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, ["coef_", "intercept_", "classes_"])
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as model.safetensors")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    meta = _model_metadata(estimator)
    coef = np.asarray(estimator.coef_)
    intercept = np.asarray(estimator.intercept_)
    payload = _encode_safetensors(
        {"coef": coef, "intercept": intercept},
        {_METADATA_KEY: json.dumps(meta, ensure_ascii=False, allow_nan=False)},
    )
    atomic_write_bytes(path, payload)
    return path
