"""Model files: one safetensors file per model, with JSON metadata; never pickle.

A model file is a plain `safetensors <https://github.com/huggingface/safetensors>`_
file, written here with NumPy alone:

- 8 bytes: the header length N, unsigned little-endian;
- N bytes: a JSON header mapping each tensor name to its ``dtype``, ``shape``
  and ``data_offsets`` (begin, end) in the byte buffer, plus a
  ``"__metadata__"`` string-to-string map (padded with spaces so the buffer
  starts 8-byte aligned, as the reference implementation does);
- the byte buffer: each tensor's values, C order, little-endian.

The tensors are ``coef`` of shape (n_classes, n_features) and ``intercept``
of shape (n_classes,), in the dtype the model was fitted in. Everything else
(classes with their dtype, feature names, hyper-parameters, training summary,
format and library versions) is one JSON document stored under the metadata
key ``"softmax"``. Any safetensors reader (the ``safetensors`` package, Rust,
JavaScript) can open the tensors; only JSON and raw numbers are ever parsed on
load, so loading cannot execute code.

Files are written atomically: a temporary file in the same folder, flushed
and fsync'ed, then renamed over the target, so a crash or error mid-save
never leaves a half-written model and never clobbers a good one.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from softmax._model_format import (
    _METADATA_KEY,
    _ST_TO_NUMPY,
    _SUMMARY_ATTRS,
    FORMAT_NAME,
    FORMAT_VERSION,
    save_model,
    write_safetensors,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "load_model",
    "read_model_metadata",
    "read_safetensors",
    "save_model",
    "write_safetensors",
]

# The reference implementation refuses larger headers; so do we, so that a
# corrupt length field cannot make us allocate gigabytes.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


# --------------------------------------------------------------------------- #
# Raw safetensors                                                             #
# --------------------------------------------------------------------------- #


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys would let two readers see two different files.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in JSON")
        result[key] = value
    return result


def _parse_json(text: bytes | str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None


def read_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file.

    Every field is checked before use; nothing but JSON and raw numbers is
    decoded.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    tensors : dict of str to ndarray
        Native-byte-order copies (writeable, independent of the file).
    metadata : dict of str to str
        The ``"__metadata__"`` map (empty when absent).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a well-formed safetensors file (truncated, corrupt,
        or not safetensors at all).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    name = path.name
    if len(data) < 8:
        raise ValueError(f"{name}: not a safetensors model file (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > _MAX_HEADER_BYTES:
        raise ValueError(
            f"{name}: not a safetensors model file (header length {header_len} is implausible)"
        )
    if 8 + header_len > len(data):
        raise ValueError(
            f"{name}: file is truncated (header of {header_len} bytes, file of {len(data)})"
        )
    header_bytes = data[8 : 8 + header_len]
    if not header_bytes.lstrip().startswith(b"{"):
        raise ValueError(f"{name}: not a safetensors model file (header is not a JSON object)")
    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: corrupt safetensors header (not UTF-8)") from None
    header = _parse_json(header_text, f"{name}: safetensors header")
    if not isinstance(header, dict):
        raise ValueError(f"{name}: corrupt safetensors header (not a JSON object)")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError(f"{name}: corrupt safetensors header (__metadata__ must map str to str)")

    buffer = memoryview(data)[8 + header_len :]
    tensors: dict[str, np.ndarray] = {}
    spans: list[tuple[int, int, str]] = []
    for tensor_name, info in header.items():
        where = f"{name}: tensor {tensor_name!r}"
        if not isinstance(info, dict):
            raise ValueError(f"{where}: entry is not a JSON object")
        dtype = _ST_TO_NUMPY.get(info.get("dtype"))  # type: ignore[arg-type]
        if dtype is None:
            raise ValueError(f"{where}: unsupported dtype {info.get('dtype')!r}")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if not (
            isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets)
        ):
            raise ValueError(f"{where}: corrupt shape or data_offsets")
        begin, end = offsets
        n_bytes = math.prod(shape) * dtype.itemsize
        if end - begin != n_bytes:
            raise ValueError(
                f"{where}: data_offsets span {end - begin} bytes, shape {shape} needs {n_bytes}"
            )
        if end > len(buffer):
            raise ValueError(
                f"{name}: file is truncated (tensor {tensor_name!r} ends at byte {end} of a "
                f"{len(buffer)}-byte buffer)"
            )
        spans.append((begin, end, tensor_name))
        tensors[tensor_name] = (
            np.frombuffer(buffer[begin:end], dtype=dtype)
            .reshape(shape)
            .astype(dtype.newbyteorder("="))
        )
    spans.sort()
    for (_b0, e0, n0), (b1, _e1, n1) in itertools.pairwise(spans):
        if b1 < e0:
            raise ValueError(f"{name}: corrupt header (tensors {n0!r} and {n1!r} overlap)")
    return tensors, dict(metadata)


# --------------------------------------------------------------------------- #
# Model files                                                                 #
# --------------------------------------------------------------------------- #


def _from_json(value: Any) -> Any:
    """Inverse of :func:`_json_scalar` for the tagged non-finite floats."""
    if isinstance(value, dict) and set(value) == {"float"} and value["float"] in _NONFINITE:
        return float(value["float"])
    return value


_NONFINITE = ("inf", "-inf", "nan")


def _decode_classes(spec: Any, where: str) -> np.ndarray:
    if not isinstance(spec, dict) or not isinstance(spec.get("values"), list):
        raise ValueError(f"{where}: corrupt classes in metadata")
    values = spec["values"]
    dtype = spec.get("dtype")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"{where}: corrupt classes dtype {dtype!r} in metadata") from None
    if np_dtype.kind in "OU":
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}: corrupt classes in metadata")
        if np_dtype.kind == "U":
            return np.asarray(values, dtype=np_dtype.newbyteorder("="))
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if np_dtype.kind not in "biuf":
        raise ValueError(f"{where}: corrupt classes dtype {dtype!r} in metadata")
    values = [_from_json(v) for v in values]
    if not all(isinstance(v, (bool, int, float)) for v in values):
        raise ValueError(f"{where}: corrupt classes in metadata")
    return np.asarray(values, dtype=np_dtype.newbyteorder("="))


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a model file, validated, without building a model.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    metadata : dict
        Keys ``format``, ``format_version``, ``library_version``, ``classes``
        (``{"dtype", "values"}``), ``n_features_in``, ``feature_names``,
        ``params``, ``training``, plus ``tensors``: name -> {dtype, shape}.

    Raises
    ------
    ValueError
        If the file is not a model file written by this library, is damaged,
        or was written by a newer format version.
    """
    meta, tensors = _read_model(path)
    meta = dict(meta)
    meta["tensors"] = {
        name: {"dtype": str(t.dtype), "shape": list(t.shape)} for name, t in tensors.items()
    }
    return meta


