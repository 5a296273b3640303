"""The group lasso across classes (``l1_type="grouped"``).

References, each computed here without the library's loss code: the block
soft-thresholding formula and SciPy's minimisation of the prox objective;
the KKT conditions with gradients from SciPy's softmax; scikit-learn's
``LogisticRegression`` (the L2 limit) and its held-out ``log_loss``; a SciPy
L-BFGS minimisation of a smoothed group norm (the optimum's value).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from softmax import SoftmaxRegression, SoftmaxRegressionCV, min_c, regularization_path
from softmax.backends.memory import InMemoryData
from softmax.penalties import GroupLasso, make_penalty
from softmax.solvers import SOLVERS, Problem, resolve_solver


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(X / 16.0), y  # scaled to [0, 1]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


# -- the penalty and its prox -------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_group_prox_is_block_soft_thresholding(fit_intercept):
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(4, 6))
    coef[:, 1] *= 0.01  # a column that must vanish
    pen = GroupLasso(1.0, fit_intercept=fit_intercept, strength=0.7)
    t = 0.5
    out = pen.prox(coef, t)
    p = 5 if fit_intercept else 6
    for j in range(6):
        v = coef[:, j]
        if j >= p:  # the intercept column is not penalised
            expected = v
        else:
            n = np.sqrt(sum(vi * vi for vi in v))
            expected = v * max(0.0, 1.0 - t * 0.7 / n)
        np.testing.assert_allclose(out[:, j], expected, rtol=1e-14, atol=1e-15)
    assert np.all(out[:, 1] == 0)  # exactly zero, not tiny
    assert out is not coef and np.array_equal(coef, coef.copy())


@pytest.mark.parametrize("ratio", [1.0, 0.6])
@pytest.mark.parametrize("per_column", [False, True])
def test_group_prox_of_whole_penalty_minimises_its_objective(ratio, per_column):
    """``prox(include_smooth=True)`` against SciPy minimising ``|u-v|^2/2 + t r(u)`` per column."""
    rng = np.random.default_rng(1)
    K, p = 3, 5
    coef = rng.normal(size=(K, p))
    coef[:, 2] *= 0.05
    strength = 0.8
    pen = GroupLasso(ratio, fit_intercept=False, strength=strength)
    step = rng.uniform(0.2, 1.0, size=p) if per_column else 0.6
    out = pen.prox(coef, step, include_smooth=True)
    steps = np.broadcast_to(step, (p,))
    c, a = strength * ratio, strength * (1 - ratio)
    for j in range(p):
        v, t = coef[:, j], steps[j]

        def objective(u, v=v, t=t):
            return 0.5 * np.sum((u - v) ** 2) + t * (c * np.linalg.norm(u) + 0.5 * a * u @ u)

        best = minimize(
            objective,
            v,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000},
        )
        # the closed form is at least as good as SciPy's search, and close to it
        assert objective(out[:, j]) <= best.fun + 1e-12
        np.testing.assert_allclose(out[:, j], best.x, atol=1e-4)


def test_group_penalty_value_and_subgradient_by_hand():
    W = np.array([[3.0, 0.0, 1.0, 9.0], [4.0, 0.0, -1.0, 9.0]])  # last column: intercept
    pen = GroupLasso(0.5, fit_intercept=True, strength=2.0)
    # 2 * (0.5 * (5 + 0 + sqrt 2) + 0.25 * (9 + 16 + 0 + 2))
    assert pen.value(W) == pytest.approx(2 * (0.5 * (5 + np.sqrt(2)) + 0.25 * 27))
    g = np.array([[0.1, 0.3, 0.0, 0.2], [0.2, 0.4, 0.0, -0.2]])
    sub = pen.min_norm_subgradient(W, g)
    c = 1.0  # strength * ratio
    np.testing.assert_allclose(sub[:, 0], g[:, 0] + c * W[:, 0] / 5)
    # zero column with ||g|| = 0.5 <= c: the subgradient can cancel it
    np.testing.assert_array_equal(sub[:, 1], 0.0)
    np.testing.assert_allclose(sub[:, 3], g[:, 3])  # intercept: the gradient itself
    # a zero column whose gradient is longer than c is shrunk by c
    g2 = g.copy()
    g2[:, 1] = [3.0, 4.0]
    np.testing.assert_allclose(pen.min_norm_subgradient(W, g2)[:, 1], [3.0 * 0.8, 4.0 * 0.8])


def test_group_share_zero_is_the_l2_penalty():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(3, 4))
    l2 = make_penalty(0.0, fit_intercept=True, strength=0.3)
    grouped = make_penalty(0.0, fit_intercept=True, strength=0.3, l1_type="grouped")
    assert isinstance(grouped, GroupLasso)
    assert grouped.value(W) == pytest.approx(0.3 * 0.5 * np.sum(W[:, :3] ** 2))
    assert grouped.value(W) == pytest.approx(l2.value(W))
    np.testing.assert_array_equal(grouped.prox(W, 0.7), W)


# -- the optimum ---------------------------------------------------------------------


def _kkt_residuals(X, y, sample_weight, C, rho, W, b, fit_intercept=True):
    """KKT residuals of ``C sum s_i CE_i + rho sum_j ||W_j|| + (1-rho)/2 ||W||^2``.

    Written with SciPy's softmax, on glmnet's scale (the objective divided by
    ``C sum s``: a weighted mean loss and penalty weight ``lam = rho / (C sum
    s)``). Returns the largest violation over zero groups (``||G_j|| -
    lam``), over non-zero groups (``||G_j + lam w_j/||w_j|| + mu w_j||``),
    over the intercepts, and the mask of non-zero groups.
    """
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    total = s.sum()
    K = W.shape[0]
    P = softmax(X @ W.T + b, axis=1)
    R = P - np.eye(K)[y]
    G = (R * s[:, None]).T @ X / total  # (K, p)
    lam = rho / (C * total)
    mu = (1 - rho) / (C * total)
    norms = np.linalg.norm(W, axis=0)
    nz = norms > 0
    Gs = G + mu * W
    zero_viol = np.linalg.norm(Gs[:, ~nz], axis=0) - lam if (~nz).any() else np.zeros(1)
    nz_res = Gs[:, nz] + lam * W[:, nz] / norms[nz]
    nz_viol = np.linalg.norm(nz_res, axis=0) if nz.any() else np.zeros(1)
    icpt = np.abs((R * s[:, None]).sum(axis=0) / total) if fit_intercept else np.zeros(1)
    return float(zero_viol.max()), float(nz_viol.max()), float(icpt.max()), nz


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_kkt_hold_along_the_path_on_digits(digits, rho):
    X, y = digits
    c0 = min_c(X, y, l1_ratio=rho, l1_type="grouped")
    Cs = c0 * np.logspace(0.05, 3, 10)
    path = regularization_path(X, y, Cs, l1_ratio=rho, l1_type="grouped", tol=1e-10)
    assert path.converged.all()
    assert path.l1_type == "grouped"
    for k, C in enumerate(path.Cs):
        zero_viol, nz_viol, icpt, nz = _kkt_residuals(
            X, y, None, C, rho, path.coefs[k], path.intercepts[k]
        )
        assert zero_viol <= 1e-6, (C, zero_viol)
        assert nz_viol <= 1e-6, (C, nz_viol)
        assert icpt <= 1e-6, (C, icpt)
        assert nz.sum() == path.n_features_selected[k]
        # a whole feature leaves: its weights are zero for every class at once
        W = path.coefs[k]
        assert np.array_equal(W.any(axis=0), (W != 0).all(axis=0))
    # fewer features as C decreases (the penalty grows), from few to many
    selected = path.n_features_selected
    assert np.all(np.diff(selected) >= 0), selected
    assert selected[0] < 10 and selected[-1] > 40


def test_kkt_with_weights_and_no_intercept(iris):
    X, y = iris
    w = np.random.default_rng(3).uniform(0.2, 3.0, size=len(y))
    C = 0.012  # twice min_c: some features in, some out
    clf = SoftmaxRegression(C=C, l1_ratio=0.8, l1_type="grouped", tol=1e-12, fit_intercept=False)
    clf.fit(X, y, sample_weight=w)
    zero_viol, nz_viol, _, nz = _kkt_residuals(
        X, y, w, C, 0.8, clf.coef_, clf.intercept_, fit_intercept=False
    )
    assert zero_viol <= 1e-8 and nz_viol <= 1e-8
    assert 0 < nz.sum() < X.shape[1]
    assert clf.n_features_selected_ == nz.sum()


def test_optimum_matches_a_smoothed_scipy_minimisation(iris):
    """SciPy's L-BFGS on ``sqrt(||w_j||^2 + eps^2)`` brackets the optimum within ``p rho eps``."""
    X, y = iris
    K, p = 3, X.shape[1]
    C, rho, eps = 0.1, 1.0, 1e-6
    Y = np.eye(K)[y]

    def smoothed(theta):
        W, b = theta[: K * p].reshape(K, p), theta[K * p :]
        logp = log_softmax(X @ W.T + b, axis=1)
        norms = np.sqrt(np.sum(W * W, axis=0) + eps * eps)
        R = C * (np.exp(logp) - Y)
        grad = np.concatenate([(R.T @ X + rho * W / norms).ravel(), R.sum(axis=0)])
        return -C * np.sum(Y * logp) + rho * norms.sum(), grad

    res = minimize(smoothed, np.zeros(K * (p + 1)), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10})  # fmt: skip
    assert res.success
    clf = SoftmaxRegression(C=C, l1_ratio=rho, l1_type="grouped", tol=1e-12).fit(X, y)
    W, b = clf.coef_, clf.intercept_
    ours = (
        -C * np.sum(Y * log_softmax(X @ W.T + b, axis=1)) + rho * np.linalg.norm(W, axis=0).sum()
    )
    assert clf.objective_ == pytest.approx(ours, rel=1e-12)
    # the smoothed objective lies in [F, F + p rho eps]: so does its minimum, above F*
    assert res.fun - p * rho * eps - 1e-10 <= ours <= res.fun + 1e-10
    assert 0 < clf.n_features_selected_ < p  # a feature left: the non-smooth case


