"""File sources and the streaming backend (softmax.streaming, softmax.backends.stream).

References: the in-memory fit of the same rows (same objective to 1e-8),
scikit-learn's LogisticRegression objective, and the arrays the files were
written from (blocks must reproduce them exactly).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from softmax import SoftmaxRegression
from softmax.backends import external_backend
from softmax.backends.stream import build_row_data
from softmax.streaming import FileSource

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pa_csv = pytest.importorskip("pyarrow.csv")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y  # MNIST-like pixels in [0, 1], exact in binary


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory):
    """The digits written in blocks to every supported format."""
    X, y = digits
    d = tmp_path_factory.mktemp("digits")
    names = [f"px{j}" for j in range(X.shape[1])]
    table = pa.table({**{n: X[:, j] for j, n in enumerate(names)}, "label": y})
    pq.write_table(table, d / "digits.parquet", row_group_size=600)
    with open(d / "digits.csv", "w") as f:
        f.write(",".join([*names, "label"]) + "\n")
        for row, label in zip(X, y):
            f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")
    np.save(d / "digits.npy", np.column_stack([X, y]))
    np.save(d / "labels.npy", y)
    np.save(d / "features.npy", X)
    np.savez(d / "digits.npz", X=X, y=y)
    np.savez_compressed(d / "digits_c.npz", X=X, y=y)
    return d


SOURCES = {
    "parquet": ("digits.parquet", {"target": "label"}),
    "csv": ("digits.csv", {"target": "label"}),
    "npy-column": ("digits.npy", {"target": -1}),
    "npy-labels-file": ("features.npy", {"target": "LABELS"}),
    "npz": ("digits.npz", {"target": "y"}),
    "npz-compressed": ("digits_c.npz", {"target": "y"}),
}


def pd_frame(X):
    """X with the feature names the Parquet file has (so predict does not warn)."""
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(X, columns=[f"px{j}" for j in range(X.shape[1])])


def make_source(files, kind, **kw):
    name, opts = SOURCES[kind]
    opts = dict(opts)
    if opts["target"] == "LABELS":
        opts["target"] = files / "labels.npy"
    return FileSource(files / name, **{**opts, **kw})


@pytest.mark.parametrize("kind", list(SOURCES))
def test_blocks_reproduce_the_written_arrays(files, digits, kind):
    X, y = digits
    src = make_source(files, kind, block_rows=300)
    assert src.n_features == 64
    assert src.n_samples == len(y)
    np.testing.assert_array_equal(src.classes.astype(int), np.arange(10))
    blocks = list(src.iter_blocks())
    assert all(b.X.shape[0] <= 300 for b in blocks)
    assert [b.start for b in blocks] == list(np.cumsum([0] + [b.X.shape[0] for b in blocks])[:-1])
    np.testing.assert_array_equal(np.concatenate([b.X for b in blocks]), X)
    np.testing.assert_array_equal(
        np.concatenate([src.encode(b.y) for b in blocks]), np.searchsorted(np.unique(y), y)
    )
    assert external_backend(src) == "softmax.backends.stream"


def test_float32_blocks(files, digits):
    src = make_source(files, "parquet", dtype=np.float32, block_rows=500)
    b = next(src.iter_blocks())
    assert b.X.dtype == np.float32 and b.X.flags.c_contiguous
    np.testing.assert_array_equal(b.X, digits[0][:500].astype(np.float32))
    # Parquet blocks never span row groups (600 rows here)
    assert [b.X.shape[0] for b in src.iter_blocks()] == [500, 100, 500, 100, 500, 97]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_exact_streaming_fit_equals_in_memory_fit(files, digits, kind):
    """The issue's criterion: relative objective gap <= 1e-8 (digits in blocks)."""
    X, y = digits
    mem = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=2000).fit(X, y)
    src = make_source(files, kind, block_rows=400)
    st = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=2000).fit(src)
    gap = abs(st.objective_ - mem.objective_) / mem.objective_
    assert gap <= 1e-8
    np.testing.assert_allclose(st.coef_, mem.coef_, atol=2e-4)
    np.testing.assert_array_equal(st.classes_.astype(int), mem.classes_)
    assert st.n_passes_ >= st.n_iter_
    # independent reference: scikit-learn's objective at its own optimum
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # threads only contend on a problem this small
        sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)
    sk_obj = log_loss(y, sk.predict_proba(X), normalize=False) + 0.5 * np.sum(sk.coef_**2)
    assert st.objective_ <= sk_obj * (1 + 1e-7)


