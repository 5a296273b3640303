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
load, so loading cannot execute code. A model file is input like any other:
every field a model is built from is checked at load, and a damaged or
edited file raises a ``ValueError`` that names the file and the field.

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


def _corrupt(name: str, field: str, what: str) -> ValueError:
    """The error for a model file whose ``field`` is wrong: names the file and the field."""
    return ValueError(
        f"{name}: corrupt model file: {field}: {what}; the file was damaged or edited "
        "(re-save the model with softmax, or fit it again)"
    )


def _show(values: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _decode_labels(dtype: Any, values: Any, name: str, field: str) -> np.ndarray:
    """Labels stored as JSON ``values`` of ``dtype``, checked to come back unchanged.

    Raises
    ------
    ValueError
        When the dtype is not a plain number, bool or string dtype, or a value
        does not fit it (out of range, truncated, of another JSON type).
    """
    if not isinstance(dtype, str):
        raise _corrupt(name, f"{field} dtype", f"expected a dtype name, got {dtype!r}")
    if not isinstance(values, list):
        raise _corrupt(name, f"{field} values", f"expected a list, got {type(values).__name__}")
    try:
        np_dtype = np.dtype(dtype)
    except (TypeError, ValueError, KeyError, SyntaxError):
        raise _corrupt(name, f"{field} dtype", f"{dtype!r} is not a NumPy dtype") from None
    kind = np_dtype.kind
    if kind not in "biufOU":
        raise _corrupt(name, f"{field} dtype", f"{dtype!r} is not a number, bool or string dtype")
    values = [_from_json(v) for v in values]
    if kind in "OU":
        expected_type: tuple[type, ...] = (str,)
    elif kind == "b":
        expected_type = (bool,)
    else:
        expected_type = (int, float) if kind == "f" else (int,)
    wrong = [
        v
        for v in values
        if not isinstance(v, expected_type) or (kind != "b" and isinstance(v, bool))
    ]
    if wrong:
        raise _corrupt(name, f"{field} values", f"{_show(wrong)} are not {dtype} values")
    if kind == "f" and not all(math.isfinite(v) for v in values):
        raise _corrupt(name, f"{field} values", "NaN or infinite labels")
    if kind in "iu":
        info = np.iinfo(np_dtype)
        outside = [v for v in values if not info.min <= v <= info.max]
        if outside:
            raise _corrupt(
                name,
                f"{field} values",
                f"{_show(outside)} do not fit dtype {dtype} ({info.min} to {info.max})",
            )
    if kind == "O":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    out = np.asarray(values, dtype=np_dtype.newbyteorder("="))
    if out.tolist() != values:
        changed = [v for v, w in zip(values, out.tolist()) if v != w]
        raise _corrupt(
            name,
            f"{field} values",
            f"{_show(changed)} change when stored as dtype {dtype} (truncated or rounded)",
        )
    return out


def _decode_classes(spec: Any, name: str) -> np.ndarray:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "values"}:
        raise _corrupt(name, "classes", 'expected {"dtype": ..., "values": [...]}')
    classes = _decode_labels(spec["dtype"], spec["values"], name, "classes")
    if len(classes) < 2:
        raise _corrupt(name, "classes", f"a model has at least 2 classes, got {len(classes)}")
    try:
        unique = np.unique(classes)
    except TypeError:  # pragma: no cover - values are all of one JSON type
        unique = classes
    if len(unique) != len(classes):
        seen: set[Any] = set()
        dupes = [c for c in classes.tolist() if c in seen or seen.add(c)]
        raise _corrupt(name, "classes", f"duplicate labels {_show(dupes)}")
    if not np.array_equal(unique, classes):
        raise _corrupt(name, "classes", "labels are not sorted (softmax writes np.unique(y))")
    return classes


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
    """The validated metadata and tensors of a model file.

    Every field a model is built from is checked here, so that a damaged or
    edited file fails at load with a ``ValueError`` naming the file and the
    field, never later with an unrelated error or a silently wrong model.
    """
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
    if type(version) is not int or version < 1:
        raise _corrupt(name, "format_version", f"expected an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{name}: written by a newer softmax ({meta.get('library_version')}, model format "
            f"version {version}); this softmax reads versions up to {FORMAT_VERSION}: upgrade "
            "softmax to load it"
        )
    if not isinstance(meta.get("library_version", ""), str):
        raise _corrupt(
            name, "library_version", f"expected a string, got {meta['library_version']!r}"
        )
    classes = _decode_classes(meta.get("classes"), name)
    n_features = meta.get("n_features_in")
    if type(n_features) is not int or n_features < 1:
        raise _corrupt(name, "n_features_in", f"expected an integer >= 1, got {n_features!r}")
    feature_names = meta.get("feature_names")
    if feature_names is not None:
        if not isinstance(feature_names, list) or not all(
            isinstance(f, str) for f in feature_names
        ):
            raise _corrupt(name, "feature_names", "expected a list of strings or null")
        if len(feature_names) != n_features:
            raise _corrupt(
                name, "feature_names", f"{len(feature_names)} names for n_features_in={n_features}"
            )
        if len(set(feature_names)) != len(feature_names):
            seen: set[str] = set()
            dupes = [f for f in feature_names if f in seen or seen.add(f)]  # type: ignore[func-returns-value]
            raise _corrupt(name, "feature_names", f"duplicate names {_show(dupes)}")

    extra = sorted(set(tensors) - {"coef", "intercept"})
    if extra:
        raise _corrupt(name, "tensors", f"unexpected tensors {_show(extra)}")
    for key in ("coef", "intercept"):
        if key not in tensors:
            raise _corrupt(name, f"tensor {key!r}", "missing")
    coef, intercept = tensors["coef"], tensors["intercept"]
    if coef.dtype not in (np.float32, np.float64):
        raise _corrupt(name, "tensor 'coef'", f"dtype {coef.dtype}, expected float32 or float64")
    if intercept.dtype != coef.dtype:
        raise _corrupt(
            name, "tensor 'intercept'", f"dtype {intercept.dtype} differs from coef's {coef.dtype}"
        )
    # Binary problems may be stored with one row (scikit-learn's layout) or two.
    rows = len(classes) if not (len(classes) == 2 and coef.shape[:1] == (1,)) else 1
    if coef.shape != (rows, n_features):
        raise _corrupt(
            name,
            "tensor 'coef'",
            f"shape {coef.shape}, expected ({len(classes)}, "
            f"{n_features}) for {len(classes)} classes and n_features_in={n_features}",
        )
    if intercept.shape != (rows,):
        raise _corrupt(
            name,
            "tensor 'intercept'",
            f"shape {intercept.shape}, expected ({rows},) to match coef {coef.shape}",
        )
    for key, tensor in (("coef", coef), ("intercept", intercept)):
        bad = ~np.isfinite(tensor)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _corrupt(
                name,
                f"tensor {key!r}",
                f"{int(bad.sum())} NaN or infinite value(s), the "
                f"first at index {where} ({tensor[where]}); a model's coefficients are finite",
            )
    if rows == 1:
        # P(classes_[1]) = sigmoid(w.x + b) as two symmetric rows: the same
        # probabilities, in the layout every method of the estimator expects.
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
        tensors = {"coef": coef, "intercept": intercept}

    params = meta.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _corrupt(name, "params", f"expected a JSON object, got {type(params).__name__}")
    for key, value in params.items():
        if key == "class_weight":
            params[key] = _decode_class_weight(value, meta["classes"]["dtype"], classes, name)
        elif key == "reference_class":
            params[key] = _decode_reference(
                value, meta["classes"]["dtype"], classes, coef, intercept, name
            )
        elif key == "C":
            C = _from_json(value)
            # C = inf (no penalty) is stored as {"float": "inf"}: JSON has no infinity
            if not isinstance(C, (int, float)) or isinstance(C, bool) or not C > 0:
                raise _corrupt(
                    name, "params.C", f"expected a number > 0 or {{\"float\": \"inf\"}}, got "
                    f"{json.dumps(value)[:60]}",
                )  # fmt: skip
            params[key] = C
        elif key == "label_smoothing":
            eps = _from_json(value)
            if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0.0 <= eps < 1.0:
                raise _corrupt(
                    name, "params.label_smoothing",
                    f"expected a number in [0, 1), got {json.dumps(value)[:60]}",
                )  # fmt: skip
            params[key] = float(eps)
        elif key == "l1_ratio":
            ratio = _from_json(value)
            number = isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
            if not number or not 0 <= ratio <= 1:
                raise _corrupt(
                    name, "params.l1_ratio", f"expected a number in [0, 1], got "
                    f"{json.dumps(value)[:60]}",
                )  # fmt: skip
            params[key] = ratio
        elif key == "l1_type":
            from softmax.penalties import L1_TYPES

            if value not in L1_TYPES:
                raise _corrupt(
                    name, "params.l1_type", f"expected one of {list(L1_TYPES)}, got "
                    f"{json.dumps(value)[:60]}",
                )  # fmt: skip
            params[key] = value
        elif isinstance(value, (list, dict)) and _from_json(value) is value:
            raise _corrupt(
                name,
                f"params.{key}",
                f"expected a number, string, bool or null, got {json.dumps(value)[:60]}",
            )
        else:
            params[key] = _from_json(value)
    meta["params"] = params

    training = meta.get("training", {})
    if training is None:
        training = {}
    if not isinstance(training, dict):
        raise _corrupt(name, "training", f"expected a JSON object, got {type(training).__name__}")
    for key, value in training.items():
        value = _from_json(value)
        kind = _TRAINING_TYPES.get(key)
        ok = kind is None or (
            isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        )
        if not ok or (key in ("n_iter", "n_passes") and value < 0):
            raise _corrupt(name, f"training.{key}", f"unexpected value {value!r}")
        training[key] = value
    meta["training"] = training
    meta["classes_array"] = classes
    return meta, tensors


