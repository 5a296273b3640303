"""Tests of softmax.inference against statsmodels' MNLogit and other references.

The model is fitted without a penalty (C=np.inf) at the default tol: Newton's
last step puts the coefficients on statsmodels' Newton optimum to about 4e-8
(relative) on anes96, so everything computed from them is compared at 1e-6.
Independent references: statsmodels, duplicated rows for integer weights,
finite differences of the loss gradient (an independent code path) for the
information.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

import softmax
from softmax import (
    InferenceResults,
    SeparationWarning,
    SoftmaxRegression,
    check_separation,
    inference,
    lr_test,
)

sm = pytest.importorskip("statsmodels.api")

RTOL = 1e-6


@pytest.fixture(scope="module")
def anes():
    data = sm.datasets.anes96.load_pandas()
    X, y = data.exog, data.endog
    model = sm.MNLogit(y, sm.add_constant(X, prepend=False))
    clf = SoftmaxRegression(C=np.inf).fit(X, y)  # the default tol
    return X, y, model, model.fit(disp=0), clf


def sm_array(frame):
    """statsmodels' (n_exog, K - 1) params frame as our (K - 1, n_terms) array."""
    return np.asarray(frame).T


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1)))


# -- agreement with statsmodels -------------------------------------------------------


def test_matches_mnlogit(anes):
    X, y, _, ref, clf = anes
    res = inference(clf, X, y)
    assert res.term_names == [*X.columns, "intercept"]
    assert res.classes.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert res.reference == 0.0
    np.testing.assert_allclose(res.params, sm_array(ref.params), rtol=RTOL)
    np.testing.assert_allclose(res.bse, sm_array(ref.bse), rtol=RTOL)
    np.testing.assert_allclose(res.tvalues, sm_array(ref.tvalues), rtol=RTOL)
    np.testing.assert_allclose(res.pvalues, sm_array(ref.pvalues), rtol=RTOL)
    for name in ("llf", "llr", "llr_pvalue", "aic", "bic", "prsquared", "df_model", "df_resid"):
        assert getattr(res, name) == pytest.approx(getattr(ref, name), rel=RTOL), name
    assert res.nobs == ref.nobs
    # statsmodels fits the null model iteratively; ours is the closed form
    counts = np.bincount(y.astype(int))
    assert res.llnull == pytest.approx(np.sum(counts * np.log(counts / counts.sum())), rel=1e-12)
    assert res.llnull == pytest.approx(ref.llnull, rel=1e-8)
    cov = np.asarray(ref.cov_params())
    np.testing.assert_allclose(res.cov_params(), cov, rtol=RTOL, atol=RTOL * np.abs(cov).max())
    ci = np.asarray(ref.conf_int()).reshape(6, 6, 2)
    np.testing.assert_allclose(res.conf_int(), ci, rtol=RTOL, atol=1e-9)
    assert res.newton_step_se < 1e-5
    assert not res.separation.separated
    assert not res.penalized and re.search(r"Method: +MLE ", res.summary())


@pytest.mark.parametrize("cov_type", ["HC0", "HC1"])
def test_sandwich_matches_statsmodels(anes, cov_type):
    from statsmodels.stats.sandwich_covariance import cov_white_simple

    X, y, model, _, clf = anes
    res = inference(clf, X, y, cov_type=cov_type)
    if cov_type == "HC0":
        expected = np.asarray(model.fit(disp=0, cov_type="HC0").cov_params())
    else:
        # MNLogit's "HC1" is HC0 (it has no cov_HC1); statsmodels' own
        # small-sample sandwich is cov_white_simple(use_correction=True)
        expected = cov_white_simple(model.fit(disp=0), use_correction=True)
    np.testing.assert_allclose(
        res.cov_params(), expected, rtol=RTOL, atol=RTOL * np.abs(expected).max()
    )
    np.testing.assert_allclose(res.bse.ravel(), np.sqrt(np.diag(expected)), rtol=RTOL)


