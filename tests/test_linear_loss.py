"""Tests of softmax.linear_loss and the in-memory backend built on it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import check_grad
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import log_loss

import softmax.linear_loss as ll
from softmax.backends.memory import InMemoryData
from softmax.linear_loss import (
    block_hessian,
    block_hessp,
    block_loss_gradient,
    column_moments,
    decision_function,
)

N, P, K = 120, 6, 4


def make(fit_intercept=True, dtype=np.float64, sparse=False, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, P))
    X[rng.random((N, P)) < 0.4] = 0.0
    X = X.astype(dtype)
    y = rng.integers(0, K, N)
    w = rng.uniform(0.2, 2.0, N)
    coef = rng.normal(scale=0.5, size=(K, P + int(fit_intercept)))
    return (sp.csr_matrix(X) if sparse else X), y, w, coef


def reference_loss(coef, X, y, w, fit_intercept):
    """Summed weighted CE by scipy softmax + sklearn log_loss (float64)."""
    Xd = X.toarray() if sp.issparse(X) else X
    Xd = Xd.astype(np.float64)
    W = coef[:, :P]
    Z = Xd @ W.T + (coef[:, P] if fit_intercept else 0)
    return log_loss(y, scipy_softmax(Z, axis=1), sample_weight=w, normalize=False, labels=range(K))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_loss_matches_sklearn_and_gradient_matches_fd(fit_intercept, sparse):
    X, y, w, coef = make(fit_intercept, sparse=sparse)
    loss, grad = block_loss_gradient(coef, X, y, w, fit_intercept=fit_intercept)
    assert loss == pytest.approx(reference_loss(coef, X, y, w, fit_intercept), rel=1e-12)
    assert grad.shape == coef.shape and grad.dtype == np.float64

    def f(c):
        return block_loss_gradient(c.reshape(coef.shape), X, y, w, fit_intercept=fit_intercept)[0]

    def g(c):
        return block_loss_gradient(c.reshape(coef.shape), X, y, w, fit_intercept=fit_intercept)[
            1
        ].ravel()

    err = check_grad(f, g, coef.ravel(), epsilon=1e-7)
    assert err < 1e-5 * max(1.0, np.linalg.norm(grad))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_hessp_matches_fd_and_full_hessian(fit_intercept, sparse):
    X, y, w, coef = make(fit_intercept, sparse=sparse, seed=1)
    loss, grad, hessp = block_hessp(coef, X, y, w, fit_intercept=fit_intercept)
    rng = np.random.default_rng(2)
    V = rng.normal(size=coef.shape)
    eps = 1e-6
    gp = block_loss_gradient(coef + eps * V, X, y, w, fit_intercept=fit_intercept)[1]
    gm = block_loss_gradient(coef - eps * V, X, y, w, fit_intercept=fit_intercept)[1]
    np.testing.assert_allclose(hessp(V), (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-7)
    loss2, grad2, H = block_hessian(coef, X, y, w, fit_intercept=fit_intercept)
    assert loss2 == loss
    np.testing.assert_array_equal(grad2, grad)
    n_coef = coef.size
    assert H.shape == (n_coef, n_coef)
    np.testing.assert_allclose(H, H.T)
    # every column of H is hessp of a unit vector (C-order layout of coef)
    cols = np.column_stack(
        [hessp(np.eye(n_coef)[j].reshape(coef.shape)).ravel() for j in range(n_coef)]
    )
    np.testing.assert_allclose(H, cols, rtol=1e-10, atol=1e-10)
    assert np.linalg.eigvalsh(H).min() > -1e-10  # positive semi-definite


def test_intercept_shift_is_a_null_direction_of_the_hessian():
    X, y, w, coef = make(True)
    _, _, H = block_hessian(coef, X, y, w, fit_intercept=True)
    u = np.zeros(coef.shape)
    u[:, -1] = 1.0
    np.testing.assert_allclose(H @ u.ravel(), 0, atol=1e-10)


def test_sample_weights_equal_row_repetition():
    X, y, _, coef = make(True)
    reps = np.random.default_rng(3).integers(0, 4, N)
    loss_w, grad_w = block_loss_gradient(coef, X, y, reps.astype(float), fit_intercept=True)
    Xr, yr = np.repeat(X, reps, axis=0), np.repeat(y, reps)
    loss_r, grad_r = block_loss_gradient(coef, Xr, yr, None, fit_intercept=True)
    assert loss_w == pytest.approx(loss_r, rel=1e-12)
    np.testing.assert_allclose(grad_w, grad_r, rtol=1e-10, atol=1e-12)
    hp_w = block_hessp(coef, X, y, reps.astype(float), fit_intercept=True)[2]
    hp_r = block_hessp(coef, Xr, yr, None, fit_intercept=True)[2]
    V = np.ones(coef.shape)
    np.testing.assert_allclose(hp_w(V), hp_r(V), rtol=1e-10, atol=1e-12)


def test_many_blocks_equal_one_block(monkeypatch):
    X, y, w, coef = make(True)
    one = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    one_h = block_hessp(coef, X, y, w, fit_intercept=True)[2](coef)
    monkeypatch.setattr(ll, "MIN_BLOCK_ROWS", 7)
    monkeypatch.setattr(ll, "BLOCK_BYTES", 7 * (P + K) * 8)
    monkeypatch.setattr(ll, "SPARSE_BLOCK_ROWS", 11)
    assert ll.Workspace(X, K).block_rows == 7
    many = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    assert many[0] == pytest.approx(one[0], rel=1e-13)
    np.testing.assert_allclose(many[1], one[1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        block_hessp(coef, X, y, w, fit_intercept=True)[2](coef), one_h, rtol=1e-12, atol=1e-13
    )
    csr = block_loss_gradient(coef, sp.csr_matrix(X), y, w, fit_intercept=True)
    np.testing.assert_allclose(csr[1], one[1], rtol=1e-12, atol=1e-13)


def test_sparse_equals_dense():
    X, y, w, coef = make(True)
    d = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    s = block_loss_gradient(coef, sp.csr_matrix(X), y, w, fit_intercept=True)
    assert s[0] == pytest.approx(d[0], rel=1e-13)
    np.testing.assert_allclose(s[1], d[1], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("path", ["blas", "fused"])
def test_float32_computed_in_float32_accumulated_in_float64(monkeypatch, path):
    from scipy.special import logsumexp

    if path == "fused":  # the compiled pass sums its rows itself: route every block there
        pytest.importorskip("numba")
        calls = []
        from softmax import _numba_loss

        real = _numba_loss.loss_grad_range

        def spy(*args, **kwargs):
            calls.append(args[2].dtype)
            return real(*args, **kwargs)

        monkeypatch.setattr(ll, "FUSED_MIN_WORK", 0)
        monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
        monkeypatch.setattr(ll, "_fused_module", None)
        monkeypatch.setattr(_numba_loss, "loss_grad_range", spy)
    else:
        monkeypatch.setattr(ll, "FUSED_MIN_WORK", float("inf"))
    rng = np.random.default_rng(6)
    n, p, k = 200_000, 30, 5
    X = rng.normal(size=(n, p)).astype(np.float32)
    y = rng.integers(0, k, n)
    # Coefficients that float32 holds exactly, so that the float64 reference
    # differs from the float32 pass only by the rounding of each row's terms.
    coef = rng.normal(scale=0.3, size=(k, p + 1)).astype(np.float32).astype(np.float64)
    l32, g32 = block_loss_gradient(coef, X, y, None, fit_intercept=True)
    if path == "fused":
        assert calls and calls[0] == np.float32
    # The float64 reference from SciPy, independent of both passes.
    X64 = X.astype(np.float64)
    logits64 = X64 @ coef[:, :p].T + coef[:, p]
    l64 = float(np.sum(logsumexp(logits64, axis=1) - logits64[np.arange(n), y]))
    residual = scipy_softmax(logits64, axis=1)
    residual[np.arange(n), y] -= 1.0
    g64 = np.column_stack([residual.T @ X64, residual.sum(axis=0)])
    assert isinstance(l32, float) and g32.dtype == np.float64
    # Rows rounded in float32 but summed in float64: their errors average out.
    tolerance = 5e-9
    assert abs(l32 / l64 - 1) < tolerance
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-3)
    # The bug this guards against, an all-float32 computation, misses by far
    # more: no float32 number lies within 3 tolerances of this total (the
    # seed is chosen so), and the float32 sums, pairwise (NumPy) or in order
    # (a loop, a BLAS dot), are further off still.
    assert abs(float(np.float32(l64)) / l64 - 1) > 3 * tolerance
    logits = X @ coef[:, :p].T.astype(np.float32) + coef[:, p].astype(np.float32)
    rows = logsumexp(logits, axis=1) - logits[np.arange(n), y]
    assert rows.dtype == np.float32
    for float32_total in (rows.sum(dtype=np.float32), np.cumsum(rows, dtype=np.float32)[-1]):
        assert abs(float(float32_total) / l64 - 1) > 3 * tolerance


def test_inputs_are_not_modified_or_copied():
    X, y, w, coef = make(True)
    Xc, yc, wc, cc = X.copy(), y.copy(), w.copy(), coef.copy()
    block_loss_gradient(coef, X, y, w, fit_intercept=True)
    block_hessp(coef, X, y, w, fit_intercept=True)[2](coef)
    block_hessian(coef, X, y, w, fit_intercept=True)
    for a, b in [(X, Xc), (y, yc), (w, wc), (coef, cc)]:
        np.testing.assert_array_equal(a, b)


def test_loss_only_and_workspace_reuse():
    X, y, w, coef = make(True)
    ws = ll.Workspace(X, K, keep_proba=True)
    full = block_loss_gradient(coef, X, y, w, fit_intercept=True)
    loss_only, none = block_loss_gradient(
        coef, X, y, w, fit_intercept=True, need_gradient=False, workspace=ws
    )
    assert none is None and loss_only == pytest.approx(full[0], rel=1e-14)
    again = block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ws)
    np.testing.assert_array_equal(again[1], full[1])


def test_decision_function():
    X, _y, _w, coef = make(True)
    np.testing.assert_allclose(
        decision_function(coef, X, fit_intercept=True), X @ coef[:, :P].T + coef[:, P]
    )
    np.testing.assert_allclose(
        decision_function(coef[:, :P], sp.csr_matrix(X), fit_intercept=False), X @ coef[:, :P].T
    )
    with pytest.raises(ValueError, match="expected"):
        decision_function(coef, X, fit_intercept=False)


def test_column_moments():
    X, _y, w, _coef = make(True)
    s1, s2 = column_moments(X, w)
    np.testing.assert_allclose(s1, w @ X)
    np.testing.assert_allclose(s2, w @ X**2)
    t1, t2 = column_moments(sp.csr_matrix(X), None)
    np.testing.assert_allclose(t1, X.sum(0))
    np.testing.assert_allclose(t2, (X**2).sum(0))
    # dense float32 rows over several blocks, with and without weights: NumPy
    # in float64; the caller's rows are left as they were
    rng = np.random.default_rng(2)
    X32 = rng.normal(size=(2500, 100)).astype(np.float32)
    before = X32.copy()
    X64 = X32.astype(np.float64)
    for wts in (None, rng.uniform(0, 2, 2500)):
        u = np.ones(2500) if wts is None else wts
        d1, d2 = column_moments(X32, wts)
        np.testing.assert_allclose(d1, u @ X64, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(d2, u @ X64**2, rtol=1e-12)
    np.testing.assert_array_equal(X32, before)


def test_non_float_X_is_rejected():
    X, y, w, coef = make(True)
    with pytest.raises(TypeError, match="float32 or float64"):
        block_loss_gradient(coef, X.astype(np.int64), y, w, fit_intercept=True)


class TestInMemoryData:
    def test_answers_and_counts_passes(self):
        X, y, w, coef = make(True)
        data = InMemoryData(X, y, w, np.array(list("abcd")), fit_intercept=True)
        assert data.coef_shape == coef.shape and data.n_classes == K
        assert data.weight_sum == pytest.approx(w.sum())
        loss, _grad = data.loss_gradient(coef)
        ref = block_loss_gradient(coef, X, y, w, fit_intercept=True)
        assert loss == ref[0]
        assert data.loss(coef) == pytest.approx(loss, rel=1e-14)
        _, _, hp = data.gradient_hessian_product(coef)
        hp(coef)
        data.hessian(coef)
        assert data.n_passes == 5

    def test_minibatches_cover_every_row_once(self):
        X, y, w, _coef = make(True)
        data = InMemoryData(X, y, w, np.arange(K), fit_intercept=True)
        batches = list(data.iter_minibatches(32, np.random.default_rng(0)))
        assert [len(b[1]) for b in batches] == [32, 32, 32, 24]
        Xs = np.vstack([b[0] for b in batches])
        ws = np.concatenate([b[2] for b in batches])
        order = np.lexsort(Xs.T)
        np.testing.assert_array_equal(Xs[order], X[np.lexsort(X.T)])
        assert ws.sum() == pytest.approx(w.sum())

    def test_bad_input(self):
        X, y, w, _coef = make(True)
        with pytest.raises(ValueError, match="C-contiguous"):
            InMemoryData(np.asfortranarray(X), y, w, np.arange(K), fit_intercept=True)
        with pytest.raises(TypeError, match="CSR"):
            InMemoryData(sp.csc_matrix(X), y, w, np.arange(K), fit_intercept=True)
        with pytest.raises(ValueError, match="y_codes"):
            InMemoryData(X, y + 10, w, np.arange(K), fit_intercept=True)
        with pytest.raises(ValueError, match="weights"):
            InMemoryData(X, y, w[:-1], np.arange(K), fit_intercept=True)
        data = InMemoryData(X, y, w, np.arange(K), fit_intercept=True)
        with pytest.raises(ValueError, match="batch_size"):
            next(data.iter_minibatches(0, np.random.default_rng(0)))


@pytest.mark.parametrize("sparse", [False, True])
def test_threaded_ranges_equal_one_thread(monkeypatch, sparse):
    X, y, w, coef = make(True, sparse=sparse)
    monkeypatch.setattr(ll, "MIN_BLOCK_ROWS", 10)
    monkeypatch.setattr(ll, "BLOCK_BYTES", 10 * (P + K) * 8)
    monkeypatch.setattr(ll, "SPARSE_BLOCK_ROWS", 10)
    one = block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ll.Workspace(X, K))
    for threads in (2, 3):
        ws = ll.Workspace(X, K, n_threads=threads)
        many = block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ws)
        assert many[0] == pytest.approx(one[0], rel=1e-13)
        np.testing.assert_allclose(many[1], one[1], rtol=1e-12, atol=1e-13)
    assert ll._ranges(120, 10, 3) == [(0, 40), (40, 80), (80, 120)]
    assert ll._ranges(5, 10, 2) == [(0, 5)]


def _reference_loss_gradient(coef, X, y, w, fit_intercept, eps):
    """Smoothed weighted CE and its gradient from the textbook formulas (float64)."""
    Xd = np.asarray(X, dtype=np.float64)
    n, p = Xd.shape
    k = coef.shape[0]
    Z = Xd @ coef[:, :p].T + (coef[:, p] if fit_intercept else 0.0)
    P = scipy_softmax(Z, axis=1)
    T = (1 - eps) * np.eye(k)[y] + eps / k
    s = np.ones(n) if w is None else w
    loss = float(s @ -(T * np.log(P)).sum(axis=1))
    G = s[:, None] * (P - T)
    grad = G.T @ Xd
    if fit_intercept:
        grad = np.column_stack([grad, G.sum(axis=0)])
    return loss, grad


@pytest.mark.parametrize("class_major", [True, False])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("blocks", ["one", "many"])
def test_class_major_and_row_major_passes_match_the_formulas(
    monkeypatch, class_major, fit_intercept, weighted, eps, blocks
):
    """Both layouts of the dense pass (logits per class or per row) give the textbook values.

    With a workspace kept across calls the class-major pass reads a
    transposed copy of X; without one it reads the transposed view.
    """
    X, y, w, coef = make(fit_intercept, seed=3)
    w = w if weighted else None
    monkeypatch.setattr(ll, "CLASS_MAJOR_MAX_CLASSES", K if class_major else 0)
    if blocks == "many":
        monkeypatch.setattr(ll, "MIN_BLOCK_ROWS", 7)
        monkeypatch.setattr(ll, "BLOCK_BYTES", 7 * (P + K) * 8)
    ref_loss, ref_grad = _reference_loss_gradient(coef, X, y, w, fit_intercept, eps)
    ws = ll.Workspace(X, K)
    for workspace in (None, ws, ws):  # the second use of ws reads its transposed copy
        loss, grad = block_loss_gradient(
            coef, X, y, w, fit_intercept=fit_intercept, workspace=workspace, label_smoothing=eps
        )
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-12)
        loss_only, _ = block_loss_gradient(
            coef, X, y, w, fit_intercept=fit_intercept, need_gradient=False, workspace=workspace,
            label_smoothing=eps,
        )  # fmt: skip
        assert loss_only == pytest.approx(ref_loss, rel=1e-12)
    assert (ws._xt is not None) == class_major


def test_class_major_transposed_copy_follows_the_rows():
    """A workspace offered other rows of the same shape never reuses the old transpose."""
    X, y, w, coef = make(True, seed=4)
    X2 = X[::-1].copy()
    ws = ll.Workspace(X, K)
    block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ws)
    loss, grad = block_loss_gradient(coef, X2, y, w, fit_intercept=True, workspace=ws)
    ref_loss, ref_grad = _reference_loss_gradient(coef, X2, y, w, True, 0.0)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-12)


def test_class_major_float32_rows():
    """float32 rows through the class-major pass: float32 products, float64 sums."""
    X, y, w, coef = make(True, dtype=np.float32, seed=5)
    coef = coef.astype(np.float32).astype(np.float64)
    ws = ll.Workspace(X, K)
    for _ in range(2):
        loss, grad = block_loss_gradient(coef, X, y, w, fit_intercept=True, workspace=ws)
        ref_loss, ref_grad = _reference_loss_gradient(coef, X, y, w, True, 0.0)
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)
    assert ws._xt is not None and ws._xt.dtype == np.float32


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_curvature_moments_match_the_formulas(monkeypatch, weighted, fit_intercept):
    """``sum_i w_ik (1, x_ij, x_ij^2)``, ``w_ik = s_i p_ik (1 - p_ik)``: every layout.

    Through a kept workspace the rows are one class-major block (X^T and X * X
    reused); without one, or with blocks smaller than the rows, the blocked pass.
    """
    from softmax.linear_loss import block_curvature_moments

    X, _y, w, coef = make(fit_intercept, seed=7)
    w = w if weighted else None
    Z = X @ coef[:, :P].T + (coef[:, P] if fit_intercept else 0.0)
    Pr = scipy_softmax(Z, axis=1)
    Wc = Pr * (1 - Pr) * (1.0 if w is None else w[:, None])
    ref = (Wc.sum(axis=0), Wc.T @ X, Wc.T @ (X * X))
    ws = ll.Workspace(X, K)
    for workspace in (None, ws, ws):
        got = block_curvature_moments(coef, X, w, fit_intercept=fit_intercept, workspace=workspace)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert ws._x2 is not None
    monkeypatch.setattr(ll, "MIN_BLOCK_ROWS", 7)
    monkeypatch.setattr(ll, "BLOCK_BYTES", 7 * (P + K) * 8)
    ws = ll.Workspace(X, K)
    got = block_curvature_moments(coef, X, w, fit_intercept=fit_intercept, workspace=ws)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert ws._x2 is None  # many blocks: the row-major pass


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_class_major_hessp_matches_the_full_hessian(weighted, fit_intercept):
    """Through a kept workspace (one class-major block), ``hessp(V)`` is ``H V``.

    ``H`` from :func:`block_hessian` (explicit per-row outer products) and
    central differences of the textbook gradient; the loss and gradient the
    same call returns are the textbook ones.
    """
    X, y, w, coef = make(fit_intercept, seed=8)
    w = w if weighted else None
    ws = ll.Workspace(X, K, keep_proba=True)
    for _ in range(2):  # the second call reads the kept transposed rows
        loss, grad, hessp = block_hessp(coef, X, y, w, fit_intercept=fit_intercept, workspace=ws)
    assert ws._xt is not None
    ref_loss, ref_grad = _reference_loss_gradient(coef, X, y, w, fit_intercept, 0.0)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-12)
    H = block_hessian(coef, X, y, w, fit_intercept=fit_intercept)[2]
    rng = np.random.default_rng(9)
    for _ in range(3):
        V = rng.normal(size=coef.shape)
        hv = hessp(V)
        np.testing.assert_allclose(hv.ravel(), H @ V.ravel(), rtol=1e-10, atol=1e-10)
        h = 1e-6
        gp = _reference_loss_gradient(coef + h * V, X, y, w, fit_intercept, 0.0)[1]
        gm = _reference_loss_gradient(coef - h * V, X, y, w, fit_intercept, 0.0)[1]
        np.testing.assert_allclose(hv, (gp - gm) / (2 * h), rtol=1e-5, atol=1e-7)