def _read_model(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    name = Path(path).name
    tensors, metadata = read_safetensors(path)
    doc = metadata.get(_METADATA_KEY)
    if doc is None:
        raise ValueError(
            f"{name}: a safetensors file, but not a softmax model (no {_METADATA_KEY!r} "
            "metadata); it was written by another program"
        )
    meta = _parse_json(doc, f"{name}: model metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{name}: a safetensors file, but not a softmax model file")
    version = meta.get("format_version")
    if type(version) is not int:
        raise ValueError(f"{name}: corrupt model metadata (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{name}: written by a newer softmax ({meta.get('library_version')}, model format "
            f"version {version}); this softmax reads versions up to {FORMAT_VERSION}: upgrade "
            "softmax to load it"
        )
    for key in ("coef", "intercept"):
        if key not in tensors:
            raise ValueError(f"{name}: corrupt model file (tensor {key!r} is missing)")
    coef, intercept = tensors["coef"], tensors["intercept"]
    classes = _decode_classes(meta.get("classes"), name)
    n_features = meta.get("n_features_in")
    if (
        coef.ndim != 2
        or intercept.shape != (coef.shape[0],)
        or type(n_features) is not int
        or coef.shape[1] != n_features
        or coef.dtype.kind != "f"
        or intercept.dtype != coef.dtype
    ):
        raise ValueError(
            f"{name}: corrupt model file (coef {coef.shape} {coef.dtype}, intercept "
            f"{intercept.shape} {intercept.dtype}, n_features_in {n_features!r})"
        )
    # Binary problems may be stored with one row (scikit-learn's layout) or two.
    if coef.shape[0] != len(classes) and not (len(classes) == 2 and coef.shape[0] == 1):
        raise ValueError(
            f"{name}: corrupt model file ({coef.shape[0]} coefficient rows for "
            f"{len(classes)} classes)"
        )
    feature_names = meta.get("feature_names")
    if feature_names is not None and (
        not isinstance(feature_names, list)
        or len(feature_names) != n_features
        or not all(isinstance(f, str) for f in feature_names)
    ):
        raise ValueError(f"{name}: corrupt model file (feature_names)")
    meta["classes_array"] = classes
    return meta, tensors


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model saved by :func:`save_model` (or ``SoftmaxRegression.save``).

    Only JSON and raw little-endian numbers are read: nothing is unpickled or
    executed, so loading a file from an untrusted source is safe.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator : SoftmaxRegression
        Fitted, with the same ``coef_`` and ``intercept_`` bytes, ``classes_``
        (same values and dtype), ``n_features_in_``, ``feature_names_in_`` and
        hyper-parameters; its predictions equal the saved model's exactly.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupt, not a softmax model (another
        safetensors file, or not safetensors at all) or written by a newer
        format version.

    Examples
    --------
    >>> import numpy as np, softmax, tempfile, os
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = ["a", "a", "b", "b"]
    >>> model = softmax.SoftmaxRegression().fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> _ = model.save(path)
    >>> (softmax.load_model(path).predict(X) == model.predict(X)).all()
    np.True_
    """
    from softmax.regression import SoftmaxRegression

    meta, tensors = _read_model(path)
    classes = meta["classes_array"]
    params = meta.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{Path(path).name}: corrupt model metadata (params)")
    known = SoftmaxRegression().get_params(deep=False)
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key not in known:
            continue  # a parameter a later minor version added: not needed to predict
        if key == "class_weight" and isinstance(value, dict) and "pairs" in value:
            labels = _decode_classes(
                {"dtype": meta["classes"]["dtype"], "values": [p[0] for p in value["pairs"]]},
                Path(path).name,
            )
            value = {
                lab: float(_from_json(p[1])) for lab, p in zip(labels.tolist(), value["pairs"])
            }
        kwargs[key] = _from_json(value)
    estimator = SoftmaxRegression(**kwargs)
    estimator.coef_ = tensors["coef"]
    estimator.intercept_ = tensors["intercept"]
    estimator.classes_ = classes
    estimator.n_features_in_ = int(meta["n_features_in"])
    if meta.get("feature_names") is not None:
        estimator.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    training = meta.get("training") or {}
    for key, attr in _SUMMARY_ATTRS.items():
        if key in training:
            setattr(estimator, attr, _from_json(training[key]))
    return estimator
