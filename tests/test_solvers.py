"""Tests of softmax.solvers: every solver against scikit-learn and each other."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from softmax.backends._base import Capability, RowData
from softmax.backends.memory import InMemoryData
from softmax.solvers import SOLVERS, Problem, SolverResult, resolve_solver
from softmax.solvers import solve as solve_problem
from softmax.solvers._base import Objective
from softmax.solvers._preconditioners import kronecker

L2_SOLVERS = ["lbfgs", "newton-cg", "newton-cholesky", "proximal"]


def objective(coef, X, y, w, C, l1_ratio, fit_intercept=True):
    """scikit-learn's objective from its definition (scipy.special), not from the package."""
    coef = np.asarray(coef, dtype=np.float64)
    W = coef[:, :-1] if fit_intercept else coef
    logits = np.asarray(X @ W.T, dtype=np.float64) + (coef[:, -1] if fit_intercept else 0.0)
    codes = np.unique(y, return_inverse=True)[1]
    ce = -log_softmax(logits, axis=1)[np.arange(len(codes)), codes]
    loss = ce.sum() if w is None else np.dot(w, ce)
    return C * loss + 0.5 * (1 - l1_ratio) * np.sum(W**2) + l1_ratio * np.abs(W).sum()


def sk_coef(model):
    return np.column_stack([model.coef_, model.intercept_])


def predict(coef, X):
    return np.argmax(X @ coef[:, :-1].T + coef[:, -1], axis=1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(StandardScaler().fit_transform(X)), y


@pytest.fixture(scope="module")
def sklearn_refs(digits):
    X, y = digits
    refs = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for C in (0.01, 1.0, 100.0):
            m = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(X, y)
            refs[C] = sk_coef(m)
    return refs


def data_of(X, y, w=None, fit_intercept=True):
    return InMemoryData(X, y, w, np.unique(y), fit_intercept=fit_intercept)


def solve(data, *, solver="auto", C=1.0, l1_ratio=0.0, coef0=None, verbose=0, **kw):
    """One fit through the public road: a Problem, a (configured) solver, solve()."""
    stopping = {k: kw.pop(k) for k in ("tol", "max_iter", "callback") if k in kw}
    if kw:  # solver options
        solver = SOLVERS[solver].with_options(**kw)
    problem = Problem(data, C=C, l1_ratio=l1_ratio, verbose=verbose)
    return solve_problem(problem, coef0, solver=solver, **stopping)


def objective_of(data, C, l1_ratio=0.0):
    return Objective(Problem(data, C=C, l1_ratio=l1_ratio))


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("solver", L2_SOLVERS)
def test_l2_solvers_reach_sklearn_optimum_on_digits(digits, sklearn_refs, solver, C):
    X, y = digits
    res = solve(
        data_of(X, y), solver=solver, C=C, l1_ratio=0.0, coef0=None, tol=1e-7, max_iter=1000
    )
    assert isinstance(res, SolverResult)
    assert res.converged, res.message
    f_ours = objective(res.coef, X, y, None, C, 0.0)
    f_sk = objective(sklearn_refs[C], X, y, None, C, 0.0)
    assert res.objective == pytest.approx(f_ours, rel=1e-12)
    assert (f_ours - f_sk) / f_sk <= 1e-6
    agree = np.mean(predict(res.coef, X) == predict(sklearn_refs[C], X))
    assert agree >= 0.999
    assert res.n_passes >= res.n_iter > 0
    assert len(res.history) == res.n_iter


@pytest.mark.slow
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_defaults_reach_the_optimum_on_raw_digits(C):
    # unscaled pixels (0..16) with an intercept: badly conditioned
    X, y = load_digits(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    # The optimum from scikit-learn's exact Newton, with a tolerance far below 1e-6.
    exact = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=500).fit(X, y)
    assert exact.n_iter_[0] < 500
    f_exact = objective(sk_coef(exact), X, y, None, C, 0.0)
    for solver in ("auto", "lbfgs"):
        res = solve(data_of(X, y), solver=solver, C=C)
        assert res.converged, (solver, res.message)
        assert res.objective == pytest.approx(objective(res.coef, X, y, None, C, 0.0), rel=1e-12)
        assert (res.objective - f_exact) / f_exact <= 1e-6, solver


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_float32_rows_reach_the_float64_optimum(digits, sklearn_refs, C):
    X, y = digits
    X32 = X.astype(np.float32)
    f_sk = objective(sklearn_refs[C], X, y, None, C, 0.0)
    for solver in ("lbfgs", "newton-cholesky"):
        res = solve(data_of(X32, y), solver=solver, C=C)
        f_ours = objective(res.coef, X, y, None, C, 0.0)  # evaluated in float64
        assert (f_ours - f_sk) / f_sk <= 1e-6, solver


def test_sparse_rows_give_the_dense_optimum(digits):
    X, y = digits
    X = np.where(np.abs(X) > 0.5, X, 0.0)[:600]
    y = y[:600]
    dense = solve(data_of(X, y), solver="newton-cholesky", C=1.0, tol=1e-12)
    for solver in ("lbfgs", "newton-cg", "proximal"):
        res = solve(data_of(sp.csr_matrix(X), y), solver=solver, C=1.0)
        assert (res.objective - dense.objective) / dense.objective <= 1e-6, solver


def test_sample_weights_equal_row_repetition():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 5))
    y = rng.integers(0, 3, 150)
    reps = rng.integers(0, 3, 150)
    a = solve(data_of(X, y, reps.astype(float)), solver="newton-cholesky", C=0.5, tol=1e-12)
    b = solve(
        data_of(np.repeat(X, reps, axis=0), np.repeat(y, reps)),
        solver="newton-cholesky",
        C=0.5,
        tol=1e-12,
    )
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-7)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_no_intercept_matches_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = rng.integers(0, 3, 200)
    with threadpool_limits(1):
        sk = LogisticRegression(C=2.0, fit_intercept=False, tol=1e-12, max_iter=10000).fit(X, y)
    for solver in L2_SOLVERS:
        res = solve(data_of(X, y, fit_intercept=False), solver=solver, C=2.0)
        np.testing.assert_allclose(res.coef, sk.coef_, atol=2e-4)