def test_streamed_lbfgs_is_preconditioned_like_in_memory(files, digits):
    """Unscaled pixels: the streamed fit takes the in-memory fit's path.

    Both backends offer the preconditioner's moments, so L-BFGS makes the
    same iterations whether the rows are in memory or read block by block;
    without them the streamed fit would need several times more passes.
    """
    X, y = digits
    mem = SoftmaxRegression(solver="lbfgs").fit(X, y)
    st = SoftmaxRegression(solver="lbfgs").fit(make_source(files, "parquet", block_rows=400))
    assert abs(st.n_iter_ - mem.n_iter_) <= 2
    assert st.n_passes_ <= mem.n_passes_ + 4
    assert abs(st.objective_ - mem.objective_) <= 1e-6 * mem.objective_


def test_newton_solvers_stream(files, digits):
    """Hessian products and full Hessians are sums over blocks too."""
    X, y = digits
    Xs, ys = X[:, :8], y % 3  # few coefficients, so the full Hessian is cheap
    d = files / "small"
    d.mkdir(exist_ok=True)
    np.save(d / "small.npy", np.column_stack([Xs, ys]))
    src = FileSource(d / "small.npy", target=-1, block_rows=250)
    from softmax.backends.memory import InMemoryData
    from softmax.solvers import Problem, solve

    mem = InMemoryData(np.ascontiguousarray(Xs), ys, None, np.arange(3), fit_intercept=True)
    ref = solve(Problem(mem), solver="lbfgs", tol=1e-12, max_iter=1000)
    for solver in ("newton-cholesky", "lbfgs"):
        res = solve(Problem(build_row_data(src)), solver=solver, tol=1e-12, max_iter=500)
        assert abs(res.objective - ref.objective) / ref.objective <= 1e-8
    data = build_row_data(src)
    coef = np.random.default_rng(0).normal(size=data.coef_shape)
    V = np.random.default_rng(1).normal(size=data.coef_shape)
    _, g, hp = data.gradient_hessian_product(coef)
    _, g2, hp2 = mem.gradient_hessian_product(coef)
    np.testing.assert_allclose(g, g2, rtol=1e-10)
    np.testing.assert_allclose(hp(V), hp2(V), rtol=1e-10)
    np.testing.assert_allclose(data.hessian(coef)[2], mem.hessian(coef)[2], rtol=1e-10)


def test_weights_match_in_memory(files, digits):
    X, y = digits
    sw = np.random.default_rng(0).uniform(0.2, 2.0, size=len(y))
    kw = {"solver": "lbfgs", "tol": 1e-12, "class_weight": "balanced", "max_iter": 2000}
    mem = SoftmaxRegression(**kw).fit(X, y, sample_weight=sw)
    st = SoftmaxRegression(**kw).fit(make_source(files, "npz", block_rows=500), sample_weight=sw)
    assert abs(st.objective_ - mem.objective_) / mem.objective_ <= 1e-8
    # a weight column in the file is the same as sample_weight=
    d = files / "weighted"
    d.mkdir(exist_ok=True)
    np.save(d / "w.npy", np.column_stack([X, sw, y]))
    src = FileSource(d / "w.npy", target=-1, weight=-2, block_rows=500)
    st2 = SoftmaxRegression(**kw).fit(src)
    assert abs(st2.objective_ - mem.objective_) / mem.objective_ <= 1e-8
    with pytest.raises(ValueError, match="give sample weights once"):
        build_row_data(src, sample_weight=sw)
    with pytest.raises(ValueError, match="one weight per row"):
        build_row_data(make_source(files, "npz"), sample_weight=sw[:10])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_labels_and_declared_classes(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    labels = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, size=300)]
    path = tmp_path / "animals.csv"
    with open(path, "w") as f:
        f.write("a,b,c,kind\n")
        for row, lab in zip(X, labels):
            f.write(",".join(repr(float(v)) for v in row) + f",{lab}\n")
    src = FileSource(path, target="kind", block_rows=64)
    assert src.classes.tolist() == ["cat", "dog", "emu"]
    model = SoftmaxRegression(solver="lbfgs").fit(src)
    ref = SoftmaxRegression(solver="lbfgs").fit(X, labels)
    assert model.classes_.tolist() == ref.classes_.tolist()
    np.testing.assert_allclose(model.coef_, ref.coef_, atol=1e-5)
    # declared classes: a class absent from the file is kept; an undeclared label fails
    src2 = FileSource(path, target="kind", classes=["cat", "dog", "emu", "fox"])
    assert src2.classes.tolist() == ["cat", "dog", "emu", "fox"]
    with pytest.raises(ValueError, match="not in classes"):
        FileSource(path, target="kind", classes=["cat", "dog"]).scan()


