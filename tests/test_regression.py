"""SoftmaxRegression against scikit-learn's LogisticRegression and its own contract.

References are independent of this package: scikit-learn's fitted models and
``compute_class_weight``, and the objective written out below with SciPy's
``logsumexp``. Data are scikit-learn's digits and a synthetic MNIST-like set
made here (tests never read files outside the package).
"""

from __future__ import annotations

import sys
import tracemalloc
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.special
from scipy.special import logsumexp
from sklearn.datasets import load_digits, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from threadpoolctl import threadpool_limits

from softmax import SoftmaxRegression

# Every solver that reaches the exact optimum ("sgd" is stochastic: it gets
# close, not to 1e-6, and is tested in tests/test_sgd.py).
# Listed, not discovered: a solver module that fails to import must fail these
# tests, not drop out of them.
EXACT_SOLVERS = ["lbfgs", "newton-cg", "newton-cholesky", "proximal"]
C_VALUES = [0.01, 1.0, 100.0]
# Tests of semantics (weights, labels, K=2) fit both sides to machine
# precision, so that what is compared is the model, not where a solver stopped.
TIGHT = {"tol": 1e-13}
SK_TIGHT = {"solver": "newton-cholesky", "tol": 1e-13, "max_iter": 1000}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The test machine's cores are shared; two OpenBLAS threads contending
    # with other processes make small fits many times slower. Results do not
    # depend on the thread count.
    with threadpool_limits(limits=1):
        yield


def objective(coef, intercept, X, y, C, l1_ratio=0.0, sample_weight=None):
    """scikit-learn's objective, written out: C sum_i s_i CE_i + r(W)."""
    _, codes = np.unique(y, return_inverse=True)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.shape[0] == 1:  # scikit-learn's binary model: logits (0, z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, float(np.ravel(intercept)[0])])
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    z = X @ coef.T + np.asarray(intercept, dtype=np.float64)
    ce = logsumexp(z, axis=1) - z[np.arange(len(codes)), codes]
    s = np.ones(len(codes)) if sample_weight is None else np.asarray(sample_weight, float)
    penalty = (1 - l1_ratio) / 2 * np.sum(coef**2) + l1_ratio * np.abs(coef).sum()
    return C * np.dot(s, ce) + penalty