def test_cluster_matches_statsmodels(anes):
    X, y, model, _, clf = anes
    codes = np.random.default_rng(0).integers(0, 40, len(y))
    labels = np.array([f"g{c:02d}" for c in codes])  # any sortable labels
    ref = model.fit(disp=0, cov_type="cluster", cov_kwds={"groups": codes})
    res = inference(clf, X, y, cov_type="cluster", groups=labels)
    assert res.n_groups == 40
    np.testing.assert_allclose(res.bse, sm_array(ref.bse), rtol=RTOL)
    np.testing.assert_allclose(res.tvalues, sm_array(ref.tvalues), rtol=RTOL)
    # a p-value's relative error is about z^2 times that of z: 1e-36 here
    np.testing.assert_allclose(res.pvalues, sm_array(ref.pvalues), rtol=1e-5)


def test_marginal_effects_match_statsmodels(anes):
    X, y, _, ref, clf = anes
    me_ref = ref.get_margeff(at="overall", method="dydx")
    me = inference(clf, X, y).marginal_effects()
    assert me.term_names == list(X.columns)
    assert me.classes.tolist() == list(range(7))
    np.testing.assert_allclose(me.effects, me_ref.margeff.T, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(me.bse, me_ref.margeff_se.T, rtol=RTOL)
    np.testing.assert_allclose(me.pvalues, me_ref.pvalues.T, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(me.effects.sum(axis=0), 0, atol=1e-12)  # probabilities sum to 1
    frame = me.to_frame()
    assert len(frame) == 7 * 5 and set(frame.columns) >= {"class", "term", "dy_dx", "std_err"}
    assert "dy/dx" in me.summary()


def test_wald_tests_match_statsmodels(anes):
    X, y, _, ref, clf = anes
    res = inference(clf, X, y)
    T = len(res.term_names)
    # the income coefficients of every class vs 0
    R = np.zeros((6, res.k_params))
    R[np.arange(6), np.arange(6) * T + res.term_names.index("income")] = 1
    expected = ref.wald_test(R, scalar=True)
    got = res.wald_test("income")
    assert got.df == 6
    assert got.statistic == pytest.approx(float(expected.statistic), rel=RTOL)
    assert got.pvalue == pytest.approx(float(expected.pvalue), rel=RTOL)
    assert res.wald_test(R=R).statistic == pytest.approx(got.statistic, rel=1e-12)
    # two terms in two classes, and a general restriction with a value
    sub = res.wald_test(["age", "educ"], classes=[2.0, 5.0])
    rows = [1 * T + 2, 1 * T + 3, 4 * T + 2, 4 * T + 3]
    R2 = np.eye(res.k_params)[rows]
    assert sub.df == 4
    assert sub.statistic == pytest.approx(
        float(ref.wald_test(R2, scalar=True).statistic), rel=RTOL
    )
    R3 = np.eye(res.k_params)[[0, T]] - np.eye(res.k_params)[[T, 2 * T]]
    value = np.array([0.01, -0.02])
    e3 = ref.wald_test((R3, value), scalar=True)
    assert res.wald_test(R=R3, value=value).statistic == pytest.approx(
        float(e3.statistic), rel=RTOL
    )


def test_lr_test_matches_statsmodels(anes):
    X, y, _, ref, clf = anes
    cols = ["logpopul", "selfLR", "age", "educ"]
    ref_small = sm.MNLogit(y, sm.add_constant(X[cols], prepend=False)).fit(disp=0)
    small = SoftmaxRegression(C=np.inf).fit(X[cols], y)
    full_res, small_res = inference(clf, X, y), inference(small, X[cols], y)
    expected = 2 * (ref.llf - ref_small.llf)
    got = lr_test(full_res, small_res)
    assert got.df == 6
    assert got.statistic == pytest.approx(expected, rel=1e-5)
    from scipy.stats import chi2

    assert got.pvalue == pytest.approx(chi2.sf(expected, 6), rel=1e-5)
    assert full_res.lr_test(small_res) == got
    with pytest.raises(ValueError, match="not nested"):
        lr_test(small_res, full_res)
    with pytest.raises(ValueError, match="larger model first"):
        lr_test(full_res, full_res)
    with pytest.warns(UserWarning, match="not at the optimum"):
        other_rows = inference(clf, X.iloc[:-10], y.iloc[:-10], check_separation=False)
    with pytest.raises(ValueError, match="different rows"):
        lr_test(other_rows, small_res)


def test_reference_class(anes):
    """reference= picks any class; statsmodels needs the labels recoded for it."""
    X, y, _, _, clf = anes
    recoded = y.replace(6.0, -1.0)  # 6 sorts first: statsmodels' reference
    ref = sm.MNLogit(recoded, sm.add_constant(X, prepend=False)).fit(disp=0)
    res = inference(clf, X, y, reference=6.0)
    assert res.reference == 6.0
    assert res.classes.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(res.params, sm_array(ref.params), rtol=RTOL)
    np.testing.assert_allclose(res.bse, sm_array(ref.bse), rtol=RTOL)
    # the likelihood does not depend on the reference
    assert res.llf == pytest.approx(inference(clf, X, y).llf, rel=1e-13)
    # fitted in that parametrisation: the reference is the default, the
    # coefficients are the fit's own rows
    fitted = SoftmaxRegression(C=np.inf, reference_class=6.0).fit(X, y)
    assert not fitted.coef_[6].any() and fitted.intercept_[6] == 0
    res6 = inference(fitted, X, y)
    assert res6.reference == 6.0
    np.testing.assert_allclose(res6.params, sm_array(ref.params), rtol=RTOL)
    np.testing.assert_allclose(res6.bse, sm_array(ref.bse), rtol=RTOL)
    np.testing.assert_allclose(res6.params[:, :-1], fitted.coef_[:6], rtol=1e-12)


def test_without_intercept_matches_statsmodels(anes):
    X, y, _, _, _ = anes
    ref = sm.MNLogit(y, X).fit(disp=0)
    # the default tol: the Newton solver takes its last step
    clf = SoftmaxRegression(C=np.inf, fit_intercept=False).fit(X, y)
    res = inference(clf, X, y)
    assert "intercept" not in res.term_names
    np.testing.assert_allclose(res.params, sm_array(ref.params), rtol=RTOL)
    np.testing.assert_allclose(res.bse, sm_array(ref.bse), rtol=RTOL)
    assert res.llf == pytest.approx(ref.llf, rel=RTOL)


# -- frequency weights ---------------------------------------------------------------


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1", "cluster"])
def test_integer_weights_equal_duplicated_rows(anes, cov_type):
    X, y, _, _, _ = anes
    rng = np.random.default_rng(1)
    w = rng.integers(0, 4, len(y))  # zeros drop rows
    groups = rng.integers(0, 30, len(y))
    Xa, ya = X.to_numpy(), y.to_numpy()
    rows = np.repeat(np.arange(len(y)), w)
    kw = {"groups": groups} if cov_type == "cluster" else {}
    kw_dup = {"groups": groups[rows]} if cov_type == "cluster" else {}
    weighted = SoftmaxRegression(C=np.inf).fit(Xa, ya, sample_weight=w)
    dup = SoftmaxRegression(C=np.inf).fit(Xa[rows], ya[rows])
    a = inference(weighted, Xa, ya, sample_weight=w, cov_type=cov_type, **kw)
    b = inference(dup, Xa[rows], ya[rows], cov_type=cov_type, **kw_dup)
    assert a.nobs == b.nobs == w.sum()
    assert a.n_groups == b.n_groups
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6)
    np.testing.assert_allclose(a.bse, b.bse, rtol=1e-6)
    for name in ("llf", "llnull", "aic", "bic", "df_resid", "llr_pvalue"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6), name
    me_a, me_b = a.marginal_effects(), b.marginal_effects()
    np.testing.assert_allclose(me_a.effects, me_b.effects, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(me_a.bse, me_b.bse, rtol=1e-6)


# -- penalised fits --------------------------------------------------------------------


def fd_hessian(coef, X, y, C, free):
    """Hessian of ``C * loss + ||W||^2 / 2`` in the free entries of ``coef``, by
    central differences of the loss gradient (``block_loss_gradient``, a code
    path independent of the information's)."""
    from softmax.linear_loss import block_loss_gradient

    K, q = coef.shape
    p = q - 1

    def grad(c):
        g = C * block_loss_gradient(c, X, y, None, fit_intercept=True)[1]
        g[:, :p] += c[:, :p]
        return g.ravel()[free]

    H = np.empty((free.size, free.size))
    h = 1e-5
    for a, i in enumerate(free):
        e = np.zeros(K * q)
        e[i] = h
        H[:, a] = (grad(coef + e.reshape(K, q)) - grad(coef - e.reshape(K, q))) / (2 * h)
    return 0.5 * (H + H.T)


def test_penalised_covariance_is_inverse_penalised_hessian(anes):
    """Symmetric fit: the finite-difference Hessian, reparametrised by hand."""
    X, y, _, _, _ = anes
    Xa, codes = X.to_numpy(), y.to_numpy().astype(int)
    C = 0.01
    clf = SoftmaxRegression(C=C, tol=1e-12).fit(Xa, codes)
    res = inference(clf, Xa, codes)
    assert res.penalized and "penalised" in res.summary()
    K, p = clf.coef_.shape
    q = p + 1
    coef = np.c_[clf.coef_, clf.intercept_]
    # the objective's Hessian divided by C (the information's scale): the data
    # term's plus (1/C) I on the weights (not the intercepts)
    H = fd_hessian(coef, Xa, codes, 1.0, np.arange(K * q))
    H += np.diag(np.tile(np.r_[np.ones(p), 0.0], K)) * (1 / C - 1)
    # beta_k = theta_k + (b, 0) for k > 0, beta_0 = (b, 0): phi = (theta, b)
    T = np.zeros((K * q, (K - 1) * q + p))
    for k in range(K):
        T[k * q : k * q + p, (K - 1) * q :] = np.eye(p)
        if k > 0:
            T[k * q : (k + 1) * q, (k - 1) * q : k * q] = np.eye(q)
    cov = np.linalg.inv(T.T @ H @ T)[: (K - 1) * q, : (K - 1) * q]
    np.testing.assert_allclose(res.cov_params(), cov, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.params, (coef - coef[0])[1:], rtol=1e-12)
    assert res.newton_step_se < 1e-3  # the penalised score is zero at the fit
    with pytest.warns(UserWarning, match="penalised enough"):
        lr_test(res, inference(SoftmaxRegression(C=C).fit(Xa[:, :4], codes), Xa[:, :4], codes))


def test_penalised_reference_fit_covariance(anes):
    """reference_class fit: the penalty is on the other rows; any reported reference."""
    X, y, _, _, _ = anes
    Xa, codes = X.to_numpy(), y.to_numpy().astype(int)
    C, r0 = 0.01, 3
    clf = SoftmaxRegression(C=C, reference_class=r0, tol=1e-12).fit(Xa, codes)
    K, p = clf.coef_.shape
    q = p + 1
    coef = np.c_[clf.coef_, clf.intercept_]
    assert not coef[r0].any()
    free = np.array([k * q + j for k in range(K) if k != r0 for j in range(q)])
    # the information scale: the objective's Hessian divided by C
    cov = np.linalg.inv(fd_hessian(coef, Xa, codes, 1.0, free) + np.diag(
        np.tile(np.r_[np.ones(p), 0.0], K - 1)) * (1 / C - 1))  # fmt: skip
    res = inference(clf, Xa, codes)
    assert res.reference == r0 and res.newton_step_se < 1e-3
    np.testing.assert_allclose(res.params, np.delete(coef, r0, axis=0), rtol=1e-12)
    np.testing.assert_allclose(res.cov_params(), cov, rtol=1e-5, atol=1e-9)
    # reported against class 0: theta' = A theta, cov' = A cov A^T
    A = np.zeros((K - 1, K - 1))  # rows: classes 1..6; cols: classes 0,1,2,4,5,6
    cols = [k for k in range(K) if k != r0]
    for i, k in enumerate(range(1, K)):
        if k != r0:
            A[i, cols.index(k)] += 1
        A[i, cols.index(0)] -= 1
    A = np.kron(A, np.eye(q))
    res0 = inference(clf, Xa, codes, reference=0)
    np.testing.assert_allclose(res0.params.ravel(), A @ res.params.ravel(), atol=1e-12)
    np.testing.assert_allclose(res0.cov_params(), A @ cov @ A.T, rtol=1e-5, atol=1e-9)


def test_l1_fits_are_refused(anes):
    X, y, _, _, _ = anes
    clf = SoftmaxRegression(C=1.0, l1_ratio=0.5, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converged or not, the fit is refused
        clf.fit(X, y)
    with pytest.raises(ValueError, match="selection") as info:
        inference(clf, X, y)
    assert "refit" in str(info.value) and "bootstrap" in str(info.value)


# -- separation -------------------------------------------------------------------------


def separated_data(seed=0):
    """Class 2 exactly when x1 > 0.3; classes 0 and 1 overlap."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 3))
    y = rng.integers(0, 2, 300)
    y[X[:, 1] > 0.3] = 2
    return X, y


def test_separation_is_detected_and_named():
    X, y = separated_data()
    found = check_separation(X, y)
    assert found.separated and not found.complete  # 0 and 1 overlap: quasi-complete
    assert found.features == ["x1", "intercept"]
    assert found.pairs == [(0, 2), (1, 2)]
    # independent check of the verdict: the fit diverges along x1 as C grows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeparationWarning)  # C=1e6: the fit warns too
        norms = [
            np.abs(SoftmaxRegression(C=C, max_iter=5000).fit(X, y).coef_[:, 1]).max()
            for C in (1e2, 1e4, 1e6)
        ]
    assert norms[0] * 2 < norms[1] and norms[1] * 1.5 < norms[2]
    clf = SoftmaxRegression(C=1e2, max_iter=5000).fit(X, y)
    with pytest.warns(SeparationWarning, match=r"\['x1', 'intercept'\]"):
        res = inference(clf, X, y)
    assert "WARNING" in res.summary() and "x1" in res.summary()


@pytest.mark.parametrize("C", [np.inf, 1e12])
def test_unpenalised_fit_warns_of_separation(C):
    """The fit itself names the classes and features (issue: C=1e12 said converged)."""
    X, y = separated_data()
    with pytest.warns(SeparationWarning, match=r"\['x1', 'intercept'\].*0 \| 2, 1 \| 2") as rec:
        clf = SoftmaxRegression(C=C).fit(X, y)
    assert len(rec) == 1  # no ConvergenceWarning on top
    assert clf.separation_.separated and clf.separation_.features == ["x1", "intercept"]
    # no maximum-likelihood estimate: not "converged"; with a penalty the
    # penalised optimum exists (and is reached), set by the penalty alone
    assert clf.converged_ is (np.inf != C)
    assert np.abs(clf.coef_[:, 1]).max() > 100
    # overlapping data: no warning, converged, the check recorded
    rng = np.random.default_rng(1)
    Xo = rng.standard_normal((300, 3))
    yo = np.argmax(Xo @ rng.standard_normal((3, 3)) + rng.gumbel(size=(300, 3)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = SoftmaxRegression(C=C).fit(Xo, yo)
    assert fit.converged_ and not fit.separation_.separated
    assert SoftmaxRegression(C=1.0).fit(Xo, yo).separation_ is None  # penalised: not run


def test_separation_signal_when_the_program_is_too_large(monkeypatch):
    """Complete separation without the linear program: the loss goes to zero."""
    import softmax._separation as separation

    monkeypatch.setattr(separation, "AUTO_MAX_NNZ", 0)
    X = np.arange(12.0)[:, None]
    y = np.repeat([0, 1, 2], 4)
    with pytest.warns(SeparationWarning, match="nearly zero"):
        clf = SoftmaxRegression(C=np.inf, max_iter=200).fit(X, y)
    assert not clf.converged_ and clf.separation_.complete


def test_complete_separation_and_overlap():
    X = np.arange(6.0)[:, None]
    found = check_separation(X, [0, 0, 1, 1, 2, 2], feature_names=["dose"])
    assert found.complete and found.features == ["dose", "intercept"]
    assert found.pairs == [(0, 1), (0, 2), (1, 2)]
    rng = np.random.default_rng(3)
    overlap = check_separation(rng.standard_normal((200, 3)), rng.integers(0, 3, 200))
    assert not overlap and "overlap" in overlap.message()


def test_overlapping_fit_has_no_separation_warning(anes):
    X, y, _, _, clf = anes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inference(clf, X, y, check_separation=True)


# -- input handling ----------------------------------------------------------------------


def test_bad_input(anes):
    X, y, _, _, clf = anes
    with pytest.raises(NotFittedError):
        inference(SoftmaxRegression(), X, y)
    with pytest.raises(TypeError, match="SoftmaxRegression"):
        inference(object(), X, y)
    with pytest.raises(ValueError, match="features"):
        inference(SoftmaxRegression().fit(X.to_numpy(), y), X.iloc[:, :3].to_numpy(), y)
    with pytest.raises(ValueError, match="cluster label per row"):
        inference(clf, X, y, cov_type="cluster", groups=np.arange(10))
    with pytest.raises(ValueError, match="needs groups"):
        inference(clf, X, y, cov_type="cluster")
    with pytest.raises(ValueError, match="only used by"):
        inference(clf, X, y, groups=np.arange(len(y)))
    with pytest.raises(ValueError, match="at least 2 clusters"):
        inference(clf, X, y, cov_type="cluster", groups=np.zeros(len(y)))
    with pytest.raises(ValueError, match=r"labels \[9\.0\]"):
        inference(clf, X, y.replace(6.0, 9.0))
    with pytest.raises(ValueError, match="one label per row"):
        inference(clf, X, y.iloc[:-1])
    with pytest.raises(ValueError, match="cov_type must be one of"):
        inference(clf, X, y, cov_type="HC3")
    with pytest.raises(ValueError, match="not one of the classes"):
        inference(clf, X, y, reference=7.0)
    with pytest.raises(ValueError, match="Negative"):
        inference(clf, X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="no rows"):
        inference(clf, X, y.replace(3.0, 2.0))
    with pytest.raises(ValueError, match="not a non-reference class"):
        inference(clf, X, y).wald_test("age", classes=[0.0])
    with pytest.raises(ValueError, match="Unknown terms"):
        inference(clf, X, y).wald_test("height")
    with pytest.raises(ValueError, match="linearly dependent"):
        res = inference(clf, X, y)
        inference(clf, X, y).wald_test(R=np.vstack([np.eye(res.k_params)[:1]] * 2))
    weighted = SoftmaxRegression(C=np.inf, class_weight="balanced").fit(X, y)
    with pytest.raises(ValueError, match="HC0"):
        inference(weighted, X, y)
    assert np.isfinite(inference(weighted, X, y, cov_type="HC0").bse).all()


def test_caller_arrays_are_not_changed(anes):
    X, y, _, _, _ = anes
    Xa, ya = X.to_numpy().copy(), y.to_numpy().copy()
    w = np.ones(len(ya))
    g = np.arange(len(ya)) % 5
    before = (Xa.copy(), ya.copy(), w.copy(), g.copy())
    clf_a = SoftmaxRegression(C=np.inf).fit(Xa, ya)
    inference(clf_a, Xa, ya, sample_weight=w, cov_type="cluster", groups=g).marginal_effects()
    for a, b in zip((Xa, ya, w, g), before):
        np.testing.assert_array_equal(a, b)


def test_singular_information_names_the_terms(anes):
    X, y, _, _, _ = anes
    Xd = X.assign(age2=X["age"] * 2.0)  # exactly collinear with age
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpenalised fit cannot settle the pair
        clf = SoftmaxRegression(C=np.inf).fit(Xd, y)
    with pytest.raises(ValueError, match="singular") as info:
        inference(clf, Xd, y, check_separation=False)
    assert "age" in str(info.value)


def test_off_optimum_warning(anes):
    X, y, _, _, clf = anes
    shuffled = y.sample(frac=1.0, random_state=0).to_numpy()
    with pytest.warns(UserWarning, match="not at the optimum"):
        res = inference(clf, X, shuffled, check_separation=False)
    assert res.newton_step_se > 1


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "cluster"])
def test_row_blocks_do_not_change_the_result(anes, monkeypatch, cov_type):
    """Blocks of 256 rows (4 on anes96, clusters cut across blocks) = one block."""
    import softmax.linear_loss as linear_loss

    X, y, _, _, clf = anes
    groups = np.random.default_rng(2).integers(0, 25, len(y))
    kw = {"groups": groups} if cov_type == "cluster" else {}
    one = inference(clf, X, y, cov_type=cov_type, check_separation=False, **kw)
    monkeypatch.setattr(linear_loss, "INFORMATION_BLOCK_BYTES", 1)
    many = inference(clf, X, y, cov_type=cov_type, check_separation=False, **kw)
    cov = one.cov_params()
    np.testing.assert_allclose(many.cov_params(), cov, rtol=1e-8, atol=1e-12 * np.abs(cov).max())
    np.testing.assert_allclose(many.marginal_effects().bse, one.marginal_effects().bse, rtol=1e-10)
    assert many.llf == pytest.approx(one.llf, rel=1e-13)


def test_float32_sparse_and_frame_agree(anes):
    X, y, _, _, clf = anes
    base = inference(clf, X, y)
    clf_a = SoftmaxRegression(C=np.inf).fit(X.to_numpy(), y)
    dense = inference(clf_a, X.to_numpy(), y)
    sparse = inference(clf_a, sp.csr_matrix(X.to_numpy()), y)
    np.testing.assert_allclose(dense.bse, base.bse, rtol=1e-10)
    np.testing.assert_allclose(sparse.bse, dense.bse, rtol=1e-12)
    assert dense.term_names[:2] == ["x0", "x1"]
    X32 = X.to_numpy().astype(np.float32)
    clf32 = SoftmaxRegression(C=np.inf).fit(X32, y)
    res32 = inference(clf32, X32, y, check_separation=False)  # computed in float64
    np.testing.assert_allclose(res32.bse, base.bse, rtol=1e-3)


def test_summary_and_frame(anes):
    X, y, _, ref, clf = anes
    res = inference(clf, X, y)
    text = res.summary()
    assert "PID=1.0" in text and "PID=6.0" in text and "selfLR" in text
    assert "Reference class:" in text and "Log-Likelihood:" in text and "-1461.9" in text
    assert text.count("std err") == 6
    frame = res.to_frame(alpha=0.1)
    assert list(frame.columns) == [
        "class", "term", "coef", "std_err", "z", "p_value", "ci_lower", "ci_upper",
    ]  # fmt: skip
    assert len(frame) == 36
    row = frame[(frame["class"] == 4.0) & (frame["term"] == "selfLR")].iloc[0]
    assert row["coef"] == pytest.approx(ref.params.loc["selfLR", 3], rel=RTOL)
    assert row["ci_upper"] == pytest.approx(
        ref.conf_int(alpha=0.1).loc[("4", "selfLR"), "upper"], rel=RTOL
    )
    assert isinstance(res, InferenceResults) and "reference=0.0" in repr(res)


def test_public_names():
    """softmax.inference is the function; the module is private; no callable module."""
    import importlib

    import softmax._inference as module

    assert softmax.inference is module.inference and callable(softmax.inference)
    assert softmax.lr_test is lr_test is module.lr_test
    assert softmax.check_separation is check_separation
    assert softmax.InferenceResults is InferenceResults
    assert softmax.SeparationWarning is SeparationWarning
    assert not callable(module)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("softmax.inference")
    assert {"inference", "lr_test", "check_separation", "InferenceResults"} <= set(softmax.__all__)


def test_summary_shortcut_and_to_dict(anes):
    import json

    X, y, _, ref, clf = anes
    res = inference(clf, X, y)
    assert clf.summary(X, y) == res.summary()
    assert clf.summary(X, y, cov_type="HC0", alpha=0.1) == inference(
        clf, X, y, cov_type="HC0"
    ).summary(0.1)
    d = json.loads(json.dumps(res.to_dict(alpha=0.1)))  # plain JSON data
    assert d["reference"] == 0.0 and d["classes"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert d["method"] == "MLE" and d["C"] is None and d["cov_type"] == "nonrobust"
    assert d["terms"] == res.term_names and len(d["coefficients"]) == 36
    assert d["llr_pvalue"] == pytest.approx(ref.llr_pvalue, rel=RTOL)
    row = next(r for r in d["coefficients"] if r["class"] == 4.0 and r["term"] == "selfLR")
    assert row["coef"] == pytest.approx(ref.params.loc["selfLR", 3], rel=RTOL)
    assert row["ci_upper"] == pytest.approx(
        ref.conf_int(alpha=0.1).loc[("4", "selfLR"), "upper"], rel=RTOL
    )
    assert d["separation"]["separated"] is False and d["notes"] == res.notes()


def test_dask_rows_give_the_in_memory_results(anes):
    """The backend answers the information by chunks: same numbers, less on offer."""
    da = pytest.importorskip("dask.array")
    X, y, _, _, _ = anes
    Xa, ya = X.to_numpy(), y.to_numpy()
    w = np.random.default_rng(4).integers(1, 3, len(ya)).astype(float)
    clf_a = SoftmaxRegression(C=np.inf).fit(Xa, ya, sample_weight=w)
    Xd, yd, wd = (da.from_array(a, chunks=300) for a in (Xa, ya, w))
    for cov_type in ("nonrobust", "HC1"):
        mem = inference(clf_a, Xa, ya, sample_weight=w, cov_type=cov_type)
        dsk = inference(clf_a, Xd, yd, sample_weight=wd, cov_type=cov_type)
        np.testing.assert_allclose(dsk.bse, mem.bse, rtol=1e-10)
        assert dsk.llf == pytest.approx(mem.llf, rel=1e-12)
        assert dsk.llnull == pytest.approx(mem.llnull, rel=1e-12) and dsk.nobs == mem.nobs
        assert dsk.separation is None and "not checked" in dsk.summary()
    with pytest.raises(ValueError, match="in memory"):
        inference(clf_a, Xd, yd, cov_type="cluster", groups=np.arange(len(ya)) % 5)
    with pytest.raises(ValueError, match="in memory"):
        dsk.marginal_effects()
    with pytest.raises(ValueError, match="in memory"):
        inference(clf_a, Xd, yd, check_separation=True)


def test_information_matches_finite_differences():
    """block_information's score and information against differences of the log-likelihood."""
    from softmax.linear_loss import block_information, block_loss_gradient

    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 3))
    y = rng.integers(0, 4, 200)
    w = rng.uniform(0.5, 2.0, 200)
    coef = rng.standard_normal((4, 4)) * 0.3
    ref = 2
    sums = block_information(coef, X, y, w, reference=ref, fit_intercept=True)
    free = np.array([k * 4 + j for k in range(4) if k != ref for j in range(4)])

    def loglik_grad(c):
        loss, g = block_loss_gradient(c, X, y, w, fit_intercept=True)
        return -loss, -g.ravel()[free]

    llf, score = loglik_grad(coef)
    assert sums.loglik == pytest.approx(llf, rel=1e-12)
    np.testing.assert_allclose(sums.score, score, rtol=1e-10, atol=1e-12)
    info = np.empty((free.size, free.size))
    for a, i in enumerate(free):
        e = np.zeros(16)
        e[i] = 1e-6
        up, dn = loglik_grad(coef + e.reshape(4, 4))[1], loglik_grad(coef - e.reshape(4, 4))[1]
        info[:, a] = -(up - dn) / 2e-6
    got = np.triu(sums.information) + np.triu(sums.information, 1).T
    np.testing.assert_allclose(got, info, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sums.class_totals, np.bincount(y, weights=w), rtol=1e-12)


def test_file_stream_rows_give_the_in_memory_results(anes, tmp_path):
    X, y, _, _, _ = anes
    frame = X.assign(PID=y.astype(int))
    path = tmp_path / "anes.csv"
    frame.to_csv(path, index=False)
    source = softmax.FileSource(path, target="PID", block_rows=200)  # 5 blocks
    clf_int = SoftmaxRegression(C=np.inf).fit(X, y.astype(int))
    got = inference(clf_int, source, None, cov_type="HC0")
    want = inference(clf_int, X, y.astype(int), cov_type="HC0")
    np.testing.assert_allclose(got.bse, want.bse, rtol=1e-10)
    assert got.llf == pytest.approx(want.llf, rel=1e-12)


def test_rows_too_large_for_the_information_say_how_to_get_standard_errors():
    """A fit on rows of 1e300 works (rescaled); the information X^T W X overflows,
    and the error says what to do. Doing it gives statsmodels' standard errors."""
    import re

    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 3))
    y = np.argmax(X @ rng.standard_normal((3, 3)) + rng.gumbel(size=(400, 3)), axis=1)
    big = X * 1e300
    clf = SoftmaxRegression(C=np.inf).fit(big, y)
    with pytest.raises(ValueError, match=r"overflows float64.*divide X by 2\*\*\d+") as err:
        inference(clf, big, y)
    e = int(re.search(r"2\*\*(\d+) \(exact", str(err.value))[1])
    divided = np.ldexp(big, -e)
    res = inference(SoftmaxRegression(C=np.inf, tol=1e-10).fit(divided, y), divided, y)
    bse = res.bse[:, :3] * 2.0**-e  # the weights' standard errors on `big`
    ref = sm.MNLogit(y, sm.add_constant(X, prepend=False)).fit(disp=0)
    np.testing.assert_allclose(bse * 1e300, sm_array(ref.bse)[:, :3], rtol=1e-5)
