"""The stochastic solvers (softmax.solvers.stochastic): solver="sgd" and partial_fit.

References: gradients and update rules written out here from their
definitions with scipy.special (not with the package's loss code), the batch
optimum of L-BFGS, and real MNIST digits shipped with the package.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax, softmax
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss

from softmax import SoftmaxRegression
from softmax.solvers import SOLVERS, Problem, solve
from softmax.solvers.stochastic import PartialFitState
from softmax.solvers.stochastic._optimizers import (
    AVERAGE_ETA,
    VR_FIRST_VISIT_FACTOR,
    VR_WARM_START_SCALE,
)


def sgd_fit(data, *, random_state=None, max_iter=1000, tol=1e-7, callback=None, **options):
    """solver="sgd" on a backend, through the public road (Problem, registry, solve)."""
    return solve(
        Problem(data, random_state=random_state),
        solver=SOLVERS["sgd"].with_options(**options),
        max_iter=max_iter,
        tol=tol,
        callback=callback,
    )


def mean_gradient(coef, X, y, w=None):
    """Gradient of (1/n) sum_i s_i CE_i, from the textbook formula (P - Y)^T [X 1]."""
    n, p = X.shape
    Z = X @ coef[:, :p].T + coef[:, p]
    G = softmax(Z, axis=1)
    G[np.arange(n), y] -= 1
    if w is not None:
        G *= w[:, None]
    return np.column_stack([G.T @ X, G.sum(axis=0)]) / n


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def mnist():
    from softmax import datasets

    X, y = datasets.load_mnist_sample(return_X_y=True, scale=True)
    return X[:8000], y[:8000], X[8000:], y[8000:]


def test_one_full_batch_sgd_step_is_a_gradient_step(digits):
    """With batch_size >= n, partial_fit is one step on f = F / (C n)."""
    X, y = digits
    C, lr = 0.5, 0.3
    m = SoftmaxRegression(C=C, optimizer="sgd", learning_rate=lr, batch_size=5000)
    m.partial_fit(X, y, classes=np.arange(10))
    coef0 = np.zeros((10, 65))
    expected = coef0 - lr * mean_gradient(coef0, X, y)  # penalty gradient is 0 at W = 0
    m.partial_fit(X, y)  # a second step: now the L2 term W / (C * n) counts
    n_seen = len(y)  # the same rows again: the data set (and its penalty) is unchanged
    g = mean_gradient(expected, X, y)
    g[:, :64] += expected[:, :64] / (C * n_seen)
    expected = expected - lr * g
    np.testing.assert_allclose(m.coef_, expected[:, :64], rtol=1e-10, atol=1e-12)
    b = expected[:, 64] - expected[:, 64].mean()
    np.testing.assert_allclose(m.intercept_, b, rtol=1e-10, atol=1e-12)


def test_adam_and_adagrad_follow_their_definitions(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    lr = 0.05
    for name in ("adam", "adagrad"):
        m = SoftmaxRegression(optimizer=name, learning_rate=lr, batch_size=1000, C=1e6)
        W = np.zeros((10, 65))
        mom, vel = np.zeros_like(W), np.zeros_like(W)
        avg = None
        for t in range(1, 4):
            m.partial_fit(X, y, classes=np.arange(10))
            g = mean_gradient(W, X, y)
            g[:, :64] += W[:, :64] / (1e6 * 300)
            if name == "adam":  # Kingma & Ba (2015), Algorithm 1
                mom = 0.9 * mom + 0.1 * g
                vel = 0.999 * vel + 0.001 * g**2
                W = W - lr * (mom / (1 - 0.9**t)) / (np.sqrt(vel / (1 - 0.999**t)) + 1e-8)
            else:  # Duchi, Hazan & Singer (2011)
                vel = vel + g**2
                W = W - lr * g / (np.sqrt(vel) + 1e-8)
            # the optimizer's own iterate follows the definition ...
            np.testing.assert_allclose(m._partial_fit_state.coef, W, rtol=1e-7, atol=1e-10)
            # ... and from the second pass over the same rows coef_ is the
            # polynomial-decay average of the iterates (Shamir & Zhang, 2013)
            eta = AVERAGE_ETA
            if t == 1:
                avg = W.copy()
            else:
                k = t - 1
                avg = avg + (eta + 1) / (k + eta) * (W - avg)
            np.testing.assert_allclose(m.coef_, avg[:, :64], rtol=1e-7, atol=1e-10)


def test_l1_proximal_step_soft_thresholds(digits):
    """l1_ratio=1: a gradient step then soft thresholding by lr * 1/(C n)."""
    X, y = digits
    C, lr = 0.01, 0.5
    m = SoftmaxRegression(C=C, l1_ratio=1.0, optimizer="sgd", learning_rate=lr, batch_size=5000)
    rng = np.random.default_rng(0)
    W0 = rng.normal(scale=0.05, size=(10, 64))
    m.coef_, m.intercept_, m.classes_ = W0.copy(), np.zeros(10), np.arange(10)
    m.n_features_in_ = 64
    m.partial_fit(X, y)
    coef0 = np.column_stack([W0, np.zeros(10)])
    step = coef0 - lr * mean_gradient(coef0, X, y)
    thr = lr / (C * len(y))
    W = np.sign(step[:, :64]) * np.maximum(np.abs(step[:, :64]) - thr, 0)
    np.testing.assert_allclose(m.coef_, W, atol=1e-12)
    assert (m.coef_ == 0).sum() > 100  # exact zeros, as the batch L1 solver gives


def test_sample_weights_equal_repeated_rows(digits):
    X, y = digits
    X, y = X[:200], y[:200]
    reps = np.random.default_rng(0).integers(1, 4, size=200)
    kw = {"optimizer": "sgd", "learning_rate": 0.2, "batch_size": 10_000, "C": 3.0}
    a = SoftmaxRegression(**kw).partial_fit(X, y, classes=np.arange(10), sample_weight=reps)
    b = SoftmaxRegression(**kw).partial_fit(np.repeat(X, reps, 0), np.repeat(y, reps),
                                            classes=np.arange(10))  # fmt: skip
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)


def test_sparse_input_matches_dense(digits):
    X, y = digits
    kw = {"random_state": 0, "batch_size": 100}
    a = SoftmaxRegression(**kw).partial_fit(X, y, classes=np.arange(10))
    b = SoftmaxRegression(**kw).partial_fit(sp.csr_matrix(X), y, classes=np.arange(10))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-7, atol=1e-9)


def test_float32_input_gives_float32_coef(digits):
    X, y = digits
    m = SoftmaxRegression(random_state=0).partial_fit(X.astype(np.float32), y, classes=range(10))
    assert m.coef_.dtype == np.float32 and m.intercept_.dtype == np.float32
    assert m.score(X, y) > 0.8


def test_partial_fit_warm_starts_from_fit(digits):
    X, y = digits
    m = SoftmaxRegression(solver="lbfgs").fit(X, y)
    W = m.coef_.copy()
    m.set_params(learning_rate=1e-12)
    m.partial_fit(X[:100], y[:100])
    np.testing.assert_allclose(m.coef_, W, atol=1e-9)  # moved from fit's model, not from zero
    # the steps before an anchor covers the rows are shorter still
    assert m._partial_fit_state.optimizer.plain_scale == pytest.approx(
        VR_FIRST_VISIT_FACTOR * VR_WARM_START_SCALE
    )
    a = SoftmaxRegression(solver="lbfgs", optimizer="adam").fit(X, y)
    a.set_params(learning_rate=1e-12).partial_fit(X[:100], y[:100])
    assert a._partial_fit_state.optimizer.t_offset > 0  # adam: the schedule starts further in
    # a new fit replaces the optimizer state: the next partial_fit starts from it
    m.set_params(learning_rate="auto")
    m.fit(X[::2], y[::2])
    W2 = m.coef_.copy()
    m.set_params(learning_rate=1e-12).partial_fit(X[:100], y[:100])
    np.testing.assert_allclose(m.coef_, W2, atol=1e-9)


def test_mnist_one_epoch_of_partial_fit(mnist):
    """The issue's criterion: default parameters, chunks of 500, >= 0.88 accuracy."""
    Xtr, ytr, Xte, yte = mnist
    m = SoftmaxRegression(random_state=0)
    for s in range(0, 8000, 500):
        m.partial_fit(Xtr[s : s + 500], ytr[s : s + 500], classes=np.arange(10))
    assert m.score(Xte, yte) >= 0.88