def mnist_like(n=1200, side=12, seed=0):
    """Images of 10 noisy prototype 'digits' with pixels in [0, 1], mostly dark."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    protos = []
    for _ in range(10):
        img = np.zeros((side, side))
        for _ in range(3):  # three strokes per digit
            cy, cx = rng.uniform(0.2, 0.8, 2)
            sy, sx = rng.uniform(0.05, 0.25, 2)
            img += np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        protos.append(img / img.max())
    y = rng.integers(0, 10, n)
    X = np.array([protos[k] for k in y]).reshape(n, -1)
    X = X * rng.uniform(0.6, 1.0, (n, 1)) + rng.normal(0.0, 0.25, X.shape)
    X = np.clip(X, 0.0, 1.0)
    X[X < 0.1] = 0.0  # dark background, as in MNIST
    return X, y


DATASETS = {
    "digits": lambda: load_digits(return_X_y=True),
    "mnist_like": mnist_like,
}
# scikit-learn's most accurate solver for each set within the time we have:
# exact Newton for digits (650 coefficients; its L-BFGS needs thousands of
# iterations at tol=1e-10 and stops ~4e-7 above the optimum at C=100), L-BFGS
# for the MNIST-like set (1450 coefficients make its Newton step slow).
REFERENCE_SOLVER = {"digits": "newton-cholesky", "mnist_like": "lbfgs"}


@pytest.fixture(scope="module")
def sklearn_fits():
    """scikit-learn references, fitted once: (dataset, C) -> (X, y, model, objective)."""
    cache = {}

    def get(name, C):
        if (name, C) not in cache:
            X, y = DATASETS[name]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ref = LogisticRegression(
                    C=C, tol=1e-10, max_iter=10000, solver=REFERENCE_SOLVER[name]
                ).fit(X, y)
            cache[name, C] = (X, y, ref, objective(ref.coef_, ref.intercept_, X, y, C))
        return cache[name, C]

    return get


# -- agreement with scikit-learn ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("C", C_VALUES)
@pytest.mark.parametrize("solver", ["auto", *EXACT_SOLVERS])
def test_reaches_sklearn_optimum(sklearn_fits, dataset, C, solver):
    X, y, ref, ref_obj = sklearn_fits(dataset, C)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # defaults must converge
        clf = SoftmaxRegression(C=C, solver=solver).fit(X, y)
    ours = objective(clf.coef_, clf.intercept_, X, y, C)
    # no worse than scikit-learn's tightly converged fit
    assert (ours - ref_obj) / abs(ref_obj) <= 1e-6
    # the reported objective is the objective
    assert clf.objective_ == pytest.approx(ours, rel=1e-9)
    assert clf.converged_ and clf.n_iter_ >= 1
    proba = clf.predict_proba(X)
    pred = clf.predict(X)
    assert np.mean(pred == ref.predict(X)) >= 0.999
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(proba, axis=1)])
    # docs/regression.md: probabilities within 1e-3 of scikit-learn's (measured: 3.5e-4 at most)
    np.testing.assert_allclose(proba, ref.predict_proba(X), atol=1e-3, rtol=0)


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_elastic_net_matches_sklearn_saga(l1_ratio):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    C = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LogisticRegression(
            C=C, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=100_000
        ).fit(X, y)
    clf = SoftmaxRegression(C=C, l1_ratio=l1_ratio).fit(X, y)
    assert clf.solver_ == "proximal"
    ours = objective(clf.coef_, clf.intercept_, X, y, C, l1_ratio)
    theirs = objective(ref.coef_, ref.intercept_, X, y, C, l1_ratio)
    assert (ours - theirs) / theirs <= 1e-6
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    # L1 produces exact zeros, at the same places as scikit-learn's
    np.testing.assert_array_equal(clf.coef_ == 0, np.abs(ref.coef_) < 1e-8)


def test_binary_equals_sklearn_with_twice_C():
    """K=2: softmax with C is binary logistic regression with 2C (L2 penalty)."""
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    C = 0.3
    clf = SoftmaxRegression(C=C, **TIGHT).fit(X, y)
    ref = LogisticRegression(C=2 * C, **SK_TIGHT).fit(X, y)
    # the weight vectors are opposite, and their difference is sklearn's
    np.testing.assert_allclose(clf.coef_[0], -clf.coef_[1], atol=1e-6)
    np.testing.assert_allclose(clf.coef_[1] - clf.coef_[0], ref.coef_[0], rtol=1e-5)
    np.testing.assert_allclose(clf.intercept_[1] - clf.intercept_[0], ref.intercept_[0], rtol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    # decision_function follows sklearn's binary convention: the log-odds
    assert clf.decision_function(X).shape == (300,)
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X), atol=1e-5)


def test_binary_l1_has_same_C_as_sklearn():
    X, y = make_classification(n_samples=300, n_features=6, random_state=1)
    X = StandardScaler().fit_transform(X)
    C = 0.05
    clf = SoftmaxRegression(C=C, l1_ratio=1.0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = LogisticRegression(
            C=C, l1_ratio=1.0, solver="saga", tol=1e-12, max_iter=100_000
        ).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_no_intercept_matches_sklearn():
    X, y = load_iris(return_X_y=True)
    clf = SoftmaxRegression(C=1.0, fit_intercept=False, **TIGHT).fit(X, y)
    ref = LogisticRegression(C=1.0, fit_intercept=False, **SK_TIGHT).fit(X, y)
    np.testing.assert_array_equal(clf.intercept_, np.zeros(3))
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-5, atol=1e-7)


# -- weights ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_sample_weight_equals_repetition(iris):
    X, y = iris
    sw = np.random.default_rng(0).integers(0, 4, len(y))
    a = SoftmaxRegression(C=2.0, **TIGHT).fit(X, y, sample_weight=sw)
    b = SoftmaxRegression(C=2.0, **TIGHT).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=1e-6, atol=1e-8)
    assert a.objective_ == pytest.approx(b.objective_, rel=1e-10)


def test_sample_weight_matches_sklearn(iris):
    X, y = iris
    sw = np.random.default_rng(1).uniform(0.1, 3.0, len(y))
    clf = SoftmaxRegression(C=3.0, **TIGHT).fit(X, y, sample_weight=sw)
    ref = LogisticRegression(C=3.0, **SK_TIGHT).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_class_with_zero_weight_warns(iris):
    X, y = iris
    with pytest.warns(UserWarning, match=r"Classes \[2\] have zero total weight"):
        clf = SoftmaxRegression().fit(X, y, sample_weight=(y != 2).astype(float))
    assert clf.predict_proba(X)[:, 2].max() < 1e-3
    assert np.isfinite(clf.coef_).all() and np.isfinite(clf.intercept_).all()


def test_class_weight_dict_equals_sample_weight(iris):
    X, y = iris
    cw = {0: 0.5, 2: 3.0}  # class 1 not named: weight 1
    a = SoftmaxRegression(class_weight=cw, **TIGHT).fit(X, y)
    b = SoftmaxRegression(**TIGHT).fit(X, y, sample_weight=np.array([0.5, 1.0, 3.0])[y])
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-7)
    ref = LogisticRegression(class_weight=cw, **SK_TIGHT).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_class_weight_balanced_matches_sklearn(iris):
    X, y = iris
    keep = np.r_[0:50, 50:70, 100:150]  # unbalanced: 50 / 20 / 50
    X, y = X[keep], y[keep]
    sw = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    expected = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=sw)
    a = SoftmaxRegression(class_weight="balanced", **TIGHT).fit(X, y, sample_weight=sw)
    b = SoftmaxRegression(**TIGHT).fit(X, y, sample_weight=sw * expected[y])
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-7)
    ref = LogisticRegression(class_weight="balanced", **SK_TIGHT)
    ref.fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(a.predict_proba(X), ref.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("use_sw", [False, True])
@pytest.mark.parametrize(
    "class_weight",
    ["balanced", {"b": 2.5}, {"a": 0.5, "b": 1.5, "c": 0.0}, None],
    ids=["balanced", "partial_dict", "full_dict", "none"],
)
def test_class_weight_vector_matches_sklearn(class_weight, use_sw):
    from softmax._validation import class_weight_vector

    rng = np.random.default_rng(3)
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 40)]
    sw = rng.uniform(0.1, 2.0, 40) if use_sw else None
    classes, codes = np.unique(y, return_inverse=True)
    expected = compute_class_weight(class_weight, classes=classes, y=y, sample_weight=sw)
    totals = np.bincount(codes, weights=sw, minlength=len(classes))
    counts = np.bincount(codes, minlength=len(classes))
    np.testing.assert_allclose(
        class_weight_vector(class_weight, classes, totals, counts), expected
    )


# -- input types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array(["c", "a", "b"], dtype=object),
        np.array([10, -3, 7]),
        np.array([2.0, -1.0, 5.0]),
    ],
    ids=["str", "object", "int", "float"],
)
def test_any_label_type(iris, labels):
    X, y = iris
    base = SoftmaxRegression(**TIGHT).fit(X, y)
    clf = SoftmaxRegression(**TIGHT).fit(X, labels[y])
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    order = np.argsort(labels)  # classes_ are sorted: permute base's rows
    np.testing.assert_allclose(clf.coef_, base.coef_[order], rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), labels[base.predict(X)])
    assert clf.score(X, labels[y]) == base.score(X, y)


def test_bool_labels():
    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    clf = SoftmaxRegression().fit(X, y.astype(bool))
    assert clf.classes_.dtype == bool
    assert clf.predict(X).dtype == bool
    np.testing.assert_array_equal(clf.predict(X), SoftmaxRegression().fit(X, y).predict(X) == 1)


def test_float32_fit_in_float32(iris):
    X, y = iris
    clf32 = SoftmaxRegression(**TIGHT).fit(X.astype(np.float32), y)
    clf64 = SoftmaxRegression(**TIGHT).fit(X, y)
    assert clf32.coef_.dtype == np.float32 and clf32.intercept_.dtype == np.float32
    assert clf64.coef_.dtype == np.float64
    assert clf32.predict_proba(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(clf32.coef_, clf64.coef_, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(clf32.predict(X), clf64.predict(X))
    # A float32 model on float64 rows: the model is cast up exactly, so the
    # probabilities are softmax(X @ coef.T + b) in float64 (scipy.special).
    expected = scipy.special.softmax(
        X @ clf32.coef_.astype(np.float64).T + clf32.intercept_, axis=1
    )
    proba = clf32.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(clf32.predict_proba(X), clf64.predict_proba(X), atol=1e-4, rtol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_float64_model_on_float32_rows_computes_in_float32(sparse):
    # Issue 15: a float64 model on float32 rows casts the (K, p) model, not the
    # (n, p) rows: the outputs (float64, as the model) equal the float64 computation
    # (scipy.special on up-cast rows) to float32 accuracy, and no float64 copy
    # of X is made (tracemalloc's peak stays far below X's float64 size).
    rng = np.random.default_rng(3)
    n, p, K = 20_000, 50, 5
    X32 = rng.standard_normal((n, p)).astype(np.float32)
    y = rng.integers(0, K, n)
    clf = SoftmaxRegression(max_iter=20).fit(X32[:500].astype(np.float64), y[:500])
    assert clf.coef_.dtype == np.float64
    rows = sp.csr_matrix(X32) if sparse else X32
    z64 = X32.astype(np.float64) @ clf.coef_.T + clf.intercept_
    expected = scipy.special.softmax(z64, axis=1)
    clf.predict_proba(rows)  # compiles the row kernels outside the trace
    tracemalloc.start()
    proba = clf.predict_proba(rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, expected, rtol=2e-5, atol=1e-6)
    # (n, K) results, not a float64 (n, p) copy of X
    assert peak < 0.25 * X32.astype(np.float64).nbytes, peak
    np.testing.assert_allclose(
        clf.predict_log_proba(rows), scipy.special.log_softmax(z64, axis=1), rtol=2e-5, atol=1e-5
    )
    np.testing.assert_allclose(clf.decision_function(rows), z64, rtol=2e-5, atol=1e-5)
    labels = clf.predict(rows)
    # the labels agree wherever the float64 top two logits are not a near tie
    top2 = np.sort(z64, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    np.testing.assert_array_equal(labels[clear], clf.classes_[np.argmax(z64, axis=1)][clear])
    assert X32.dtype == np.float32  # the caller's rows are untouched


@pytest.mark.parametrize("fmt", ["csr_matrix", "csr_array", "csc_matrix", "coo_array"])
def test_sparse_equals_dense(fmt):
    X, y = mnist_like(n=300, side=8)
    Xs = getattr(sp, fmt)(X)
    dense = SoftmaxRegression(C=0.5, **TIGHT).fit(X, y)
    sparse = SoftmaxRegression(C=0.5, **TIGHT).fit(Xs, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(X))


def test_pandas_feature_names(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    names = ["sepal_l", "sepal_w", "petal_l", "petal_w"]
    df = pd.DataFrame(X, columns=names)
    clf = SoftmaxRegression().fit(df, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, names)
    plain = SoftmaxRegression().fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(df), plain.predict_proba(X), rtol=1e-12)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(df[names[::-1]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict(X)
    # refitting on a plain array forgets the names
    assert not hasattr(SoftmaxRegression().fit(X, y), "feature_names_in_")
    clf.fit(X, y)
    assert not hasattr(clf, "feature_names_in_")


def test_polars_feature_names(iris):
    pl = pytest.importorskip("polars")
    X, y = iris
    names = ["a", "b", "c", "d"]
    df = pl.DataFrame(X, schema=names)
    clf = SoftmaxRegression().fit(df, pl.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, names)
    np.testing.assert_array_equal(clf.predict(df), SoftmaxRegression().fit(X, y).predict(X))


# -- predictions ---------------------------------------------------------------------


def test_prediction_methods_agree(iris):
    X, y = iris
    clf = SoftmaxRegression(C=100.0).fit(X, y)
    logits = X @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(clf.decision_function(X), logits, rtol=1e-12)
    expected = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12, atol=1e-300)
    # log P = z - logsumexp(z) cancels for the top class: compare absolutely
    np.testing.assert_allclose(
        clf.predict_log_proba(X),
        logits - logsumexp(logits, axis=1, keepdims=True),
        rtol=1e-12,
        atol=1e-13,
    )
    # log-probabilities stay exact where probabilities underflow
    far = X[:1] * 1e4
    log_p = clf.predict_log_proba(far)
    assert np.isfinite(log_p).all() and log_p.min() < -1000
    assert clf.score(X, y) == np.mean(clf.predict(X) == y)


def test_callback_sees_every_iteration(iris):
    X, y = iris
    seen = []
    clf = SoftmaxRegression(solver="lbfgs").fit(X, y, callback=lambda i, f: seen.append((i, f)))
    assert len(seen) == clf.n_iter_
    assert [i for i, _ in seen] == list(range(1, clf.n_iter_ + 1))
    assert seen[-1][1] == pytest.approx(clf.objective_, rel=1e-9)


def test_warm_start(iris):
    X, y = iris
    cold = SoftmaxRegression(C=10.0, solver="lbfgs").fit(X, y)
    warm = SoftmaxRegression(C=9.0, solver="lbfgs", warm_start=True).fit(X, y)
    warm.set_params(C=10.0).fit(X, y)
    assert warm.n_iter_ < cold.n_iter_
    # the same optimum (to the default tolerance on the objective)
    assert warm.objective_ == pytest.approx(cold.objective_, rel=2e-7)
    np.testing.assert_allclose(warm.coef_, cold.coef_, rtol=1e-2, atol=1e-3)
    # at the optimum already: less to do than from zero, and the same optimum
    objective_before = warm.objective_
    again = warm.fit(X, y)
    assert again.n_iter_ < cold.n_iter_
    assert again.objective_ == pytest.approx(objective_before, rel=1e-7)
    # a different problem: warns and starts from zero
    with pytest.warns(UserWarning, match="starting from zero"):
        warm.fit(X[:, :3], y)
    assert warm.coef_.shape == (3, 3)


def test_convergence_warning_with_advice(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="increase max_iter") as record:
        clf = SoftmaxRegression(max_iter=1, solver="lbfgs").fit(X, y)
    assert not clf.converged_ and clf.n_iter_ == 1
    assert "StandardScaler" not in str(record[0].message)  # iris is scaled here
    Xbad = X * np.array([1.0, 1e4, 1.0, 1e-3])
    with pytest.warns(ConvergenceWarning, match="StandardScaler"):
        SoftmaxRegression(max_iter=2, solver="lbfgs").fit(Xbad, y)
    with pytest.warns(ConvergenceWarning, match="decrease C") as record:
        SoftmaxRegression(C=1e4, max_iter=2, solver="newton-cg").fit(X, y)
    assert "try solver='lbfgs'" in str(record[0].message)


def test_convergence_advice_for_elastic_net(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="accept a larger tol") as record:
        SoftmaxRegression(l1_ratio=0.5, max_iter=1).fit(X, y)
    assert "try solver" not in str(record[0].message)  # proximal is the only choice


def test_external_backend_dispatch(monkeypatch, iris):
    """A row source is handed to its backend's build_row_data, with the estimator's settings."""
    from softmax.backends.memory import InMemoryData

    X, y = iris
    calls = {}

    def build_row_data(src, target, **kwargs):
        calls.update(kwargs, target=target)
        classes, codes = np.unique(src.y, return_inverse=True)
        data = InMemoryData(src.X, codes, None, classes, fit_intercept=kwargs["fit_intercept"])
        data.feature_names = ["a", "b", "c", "d"]
        return data

    fake = types.ModuleType("softmax.backends.stream")
    fake.build_row_data = build_row_data
    monkeypatch.setitem(sys.modules, "softmax.backends.stream", fake)
    source = types.SimpleNamespace(__softmax_row_source__=True, X=X, y=y)
    clf = SoftmaxRegression(C=2.0, fit_intercept=False, class_weight=None).fit(source)
    assert calls == {
        "target": None,
        "sample_weight": None,
        "classes": None,
        "class_weight": None,
        "fit_intercept": False,
        "dtype": None,
        "label_smoothing": 0.0,
    }
    ref = SoftmaxRegression(C=2.0, fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-10)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    assert clf.n_features_in_ == 4

    monkeypatch.setitem(sys.modules, "softmax.backends.stream", None)  # import fails
    # the packages of the stream extra, by name (what works for a clone too)
    with pytest.raises(ImportError, match=r'pip install "pyarrow[^"]*" "tqdm[^"]*"'):
        SoftmaxRegression().fit(source)


def test_in_pipeline_and_grid_search(iris):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression())
    search = GridSearchCV(pipe, {"softmaxregression__C": [0.01, 10.0]}, cv=3).fit(X, y)
    assert search.best_params_ == {"softmaxregression__C": 10.0}
    assert search.score(X, y) > 0.95


def test_dask_input_delegates(iris):
    da = pytest.importorskip("dask.array")
    X, y = iris
    clf = SoftmaxRegression().fit(X, y)
    Xd = da.from_array(X, chunks=(50, -1))
    np.testing.assert_allclose(clf.predict_proba(Xd).compute(), clf.predict_proba(X))
    np.testing.assert_array_equal(clf.predict(Xd).compute(), clf.predict(X))
    assert clf.score(Xd, y) == pytest.approx(clf.score(X, y))


# -- bad input ------------------------------------------------------------------------


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = np.arange(20) % 3
    return X, y


@pytest.mark.parametrize(
    ("params", "change", "match"),
    [
        ({"C": 0.0}, None, "C must be a number > 0"),
        ({"C": -1.0}, None, "C must be a number > 0"),
        ({"C": "1"}, None, r"C must be a number > 0 \(np.inf for no penalty\)"),
        ({"l1_ratio": 1.5}, None, r"l1_ratio must be a number in \[0, 1\]"),
        ({"l1_ratio": -0.1}, None, r"l1_ratio must be a number in \[0, 1\]"),
        ({"solver": "liblinear"}, None, "solver must be one of .*'lbfgs'.*'newton-cholesky'"),
        ({"solver": "lbfgs", "l1_ratio": 0.5}, None, "solver='proximal'"),
        ({"max_iter": 0}, None, "max_iter must be an integer >= 1"),
        ({"tol": -1.0}, None, "tol must be a non-negative number"),
        ({"class_weight": {5: 2.0}}, None, r"class_weight names labels \[5\]"),
        ({"class_weight": "equal"}, None, "class_weight must be a dict, 'balanced' or None"),
        ({}, "one_class", "only one class"),
        ({}, "empty", "0 sample"),
        ({}, "nan", "Input X contains NaN"),
        ({}, "inf", "Input X contains infinity"),
        ({}, "short_y", "inconsistent numbers of samples"),
        ({}, "negative_weight", "Negative values in sample_weight"),
        ({}, "zero_weights", "at least one non-zero"),
        ({}, "weight_shape", r"sample_weight.shape == \(19,\)"),
        ({}, "continuous_y", "Unknown label type"),
        ({}, "one_weighted_class", "at least 2 classes with positive total weight"),
    ],
)
def test_bad_input_raises_and_changes_nothing(params, change, match):
    X, y = _data()
    sw = np.ones(20)
    if change == "one_class":
        y = np.zeros(20, dtype=int)
    elif change == "empty":
        X, y, sw = X[:0], y[:0], None
    elif change == "nan":
        X[3, 1] = np.nan
    elif change == "inf":
        X[3, 1] = -np.inf
    elif change == "short_y":
        y = y[:-1]
    elif change == "negative_weight":
        sw[4] = -1.0
    elif change == "zero_weights":
        sw[:] = 0.0
    elif change == "weight_shape":
        sw = sw[:-1]
    elif change == "continuous_y":
        y = np.linspace(0, 1, 20)
    elif change == "one_weighted_class":
        sw = (y == 1).astype(float)
    copies = [None if a is None else a.copy() for a in (X, y, sw)]
    clf = SoftmaxRegression(**params)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y, sample_weight=sw)
    for before, after in zip(copies, (X, y, sw)):
        if before is not None:
            np.testing.assert_array_equal(after, before)
    assert clf.get_params()["C"] == params.get("C", 1.0)  # parameters untouched


def test_fit_never_writes_into_inputs():
    X, y = _data()
    sw = np.linspace(0.5, 2.0, 20)
    for a in (X, y, sw):
        a.setflags(write=False)  # any write would raise
    SoftmaxRegression(class_weight="balanced").fit(X, y, sample_weight=sw)
    Xs = sp.csr_matrix(X)
    data_before = Xs.data.copy()
    SoftmaxRegression().fit(Xs, y).predict_proba(Xs)
    np.testing.assert_array_equal(Xs.data, data_before)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("features", "X has 2 features, but SoftmaxRegression is expecting 3"),
        ("nan", "Input X contains NaN"),
        ("inf", "Input X contains infinity"),
        ("sparse_nan", "Input X contains NaN"),
        ("1d", "Expected 2D array"),
    ],
)
def test_predict_bad_input(change, match):
    X, y = _data()
    clf = SoftmaxRegression().fit(X, y)
    Xt = X.copy()
    if change == "features":
        Xt = Xt[:, :2]
    elif change == "nan":
        Xt[5, 0] = np.nan
    elif change == "inf":
        Xt[5, 0] = np.inf
    elif change == "sparse_nan":
        Xt[5, 0] = np.nan
        Xt = sp.csr_matrix(Xt)
    elif change == "1d":
        Xt = Xt[0]
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        with pytest.raises(ValueError, match=match):
            getattr(clf, method)(Xt)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SoftmaxRegression().predict(np.zeros((2, 2)))


def test_logit_overflow_in_float32_is_recovered():
    # float32 logits overflow (> 3.4e38) although X is finite: the exact path
    # recomputes them in float64 rather than failing or returning NaN.
    X, y = _data()
    clf = SoftmaxRegression(C=100.0).fit(X.astype(np.float32), y)
    big = np.full((1, 3), 1e37, dtype=np.float32)
    proba = clf.predict_proba(big)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(), 1.0)


# -- partial_fit and save -----------------------------------------------------------


def test_partial_fit_classes_rule():
    X, y = _data()
    clf = SoftmaxRegression()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:10], y[:10], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.coef_.shape == (3, 3)
    clf.partial_fit(X[10:], y[10:])  # classes may be omitted later
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes_"):
        clf.partial_fit(X, np.full(20, 7))
    with pytest.raises(ValueError, match="X has 2 features"):
        clf.partial_fit(X[:, :2], y)


def test_partial_fit_approaches_fit():
    """Epochs of partial_fit over the chunks of a data set approach fit on it."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    order = np.random.default_rng(0).permutation(len(y))
    X, labels = X[order], np.array(["a", "b", "c"])[y[order]]
    clf = SoftmaxRegression(C=1.0, random_state=0, batch_size=16)
    for _ in range(60):
        for start in range(0, 150, 50):
            rows = slice(start, start + 50)
            clf.partial_fit(X[rows], labels[rows], classes=["a", "b", "c"])
    full = SoftmaxRegression(C=1.0, tol=1e-10).fit(X, labels)
    f_online = objective(clf.coef_, clf.intercept_, X, labels, 1.0)
    # the default optimizer ("vr", variance-reduced) gets to the optimum itself
    assert -1e-8 <= (f_online - full.objective_) / full.objective_ < 0.02
    assert np.mean(clf.predict(X) == full.predict(X)) >= 0.98


