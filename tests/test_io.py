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
