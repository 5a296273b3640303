"""What a fit adds to memory (issue 15: resident growth during a fit at most 1.5x X).

The references are independent of the code under test: ``X.nbytes`` against
the peak that ``tracemalloc`` traces (NumPy reports every array it
allocates), the magnitude NumPy's ``np.abs(X).max()`` gives, SciPy's softmax,
and ``sys.modules`` of a fresh interpreter.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.special import softmax as sp_softmax

from softmax import SoftmaxRegression
from softmax._scaling import SCALE_ABOVE, row_scale
from softmax.backends import memory

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _rows(n: int, p: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    y = (X[:, :K] @ rng.standard_normal((K, K)) + rng.gumbel(size=(n, K))).argmax(axis=1)
    return X, y


@pytest.mark.filterwarnings("ignore:.*did not converge")
@pytest.mark.parametrize("row_threads", [1, 2])
def test_fit_on_float32_rows_allocates_far_less_than_x(monkeypatch, row_threads):
    """No copy of X: float32 C-contiguous rows are used as they are."""
    monkeypatch.setattr(memory, "N_THREADS", row_threads)
    X, y = _rows(100_000, 54, 7)  # 21.6 MB: above the transposed-copy limit
    SoftmaxRegression(max_iter=2).fit(X[:2000], y[:2000])  # modules imported before tracing
    tracemalloc.start()
    try:
        clf = SoftmaxRegression(max_iter=5).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert clf.coef_.shape == (7, 54)
    # before: np.abs(X) in the overflow check alone was 1.0x X
    assert peak < 0.5 * X.nbytes, (peak / 1e6, X.nbytes / 1e6)


@pytest.mark.parametrize(("dtype", "largest"), [(np.float64, 2.0**600), (np.float32, 2.0**60)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_row_scale_takes_the_largest_magnitude_of_either_sign(dtype, largest, sign):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.0, 1.0, (50, 4)).astype(dtype)
    X[7, 2] = sign * largest
    X[3, 1] = -sign * largest / 4
    scale = row_scale(X)
    reference = float(np.abs(X).max())
    assert reference > SCALE_ABOVE[np.dtype(dtype)]
    assert scale is not None and scale.exponent == math.frexp(reference)[1]
    assert row_scale(X / dtype(largest)) is None


_FRESH = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from _datasets import make_covertype_like
from softmax import SoftmaxRegression
from softmax._kernels import softmax_rows_
X, y = make_covertype_like(20000, seed=3)
clf = SoftmaxRegression(max_iter=40).fit(X, y)
after_fit = "numba" in sys.modules
z = np.random.default_rng(0).standard_normal((20000, 7))
ref = z.copy()
lse = softmax_rows_(z, load_compiled=False)
print(json.dumps({"after_fit": after_fit, "after_call": "numba" in sys.modules,
                  "z": z[:50].tolist(), "lse": lse[:50].tolist(), "ref": ref[:50].tolist(),
                  "n_iter": int(clf.n_iter_)}))
"""


def test_fit_on_a_few_classes_and_features_does_not_load_numba():
    """The one-off softmax calls of a preconditioner do not pay numba's import.

    Covertype-like rows (54 features, 7 classes) take the NumPy/BLAS pass;
    before, the preconditioner's row softmax imported numba (about 0.5 s and
    40 MB of resident memory in a fresh process).
    """
    pytest.importorskip("numba")
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", SOFTMAX_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _FRESH, bench],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["n_iter"] >= 5  # the preconditioner was built and refreshed
    assert not r["after_fit"] and not r["after_call"]
    ref = np.asarray(r["ref"])
    np.testing.assert_allclose(r["z"], sp_softmax(ref, axis=1), rtol=1e-12)
    np.testing.assert_allclose(r["lse"], logsumexp(ref, axis=1), rtol=1e-12)


@pytest.mark.slow
def test_coldstart_benchmark_records_growth_and_accounts_for_it(tmp_path):
    """benchmarks/bench_coldstart.py on tiny rows: its table and its account agree.

    The account's sampled rises can miss a short spike but never exceed the
    peak the kernel recorded (``VmHWM``) for the same fit.
    """
    out = tmp_path / "coldstart.md"
    env = dict(os.environ, PYTHONPATH=SRC)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_coldstart.py"
    cmd = [sys.executable, str(script), "--n", "3000", "--p", "20", "--classes", "3"]
    cmd += ["--fresh", "1", "--account", "--out", str(out)]
    subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600)
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| new install", "| fresh"))]
    assert len(rows) == 2
    sampled = next(line for line in text.splitlines() if line.startswith("| **sampled total"))
    peak = next(line for line in text.splitlines() if line.startswith("| peak growth"))
    sampled_mb = float(sampled.split("|")[2])
    peak_mb = float(peak.split("|")[2])
    assert 0.0 < sampled_mb <= peak_mb + 0.5
    assert "after `from softmax import SoftmaxRegression`" in text


