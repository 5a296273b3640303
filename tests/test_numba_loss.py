"""Tests of the fused numba loss-gradient pass (softmax._numba_loss) and its dispatch.

The fused pass must give the BLAS block pass's results to rounding; both are
also checked against a float64 SciPy reference and finite differences. Tests
that need numba skip cleanly without it; the dispatch tests run either way.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp

import softmax.linear_loss as ll
from softmax.linear_loss import Workspace, block_hessp, block_loss_gradient

# tolerances of the fused pass against the BLAS pass (relative to the largest entry)
TOL = {np.float32: {"loss": 2e-6, "grad": 1e-5}, np.float64: {"loss": 1e-12, "grad": 1e-12}}


@pytest.fixture
def nl():
    pytest.importorskip("numba")
    from softmax import _numba_loss

    return _numba_loss


@pytest.fixture
def fused(monkeypatch, nl):
    """Route every dense pass through the fused kernel; count its calls."""
    calls = []
    real = nl.loss_grad_range

    def spy(*args, **kwargs):
        calls.append(args[2].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(ll, "FUSED_MIN_WORK", 0)
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
    monkeypatch.setattr(ll, "_fused_module", None)
    monkeypatch.setattr(nl, "loss_grad_range", spy)
    return calls


def blas(monkeypatch):
    monkeypatch.setattr(ll, "FUSED_MIN_WORK", float("inf"))


def make(n, p, K, dtype, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(dtype)
    y = rng.integers(0, K, n)
    w = rng.uniform(0.2, 2.0, n)
    coef = rng.normal(scale=scale, size=(K, p + 1))
    return X, y, w, coef


def reference(coef, X, y, w, fit_intercept):
    """Loss and gradient in float64 with SciPy's logsumexp (independent of both paths)."""
    X = X.astype(np.float64)
    p = X.shape[1]
    Z = X @ coef[:, :p].T + (coef[:, p] if fit_intercept else 0.0)
    lse = logsumexp(Z, axis=1)
    s = np.ones(len(y)) if w is None else w
    loss = float(np.sum(s * (lse - Z[np.arange(len(y)), y])))
    G = np.exp(Z - lse[:, None])
    G[np.arange(len(y)), y] -= 1
    G *= s[:, None]
    grad = G.T @ X
    if fit_intercept:
        grad = np.hstack([grad, G.sum(axis=0)[:, None]])
    return loss, grad


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [2, 3, 10, 17])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fused_matches_blas_path_and_reference(
    monkeypatch, fused, dtype, K, weighted, fit_intercept
):
    # 1037 rows: 4 blocks of 256 (groups of 8) and a last block of 13 rows (one group + 5)
    X, y, w, coef = make(1037, 23, K, dtype, seed=K)
    w = w if weighted else None
    coef = coef if fit_intercept else coef[:, :-1]
    lf, gf = block_loss_gradient(coef, X, y, w, fit_intercept=fit_intercept)
    assert len(fused) == 1
    blas(monkeypatch)
    lb, gb = block_loss_gradient(coef, X, y, w, fit_intercept=fit_intercept)
    assert len(fused) == 1  # the BLAS pass did not call the kernel
    tol = TOL[dtype]
    assert lf == pytest.approx(lb, rel=tol["loss"])
    assert gf.shape == gb.shape == coef.shape and gf.dtype == np.float64
    assert rel(gf, gb) < tol["grad"]
    lr, gr = reference(coef, X, y, w, fit_intercept)
    assert lf == pytest.approx(lr, rel=tol["loss"] if dtype == np.float64 else 1e-5)
    assert rel(gf, gr) < (1e-12 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_computes_the_residuals_of_softmax_losses(nl, dtype, weighted):
    """The compiled pass writes G = s (P - onehot) in its own registers: its loss,
    probabilities and G^T [X 1] equal those of losses.multinomial_residuals_, the one
    written-out version (which the BLAS and stochastic paths call)."""
    from softmax.losses import multinomial_residuals_

    X, y, w, coef = make(301, 37, 5, dtype, seed=4)
    w = w if weighted else None
    W, b = coef[:, :-1].astype(dtype), coef[:, -1].astype(dtype)
    Z = np.ascontiguousarray(X @ W.T + b)
    G = np.empty_like(Z)
    loss = multinomial_residuals_(Z, y, w, out=G)  # Z becomes the probabilities
    P = np.empty((301, 5), dtype=dtype)
    gtmp = np.empty((5, 37), dtype=dtype)
    lk, gW, gb = nl.loss_grad_range(W, b, X, y, w, True, gtmp, P, 0, 301, 64)
    tol = TOL[dtype]
    assert lk == pytest.approx(loss, rel=tol["loss"])
    assert rel(P, Z) < tol["grad"]
    assert rel(gW, G.astype(np.float64).T @ X.astype(np.float64)) < tol["grad"]
    assert rel(gb, G.sum(axis=0, dtype=np.float64)) < tol["grad"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n", "p", "step"), [(1, 5, 7), (7, 3, 3), (20, 4, 5), (203, 640, 50), (90, 1300, 256)]
)
def test_kernel_odd_shapes_and_blocks(nl, dtype, n, p, step):
    """Row counts not multiples of 8, blocks not multiples of 8, chunked columns."""
    K = 5
    X, y, w, coef = make(n, p, K, dtype, seed=n)
    W = coef[:, :p].astype(dtype)
    b = coef[:, p].astype(dtype)
    P = np.full((n, K), np.nan, dtype=dtype)
    loss, gW, gb = nl.loss_grad_range(W, b, X, y, w, True, np.empty((K, p), dtype), P, 0, n, step)
    coef_dt = np.hstack([W, b[:, None]]).astype(np.float64)
    lr, gr = reference(coef_dt, X, y, w, True)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert loss == pytest.approx(lr, rel=tol)
    assert rel(np.hstack([gW, gb[:, None]]), gr) < tol * 10
    Pr = np.exp(X.astype(np.float64) @ coef_dt[:, :p].T + coef_dt[:, p])
    Pr /= Pr.sum(axis=1, keepdims=True)
    assert np.abs(P - Pr).max() < (1e-13 if dtype == np.float64 else 1e-5)


def test_kernel_row_range_and_loss_only(nl):
    """A sub-range of rows, and need_gradient=False (loss and P only)."""
    X, y, w, coef = make(300, 40, 6, np.float64)
    W, b = coef[:, :40], coef[:, 40]
    gtmp = np.empty((6, 40))
    loss, gW, gb = nl.loss_grad_range(W, b, X, y, w, True, gtmp, None, 61, 250, 64)
    lr, gr = reference(coef, X[61:250], y[61:250], w[61:250], True)
    assert loss == pytest.approx(lr, rel=1e-12)
    assert rel(np.hstack([gW, gb[:, None]]), gr) < 1e-12
    P = np.zeros((300, 6))
    loss2, gW2, gb2 = nl.loss_grad_range(W, b, X, y, None, False, gtmp, P, 0, 300, 64)
    assert gW2 is None and gb2 is None
    assert loss2 == pytest.approx(reference(coef, X, y, None, True)[0], rel=1e-12)
    assert np.allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-14)


