"""L1 / elastic-net solvers: what "auto" picks, optimality on digits, saga's optimum, min_c.

References: the KKT conditions with gradients from SciPy's softmax, scikit-learn's
``LogisticRegression(solver="saga")`` at a tight tolerance, and PyTorch's
``cross_entropy(label_smoothing=...)`` for the gradient behind ``min_c``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.datasets import load_digits, load_iris

from softmax import SoftmaxRegression, min_c, regularization_path
from softmax.backends.memory import InMemoryData
from softmax.solvers import SOLVERS, Problem, resolve_solver, solve
from softmax.solvers.proximal_newton import full_hessian_is_cheap


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(X / 16.0), y


def data_of(X, y):
    return InMemoryData(X, y, None, np.unique(y), fit_intercept=True)


def objective(X, y, C, rho, W, b):
    """``F`` in float64 with SciPy."""
    Z = X @ W.T + b
    ce = logsumexp(Z, axis=1) - Z[np.arange(len(y)), y]
    return C * ce.sum() + 0.5 * (1 - rho) * np.sum(W**2) + rho * np.abs(W).sum()


def kkt_violation(X, y, C, rho, W, b):
    """Largest violation of the elastic-net KKT conditions (glmnet's scale: the mean loss)."""
    n, K = len(y), W.shape[0]
    R = softmax(X @ W.T + b, axis=1) - np.eye(K)[y]
    G = R.T @ X / n
    lam = 1.0 / (C * n)
    worst = float(np.abs(R.mean(axis=0)).max())  # the intercepts
    zero = W == 0
    if zero.any():
        worst = max(worst, float((np.abs(G[zero]) - lam * rho).max()))
    if (~zero).any():
        res = G + lam * rho * np.sign(W) + lam * (1 - rho) * W
        worst = max(worst, float(np.abs(res[~zero]).max()))
    return worst


def test_auto_picks_owlqn_for_l1_and_owlqn_hands_over_where_the_hessian_is_cheap(digits):
    X, y = digits
    rng = np.random.default_rng(0)
    dense = data_of(X, y)
    assert resolve_solver("auto", Problem(dense, l1_ratio=1.0)).name == "proximal"
    assert resolve_solver("auto", Problem(dense, l1_ratio=0.5)).name == "proximal"
    assert resolve_solver("auto", Problem(dense, l1_ratio=1.0, l1_type="grouped")).name == (
        "proximal-newton"
    )
    assert resolve_solver("auto", Problem(dense)).name == "lbfgs"  # 650 coefficients, L2
    # where proximal Newton's full Hessian is cheap: small dense problems only
    assert full_hessian_is_cheap(dense)
    assert full_hessian_is_cheap(data_of(X.astype(np.float32), y))
    assert not full_hessian_is_cheap(data_of(sp.csr_matrix(X), y))
    wide = rng.normal(size=(200, 500))
    assert not full_hessian_is_cheap(data_of(wide, rng.integers(0, 3, 200)))  # p > n
    many = rng.normal(size=(3000, 250))
    assert not full_hessian_is_cheap(data_of(many, rng.integers(0, 10, 3000)))  # 2,510 coef
    # a weak penalty: OWL-QN alone is slow there, so it hands over after 100 iterations
    c0 = min_c(X, y, l1_ratio=1.0)
    res = solve(Problem(dense, C=1000 * c0, l1_ratio=1.0), solver="auto", tol=1e-8)
    assert res.converged and "proximal Newton after 100 OWL-QN iterations" in res.message
    assert 100 < res.n_iter < 130
    # a strong one converges before
    res = solve(Problem(dense, C=3 * c0, l1_ratio=1.0), solver="auto", tol=1e-8)
    assert res.converged and "proximal Newton" not in res.message and res.n_iter < 100
    # CSR rows never hand over
    res = solve(Problem(data_of(sp.csr_matrix(X), y), C=30 * c0, l1_ratio=1.0), solver="auto")
    assert "proximal Newton" not in res.message


def test_owlqn_alone_converges_on_digits_l1(digits):
    """OWL-QN without the hand-over: before its direction was taken on the free variables
    it stopped at max_iter=1000 here with a relative gap of 8e-5."""
    X, y = digits
    data = data_of(X, y)
    C = 30 * min_c(X, y, l1_ratio=1.0)
    owlqn = SOLVERS["proximal"].with_options(newton_after=None)
    res = solve(Problem(data, C=C, l1_ratio=1.0), solver=owlqn, tol=1e-8)
    ref = solve(Problem(data, C=C, l1_ratio=1.0), solver="proximal-newton", tol=1e-12)
    assert res.converged and res.n_iter < 600
    F, F_ref = (objective(X, y, C, 1.0, r.coef[:, :-1], r.coef[:, -1]) for r in (res, ref))
    assert abs(F - F_ref) <= 1e-6 * F_ref
    # the unpenalised intercepts stay centred (the objective is flat along their shift)
    assert abs(res.coef[:, -1].sum()) < 1e-9


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_kkt_along_a_digits_path(digits, rho):
    X, y = digits
    Cs = min_c(X, y, l1_ratio=rho) * np.logspace(0.05, 3, 7)
    path = regularization_path(X, y, Cs, l1_ratio=rho, tol=1e-12)
    assert path.converged.all()
    for k, C in enumerate(Cs):
        assert kkt_violation(X, y, C, rho, path.coefs[k], path.intercepts[k]) <= 1e-6
    # each point agrees with proximal Newton alone, fitted from zero
    for k in (0, 3, 6):
        ref = SoftmaxRegression(C=Cs[k], l1_ratio=rho, solver="proximal-newton", tol=1e-12)
        ref.fit(X, y)
        F = objective(X, y, Cs[k], rho, path.coefs[k], path.intercepts[k])
        F_ref = objective(X, y, Cs[k], rho, ref.coef_, ref.intercept_)
        assert abs(F - F_ref) <= 1e-9 * F_ref


@pytest.mark.parametrize(
    "classes, n_rows, rho, factor, dtype",
    [
        (10, 400, 1.0, 3.0, np.float64),  # fewer rows than coefficients: OWL-QN alone
        (5, 900, 0.5, 30.0, np.float64),  # small dense: OWL-QN, then proximal Newton
        (5, 900, 1.0, 10.0, np.float32),
    ],
)
def test_matches_saga_at_a_tight_tolerance(digits, classes, n_rows, rho, factor, dtype):
    from sklearn.linear_model import LogisticRegression

    X, y = digits
    keep = y[:n_rows] < classes
    X, y = X[:n_rows][keep], y[:n_rows][keep]
    C = factor * min_c(X, y, l1_ratio=rho)
    ours = SoftmaxRegression(C=C, l1_ratio=rho, tol=1e-10).fit(X.astype(dtype), y)
    sk = LogisticRegression(C=C, l1_ratio=rho, solver="saga", tol=1e-10, max_iter=100_000)
    sk.fit(X, y)
    F = objective(X, y, C, rho, ours.coef_, ours.intercept_)
    F_sk = objective(X, y, C, rho, sk.coef_, sk.intercept_)
    assert ours.converged_
    assert abs(F - F_sk) <= 1e-6 * F_sk


def _torch_null_gradient(X, y, eps, fit_intercept):
    """max |dF/dW| per unit C at W = 0 with the best intercepts, by PyTorch autograd."""
    torch = pytest.importorskip("torch")
    K = len(np.unique(y))
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y)
    W = torch.zeros((K, X.shape[1]), dtype=torch.float64, requires_grad=True)
    if fit_intercept:
        # the best intercepts: the probabilities equal the mean smoothed target
        freq = np.bincount(y, minlength=K) / len(y)
        b = torch.tensor(np.log((1 - eps) * freq + eps / K), dtype=torch.float64)
    else:
        b = torch.zeros(K, dtype=torch.float64)
    loss = torch.nn.functional.cross_entropy(
        Xt @ W.T + b, yt, label_smoothing=eps, reduction="sum"
    )
    loss.backward()
    if fit_intercept:  # the intercepts are optimal there
        bb = b.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(
            Xt @ W.detach().T + bb, yt, label_smoothing=eps, reduction="sum"
        ).backward()
        assert float(bb.grad.abs().max()) < 1e-9
    return W.grad.numpy()