def test_integer_labels_in_csv_are_integers(files):
    src = make_source(files, "csv")
    assert src.classes.dtype.kind == "i"
    assert src.classes.tolist() == list(range(10))


def test_non_numeric_features_are_rejected(tmp_path):
    table = pa.table({"x": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"], "y": [0, 1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(TypeError, match=r"non-numeric feature columns.*colour"):
        FileSource(tmp_path / "t.parquet", target="y")
    # leaving the column out works
    src = FileSource(tmp_path / "t.parquet", target="y", features=["x"])
    assert src.n_samples == 3
    (tmp_path / "t.csv").write_text("x,colour,y\n1.0,red,0\n2.0,blue,1\n")
    with pytest.raises(ValueError, match="Features must be numeric"):
        FileSource(tmp_path / "t.csv", target="y").scan()
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match="numeric"):
        FileSource(tmp_path / "s.npy", target=-1)


def test_missing_and_nonfinite_values_are_rejected(tmp_path):
    (tmp_path / "gap.csv").write_text("x,y\n1.0,0\n,1\n")
    with pytest.raises(ValueError, match="missing values"):
        FileSource(tmp_path / "gap.csv", target="y").scan()
    np.save(tmp_path / "nan.npy", np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"row 1 .* NaN or infinite"):
        FileSource(tmp_path / "nan.npy", target=-1).scan()


def test_bad_arguments(files, tmp_path):
    with pytest.raises(FileNotFoundError):
        FileSource(tmp_path / "nope.parquet", target="y")
    with pytest.raises(ValueError, match="no target column 'nope'"):
        FileSource(files / "digits.parquet", target="nope")
    with pytest.raises(ValueError, match="block_rows"):
        FileSource(files / "digits.parquet", target="label", block_rows=0)
    with pytest.raises(ValueError, match="dtype"):
        FileSource(files / "digits.parquet", target="label", dtype=np.int64)
    (tmp_path / "data.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="format"):
        FileSource(tmp_path / "data.bin", target=0)
    with pytest.raises(ValueError, match="without y"):
        SoftmaxRegression().fit(make_source(files, "npz"), np.zeros(3))
    with pytest.raises(ValueError, match="holds"):
        FileSource(files / "digits.npz", target="label")
    with pytest.raises(ValueError, match="target= is required"):
        FileSource(files / "digits.parquet")
    assert FileSource(files / "digits.npz").target == "y"  # NPZ default


def test_missing_pyarrow_is_a_clear_import_error(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r'needs pyarrow: pip install "pyarrow[<>=]'):
        FileSource(files / "digits.csv", target="label")
    # NPY/NPZ need no pyarrow
    assert make_source(files, "npz").n_samples == 1797


def test_shards_read_as_one_source(files, digits, tmp_path):
    X, y = digits
    for i, sl in enumerate([slice(0, 700), slice(700, None)]):
        np.save(tmp_path / f"part{i}.npy", np.column_stack([X[sl], y[sl]]))
    src = FileSource([tmp_path / "part0.npy", tmp_path / "part1.npy"], target=-1, block_rows=256)
    assert src.n_samples == len(y)
    np.testing.assert_array_equal(np.concatenate([b.X for b in src.iter_blocks()]), X)


@pytest.mark.parametrize("kind", ["parquet", "csv", "npz", "npz-compressed"])
def test_minibatches_cover_every_row_once_per_epoch(files, digits, kind):
    X, _ = digits
    data = build_row_data(make_source(files, kind, block_rows=300))
    rng = np.random.default_rng(0)
    batches = list(data.iter_minibatches(128, rng))
    assert all(b[0].shape[0] <= 128 for b in batches)
    rows = np.concatenate([b[0] for b in batches])
    # same multiset of rows as the file, in another order
    key = np.lexsort(rows.T)
    np.testing.assert_array_equal(rows[key], X[np.lexsort(X.T)])
    assert not np.array_equal(rows, X)
    again = np.concatenate([b[0] for b in data.iter_minibatches(128, np.random.default_rng(0))])
    np.testing.assert_array_equal(rows, again)  # reproducible from the generator


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sgd_fit_on_a_stream_is_reproducible(files, digits):
    X, y = digits
    src = make_source(files, "parquet", block_rows=300)
    kw = {"solver": "sgd", "max_iter": 5, "random_state": 3}
    a = SoftmaxRegression(**kw).fit(src)
    b = SoftmaxRegression(**kw).fit(src)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.score(pd_frame(X), y) > 0.9


def test_exact_fit_resumes_from_checkpoint(files, tmp_path):
    """An interrupted fit, started again, ends with the same model (bit for bit)."""
    ck = tmp_path / "ck"
    kw = {"solver": "lbfgs", "tol": 1e-10, "max_iter": 500}
    full = SoftmaxRegression(**kw).fit(make_source(files, "npz", block_rows=400))

    class Stop(Exception):
        pass

    def interrupt(iteration, objective):
        if iteration == 15:
            raise Stop

    with pytest.raises(Stop):
        SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=400, checkpoint=ck), callback=interrupt
        )
    src = make_source(files, "npz", block_rows=400, checkpoint=ck)
    resumed = SoftmaxRegression(**kw).fit(src)
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    np.testing.assert_array_equal(resumed.intercept_, full.intercept_)
    assert resumed.n_iter_ == full.n_iter_
    assert not list(ck.rglob("*.tmp"))  # atomic writes leave no temporaries
    # a checkpoint of another file is refused
    with pytest.raises(ValueError, match="another fit or file"):
        SoftmaxRegression(**kw).fit(make_source(files, "parquet", block_rows=400, checkpoint=ck))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sgd_fit_resumes_from_checkpoint(files, tmp_path):
    ck = tmp_path / "ck-sgd"
    kw = {"solver": "sgd", "max_iter": 6, "random_state": 0}
    full = SoftmaxRegression(**kw).fit(make_source(files, "csv", block_rows=300))

    class Stop(Exception):
        pass

    def interrupt(epoch, objective):
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        SoftmaxRegression(**kw).fit(
            make_source(files, "csv", block_rows=300, checkpoint=ck), callback=interrupt
        )
    resumed = SoftmaxRegression(**kw).fit(make_source(files, "csv", block_rows=300, checkpoint=ck))
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    assert resumed.n_iter_ == full.n_iter_ == 6


