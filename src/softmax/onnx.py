"""Export a fitted SoftmaxRegression to ONNX (needs the onnx package: the ``onnx`` extra).

The graph is what the model computes, nothing more::

    X (N, p) --Gemm(coef^T, intercept)--> logits (N, K) --Softmax(axis=1)--> probabilities
                                                       \\--ArgMax(axis=1)--> label (N,)

``label`` is the int64 index of the most probable class (ties go to the first
class, as in ``predict``) and ``class`` is that class itself, gathered from a
constant tensor of the model's classes (int64, double, bool-as-int64 or
string). The classes are also stored as JSON in the model's
``metadata_props`` under ``"classes"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_OPSET", "export_onnx", "to_onnx"]

#: Opset 13 is the first where Softmax normalises along one axis (older
#: versions flatten the trailing axes, same result for 2-D input but a
#: different definition); 17 is widely supported by runtimes.
DEFAULT_OPSET = 17
_MIN_OPSET = 13


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        from softmax._optional import install_hint

        raise ImportError(f"ONNX export needs the onnx package: {install_hint('onnx')}") from None
    return onnx


def _classes_tensor(classes: np.ndarray) -> np.ndarray:
    """The classes as an array ONNX can hold (int64, float64 or str)."""
    kind = classes.dtype.kind
    if kind in "biu":
        return classes.astype(np.int64)
    if kind == "f":
        return classes.astype(np.float64)
    return np.asarray([str(c) for c in classes], dtype=object)


def to_onnx(estimator: Any, *, opset: int = DEFAULT_OPSET, dtype: Any = None) -> Any:
    """Build the ONNX model of a fitted softmax regression.

    Parameters
    ----------
    estimator : SoftmaxRegression
        A fitted model.
    opset : int, default=17
        ONNX operator set of the default domain (at least 13).
    dtype : {numpy.float32, numpy.float64}, optional
        Element type of the input and of the computation; default: the
        dtype of ``coef_`` (float64 unless the model was fitted on float32).

    Returns
    -------
    model : onnx.ModelProto
        Input ``X`` of shape (N, n_features); outputs ``label`` (N,) int64,
        ``probabilities`` (N, n_classes) and ``class`` (N,).
    """
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, ["coef_", "intercept_", "classes_"])
    if not isinstance(opset, int) or opset < _MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {_MIN_OPSET}, got {opset!r}")
    coef = np.asarray(estimator.coef_)
    float_type = np.dtype(dtype if dtype is not None else coef.dtype)
    if float_type not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {float_type}")
    elem = TensorProto.FLOAT if float_type == np.float32 else TensorProto.DOUBLE
    n_classes, n_features = coef.shape
    intercept = np.asarray(estimator.intercept_)
    if not getattr(estimator, "fit_intercept", True):
        intercept = np.zeros_like(intercept)
    classes = np.asarray(estimator.classes_)
    class_values = _classes_tensor(classes)
    class_elem = {
        "i": TensorProto.INT64,
        "f": TensorProto.DOUBLE,
        "O": TensorProto.STRING,
    }[class_values.dtype.kind]

    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(coef, dtype=float_type), "coef"),
        numpy_helper.from_array(np.ascontiguousarray(intercept, dtype=float_type), "intercept"),
        numpy_helper.from_array(class_values, "classes"),
    ]
    nodes = [
        # Y = X @ coef^T + intercept: one fused op, the bias broadcast over rows.
        helper.make_node("Gemm", ["X", "coef", "intercept"], ["logits"], transB=1, name="linear"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
        # ArgMax of the logits equals that of the probabilities and skips
        # their rounding; select_last_index=0 breaks ties towards the first.
        helper.make_node(
            "ArgMax", ["logits"], ["label"], axis=1, keepdims=0, select_last_index=0, name="argmax"
        ),
        helper.make_node("Gather", ["classes", "label"], ["class"], axis=0, name="class_of_label"),
    ]
    graph = helper.make_graph(
        nodes,
        "softmax_regression",
        inputs=[helper.make_tensor_value_info("X", elem, ["N", n_features])],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", elem, ["N", n_classes]),
            helper.make_tensor_value_info("class", class_elem, ["N"]),
        ],
        initializer=initializers,
    )
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opset_ids,
        producer_name="softmax",
        producer_version=_library_version(),
        doc_string="Softmax regression: probabilities = softmax(X @ coef^T + intercept).",
    )
    # The oldest IR version that carries this opset: newer IR versions would
    # needlessly lock out older runtimes.
    model.ir_version = helper.find_min_ir_version_for(opset_ids)
    classes_json = json.dumps([_json_class(c) for c in classes])
    helper.set_model_props(model, {"classes": classes_json, "library": "softmax"})
    onnx.checker.check_model(model)
    return model


def _json_class(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _library_version() -> str:
    from softmax import __version__

    return __version__


def export_onnx(
    estimator: Any,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    dtype: Any = None,
) -> Path:
    """Write a fitted softmax regression to an ONNX file (atomically).

    Parameters
    ----------
    estimator : SoftmaxRegression
        A fitted model.
    path : str or path-like
        Destination ``.onnx`` file; its folder must exist.
    opset : int, default=17
    dtype : {numpy.float32, numpy.float64}, optional
        See :func:`to_onnx`.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import numpy as np, onnxruntime as ort, tempfile, os
    >>> from softmax import SoftmaxRegression
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]); y = [0, 1, 2]
    >>> model = SoftmaxRegression().fit(X, y)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> session = ort.InferenceSession(str(path))
    >>> label, proba, cls = session.run(None, {"X": X})
    >>> bool(np.allclose(proba, model.predict_proba(X)))
    True
    """
    from softmax._persist import atomic_write_bytes

    model = to_onnx(estimator, opset=opset, dtype=dtype)
    path = Path(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path