def test_sgd_solver_through_fit(iris):
    """fit(solver="sgd") passes optimizer settings and random_state through."""
    X, y = iris
    exact = SoftmaxRegression().fit(X, y)
    a = SoftmaxRegression(solver="sgd", random_state=0, batch_size=32).fit(X, y)
    b = SoftmaxRegression(solver="sgd", random_state=0, batch_size=32).fit(X, y)
    assert a.solver_ == "sgd"
    np.testing.assert_array_equal(a.coef_, b.coef_)  # same seed, same model
    assert 0 <= (a.objective_ - exact.objective_) / exact.objective_ < 0.02
    with pytest.raises(ValueError, match="optimizer"):
        SoftmaxRegression(solver="sgd", optimizer="rmsprop").fit(X, y)


def test_save_round_trip(tmp_path, iris):
    from softmax import io

    X, y = iris
    clf = SoftmaxRegression().fit(X, np.array(["x", "y", "z"])[y])
    path = tmp_path / "model.softmax"
    clf.save(path)
    loaded = io.load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)


def test_float32_reaches_1e6_on_covertype_like_raw_scales(monkeypatch):
    # Issue 15: on rows shaped like UCI covertype (integer features up to
    # 7,000 beside 0/1 indicators, 7 imbalanced classes) float32 stalled at a
    # relative gap of 2.8e-6 here: float32 rounding of the class sums of the
    # gradient, scaled up by the preconditioner, let the weights drift along
    # the direction softmax ignores. Reference: scikit-learn's float64
    # newton-cholesky optimum, itself checked against our float64 fit.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _datasets  # the benchmarks' covertype-like generator

    X32, y = _datasets.make_covertype_like(30_000, seed=1)
    X64 = X32.astype(np.float64)
    C = 1.0

    def objective(coef, intercept):
        Z = X64 @ np.asarray(coef, np.float64).T + intercept
        ce = logsumexp(Z, axis=1) - Z[np.arange(len(y)), y]
        return C * ce.sum() + 0.5 * np.sum(np.asarray(coef, np.float64) ** 2)

    sk = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-10, max_iter=100).fit(X64, y)
    f_ref = objective(sk.coef_, sk.intercept_)
    ours64 = SoftmaxRegression(C=C, tol=1e-10, max_iter=1000).fit(X64, y)
    assert abs(objective(ours64.coef_, ours64.intercept_) - f_ref) <= 1e-8 * f_ref
    ours32 = SoftmaxRegression(C=C, tol=1e-9, max_iter=1000).fit(X32, y)
    assert ours32.coef_.dtype == np.float32
    gap = (objective(ours32.coef_, ours32.intercept_) - f_ref) / f_ref
    assert gap <= 1e-6, gap
    # at the L2 optimum the weights of every feature sum to zero over the classes
    col_sums = np.abs(ours32.coef_.astype(np.float64).sum(axis=0))
    assert col_sums.max() <= 1e-4 * np.abs(ours32.coef_).max()