@pytest.mark.parametrize("eps", [0.1, 0.4])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("l1_type", ["elementwise", "grouped"])
def test_min_c_with_label_smoothing(eps, fit_intercept, l1_type):
    X, y = load_iris(return_X_y=True)
    c = min_c(X, y, label_smoothing=eps, fit_intercept=fit_intercept, l1_type=l1_type)
    D = _torch_null_gradient(X, y, eps, fit_intercept)
    top = np.abs(D).max() if l1_type == "elementwise" else np.linalg.norm(D, axis=0).max()
    assert c == pytest.approx(1.0 / top, rel=1e-10)
    plain = min_c(X, y, fit_intercept=fit_intercept, l1_type=l1_type)
    assert c > plain * 1.05  # smoothing moves it: the unsmoothed value is wrong here

    def fit(C):
        return SoftmaxRegression(
            C=C,
            l1_ratio=1.0,
            l1_type=l1_type,
            label_smoothing=eps,
            fit_intercept=fit_intercept,
            tol=1e-12,
            max_iter=5000,
        ).fit(X, y)

    assert not fit(c * (1 - 1e-6)).coef_.any()
    assert fit(c * (1 + 1e-3)).coef_.any()
    # just above the unsmoothed value, a smoothed fit still has W = 0
    assert not fit(plain * 1.01).coef_.any()


def test_min_c_refuses_bad_label_smoothing():
    X, y = load_iris(return_X_y=True)
    for bad in (1.0, -0.1, "0.1"):
        with pytest.raises((ValueError, TypeError), match="label_smoothing"):
            min_c(X, y, label_smoothing=bad)
