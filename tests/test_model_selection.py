"""Model selection: min_c, the regularisation path, SoftmaxRegressionCV, their plots.

References: scikit-learn's ``l1_min_c`` (binary, no intercept), finite
differences of an independent log-softmax loss, cold fits of
SoftmaxRegression at each C, and ``LogisticRegressionCV`` on the same folds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from softmax import SoftmaxRegression, SoftmaxRegressionCV, min_c, regularization_path


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(X[:600] / 16.0), y[:600]


# -- min_c ------------------------------------------------------------------------


def _weighted_ce(X, y, w, W, b):
    """sum_i w_i CE(y_i, softmax(W x_i + b)), written independently of softmax."""
    logp = log_softmax(X @ W.T + b, axis=1)
    return -float(w @ logp[np.arange(len(y)), y])


def test_min_c_equals_sklearn_l1_min_c_for_two_classes_without_intercept(digits):
    from sklearn.svm import l1_min_c

    X, y = digits
    mask = (y == 3) | (y == 8)
    # symmetric two-class model with L1 = LogisticRegression with the same C
    ours = min_c(X[mask], y[mask], fit_intercept=False)
    assert ours == pytest.approx(l1_min_c(X[mask], y[mask], loss="log", fit_intercept=False))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_min_c_is_one_over_the_largest_gradient_entry_at_zero(digits, fit_intercept):
    X, y = digits
    K = 10
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    if fit_intercept:  # the best intercepts at W = 0: log class frequencies
        freq = np.bincount(y, weights=w, minlength=K) / w.sum()
        b = np.log(freq)
    else:
        b = np.zeros(K)
    W0 = np.zeros((K, X.shape[1]))
    # central differences of the independent loss, entry by entry (on a subset
    # of entries: the largest one is found by the formula and checked here)
    h = 1e-6
    grad = np.empty_like(W0)
    for k in range(K):
        for j in range(X.shape[1]):
            E = np.zeros_like(W0)
            E[k, j] = h
            grad[k, j] = (_weighted_ce(X, y, w, E, b) - _weighted_ce(X, y, w, -E, b)) / (2 * h)
    expected = 1.0 / np.abs(grad).max()
    got = min_c(X, y, sample_weight=w, fit_intercept=fit_intercept)
    assert got == pytest.approx(expected, rel=1e-6)
    assert min_c(X, y, l1_ratio=0.3, sample_weight=w, fit_intercept=fit_intercept) == (
        pytest.approx(0.3 * expected, rel=1e-6)
    )


@pytest.mark.parametrize(
    ("l1_ratio", "fit_intercept", "class_weight"),
    [(1.0, True, None), (0.5, True, "balanced"), (1.0, False, None)],
)
def test_fits_are_all_zero_just_below_min_c_and_not_just_above(
    digits, l1_ratio, fit_intercept, class_weight
):
    X, y = digits
    c0 = min_c(X, y, l1_ratio=l1_ratio, fit_intercept=fit_intercept, class_weight=class_weight)
    kwargs = {"l1_ratio": l1_ratio, "fit_intercept": fit_intercept, "class_weight": class_weight}
    below = SoftmaxRegression(C=0.999 * c0, tol=1e-10, **kwargs).fit(X, y)
    above = SoftmaxRegression(C=1.01 * c0, tol=1e-10, **kwargs).fit(X, y)
    assert below.converged_ and above.converged_
    assert not below.coef_.any()
    assert above.coef_.any()


def test_min_c_rejects_what_has_no_answer(digits):
    X, y = digits
    with pytest.raises(ValueError, match="l1_ratio > 0"):
        min_c(X, y, l1_ratio=0.0)
    with pytest.raises(ValueError, match="Ill-posed"):
        min_c(np.ones((20, 3)), np.arange(20) % 2)  # constant features, balanced classes
    with pytest.raises(ValueError, match="one class"):
        min_c(X, np.zeros(len(y)))


# -- the path ---------------------------------------------------------------------


def test_path_points_are_the_estimators_optima(digits):
    X, y = digits
    X_before = X.copy()
    Cs = [10.0, 0.01, 1.0, 0.1]  # unsorted on purpose
    path = regularization_path(X, y, Cs, tol=1e-10)
    np.testing.assert_array_equal(path.Cs, np.sort(Cs))
    np.testing.assert_array_equal(X, X_before)  # the caller's array is untouched
    assert path.coefs.shape == (4, 10, 64) and path.intercepts.shape == (4, 10)
    assert path.converged.all()
    for i, C in enumerate(path.Cs):
        cold = SoftmaxRegression(C=C, tol=1e-10).fit(X, y)
        # tol is a relative objective gap: 1e-10 leaves weights accurate to ~1e-4
        assert path.objectives[i] == pytest.approx(cold.objective_, rel=1e-9)
        np.testing.assert_allclose(path.coefs[i], cold.coef_, atol=2e-4)


def test_path_warm_starts_save_iterations(digits):
    X, y = digits
    Cs = np.logspace(-2, 2, 7)
    path = regularization_path(X, y, Cs, solver="lbfgs", tol=1e-8)
    cold = [SoftmaxRegression(C=C, solver="lbfgs", tol=1e-8).fit(X, y).n_iter_ for C in Cs]
    # 211 against 252 here; the cold fits' count fell from 285 when the
    # solvers began to keep the class sums at zero (issue 15), the path's did not
    assert path.n_iter.sum() < 0.9 * sum(cold)


def test_path_uses_newton_cg_where_the_penalty_dominates(digits):
    """``solver="auto"``: Newton-CG along the path (the documented rule), sklearn's optima.

    Diagonal preconditioner up to the condition bound, class blocks above it
    (at most PATH_BLOCKS_MAX_FEATURES features, else "auto").
    """
    from sklearn.linear_model import LogisticRegression

    from softmax import model_selection as ms
    from softmax.solvers.newton_cg import NewtonCG

    X, y = digits
    Cs = np.logspace(-4, 4, 7)
    Xt = np.column_stack([X, np.ones(len(X))])
    bound = 0.5 * Cs * np.linalg.eigvalsh(Xt.T @ Xt)[-1]
    model = SoftmaxRegression()
    chosen = ms._path_solvers(model, X, y, None, Cs)
    small = bound <= ms.PATH_NEWTON_CG_MAX_CONDITION
    assert small[0] and not small[-1]
    for c, below in zip(chosen, small):
        if below:
            assert c == "newton-cg"
        else:
            assert isinstance(c, NewtonCG) and c.preconditioner == "blocks"
    # wider than PATH_BLOCKS_MAX_FEATURES: "auto" above the bound
    wide = np.hstack([X, X[:, ::-1], X[:, :40]])
    assert wide.shape[1] > ms.PATH_BLOCKS_MAX_FEATURES
    wide_chosen = ms._path_solvers(model, wide, y, None, Cs)
    assert wide_chosen[-1] == "auto" and wide_chosen[0] == "newton-cg"
    # not for explicit solvers, L1, or problems "auto" gives the full Newton
    assert ms._path_solvers(SoftmaxRegression(solver="lbfgs"), X, y, None, Cs) is None
    assert ms._path_solvers(SoftmaxRegression(l1_ratio=0.5), X, y, None, Cs) is None
    assert ms._path_solvers(model, X[:, :5], y % 3, None, Cs) is None
    path = regularization_path(X, y, Cs, tol=1e-10)
    assert not hasattr(model, "_path_solver")
    for i, C in enumerate(Cs):
        ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        ref.fit(X, y)
        # Newton's last step lands on the optimum (relative to the weights' size)
        scale = max(1.0, float(np.abs(ref.coef_).max()))
        np.testing.assert_allclose(path.coefs[i], ref.coef_, atol=1e-6 * scale)
        np.testing.assert_allclose(path.intercepts[i], ref.intercept_, atol=1e-6 * scale)


def test_class_block_newton_cg_reaches_sklearn_optimum(digits):
    """NewtonCG(preconditioner="blocks") at weak penalties, cold and warm, against sklearn."""
    from sklearn.linear_model import LogisticRegression

    from softmax.solvers import SOLVERS, Problem
    from softmax.solvers.newton_cg import NewtonCG

    X, y = digits
    classes, codes = np.unique(y, return_inverse=True)
    from softmax.backends.memory import InMemoryData

    data = InMemoryData(X, codes, None, classes, fit_intercept=True)
    solver = SOLVERS["newton-cg"].with_options(preconditioner="blocks")
    prev = None
    for C in (1.0, 100.0, 1e4):
        ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        ref.fit(X, y)
        res = solver.solve(Problem(data, C=C), prev, tol=1e-10, max_iter=100)
        assert res.converged, res.message
        assert res.n_iter <= 15
        scale = max(1.0, float(np.abs(ref.coef_).max()))
        np.testing.assert_allclose(res.coef[:, :-1], ref.coef_, atol=1e-6 * scale)
        np.testing.assert_allclose(res.coef[:, -1], ref.intercept_, atol=1e-6 * scale)
        prev = res.coef  # the same rows object: the feature factor is built once
    with pytest.raises(ValueError, match="preconditioner"):
        NewtonCG(preconditioner="kronecker")


def test_feature_factor_is_kept_on_the_rows(digits):
    """Objectives on the same rows share the feature factor; a new rows object recomputes it."""
    from softmax.backends.memory import InMemoryData
    from softmax.solvers import Problem
    from softmax.solvers._base import Objective
    from softmax.solvers._preconditioners import _feature_factor

    X, y = digits
    classes, codes = np.unique(y, return_inverse=True)
    data = InMemoryData(X, codes, None, classes, fit_intercept=True)
    first = _feature_factor(Objective(Problem(data, C=1.0)))
    again = Objective(Problem(data, C=100.0))
    assert again.feature_factor is not None and again.feature_factor[2] is first[2]
    fresh = _feature_factor(
        Objective(Problem(InMemoryData(X, codes, None, classes, fit_intercept=True), C=1.0))
    )
    assert fresh[2] is not first[2]
    # what it is: the eigendecomposition of the centred feature covariance
    mean, lam, U, _ = first
    np.testing.assert_allclose(mean, X.mean(axis=0), atol=1e-12)
    cov = np.cov(X, rowvar=False, bias=True)
    np.testing.assert_allclose((U * lam) @ U.T, cov, atol=1e-10)


def test_floored_block_inverses_match_the_eigendecomposition():
    """_inverse_blocks: the inverse of well-posed blocks; singular ones stay finite."""
    from softmax.solvers._preconditioners import _inverse_blocks

    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 30, 6))
    blocks = np.einsum("kij,kil->kjl", A, A) + 1e-3 * np.eye(6)
    np.testing.assert_allclose(
        _inverse_blocks(blocks), np.linalg.inv(blocks), rtol=1e-8, atol=1e-10
    )
    singular = np.zeros((2, 4, 4))
    singular[:, 0, 0] = 2.0  # rank one: the other directions get a large, finite inverse
    inv = _inverse_blocks(singular)
    assert np.isfinite(inv).all()
    assert inv[0, 0, 0] == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("l1_type", ["elementwise", "grouped"])
def test_smoothed_paths_start_at_the_smoothed_min_c(digits, l1_type):
    """label_smoothing: min_c(..., label_smoothing=eps) is where the path and the CV folds start.

    regularization_path and every fold of SoftmaxRegressionCV fit the smoothed
    objective: all weights zero just below the smoothed min_c of their rows,
    some non-zero just above it, and still zero above the unsmoothed min_c
    (which is smaller by about 1 / (1 - eps)).
    """
    X, y = digits
    X, y = X[:300], y[:300]
    eps = 0.3
    kw = {"l1_ratio": 1.0, "l1_type": l1_type}
    c0 = min_c(X, y, label_smoothing=eps, **kw)
    plain = min_c(X, y, **kw)
    assert plain * 1.2 < c0
    path = regularization_path(
        X, y, [plain * 1.1, c0 * 0.999, c0 * 1.1], label_smoothing=eps, tol=1e-8, **kw
    )
    assert path.n_features_selected.tolist()[:2] == [0, 0]
    assert path.n_features_selected[2] > 0
    folds = list(StratifiedKFold(3).split(X, y))
    fold_c = [min_c(X[tr], y[tr], label_smoothing=eps, **kw) for tr, _ in folds]
    fold_plain = [min_c(X[tr], y[tr], **kw) for tr, _ in folds]
    Cs = [max(fold_plain) * 1.05, min(fold_c) * 0.999, max(fold_c) * 1.1]
    assert Cs[0] < Cs[1]
    cv = SoftmaxRegressionCV(
        Cs=Cs, cv=folds, l1_ratios=(1.0,), l1_type=l1_type, label_smoothing=eps, tol=1e-8
    ).fit(X, y)
    weights = cv.coefs_paths_[:, 0, :, :, :-1]  # (folds, Cs, classes, features)
    assert not weights[:, :2].any()
    assert all(weights[f, 2].any() for f in range(len(folds)))


def test_l1_path_starts_empty_at_min_c(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    c0 = min_c(X, y)
    # at exactly c0 rounding may leave one weight at ~1e-17: start just below
    path = regularization_path(X, y, c0 * np.array([0.999, 2.0, 6.0]), l1_ratio=1.0, tol=1e-6)
    assert path.n_features_selected[0] == 0
    assert 0 < path.n_features_selected[1] <= path.n_features_selected[2]
    expected = (path.coefs != 0).any(axis=1).sum(axis=1)
    np.testing.assert_array_equal(path.n_features_selected, expected)


def test_path_default_grid_and_bad_grids(digits):
    X, y = digits
    path = regularization_path(X[:200], y[:200], 3, tol=1e-6)
    np.testing.assert_allclose(path.Cs, np.logspace(-4, 4, 3))
    for bad in ([], [1.0, -1.0], [np.nan], 0, "many"):
        with pytest.raises(ValueError, match="Cs"):
            regularization_path(X, y, bad)


def test_path_reports_unconverged_values_once(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="C = ") as record:
        regularization_path(X, y, [1e3, 1e4], solver="lbfgs", max_iter=3)
    assert len([w for w in record if issubclass(w.category, ConvergenceWarning)]) == 1


# -- cross-validation ---------------------------------------------------------------


def _lrcv(X, y, **params):
    """LogisticRegressionCV converged tightly (one thread: its OpenMP loss is slow
    on a shared machine)."""
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", FutureWarning)
        return LogisticRegressionCV(
            l1_ratios=(0.0,), tol=1e-10, max_iter=10_000, use_legacy_attributes=False, **params
        ).fit(X, y)


@pytest.fixture(scope="module")
def lrcv_digits(digits):
    X, y = digits
    Cs = np.logspace(-2, 1, 4)  # where both reach their optimum quickly
    return Cs, _lrcv(X, y, Cs=Cs, cv=3, scoring="neg_log_loss")


def test_cv_matches_logistic_regression_cv(digits, lrcv_digits):
    X, y = digits
    Cs, ref = lrcv_digits
    ours = SoftmaxRegressionCV(Cs=Cs, cv=3, tol=1e-10).fit(X, y)
    assert ours.scores_.shape == ref.scores_.shape == (3, 1, 4)
    np.testing.assert_allclose(ours.scores_, ref.scores_, atol=1e-6)
    assert ours.C_ == ref.C_
    assert ours.coefs_paths_.shape == ref.coefs_paths_.shape == (3, 1, 4, 10, 65)
    np.testing.assert_allclose(ours.coefs_paths_, ref.coefs_paths_, atol=2e-4)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-4)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(ours.Cs_, ref.Cs_)


def test_cv_accuracy_scores_match_logistic_regression_cv_paths(digits, lrcv_digits):
    X, y = digits
    Cs, ref = lrcv_digits
    ours = SoftmaxRegressionCV(Cs=Cs, cv=3, tol=1e-10, scoring="accuracy").fit(X, y)
    # accuracy of scikit-learn's fold coefficients on the same held-out rows
    for f, (_, test) in enumerate(StratifiedKFold(3).split(X, y)):
        for j in range(len(Cs)):
            coef = ref.coefs_paths_[f, 0, j]
            pred = np.argmax(X[test] @ coef[:, :-1].T + coef[:, -1], axis=1)
            assert ours.scores_[f, 0, j] == pytest.approx((pred == y[test]).mean(), abs=1e-12)


@pytest.mark.parametrize("scoring", ["neg_log_loss", "accuracy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_scores_equal_sklearn_scorers(digits, scoring, dtype):
    from sklearn.metrics import get_scorer

    from softmax.model_selection import _FastScore

    X, y = digits
    X = X.astype(dtype)
    w = np.random.default_rng(0).uniform(0, 2, 200)
    for C in (1e-3, 1e4):  # near-uniform, and over-confident (clipped) probabilities
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = SoftmaxRegression(C=C, max_iter=300).fit(X[:400], y[:400])
        for sw in (None, w):
            ours = _FastScore(scoring, y[400:], np.arange(10), sw)(model, X[400:])
            kwargs = {} if sw is None else {"sample_weight": sw}
            ref = get_scorer(scoring)(model, X[400:], y[400:], **kwargs)
            # scikit-learn sums float32 losses in float32; ours in float64
            assert ours == pytest.approx(ref, abs=0 if dtype == np.float64 else 1e-6)


def test_cv_refit_false_averages_like_logistic_regression_cv(digits):
    X, y = digits
    Cs = np.logspace(-2, 1, 4)
    ref = _lrcv(X, y, Cs=Cs, cv=3, scoring="neg_log_loss", refit=False)
    ours = SoftmaxRegressionCV(Cs=Cs, cv=3, tol=1e-10, refit=False).fit(X, y)
    assert pytest.approx(ref.C_) == ours.C_
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-4)


def test_one_standard_error_rule(digits):
    X, y = digits
    Cs = np.logspace(-3, 3, 7)
    best = SoftmaxRegressionCV(Cs=Cs, cv=4, tol=1e-8).fit(X, y)
    onese = SoftmaxRegressionCV(Cs=Cs, cv=4, tol=1e-8, select="1se").fit(X, y)
    np.testing.assert_allclose(onese.scores_, best.scores_)
    # the rule computed independently from the fold scores
    scores = best.scores_[:, 0, :]
    mean = scores.mean(axis=0)
    se = scores.std(axis=0, ddof=1) / np.sqrt(scores.shape[0])
    b = int(np.argmax(mean))
    expected = min(C for C, m in zip(Cs, mean) if m >= mean[b] - se[b])
    assert expected == onese.C_
    assert onese.C_ <= best.C_ == Cs[b]
    # refitted on all rows at that C: the optimum a plain fit finds
    cold = SoftmaxRegression(C=expected, tol=1e-8).fit(X, y)
    assert expected == onese.estimator_.C
    assert onese.estimator_.objective_ == pytest.approx(cold.objective_, rel=1e-7)


def test_cv_parallel_folds_give_the_same_result(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    one = SoftmaxRegressionCV(Cs=4, cv=3).fit(X, y)
    two = SoftmaxRegressionCV(Cs=4, cv=3, n_jobs=2).fit(X, y)
    # the same fits, to the solver's tolerance: the worker processes may round
    # differently (e.g. compiled kernels loaded in this process and not there)
    np.testing.assert_allclose(one.scores_, two.scores_, rtol=0, atol=1e-7)
    assert one.C_ == two.C_
    np.testing.assert_allclose(one.predict_proba(X), two.predict_proba(X), atol=1e-5)


def test_cv_several_l1_ratios(digits):
    X, y = digits
    X = X[:300]
    y = y[:300]
    clf = SoftmaxRegressionCV(Cs=[0.1, 1.0], l1_ratios=[0.0, 0.5], cv=3, tol=1e-6).fit(X, y)
    assert clf.scores_.shape == (3, 2, 2) and clf.n_iter_.shape == (3, 2, 2)
    assert clf.coefs_paths_.shape == (3, 2, 2, 10, 65)
    mean = clf.scores_.mean(axis=0)
    l1, c = np.unravel_index(np.argmax(mean), mean.shape)
    assert (clf.l1_ratio_, clf.C_) == (clf.l1_ratios_[l1], clf.Cs_[c])
    assert clf.best_index_ == (l1, c)


def test_cv_class_missing_from_a_training_fold(digits):
    X, y = digits
    X, y = X[:200], y[:200].copy()
    y[y == 9] = 8
    y[5] = 9  # class 9: one row, which only the second fold holds out
    idx = np.arange(200)
    cv = [(idx[idx >= 100], idx[idx < 100]), (idx[idx < 100], idx[idx >= 100])]
    clf = SoftmaxRegressionCV(Cs=[0.1, 1.0], cv=cv, tol=1e-6).fit(X, y)
    assert clf.coefs_paths_.shape == (2, 1, 2, 10, 65)
    # the fold that never saw class 9 gives it (next to) no probability
    fold = SoftmaxRegression(C=1.0).fit(X[100:], y[100:])
    assert 9 not in fold.classes_
    assert np.isfinite(clf.scores_).all()
    assert (clf.coefs_paths_[0, 0, :, 9, -1] < clf.coefs_paths_[0, 0, :, :9, -1].min() - 5).all()


def test_cv_groups_and_sample_weight(digits):
    X, y = digits
    groups = np.arange(len(y)) % 4
    w = np.random.default_rng(0).integers(1, 3, size=len(y)).astype(float)
    clf = SoftmaxRegressionCV(Cs=[0.1, 1.0], cv=GroupKFold(4), tol=1e-10)
    clf.fit(X, y, sample_weight=w, groups=groups)
    for f, (train, test) in enumerate(GroupKFold(4).split(X, y, groups)):
        fold = SoftmaxRegression(C=1.0, tol=1e-10).fit(X[train], y[train], sample_weight=w[train])
        expected = -log_loss(y[test], fold.predict_proba(X[test]), sample_weight=w[test])
        assert clf.scores_[f, 0, 1] == pytest.approx(expected, abs=1e-6)


def test_cv_score_uses_the_scoring(digits):
    X, y = digits
    clf = SoftmaxRegressionCV(Cs=3, cv=3).fit(X, y)
    assert clf.score(X, y) == pytest.approx(-log_loss(y, clf.predict_proba(X)))
    acc = SoftmaxRegressionCV(Cs=3, cv=3, scoring="accuracy").fit(X, y)
    assert acc.score(X, y) == pytest.approx((acc.predict(X) == y).mean())


def test_cv_bad_parameters(digits):
    X, y = digits
    for params, match in [
        ({"select": "2se"}, "select"),
        ({"l1_ratios": None}, "l1_ratios"),
        ({"l1_ratios": [1.5]}, "l1_ratios"),
        ({"Cs": [-1.0]}, "Cs"),
        ({"solver": "bogus"}, "solver"),
        ({"refit": "yes"}, "refit"),
    ]:
        with pytest.raises(ValueError, match=match):
            SoftmaxRegressionCV(**params).fit(X, y)


def test_cv_refuses_out_of_core_input(digits):
    da = pytest.importorskip("dask.array")
    X, y = digits
    with pytest.raises(TypeError, match="in memory"):
        SoftmaxRegressionCV(Cs=2).fit(da.from_array(X, chunks=200), y)


@pytest.fixture(autouse=False)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


@parametrize_with_checks([SoftmaxRegressionCV(Cs=3, cv=3)])
def test_sklearn_estimator_checks(estimator, check, _one_blas_thread):
    check(estimator)


# -- plots ------------------------------------------------------------------------


def test_plots_are_written(digits, tmp_path):
    pytest.importorskip("matplotlib")
    from softmax.plotting import plot_cv_scores, plot_regularization_path

    X, y = digits
    X, y = X[:300], y[:300]
    c0 = min_c(X, y)
    path = regularization_path(X, y, c0 * np.array([1.0, 2.0, 4.0]), l1_ratio=1.0, tol=1e-4)
    for kind in ("feature_norms", "coefficients"):
        fig = plot_regularization_path(path, kind=kind, path=tmp_path / f"{kind}.png")
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000
        assert len(fig.axes) == 2  # the count of features in use below an L1 path
    clf = SoftmaxRegressionCV(Cs=3, cv=3).fit(X, y)
    fig = plot_cv_scores(clf, path=tmp_path / "cv.svg")
    assert (tmp_path / "cv.svg").read_text().startswith("<?xml")
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), clf.scores_[:, 0, :].mean(axis=0))
    with pytest.raises(ValueError, match="do not match"):
        plot_cv_scores(Cs=[1.0, 2.0], scores=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="kind"):
        plot_regularization_path(path, kind="bars")


# -- the MNIST recipe (examples/mnist_random_features.py) ---------------------------


@pytest.fixture(scope="module")
def recipe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "mnist_random_features.py"
    spec = importlib.util.spec_from_file_location("mnist_random_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ink_covariance(images):
    r, c = np.mgrid[:28, :28]
    total = images.sum(axis=(1, 2))
    mr = (images * r).sum(axis=(1, 2)) / total
    mc = (images * c).sum(axis=(1, 2)) / total
    return (images * (r - mr[:, None, None]) * (c - mc[:, None, None])).sum(axis=(1, 2)) / total


def test_recipe_deskew_removes_the_slant(recipe):
    from softmax.datasets import load_mnist_sample

    X, _ = load_mnist_sample(return_X_y=True, scale=True)
    X = X[:200]
    before = np.abs(_ink_covariance(X.reshape(-1, 28, 28)))
    after = np.abs(_ink_covariance(recipe.deskew(X).reshape(-1, 28, 28)))
    assert np.median(after) < 0.2 * np.median(before)
    with pytest.raises(ValueError, match="784"):
        recipe.deskew(np.zeros((2, 10)))


def test_recipe_pipeline_on_a_small_split(recipe):
    from softmax.datasets import load_mnist_sample

    X, y = load_mnist_sample(return_X_y=True, scale=True)
    model = recipe.build_pipeline(gamma=0.04, n_components=200, Cs=[1.0, 100.0], cv=3, n_jobs=1)
    model.fit(X[:1500], y[:1500])
    assert (model.predict(X[-500:]) == y[-500:]).mean() > 0.9


def test_min_c_and_path_on_sparse_rows(digits):
    import scipy.sparse as sp

    X, y = digits
    Xs = sp.csr_matrix(X)
    assert min_c(Xs, y, l1_ratio=0.5) == pytest.approx(min_c(X, y, l1_ratio=0.5), rel=1e-12)
    dense = regularization_path(X, y, [0.1, 1.0], solver="lbfgs", tol=1e-9)
    sparse = regularization_path(Xs, y, [0.1, 1.0], solver="lbfgs", tol=1e-9)
    np.testing.assert_allclose(sparse.objectives, dense.objectives, rtol=1e-8)


def test_path_passes_out_of_core_rows_to_the_estimator(digits):
    da = pytest.importorskip("dask.array")
    X, y = digits
    X, y = X[:300], y[:300]
    memory = regularization_path(X, y, [0.1, 1.0], solver="lbfgs", tol=1e-9)
    dask = regularization_path(
        da.from_array(X, chunks=100),
        da.from_array(y, chunks=100),
        [0.1, 1.0],
        solver="lbfgs",
        tol=1e-9,
    )
    np.testing.assert_allclose(dask.objectives, memory.objectives, rtol=1e-8)
    with pytest.raises(TypeError, match="in memory"):
        min_c(da.from_array(X, chunks=100), y)