# -- a checkpoint is input like any other file: damaged records are recomputed -----------


class _Stop(Exception):
    pass


def _interrupted_lbfgs(files, ck, kw, at=15):
    """Run a checkpointed fit that stops at iteration ``at``; the log stays in ``ck``."""

    def interrupt(iteration, objective):
        if iteration == at:
            raise _Stop

    with pytest.raises(_Stop):
        SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=400, checkpoint=ck), callback=interrupt
        )
    return sorted((ck / "evals").glob("*.npz"))


def _sklearn_optimum(digits):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    X, y = digits
    with threadpool_limits(1):
        return LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)


@pytest.mark.parametrize("keep_digest", [True, False], ids=["stale-digest", "no-digest"])
def test_overwritten_checkpoint_values_are_recomputed_not_believed(
    files, digits, tmp_path, keep_digest
):
    """Records whose values were rewritten (a forged gradient, keeping or dropping
    the digest) are recomputed with a warning naming each file; the resumed fit
    ends where an uninterrupted fit and scikit-learn's optimum are."""
    from softmax.streaming import CheckpointWarning

    ck = tmp_path / "ck"
    kw = {"solver": "lbfgs", "tol": 1e-10, "max_iter": 500}
    full = SoftmaxRegression(**kw).fit(make_source(files, "npz", block_rows=400))
    records = _interrupted_lbfgs(files, ck, kw)
    tampered = []
    for f in records[1::3]:  # every third record, from the second on
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        if "grad" not in arrays:
            continue
        arrays["grad"] = arrays["grad"] * 3.0 + 1.0
        if "loss" in arrays:
            arrays["loss"] = arrays["loss"] * 0.5
        if not keep_digest:
            del arrays["_sha256"]
        np.savez(f, **arrays)
        tampered.append(f)
    assert len(tampered) >= 3
    with pytest.warns(CheckpointWarning) as caught:
        resumed = SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=400, checkpoint=ck)
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    for f in tampered:
        assert any(str(f) in m for m in messages), (f, messages)
    # the same model, bit for bit, as a fit never interrupted ...
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    np.testing.assert_array_equal(resumed.intercept_, full.intercept_)
    assert resumed.n_iter_ == full.n_iter_
    # ... and scikit-learn's optimum of the same objective
    X, _ = digits
    sk = _sklearn_optimum(digits)
    np.testing.assert_allclose(resumed.coef_, sk.coef_, atol=1e-3)
    from scipy.special import softmax as scipy_softmax

    proba = scipy_softmax(X @ resumed.coef_.T + resumed.intercept_, axis=1)
    np.testing.assert_allclose(proba, sk.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("damage", ["truncated", "empty", "not-a-zip"])
def test_unreadable_checkpoint_record_is_recomputed(files, digits, tmp_path, damage):
    """A record cut short by a crash (or replaced by junk) is recomputed with a
    warning naming it, not raised (zipfile.BadZipFile / EOFError) nor used."""
    from softmax.streaming import CheckpointWarning

    ck = tmp_path / "ck"
    kw = {"solver": "lbfgs", "tol": 1e-10, "max_iter": 500}
    full = SoftmaxRegression(**kw).fit(make_source(files, "npz", block_rows=400))
    records = _interrupted_lbfgs(files, ck, kw)
    victim = records[len(records) // 2]
    payload = victim.read_bytes()
    victim.write_bytes(
        {"truncated": payload[: len(payload) // 2], "empty": b"", "not-a-zip": b"junk" * 100}[
            damage
        ]
    )
    with pytest.warns(CheckpointWarning, match=str(victim)):
        resumed = SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=400, checkpoint=ck)
        )
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    np.testing.assert_allclose(resumed.coef_, _sklearn_optimum(digits).coef_, atol=1e-3)
    with np.load(victim) as z:  # written again, whole
        assert "_sha256" in z.files


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_tampered_sgd_state_is_not_resumed(files, tmp_path):
    """The stochastic solver's saved state is checked the same way: altered
    coefficients make the fit start over (same seed: the same model)."""
    from softmax.streaming import CheckpointWarning

    ck = tmp_path / "ck-sgd"
    kw = {"solver": "sgd", "max_iter": 4, "random_state": 0}
    full = SoftmaxRegression(**kw).fit(make_source(files, "npz", block_rows=300))

    def interrupt(epoch, objective):
        if epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=300, checkpoint=ck), callback=interrupt
        )
    state = ck / "sgd_state.npz"
    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"] + 1.2
    np.savez(state, **arrays)
    with pytest.warns(CheckpointWarning, match=str(state)):
        resumed = SoftmaxRegression(**kw).fit(
            make_source(files, "npz", block_rows=300, checkpoint=ck)
        )
    np.testing.assert_array_equal(resumed.coef_, full.coef_)


