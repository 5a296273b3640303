"""C=np.inf and reference_class in SoftmaxRegression, through every solver.

Independent references: statsmodels' MNLogit (the unpenalised reference-form
optimum), scikit-learn's unpenalised LogisticRegression (probabilities),
SciPy's L-BFGS-B on the penalised objective over the free rows written here
with scipy.special.logsumexp, and duplicated rows for integer weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.datasets import load_wine

from softmax import SoftmaxRegression, load_model

sm = pytest.importorskip("statsmodels.api")

BATCH_SOLVERS = ["newton-cholesky", "newton-cg", "lbfgs", "proximal"]


@pytest.fixture(scope="module")
def anes():
    data = sm.datasets.anes96.load_pandas()
    X, y = data.exog.to_numpy(), data.endog.to_numpy().astype(int)
    ref = sm.MNLogit(y, sm.add_constant(X, prepend=False)).fit(disp=0)
    return X, y, np.asarray(ref.params).T  # (6, 6): classes 1..6, intercept last


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def reduced_optimum(X, y, C, ref, sample_weight=None):
    """SciPy's minimum of C sum_i s_i CE_i + ||W||^2 / 2 over the free rows (intercepts free)."""
    K, p = int(y.max()) + 1, X.shape[1]
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    free = [k for k in range(K) if k != ref]
    rows = np.arange(len(y))

    def objective(v):
        W = np.zeros((K, p + 1))
        W[free] = v.reshape(K - 1, p + 1)
        Z = X @ W[:, :p].T + W[:, p]
        lse = logsumexp(Z, axis=1)
        loss = s @ (lse - Z[rows, y])
        G = np.exp(Z - lse[:, None])
        G[rows, y] -= 1
        G *= s[:, None]
        g = C * np.c_[G.T @ X, G.sum(0)]
        g[:, :p] += W[:, :p]
        return C * loss + 0.5 * np.sum(W[:, :p] ** 2), g[free].ravel()

    res = minimize(
        objective, np.zeros((K - 1) * (p + 1)), jac=True, method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20000},
    )  # fmt: skip
    return np.insert(res.x.reshape(K - 1, p + 1), ref, 0.0, axis=0)


@pytest.mark.parametrize("solver", [*BATCH_SOLVERS, "sgd"])
def test_unpenalised_reference_fit_is_mnlogit(anes, solver):
    X, y, want = anes
    tol = {"sgd": 1e-7}.get(solver, 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sgd may stop before its tolerance
        clf = SoftmaxRegression(
            C=np.inf, reference_class=0, solver=solver, tol=tol, max_iter=5000, random_state=0
        ).fit(X, y)
    assert not clf.coef_[0].any() and clf.intercept_[0] == 0.0
    got = np.c_[clf.coef_, clf.intercept_][1:]
    if solver == "sgd":  # minibatch steps: the optimum's neighbourhood
        want_obj = -sm.MNLogit(y, sm.add_constant(X, prepend=False)).loglike(want.T.ravel("F"))
        assert clf.objective_ == pytest.approx(want_obj, rel=2e-3)
    else:
        rtol = 1e-8 if solver.startswith("newton") else 1e-4
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-2)
        assert clf.converged_ and clf.separation_ is not None and not clf.separation_.separated