# -- rows too large for float64 products (issue 19: fit(X * 1e300) gave zeros) ----------


def _overlapping(seed=3, n=400, p=4, k=3):
    """Classes that overlap: the unpenalised (maximum-likelihood) optimum exists."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = np.argmax(X @ rng.standard_normal((p, k)) + rng.gumbel(size=(n, k)), axis=1)
    return X, y


@pytest.mark.parametrize("scale", [1e300, 2.0**700, 1e120])
@pytest.mark.parametrize("solver", ["auto", "lbfgs", "newton-cg", "proximal"])
def test_huge_rows_fit_as_the_unpenalised_problem_they_are(scale, solver):
    """``C L(w) + |w|^2 / 2`` on ``X * s`` is, with ``v = s w``, ``C L(v) + |v|^2 / (2 s^2)``
    on ``X``: at ``s = 1e120`` and beyond the penalty is below the rounding of
    the data term, so the fit is scikit-learn's unpenalised fit on ``X``
    (``C = inf``), with its coefficients divided by ``s``."""
    X, y = _overlapping()
    big = X * scale
    kept = big.copy()
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no ConvergenceWarning
        # proximal: an elastic net, whose penalty rounds away as the L2's does
        l1_ratio = 0.5 if solver == "proximal" else 0.0
        clf = SoftmaxRegression(solver=solver, tol=1e-10, l1_ratio=l1_ratio).fit(big, y)
    np.testing.assert_array_equal(big, kept)  # the caller's rows are not touched
    assert clf.converged_ and clf.n_iter_ > 0
    # unpenalised, adding one vector to every class's weights changes nothing:
    # compare the representatives that sum to zero over the classes
    ours, ref = clf.coef_ * scale, sk.coef_
    np.testing.assert_allclose(ours - ours.mean(0), ref - ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.intercept_, sk.intercept_ - sk.intercept_.mean(), atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(big), sk.predict_proba(X), atol=1e-6)
    # the objective reported is C times the data term (the penalty rounds away)
    nll = -np.sum(np.log(sk.predict_proba(X)[np.arange(len(y)), y]))
    assert clf.objective_ == pytest.approx(nll, rel=1e-9)


def test_huge_rows_with_a_matching_penalty_fit_the_penalised_problem():
    """On ``X * 2**310`` with ``C = 2**-620``, the objective is ``2**-620`` times
    ``L(v) + |v|^2 / 2`` on ``X``: scikit-learn's C = 1 fit on ``X`` (and the
    penalty is really applied: the coefficients differ from C = inf)."""
    X, y = _overlapping(seed=5)
    s, C = 2.0**310, 2.0**-620
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    seen = []
    clf = SoftmaxRegression(C=C, tol=1e-10).fit(X * s, y, callback=lambda i, F: seen.append(F))
    assert clf.converged_
    np.testing.assert_allclose(clf.coef_ * s, sk.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(clf.intercept_, sk.intercept_, atol=1e-7)
    unpenalised = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    assert np.abs(unpenalised.coef_ - sk.coef_).max() > 1e-2
    logp = np.log(sk.predict_proba(X)[np.arange(len(y)), y])
    F_X = -logp.sum() + 0.5 * np.sum(sk.coef_**2)
    assert clf.objective_ == pytest.approx(C * F_X, rel=1e-9)
    # the callback sees the objective of the problem asked, not the rescaled one
    assert seen[-1] == pytest.approx(clf.objective_, rel=1e-12)
    # the same model through sparse rows
    from scipy import sparse

    sp = SoftmaxRegression(C=C, tol=1e-10).fit(sparse.csr_matrix(X * s), y)
    np.testing.assert_allclose(sp.coef_ * s, sk.coef_, rtol=1e-6, atol=1e-8)


def test_huge_separable_rows_warn_of_separation():
    """At 1e300 the penalty rounds away: separable rows have no optimum, and say so."""
    from softmax._separation import SeparationWarning

    X, y = load_iris(return_X_y=True)
    with pytest.warns(SeparationWarning, match="separat"):
        clf = SoftmaxRegression().fit(X * 1e300, y)
    assert not clf.converged_
    # still a model, and a good one: scikit-learn's accuracy on the unscaled rows
    sk = LogisticRegression(C=1e4, max_iter=10_000).fit(X, y)
    assert clf.score(X * 1e300, y) >= sk.score(X, y) - 0.02


@pytest.mark.parametrize("scale", [1e8, 1e12])
@pytest.mark.parametrize("solver", ["newton-cholesky", "auto"])
def test_newton_cholesky_on_large_features_is_right_or_says_so(scale, solver):
    """Features of size 1e8 beside the intercept's ones: the Hessian's diagonal
    spans 16 orders of magnitude. Unequilibrated, the Cholesky step lost the
    intercepts and the fit stopped 6e-3 (relative) above the optimum while
    reporting convergence. Reference: ``C L(w) + |w|^2 / 2`` on ``X * s`` is
    ``C L(v) + |v|^2 / (2 s^2)`` on ``X`` (``v = s w``), i.e. scikit-learn's fit
    on the well-scaled ``X`` with ``C * s**2``, its objective divided by ``s**2``."""
    X, y = _overlapping(seed=7)
    sk = LogisticRegression(C=scale**2, tol=1e-12, max_iter=100_000).fit(X, y)
    logp = np.log(sk.predict_proba(X)[np.arange(len(y)), y])
    F_ref = (-(scale**2) * logp.sum() + 0.5 * np.sum(sk.coef_**2)) / scale**2
    clf = SoftmaxRegression(solver=solver).fit(X * scale, y)
    assert clf.converged_ and clf.solver_ == "newton-cholesky"
    assert abs(clf.objective_ - F_ref) <= 1e-9 * F_ref
    np.testing.assert_allclose(clf.predict_proba(X * scale), sk.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("l1_ratio", [0.0, 0.3, 1.0])
def test_row_scale_maps_the_objective_exactly(l1_ratio):
    """``C L(w) + r(w) = lambda (C' L(w') + r'(w'))`` with ``w' = w 2**e``, evaluated
    directly (NumPy, the penalty written out) at random coefficients."""
    from softmax._scaling import RowScale

    rng = np.random.default_rng(0)
    X, y = _overlapping(seed=2, n=50)
    e, C = 7, 0.37
    scale = RowScale(e)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)

    def objective(Xm, W, C, rho):
        Z = Xm @ W.T + b
        L = np.sum(logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
        return C * L + (1 - rho) / 2 * np.sum(W**2) + rho * np.abs(W).sum()

    C_s, rho_s, lam = scale.penalty(C, l1_ratio)
    Ws = np.ldexp(W, e)
    assert np.ldexp(X, -e) @ Ws.T == pytest.approx(X @ W.T, rel=1e-15)
    assert lam * objective(scale.rows(X), Ws, C_s, rho_s) == pytest.approx(
        objective(X, W, C, l1_ratio), rel=1e-13
    )
    coef = np.column_stack([Ws, b])
    np.testing.assert_array_equal(scale.coef(coef, 4), np.column_stack([W, b]))
    np.testing.assert_array_equal(scale.coef0(np.column_stack([W, b]), 4), coef)
    assert RowScale(600).penalty(1.0, 0.0)[:2] == (np.inf, 0.0)  # 4**-600 underflows


@pytest.mark.parametrize("dtype, top", [(np.float32, 3e38), (np.float64, 1.7e308)])
def test_rows_at_the_dtype_limit_fit(dtype, top):
    """Up to the largest finite value of the dtype, in that dtype: scikit-learn's
    unpenalised fit on the unscaled rows, to the dtype's precision."""
    X, y = _overlapping(seed=4)
    big = (X * (top / np.abs(X).max())).astype(dtype)
    sk = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = SoftmaxRegression().fit(big, y)
    assert clf.converged_ and clf.coef_.dtype == dtype
    atol = 1e-5 if dtype == np.float32 else 1e-6
    np.testing.assert_allclose(clf.predict_proba(big), sk.predict_proba(X), atol=atol)


