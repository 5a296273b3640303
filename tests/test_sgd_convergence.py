"""Convergence of the default stochastic optimizer ("vr": preconditioned SVRG).

References: the batch optimum of L-BFGS (tight tolerance), the objective and
the held-out log loss written out here with scipy.special, the Kronecker
inverse formed densely with numpy (np.kron, np.linalg.inv), and the previous
default optimizer ("adam" with iterate averaging) on the same chunks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn.datasets import load_digits, make_classification

from softmax import SoftmaxRegression
from softmax.solvers import _preconditioners
from softmax.solvers._preconditioners import damped_kronecker
from softmax.solvers.stochastic import _batches
from softmax.solvers.stochastic._batches import FeatureStats, RowIndex, row_digests
from softmax.solvers.stochastic._optimizers import Adam


def objective(m, X, y, C=1.0):
    """C sum_i CE_i + ||W||^2 / 2 (the intercept is not penalised), from the definition."""
    Z = np.asarray(X @ m.coef_.T, dtype=np.float64) + m.intercept_
    return C * -log_softmax(Z, axis=1)[np.arange(len(y)), y].sum() + 0.5 * np.sum(
        np.asarray(m.coef_, dtype=np.float64) ** 2
    )


def mean_log_loss(m, X, y):
    Z = np.asarray(X @ m.coef_.T, dtype=np.float64) + m.intercept_
    return -log_softmax(Z, axis=1)[np.arange(len(y)), y].mean()


def epochs_of_partial_fit(model, X, y, chunk, epochs, classes, record=()):
    """Pass X in chunks ``epochs`` times; return {epoch: objective} for the epochs in record."""
    out = {}
    for e in range(1, epochs + 1):
        for s in range(0, X.shape[0], chunk):
            model.partial_fit(X[s : s + chunk], y[s : s + chunk], classes=classes)
        if e in record:
            out[e] = objective(model, X, y, model.C)
    return out


# The batch optimum of C = 1 on the first 8,000 shipped digits, computed
# independently of this package: objective() at the coefficients of
# sklearn.linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)
# (576 L-BFGS iterations, about 3 minutes on 2 shared cores: too slow to redo here).
MNIST_OPTIMUM = 1240.22397532


@pytest.fixture(scope="module")
def mnist():
    from softmax import datasets

    X, y = datasets.load_mnist_sample(return_X_y=True, scale=True)  # pixels / 255
    Xtr, ytr, Xte, yte = X[:8000], y[:8000], X[8000:], y[8000:]
    ref = SoftmaxRegression(C=1.0, tol=1e-10, max_iter=5000).fit(Xtr, ytr)
    # The reference model (for the held-out log loss) is certified against it.
    assert objective(ref, Xtr, ytr) == pytest.approx(MNIST_OPTIMUM, rel=1e-9)
    return Xtr, ytr, Xte, yte, ref


def test_mnist_partial_fit_reaches_the_batch_optimum_within_one_percent(mnist):
    """The issue's requirement, default parameters, chunks of 500 rows.

    One epoch: >= 0.88 held-out accuracy. More epochs: the penalised training
    objective and the held-out log loss both within 1% of the batch
    optimum's (measured, random_state 0, 1, 2: objective 0.70%, 0.68%, 0.74%
    above it after 20 epochs, 0.43%, 0.42%, 0.46% after 25; held-out log
    loss -0.22%, -0.22%, -0.25% after 20).
    """
    Xtr, ytr, Xte, yte, ref = mnist
    f_ref, ll_ref = MNIST_OPTIMUM, mean_log_loss(ref, Xte, yte)
    m = SoftmaxRegression(random_state=0)
    f = epochs_of_partial_fit(m, Xtr, ytr, 500, 1, np.arange(10), record=(1,))
    assert m.score(Xte, yte) >= 0.88
    f.update(epochs_of_partial_fit(m, Xtr, ytr, 500, 19, np.arange(10), record=(19,)))
    ll_20 = mean_log_loss(m, Xte, yte)
    f.update(epochs_of_partial_fit(m, Xtr, ytr, 500, 5, np.arange(10), record=(5,)))
    gap = {1: f[1] / f_ref - 1, 20: f[19] / f_ref - 1, 25: f[5] / f_ref - 1}
    assert gap[1] > gap[20] > gap[25] > 0
    # Within 1% after 20 epochs, as README.md and docs/streaming.md claim (adam: 12%).
    assert gap[20] < 0.01 and abs(ll_20 / ll_ref - 1) < 0.01
    assert gap[25] < 0.01  # 25 epochs
    assert abs(mean_log_loss(m, Xte, yte) / ll_ref - 1) < 0.01


def test_mnist_sgd_fit_reaches_the_batch_optimum(mnist):
    """fit(solver="sgd"), default parameters: within 1% (before "vr": 2.8% after 123 epochs)."""
    Xtr, ytr, Xte, yte, ref = mnist
    hist = []
    m = SoftmaxRegression(solver="sgd", random_state=0, max_iter=200)
    m.fit(Xtr, ytr, callback=lambda it, f: hist.append(f))
    assert m.converged_ and m.n_iter_ < 100
    f_ref = MNIST_OPTIMUM
    assert objective(m, Xtr, ytr) == pytest.approx(m.objective_, rel=1e-9)
    assert m.objective_ / f_ref - 1 < 0.005
    assert hist[29] / f_ref - 1 < 0.01  # after 30 epochs (measured 0.5%)
    assert abs(mean_log_loss(m, Xte, yte) / mean_log_loss(ref, Xte, yte) - 1) < 0.01


def _sparse_set():
    rng = np.random.default_rng(0)
    n, p = 3000, 2000  # more features than the full preconditioner takes: diagonal
    X = sp.random(n, p, density=0.01, format="csr", random_state=0,
                  data_rvs=lambda k: rng.exponential(1.0, k))  # fmt: skip
    W = rng.normal(size=(4, p))
    y = np.argmax(np.asarray(X @ W.T) + rng.gumbel(size=(n, 4)), axis=1)
    return X, y


def _data(name):
    if name == "digits, unscaled 0..16":
        X, y = load_digits(return_X_y=True)
        return X, y
    if name == "digits / 16, float32":
        X, y = load_digits(return_X_y=True)
        return (X / 16).astype(np.float32), y
    if name == "synthetic, well conditioned":
        return make_classification(
            4000, 40, n_informative=20, n_classes=5, random_state=0
        )  # fmt: skip
    return _sparse_set()


@pytest.mark.parametrize(
    "name, epochs",
    [
        ("digits, unscaled 0..16", 20),
        ("digits / 16, float32", 20),
        ("synthetic, well conditioned", 20),
        ("sparse CSR", 20),
    ],
)
def test_vr_is_no_worse_than_adam_on_other_data(name, epochs):
    """No divergence, and after some epochs at least as close to the optimum as "adam".

    Measured (objective gap after 5 / 20 epochs, "vr" vs "adam"): digits /
    16 in float32 3.8% / 0.10% vs 23% / 2.6%, synthetic 0.00% / 0.00% vs
    0.29% / 0.02%, sparse 21% / 0.25% vs 28% / 18%, unscaled digits (near
    separable) 823% / 307% vs 1185% / 511%.
    """
    X, y = _data(name)
    classes = np.unique(y)
    ref = SoftmaxRegression(tol=1e-10, max_iter=5000).fit(X, y)
    f_ref = objective(ref, X, y)
    gaps = {}
    for opt in ("vr", "adam"):
        m = SoftmaxRegression(optimizer=opt, random_state=0)
        f = epochs_of_partial_fit(m, X, y, 500, epochs, classes, record=(1, epochs))
        assert np.isfinite(m.coef_).all() and m.coef_.dtype == X.dtype
        gaps[opt] = {e: v / f_ref - 1 for e, v in f.items()}
    assert gaps["vr"][epochs] < gaps["vr"][1]
    assert gaps["vr"][epochs] <= gaps["adam"][epochs]


@pytest.fixture(scope="module")
def digits_optimum(digits_scaled):
    """digits / 16, C = 1: scikit-learn's optimum, its objective computed here."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    X, y = digits_scaled
    with threadpool_limits(1):
        ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y)
    return objective(ref, X, y)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "reshuffled"])