def _reference_loss_gradient(coef, X, y, w):
    """Weighted cross-entropy and its gradient in float64 NumPy/SciPy (intercept last)."""
    X64 = X.astype(np.float64)
    Z = X64 @ coef[:, :-1].T + coef[:, -1]
    lse = logsumexp(Z, axis=1)
    loss = float(np.sum(w * (lse - Z[np.arange(len(y)), y])))
    G = sp_softmax(Z, axis=1)
    G[np.arange(len(y)), y] -= 1.0
    G *= w[:, None]
    return loss, np.hstack([G.T @ X64, G.sum(axis=0)[:, None]])


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_passes_on_the_nonzero_columns_match_the_full_rows(monkeypatch, weighted):
    """Columns zero in every (weighted) row are left out of the loss passes.

    The copy must give SciPy's loss and gradient, with an exact zero data
    gradient on the left-out columns; with weights, a column that is
    non-zero only in rows of weight zero is left out too.
    """
    monkeypatch.setattr(memory, "COMPACT_MIN_BYTES", 0)
    rng = np.random.default_rng(3)
    n, p, K = 600, 40, 4
    X = rng.standard_normal((n, p)).astype(np.float32)
    X[:, [0, 1, 7, 20, 39]] = 0.0  # 12.5% of the columns
    y = rng.integers(0, K, n)
    w = np.ones(n)
    if weighted:
        w = rng.uniform(0.5, 2.0, n)
        w[:5] = 0.0
        X[5:, 30] = 0.0  # non-zero only in rows of weight zero
    X_before = X.copy()
    data = memory.InMemoryData(X, y, w if weighted else None, np.arange(K), fit_intercept=True)
    compact = data._compact()
    assert compact is not None
    zero = sorted([0, 1, 7, 20, 39] + ([30] if weighted else []))
    assert sorted(set(range(p)) - set(compact[0].tolist())) == zero
    coef = rng.standard_normal((K, p + 1)) * 0.3
    loss, grad = data.loss_gradient(coef)
    ref_loss, ref_grad = _reference_loss_gradient(coef, X, y, w)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-3)
    assert np.all(grad[:, zero] == 0.0)
    np.testing.assert_allclose(data.loss(coef), ref_loss, rtol=1e-5)
    np.testing.assert_array_equal(X, X_before)  # the caller's rows untouched


def test_fit_with_zero_columns_reaches_scikit_learns_optimum(monkeypatch):
    """A fit whose loss passes leave out zero columns ends at scikit-learn's optimum."""
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr(memory, "COMPACT_MIN_BYTES", 0)
    X, y = _rows(3000, 30, 5, seed=4)
    X[:, [2, 11, 12, 25]] = 0.0
    ours = SoftmaxRegression(C=0.5, tol=1e-10, max_iter=500).fit(X, y)
    X64 = X.astype(np.float64)
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=5000).fit(X64, y)

    def objective(W, b):
        Z = X64 @ W.T + b
        ce = np.sum(logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
        return ce + 0.5 / 0.5 * np.sum(W**2)

    f_ours = objective(ours.coef_.astype(np.float64), ours.intercept_.astype(np.float64))
    f_ref = objective(ref.coef_, ref.intercept_)
    assert f_ours <= f_ref * (1 + 1e-6)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-3)
    assert np.all(ours.coef_[:, [2, 11, 12, 25]] == 0.0)


def test_no_copy_of_columns_when_few_are_zero_or_x_is_small(monkeypatch):
    """The copy is made only past its thresholds (fraction of zero columns, bytes)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4000, 100)).astype(np.float32)  # 1.6 MB
    X[:, :5] = 0.0  # 5% of the columns
    y = rng.integers(0, 3, 4000)
    assert memory.InMemoryData(X, y, None, np.arange(3), fit_intercept=True)._compact() is None
    X[:, :10] = 0.0  # 10%
    assert memory.InMemoryData(X, y, None, np.arange(3), fit_intercept=True)._compact() is not None
    pytest.importorskip("dask")
    from softmax.backends.dask import _Chunk

    # a persisted Dask chunk keeps its rows only once
    assert _Chunk(X, y, None, np.arange(3), fit_intercept=True)._compact() is None
    monkeypatch.setattr(memory, "COMPACT_COPY_BYTES", X.nbytes // 2)
    assert memory.InMemoryData(X, y, None, np.arange(3), fit_intercept=True)._compact() is None
    monkeypatch.setattr(memory, "COMPACT_MIN_BYTES", X.nbytes + 1)
    assert memory.InMemoryData(X, y, None, np.arange(3), fit_intercept=True)._compact() is None