def test_callbacks_get_the_gap_only_when_they_take_it(iris):
    """``callback(i, F)`` as before; a ``gap`` keyword (or ``**kwargs``) also gets the
    solver's relative-gap estimate, which ends below ``tol`` for a converged Newton fit
    (the decrement of its last step, the step then taken too)."""
    X, y = iris
    plain, named, kwargs = [], [], []
    SoftmaxRegression(solver="lbfgs").fit(X, y, callback=lambda i, F: plain.append((i, F)))
    clf = SoftmaxRegression(solver="lbfgs").fit(
        X, y, callback=lambda i, F, gap=None: named.append((i, F, gap))
    )
    SoftmaxRegression(solver="lbfgs").fit(X, y, callback=lambda i, F, **kw: kwargs.append(kw))
    assert [(i, F) for i, F, _ in named] == plain and len(plain) == clf.n_iter_
    assert [kw["gap"] for kw in kwargs] == [g for _, _, g in named]
    gaps = np.array([g for _, _, g in named])
    assert np.all(gaps >= 0) and np.isfinite(gaps[-1])
    seen = []
    newton = SoftmaxRegression(solver="newton-cg", tol=1e-8).fit(
        X, y, callback=lambda i, F, gap: seen.append(gap)
    )
    assert newton.converged_ and seen[-1] <= 1e-8 < seen[0]


def test_partial_fit_refuses_rows_too_large_with_advice():
    """Batches of 1e300 are refused before anything changes; the advice works."""
    X, y = _overlapping(seed=6)
    clf = SoftmaxRegression(random_state=0)
    with pytest.raises(
        ValueError, match=r"partial_fit: the rows reach .*2\*\*(\d+) \(exact\)"
    ) as e:
        clf.partial_fit(X * 1e300, y, classes=[0, 1, 2])
    assert not hasattr(clf, "classes_") and not hasattr(clf, "coef_")
    exponent = int(str(e.value).split("2**")[1].split()[0])
    divided = np.ldexp(X * 1e300, -exponent)
    for _ in range(5):
        clf.partial_fit(divided, y, classes=[0, 1, 2])
    sk = LogisticRegression().fit(divided, y)
    assert clf.score(divided, y) >= sk.score(divided, y) - 0.03