@pytest.mark.parametrize("chunk", [50, 128, 200, 256, 333, 512, 1000])
def test_partial_fit_reaches_the_optimum_in_any_chunking(
    digits_scaled, digits_optimum, chunk, shuffle
):
    """The issue's grid: default optimizer, 20 epochs, within 1% of the batch optimum.

    In file order or reshuffled every epoch (new chunks every time: the rows
    are recognised by their digests, so the penalty stays that of the data
    set). Before the fix 12 of these 14 settings ended 4% to 660% above the
    optimum; measured after it: at most 0.12% (docs/streaming.md).
    """
    X, y = digits_scaled
    rng = np.random.default_rng(1)
    m = SoftmaxRegression(random_state=0)
    for _ in range(20):
        order = rng.permutation(len(y)) if shuffle else np.arange(len(y))
        for s in range(0, len(y), chunk):
            rows = order[s : s + chunk]
            m.partial_fit(X[rows], y[rows], classes=np.arange(10))
    gap = objective(m, X, y) / digits_optimum - 1
    assert 0 <= gap < 0.01
    assert m._partial_fit_state.rows.n_rows == len(y)


def test_vr_steps_stay_at_the_optimum(digits_scaled):
    """Variance reduction: at the optimum the SVRG gradient estimate is zero, so even
    unit (Newton-sized) steps stay there, where plain stochastic steps wander off."""
    X, y = digits_scaled
    X, y, half = X[:1796], y[:1796], 898  # two chunks of 898 rows
    ref = SoftmaxRegression(tol=1e-12, max_iter=5000).fit(X, y)
    per_pass = math.ceil(half / 256) * 2  # updates of one pass of steps over the data
    # tiny steps while the first pass counts the rows and the second gathers
    # the anchor's gradient at the optimum (two passes of steps a call there)
    n_first = per_pass * 3

    def lr(t):
        return 1e-12 if t < n_first else 1.0

    moved = {}
    for opt in ("vr", "sgd"):
        m = SoftmaxRegression(optimizer=opt, learning_rate=lr, random_state=0)
        # the optimum's coefficients, but not fit's record of its rows: the
        # penalty is that of the rows partial_fit sees, the same 1,796
        m.coef_, m.intercept_ = ref.coef_.copy(), ref.intercept_.copy()
        m.classes_, m.n_features_in_ = ref.classes_, X.shape[1]
        for _ in range(4):
            for s in (0, half):
                m.partial_fit(X[s : s + half], y[s : s + half])
        moved[opt] = np.abs(m.coef_ - ref.coef_).max()
    assert moved["vr"] < 1e-4
    assert moved["sgd"] > 100 * moved["vr"]


