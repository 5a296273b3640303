"""One rule for sample and class weights in every backend (memory, file stream, Dask).

References: scikit-learn's ``compute_class_weight`` on the classes that occur,
and the rows themselves (each backend's row weights are read back through
``iter_minibatches``, the question the stochastic solver asks).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.class_weight import compute_class_weight

from softmax import SoftmaxRegression
from softmax._validation import check_sample_weight, class_weight_vector
from softmax.backends.memory import InMemoryData
from softmax.backends.stream import build_row_data as stream_rows
from softmax.streaming import FileSource

DECLARED = np.arange(11)  # class 10 never occurs in the digits


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]
    sw = np.random.default_rng(0).uniform(0.2, 2.0, size=len(y))
    path = tmp_path_factory.mktemp("cw") / "digits.npy"
    np.save(path, np.column_stack([X, y]))
    return X, y, sw, path


def class_totals(rows, n_classes):
    """Total row weight s_i of each class, read back from the backend's minibatches."""
    totals = np.zeros(n_classes)
    for _, yb, wb in rows.iter_minibatches(128, np.random.default_rng(0)):
        totals += np.bincount(yb, weights=wb, minlength=n_classes)
    return totals


def memory_rows(X, y, sw, class_weight):
    """The in-memory rows exactly as the estimator's fit builds them."""
    est = SoftmaxRegression(class_weight=class_weight)
    data, _, _ = est._in_memory_data(X, y, sw, est._check_params())
    return data


def test_balanced_with_an_absent_class_is_the_same_in_every_backend(data):
    """A declared class that never occurs gets weight 0 and changes no other weight.

    The others are scikit-learn's compute_class_weight("balanced") over the classes
    that occur: the file stream used to give the absent class 1.0 and divide by
    the number of declared classes.
    """
    X, y, sw, path = data
    present = np.unique(y)
    expected = compute_class_weight("balanced", classes=present, y=y, sample_weight=sw)
    sums = np.bincount(y, weights=sw, minlength=11)
    want = np.append(expected * sums[:10], 0.0)  # per-class totals of s_i

    mem = class_totals(memory_rows(X, y, sw, "balanced"), 10)
    np.testing.assert_allclose(mem, want[:10], rtol=1e-12)

    src = FileSource(path, target=-1, classes=DECLARED, block_rows=100)
    with pytest.warns(UserWarning, match=r"Classes \[10\] have zero total weight"):
        stream = stream_rows(src, sample_weight=sw, class_weight="balanced")
    assert list(stream.classes) == list(DECLARED)
    np.testing.assert_allclose(class_totals(stream, 11), want, rtol=1e-12)

    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from softmax.backends.dask import build_row_data as dask_rows

    with dask.config.set(scheduler="synchronous"), pytest.warns(UserWarning, match=r"\[10\]"):
        on_dask = dask_rows(
            da.from_array(X, chunks=(150, -1)),
            da.from_array(y, chunks=150),
            sample_weight=da.from_array(sw, chunks=150),
            classes=DECLARED,
            class_weight="balanced",
        )
        np.testing.assert_allclose(class_totals(on_dask, 11), want, rtol=1e-12)
    assert on_dask.weight_sum == pytest.approx(stream.weight_sum, rel=1e-12)
    assert stream.weight_sum == pytest.approx(want.sum(), rel=1e-12)


def test_the_fits_agree_on_the_classes_that_occur(data):
    """Memory and file stream fits with "balanced" weights (no class declared extra)."""
    X, y, sw, path = data
    kw = {"class_weight": "balanced", "tol": 1e-10, "solver": "lbfgs"}
    mem = SoftmaxRegression(**kw).fit(X, y, sample_weight=sw)
    st = SoftmaxRegression(**kw).fit(FileSource(path, target=-1, block_rows=100), sample_weight=sw)
    assert st.objective_ == pytest.approx(mem.objective_, rel=1e-8)


def test_class_weight_vector_from_totals():
    classes = np.array(["a", "b", "c"])
    totals = np.array([3.0, 1.0, 0.0])
    counts = np.array([3, 1, 0])
    np.testing.assert_allclose(
        class_weight_vector("balanced", classes, totals, counts), [4 / 6, 4 / 2, 0.0]
    )
    # a class whose rows all weigh 0 occurs: it counts in the number of classes
    np.testing.assert_allclose(
        class_weight_vector("balanced", classes, totals, np.array([3, 1, 2])),
        [4 / 9, 4 / 3, 0.0],
    )
    np.testing.assert_allclose(class_weight_vector({"b": 2.0}, classes), [1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="not classes"):
        class_weight_vector({"z": 2.0}, classes)
    with pytest.raises(ValueError, match="class totals"):
        class_weight_vector("balanced", classes)


def test_one_rule_for_bad_weights_in_every_backend(data, tmp_path):
    X, y, sw, path = data
    bad = sw.copy()
    bad[3] = -1.0
    with pytest.raises(ValueError, match="Negative values in sample_weight"):
        check_sample_weight(bad, len(y))
    with pytest.raises(ValueError, match="Negative values in sample_weight"):
        SoftmaxRegression().fit(X, y, sample_weight=bad)
    with pytest.raises(ValueError, match="Negative values in sample_weight"):
        SoftmaxRegression().fit(FileSource(path, target=-1), sample_weight=bad)
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(ValueError, match="Negative values in sample_weight"),
    ):
        SoftmaxRegression().fit(
            da.from_array(X, chunks=(200, -1)), da.from_array(y, chunks=200), sample_weight=bad
        )
    # unweighted rows keep the fast unweighted kernels
    assert InMemoryData(X, y, np.ones(len(y)), np.arange(10), fit_intercept=True).weights is None