def test_group_share_zero_equals_sklearn_l2_fit(iris):
    X, y = iris
    C = 0.3
    ours = SoftmaxRegression(C=C, l1_ratio=0.0, l1_type="grouped", tol=1e-12).fit(X, y)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)

    def objective(W, b):
        logp = log_softmax(X @ W.T + b, axis=1)
        return -C * logp[np.arange(len(y)), y].sum() + 0.5 * np.sum(W * W)

    assert objective(ours.coef_, ours.intercept_) <= objective(ref.coef_, ref.intercept_) + 1e-9
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-5)
    assert ours.solver_ != "proximal-newton"  # no non-smooth part: the L2 road
    assert ours.n_features_selected_ == X.shape[1]


def test_proximal_newton_on_elementwise_l1_matches_sklearn_saga(iris):
    X, y = iris
    C = 0.5
    ours = SoftmaxRegression(C=C, l1_ratio=1.0, solver="proximal-newton", tol=1e-12).fit(X, y)
    ref = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", tol=1e-12, max_iter=100_000)
    ref.fit(X, y)

    def objective(W, b):
        logp = log_softmax(X @ W.T + b, axis=1)
        return -C * logp[np.arange(len(y)), y].sum() + np.abs(W).sum()

    assert objective(ours.coef_, ours.intercept_) <= objective(ref.coef_, ref.intercept_) + 1e-8
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-4)


