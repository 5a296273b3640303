"""Model files: safetensors written by hand, read back exactly, refused when bad."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError

import softmax
from softmax import SoftmaxRegression
from softmax.io import (
    FORMAT_VERSION,
    load_model,
    read_model_metadata,
    read_safetensors,
    save_model,
    write_safetensors,
)

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    return SoftmaxRegression(C=0.5).fit(X, names[y])


def _same_model(a, b, X):
    assert a.coef_.dtype == b.coef_.dtype
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    assert a.classes_.dtype == b.classes_.dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    # Exactly equal, not just close: the same bytes go in and come out.
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize(
    "labels",
    [
        lambda y: y,  # int64
        lambda y: y.astype(np.uint8),
        lambda y: np.array(["setosa", "versicolor", "virginica"])[y],  # <U
        lambda y: np.array(["a", "b", "c"], dtype=object)[y],  # object strings
        lambda y: y == 2,  # bool, two classes
        lambda y: y.astype(np.float64) * 10,  # float labels 0.0, 10.0, 20.0
    ],
    ids=["int64", "uint8", "unicode", "object", "bool", "float"],
)
def test_round_trip_keeps_classes_and_predictions(tmp_path, iris, labels):
    X, y = iris
    model = SoftmaxRegression().fit(X, labels(y))
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, SoftmaxRegression)
    _same_model(model, loaded, X)
    assert loaded.get_params() == model.get_params()
    assert loaded.n_features_in_ == 4
    assert loaded.n_iter_ == model.n_iter_ and loaded.solver_ == model.solver_


def test_public_load_model_and_float32(tmp_path, iris):
    X, y = iris
    model = SoftmaxRegression().fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float32
    save_model(model, tmp_path / "m.safetensors")
    loaded = softmax.load_model(tmp_path / "m.safetensors")
    _same_model(model, loaded, X.astype(np.float32))


def test_feature_names_and_params_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = SoftmaxRegression(C=10.0, class_weight={0: 2.0, 2: 0.5}, max_iter=50).fit(X, y)
    # Standard JSON has no infinity; the file must still keep it exactly.
    model.set_params(C=np.inf)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert list(loaded.feature_names_in_) == list(X.columns)
    assert np.isposinf(loaded.C)
    assert loaded.class_weight == {0: 2.0, 2: 0.5}
    assert all(type(k) is int for k in loaded.class_weight)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert isinstance(X, pd.DataFrame)


def test_file_is_plain_safetensors_readable_by_reference_library(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    tensors = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(tensors["coef"], fitted.coef_)
    np.testing.assert_array_equal(tensors["intercept"], fitted.intercept_)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = json.loads(fh.metadata()["softmax"])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["classes"]["values"] == ["setosa", "versicolor", "virginica"]
    assert meta["library_version"] == softmax.__version__
    # The tensor data starts 8-byte aligned, as the reference writer does it.
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert (8 + n) % 8 == 0


def test_reads_files_written_by_reference_library(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "a": rng.standard_normal((3, 5)),
        "b": rng.standard_normal(7).astype(np.float32),
        "c": np.arange(6, dtype=np.int32).reshape(2, 3),
        "d": np.array([True, False]),
        "e": np.zeros((0, 4)),
    }
    path = tmp_path / "ref.safetensors"
    safetensors_numpy.save_file(arrays, str(path), metadata={"k": "v"})
    tensors, meta = read_safetensors(path)
    assert meta == {"k": "v"}
    for key, value in arrays.items():
        assert tensors[key].dtype == value.dtype
        np.testing.assert_array_equal(tensors[key], value)


def test_our_writer_readable_by_reference_library(tmp_path):
    arrays = {
        "x": np.arange(12, dtype=">f8").reshape(3, 4),  # big-endian in, little-endian on disk
        "y": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "z": np.array([1, 2, 3], dtype=np.uint8),
    }
    path = tmp_path / "ours.safetensors"
    write_safetensors(path, arrays, {"hello": "world"})
    loaded = safetensors_numpy.load_file(str(path))
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    safetensors_numpy.save_file({"coef": np.zeros((2, 2))}, str(path))
    with pytest.raises(ValueError, match="not a softmax model"):
        load_model(path)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00" * 5,
        os.urandom(256),
        b"PK\x03\x04 this is a zip file, not a model",
        struct.pack("<Q", 2**40) + b"{}",
        struct.pack("<Q", 4) + b"[1,2]",
        struct.pack("<Q", 8) + b'{"a": 1}',
        struct.pack("<Q", 6) + b"\xff\xfe{}}}",
    ],
    ids=["empty", "tiny", "random", "zip", "huge-header", "json-list", "bad-entry", "not-utf8"],
)
def test_garbage_is_a_clear_value_error(tmp_path, payload):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ValueError):
        load_model(path)


def test_truncated_file_is_refused(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    data = path.read_bytes()
    for cut in (4, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"truncated|not a safetensors"):
            load_model(path)


def _rewrite_metadata(path, edit):
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta["softmax"])
    edit(doc)
    write_safetensors(path, tensors, {"softmax": json.dumps(doc)})


def test_newer_format_is_refused_with_upgrade_advice(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    _rewrite_metadata(path, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match=r"newer softmax.*upgrade"):
        load_model(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(n_features_in=5),
        lambda d: d["classes"]["values"].append("extra"),
        lambda d: d.update(classes={"dtype": "object", "values": [1, 2, 3]}),
        lambda d: d.update(feature_names=["a"]),
        lambda d: d.update(format="something.else"),
        lambda d: d.update(format_version="1"),
    ],
)
def test_inconsistent_metadata_is_refused(tmp_path, fitted, edit):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    _rewrite_metadata(path, edit)
    with pytest.raises(ValueError):
        load_model(path)


def test_corrupt_offsets_and_dtypes_are_refused(tmp_path):
    def raw(header: dict, buffer: bytes) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + buffer

    cases = [
        {"t": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}},  # size mismatch
        {"t": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}},  # past the end
        {"t": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}},  # no NumPy dtype
        {"t": {"dtype": "F64", "shape": [-1], "data_offsets": [0, 8]}},
        {
            "t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "u": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},  # overlap
        },
    ]
    for i, header in enumerate(cases):
        path = tmp_path / f"c{i}.safetensors"
        path.write_bytes(raw(header, b"\x00" * 8))
        with pytest.raises(ValueError):
            read_safetensors(path)
    dup = b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "t": {}}'
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(dup)) + dup + b"\x00")
    with pytest.raises(ValueError, match="duplicate"):
        read_safetensors(path)


def test_loading_never_unpickles(tmp_path):
    # A pickle-based "model" (what joblib/pickle would write) is refused, and
    # the payload's side effect never happens.
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError):
        load_model(path)
    assert not marker.exists()


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        save_model(SoftmaxRegression(), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, fitted, monkeypatch):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    other = SoftmaxRegression(C=3.0).fit(*load_iris(return_X_y=True))
    with pytest.raises(OSError, match="simulated"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_failed_write_midway_leaves_nothing(tmp_path, fitted, monkeypatch):
    import softmax.io as sio

    def broken_fsync(fd):
        raise OSError("I/O error (simulated)")

    monkeypatch.setattr(sio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        fitted.save(tmp_path / "new.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_to_missing_folder_or_folder_path(tmp_path, fitted):
    with pytest.raises(FileNotFoundError):
        save_model(fitted, tmp_path / "nope" / "m.safetensors")
    with pytest.raises(IsADirectoryError):
        save_model(fitted, tmp_path)


def test_unsupported_class_types_are_refused(tmp_path, iris):
    X, y = iris
    model = SoftmaxRegression().fit(X, y)
    model.classes_ = np.array([(1, 2), "a", 3.0], dtype=object)
    with pytest.raises(TypeError, match="classes"):
        model.save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_read_model_metadata(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    meta = read_model_metadata(path)
    assert meta["n_features_in"] == 4
    assert meta["tensors"]["coef"] == {"dtype": "float64", "shape": [3, 4]}
    assert meta["training"]["converged"] is True
    assert meta["params"]["C"] == 0.5


# -- tampered files: every field a model is built from is checked at load ---------------


def _tamper(path, meta_edit=None, tensor_edit=None):
    """Rewrite a saved model file with its JSON metadata and/or tensors edited."""
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta["softmax"])
    if meta_edit is not None:
        meta_edit(doc)
    if tensor_edit is not None:
        tensor_edit(tensors)
    write_safetensors(path, tensors, {"softmax": json.dumps(doc)})


def _set(*keys_value):
    *keys, value = keys_value

    def edit(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _nan_at(name, index):
    def edit(tensors):
        tensors[name][index] = np.nan

    return edit


TAMPERED = {
    # classes
    "int8-overflow": (
        "ints",
        _set("classes", "dtype", "|i1"),
        None,
        r"classes values: 1000, 2000, 3000 do not fit dtype \|i1",
    ),
    "unicode-truncates": (
        "names",
        _set("classes", "dtype", "<U2"),
        None,
        r"classes values: 'setosa', 'versicolor', 'virginica' change when stored as dtype <U2",
    ),
    "duplicate-labels": (
        "names",
        _set("classes", "values", ["setosa", "setosa", "virginica"]),
        None,
        r"classes: duplicate labels 'setosa'",
    ),
    "unsorted-labels": (
        "names",
        _set("classes", "values", ["virginica", "setosa", "versicolor"]),
        None,
        r"classes: labels are not sorted",
    ),
    "one-class": (
        "names",
        _set("classes", "values", ["setosa"]),
        None,
        r"classes: a model has at least 2 classes",
    ),
    "dtype-not-numpy": (
        "ints",
        _set("classes", "dtype", "float128x"),
        None,
        r"classes dtype: 'float128x' is not a NumPy dtype",
    ),
    "dtype-complex": (
        "ints",
        _set("classes", "dtype", "<c16"),
        None,
        r"classes dtype: '<c16' is not a number, bool or string dtype",
    ),
    "dtype-not-string": (
        "ints",
        _set("classes", "dtype", None),
        None,
        r"classes dtype: expected a dtype name, got None",
    ),
    "bools-as-ints": (
        "ints",
        _set("classes", "values", [True, False, True]),
        None,
        r"classes values: True, False, True are not <i8 values",
    ),
    "nan-label": (
        "floats",
        _set("classes", "values", [{"float": "nan"}, 1.0, 2.0]),
        None,
        r"classes values: NaN or infinite labels",
    ),
    "classes-shape": (
        "names",
        _set("classes", ["setosa"]),
        None,
        r"classes: expected \{\"dtype\"",
    ),
    # class_weight
    "class-weight-short-pair": (
        "ints",
        _set("params", "class_weight", {"pairs": [[1000]]}),
        None,
        r"params.class_weight: each pair must be \[label, weight\], got \[1000\]",
    ),
    "class-weight-not-pairs": (
        "ints",
        _set("params", "class_weight", {"pairs": 3}),
        None,
        r"params.class_weight: expected null",
    ),
    "class-weight-bad-weight": (
        "ints",
        _set("params", "class_weight", {"pairs": [[1000, "heavy"]]}),
        None,
        r"params.class_weight: weights must be finite numbers >= 0",
    ),
    "class-weight-negative": (
        "ints",
        _set("params", "class_weight", {"pairs": [[1000, -1.0]]}),
        None,
        r"params.class_weight: weights must be finite",
    ),
    "class-weight-unknown-label": (
        "ints",
        _set("params", "class_weight", {"pairs": [[7, 1.0]]}),
        None,
        r"params.class_weight: labels 7 are not classes of the model",
    ),
    "class-weight-label-type": (
        "ints",
        _set("params", "class_weight", {"pairs": [["a", 1.0]]}),
        None,
        r"params.class_weight values: 'a' are not <i8 values",
    ),
    "class-weight-twice": (
        "ints",
        _set("params", "class_weight", {"pairs": [[1000, 1.0], [1000, 2.0]]}),
        None,
        r"params.class_weight: a label appears twice",
    ),
    # other metadata
    "params-list": ("ints", _set("params", "C", [1, 2]), None, r"params.C: expected a number"),
    "params-not-object": ("ints", _set("params", [1]), None, r"params: expected a JSON object"),
    "l1-type-unknown": (
        "ints",
        _set("params", "l1_type", "groupwise"),
        None,
        r"params.l1_type: expected one of \['elementwise', 'grouped'\], got \"groupwise\"",
    ),
    "l1-type-number": (
        "ints",
        _set("params", "l1_type", 1),
        None,
        r"params.l1_type: expected one of",
    ),
    "l1-ratio-above-one": (
        "ints",
        _set("params", "l1_ratio", 1.5),
        None,
        r"params.l1_ratio: expected a number in \[0, 1\], got 1.5",
    ),
    "l1-ratio-text": (
        "ints",
        _set("params", "l1_ratio", "0.5"),
        None,
        r"params.l1_ratio: expected a number in \[0, 1\]",
    ),
    "training-n-iter": (
        "ints",
        _set("training", "n_iter", -3),
        None,
        r"training.n_iter: unexpected value -3",
    ),
    "training-converged": (
        "ints",
        _set("training", "converged", "yes"),
        None,
        r"training.converged: unexpected value 'yes'",
    ),
    "format-version-0": (
        "ints",
        _set("format_version", 0),
        None,
        r"format_version: expected an integer >= 1, got 0",
    ),
    "n-features-text": (
        "ints",
        _set("n_features_in", "4"),
        None,
        r"n_features_in: expected an integer >= 1, got '4'",
    ),
    "feature-names-duplicate": (
        "names",
        _set("feature_names", ["a", "b", "a", "c"]),
        None,
        r"feature_names: duplicate names 'a'",
    ),
    "feature-names-count": (
        "names",
        _set("feature_names", ["a", "b"]),
        None,
        r"feature_names: 2 names for n_features_in=4",
    ),
    # tensors
    "coef-nan": (
        "ints",
        None,
        _nan_at("coef", (1, 2)),
        r"tensor 'coef': 1 NaN or infinite value\(s\), the first at index \(1, 2\)",
    ),
    "intercept-inf": (
        "ints",
        None,
        lambda t: t["intercept"].__setitem__(0, np.inf),
        r"tensor 'intercept': 1 NaN or infinite value\(s\), the first at index \(0,\) \(inf\)",
    ),
    "coef-shape": (
        "ints",
        None,
        lambda t: t.update(coef=np.zeros((3, 5))),
        r"tensor 'coef': shape \(3, 5\), expected \(3, 4\)",
    ),
    "intercept-shape": (
        "ints",
        None,
        lambda t: t.update(intercept=np.zeros(2)),
        r"tensor 'intercept': shape \(2,\), expected \(3,\)",
    ),
    "coef-int": (
        "ints",
        None,
        lambda t: t.update(coef=t["coef"].astype(np.int32)),
        r"tensor 'coef': dtype int32, expected float32 or float64",
    ),
    "intercept-dtype": (
        "ints",
        None,
        lambda t: t.update(intercept=t["intercept"].astype(np.float32)),
        r"tensor 'intercept': dtype float32 differs from coef's float64",
    ),
    "coef-missing": (
        "ints",
        None,
        lambda t: t.pop("coef"),
        r"tensor 'coef': missing",
    ),
    "extra-tensor": (
        "ints",
        None,
        lambda t: t.update(backdoor=np.zeros(3)),
        r"tensors: unexpected tensors 'backdoor'",
    ),
}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, iris):
    """Real model files with int (1000, 2000, 3000), string and float labels."""
    import pandas as pd

    X, y = iris
    folder = tmp_path_factory.mktemp("models")
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    models = {
        "ints": SoftmaxRegression(class_weight={1000: 2.0}).fit(X, (y + 1) * 1000),
        "names": SoftmaxRegression().fit(
            frame, np.array(["setosa", "versicolor", "virginica"])[y]
        ),
        "floats": SoftmaxRegression().fit(X, y.astype(float)),
    }
    paths = {}
    for key, model in models.items():
        paths[key] = folder / f"{key}.safetensors"
        model.save(paths[key])
    return paths


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_tampered_model_is_a_value_error_naming_file_and_field(tmp_path, saved_models, case):
    kind, meta_edit, tensor_edit, message = TAMPERED[case]
    path = tmp_path / "tampered.safetensors"
    path.write_bytes(saved_models[kind].read_bytes())
    load_model(path)  # the untouched copy loads
    _tamper(path, meta_edit, tensor_edit)
    with pytest.raises(
        ValueError, match=r"^tampered\.safetensors: corrupt model file: " + message
    ):
        load_model(path)
    # `softmax info` reads the same checks.
    with pytest.raises(ValueError, match=message):
        read_model_metadata(path)


def test_untampered_fields_load_as_saved(saved_models, iris):
    X, y = iris
    model = load_model(saved_models["ints"])
    assert model.classes_.tolist() == [1000, 2000, 3000] and model.classes_.dtype == np.int64
    assert model.class_weight == {1000: 2.0}
    assert model.n_iter_ >= 1 and isinstance(model.converged_, bool)
    reference = SoftmaxRegression(class_weight={1000: 2.0}).fit(X, (y + 1) * 1000)
    np.testing.assert_array_equal(model.predict_proba(X), reference.predict_proba(X))


def test_binary_model_in_scikit_learn_layout_predicts_as_scikit_learn(tmp_path, iris):
    """A file holding scikit-learn's one-row binary coefficients loads as the same model."""
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    y2 = (y == 2).astype(np.int64)
    reference = LogisticRegression(C=2.0, tol=1e-10).fit(X, y2)
    path = tmp_path / "binary.safetensors"
    SoftmaxRegression().fit(X, y2).save(path)
    _tamper(
        path,
        tensor_edit=lambda t: t.update(
            coef=reference.coef_.copy(), intercept=reference.intercept_.copy()
        ),
    )
    loaded = load_model(path)
    assert loaded.coef_.shape == (2, 4)
    np.testing.assert_allclose(
        loaded.predict_proba(X), reference.predict_proba(X), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_array_equal(loaded.predict(X), reference.predict(X))


def test_grouped_penalty_model_round_trips(tmp_path, iris):
    X, y = iris
    model = SoftmaxRegression(C=0.05, l1_ratio=1.0, l1_type="grouped").fit(X, y)
    assert 0 < model.n_features_selected_ < X.shape[1]  # the fit dropped a feature
    path = tmp_path / "group.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.l1_type == "grouped"
    assert loaded.n_features_selected_ == model.n_features_selected_
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