def test_sgd_fit_approaches_the_batch_optimum(digits):
    X, y = digits
    ref = SoftmaxRegression(solver="lbfgs", tol=1e-10).fit(X, y)
    hist = []
    m = SoftmaxRegression(solver="sgd", max_iter=300, random_state=0)
    m.fit(X, y, callback=lambda it, f: hist.append(f))
    assert m.solver_ == "sgd" and m.converged_
    assert len(hist) == m.n_iter_
    assert m.objective_ <= 1.03 * ref.objective_
    # the reported objective is exact: recompute it from the definition
    Z = X @ m.coef_.T + m.intercept_
    F = -log_softmax(Z, axis=1)[np.arange(len(y)), y].sum() + 0.5 * np.sum(m.coef_**2)
    assert m.objective_ == pytest.approx(F, rel=1e-9)
    assert np.mean(m.predict(X) == ref.predict(X)) > 0.98


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
@pytest.mark.parametrize("learning_rate", ["auto", "constant", "invscaling", 0.05])
def test_every_optimizer_and_schedule_learns(digits, optimizer, learning_rate):
    X, y = digits
    m = SoftmaxRegression(
        solver="sgd", optimizer=optimizer, learning_rate=learning_rate, max_iter=5,
        random_state=0,
    )  # fmt: skip
    m.fit(X, y)
    assert m.score(X, y) > 0.85
    assert np.isfinite(m.objective_)