# -- min_c ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["plain", "weights", "no-intercept", "balanced", "elastic"], ids=str
)
def test_min_c_is_exact_for_the_grouped_penalty(digits, case):
    X, y = digits
    X, y = X[:500], y[:500]
    kw = {}
    fit_kw = {}
    rho = 0.5 if case == "elastic" else 1.0
    if case == "weights":
        fit_kw["sample_weight"] = np.random.default_rng(4).uniform(0.1, 2.0, size=len(y))
    if case == "no-intercept":
        kw["fit_intercept"] = False
    if case == "balanced":
        kw["class_weight"] = "balanced"
    c0 = min_c(X, y, l1_ratio=rho, l1_type="grouped", **kw, **fit_kw)
    assert c0 < min_c(X, y, l1_ratio=rho, **kw, **fit_kw)  # a column norm exceeds its entries

    def selected(C):
        clf = SoftmaxRegression(C=C, l1_ratio=rho, l1_type="grouped", tol=1e-12, **kw)
        return clf.fit(X, y, **fit_kw).n_features_selected_

    assert selected(c0 * (1 - 1e-6)) == 0
    assert selected(c0 * (1 + 1e-3)) >= 1


def test_min_c_grouped_refuses_bad_parameters(iris):
    X, y = iris
    with pytest.raises(ValueError, match="l1_ratio > 0"):
        min_c(X, y, l1_ratio=0.0, l1_type="grouped")
    with pytest.raises(ValueError, match="l1_type must be one of"):
        min_c(X, y, l1_type="group")


