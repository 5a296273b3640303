"""Row threads of the in-memory backend: the automatic rule and its results."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import softmax.backends.memory as memory
from softmax import SoftmaxRegression


def test_auto_rule_uses_cores_only_for_big_passes(monkeypatch):
    monkeypatch.setattr(memory, "N_THREADS", None)
    monkeypatch.setenv("SOFTMAX_NUM_THREADS", "3")
    big = np.empty((memory.THREADED_WORK // 10, 1))
    small = np.empty((10, 1))
    assert memory._n_threads(big, 10) == 3
    assert memory._n_threads(small, 10) == 1
    assert memory._n_threads(big, 10, override=1) == 1  # a Dask chunk's setting wins
    monkeypatch.setattr(memory, "N_THREADS", 2)
    assert memory._n_threads(small, 10) == 2  # an explicit setting is obeyed


def test_environment_variable_must_be_an_integer(monkeypatch):
    monkeypatch.setattr(memory, "N_THREADS", None)
    monkeypatch.setenv("SOFTMAX_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="SOFTMAX_NUM_THREADS must be a positive integer"):
        memory._n_threads(np.empty((memory.THREADED_WORK, 1)), 10)


def test_dask_chunks_never_add_row_threads():
    pytest.importorskip("dask")
    from softmax.backends.dask import _Chunk

    assert _Chunk.row_threads == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_fit_reaches_the_same_optimum(monkeypatch, dtype):
    """Three row ranges in parallel threads give the one-thread fit and sklearn's optimum."""
    import softmax.linear_loss as linear_loss

    # blocks of 128 rows: 15 blocks of digits, so the three ranges really run
    monkeypatch.setattr(linear_loss, "BLOCK_BYTES", 128 * (64 + 10) * np.dtype(dtype).itemsize)
    monkeypatch.setattr(linear_loss, "MIN_BLOCK_ROWS", 1)
    ranges = linear_loss._ranges(1797, linear_loss._block_rows(np.empty((1797, 64), dtype), 10), 3)
    assert len(ranges) == 3
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    fits = {}
    for threads in (1, 3):
        monkeypatch.setattr(memory, "N_THREADS", threads)
        fits[threads] = SoftmaxRegression(C=1.0, tol=1e-10).fit(X, y)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X.astype(np.float64), y)

    def objective(est):
        P = est.predict_proba(X.astype(np.float64))
        return log_loss(y, P, normalize=False) + 0.5 * float(np.sum(est.coef_**2))

    F1, F3, F_ref = objective(fits[1]), objective(fits[3]), objective(ref)
    tol = 1e-9 if dtype == np.float64 else 1e-6
    assert abs(F3 - F1) <= tol * F_ref
    assert F3 - F_ref <= tol * F_ref
    np.testing.assert_array_equal(fits[3].predict(X), fits[1].predict(X))