def test_callable_learning_rate(digits):
    X, y = digits
    seen = []

    def lr(t):
        seen.append(t)
        return 0.5 / math.sqrt(1 + t)

    m = SoftmaxRegression(optimizer="sgd", learning_rate=lr, batch_size=100)
    m.partial_fit(X, y, classes=np.arange(10))
    assert seen == list(range(math.ceil(len(y) / 100)))


def test_l1_sgd_fit_is_sparse_and_close_to_the_batch_l1_solution(digits):
    """Against scikit-learn's SAGA on the same L1 objective ||W||_1 + C sum CE."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    X, y = digits
    C = 0.05
    with threadpool_limits(1):
        sk = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", tol=1e-6, max_iter=5000)
        sk.fit(X, y)
    ref = C * log_loss(y, sk.predict_proba(X), normalize=False) + np.abs(sk.coef_).sum()
    m = SoftmaxRegression(C=C, l1_ratio=1.0, solver="sgd", max_iter=300, random_state=0)
    m.fit(X, y)
    assert m.objective_ <= 1.01 * ref
    assert (m.coef_ == 0).mean() > 0.8 * (sk.coef_ == 0).mean()


def test_bad_parameters_raise(digits):
    X, y = digits
    for params, match in [
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
    ]:
        with pytest.raises(ValueError, match=match):
            SoftmaxRegression(**params).partial_fit(X, y, classes=np.arange(10))
        with pytest.raises(ValueError, match=match):
            SoftmaxRegression(solver="sgd", **params).fit(X, y)
    with pytest.raises(ValueError, match="returned"):
        SoftmaxRegression(learning_rate=lambda t: float("nan")).partial_fit(
            X, y, classes=np.arange(10)
        )


def test_divergence_is_reported_not_hidden(digits):
    X, y = digits
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        SoftmaxRegression(optimizer="sgd", learning_rate=1e300).partial_fit(
            X * 1e10, y, classes=np.arange(10)
        )


def test_solver_checkpoint_resumes_to_the_same_model(digits, tmp_path):
    """Also for in-memory rows: an interrupted solve, resumed, ends identically."""
    from softmax.backends.memory import InMemoryData

    X, y = digits
    data = InMemoryData(np.ascontiguousarray(X), y, None, np.arange(10), fit_intercept=True)
    kw = {"max_iter": 8, "tol": 0.0, "random_state": 5}
    full = sgd_fit(data, **kw)

    class Stop(Exception):
        pass

    def interrupt(epoch, f):
        if epoch == 4:
            raise Stop

    with pytest.raises(Stop):
        sgd_fit(data, **kw, callback=interrupt, checkpoint=tmp_path / "ck")
    resumed = sgd_fit(data, **kw, checkpoint=tmp_path / "ck")
    np.testing.assert_array_equal(resumed.coef, full.coef)
    assert resumed.history == full.history
    with pytest.raises(ValueError, match="other parameters"):
        sgd_fit(data, **{**kw, "batch_size": 64}, checkpoint=tmp_path / "ck")


def test_partial_fit_state_interface(digits):
    """The state partial_fit keeps, driven without an estimator: rows counted once each."""
    X, y = digits
    state = PartialFitState.start(
        n_classes=10, n_features=64, fit_intercept=True, optimizer="adam", random_state=0
    )
    kw = {"C": 1.0, "l1_ratio": 0.0, "batch_size": 256}
    coef = state.step(X, y, None, **kw)
    assert coef.shape == (10, 65)
    assert state.optimizer.t == math.ceil(len(y) / 256)
    assert state.rows.n_rows == len(y)
    state.step(X, y, np.ones(len(y)), **kw)
    assert state.optimizer.t == 2 * math.ceil(len(y) / 256)
    assert state.rows.n_rows == len(y)  # the same rows are not counted twice
    order = np.random.default_rng(0).permutation(len(y))
    for s in range(0, len(y), 300):  # nor when they come back in other chunks
        state.step(X[order[s : s + 300]], y[order[s : s + 300]], None, **kw)
    assert state.rows.n_rows == len(y)
    assert state.rows.weight == len(y)
    state.step(X[:100] + 1.0, y[:100], None, **kw)  # other rows: new
    assert state.rows.n_rows == len(y) + 100
    state.step(X[:100], y[:100], np.full(100, 2.0), **kw)  # other weights: other rows
    assert state.rows.n_rows == len(y) + 200 and state.rows.weight == len(y) + 300


def test_sgd_resumes_mid_epoch(digits, tmp_path):
    """A crash inside an epoch resumes at the saved minibatch, with the same result."""
    from softmax.backends.memory import InMemoryData

    X, y = digits

    class Crash(Exception):
        pass

    class Flaky(InMemoryData):
        crash_at: int | None = None  # minibatches into the run

        def iter_minibatches(self, batch_size, rng):
            for batch in super().iter_minibatches(batch_size, rng):
                self.served = getattr(self, "served", 0) + 1
                if self.crash_at is not None and self.served == self.crash_at:
                    raise Crash
                yield batch

    def data(crash_at=None):
        d = Flaky(np.ascontiguousarray(X), y, None, np.arange(10), fit_intercept=True)
        d.crash_at = crash_at
        return d

    kw = {"max_iter": 4, "tol": 0.0, "random_state": 1, "batch_size": 200}
    full = sgd_fit(data(), **kw)
    ck = tmp_path / "mid"
    with pytest.raises(Crash):  # 9 batches per epoch: crash in the middle of epoch 2
        sgd_fit(data(crash_at=14), **kw, checkpoint=ck, checkpoint_interval=0.0)
    from softmax.streaming import Checkpoint

    state = Checkpoint(ck).load("sgd_state")
    assert int(state["epoch"]) == 1 and int(state["position"]) > 0  # saved inside epoch 2
    resumed = sgd_fit(data(), **kw, checkpoint=ck)
    np.testing.assert_array_equal(resumed.coef, full.coef)
    assert resumed.history == full.history