def test_gradient_matches_finite_differences(fused):
    X, y, w, coef = make(301, 12, 4, np.float64, seed=3)
    rng = np.random.default_rng(5)

    def f(c):
        return block_loss_gradient(c, X, y, w, fit_intercept=True)[0]

    _, g = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    h = 1e-6
    for _ in range(5):
        d = rng.normal(size=coef.shape)
        fd = (f(coef + h * d) - f(coef - h * d)) / (2 * h)
        assert fd == pytest.approx(float(np.sum(g * d)), rel=1e-6, abs=1e-6)
    assert fused  # the kernel computed these


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.float32, 1e3), (np.float64, 1e3), (np.float64, 1e8)]
)
def test_extreme_logits_stay_finite(monkeypatch, fused, dtype, scale):
    """Logits of order 1e4 to 1e9 (large weights): no overflow, no NaN, as the BLAS pass."""
    X, y, w, coef = make(333, 9, 10, dtype, seed=11, scale=scale)
    lf, gf = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert np.isfinite(lf) and np.all(np.isfinite(gf))
    blas(monkeypatch)
    lb, gb = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert lf == pytest.approx(lb, rel=TOL[dtype]["loss"])
    assert rel(gf, gb) < TOL[dtype]["grad"]
    lr, _ = reference(coef, X, y, w, True)
    assert lf == pytest.approx(lr, rel=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_probabilities_and_hessian_products(monkeypatch, fused, dtype):
    """block_hessp keeps P (proba_out): the fused pass must fill it as the BLAS pass does."""
    # row-major passes: with a kept workspace, 7 classes would take the class-major pass
    monkeypatch.setattr(ll, "CLASS_MAJOR_MAX_CLASSES", 0)
    X, y, w, coef = make(517, 30, 7, dtype, seed=2)
    ws = Workspace(X, 7, keep_proba=True)
    lf, gf, hf = block_hessp(coef, X, y, w, fit_intercept=True, workspace=ws)
    Pf = ws.proba.copy()
    assert fused
    V = np.random.default_rng(0).normal(size=coef.shape)
    hvf = hf(V)
    blas(monkeypatch)
    ws2 = Workspace(X, 7, keep_proba=True)
    lb, gb, hb = block_hessp(coef, X, y, w, fit_intercept=True, workspace=ws2)
    tol = TOL[dtype]
    assert lf == pytest.approx(lb, rel=tol["loss"])
    assert rel(gf, gb) < tol["grad"]
    assert np.abs(Pf - ws2.proba).max() < (1e-14 if dtype == np.float64 else 1e-6)
    assert rel(hvf, hb(V)) < tol["grad"]


def test_threaded_row_ranges(fused):
    """Workspace(n_threads=3): ranges run the kernel in parallel threads, same sums."""
    X, y, w, coef = make(2003, 50, 10, np.float64, seed=4)
    l1, g1 = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    ws = Workspace(X, 10, n_threads=3)
    ws.block_rows = 256  # several blocks per range
    l3, g3 = block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ws)
    assert len(fused) == 1 + 3
    assert l3 == pytest.approx(l1, rel=1e-13)
    assert rel(g3, g1) < 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_with_kernel_equals_fit_without(monkeypatch, nl, dtype):
    from softmax import SoftmaxRegression

    rng = np.random.default_rng(0)
    n, p, K = 1500, 20, 4
    centers = rng.normal(scale=1.5, size=(K, p))
    y = rng.integers(0, K, n)
    X = (centers[y] + rng.normal(size=(n, p))).astype(dtype)
    objectives = {}
    for use in (False, True):
        calls = []
        real = nl.loss_grad_range

        def spy(*args, _calls=calls, _real=real, **kwargs):
            _calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(nl, "loss_grad_range", spy)
        monkeypatch.setattr(ll, "_fused_module", None)
        monkeypatch.setattr(ll, "FUSED_MIN_WORK", 0 if use else float("inf"))
        monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
        clf = SoftmaxRegression(C=1.0, solver="lbfgs", tol=1e-10, max_iter=500).fit(X, y)
        assert bool(calls) == use
        monkeypatch.setattr(nl, "loss_grad_range", real)
        objectives[use] = clf.objective_
    assert objectives[True] == pytest.approx(objectives[False], rel=1e-7)