def _bound_checkpoint(files, ck):
    build_row_data(make_source(files, "npz", block_rows=400, checkpoint=ck))
    return ck / "meta.json"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda meta: "{not json", None),
        (lambda meta: json.dumps([1, 2, 3]), None),
        (
            lambda meta: json.dumps({k: v for k, v in meta.items() if k != "block_rows"}),
            "block_rows",
        ),
        (lambda meta: json.dumps({**meta, "block_rows": "400"}), "block_rows"),
        (lambda meta: json.dumps({**meta, "files": {"a": 1}}), "files"),
        (lambda meta: json.dumps({**meta, "fit_intercept": 1}), "fit_intercept"),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "missing-field",
        "string-for-int",
        "object-for-list",
        "int-for-bool",
    ],
)
def test_corrupt_checkpoint_meta_is_a_value_error_naming_file_and_field(
    files, tmp_path, edit, field
):
    ck = tmp_path / "ck"
    meta_file = _bound_checkpoint(files, ck)
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(edit(meta))
    with pytest.raises(ValueError) as info:
        _bound_checkpoint(files, ck)
    message = str(info.value)
    assert str(meta_file) in message
    if field is not None:
        assert repr(field) in message
    assert not isinstance(info.value, (json.JSONDecodeError, KeyError))


