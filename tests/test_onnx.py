"""ONNX export: onnxruntime must reproduce predict_proba and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

from softmax import SoftmaxRegression

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from softmax.onnx import export_onnx, to_onnx  # noqa: E402


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba, cls = session.run(["label", "probabilities", "class"], {"X": X})
    return label, proba, cls, session


@pytest.mark.parametrize(
    "labels",
    [
        lambda y: y,
        lambda y: np.array(["setosa", "versicolor", "virginica"])[y],
        lambda y: y == 2,
    ],
    ids=["int", "str", "bool"],
)
def test_onnxruntime_matches_predict_proba(tmp_path, labels):
    X, y = load_iris(return_X_y=True)
    model = SoftmaxRegression(C=10.0).fit(X, labels(y))
    path = export_onnx(model, tmp_path / "m.onnx")
    label, proba, cls, session = _run(path, X)
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(model.classes_[label], model.predict(X))
    if model.classes_.dtype.kind in "OU":
        np.testing.assert_array_equal(cls, model.predict(X))
    else:
        np.testing.assert_array_equal(cls, model.predict(X).astype(np.int64))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == model.classes_.tolist()


def test_onnx_many_classes_float32_and_opsets(tmp_path):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    model = SoftmaxRegression(C=1.0).fit(X, y)
    for opset in (13, 17, 21):
        path = export_onnx(model, tmp_path / f"m{opset}.onnx", opset=opset)
        _, proba, _, _ = _run(path, X)
        np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-6, rtol=0)
    path = export_onnx(model, tmp_path / "m32.onnx", dtype=np.float32)
    label, proba, _, _ = _run(path, X.astype(np.float32))
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5, rtol=0)
    assert (model.classes_[label] == model.predict(X)).mean() > 0.999


def test_graph_structure():
    X, y = load_iris(return_X_y=True)
    proto = to_onnx(SoftmaxRegression().fit(X, y))
    ops = [node.op_type for node in proto.graph.node]
    assert ops == ["Gemm", "Softmax", "ArgMax", "Gather"]
    assert [o.name for o in proto.graph.output] == ["label", "probabilities", "class"]
    assert proto.opset_import[0].version == 17
    onnx.checker.check_model(proto)


def test_export_refuses_bad_arguments(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        to_onnx(SoftmaxRegression())
    X, y = load_iris(return_X_y=True)
    model = SoftmaxRegression().fit(X, y)
    with pytest.raises(ValueError, match="opset"):
        to_onnx(model, opset=11)
    with pytest.raises(ValueError, match="dtype"):
        to_onnx(model, dtype=np.int32)