def test_dispatch_rule(monkeypatch, fused):
    """Only dense C-contiguous float rows with enough work and features per class."""
    X, y, w, coef = make(200, 10, 3, np.float64)
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 1
    block_loss_gradient(coef, np.asfortranarray(X), y, w, fit_intercept=True)
    block_loss_gradient(coef, sp.csr_matrix(X), y, w, fit_intercept=True)
    assert len(fused) == 1
    # features per class: 10 >= max(4, 3 * 3) uses the kernel, 10 < 4 * 3 does not
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (4, 4)})
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 1
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (4, 3)})
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 2
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (11, 0)})
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 2
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
    monkeypatch.setattr(ll, "FUSED_MIN_WORK", X.size * 3 + 1)
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 2
    monkeypatch.setattr(ll, "FUSED_MIN_WORK", X.size * 3)
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert len(fused) == 3


def test_default_rule_shapes(nl):
    """The shipped rule picks the kernel where it was measured faster (loss_kernel.md)."""

    def uses(n, p, K, dtype):
        X = np.empty((n, p), dtype)  # never written: the pages are not even touched
        return ll._fused_pass(X, K) is not None

    assert uses(8_000, 784, 10, np.float32) and uses(8_000, 784, 10, np.float64)
    assert uses(60_000, 784, 10, np.float32)
    assert not uses(1_000_000, 100, 10, np.float32) and uses(1_000_000, 100, 10, np.float64)
    assert not uses(50_000, 500, 100, np.float32) and not uses(50_000, 500, 100, np.float64)
    assert not uses(1_797, 64, 10, np.float64)  # digits: too little work to pay a compile


def test_without_numba_the_blas_path_runs(monkeypatch):
    """numba missing: the import fails once, and every pass takes the BLAS path."""
    import softmax

    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" raises ImportError
    monkeypatch.delitem(sys.modules, "softmax._numba_loss", raising=False)
    monkeypatch.delattr(softmax, "_numba_loss", raising=False)
    monkeypatch.setattr(ll, "_fused_module", None)
    monkeypatch.setattr(ll, "FUSED_MIN_WORK", 0)
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
    X, y, w, coef = make(150, 8, 3, np.float64)
    loss, grad = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert ll._fused_module is False
    lr, gr = reference(coef, X, y, w, True)
    assert loss == pytest.approx(lr, rel=1e-12)
    assert rel(grad, gr) < 1e-12


def test_kernel_input_checks_and_readonly_rows(nl):
    X, y, _, coef = make(40, 6, 3, np.float32)
    W, b = coef[:, :6].astype(np.float32), coef[:, 6].astype(np.float32)
    g = np.empty((3, 6), np.float32)
    with pytest.raises(ValueError, match="labels"):
        nl.loss_grad_range(W, b, X, np.where(y == 0, 3, y), None, True, g, None, 0, 40, 16)
    with pytest.raises(ValueError, match="labels"):
        nl.loss_grad_range(W, b, X, y - 1, None, True, g, None, 0, 40, 16)
    with pytest.raises(TypeError, match="C-contiguous"):
        nl.loss_grad_range(W, b, np.asfortranarray(X), y, None, True, g, None, 0, 40, 16)
    # a read-only X (a memory map, say) and int32 labels are accepted, and not modified
    Xr = X.copy()
    Xr.flags.writeable = False
    before = Xr.copy()
    loss, gW, gb = nl.loss_grad_range(W, b, Xr, y.astype(np.int32), None, True, g, None, 0, 40, 16)
    assert np.array_equal(Xr, before)
    lr, gr = reference(np.hstack([W, b[:, None]]).astype(np.float64), X, y, None, True)
    assert loss == pytest.approx(lr, rel=1e-5)
    assert rel(np.hstack([gW, gb[:, None]]), gr) < 1e-5
