"""ArrayAPIData: loss and gradient on torch / array_api_strict rows vs InMemoryData."""

from __future__ import annotations

import numpy as np
import pytest

from softmax.backends.array_api import ArrayAPIData
from softmax.backends.memory import InMemoryData

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")


def _problem(dtype, weighted, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, 5)).astype(dtype)
    y = rng.integers(0, 3, 60)
    w = rng.uniform(0.5, 2.0, 60) if weighted else None
    coef = rng.standard_normal((3, 6))
    return X, y, w, coef


def _wrap(lib, X, y, w):
    if lib == "torch":
        return torch.asarray(X), torch.asarray(y), None if w is None else torch.asarray(w)
    dev = strict.Device("device1") if lib == "strict-device1" else None
    kw = {} if dev is None else {"device": dev}
    return (
        strict.asarray(X, **kw),
        strict.asarray(y, **kw),
        None if w is None else strict.asarray(w, **kw),
    )


@pytest.mark.parametrize("lib", ["torch", "strict", "strict-device1"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_gradient_matches_in_memory(lib, weighted, dtype):
    X, y, w, coef = _problem(dtype, weighted)
    ref = InMemoryData(X, y, w, np.arange(3), fit_intercept=True)
    data = ArrayAPIData(*_wrap(lib, X, y, w), np.arange(3), fit_intercept=True)
    loss_ref, g_ref = ref.loss_gradient(coef)
    loss, g = data.loss_gradient(coef)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol)
    np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())
    assert data.loss(coef) == pytest.approx(loss, rel=rtol)
    assert data.n_passes == 2
    assert data.weight_sum == pytest.approx(ref.weight_sum)


