"""Label smoothing in the training objective (``SoftmaxRegression(label_smoothing=eps)``).

The smoothed target is PyTorch's, ``t = (1 - eps) onehot(y) + eps / K``. The
data term and its gradient are checked against
``torch.nn.functional.cross_entropy(..., label_smoothing=eps)`` on every road
the rows take (memory dense and CSR, float32, the compiled numba pass, file
streams, Dask chunks, torch rows of the array API backend, the stochastic
solvers' residuals) and against finite differences; the fitted coefficients
against SciPy's L-BFGS-B on the same smoothed, L2-penalised objective.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy.special import logsumexp

import softmax.linear_loss as ll
from softmax import SoftmaxRegression, SoftmaxRegressionCV
from softmax.backends.memory import InMemoryData

torch = pytest.importorskip("torch")
F = torch.nn.functional

EPS = [0.0, 0.1, 0.37, 0.9]


def make(n=120, p=5, K=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(dtype)
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)  # every class present
    w = rng.uniform(0.2, 2.0, n)
    coef = rng.normal(scale=0.7, size=(K, p + 1))
    return X, y, w, coef


def torch_loss_grad(coef, X, y, w, eps):
    """Summed weighted smoothed cross-entropy and its gradient, by torch autograd."""
    p = X.shape[1]
    W = torch.tensor(coef, dtype=torch.float64, requires_grad=True)
    Z = torch.tensor(np.asarray(X, dtype=np.float64)) @ W[:, :p].T + W[:, p]
    per_row = F.cross_entropy(Z, torch.tensor(y), label_smoothing=eps, reduction="none")
    s = torch.ones(len(y), dtype=torch.float64) if w is None else torch.tensor(w)
    loss = (s * per_row).sum()
    loss.backward()
    return float(loss.detach()), W.grad.numpy()


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- the loss layer and every backend against torch ---------------------------------


@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_memory_rows_match_torch(eps, weighted, sparse):
    X, y, w, coef = make(seed=1)
    w = w if weighted else None
    rows = InMemoryData(
        sp.csr_matrix(X) if sparse else X, y, w, np.arange(4), fit_intercept=True,
        label_smoothing=eps,
    )  # fmt: skip
    loss, grad = rows.loss_gradient(coef)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, eps)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert rel(grad, ref_grad) < 1e-12
    assert rows.loss(coef) == pytest.approx(ref_loss, rel=1e-12)
    # Hessian products and the full Hessian come with the same loss and gradient
    l2, g2, _ = rows.gradient_hessian_product(coef)
    l3, g3, _ = rows.hessian(coef)
    assert l2 == pytest.approx(ref_loss, rel=1e-12) and l3 == pytest.approx(ref_loss, rel=1e-12)
    assert rel(g2, ref_grad) < 1e-12 and rel(g3, ref_grad) < 1e-12


def test_float32_rows_match_torch():
    X, y, w, coef = make(seed=2, dtype=np.float32)
    rows = InMemoryData(X, y, w, np.arange(4), fit_intercept=True, label_smoothing=0.2)
    loss, grad = rows.loss_gradient(coef)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, 0.2)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert rel(grad, ref_grad) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_numba_pass_matches_torch(monkeypatch, dtype, weighted):
    pytest.importorskip("numba")
    from softmax import _numba_loss

    calls = []
    real = _numba_loss.loss_grad_range

    def spy(*args, **kwargs):
        calls.append(kwargs.get("label_smoothing"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ll, "FUSED_MIN_WORK", 0)
    monkeypatch.setattr(ll, "FUSED_MIN_FEATURES", {4: (0, 0), 8: (0, 0)})
    monkeypatch.setattr(ll, "_fused_module", None)
    monkeypatch.setattr(_numba_loss, "loss_grad_range", spy)
    # 1037 rows: full blocks, a short last block and a group moved back (see _numba_loss)
    X, y, w, coef = make(n=1037, p=23, K=5, seed=3, dtype=dtype)
    w = w if weighted else None
    loss, grad = ll.block_loss_gradient(coef, X, y, w, fit_intercept=True, label_smoothing=0.3)
    assert calls == [0.3]
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, 0.3)
    tight = dtype == np.float64
    assert loss == pytest.approx(ref_loss, rel=1e-12 if tight else 1e-5)
    assert rel(grad, ref_grad) < (1e-12 if tight else 1e-4)
    # fewer rows than a register group of 8 (padded inside the kernel), and loss only
    small = ll.block_loss_gradient(
        coef, X[:5], y[:5], None, fit_intercept=True, label_smoothing=0.3
    )
    assert small[0] == pytest.approx(torch_loss_grad(coef, X[:5], y[:5], None, 0.3)[0], rel=1e-5)
    alone = ll.block_loss_gradient(
        coef, X, y, w, fit_intercept=True, need_gradient=False, label_smoothing=0.3
    )
    assert alone[0] == pytest.approx(loss, rel=1e-12)


def test_stream_rows_match_torch(tmp_path):
    from softmax.backends.stream import build_row_data
    from softmax.streaming import FileSource

    X, y, _, coef = make(n=300, seed=4)
    np.save(tmp_path / "rows.npy", np.column_stack([X, y]))
    source = FileSource(tmp_path / "rows.npy", target=-1, block_rows=70)
    rows = build_row_data(source, label_smoothing=0.25)
    assert rows.label_smoothing == 0.25
    loss, grad = rows.loss_gradient(coef)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, None, 0.25)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert rel(grad, ref_grad) < 1e-12
    assert rows.hessian(coef)[0] == pytest.approx(ref_loss, rel=1e-12)
    with pytest.raises(ValueError, match="label_smoothing"):
        rows.information(coef, 0)


def test_dask_rows_match_torch():
    da = pytest.importorskip("dask.array")
    from softmax.backends.dask import build_row_data

    X, y, w, coef = make(n=300, seed=5)
    rows = build_row_data(
        da.from_array(X, chunks=(70, 5)), da.from_array(y, chunks=70),
        sample_weight=da.from_array(w, chunks=70), label_smoothing=0.4,
    )  # fmt: skip
    loss, grad = rows.loss_gradient(coef)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, 0.4)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert rel(grad, ref_grad) < 1e-12
    # chunks keep the smoothing when pickled to another worker
    import pickle

    chunk = pickle.loads(pickle.dumps(rows._compute(rows._chunks[0])))
    assert chunk.label_smoothing == 0.4


def test_array_api_rows_match_torch():
    from softmax.backends.array_api import ArrayAPIData

    X, y, w, coef = make(seed=6)
    rows = ArrayAPIData(
        torch.tensor(X), torch.tensor(y), torch.tensor(w), np.arange(4), fit_intercept=True,
        label_smoothing=0.15,
    )  # fmt: skip
    loss, grad = rows.loss_gradient(coef)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, 0.15)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert rel(grad, ref_grad) < 1e-12


def test_stochastic_residuals_match_torch():
    from softmax.solvers.stochastic._batches import Batch, batch_residuals, residual_gradient

    X, y, w, coef = make(seed=7)
    loss, R = batch_residuals(coef, Batch(X, y, w), True, 0.6)
    ref_loss, ref_grad = torch_loss_grad(coef, X, y, w, 0.6)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert rel(residual_gradient(R, X, True), ref_grad) < 1e-12


def test_gradient_matches_finite_differences():
    X, y, w, coef = make(n=60, p=3, K=3, seed=8)
    rows = InMemoryData(X, y, w, np.arange(3), fit_intercept=True, label_smoothing=0.3)
    _, grad = rows.loss_gradient(coef)
    h = 1e-6
    fd = np.zeros_like(coef)
    for idx in np.ndindex(*coef.shape):
        e = np.zeros_like(coef)
        e[idx] = h
        fd[idx] = (rows.loss(coef + e) - rows.loss(coef - e)) / (2 * h)
    assert rel(grad, fd) < 1e-7


def test_hessian_is_that_of_the_unsmoothed_loss():
    # t sums to one and does not depend on the logits: the curvature is unchanged
    X, y, w, coef = make(n=80, p=3, K=3, seed=9)
    H0 = InMemoryData(X, y, w, np.arange(3), fit_intercept=True).hessian(coef)[2]
    H1 = InMemoryData(X, y, w, np.arange(3), fit_intercept=True, label_smoothing=0.5).hessian(
        coef
    )[2]
    np.testing.assert_array_equal(H0, H1)


# -- the estimator ---------------------------------------------------------------------


def scipy_reference(X, y, w, eps, C, K):
    """argmin C sum_i s_i CE(t_i, softmax(W x_i + b)) + ||W||^2 / 2 by L-BFGS-B (numpy only)."""
    n, p = X.shape
    T = np.full((n, K), eps / K)
    T[np.arange(n), y] += 1 - eps

    def f(theta):
        coef = theta.reshape(K, p + 1)
        Z = X @ coef[:, :p].T + coef[:, p]
        lse = logsumexp(Z, axis=1)
        loss = C * np.sum(w * (lse - np.sum(T * Z, axis=1))) + 0.5 * np.sum(coef[:, :p] ** 2)
        G = (np.exp(Z - lse[:, None]) - T) * (C * w)[:, None]
        grad = np.hstack([G.T @ X + coef[:, :p], G.sum(axis=0)[:, None]])
        return loss, grad.ravel()

    res = scipy.optimize.minimize(
        f, np.zeros(K * (p + 1)), jac=True, method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20000, "maxcor": 30},
    )  # fmt: skip
    coef = res.x.reshape(K, p + 1)
    return coef[:, :p], coef[:, p] - coef[:, p].mean(), res.fun


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fit_reaches_the_smoothed_optimum(solver, eps):
    X, y, w, _ = make(n=200, p=4, K=3, seed=10)
    C = 3.0
    W_ref, b_ref, f_ref = scipy_reference(X, y, w, eps, C, 3)
    clf = SoftmaxRegression(C=C, label_smoothing=eps, solver=solver, tol=1e-12).fit(
        X, y, sample_weight=w
    )
    assert clf.objective_ == pytest.approx(f_ref, rel=1e-10)
    np.testing.assert_allclose(clf.coef_, W_ref, atol=1e-6)
    np.testing.assert_allclose(clf.intercept_, b_ref, atol=1e-6)
    # and it is not the unsmoothed optimum
    plain = SoftmaxRegression(C=C, solver=solver, tol=1e-12).fit(X, y, sample_weight=w)
    assert np.abs(plain.coef_ - clf.coef_).max() > 1e-3


def test_smoothing_keeps_probabilities_away_from_certainty():
    # separable rows: unpenalised, the plain fit diverges; the smoothed one has a
    # finite optimum whose largest probability is about 1 - eps + eps / K
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0, 0, 1, 1])
    clf = SoftmaxRegression(C=np.inf, label_smoothing=0.2, tol=1e-12).fit(X, y)
    assert clf.converged_ and clf.separation_ is None
    assert clf.predict_proba(X).max() < 0.95


def test_sgd_approaches_the_smoothed_optimum():
    X, y, _, _ = make(n=400, p=4, K=3, seed=11)
    exact = SoftmaxRegression(C=1.0, label_smoothing=0.3, tol=1e-12).fit(X, y)
    sgd = SoftmaxRegression(
        C=1.0, label_smoothing=0.3, solver="sgd", max_iter=200, tol=1e-9, random_state=0
    ).fit(X, y)
    assert sgd.objective_ == pytest.approx(exact.objective_, rel=1e-5)
    part = SoftmaxRegression(C=1.0, label_smoothing=0.3, random_state=0)
    for _ in range(30):
        part.partial_fit(X, y, classes=np.arange(3))
    np.testing.assert_allclose(part.coef_, exact.coef_, atol=0.05)


def test_cv_passes_label_smoothing_to_every_fit():
    X, y, _, _ = make(n=240, p=4, K=3, seed=12)
    Cs = [0.1, 1.0, 10.0]
    cv = SoftmaxRegressionCV(Cs=Cs, cv=3, label_smoothing=0.2, tol=1e-10).fit(X, y)
    assert cv.estimator_.label_smoothing == 0.2
    ref = SoftmaxRegression(C=cv.C_, label_smoothing=0.2, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(cv.coef_, ref.coef_, atol=1e-6)
    # the fold paths are the smoothed fits too
    from sklearn.model_selection import StratifiedKFold

    train, _ = next(StratifiedKFold(3).split(X, y))
    fold = SoftmaxRegression(C=1.0, label_smoothing=0.2, tol=1e-10).fit(X[train], y[train])
    np.testing.assert_allclose(cv.coefs_paths_[0, 0, 1, :, :-1], fold.coef_, atol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1", True, None])
def test_bad_values_are_refused(bad):
    X, y, _, _ = make(n=30, p=2, K=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxRegression(label_smoothing=bad).fit(X, y)
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxRegressionCV(Cs=2, cv=2, label_smoothing=bad).fit(X, y)


def test_cross_entropy_accepts_one_and_the_estimator_does_not():
    # softmax.cross_entropy is a function of given logits: eps = 1 is a valid (if
    # useless) target there; a fit with it would not depend on y at all
    from softmax import cross_entropy

    z = np.array([[1.0, 2.0, 0.5]])
    ours = cross_entropy(z, np.array([1]), label_smoothing=1.0)
    ref = F.cross_entropy(torch.tensor(z), torch.tensor([1]), label_smoothing=1.0)
    assert float(np.sum(ours)) == pytest.approx(float(ref), rel=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SoftmaxRegression(label_smoothing=1.0).fit(np.eye(3), [0, 1, 2])


def test_inference_refuses_smoothed_fits():
    from softmax import inference

    X, y, _, _ = make(n=100, p=2, K=3, seed=13)
    clf = SoftmaxRegression(C=np.inf, label_smoothing=0.1).fit(X, y)
    with pytest.raises(ValueError, match="label_smoothing"):
        inference(clf, X, y)


@pytest.mark.parametrize("bad", [1.0, -0.5, "x", [0.1], {"float": "nan"}])
def test_save_load_round_trip_and_tampered_value(tmp_path, bad):
    from softmax import load_model
    from softmax.io import read_safetensors, write_safetensors

    X, y, _, _ = make(n=100, p=3, K=3, seed=14)
    clf = SoftmaxRegression(label_smoothing=0.125).fit(X, y)
    path = tmp_path / "m.safetensors"
    clf.save(path)
    back = load_model(path)
    assert back.label_smoothing == 0.125
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta["softmax"])
    doc["params"]["label_smoothing"] = bad
    write_safetensors(path, tensors, {"softmax": json.dumps(doc)})
    with pytest.raises(ValueError, match="label_smoothing"):
        load_model(path)


def test_regularization_path_takes_label_smoothing():
    from softmax.model_selection import regularization_path

    X, y, _, _ = make(n=150, p=4, K=3, seed=15)
    path = regularization_path(X, y, [0.1, 1.0, 10.0], label_smoothing=0.3, tol=1e-10)
    for C, coef in zip(path.Cs, path.coefs):
        ref = SoftmaxRegression(C=C, label_smoothing=0.3, tol=1e-10).fit(X, y)
        np.testing.assert_allclose(coef, ref.coef_, atol=1e-6)