# -- solvers, estimator and cross-validation ---------------------------------------------


def _problem(X, y, **kw):
    data = InMemoryData(X, y, None, np.unique(y), fit_intercept=True)
    return Problem(data, **kw)


def test_auto_picks_proximal_newton_and_others_refuse_the_group_penalty(iris):
    X, y = iris
    problem = _problem(X, y, C=1.0, l1_ratio=0.5, l1_type="grouped")
    assert resolve_solver("auto", problem).name == "proximal-newton"
    for name in SOLVERS:
        if name == "proximal-newton":
            continue
        with pytest.raises(
            ValueError, match=rf"solver '{name}' cannot do the grouped penalty.*proximal-newton"
        ):
            resolve_solver(name, problem)
    with pytest.raises(ValueError, match="cannot do the grouped penalty"):
        SoftmaxRegression(l1_ratio=1.0, l1_type="grouped", solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="l1_type must be one of"):
        _problem(X, y, l1_type="rows")
    with pytest.raises(ValueError, match="l1_type must be one of"):
        make_penalty(0.5, fit_intercept=True, l1_type="rows")
    with pytest.raises(ValueError, match=r"l1_ratio must be in \[0, 1\]"):
        _problem(X, y, l1_ratio=1.5, l1_type="grouped")


@pytest.mark.parametrize("bad", ["group", None, 1, "Grouped"])
def test_estimators_refuse_an_unknown_l1_type(iris, bad):
    X, y = iris
    with pytest.raises(ValueError, match="l1_type must be one of"):
        SoftmaxRegression(l1_type=bad).fit(X, y)
    with pytest.raises(ValueError, match="l1_type must be one of"):
        SoftmaxRegressionCV(l1_type=bad, Cs=2).fit(X, y)
    with pytest.raises(ValueError, match="l1_type must be one of"):
        regularization_path(X, y, [1.0], l1_type=bad)


def test_partial_fit_refuses_the_group_penalty(iris):
    X, y = iris
    clf = SoftmaxRegression(l1_ratio=0.5, l1_type="grouped")
    with pytest.raises(ValueError, match="partial_fit does not do the grouped penalty"):
        clf.partial_fit(X, y, classes=np.unique(y))
    assert not hasattr(clf, "coef_")


def test_reference_class_with_group_penalty(iris):
    X, y = iris
    clf = SoftmaxRegression(C=0.05, l1_ratio=1.0, l1_type="grouped", reference_class=0, tol=1e-12)
    clf.fit(X, y)
    assert clf.converged_
    np.testing.assert_array_equal(clf.coef_[0], 0.0)
    # KKT on the free rows: the gradient of rows 1..K-1 only
    P = softmax(X @ clf.coef_.T + clf.intercept_, axis=1)
    G = (P - np.eye(3)[y]).T @ X / len(y)
    lam = 1.0 / (0.05 * len(y))
    W = clf.coef_[1:]
    norms = np.linalg.norm(W, axis=0)
    for j in range(X.shape[1]):
        if norms[j] == 0:
            assert np.linalg.norm(G[1:, j]) <= lam + 1e-8
        else:
            np.testing.assert_allclose(G[1:, j], -lam * W[:, j] / norms[j], atol=1e-8)


def test_cv_with_the_group_penalty_scores_each_fold_like_a_plain_loop(digits):
    X, y = digits
    X, y = X[:450], y[:450]
    c0 = min_c(X, y, l1_type="grouped")
    Cs = c0 * np.array([3.0, 30.0, 300.0])
    cv = StratifiedKFold(3)
    model = SoftmaxRegressionCV(Cs=Cs, l1_ratios=[1.0], l1_type="grouped", cv=cv, tol=1e-10).fit(
        X, y
    )
    for f, (train, test) in enumerate(cv.split(X, y)):
        for k, C in enumerate(Cs):
            clf = SoftmaxRegression(C=C, l1_ratio=1.0, l1_type="grouped", tol=1e-10)
            clf.fit(X[train], y[train])
            expected = -log_loss(y[test], clf.predict_proba(X[test]), labels=np.unique(y))
            assert model.scores_[f, 0, k] == pytest.approx(expected, abs=1e-6)
    assert model.estimator_.l1_type == "grouped"
    assert model.n_features_selected_ == model.estimator_.n_features_selected_
    assert model.n_features_selected_ < X.shape[1]