def test_checkpoint_of_another_fit_names_the_file_and_fields(files, tmp_path):
    ck = tmp_path / "ck"
    meta_file = _bound_checkpoint(files, ck)
    with pytest.raises(ValueError, match="another fit or file") as info:
        build_row_data(make_source(files, "npz", block_rows=300, checkpoint=ck))
    assert str(meta_file) in str(info.value) and "block_rows" in str(info.value)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_progress_bar_reports_rows(files, capsys):
    pytest.importorskip("tqdm")
    src = make_source(files, "npz", block_rows=500, progress=True)
    SoftmaxRegression(solver="lbfgs", max_iter=2).fit(src)
    err = capsys.readouterr().err
    assert "rows" in err


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from softmax.streaming import FileSource
    from softmax.backends.stream import build_row_data
    from softmax.solvers import Problem, solve

    path, n_rows, p, block_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # write the file block by block: the process never holds it
    header = {"descr": "<f8", "fortran_order": False, "shape": (n_rows, p + 1)}
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, p))
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for s in range(0, n_rows, block_rows):
            X = rng.normal(size=(min(block_rows, n_rows - s), p))
            y = np.argmax(X @ W.T + rng.gumbel(size=(len(X), 5)), axis=1)
            f.write(np.column_stack([X, y]).tobytes())
    src = FileSource(path, target=-1, block_rows=block_rows)
    src.scan()
    data = build_row_data(src)
    # warm up BLAS buffers and the one-off imports of a first fit (SciPy's
    # linear algebra, the thread-pool controller: ~9 MB, whatever the file)
    solve(Problem(data), solver="lbfgs", max_iter=0)

    def peak_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

    with open("/proc/self/clear_refs", "w") as f:  # reset the peak to the current RSS
        f.write("5")
    before = peak_bytes()
    res = solve(Problem(data), solver="lbfgs", max_iter=4, tol=0.0)
    after = peak_bytes()
    print(json.dumps({"before": before, "after": after, "passes": res.n_passes,
                      "file_bytes": os.path.getsize(path)}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"), reason="peak RSS reset needs Linux /proc"
)
def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """A file 40x the block budget trains within the budget plus a constant."""
    p, block_rows = 50, 4000
    block_bytes = block_rows * (p + 1) * 8  # 1.6 MB
    n_rows = 160_000  # file = 40 blocks = 65 MB
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "big.npy"), str(n_rows), str(p),
         str(block_rows)],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["file_bytes"] >= 40 * block_bytes
    assert m["passes"] >= 4
    growth = m["after"] - m["before"]
    # a block, its float copies and logits, plus the model: a few blocks at most,
    # far below the 65 MB file
    assert growth <= 4 * block_bytes + (8 << 20), m


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_block_cache_gives_the_same_fit(files, tmp_path, kind):
    """Later passes read the binary cache instead of parsing; the model is identical."""
    kw = {"solver": "lbfgs", "tol": 1e-5, "class_weight": "balanced"}
    plain = SoftmaxRegression(**kw).fit(make_source(files, kind, block_rows=400))
    cache = tmp_path / "cache"
    src = make_source(files, kind, block_rows=400, cache=cache)
    cached = SoftmaxRegression(**kw).fit(src)
    np.testing.assert_array_equal(cached.coef_, plain.coef_)
    index = json.loads((cache / "index.json").read_text())
    assert sum(n for *_, n in index["blocks"]) == 1797
    assert (cache / "X.bin").stat().st_size == 1797 * 64 * 8
    # a second fit (here stochastic, which visits units out of order) reads the cache
    data = build_row_data(src, class_weight="balanced")
    assert data._cache.complete
    rows = np.concatenate([b[0] for b in data.iter_minibatches(256, np.random.default_rng(0))])
    assert rows.shape == (1797, 64)
    # weights are applied on reading: an unweighted fit shares the cache
    unweighted = build_row_data(src)
    assert unweighted._cache.complete
    ref = build_row_data(make_source(files, kind, block_rows=400))
    coef = np.random.default_rng(0).normal(size=ref.coef_shape)
    np.testing.assert_array_equal(unweighted.loss_gradient(coef)[1], ref.loss_gradient(coef)[1])
    # other classes (an encoding change) rebuild it
    assert not build_row_data(src, classes=np.arange(11))._cache.complete


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[1, 2]",
        '{"fingerprint": FP, "weighted": false}',
        '{"fingerprint": FP, "blocks": [[1, 2]], "weighted": false}',
    ],
    ids=["invalid-json", "not-an-object", "no-blocks", "short-block-entry"],
)
def test_damaged_block_cache_index_is_rebuilt_not_trusted(files, tmp_path, damage):
    cache = tmp_path / "cache"
    src = make_source(files, "csv", block_rows=400, cache=cache)
    build_row_data(src).loss_gradient(np.zeros((10, 65)))  # one full pass writes the cache
    index = cache / "index.json"
    fingerprint = json.loads(index.read_text())["fingerprint"]
    text = damage.replace("FP", json.dumps(fingerprint))
    index.write_text(text)
    with pytest.warns(RuntimeWarning, match="block cache index .* is damaged"):
        data = build_row_data(src)
    assert not data._cache.complete
    coef = np.random.default_rng(1).normal(size=data.coef_shape)
    ref = build_row_data(make_source(files, "csv", block_rows=400))
    np.testing.assert_array_equal(data.loss_gradient(coef)[1], ref.loss_gradient(coef)[1])
    assert data._cache.complete  # rebuilt by that pass


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_streamed_rows_too_large_are_refused_with_exact_advice(tmp_path):
    """Rows of 1e300 overflow a solver's products; in memory they are rescaled,
    streamed they are refused, and the advice given (divide by a power of two)
    then fits: scikit-learn's unpenalised fit on the divided rows."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 4))
    y = np.argmax(X @ rng.standard_normal((4, 3)) + rng.gumbel(size=(400, 3)), axis=1)
    big = X * 1e300
    np.savez(tmp_path / "big.npz", X=big, y=y)
    source = FileSource(tmp_path / "big.npz", block_rows=128)
    assert source.max_abs == np.abs(big).max()
    reach = re.escape(f"big.npz reach {np.abs(big).max():.3g}")
    with pytest.raises(ValueError, match=rf"{reach}.*2\*\*\d+ first") as err:
        SoftmaxRegression().fit(source)
    exponent = int(err.value.args[0].split("2**")[1].split()[0])
    divided = np.ldexp(big, -exponent)
    assert 0.5 <= np.abs(divided).max() < 1
    np.savez(tmp_path / "divided.npz", X=divided, y=y)
    clf = SoftmaxRegression(C=np.inf, tol=1e-10).fit(FileSource(tmp_path / "divided.npz"))
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(divided, y)
    np.testing.assert_allclose(clf.predict_proba(divided), sk.predict_proba(divided), atol=1e-6)


def _reference_loss_gradient(X, y, w, coef):
    """Summed weighted cross-entropy and its gradient, from SciPy's softmax."""
    from scipy.special import log_softmax, softmax

    logits = X @ coef[:, :-1].T + coef[:, -1]
    onehot = np.eye(coef.shape[0])[y]
    loss = -np.sum(w * log_softmax(logits, axis=1)[np.arange(len(y)), y])
    r = w[:, None] * (softmax(logits, axis=1) - onehot)
    return loss, np.column_stack([r.T @ X, r.sum(axis=0)])