@pytest.mark.parametrize("C, l1_ratio", [(0.5, 1.0), (0.2, 0.5), (5.0, 0.3)])
def test_l1_and_elastic_net_match_sklearn_saga(C, l1_ratio):
    rng = np.random.default_rng(2)
    n, p = 200, 8
    X = rng.normal(size=(n, p))
    W = rng.normal(size=(3, p)) * (rng.random((3, p)) < 0.5)
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, 3)), axis=1)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(
            C=C, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=100000
        ).fit(X, y)
    res = solve(data_of(X, y), solver="auto", C=C, l1_ratio=l1_ratio)
    assert res.converged, res.message
    f_sk = objective(sk_coef(sk), X, y, None, C, l1_ratio)
    assert res.objective == pytest.approx(objective(res.coef, X, y, None, C, l1_ratio), rel=1e-12)
    assert (res.objective - f_sk) / f_sk <= 1e-6
    # the same weights are exactly zero
    np.testing.assert_array_equal(res.coef[:, :-1] == 0, sk.coef_ == 0)


def test_two_classes_relate_to_binary_logistic_regression_with_doubled_C():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = (X @ [1.0, -2.0, 0.5, 0.0] + rng.logistic(size=300) > 0).astype(int)
    C = 0.3
    res = solve(data_of(X, y), solver="newton-cholesky", C=C, tol=1e-14)
    with threadpool_limits(1):
        binary = LogisticRegression(C=2 * C, tol=1e-12, max_iter=10000).fit(X, y)
    # theta_1 - theta_0 is the binary coefficient (and intercept), with C doubled
    np.testing.assert_allclose(res.coef[1, :-1] - res.coef[0, :-1], binary.coef_[0], atol=1e-6)
    np.testing.assert_allclose(res.coef[1, -1] - res.coef[0, -1], binary.intercept_[0], atol=1e-6)
    # and the symmetric solution splits it evenly
    np.testing.assert_allclose(res.coef[0, :-1], -res.coef[1, :-1], atol=1e-8)


def test_solvers_agree_with_each_other_and_class_weights_as_sample_weights():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 6))
    y = rng.integers(0, 4, 300)
    w = np.array([1.0, 2.0, 0.5, 3.0])[y]
    results = {s: solve(data_of(X, y, w), solver=s, C=3.0, tol=1e-10) for s in L2_SOLVERS}
    ref = results["newton-cholesky"]
    for s, r in results.items():
        np.testing.assert_allclose(r.coef, ref.coef, atol=1e-4, err_msg=s)
    with threadpool_limits(1):
        sk = LogisticRegression(
            C=3.0, class_weight={0: 1.0, 1: 2.0, 2: 0.5, 3: 3.0}, tol=1e-12, max_iter=10000
        ).fit(X, y)
    np.testing.assert_allclose(ref.coef, sk_coef(sk), atol=1e-4)


def test_callback_history_verbose_and_warm_start(capsys):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(100, 3))
    y = rng.integers(0, 3, 100)
    seen = []
    res = solve(
        data_of(X, y), solver="lbfgs", C=1.0, verbose=1, callback=lambda i, f: seen.append((i, f))
    )
    assert [i for i, _ in seen] == list(range(1, res.n_iter + 1))
    assert [f for _, f in seen] == res.history
    assert res.history[-1] == res.objective
    assert "[lbfgs] iter" in capsys.readouterr().out
    # starting at the solution, nothing is left to do
    again = solve(data_of(X, y), solver="lbfgs", C=1.0, coef0=res.coef)
    assert again.converged and again.n_iter <= 2
    assert again.objective <= res.objective * (1 + 1e-9)


def test_max_iter_zero_reports_not_converged():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 2, 50)
    for solver in L2_SOLVERS:
        res = solve(data_of(X, y), solver=solver, C=1.0, max_iter=0)
        assert not res.converged and res.n_iter == 0
        assert "max_iter" in res.message


class _GradientOnly(RowData):
    """A backend that only answers loss and gradient (like a minimal stream)."""

    def __init__(self, inner):
        self.inner = inner
        for a in ("classes", "n_samples", "n_features", "fit_intercept", "dtype", "weight_sum"):
            setattr(self, a, getattr(inner, a))
        self.n_passes = 0

    def loss_gradient(self, coef):
        self.n_passes += 1
        return self.inner.loss_gradient(coef)


def test_resolve_solver():
    rng = np.random.default_rng(7)
    small = data_of(rng.normal(size=(100, 3)), rng.integers(0, 3, 100))

    def resolved(name, data, l1_ratio=0.0):
        return resolve_solver(name, Problem(data, l1_ratio=l1_ratio)).name

    assert resolved("auto", small) == "newton-cholesky"
    assert resolved("auto", small, 0.5) == "proximal"
    wide = data_of(rng.normal(size=(100, 300)), rng.integers(0, 3, 100))
    assert resolved("auto", wide) == "lbfgs"
    sparse = data_of(sp.csr_matrix(rng.normal(size=(100, 3))), rng.integers(0, 3, 100))
    assert sparse.is_sparse and Capability.HESSIAN in sparse.capabilities
    assert resolved("auto", sparse) == "lbfgs"  # declared sparse: no dense Hessian
    assert resolved("auto", _GradientOnly(small)) == "lbfgs"
    for name in ("lbfgs", "newton-cg", "newton-cholesky"):
        with pytest.raises(ValueError, match="proximal"):
            resolved(name, small, 0.5)
    with pytest.raises(ValueError, match="unknown solver"):
        resolved("bogus", small)
    with pytest.raises(ValueError, match="lbfgs"):
        resolved("newton-cholesky", _GradientOnly(small))
    assert set(SOLVERS) >= {"lbfgs", "newton-cg", "newton-cholesky", "proximal", "sgd"}
    # a configured instance is used as it is, after the same checks
    custom = SOLVERS["lbfgs"].with_options(history_size=7)
    assert resolve_solver(custom, Problem(small)) is custom
    # gradient-only backends still fit with lbfgs and proximal
    res = solve(_GradientOnly(small), solver="auto", C=1.0)
    assert res.converged