@pytest.fixture(scope="module")
def digits_scaled():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_preconditioner_is_the_damped_kronecker_inverse(fit_intercept, monkeypatch):
    """M g equals the inverse of A (x) (Sigma + delta I) + l2 I (in (W, b') variables),
    formed densely with np.kron, on the weights; the intercepts get K g_b."""
    monkeypatch.setattr(_preconditioners, "VR_LOW_RANK_TOL", 0.0)  # every direction kept: exact
    rng = np.random.default_rng(0)
    K, p, l2 = 3, 4, 0.05
    X = rng.normal(size=(50, p)) @ rng.normal(size=(p, p)) + 2.0
    st = FeatureStats(p, full=True)
    st.add(X, None)
    mean, second = st.moments(centred=fit_intercept)
    Xc = X - X.mean(0) if fit_intercept else X
    np.testing.assert_allclose(second, Xc.T @ Xc / len(X), rtol=1e-12, atol=1e-12)
    pre = damped_kronecker(mean, second, K, l2, 8, fit_intercept)
    delta = pre.lb_rest
    A = (np.eye(K) - 1.0 / K) / K
    H = np.kron(A, second + delta * np.eye(p)) + l2 * np.eye(K * p)
    G = rng.normal(size=(K, p + fit_intercept))
    GW = G[:, :p] - (np.outer(G[:, p], mean) if fit_intercept else 0.0)
    expected_W = np.linalg.solve(H, GW.ravel()).reshape(K, p)
    out = pre.apply(G.copy())
    np.testing.assert_allclose(out[:, :p], expected_W, rtol=1e-9)
    if fit_intercept:
        np.testing.assert_allclose(out[:, p], K * G[:, p] - expected_W @ mean, rtol=1e-9)
    # the damping holds the effective dimension at the target: a quarter of the
    # rows (8) or of the features (4), whichever is fewer
    lam = np.linalg.eigvalsh(second)
    assert np.sum(lam / (lam + delta)) == pytest.approx(1.0, rel=1e-6)


def test_low_rank_preconditioner_is_within_its_tolerance():
    """Dropping the directions with eigenvalues below tol * delta changes M there by at
    most a factor 1 + tol: generalized eigenvalues of (M_low_rank, M_exact) in [1, 1 + tol]."""
    rng = np.random.default_rng(2)
    p = 40
    X = rng.normal(size=(400, p)) * np.geomspace(1.0, 1e-3, p)  # a spread of variances
    st = FeatureStats(p, full=True)
    st.add(X, None)
    mean, second = st.moments(centred=True)
    low = damped_kronecker(mean, second, 5, 1e-3, 16, True)
    lam, U = np.linalg.eigh(second)
    exact = (U / ((np.maximum(lam, 0) + low.lb_rest) / 5 + 1e-3)) @ U.T
    assert 0 < low.Ub.shape[1] < p  # some directions dropped, some kept
    ratio = np.linalg.eigvals(np.linalg.solve(exact, low.matrix())).real
    tol = _preconditioners.VR_LOW_RANK_TOL
    assert ratio.min() > 1 - 1e-9 and ratio.max() < 1 + tol + 1e-9