# The training summary's fields and their JSON types.
_TRAINING_TYPES: dict[str, Any] = {
    "n_iter": int,
    "objective": (int, float),
    "converged": bool,
    "n_passes": int,
    "solver": str,
}


def _decode_reference(
    value: Any,
    dtype: Any,
    classes: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    name: str,
) -> Any:
    """``params.reference_class``: null, or a class whose coefficients are all zero."""
    field = "params.reference_class"
    if value is None:
        return None
    label = _decode_labels(dtype, [value], name, field)[0]
    hits = np.flatnonzero(classes == label)
    if hits.size != 1:
        raise _corrupt(name, field, f"{_show([label.item()])} is not a class of the model")
    k = int(hits[0])
    if np.any(coef[k] != 0) or np.any(intercept[k] != 0):
        raise _corrupt(
            name,
            field,
            f"class {label.item()!r} is the reference class, but its coefficients or "
            "intercept are not zero",
        )
    return label.item() if isinstance(label, np.generic) else label


def _decode_class_weight(value: Any, dtype: Any, classes: np.ndarray, name: str) -> Any:
    """``params.class_weight``: null, "balanced" or {"pairs": [[label, weight], ...]}."""
    field = "params.class_weight"
    if value is None or value == "balanced":
        return value
    if (
        not isinstance(value, dict)
        or set(value) != {"pairs"}
        or not isinstance(value["pairs"], list)
    ):
        raise _corrupt(name, field, 'expected null, "balanced" or {"pairs": [[label, weight]]}')
    pairs = value["pairs"]
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        bad = next(p for p in pairs if not (isinstance(p, list) and len(p) == 2))
        raise _corrupt(name, field, f"each pair must be [label, weight], got {bad!r}")
    labels = _decode_labels(dtype, [p[0] for p in pairs], name, field)
    weights = [_from_json(p[1]) for p in pairs]
    if not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
        for w in weights
    ):
        raise _corrupt(name, field, f"weights must be finite numbers >= 0, got {_show(weights)}")
    unknown = [lab for lab in labels.tolist() if lab not in set(classes.tolist())]
    if unknown:
        raise _corrupt(name, field, f"labels {_show(unknown)} are not classes of the model")
    if len(set(labels.tolist())) != len(labels):
        raise _corrupt(name, field, "a label appears twice")
    return {lab: float(w) for lab, w in zip(labels.tolist(), weights)}


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
        format version, or if a field holds what softmax never writes: class
        labels that do not fit their dtype, duplicate or unsorted classes, a
        malformed ``class_weight``, NaN or infinite coefficients, shapes that
        disagree. The message names the file and the field.

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
    known = SoftmaxRegression().get_params(deep=False)
    # A parameter a later minor version added is not needed to predict.
    kwargs = {key: value for key, value in meta["params"].items() if key in known}
    estimator = SoftmaxRegression(**kwargs)
    estimator.coef_ = tensors["coef"]
    estimator.intercept_ = tensors["intercept"]
    estimator.classes_ = meta["classes_array"]
    estimator.n_features_in_ = int(meta["n_features_in"])
    if meta.get("feature_names") is not None:
        estimator.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    for key, attr in _SUMMARY_ATTRS.items():
        if key in meta["training"]:
            setattr(estimator, attr, meta["training"][key])
    return estimator