def test_every_solver_declares_what_it_needs_and_what_tol_controls():
    """The registry's contract: needs are capabilities, tol_controls says what stops it."""
    for name, solver in SOLVERS.items():
        assert solver.name == name
        assert solver.needs <= set(Capability)
        assert len(solver.tol_controls) > 20
    assert Capability.HESSIAN in SOLVERS["newton-cholesky"].needs
    assert Capability.HESSP in SOLVERS["newton-cg"].needs
    assert Capability.MINIBATCHES in SOLVERS["sgd"].needs
    assert SOLVERS["proximal"].supports_l1 and not SOLVERS["lbfgs"].supports_l1


def test_bad_arguments():
    rng = np.random.default_rng(8)
    data = data_of(rng.normal(size=(30, 2)), rng.integers(0, 2, 30))
    with pytest.raises(ValueError, match="C must be"):
        solve(data, solver="lbfgs", C=0.0)
    with pytest.raises(ValueError, match="l1_ratio"):
        solve(data, solver="lbfgs", C=1.0, l1_ratio=1.5)
    with pytest.raises(ValueError, match="coef0"):
        solve(data, solver="lbfgs", C=1.0, coef0=np.zeros((5, 5)))
    with pytest.raises(TypeError, match="unknown option"):
        solve(data, solver="lbfgs", C=1.0, bogus=1)
    with pytest.raises(ValueError, match="tol"):
        solve(data, solver="lbfgs", C=1.0, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        solve(data, solver="lbfgs", C=1.0, max_iter=-1)


@pytest.mark.parametrize("solver", L2_SOLVERS)
def test_warm_start_at_the_solution_stops_at_once(solver):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(120, 4))
    y = rng.integers(0, 3, 120)
    l1_ratio = 0.5 if solver == "proximal" else 0.0
    first = solve(data_of(X, y), solver=solver, C=1.0, l1_ratio=l1_ratio, tol=1e-12)
    again = solve(data_of(X, y), solver=solver, C=1.0, l1_ratio=l1_ratio, coef0=first.coef)
    assert again.converged, again.message
    assert again.n_iter <= 2
    assert again.objective <= first.objective * (1 + 1e-9)


def test_two_classes_with_l1_match_binary_l1_with_the_same_C():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 4))
    y = (X @ [1.5, 0.0, -1.0, 0.0] + rng.logistic(size=200) > 0).astype(int)
    C = 0.2
    res = solve(data_of(X, y), solver="proximal", C=C, l1_ratio=1.0, tol=1e-12)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binary = LogisticRegression(
            C=C, l1_ratio=1.0, solver="saga", tol=1e-12, max_iter=100000
        ).fit(X, y)
    z = X @ binary.coef_[0] + binary.intercept_[0]
    f_binary = C * np.sum(np.logaddexp(0, np.where(y == 1, -z, z))) + np.abs(binary.coef_).sum()
    # |theta_0| + |theta_1| >= |theta_1 - theta_0|: the L1 norm maps with no factor
    assert res.objective == pytest.approx(f_binary, rel=1e-6)
    np.testing.assert_allclose(res.coef[1, :-1] - res.coef[0, :-1], binary.coef_[0], atol=1e-4)