@pytest.mark.parametrize("where", ["X", "y", "w", "X-truncated", "X-between-passes"])
@pytest.mark.parametrize("layout", ["csv-one-block-units", "parquet-three-block-units"])
def test_altered_block_cache_bytes_are_never_believed(digits, tmp_path, where, layout):
    """Bytes of the right length altered in X.bin, y.bin or w.bin (or a cut
    X.bin) are caught by the block digests in index.json: that pass reads the
    damaged unit from the file with a warning naming the cache, its answer is
    SciPy's on the true rows, and the next pass rebuilds the cache."""
    X, y = digits
    weighted = where == "w"
    wcol = np.random.default_rng(2).uniform(0.5, 2.0, size=len(y))
    names = [f"px{j}" for j in range(X.shape[1])]
    columns = {**{n: X[:, j] for j, n in enumerate(names)}, "label": y}
    table = pa.table({**columns, "wt": wcol} if weighted else columns)
    if layout.startswith("csv"):
        path, block_rows = tmp_path / "d.csv", 400
        pa_csv.write_csv(table, path)
    else:
        path, block_rows = tmp_path / "d.parquet", 200
        pq.write_table(table, path, row_group_size=600)
    cache = tmp_path / "cache"
    src = FileSource(
        path, target="label", weight="wt" if weighted else None, block_rows=block_rows,
        cache=cache,
    )  # fmt: skip
    if not weighted:
        wcol = np.ones(len(y))
    coef = np.random.default_rng(1).normal(scale=0.3, size=(10, 65))
    ref_loss, ref_grad = _reference_loss_gradient(X, y, wcol, coef)

    first = build_row_data(src)
    first.loss_gradient(coef)  # the first full pass writes the cache
    index = json.loads((cache / "index.json").read_text())
    assert len(index["digests"]) == len(index["blocks"]) >= 5
    units = [u for u, *_ in index["blocks"]]
    assert max(units.count(u) for u in set(units)) == (1 if layout.startswith("csv") else 3)
    # Damage the middle block of the cache: for Parquet, the second block of a unit.
    k = len(index["blocks"]) // 2
    u, pos, start, n = index["blocks"][k]
    assert layout.startswith("csv") or index["blocks"][k - 1][0] == u  # mid-unit
    file, width = {"y": ("y.bin", 1), "w": ("w.bin", 1)}.get(where, ("X.bin", 64))
    itemsize = 8
    target = cache / file
    raw = bytearray(target.read_bytes())
    size = len(raw)
    row = pos + n // 2
    if where == "X-truncated":
        del raw[(pos + 1) * width * itemsize :]
    elif where.startswith("X"):  # one pixel of one row: a value the row could have had
        at = (row * width + 10) * itemsize
        raw[at : at + 8] = np.float64(0.4375).tobytes() if X[row, 10] != 0.4375 else bytes(8)
    elif where == "y":  # another valid class
        raw[row * 8 : row * 8 + 8] = np.int64((y[row] + 1) % 10).tobytes()
    else:
        raw[row * 8 : row * 8 + 8] = np.float64(wcol[row] * 3).tobytes()
    target.write_bytes(bytes(raw))
    assert where == "X-truncated" or target.stat().st_size == size

    warns = pytest.warns(
        RuntimeWarning, match=re.escape(f"block cache {cache}: the block of rows {start}..")
    )
    if where == "w":
        # A weighted source sums its weights in a pass when it is opened: that
        # pass meets the damage, and the first evaluation rebuilds the cache.
        with warns as rec:
            data = build_row_data(src)
        assert data.weight_sum == pytest.approx(wcol.sum(), rel=1e-13)
        loss, grad = data.loss_gradient(coef)
    else:
        # "between passes": the fit that wrote (and so checked) the cache reads
        # it again after the change; otherwise a new fit opens the cache.
        data = first if where == "X-between-passes" else build_row_data(src)
        assert data._cache.complete  # the index itself is whole
        with warns as rec:
            loss, grad = data.loss_gradient(coef)
        assert not data._cache.complete
        data.loss_gradient(coef)  # the next full pass rebuilds the cache
    assert len([r for r in rec if "block cache" in str(r.message)]) == 1
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-10)
    assert data._cache.complete
    assert (cache / file).stat().st_size == size
    # A fresh fit reads the rebuilt cache, silently, and gets the same answer.
    fresh = build_row_data(src)
    assert fresh._cache.complete
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss2, grad2 = fresh.loss_gradient(coef)
    assert loss2 == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad2, ref_grad, rtol=1e-11, atol=1e-10)


