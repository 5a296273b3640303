"""Smoke tests of the fit benchmark's measuring code (benchmarks/bench_fit.py).

The benchmark's verdicts rest on one objective function, its reference optimum
and the recorder that maps each peer's parameter vector back to (W, b); these
tests check them on a tiny problem against independent references (SciPy's
log_softmax, finite differences, scikit-learn's own fit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _datasets  # noqa: E402  (benchmarks/ is on the path now; ours, so never skipped)
import bench_fit  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> _datasets.Dataset:
    X, y = _datasets.make_multinomial(260, 6, 3, seed=0)
    X32, X64, y_tr, Xt, yt = _datasets._split_dense(X, y, 200)
    return _datasets.Dataset("tiny", X32, X64, y_tr, Xt, yt, n_classes=3, C=0.7, description="")


def test_objective_matches_log_softmax(tiny):
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((3, 6)), rng.standard_normal(3)
    logp = log_softmax(tiny.X64 @ W.T + b, axis=1)
    expected = -0.7 * logp[np.arange(200), tiny.y].sum() + 0.5 * (W**2).sum()
    got = bench_fit.objective(W, b, tiny.X32, tiny.y, tiny.C)  # float32 rows up-cast
    assert got == pytest.approx(expected, rel=1e-12)


def test_gradient_and_hessp_match_finite_differences(tiny):
    rng = np.random.default_rng(2)
    coef = 0.3 * rng.standard_normal((3, 7))
    V = rng.standard_normal((3, 7))
    f, g = bench_fit._loss_grad(coef, tiny.X64, tiny.y, tiny.C)
    h = 1e-6
    fp, gp = bench_fit._loss_grad(coef + h * V, tiny.X64, tiny.y, tiny.C)
    fm, gm = bench_fit._loss_grad(coef - h * V, tiny.X64, tiny.y, tiny.C)
    assert f == pytest.approx(bench_fit.objective(coef[:, :6], coef[:, 6], tiny.X64, tiny.y, 0.7))
    assert (fp - fm) / (2 * h) == pytest.approx(float(np.vdot(g, V)), rel=1e-6)
    hv = bench_fit._hessp(coef, V, tiny.X64, tiny.C)
    np.testing.assert_allclose(hv, (gp - gm) / (2 * h), rtol=1e-5, atol=1e-6)


def test_reference_is_the_optimum_sklearn_finds(tiny):
    from sklearn.linear_model import LogisticRegression

    ref = bench_fit.reference_solution(tiny, cache=False, verbose=False)
    assert ref["gap_estimate"] < 1e-12
    m = LogisticRegression(C=tiny.C, tol=1e-12, max_iter=10_000).fit(tiny.X64, tiny.y)
    f_sk = bench_fit.objective(m.coef_, m.intercept_, tiny.X64, tiny.y, tiny.C)
    assert ref["f"] <= f_sk + 1e-12 * abs(f_sk)
    assert f_sk == pytest.approx(ref["f"], rel=1e-9)
    np.testing.assert_allclose(ref["coef"][:, :6], m.coef_, atol=1e-4)


def test_recorder_reads_sklearn_parameters_right(tiny):
    """The unpacked sklearn iterates must reach the reference: a wrong layout cannot."""
    ref = bench_fit.reference_solution(tiny, cache=False, verbose=False)
    args = argparse.Namespace(budget=20.0, stall=200)
    out = bench_fit.run_peer("sklearn-f64", tiny, ref, args)
    assert out["time_1e-06"] is not None, out
    assert out["evals_1e-04"] <= out["evals_1e-06"]
    assert out["best_gap"] >= -1e-12  # nobody beats the reference
    # The accuracy reported is that of the optimum, as scikit-learn's own fit gives it.
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=tiny.C, tol=1e-12, max_iter=10_000).fit(tiny.X64, tiny.y)
    assert out["accuracy"] == sk.score(tiny.X_test32, tiny.y_test)


def test_covertype_like_rows_have_the_stated_shape_and_frequencies():
    """The covertype-like set (issue 15): 54 columns, 10 integer features on their
    raw ranges, two one-hot blocks, class frequencies near 49/36/6/4/3/1.5/0.5 %."""
    X, y = _datasets.make_covertype_like(40_000, seed=0)
    assert X.shape == (40_000, 54) and X.dtype == np.float32
    freq = np.bincount(y, minlength=7) / y.size
    np.testing.assert_allclose(freq, _datasets.COVERTYPE_FREQ, atol=0.005)
    lo, hi = np.asarray(_datasets.COVERTYPE_RANGES).T
    assert np.all(X[:, :10] >= lo) and np.all(X[:, :10] <= hi)
    np.testing.assert_array_equal(X[:, :10], np.rint(X[:, :10]))
    np.testing.assert_array_equal(X[:, 10:14].sum(axis=1), 1.0)
    np.testing.assert_array_equal(X[:, 14:].sum(axis=1), 1.0)
    assert X[:, :10].max() / X[:, 10:].max() > 1_000  # raw scales, four decades apart


def test_probe_rows_have_the_stated_classes_and_spectrum():
    X, y = _datasets.make_probe(5_000, 64, 100, seed=0)
    assert X.shape == (5_000, 64) and X.dtype == np.float32
    assert np.unique(y).size == 100
    sv = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    assert sv[0] > 3 * sv[-1]  # a decaying spectrum, not isotropic rows


@pytest.mark.parametrize("preconditioner", ["diagonal", "kronecker", "blocks", "auto"])
def test_preconditioner_sweep_reaches_the_reference(tiny, preconditioner):
    """bench_preconditioners.py's runs reach 1e-6 of this file's reference, and its
    table cell reports what the recorder saw."""
    import bench_preconditioners

    ref = bench_fit.reference_solution(tiny, cache=False, verbose=False)
    res = bench_preconditioners.run_one(tiny, float(ref["f"]), "float64", preconditioner, 20.0)
    assert res["time"] is not None, res
    assert -1e-12 <= res["best_gap"] <= 1e-6
    assert res["passes"] >= res["iters"] >= 1  # one pass per evaluation at least
    row = bench_preconditioners.summarise([res, {**res, "time": res["time"] + 1.0}])[0]
    assert row["time"] == pytest.approx(res["time"] + 0.5)  # the median of two
    assert bench_preconditioners._cell(row).endswith(f"/ {res['iters']:g} / {res['passes']:g}")