# -- the Kronecker-factored preconditioner (L-BFGS) -----------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_kronecker_preconditioner_inverts_the_hessian_at_equal_probabilities(fit_intercept):
    """At coef = 0 every row has p = 1/K, so the Hessian *is* A (x) sum s x~ x~^T.

    The preconditioner must then be its exact inverse (on the directions
    where the objective is not flat); the Hessian here is the explicit one
    built row by row by ``smooth_hessian``, not the factored form.
    """
    rng = np.random.default_rng(3)
    n, p, K = 60, 5, 4
    X = rng.normal(size=(n, p)) * np.array([1.0, 30.0, 0.2, 5.0, 1.0]) + 3.0
    X[:, 1] += 0.9 * X[:, 3]  # correlated features: a diagonal M cannot do this
    y = rng.integers(0, K, size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    obj = objective_of(data_of(X, y, w, fit_intercept=fit_intercept), C=3.0)
    coef = np.zeros(obj.shape)
    _, _, H = obj.smooth_hessian(coef)
    for M in (kronecker(obj), kronecker(obj, coef)):
        V = rng.normal(size=obj.shape)
        if fit_intercept:
            V[:, -1] -= V[:, -1].mean()  # H is singular along equal intercept shifts
        MHV = M(H @ V.ravel()).reshape(obj.shape)
        if fit_intercept:
            MHV[:, -1] -= MHV[:, -1].mean()  # modulo the flat direction
        np.testing.assert_allclose(MHV, V, rtol=1e-9, atol=1e-9)


def test_kronecker_preconditioner_matches_an_explicit_inverse_away_from_zero():
    """At any coef, M is (A (x) Sigma + l2 I)^-1 in centred variables (built with np.kron)."""
    from softmax.losses import softmax_rows_

    rng = np.random.default_rng(4)
    n, p, K = 40, 3, 3
    X = rng.normal(size=(n, p)) + np.array([0.0, 2.0, -1.0])
    y = rng.integers(0, K, size=n)
    obj = objective_of(data_of(X, y), C=2.0)
    coef = rng.normal(size=obj.shape)
    P = X @ coef[:, :p].T + coef[:, p]
    softmax_rows_(P)
    A = (np.diag(P.sum(0)) - P.T @ P) / n  # mean of diag(p_i) - p_i p_i^T
    mu = X.mean(0)
    Sigma = np.cov(X.T, bias=True)
    l2 = 1.0 / (2.0 * n)  # the L2 weight of f = F / (C n)
    q = p + 1
    H = np.zeros((K * q, K * q))  # (W, b') variables
    iw = [k * q + j for k in range(K) for j in range(p)]
    ib = [k * q + p for k in range(K)]
    H[np.ix_(iw, iw)] = np.kron(A, Sigma) + l2 * np.eye(K * p)
    H[np.ix_(ib, ib)] = A + np.ones((K, K))  # flat along equal shifts: any scale
    T = np.eye(K * q)  # (W, b') -> (W, b = b' - W mu)
    for k in range(K):
        T[k * q + p, k * q : k * q + p] = -mu
    M_ref = T @ np.linalg.inv(H) @ T.T
    M = kronecker(obj, coef)
    G = rng.normal(size=obj.shape)
    G[:, -1] -= G[:, -1].mean()  # gradients have no component along equal shifts
    np.testing.assert_allclose(M(G.ravel()), M_ref @ G.ravel(), rtol=1e-10, atol=1e-12)
    # the quadratic form L-BFGS scales with, from half the products
    g = G.ravel()
    np.testing.assert_allclose(M.quad(g), g @ M_ref @ g, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_with_kronecker_preconditioner_reaches_sklearn_optimum(dtype):
    # raw pixels (0..16), correlated and unscaled: where the Kronecker factors help
    X, y = load_digits(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X, y)
    f_sk = objective(sk_coef(sk), X, y, None, 1.0, 0.0)
    kron = solve(data_of(X.astype(dtype), y), solver="lbfgs", C=1.0, preconditioner="kronecker")
    assert kron.converged, kron.message
    f_ours = objective(kron.coef, X, y, None, 1.0, 0.0)  # evaluated in float64
    assert (f_ours - f_sk) / f_sk <= 1e-6
    assert np.mean(predict(kron.coef, X) == predict(sk_coef(sk), X)) >= 0.999


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_blocks_preconditioner_inverts_each_class_block(
    fit_intercept, weighted, monkeypatch
):
    """With every feature direction kept and every row used, M is P diag_k(H_kk)^-1 P.

    H_kk, the k-th diagonal block of the Hessian in the variables (W, b), built
    from its definition: X_a^T diag(s_i p_ik (1 - p_ik)) X_a / sum(s) plus the L2
    curvature on the weights; P the projection onto class-sum-zero columns.
    """
    import softmax.solvers._preconditioners as pre
    from softmax.losses import softmax_rows_

    rng = np.random.default_rng(21)
    n, p, K, C = 80, 4, 3, 2.0
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + np.array([0.5, 2.0, -1.0, 0.0])
    y = rng.integers(0, K, size=n)
    s = rng.uniform(0.2, 3.0, size=n) if weighted else None
    monkeypatch.setattr(pre, "CLASS_BLOCK_RANK", p)
    obj = objective_of(data_of(X, y, s, fit_intercept=fit_intercept), C=C)
    sw = float(n if s is None else s.sum())
    l2 = 1.0 / (C * sw)  # f = (sum_i s_i loss_i + |W|^2 / (2 C)) / sum(s)
    assert obj.penalty.smooth_l2 == pytest.approx(l2)
    coef = rng.normal(size=obj.shape)
    Xa = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    P = Xa @ coef.T
    softmax_rows_(P)
    q = Xa.shape[1]
    M_ref = np.zeros((K * q, K * q))
    for k in range(K):
        w = P[:, k] * (1 - P[:, k]) * (1.0 if s is None else s) / sw
        H = (Xa * w[:, None]).T @ Xa
        H[np.arange(p), np.arange(p)] += l2  # not on the intercept
        M_ref[k * q : (k + 1) * q, k * q : (k + 1) * q] = np.linalg.inv(H)
    proj = np.kron(np.eye(K) - np.ones((K, K)) / K, np.eye(q))  # class sums -> 0
    M = pre.class_blocks(obj, coef)
    G = rng.normal(size=obj.shape)
    expected = proj @ M_ref @ proj @ G.ravel()
    # the backend accumulates the blocks in float32 (subspace_curvature): float32 accuracy
    np.testing.assert_allclose(M(G.ravel()), expected, rtol=1e-5, atol=1e-7)
    g = proj @ G.ravel()
    np.testing.assert_allclose(M.quad(g), g @ M_ref @ g, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_with_class_blocks_reaches_sklearn_optimum(dtype, monkeypatch):
    """The class-block preconditioner (leading directions: 20 of 64 pixels) on raw digits."""
    import softmax.solvers._preconditioners as pre

    monkeypatch.setattr(pre, "CLASS_BLOCK_RANK", 20)
    X, y = load_digits(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X, y)
    f_sk = objective(sk_coef(sk), X, y, None, 1.0, 0.0)
    res = solve(data_of(X.astype(dtype), y), solver="lbfgs", C=1.0, preconditioner="blocks")
    assert res.converged, res.message
    assert res.n_iter > 5  # past the switch from the diagonal preconditioner
    f_ours = objective(res.coef, X, y, None, 1.0, 0.0)  # evaluated in float64
    assert (f_ours - f_sk) / f_sk <= 1e-6
    assert np.mean(predict(res.coef, X) == predict(sk_coef(sk), X)) >= 0.999


def test_kronecker_preconditioner_falls_back_to_the_diagonal_one_on_sparse_rows(digits):
    X, y = digits
    X = np.where(np.abs(X) > 0.5, X, 0.0)[:600]
    y = y[:600]
    data = data_of(sp.csr_matrix(X), y)
    assert Capability.FEATURE_COVARIANCE not in data.capabilities
    assert kronecker(objective_of(data, C=1.0)) is None
    with pytest.raises(NotImplementedError, match="feature_covariance"):
        data.feature_covariance()
    dense = solve(data_of(X, y), solver="newton-cholesky", C=1.0, tol=1e-12)
    for kind in ("kronecker", "diagonal"):
        res = solve(data_of(sp.csr_matrix(X), y), solver="lbfgs", C=1.0, preconditioner=kind)
        assert (res.objective - dense.objective) / dense.objective <= 1e-6
    with pytest.raises(ValueError, match="preconditioner"):
        solve(data, solver="lbfgs", C=1.0, preconditioner="full")


# -- the L-BFGS history: two-loop recursion, float32 storage, compiled loops, bases ----


def _explicit_bfgs_direction(pairs, M, g):
    """-H g with H from the BFGS update applied to H0 = gamma M, as dense matrices.

    Nocedal & Wright (7.19) and (6.17): ``gamma = s.y / y.M.y`` of the newest
    pair, then ``H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T`` oldest first.
    """
    n = g.size
    s_new, y_new = pairs[-1]
    H = (s_new @ y_new) / (y_new @ M @ y_new) * M
    eye = np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        H = (eye - rho * np.outer(s, y)) @ H @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    return -H @ g


def _pairs_of_a_quadratic(rng, n, count):
    """Steps s and gradient changes y = B s of a positive definite quadratic."""
    A = rng.normal(size=(n, n))
    B = A @ A.T / n + 0.1 * np.eye(n)
    return [(s, B @ s) for s in rng.normal(size=(count, n))]


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_loop_recursion_matches_the_explicit_bfgs_matrix(dtype, compiled):
    if compiled:
        pytest.importorskip("numba")
    from softmax.solvers.lbfgs import LBFGSMemory

    rng = np.random.default_rng(5)
    n, m = 40, 6
    pairs = _pairs_of_a_quadratic(rng, n, 9)  # more pairs than slots: the ring wraps
    dvec = rng.uniform(0.5, 2.0, size=n)

    def precond(v):
        return dvec * v

    precond.quad = lambda v: float(v @ (dvec * v))
    mem = LBFGSMemory(m, n, precond, dtype=dtype, compiled=compiled)
    for s, y in pairs:
        assert mem.push(s, y)
    g = rng.normal(size=n)
    d = mem.direction(g)
    assert d.dtype == np.float64
    expected = _explicit_bfgs_direction(pairs[-m:], np.diag(dvec), g)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(d, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_two_loop_recursion_rejects_pairs_without_positive_curvature():
    from softmax.solvers.lbfgs import LBFGSMemory

    mem = LBFGSMemory(3, 4)
    assert not mem.push(np.array([1.0, 0, 0, 0]), np.array([-1.0, 0, 0, 0]))
    assert mem.count == 0
    with pytest.raises(ValueError, match="history_size"):
        LBFGSMemory(0, 4)


def test_feature_basis_is_an_orthogonal_change_of_variables_for_the_preconditioner():
    """Q^T M Q in the basis: history moved into it gives the rotated direction."""
    from softmax.solvers.lbfgs import LBFGSMemory, _change_of_basis

    rng = np.random.default_rng(6)
    n_rows, p, K = 80, 6, 3
    X = rng.normal(size=(n_rows, p)) @ rng.normal(size=(p, p)) + 1.0
    y = rng.integers(0, K, size=n_rows)
    obj = objective_of(data_of(X, y), C=2.0)
    M = kronecker(obj, rng.normal(size=obj.shape))
    basis = M.basis
    np.testing.assert_allclose(basis.Q.T @ basis.Q, np.eye(p), atol=1e-12)
    n = K * (p + 1)
    V = rng.normal(size=(4, n))
    np.testing.assert_allclose(basis.back(basis.forward(V)), V, atol=1e-12)
    # dot products are preserved, and M in the basis is the rotated M
    np.testing.assert_allclose(
        basis.forward(V) @ basis.forward(V).T, V @ V.T, rtol=1e-12, atol=1e-12
    )
    g = rng.normal(size=n)
    np.testing.assert_allclose(
        basis.precond(basis.forward(g)), basis.forward(M(g)), rtol=1e-10, atol=1e-12
    )
    assert basis.precond.quad(basis.forward(g)) == pytest.approx(g @ M(g), rel=1e-10)
    # a history built in the variables, moved into the basis, gives the same direction
    pairs = _pairs_of_a_quadratic(rng, n, 5)
    plain = LBFGSMemory(8, n, M)
    rotated = LBFGSMemory(8, n, None)
    for s, yv in pairs:
        plain.push(s, yv)
        rotated.push(s, yv)
    rotated.transform(_change_of_basis(None, basis))
    rotated.M = basis.precond
    rotated.gamma = plain.gamma
    np.testing.assert_allclose(
        basis.back(rotated.direction(basis.forward(g))), plain.direction(g), rtol=1e-9
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_auto_preconditioner_switches_to_the_kronecker_basis_and_reaches_the_optimum(
    dtype, monkeypatch
):
    """ "auto" switches from diagonal to class blocks mid-run; "kronecker" (the history
    moves into its basis) reaches the same optimum."""
    import softmax.solvers._lbfgs_policy as _lbfgs_policy
    import softmax.solvers.lbfgs as lbfgs

    monkeypatch.setattr(_lbfgs_policy, "KRONECKER_WORK", 10_000)  # a small problem qualifies
    rng = np.random.default_rng(7)
    n_rows, p, K = 600, 40, 5
    F = rng.normal(size=(n_rows, 5))
    X = F @ rng.normal(size=(5, p)) + 0.5 * rng.normal(size=(n_rows, p))
    X *= np.exp(rng.uniform(-1, 1, size=p))  # correlated, on different scales
    y = np.argmax(X @ rng.normal(size=(p, K)) * 0.3 + rng.gumbel(size=(n_rows, K)), axis=1)
    data = data_of(X.astype(dtype), y)
    assert lbfgs.use_kronecker(data)
    ref = solve(data_of(X, y), solver="newton-cholesky", C=1.0, tol=1e-12)
    for kind in ("auto", "kronecker"):
        res = solve(data, solver="lbfgs", C=1.0, tol=1e-9, preconditioner=kind)
        assert res.converged, res.message
        assert res.n_iter > lbfgs.KRONECKER_START
        f_ours = objective(res.coef, X, y, None, 1.0, 0.0)
        assert (f_ours - ref.objective) / ref.objective <= 1e-6


def test_auto_preconditioner_scales_each_class_for_many_classes(monkeypatch):
    """Above KRONECKER_MAX_CLASSES "auto" builds the per-class scaled preconditioner
    (issue 15), neither the Kronecker factor nor class blocks, and reaches the optimum
    of newton-cholesky; at the limit it is Kronecker."""
    import softmax.solvers._lbfgs_policy as _lbfgs_policy
    import softmax.solvers._preconditioners as pre
    import softmax.solvers.lbfgs as lbfgs

    monkeypatch.setattr(_lbfgs_policy, "KRONECKER_WORK", 10_000)
    monkeypatch.setattr(_lbfgs_policy, "KRONECKER_MAX_CLASSES", 6)
    rng = np.random.default_rng(11)
    n_rows, p = 700, 12
    X = rng.normal(size=(n_rows, p)) * np.exp(rng.uniform(-1, 1, size=p))
    y7 = np.argmax(X @ rng.normal(size=(p, 7)) * 0.5 + rng.gumbel(size=(n_rows, 7)), axis=1)
    assert lbfgs.use_kronecker(data_of(X, np.minimum(y7, 5)))  # 6 classes: at the limit
    assert not lbfgs.use_class_scaled(data_of(X, np.minimum(y7, 5)))
    data = data_of(X, y7)
    assert not lbfgs.use_kronecker(data) and lbfgs.use_class_scaled(data)
    built = []
    real = pre.kronecker
    monkeypatch.setattr(lbfgs, "kronecker", lambda *a, **k: built.append(1) or real(*a, **k))
    blocks = pre.class_blocks
    monkeypatch.setattr(lbfgs, "class_blocks", lambda *a, **k: built.append(2) or blocks(*a, **k))
    scaled = pre.class_scaled
    monkeypatch.setattr(lbfgs, "class_scaled", lambda *a, **k: built.append(3) or scaled(*a, **k))
    res = solve(data, solver="lbfgs", C=1.0, tol=1e-10)
    assert res.converged, res.message
    assert set(built) == {3}  # from the start, refreshed: never Kronecker or blocks
    ref = solve(data_of(X, y7), solver="newton-cholesky", C=1.0, tol=1e-12)
    f_ours = objective(res.coef, X, y7, None, 1.0, 0.0)
    assert (f_ours - ref.objective) / ref.objective <= 1e-8


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_scaled_preconditioner_inverts_its_model_of_each_class_block(
    fit_intercept, weighted
):
    """M is P diag_k(B_k)^-1 P with B_k built here from its definition.

    In the variables (W, b) the model of class k's block is, with w_ik = s_i p_ik
    (1 - p_ik) / sum(s), s0 = sum_i w_ik, mu = sum_i w_ik x_i / s0, tau the ratio of
    the class's w-weighted variance about mu (summed over features) to trace(Sigma)
    (Sigma = np.cov of the rows, weighted):
    [[s0 tau Sigma + s0 mu mu^T + l2 I, s0 mu], [s0 mu^T, s0]]; without intercept,
    s0 tau E[x x^T] + l2 I with the uncentred moments. P: the class-sum-zero projection
    the solvers apply to M's output (Objective.restrict).
    """
    import softmax.solvers._preconditioners as pre
    from softmax.losses import softmax_rows_

    rng = np.random.default_rng(22)
    n, p, K, C = 90, 4, 3, 2.0
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + np.array([0.5, 2.0, -1.0, 0.0])
    y = rng.integers(0, K, size=n)
    s = rng.uniform(0.2, 3.0, size=n) if weighted else None
    obj = objective_of(data_of(X, y, s, fit_intercept=fit_intercept), C=C)
    sw = float(n if s is None else s.sum())
    l2 = 1.0 / (C * sw)
    coef = rng.normal(size=obj.shape)
    Xa = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    P = Xa @ coef.T
    softmax_rows_(P)
    sr = np.ones(n) if s is None else s
    if fit_intercept:
        Sigma = np.cov(X, rowvar=False, bias=True, aweights=sr)
    else:
        Sigma = (X * sr[:, None]).T @ X / sw
    q = Xa.shape[1]
    B_inv = np.zeros((K * q, K * q))
    for k in range(K):
        w = P[:, k] * (1 - P[:, k]) * sr / sw
        s0 = w.sum()
        mu = w @ X / s0 if fit_intercept else np.zeros(p)
        spread = (w @ np.sum((X - mu) ** 2, axis=1)) / s0
        tau = spread / np.trace(Sigma)
        B = np.zeros((q, q))
        B[:p, :p] = s0 * tau * Sigma + s0 * np.outer(mu, mu) + l2 * np.eye(p)
        if fit_intercept:
            B[:p, p] = B[p, :p] = s0 * mu
            B[p, p] = s0
        B_inv[k * q : (k + 1) * q, k * q : (k + 1) * q] = np.linalg.inv(B)
    proj = np.kron(np.eye(K) - np.ones((K, K)) / K, np.eye(q))
    M = pre.class_scaled(obj, coef)
    G = rng.normal(size=obj.shape)
    out = M(G.ravel()).reshape(K, q)
    np.testing.assert_allclose(obj.restrict(out).ravel(), proj @ B_inv @ G.ravel(), rtol=1e-7)
    g = G.ravel()
    np.testing.assert_allclose(M.quad(g), g @ B_inv @ g, rtol=1e-7)


def _probe_rows(rng, n, p, K, separation=1.5):
    """Embedding-like rows: class centroids, correlated features with a decaying spectrum."""
    centroids = rng.normal(size=(K, p))
    mix = np.linalg.qr(rng.normal(size=(p, p)))[0] * (np.arange(1, p + 1) ** -0.5)[:, None]
    y = np.arange(n) % K
    X = (separation * centroids[y] + rng.normal(size=(n, p))) @ mix
    return X, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_class_scaled_preconditioner_saves_iterations_on_many_clustered_classes(dtype):
    """Rows around their class centroid in correlated features (a linear probe): the
    per-class scaled preconditioner needs fewer iterations than the diagonal one (which
    sees neither the feature correlations nor each class's spread), and both reach
    scikit-learn's optimum."""
    rng = np.random.default_rng(5)
    X, y = _probe_rows(rng, 1200, 24, 40)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X, y)
    f_sk = objective(sk_coef(sk), X, y, None, 1.0, 0.0)
    iters = {}
    for kind in ("scaled", "diagonal"):
        res = solve(data_of(X.astype(dtype), y), solver="lbfgs", C=1.0, tol=1e-8,
                    preconditioner=kind)  # fmt: skip
        assert res.converged, res.message
        f_ours = objective(res.coef, X, y, None, 1.0, 0.0)
        assert (f_ours - f_sk) / f_sk <= 1e-6
        iters[kind] = res.n_iter
    assert iters["scaled"] <= 0.7 * iters["diagonal"], iters


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_feature_covariance_matches_numpy(dtype, weighted):
    """The backend's covariance (BLAS syrk by row blocks, mirrored) against np.cov."""
    rng = np.random.default_rng(8)
    n, p = 1500, 300  # several row blocks, several mirror blocks
    X = (rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * 0.1 + 5.0).astype(dtype)
    y = rng.integers(0, 5, size=n)  # 5 classes: a budget of every row (no stride)
    w = rng.uniform(0.0, 3.0, size=n) if weighted else None
    X_before = X.copy()
    mean, cov = data_of(X, y, w).feature_covariance()
    np.testing.assert_array_equal(X, X_before)
    ref = np.cov(X.astype(np.float64), rowvar=False, bias=True, aweights=w)
    np.testing.assert_allclose(mean, np.average(X.astype(np.float64), axis=0, weights=w),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)  # fmt: skip
    np.testing.assert_array_equal(cov, cov.T)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cov, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_an_unpenalised_problem_reaches_the_maximum_likelihood():
    """C = inf (the room left for unpenalised fits): F is the data term alone, and
    L-BFGS reaches scikit-learn's unpenalised log loss (non-separable data)."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = np.argmax(X @ rng.normal(size=(3, 3)) + 2 * rng.gumbel(size=(400, 3)), axis=1)
    problem = Problem(data_of(X, y), C=np.inf)
    assert not problem.penalised and not problem.has_l1
    res = solve_problem(problem, solver="lbfgs", tol=1e-12, max_iter=2000)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    assert res.converged
    assert res.objective == pytest.approx(
        log_loss(y, sk.predict_proba(X), normalize=False), rel=1e-9
    )
    with pytest.raises(ValueError, match="C must be a positive number"):
        Problem(data_of(X, y), C=0.0)


def _low_signal(n, p, K, seed=5):
    """Rows on scales 0.2 to 5 with a non-zero mean, labels from weak logits.

    The class probabilities stay spread at the optimum: every row weighs on
    every class's curvature, as the Kronecker preconditioner assumes.
    """
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.2, 5.0, p)
    X = (rng.standard_normal((n, p)) + 1.0) * scales
    logits = (X / scales) @ rng.standard_normal((p, K)) * 0.2
    return X, np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def _scipy_optimum(X, y, C):
    """sklearn's objective minimised by SciPy's L-BFGS-B, with the gradient written out.

    In the variables ``v = W * s`` and ``c = b + W mu`` (``mu``, ``s`` the
    feature means and scales): the same function of the same minimiser, on
    which L-BFGS-B needs a few hundred iterations rather than thousands.
    """
    from scipy.optimize import minimize

    p = X.shape[1]
    K = int(y.max()) + 1
    Y = np.eye(K)[y]
    mu, s = X.mean(axis=0), X.std(axis=0)
    Z = (X - mu) / s

    def fg(w):
        v, c = w[: K * p].reshape(K, p), w[K * p :]
        logp = log_softmax(Z @ v.T + c, axis=1)
        R = C * (np.exp(logp) - Y)
        f = -C * np.sum(Y * logp) + 0.5 * np.sum((v / s) ** 2)
        return f, np.concatenate([(R.T @ Z + v / s**2).ravel(), R.sum(axis=0)])

    res = minimize(
        fg,
        np.zeros(K * (p + 1)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "maxcor": 30, "ftol": 1e-13, "gtol": 1e-7},
    )
    return float(res.fun)


def test_auto_preconditioner_is_as_fast_as_the_better_one_on_low_signal_rows(monkeypatch):
    """ "auto" takes at most 1.2x the iterations of the better of Kronecker and diagonal.

    On 5,000 x 150 low-signal rows (5 classes) class blocks took 65 iterations
    against 46 for Kronecker: their refresh costs 25 passes there (every other
    row sampled, 151 x 151 blocks) for nothing. Each fit is checked against
    the optimum of SciPy's L-BFGS-B on the objective written out here.
    """
    import softmax.solvers._lbfgs_policy as _lbfgs_policy
    import softmax.solvers.lbfgs as lbfgs

    monkeypatch.setattr(_lbfgs_policy, "KRONECKER_WORK", 1_000_000)  # it qualifies
    X, y = _low_signal(5000, 150, 5)
    data = data_of(X, y)
    assert lbfgs.use_kronecker(data)
    f_ref = _scipy_optimum(X, y, 1.0)
    iters = {}
    for kind in ("auto", "kronecker", "diagonal"):
        res = solve(data_of(X, y), solver="lbfgs", C=1.0, tol=1e-8, preconditioner=kind)
        assert res.converged, res.message
        f_ours = objective(res.coef, X, y, None, 1.0, 0.0)
        assert (f_ours - f_ref) / f_ref <= 1e-7, kind
        iters[kind] = res.n_iter
    assert iters["auto"] <= 1.2 * min(iters["kronecker"], iters["diagonal"]), iters


def test_class_blocks_sampling_noise_is_raised_to_the_kronecker_value():
    """Sampled class blocks on 10,000 x 200 low-signal rows (every 4th row sampled).

    Undenoised they took 104 iterations to a 1e-8 gap against 56 for Kronecker:
    the blocks' sampling noise invents directions of low curvature, and steps
    along them overshoot. Both fits reach the same objective.
    """
    X, y = _low_signal(10_000, 200, 5)
    fits = {
        kind: solve(data_of(X, y), solver="lbfgs", C=1.0, tol=1e-8, preconditioner=kind)
        for kind in ("blocks", "kronecker")
    }
    for res in fits.values():
        assert res.converged, res.message
    f = {kind: objective(res.coef, X, y, None, 1.0, 0.0) for kind, res in fits.items()}
    assert abs(f["blocks"] - f["kronecker"]) <= 1e-7 * f["kronecker"]
    assert fits["blocks"].n_iter <= 1.2 * fits["kronecker"].n_iter, {
        k: r.n_iter for k, r in fits.items()
    }


def test_denoise_raises_noise_deficits_and_keeps_real_ones():
    """_denoise on a block sampled from a known population (the reference).

    Rows z ~ N(0, T) with T = a diag(lam) except one direction where the class
    has a tenth of that curvature. Relative to T, the sampled block's
    eigenvalues spread around 1 (Marchenko-Pastur); denoised, those between
    the noise band's edge and 1 are 1, the real deficit and the excess are
    kept, and the block is nearer the population.
    """
    import softmax.solvers._preconditioners as pre

    rng = np.random.default_rng(3)
    r, m, a = 30, 600, 0.3  # a: the class's mean curvature, every row weighs a
    lam = np.exp(rng.uniform(-2, 2, r))
    u = np.linalg.qr(rng.normal(size=(r, r)))[0][:, 0]
    rel = np.eye(r) - 0.9 * np.outer(u, u)  # the population relative to T
    Z = rng.normal(size=(m, r)) @ np.linalg.cholesky(rel).T * np.sqrt(lam)
    block = a * (Z.T @ Z) / m
    d = np.sqrt(lam)

    def white(B):
        return B / (a * np.outer(d, d))

    out = block[None].copy()
    pre._denoise(out, np.array([a]), np.array([float(m)]), lam, False)
    raw, den = np.linalg.eigvalsh(white(block)), np.linalg.eigvalsh(white(out[0]))
    edge = (1 - np.sqrt(pre.CLASS_BLOCK_NOISE * r / m)) ** 2
    assert raw[0] < 0.2 and np.sum((raw > edge) & (raw < 1)) >= 5
    expected = np.sort(np.where((raw > edge) & (raw < 1), 1.0, raw))
    np.testing.assert_allclose(den, expected, atol=1e-10)
    err = [np.linalg.norm(white(B) - rel) for B in (block, out[0])]
    assert err[1] < err[0]


def test_feature_basis_of_rows_with_constant_features():
    """The basis of data with constant columns: its products equal the dense ones.

    The covariance (non-zero columns only) against NumPy's; the basis maps
    against explicit products with Q and Q^T (the split runs on the varying
    features alone).
    """
    import softmax.solvers._preconditioners as pre

    rng = np.random.default_rng(4)
    n, p, K = 300, 12, 3
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    X[:, [0, 5, 11]] = 0.0  # never on (pixels at the border)
    y = rng.integers(0, K, size=n)
    data = data_of(X, y)
    mean, cov = data.feature_covariance()
    np.testing.assert_allclose(mean, X.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(X, rowvar=False, bias=True), atol=1e-10)
    obj = objective_of(data, C=1.0)
    _, lam, U, split = pre._feature_factor(obj)
    assert split is not None and list(split[0]) == [0, 5, 11]
    np.testing.assert_allclose(U.T @ U, np.eye(p), atol=1e-10)
    np.testing.assert_allclose((U * lam) @ U.T, cov, atol=1e-8)
    assert np.all(np.diff(lam) >= 0)  # ascending: the last columns lead
    M = pre.kronecker(obj, rng.normal(size=obj.shape))
    basis = M.basis
    assert basis.split is split
    V = rng.normal(size=(4, K * (p + 1)))
    G = V.reshape(4, K, p + 1)
    fwd = np.concatenate([G[:, :, :p] @ U, G[:, :, p:]], axis=2).reshape(V.shape)
    np.testing.assert_allclose(basis.forward(V), fwd, atol=1e-12)
    back = np.concatenate([G[:, :, :p] @ U.T, G[:, :, p:]], axis=2).reshape(V.shape)
    np.testing.assert_allclose(basis.back(V), back, atol=1e-12)


def test_class_blocks_take_the_covariance_at_their_own_budget():
    """Class blocks ask for the covariance at ``CLASS_BLOCK_COVARIANCE_PASSES``.

    The backend's covariance at a budget of ``passes`` equals NumPy's over the
    even stride of rows that the budget allows (every row at the default on
    this shape, every other row at 10 passes); the class-block preconditioner
    is built from the strided one, the Kronecker one from every row.
    """
    import softmax.solvers._preconditioners as pre
    from softmax.backends import memory

    rng = np.random.default_rng(7)
    # budget of 20 passes: 20 * 4 * K * n // p = n rows; 10 passes: n / 2;
    # 2.5 passes: n / 8, below the floor of 2 p rows (stride 5)
    n, p, K = 2000, 240, 3
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) / 10
    y = rng.integers(0, K, size=n)
    data = data_of(X, y)
    assert memory.COVARIANCE_PASSES == 20 and pre.CLASS_BLOCK_COVARIANCE_PASSES == 10
    for passes, stride in ((None, 1), (10, 2), (2.5, 5)):
        mean, cov = data.feature_covariance(passes)
        # centred on the mean of every row, averaged over the rows used
        D = X[::stride] - X.mean(axis=0)
        np.testing.assert_allclose(mean, X.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(cov, D.T @ D / len(D), atol=1e-9)
    seen = []
    original = InMemoryData.feature_covariance

    def spy(self, passes=None):
        seen.append(passes)
        return original(self, passes)

    coef = rng.normal(size=(K, p + 1)) * 0.1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(InMemoryData, "feature_covariance", spy)
        assert pre.class_blocks(objective_of(data_of(X, y), C=1.0), coef) is not None
        assert pre.kronecker(objective_of(data_of(X, y), C=1.0), coef) is not None
    assert seen == [pre.CLASS_BLOCK_COVARIANCE_PASSES, None]