def test_block_cache_without_digests_is_rebuilt(files, tmp_path):
    """An index that lists blocks but no digests (an older cache) is not read."""
    cache = tmp_path / "cache"
    src = make_source(files, "csv", block_rows=400, cache=cache)
    build_row_data(src).loss_gradient(np.zeros((10, 65)))
    index = json.loads((cache / "index.json").read_text())
    del index["digests"]
    (cache / "index.json").write_text(json.dumps(index))
    with pytest.warns(RuntimeWarning, match="block cache index .* is damaged.*digests"):
        data = build_row_data(src)
    assert not data._cache.complete


# -- Ctrl-C, delivered for real: SIGINT raised in this process ------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("when", ["between-iterations", "mid-pass"])
@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_sigint_leaves_a_checkpoint_that_resumes_to_the_same_model(
    files, digits, tmp_path, solver, when
):
    """A real SIGINT (Python's own handler raises KeyboardInterrupt, which is
    no Exception) at a callback or in the middle of reading a block: the
    checkpoint holds no temporary and no damaged record, and the resumed fit
    is the uninterrupted one bit for bit (for L-BFGS also scikit-learn's optimum)."""
    import signal

    from sklearn.linear_model import LogisticRegression

    from softmax.streaming import CheckpointWarning

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    X, y = digits
    kw = {"solver": solver, "tol": 1e-10, "max_iter": 300}
    if solver == "sgd":
        kw.update(max_iter=6, random_state=0)
    full = SoftmaxRegression(**kw).fit(make_source(files, "csv", block_rows=300))
    ck = tmp_path / "ck"
    src = make_source(files, "csv", block_rows=300, checkpoint=ck)
    callback = None
    if when == "mid-pass":
        # the 3rd block read after the checkpoint holds its first record (6 blocks a pass)
        read_unit, blocks = src.read_unit, []

        def interrupted_read(u):
            for block in read_unit(u):
                if blocks or any(ck.rglob("*.npz")):
                    blocks.append(u)
                if len(blocks) == 3:
                    signal.raise_signal(signal.SIGINT)
                yield block

        src.read_unit = interrupted_read
    else:

        def callback(iteration, objective):
            if iteration == (3 if solver == "sgd" else 12):
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        SoftmaxRegression(**kw).fit(src, callback=callback)
    assert not list(ck.rglob("*.tmp")) and not list(ck.rglob(".*"))
    assert any(ck.rglob("*.npz"))  # there is something to resume from
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # every record is whole
        resumed = SoftmaxRegression(**kw).fit(
            make_source(files, "csv", block_rows=300, checkpoint=ck)
        )
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    np.testing.assert_array_equal(resumed.intercept_, full.intercept_)
    assert resumed.n_iter_ == full.n_iter_
    if solver == "lbfgs":
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
        frame = pd_frame(X)
        np.testing.assert_allclose(
            resumed.predict_proba(frame), sk.predict_proba(X), atol=1e-5, rtol=0
        )