def test_unpenalised_symmetric_and_reference_forms_predict_the_same(anes):
    X, y, _ = anes
    sym = SoftmaxRegression(C=np.inf).fit(X, y)
    refd = SoftmaxRegression(C=np.inf, reference_class=3).fit(X, y)
    np.testing.assert_allclose(refd.predict_proba(X), sym.predict_proba(X), rtol=1e-9, atol=1e-13)
    # the symmetric unpenalised fit reports coefficients centred over the classes
    np.testing.assert_allclose(sym.coef_.sum(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(sym.intercept_.sum(), 0, atol=1e-12)
    # and is the reference fit shifted
    np.testing.assert_allclose(sym.coef_ - sym.coef_[3], refd.coef_, rtol=1e-8, atol=1e-10)
    # scikit-learn's unpenalised fit: the same probabilities
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(sym.predict_proba(X), sk.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("solver", BATCH_SOLVERS)
def test_penalised_reference_fit_is_the_reduced_optimum(wine, solver):
    """With a penalty the reference form is another model: the penalty is on the free rows."""
    X, y = wine
    want = reduced_optimum(X, y, 0.5, 1)
    clf = SoftmaxRegression(C=0.5, reference_class=1, solver=solver, tol=1e-12).fit(X, y)
    np.testing.assert_allclose(np.c_[clf.coef_, clf.intercept_], want, atol=2e-6)
    sym = SoftmaxRegression(C=0.5).fit(X, y)
    assert np.abs(sym.predict_proba(X) - clf.predict_proba(X)).max() > 1e-3  # another model


def test_reference_fit_weights_dtype_sparse(wine):
    X, y = wine
    rng = np.random.default_rng(0)
    w = rng.integers(0, 4, len(y))
    rows = np.repeat(np.arange(len(y)), w)
    kw = {"C": 0.5, "reference_class": 2, "tol": 1e-12}
    weighted = SoftmaxRegression(**kw).fit(X, y, sample_weight=w)
    dup = SoftmaxRegression(**kw).fit(X[rows], y[rows])
    np.testing.assert_allclose(weighted.coef_, dup.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        np.c_[weighted.coef_, weighted.intercept_],
        reduced_optimum(X, y, 0.5, 2, sample_weight=w.astype(float)),
        atol=2e-6,
    )
    base = SoftmaxRegression(**kw).fit(X, y)
    f32 = SoftmaxRegression(**kw).fit(X.astype(np.float32), y)
    assert f32.coef_.dtype == np.float32 and not f32.coef_[2].any()
    np.testing.assert_allclose(f32.coef_, base.coef_, atol=1e-4)
    sparse = SoftmaxRegression(**kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, base.coef_, atol=1e-7)
    # class weights: the same as the equivalent sample weights
    cw = {0: 2.0, 1: 0.5}
    a = SoftmaxRegression(**kw, class_weight=cw).fit(X, y)
    b = SoftmaxRegression(**kw).fit(X, y, sample_weight=np.choose(y, [2.0, 0.5, 1.0]))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)


def test_reference_partial_fit(wine):
    """Epochs of partial_fit approach the reference fit's optimum; the row stays zero."""
    X, y = wine
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    full = SoftmaxRegression(C=1.0, reference_class="b", tol=1e-12).fit(
        X, np.array(list("abc"))[y]
    )
    clf = SoftmaxRegression(C=1.0, reference_class="b", random_state=0)
    labels = np.array(list("abc"))[y]
    for _ in range(30):
        for start in range(0, len(y), 50):
            clf.partial_fit(X[start : start + 50], labels[start : start + 50], classes=list("abc"))
    assert not clf.coef_[1].any() and clf.intercept_[1] == 0.0
    from softmax.linear_loss import block_loss_gradient

    def objective(m):
        coef = np.c_[m.coef_, m.intercept_]
        return block_loss_gradient(coef, X, y, None, fit_intercept=True)[0] + 0.5 * np.sum(
            m.coef_**2
        )

    assert objective(clf) == pytest.approx(full.objective_, rel=0.02)
    assert objective(full) == pytest.approx(full.objective_, rel=1e-12)


def test_model_file_keeps_c_inf_and_reference(tmp_path, wine):
    X, y = wine
    labels = np.array(["x", "y", "z"])[y]
    clf = SoftmaxRegression(C=np.inf, reference_class="z", max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wine is separable: a warning is due
        clf.fit(X[:, :2], labels)
    clf.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert np.isposinf(loaded.C) and loaded.reference_class == "z"
    np.testing.assert_array_equal(loaded.predict_proba(X[:, :2]), clf.predict_proba(X[:, :2]))


def test_bad_reference_class(wine):
    X, y = wine
    with pytest.raises(
        ValueError, match=r"reference_class=7 is not one of the classes \[0, 1, 2\]"
    ):
        SoftmaxRegression(reference_class=7).fit(X, y)
    with pytest.raises(ValueError, match="C must be a number > 0"):
        SoftmaxRegression(C=-np.inf).fit(X, y)
    clf = SoftmaxRegression(reference_class=7)
    with pytest.raises(ValueError, match="not one of the classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(clf, "coef_")


def test_newton_last_step_reaches_the_optimum(anes):
    """The default tol with Newton: at statsmodels' optimum, not sqrt(tol) away."""
    X, y, want = anes
    clf = SoftmaxRegression(C=np.inf, reference_class=0).fit(X, y)  # tol=1e-7
    assert clf.solver_ == "newton-cholesky"
    np.testing.assert_allclose(np.c_[clf.coef_, clf.intercept_][1:], want, rtol=1e-6)
    from softmax.backends.memory import InMemoryData
    from softmax.solvers import SOLVERS, Problem

    problem = Problem(
        InMemoryData(np.ascontiguousarray(X), y, None, np.arange(7), fit_intercept=True),
        C=np.inf,
        reference=0,
    )
    res = SOLVERS["newton-cholesky"].solve(problem, tol=1e-10)
    assert "last Newton step taken" in res.message
    np.testing.assert_allclose(res.coef[1:], want, rtol=1e-10)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("C", -1.0, "params.C"),
        ("C", {"float": "nan"}, "params.C"),
        ("C", "inf", "params.C"),
        ("reference_class", "w", "not a class of the model"),
        ("reference_class", "x", "coefficients or intercept are not zero"),
        ("reference_class", 1, "params.reference_class"),
    ],
)
def test_model_file_fields_are_validated(tmp_path, wine, field, value, match):
    import json

    from softmax.io import read_safetensors, write_safetensors

    X, y = wine
    labels = np.array(["x", "y", "z"])[y]
    path = tmp_path / "m.safetensors"
    SoftmaxRegression(C=np.inf, reference_class="z", max_iter=20).fit(X[:, :1], labels).save(path)
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta["softmax"])
    doc["params"][field] = value
    write_safetensors(path, tensors, {"softmax": json.dumps(doc)})
    with pytest.raises(ValueError, match=match):
        load_model(path)