def test_preconditioner_from_few_rows_equals_the_full_one():
    """Fewer rows than features: the m x m Gram route gives the same M as the p x p one."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 30))
    w = rng.uniform(0.5, 2.0, size=12)
    st = FeatureStats(30, full=True)
    st.add(X, w)
    assert st.rows  # kept: fewer rows than features
    mean, second = st.moments(centred=True)
    a = damped_kronecker(mean, second, 4, 1e-3, 16, True)
    b = damped_kronecker(mean, None, 4, 1e-3, 16, True, sample=st.sample())
    assert a.lb_rest == pytest.approx(b.lb_rest, rel=1e-6)
    Ma = a.matrix()
    np.testing.assert_allclose(b.matrix(), Ma, rtol=1e-6, atol=1e-8 * np.abs(Ma).max())


def test_vr_rejects_l1_and_auto_switches_to_adam(digits_scaled):
    X, y = digits_scaled
    with pytest.raises(ValueError, match="optimizer='vr' needs l1_ratio=0"):
        SoftmaxRegression(optimizer="vr", l1_ratio=0.5).partial_fit(X, y, classes=range(10))
    m = SoftmaxRegression(l1_ratio=0.5, C=0.1).partial_fit(X, y, classes=range(10))
    assert isinstance(m._partial_fit_state.optimizer, Adam)


def test_rows_beyond_the_index_cap_keep_learning(digits_scaled, monkeypatch):
    """Past MAX_REMEMBERED_ROWS rows are not recognised: counted as new, plain steps, no error."""
    X, y = digits_scaled
    monkeypatch.setattr(_batches, "MAX_REMEMBERED_ROWS", 600)
    m = SoftmaxRegression(random_state=0)
    for _ in range(5):
        for s in range(0, 1500, 300):
            m.partial_fit(X[s : s + 300], y[s : s + 300], classes=range(10))
    rows = m._partial_fit_state.rows
    assert rows.n_slots == 600
    assert rows.n_rows == 600 + 5 * 900  # the unremembered rows count every time
    assert m.score(X, y) > 0.9


def test_row_digests_recognise_rows_wherever_they_are():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 7))
    y = rng.integers(0, 3, 50)
    w = rng.uniform(0.5, 2.0, 50)
    d = row_digests(X, y, w)
    assert len(np.unique(d)) == 50
    order = rng.permutation(50)
    np.testing.assert_array_equal(row_digests(X[order], y[order], w[order]), d[order])
    # a change of one feature's sign, the label or the weight is another row
    X2 = X.copy()
    X2[0, 3] = -X2[0, 3]
    y2, w2 = y.copy(), w.copy()
    y2[1] = (y2[1] + 1) % 3
    w2[2] *= 2
    changed = row_digests(X2, y2, w2) != d
    assert changed[:3].all() and not changed[3:].any()
    # sparse rows: the same rows in other orders, other chunks
    S = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    ds = row_digests(S, y, None)
    np.testing.assert_array_equal(row_digests(S[order], y[order], None), ds[order])
    np.testing.assert_array_equal(row_digests(S[10:20], y[10:20], None), ds[10:20])


def test_row_index_counts_distinct_rows_and_their_copies():
    idx = RowIndex(capacity=8)  # small: forces the table to grow
    d = np.arange(100, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    first, new = idx.add(d[:30], None)
    np.testing.assert_array_equal(np.sort(first), np.arange(30))
    assert new.all() and idx.n_rows == 30 and idx.weight == 30
    slots, new = idx.add(d[::-1][:80], np.full(80, 2.0))  # 99..20: 70 of them new
    assert idx.n_slots == 100 and idx.n_rows == 100 and idx.weight == 30 + 2 * 70
    np.testing.assert_array_equal(slots[~new], first[20:30][::-1])  # the same rows, the same slots
    np.testing.assert_array_equal(np.sort(slots[new]), np.arange(30, 100))
    _, new = idx.add(d[:80], None)
    assert not new.any() and idx.n_rows == 100
    # two copies of a row in one call: the row counts twice from now on
    _, new = idx.add(d[[5, 5, 6]], None)
    assert new.sum() == 1 and not new[2] and idx.n_rows == 101


def test_vr_is_invariant_to_the_scale_of_the_weights(digits_scaled):
    """Weights times c with C / c is the same objective: the same steps, the same model."""
    X, y = digits_scaled
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    models = []
    for c in (1.0, 8.0):
        m = SoftmaxRegression(C=2.0 / c, random_state=0)
        for _ in range(3):
            for s in range(0, len(y), 600):
                rows = slice(s, s + 600)
                m.partial_fit(X[rows], y[rows], classes=range(10), sample_weight=c * w[rows])
        models.append(m)
    np.testing.assert_allclose(models[0].coef_, models[1].coef_, rtol=1e-7, atol=1e-9)
