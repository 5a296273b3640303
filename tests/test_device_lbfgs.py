"""L-BFGS on the rows' device (softmax.solvers._device_lbfgs): torch CPU and array_api_strict.

``array_api_strict``'s ``device1`` refuses every implicit move to the host
(``np.asarray`` raises), so a fit that completes there moved nothing behind
our back; the transfers it does make go through one helper, which the
tests count.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from softmax.backends import array_api as backend
from softmax.backends.array_api import ArrayAPIData
from softmax.backends.memory import InMemoryData
from softmax.solvers import LBFGS, Problem, solve
from softmax.solvers import _device_lbfgs as dev

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")

LIBS = ["torch", "strict-device1"]


def _rows(n, p, k, seed=0):
    """Rows of a multinomial-logit model, feature scales 0.1..10 and means != 0."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-1, 1, p)
    X = (rng.standard_normal((n, p)) + 0.5) * scales
    W = rng.standard_normal((k, p)) * 3.0 / (scales * np.sqrt(2 * p))
    Z = X @ W.T
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    y = (P.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    w = rng.uniform(0.5, 2.0, n)
    return X, y, w


def _device_data(lib, X, y, w, k, fit_intercept):
    if lib == "torch":
        wrap = torch.asarray
    else:
        device = strict.Device("device1")

        def wrap(a):
            return strict.asarray(a, device=device)

    Xd = wrap(X)
    yd = wrap(y.astype(np.int64))
    wd = None if w is None else wrap(w.astype(X.dtype))
    return ArrayAPIData(Xd, yd, wd, np.arange(k), fit_intercept=fit_intercept)


def _objective(X, y, w, C, coef, fit_intercept):
    """scikit-learn's LogisticRegression objective in float64, from flat (K, p + 1) coef."""
    W, b = (coef[:, :-1], coef[:, -1]) if fit_intercept else (coef, 0.0)
    Z = X @ W.T + b
    Z = Z - Z.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return C * np.sum(w * -logp[np.arange(len(y)), y]) + 0.5 * np.sum(W**2)


CASES = {
    # name: (fit_intercept, weighted, C, preconditioner)
    "weighted": (True, True, 1.0, "auto"),
    "no-intercept": (False, False, 0.5, "auto"),
    "kronecker": (True, False, 2.0, "kronecker"),
    "kronecker-no-intercept": (False, True, 1.0, "kronecker"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lib", LIBS)
def test_device_fit_reaches_the_sklearn_optimum_in_the_cpu_iterations(lib, dtype, case):
    fit_intercept, weighted, C, preconditioner = CASES[case]
    X, y, w = _rows(3000, 30, 4, seed=1)
    X = X.astype(dtype)
    X64 = X.astype(np.float64)  # what the rows hold
    w = w if weighted else None
    s = np.ones(len(y)) if w is None else w
    skl = LogisticRegression(
        C=C, solver="newton-cholesky", tol=1e-12, max_iter=200, fit_intercept=fit_intercept
    ).fit(X64, y, sample_weight=s)
    ref = skl.coef_ if not fit_intercept else np.hstack([skl.coef_, skl.intercept_[:, None]])
    f_star = _objective(X64, y, s, C, ref, fit_intercept)
    solver = LBFGS(preconditioner=preconditioner)
    data = _device_data(lib, X, y, w, 4, fit_intercept)
    assert dev.applies(Problem(data, C=C))
    res = solve(Problem(data, C=C), solver=solver, tol=1e-7)
    cpu = solve(
        Problem(InMemoryData(X, y, w, np.arange(4), fit_intercept=fit_intercept), C=C),
        solver=solver,
        tol=1e-7,
    )
    assert res.converged, res.message
    f = _objective(X64, y, s, C, res.coef, fit_intercept)
    assert -1e-9 <= (f - f_star) / f_star <= 1e-6
    assert res.objective == pytest.approx(f, rel=1e-6)  # what it reports is what it reached
    assert abs(res.n_iter - cpu.n_iter) <= 2, (res.n_iter, cpu.n_iter)


def _count_transfers(monkeypatch):
    sizes = []
    to_numpy = backend._to_numpy

    def counted(xp, a, dtype=np.float64):
        out = to_numpy(xp, a, dtype)
        sizes.append(int(out.size))
        return out

    monkeypatch.setattr(backend, "_to_numpy", counted)
    return sizes


@pytest.mark.parametrize("preconditioner", ["auto", "kronecker"])
@pytest.mark.parametrize("lib", LIBS)
def test_only_scalars_cross_per_iteration(monkeypatch, lib, preconditioner):
    """Every transfer during the fit is of at most four numbers, except the final coef.

    The preconditioner is built on the device too: the host's preconditioner
    builders and SciPy's eigensolver are switched off for the fit
    (``array_api_strict`` itself runs its ``linalg`` on NumPy, so NumPy's stays on).
    """
    import scipy.linalg

    from softmax.solvers import _preconditioners, lbfgs

    X, y, w = _rows(2000, 20, 3, seed=2)
    data = _device_data(lib, X, y, w, 3, True)
    sizes = _count_transfers(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("a host eigendecomposition during a device fit")

    monkeypatch.setattr(scipy.linalg, "eigh", refuse)
    for module in (_preconditioners, lbfgs):
        monkeypatch.setattr(module, "kronecker", refuse)
        monkeypatch.setattr(module, "diagonal", refuse)
    res = solve(Problem(data, C=1.0), solver=LBFGS(preconditioner=preconditioner), tol=1e-8)
    assert res.converged and res.n_iter >= 10
    big = [n for n in sizes if n > 4]
    assert big == [data.coef_shape[0] * data.coef_shape[1]]  # the coefficients, once
    # per iteration: the direction's slope, the pair's curvature, and one per trial step
    assert len(sizes) - 1 <= 2 * res.n_iter + data.n_passes + 4
    # the same fit on the NumPy road
    monkeypatch.undo()
    cpu = solve(
        Problem(InMemoryData(X, y, w, np.arange(3), fit_intercept=True), C=1.0),
        solver=LBFGS(preconditioner=preconditioner),
        tol=1e-8,
    )
    np.testing.assert_allclose(res.coef, cpu.coef, rtol=1e-6, atol=1e-8)


def _two_loop(S, Y, g, gamma, M):
    """Nocedal & Wright, Algorithm 7.4, oldest pair first in S and Y."""
    q = g.copy()
    alpha = np.zeros(len(S))
    for i in reversed(range(len(S))):
        alpha[i] = (S[i] @ q) / (S[i] @ Y[i])
        q -= alpha[i] * Y[i]
    r = gamma * M(q)
    for i in range(len(S)):
        beta = (Y[i] @ r) / (S[i] @ Y[i])
        r += (alpha[i] - beta) * S[i]
    return -r


@pytest.mark.parametrize("lib", LIBS)
def test_gram_two_loop_matches_the_textbook_recursion(lib):
    """DeviceMemory's Gram-form recursion, with the history rolling past m pairs."""
    rng = np.random.default_rng(3)
    n, m = 40, 5
    X = _rows(50, n - 1, 1, seed=3)[0]
    data = _device_data(lib, X, np.zeros(50, dtype=int), None, 1, True)
    space = dev._Space(data)
    xp = space.xp
    scale = rng.uniform(0.5, 2.0, n)

    def M(v):
        return v * (space.asarray(scale) if not isinstance(v, np.ndarray) else scale)

    mem = dev.DeviceMemory(space, m, M)
    A = rng.standard_normal((n, n))
    H = A @ A.T + n * np.eye(n)  # positive definite: every pair s.y > 0
    pairs = []
    for _ in range(8):
        s = rng.standard_normal(n)
        pairs.append((s, H @ s))
        assert mem.push(space.asarray(s), space.asarray(H @ s))
        g = rng.standard_normal(n)
        S = np.array([p[0] for p in pairs[-m:]])
        Y = np.array([p[1] for p in pairs[-m:]])
        y_new = pairs[-1][1]
        gamma = (pairs[-1][0] @ y_new) / (y_new @ M(y_new))
        want = _two_loop(S, Y, g, gamma, M)
        got = backend._to_numpy(xp, mem.direction(space.asarray(g)))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert mem.count == m
    assert not mem.push(space.asarray(np.ones(n)), space.asarray(-np.ones(n)))  # s.y < 0


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("lib", LIBS)
def test_device_kronecker_inverts_its_kronecker_model(lib, fit_intercept):
    """M g = (A (x) S + l2 I)^-1 g, dense in NumPy, with A the class curvature at coef.

    Without an intercept S is the second moment E[x x^T]; with one, in the
    variables (W, b' = b + W mu), S the centred covariance and the intercept
    block A itself (mu the feature mean).
    """
    from softmax.solvers._base import Objective

    rng = np.random.default_rng(4)
    n, p, K, C = 400, 6, 3, 0.7
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p) + 0.3
    y = rng.integers(0, K, n)
    data = _device_data(lib, X, y, None, K, fit_intercept)
    obj = Objective(Problem(data, C=C))
    q = p + fit_intercept
    coef = rng.standard_normal((K, q)) * 0.3
    dobj = dev._DeviceObjective(obj, dev._Space(data))
    M = dev.kronecker(dobj, dobj.space.asarray(coef))
    # the dense model, from its definitions
    Z = X @ coef[:, :p].T + (coef[:, p] if fit_intercept else 0.0)
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    A = (np.diag(P.sum(axis=0)) - P.T @ P) / n
    mu = X.mean(axis=0)
    S = np.cov(X.T, bias=True) if fit_intercept else X.T @ X / n
    l2 = 1.0 / (C * n)
    H = np.kron(A, S) + l2 * np.eye(K * p)  # on the weights (in (W, b') with an intercept)
    g = rng.standard_normal((K, q))
    g -= g.mean(axis=0)  # the solvers' subspace: class sums zero
    got = backend._to_numpy(dobj.space.xp, M(dobj.space.asarray(g.ravel()))).reshape(K, q)
    if not fit_intercept:
        want = np.linalg.solve(H, g.ravel()).reshape(K, p)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
        return
    # T^T g: the gradient in (W, b'); the weights' block solves H, the intercepts' A
    gb = g[:, p]
    gw = g[:, :p] - np.outer(gb, mu)
    w_ = np.linalg.solve(H, gw.ravel()).reshape(K, p)
    b_ = np.linalg.lstsq(A, gb, rcond=None)[0]  # A is singular along 1: gb sums to zero
    np.testing.assert_allclose(got[:, :p], w_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got[:, p], b_ - w_ @ mu, rtol=1e-8, atol=1e-10)


def test_reference_class_keeps_the_numpy_road():
    """A fixed row is handled by the NumPy loop; the device road is not taken."""
    X, y, _ = _rows(300, 5, 3, seed=5)
    data = _device_data("torch", X, y, None, 3, True)
    problem = Problem(data, C=1.0, reference=0)
    assert not dev.applies(problem)
    res = solve(problem, solver="lbfgs", tol=1e-10)
    cpu = solve(
        Problem(InMemoryData(X, y, None, np.arange(3), fit_intercept=True), C=1.0, reference=0),
        solver="lbfgs",
        tol=1e-10,
    )
    np.testing.assert_allclose(res.coef, cpu.coef, rtol=1e-6, atol=1e-9)
    assert np.all(res.coef[0] == 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lib", LIBS)
def test_device_fit_without_penalty_reaches_sklearn(lib, dtype):
    """C = inf: no L2 part (no Kronecker factor), the class-sum-zero representative."""
    X, y, _ = _rows(2000, 10, 3, seed=6)
    X = X.astype(dtype)
    X64 = X.astype(np.float64)
    skl = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=200)
    skl.fit(X64, y)
    s = np.ones(len(y))
    ref = np.hstack([skl.coef_, skl.intercept_[:, None]])
    data = _device_data(lib, X, y, None, 3, True)
    res = solve(Problem(data, C=np.inf), solver="lbfgs", tol=1e-8)
    memory = InMemoryData(X, y, None, np.arange(3), fit_intercept=True)
    cpu = solve(Problem(memory, C=np.inf), solver="lbfgs", tol=1e-8)

    def data_term(coef):
        return _objective(X64, y, s, 1.0, coef, True) - 0.5 * np.sum(coef[:, :-1] ** 2)

    f, f_star = data_term(res.coef), data_term(ref)
    assert res.converged and -1e-9 <= (f - f_star) / f_star <= 1e-6
    np.testing.assert_allclose(res.coef.sum(axis=0), 0.0, atol=1e-10)
    assert abs(res.n_iter - cpu.n_iter) <= 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lib", LIBS)
def test_device_fit_with_label_smoothing_reaches_scipy(lib, dtype):
    """Smoothed targets: the optimum of the objective written here, minimised by SciPy."""
    import scipy.optimize

    X, y, w = _rows(1500, 8, 3, seed=7)
    X = X.astype(dtype)
    X64 = X.astype(np.float64)
    eps, C, K, p = 0.2, 0.5, 3, 8
    T = (1 - eps) * np.eye(K)[y] + eps / K

    def fun(v):
        W, b = v[: K * p].reshape(K, p), v[K * p :]
        Z = X64 @ W.T + b
        Z = Z - Z.max(axis=1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        R = (np.exp(logp) - T) * w[:, None]
        f = C * np.sum(w * -(T * logp).sum(axis=1)) + 0.5 * np.sum(W**2)
        return f, np.concatenate([(C * R.T @ X64 + W).ravel(), C * R.sum(axis=0)])

    options = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000}
    ref = scipy.optimize.minimize(
        fun, np.zeros(K * (p + 1)), jac=True, method="L-BFGS-B", options=options
    )
    if lib == "torch":
        Xd, yd, wd = torch.asarray(X), torch.asarray(y), torch.asarray(w.astype(dtype))
    else:
        d1 = strict.Device("device1")
        Xd, yd, wd = (strict.asarray(a, device=d1) for a in (X, y, w.astype(dtype)))
    data = ArrayAPIData(Xd, yd, wd, np.arange(K), fit_intercept=True, label_smoothing=eps)
    res = solve(Problem(data, C=C), solver="lbfgs", tol=1e-8)
    coef = res.coef
    f = fun(np.concatenate([coef[:, :p].ravel(), coef[:, p]]))[0]
    assert res.converged and -1e-9 <= (f - ref.fun) / ref.fun <= 1e-6


def test_estimator_fit_on_device1_sends_only_scalars(monkeypatch):
    """SoftmaxRegression under dispatch on device1: the NumPy fit's iterations, scalars only.

    Beyond the iteration, what crosses: the weight sum when the rows are
    built, and the coefficients once at the end (published back to device1).
    """
    import sklearn

    from softmax import SoftmaxRegression

    X, y, w = _rows(4000, 12, 4, seed=8)
    X = X.astype(np.float32)
    d1 = strict.Device("device1")
    Xd, yd, wd = (strict.asarray(a, device=d1) for a in (X, y, w.astype(np.float32)))
    cpu = SoftmaxRegression(C=3.0, solver="lbfgs", tol=1e-8).fit(X, y, sample_weight=w)
    sizes = _count_transfers(monkeypatch)
    with sklearn.config_context(array_api_dispatch=True):
        est = SoftmaxRegression(C=3.0, tol=1e-8).fit(Xd, yd, sample_weight=wd)
    assert est.coef_.device == d1
    assert [n for n in sizes if n > 4] == [4 * 13]
    assert abs(est.n_iter_ - cpu.n_iter_) <= 2
    skl = LogisticRegression(C=3.0, solver="newton-cholesky", tol=1e-12, max_iter=200)
    skl.fit(X.astype(np.float64), y, sample_weight=w)
    coef = np.asarray(est.coef_.to_device(strict.Device("CPU_DEVICE")), dtype=np.float64)
    inter = np.asarray(est.intercept_.to_device(strict.Device("CPU_DEVICE")), dtype=np.float64)
    f = _objective(X.astype(np.float64), y, w, 3.0, np.hstack([coef, inter[:, None]]), True)
    ref = np.hstack([skl.coef_, skl.intercept_[:, None]])
    f_star = _objective(X.astype(np.float64), y, w, 3.0, ref, True)
    assert -1e-9 <= (f - f_star) / f_star <= 1e-6


OPTIONS = {
    "unpreconditioned": {"precondition": False},
    "diagonal-never-refreshed": {"preconditioner": "diagonal", "precondition_every": 0},
    "history-3": {"history_size": 3},
}


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lib", LIBS)
def test_device_fit_honours_the_solver_options(lib, dtype, options):
    """No preconditioner (the unit-length first step), a fixed one, a history rolling past m."""
    X, y, w = _rows(1000, 10, 3, seed=1)
    X = X.astype(dtype)
    X64 = X.astype(np.float64)
    skl = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=200)
    skl.fit(X64, y, sample_weight=w)
    f_star = _objective(X64, y, w, 1.0, np.hstack([skl.coef_, skl.intercept_[:, None]]), True)
    solver = LBFGS(**OPTIONS[options])
    res = solve(Problem(_device_data(lib, X, y, w, 3, True)), solver=solver, tol=1e-8)
    memory = InMemoryData(X, y, w, np.arange(3), fit_intercept=True)
    cpu = solve(Problem(memory), solver=solver, tol=1e-8)
    f = _objective(X64, y, w, 1.0, res.coef, True)
    assert res.converged and -1e-9 <= (f - f_star) / f_star <= 1e-6
    # float32 rounding differs between the roads: over ~120 unpreconditioned
    # iterations it shifts the count by a few
    assert abs(res.n_iter - cpu.n_iter) <= max(2, 0.05 * cpu.n_iter)


@pytest.mark.parametrize("lib", LIBS)
def test_no_implicit_scalar_reads_of_device_values(monkeypatch, lib):
    """``float()``/``bool()``/``int()`` of a device array (a hidden sync on a GPU) never happens.

    ``device1`` refuses ``np.asarray`` but lets Python read 0-d arrays; here
    that is refused too, during the fit, on both libraries.
    """
    X, y, w = _rows(1500, 12, 3, seed=9)
    data = _device_data(lib, X, y, w, 3, True)
    cls = type(data.X)

    def refuse(self, *args):
        raise AssertionError("an implicit read of a device value")

    for name in ("__float__", "__bool__", "__int__", "__index__", "item"):
        if hasattr(cls, name):
            monkeypatch.setattr(cls, name, refuse)
    res = solve(Problem(data, C=1.0), solver=LBFGS(preconditioner="kronecker"), tol=1e-8)
    monkeypatch.undo()
    assert res.converged and res.n_iter > 5


@pytest.mark.parametrize("preconditioner", ["auto", "kronecker"])
def test_device_fit_on_jax_arrays(preconditioner):
    """JAX arrays cannot be written in place: every update of the device loop is functional.

    Without x64 JAX has no float64, so iterate, gradients and block sums are
    float32 there; the fit still reaches the float64 optimum to 1e-6.
    """
    jnp = pytest.importorskip("jax.numpy")
    X, y, w = _rows(3000, 20, 4, seed=10)
    X = X.astype(np.float32)
    X64 = X.astype(np.float64)
    skl = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=200)
    skl.fit(X64, y, sample_weight=w)
    f_star = _objective(X64, y, w, 1.0, np.hstack([skl.coef_, skl.intercept_[:, None]]), True)
    wd = jnp.asarray(w.astype(np.float32))
    data = ArrayAPIData(jnp.asarray(X), jnp.asarray(y), wd, np.arange(4), fit_intercept=True)
    assert dev.applies(Problem(data))
    res = solve(Problem(data), solver=LBFGS(preconditioner=preconditioner), tol=1e-7)
    memory = InMemoryData(X, y, w, np.arange(4), fit_intercept=True)
    cpu = solve(Problem(memory), solver=LBFGS(preconditioner=preconditioner), tol=1e-7)
    f = _objective(X64, y, w, 1.0, res.coef, True)
    assert res.converged and -1e-9 <= (f - f_star) / f_star <= 1e-6
    assert abs(res.n_iter - cpu.n_iter) <= 2