def test_gradient_matches_finite_differences():
    X, y, w, coef = _problem(np.float64, True, seed=1)
    data = ArrayAPIData(*_wrap("torch", X, y, w), np.arange(3), fit_intercept=False)
    coef = coef[:, :5]
    _, g = data.loss_gradient(coef)
    eps = 1e-6
    fd = np.zeros_like(coef)
    for idx in np.ndindex(coef.shape):
        e = np.zeros_like(coef)
        e[idx] = eps
        fd[idx] = (data.loss(coef + e) - data.loss(coef - e)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


def test_bfloat16_accumulates_in_float32():
    X, y, _, _coef = _problem(np.float32, False)
    data = ArrayAPIData(
        torch.asarray(X).to(torch.bfloat16),
        torch.asarray(y),
        None,
        np.arange(3),
        fit_intercept=True,
    )
    assert data.dtype == np.float32 and data.X.dtype == torch.float32
    # the reference: the same bfloat16-rounded rows in float64 NumPy
    X16 = torch.asarray(X).to(torch.bfloat16).to(torch.float64).numpy()
    ref = InMemoryData(X16, y, None, np.arange(3), fit_intercept=True)
    np.testing.assert_allclose(data.loss(_coef), ref.loss(_coef), rtol=1e-5)


def test_refuses_bad_input():
    X, y, _, _ = _problem(np.float64, False)
    with pytest.raises(ValueError, match="y_codes has shape"):
        ArrayAPIData(
            torch.asarray(X), torch.asarray(y[:-1]), None, np.arange(3), fit_intercept=True
        )
    with pytest.raises(TypeError, match="real floating"):
        ArrayAPIData(
            torch.asarray(y[:, None]), torch.asarray(y), None, np.arange(3), fit_intercept=True
        )


def _sklearn_objective(X, y, w, C):
    """C * sum_i s_i CE_i + ||W||^2 / 2 at scikit-learn's multinomial optimum."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    P = np.clip(clf.predict_proba(X), 1e-300, None)
    s = np.ones(len(y)) if w is None else w
    ce = -np.log(P[np.arange(len(y)), y])
    return C * np.sum(s * ce) + 0.5 * np.sum(clf.coef_**2)


@pytest.mark.parametrize("lib", ["torch", "strict", "strict-device1"])
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_through_registry_reaches_numpy_and_sklearn_objective(lib, weighted):
    from softmax.solvers import Problem, solve

    X, y, w, _ = _problem(np.float64, weighted, seed=2)
    C = 3.0
    ref = solve(
        Problem(InMemoryData(X, y, w, np.arange(3), fit_intercept=True), C=C),
        solver="lbfgs",
        tol=1e-10,
    )
    data = ArrayAPIData(*_wrap(lib, X, y, w), np.arange(3), fit_intercept=True)
    res = solve(Problem(data, C=C), solver="lbfgs", tol=1e-10)
    assert res.converged
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)
    assert res.objective == pytest.approx(_sklearn_objective(X, y, w, C), rel=1e-6)


def _curvature_reference(X, y, w, coef):
    """Curvature moments and class curvature straight from their definitions (float64)."""
    X = X.astype(np.float64)
    Z = X @ coef[:, :-1].T + coef[:, -1]
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    s = np.ones(len(y)) if w is None else w
    Wc = P * (1 - P) * s[:, None]
    A = sum(si * (np.diag(p) - np.outer(p, p)) for si, p in zip(s, P)) / s.sum()
    return Wc.sum(axis=0), Wc.T @ X, Wc.T @ X**2, A


@pytest.mark.parametrize("lib", ["torch", "strict", "strict-device1"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_preconditioner_questions_match_their_definitions(lib, weighted, dtype):
    from softmax.backends._base import Capability

    X, y, w, coef = _problem(dtype, weighted, seed=3)
    X = X * np.array([0.1, 1.0, 10.0, 3.0, 0.5], dtype=dtype) + dtype(2.0)
    data = ArrayAPIData(*_wrap(lib, X, y, w), np.arange(3), fit_intercept=True)
    data.block_rows = 16  # several blocks: the float64 sums across blocks are exercised
    assert data.supports(
        Capability.FEATURE_MOMENTS,
        Capability.CURVATURE_MOMENTS,
        Capability.CLASS_CURVATURE,
        Capability.FEATURE_COVARIANCE,
    )
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    s = np.ones(len(y)) if w is None else w
    X64 = X.astype(np.float64)
    mean, sq = data.feature_moments()
    np.testing.assert_allclose(mean, np.average(X64, axis=0, weights=s), rtol=rtol)
    np.testing.assert_allclose(sq, np.average(X64**2, axis=0, weights=s), rtol=rtol)
    mean2, cov = data.feature_covariance()
    np.testing.assert_allclose(mean2, mean)
    np.testing.assert_allclose(cov, np.cov(X64.T, aweights=s, bias=True), rtol=rtol, atol=1e-6)
    s0, s1, s2, A = _curvature_reference(X, y, w, coef)
    r0, r1, r2 = data.curvature_moments(coef)
    for got, want in [(r0, s0), (r1, s1), (r2, s2)]:
        np.testing.assert_allclose(got, want, rtol=rtol * 10)
    np.testing.assert_allclose(data.class_curvature(coef), A, rtol=rtol * 10, atol=1e-12)
    assert data.n_passes == 2  # curvature moments and (all rows) class curvature


def test_feature_covariance_strides_like_in_memory():
    """Wide rows: the covariance comes from the same even stride of rows as on the CPU."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((1000, 300)) * rng.uniform(0.5, 2.0, 300)
    y = rng.integers(0, 3, 1000)
    ref = InMemoryData(X, y, None, np.arange(3), fit_intercept=True)
    data = ArrayAPIData(torch.asarray(X), torch.asarray(y), None, np.arange(3), fit_intercept=True)
    mean, cov = data.feature_covariance()
    assert not np.allclose(cov, np.cov(X.T, bias=True), rtol=1e-3)  # a subsample...
    rows = X[::2]  # ...of every second row (budget 800 rows < 1000)
    centred = rows - X.mean(axis=0)
    np.testing.assert_allclose(cov, centred.T @ centred / len(rows), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, ref.feature_covariance()[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("covariance", [True, False])
def test_kronecker_and_diagonal_roads_match_in_memory(monkeypatch, covariance):
    """Rows big enough for the Kronecker preconditioner: the device road takes the CPU's steps.

    With ``covariance_max_features = 0`` the device declares no feature
    covariance and L-BFGS keeps the diagonal preconditioner; it still
    reaches the optimum.
    """
    from softmax.backends._base import Capability
    from softmax.solvers import Problem, solve
    from softmax.solvers.lbfgs import use_kronecker

    rng = np.random.default_rng(5)
    scales = rng.uniform(0.2, 5.0, 200)
    X = (rng.standard_normal((10_000, 200)) + 1.0) * scales
    logits = (X / scales) @ rng.standard_normal((200, 5)) * 0.2
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)  # a multinomial draw
    if not covariance:
        monkeypatch.setattr(ArrayAPIData, "covariance_max_features", 0)
    data = ArrayAPIData(torch.asarray(X), torch.asarray(y), None, np.arange(5), fit_intercept=True)
    assert (Capability.FEATURE_COVARIANCE in data.capabilities) is covariance
    assert use_kronecker(data) is covariance
    res = solve(Problem(data, C=1.0), solver="lbfgs", tol=1e-8)
    memory = InMemoryData(X, y, None, np.arange(5), fit_intercept=True)
    if covariance:  # the same Kronecker-preconditioned steps as on the CPU
        # (the device road has no class blocks: on the host "auto" without them)
        monkeypatch.setattr("softmax.solvers.lbfgs.class_blocks", lambda obj, coef: None)
        assert res.n_iter == solve(Problem(memory, C=1.0), solver="lbfgs", tol=1e-8).n_iter
        monkeypatch.undo()
    # the optimum: our float64 NumPy fit run to 1e-12 (checked against scikit-learn's
    # Newton fit in tests/test_regression.py; here that would take 10 s)
    f_star = solve(Problem(memory, C=1.0), solver="lbfgs", tol=1e-12).objective
    assert res.converged and -1e-12 <= (res.objective - f_star) / f_star <= 1e-7