@pytest.mark.parametrize("full_hessian", [True, False])
def test_hessian_products_and_full_hessian_reach_the_same_optimum(iris, full_hessian):
    X, y = iris
    solver = SOLVERS["proximal-newton"].with_options(full_hessian=full_hessian)
    problem = _problem(X, y, C=0.05, l1_ratio=0.9, l1_type="grouped")
    res = solver.solve(problem, tol=1e-12)
    assert res.converged
    W, b = res.coef[:, :-1], res.coef[:, -1]
    zero_viol, nz_viol, icpt, nz = _kkt_residuals(X, y, None, 0.05, 0.9, W, b)
    assert max(zero_viol, nz_viol, icpt) <= 1e-8
    assert 0 < nz.sum() < X.shape[1]
    np.testing.assert_allclose(W.sum(axis=0), 0.0, atol=1e-12)  # the class-sum-zero optimum


def test_float32_rows_fit_the_same_groups(digits):
    X, y = digits
    C = 3 * min_c(X, y, l1_type="grouped")
    f64 = SoftmaxRegression(C=C, l1_ratio=1.0, l1_type="grouped").fit(X, y)
    f32 = SoftmaxRegression(C=C, l1_ratio=1.0, l1_type="grouped").fit(X.astype(np.float32), y)
    assert f32.coef_.dtype == np.float32 and f32.converged_
    np.testing.assert_array_equal(f32.coef_.any(axis=0), f64.coef_.any(axis=0))
    np.testing.assert_allclose(f32.coef_, f64.coef_, atol=2e-4)


def test_grouped_path_on_sparse_and_dask_rows_matches_memory(digits):
    import scipy.sparse as sp

    X, y = digits
    X, y = X[:300], y[:300]
    Cs = min_c(X, y, l1_type="grouped") * np.array([2.0, 20.0])
    assert min_c(sp.csr_matrix(X), y, l1_type="grouped") == pytest.approx(
        min_c(X, y, l1_type="grouped"), rel=1e-12
    )
    kw = {"l1_ratio": 1.0, "l1_type": "grouped", "tol": 1e-10}
    memory = regularization_path(X, y, Cs, **kw)
    sparse = regularization_path(sp.csr_matrix(X), y, Cs, **kw)
    np.testing.assert_allclose(sparse.objectives, memory.objectives, rtol=1e-10)
    np.testing.assert_array_equal(sparse.n_features_selected, memory.n_features_selected)
    da = pytest.importorskip("dask.array")
    dask = regularization_path(
        da.from_array(X, chunks=100), da.from_array(y, chunks=100), Cs, **kw
    )
    np.testing.assert_allclose(dask.objectives, memory.objectives, rtol=1e-10)
    np.testing.assert_array_equal(dask.n_features_selected, memory.n_features_selected)


def test_two_classes_equal_sklearn_binary_lasso_at_scaled_c():
    """K = 2: the optimum has w_1 = -w_0 = beta / 2, so ``sum_j ||W_j|| = ||beta||_1 / sqrt 2``.

    The grouped objective ``C sum CE + sum_j ||W_j||`` is then scikit-learn's
    binary L1 objective ``C' sum CE + ||beta||_1`` with ``C' = sqrt(2) C``.
    """
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    C = 3 * min_c(X, y, l1_type="grouped")
    ours = SoftmaxRegression(C=C, l1_ratio=1.0, l1_type="grouped", tol=1e-12).fit(X, y)
    ref = LogisticRegression(C=np.sqrt(2) * C, l1_ratio=1.0, solver="saga", tol=1e-12,
                             max_iter=100_000).fit(X, y)  # fmt: skip
    beta = ours.coef_[1] - ours.coef_[0]
    np.testing.assert_allclose(beta, ref.coef_[0], atol=1e-5)
    np.testing.assert_array_equal(beta != 0, ref.coef_[0] != 0)
    assert not np.signbit(ours.coef_[ours.coef_ == 0]).any()  # zeros are +0.0
