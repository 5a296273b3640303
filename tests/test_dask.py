"""The Dask backend: sums over persisted chunks, fits on a cluster, lazy predictions.

References are independent of the Dask code: the in-memory backend on the
gathered rows (for the sums), the in-memory fit of the same data (for the
fits), scikit-learn's ``compute_class_weight`` (for class weights) and
scikit-learn's ``LogisticRegression`` (for the objective).

One ``LocalCluster`` with two worker processes serves the whole module. Its
workers get a memory limit, and spilling to disk and pausing are switched off,
so that data held beyond that limit would get a worker killed instead of being
quietly written to disk: the "larger than one worker" test relies on it.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402

from softmax import SoftmaxRegression  # noqa: E402
from softmax.backends.dask import build_row_data, predict_dask  # noqa: E402
from softmax.backends.memory import InMemoryData  # noqa: E402

#: memory limit of each worker of the test cluster
WORKER_MEMORY = 1000 * 2**20


@pytest.fixture(scope="module")
def client():
    config = {
        # no spilling to disk and no pausing: more than the limit would get a
        # worker killed (at 95%), so "fits across workers" means in memory
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False,
        "distributed.scheduler.allowed-failures": 5,
    }
    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=WORKER_MEMORY,
            dashboard_address=None,
        )
        with distributed.Client(cluster) as c:
            yield c
        cluster.close()


def make_data(n=6000, p=6, k=4, seed=0, dtype=np.float64):
    """Rows with labels drawn from a softmax model (so the fit is well posed)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(dtype)
    W = rng.normal(size=(k, p))
    Z = X @ W.T + rng.gumbel(size=(n, k))
    y = np.argmax(Z, axis=1)
    return X, y


def relative_gap(a, b):
    return abs(a - b) / abs(b)


def sklearn_objective(coef, intercept, X, y, C, sample_weight=None):
    """sklearn's multinomial objective C * sum s_i CE_i + ||W||^2 / 2, independently."""
    Z = X @ coef.T + intercept
    Z = Z - Z.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    _, codes = np.unique(y, return_inverse=True)
    ce = -logp[np.arange(len(y)), codes]
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    return C * float(s @ ce) + 0.5 * float((coef**2).sum())


# -- sums over chunks (default threaded scheduler, no cluster) ----------------


@pytest.mark.parametrize("large_model_paths", [False, True])
def test_sums_equal_in_memory_with_misaligned_chunks_and_class_weights(
    large_model_paths, monkeypatch
):
    if large_model_paths:
        # what large models take: coef as one shared key of the graph, and the
        # chunks' results summed in a tree on the workers
        monkeypatch.setattr("softmax.backends.dask.INLINE_BYTES", 0)
        monkeypatch.setattr("softmax.backends.dask.GATHER_BYTES", 0)
    rng = np.random.default_rng(1)
    X, y = make_data(n=3001, p=5, k=3, seed=1)
    labels = np.array(["ant", "bee", "cat"])[y]
    sw = rng.uniform(0.2, 3.0, size=len(y))
    # X split along columns too; y and weights cut differently from X's rows
    Xd = da.from_array(X, chunks=(700, 3))
    yd = da.from_array(labels, chunks=1000)
    swd = da.from_array(sw, chunks=333)
    data = build_row_data(Xd, yd, sample_weight=swd, class_weight="balanced")

    classes = np.unique(labels)
    cw = compute_class_weight("balanced", classes=classes, y=labels, sample_weight=sw)
    codes = np.searchsorted(classes, labels)
    mem = InMemoryData(X, codes, sw * cw[codes], classes, fit_intercept=True)

    assert data.n_chunks == 5
    np.testing.assert_array_equal(data.classes, classes)
    np.testing.assert_array_equal(data.class_counts, np.bincount(codes))
    assert data.n_samples == 3001 and data.n_features == 5 and data.dtype == np.float64
    assert data.weight_sum == pytest.approx(mem.weight_sum, rel=1e-13)

    coef = rng.normal(size=data.coef_shape)
    loss, grad = data.loss_gradient(coef)
    ref_loss, ref_grad = mem.loss_gradient(coef)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-11 * abs(ref_grad).max())
    assert data.loss(coef) == pytest.approx(ref_loss, rel=1e-13)

    v = rng.normal(size=coef.shape)
    _, _, hessp = data.gradient_hessian_product(coef)
    _, _, ref_hessp = mem.gradient_hessian_product(coef)
    np.testing.assert_allclose(hessp(v), ref_hessp(v), rtol=1e-11, atol=1e-10)
    # a new Newton step replaces the workers' state; the old product stays right
    data.gradient_hessian_product(0.5 * coef)
    np.testing.assert_allclose(hessp(v), ref_hessp(v), rtol=1e-11, atol=1e-10)

    _, _, H = data.hessian(coef)
    np.testing.assert_allclose(H, mem.hessian(coef)[2], rtol=1e-11, atol=1e-10)
    # 1 + 1 + 1 + 2 products + 1 + 1: one pass per question asked
    assert data.n_passes == 7


def test_minibatches_cover_every_row_once():
    X, y = make_data(n=1000, p=3, k=3, seed=2)
    sw = np.linspace(0.5, 1.5, len(y))
    data = build_row_data(
        da.from_array(X, chunks=(300, 3)), da.from_array(y, chunks=300), sample_weight=sw
    )
    batches = list(data.iter_minibatches(64, np.random.default_rng(0)))
    Xb = np.vstack([b[0] for b in batches])
    order = np.lexsort(Xb.T[::-1])
    ref = np.lexsort(X.T[::-1])
    np.testing.assert_array_equal(Xb[order], X[ref])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches])[order], y[ref])
    np.testing.assert_allclose(np.concatenate([b[2] for b in batches])[order], sw[ref])


def test_float32_and_unknown_chunks_leave_the_input_alone():
    X, y = make_data(n=2000, p=4, k=3, seed=3, dtype=np.float32)
    frame = dd.from_pandas(pd.DataFrame(X, columns=list("abcd")), npartitions=3)
    Xd = frame.to_dask_array()  # unknown row chunk sizes
    yd = dd.from_pandas(pd.Series(y), npartitions=2)  # cut differently
    chunks_before = Xd.chunks
    data = build_row_data(Xd, yd)
    assert Xd.chunks == chunks_before  # not sized in place
    assert data.dtype == np.float32 and data.n_samples == 2000
    mem = InMemoryData(np.ascontiguousarray(X), y, None, np.unique(y), fit_intercept=True)
    coef = np.random.default_rng(0).normal(size=data.coef_shape)
    assert data.loss(coef) == pytest.approx(mem.loss(coef), rel=1e-6)


def test_sparse_chunks_fit_like_in_memory_csr():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(2000, 30, density=0.1, format="csr", random_state=0)
    y = np.random.default_rng(0).integers(0, 3, 2000)
    Xd = da.from_array(X.toarray(), chunks=(400, 30)).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, 0))
    )
    model = SoftmaxRegression(tol=1e-10).fit(Xd, y)
    ref = SoftmaxRegression(tol=1e-10).fit(X, y)
    assert model.solver_ == ref.solver_ == "lbfgs"  # "auto" sees the sparse rows
    assert relative_gap(model.objective_, ref.objective_) <= 1e-8
    lazy = model.predict_proba(Xd).compute()
    np.testing.assert_allclose(lazy, model.predict_proba(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "error", "match"),
    [
        (np.zeros((4, 2)), [0, 1, 0, 1], {}, TypeError, "Dask array or DataFrame"),
        (da.zeros(4, chunks=2), [0, 1, 0, 1], {}, ValueError, "2-D"),
        (da.from_array(np.array([["a"], ["b"]])), [0, 1], {}, TypeError, "numbers"),
        (da.from_array(np.array([[0.0], [np.nan]])), [0, 1], {}, ValueError, "NaN"),
        (da.from_array(np.array([[0.0], [np.inf]])), [0, 1], {}, ValueError, "infinity"),
        (da.zeros((4, 2), chunks=2), [0, 1, 0], {}, ValueError, "4 rows but y has 3"),
        (da.zeros((4, 2), chunks=2), [0, 0, 0, 0], {}, ValueError, "at least 2 classes"),
        (da.zeros((4, 2), chunks=2), [0.5, 1, 2, 3], {}, ValueError, "continuous"),
        (
            da.zeros((4, 2), chunks=2),
            [0, 1, 0, 2],
            {"classes": [0, 1]},
            ValueError,
            "not in classes",
        ),
        (
            da.zeros((4, 2), chunks=2),
            [0, 1, 0, 1],
            {"sample_weight": da.from_array(np.array([1.0, -1, 1, 1]), chunks=2)},
            ValueError,
            "Negative",
        ),
        (
            da.zeros((4, 2), chunks=2),
            [0, 1, 0, 1],
            {"sample_weight": np.array([1.0, np.nan, 1, 1])},
            ValueError,
            "NaN or infinity",
        ),
        (
            da.zeros((4, 2), chunks=2),
            [0, 1, 0, 1],
            {"sample_weight": [1.0, 0.0, 1.0, 0.0]},
            ValueError,
            "positive total weight",
        ),
        (
            da.zeros((4, 2), chunks=2),
            [0, 1, 0, 1],
            {"class_weight": {7: 2.0}},
            ValueError,
            "not classes of y",
        ),
        (da.zeros((4, 2), chunks=2), [0, 1, 0, 1], {"dtype": "int32"}, ValueError, "float32"),
        (da.zeros((4, 2), chunks=2), np.zeros((4, 2)), {}, ValueError, "1-D"),
        (da.zeros((4, 2), chunks=2), da.zeros((4, 2), chunks=2), {}, ValueError, "1-D"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(X, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_row_data(X, y, **kwargs)


def test_declared_classes_may_include_absent_labels():
    X, y = make_data(n=500, p=3, k=3, seed=4)
    with pytest.warns(UserWarning, match="zero total weight"):
        data = build_row_data(da.from_array(X, chunks=100), y, classes=[2, 1, 0, 9])
    np.testing.assert_array_equal(data.classes, [0, 1, 2, 9])
    np.testing.assert_array_equal(data.class_counts[:3], np.bincount(y))
    assert data.class_counts[3] == 0


# -- fits on the cluster --------------------------------------------------------


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
def test_fit_on_cluster_equals_in_memory_fit_l2(client, solver):
    X, y = make_data(n=8000, p=6, k=4, seed=5)
    sw = np.random.default_rng(5).uniform(0.5, 2.0, size=len(y))
    Xd = da.from_array(X, chunks=(1000, 6))
    yd = da.from_array(y, chunks=1500)
    swd = da.from_array(sw, chunks=1000)
    params = {"C": 0.5, "solver": solver, "tol": 1e-10}
    model = SoftmaxRegression(**params).fit(Xd, yd, sample_weight=swd)
    ref = SoftmaxRegression(**params).fit(X, y, sample_weight=sw)
    assert model.converged_ and model.solver_ == solver
    assert relative_gap(model.objective_, ref.objective_) <= 1e-8
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-5, atol=1e-6)
    # the same preconditioned path as in memory, not merely the same end point
    assert abs(model.n_iter_ - ref.n_iter_) <= 2
    # and sklearn's objective, computed here from the coefficients
    obj = sklearn_objective(model.coef_, model.intercept_, X, y, 0.5, sw)
    assert relative_gap(obj, model.objective_) <= 1e-10
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=sw)
    sk_obj = sklearn_objective(sk.coef_, sk.intercept_, X, y, 0.5, sw)
    assert model.objective_ <= sk_obj * (1 + 1e-9)


def test_fit_on_cluster_equals_in_memory_fit_elastic_net(client):
    X, y = make_data(n=6000, p=8, k=3, seed=6)
    Xd = da.from_array(X, chunks=(2000, 8))
    yd = da.from_array(y, chunks=2000)
    params = {"C": 0.05, "l1_ratio": 0.5, "tol": 1e-10, "max_iter": 5000}
    model = SoftmaxRegression(**params).fit(Xd, yd)
    ref = SoftmaxRegression(**params).fit(X, y)
    assert model.solver_ == "proximal"
    assert relative_gap(model.objective_, ref.objective_) <= 1e-8
    np.testing.assert_array_equal(model.coef_ == 0, ref.coef_ == 0)  # same sparsity


def test_dataframe_with_string_labels_and_balanced_weights(client):
    X, y = make_data(n=5000, p=4, k=3, seed=7)
    df = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    labels = pd.Series(np.array(["low", "mid", "high"])[y])
    sw = pd.Series(np.random.default_rng(7).uniform(0.5, 2.0, size=len(y)))
    ddf = dd.from_pandas(df, npartitions=4)
    dlab = dd.from_pandas(labels, npartitions=3)
    dsw = dd.from_pandas(sw, npartitions=5)
    params = {"class_weight": "balanced", "tol": 1e-10, "solver": "lbfgs"}
    model = SoftmaxRegression(**params).fit(ddf, dlab, sample_weight=dsw)
    ref = SoftmaxRegression(**params).fit(df, labels, sample_weight=sw)
    assert relative_gap(model.objective_, ref.objective_) <= 1e-8
    np.testing.assert_array_equal(model.classes_, ref.classes_)
    np.testing.assert_array_equal(model.feature_names_in_, ["w", "x", "y", "z"])

    proba = model.predict_proba(ddf)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), model.predict_proba(df), rtol=1e-12, atol=0)
    pred = model.predict(ddf).compute()
    np.testing.assert_array_equal(pred, model.predict(df))
    # a plain Dask array of the same rows (no column names) predicts the same
    as_array = model.predict(ddf.to_dask_array(lengths=True)).compute()
    np.testing.assert_array_equal(as_array, pred)
    assert model.score(ddf, dlab) == pytest.approx(model.score(df, labels), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predictions_are_lazy_and_equal_in_memory_ones(client, dtype):
    X, y = make_data(n=3000, p=5, k=3, seed=8, dtype=dtype)
    model = SoftmaxRegression(tol=1e-8).fit(X, y)
    Xd = da.from_array(X, chunks=(700, 2))
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        lazy = getattr(model, method)(Xd)
        expected = getattr(model, method)(X)
        assert isinstance(lazy, da.Array)
        assert lazy.dtype == expected.dtype and lazy.shape == expected.shape
        assert lazy.chunks[0] == Xd.chunks[0]
        got = lazy.compute()
        assert got.dtype == expected.dtype
        if method == "predict":
            np.testing.assert_array_equal(got, expected)
        else:
            rtol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match="features"):
        predict_dask(model, da.zeros((4, 3), chunks=2), "predict")


def _worker_pids(client):
    return client.run(os.getpid)


@pytest.mark.slow
def test_killing_a_worker_mid_fit_ends_with_the_same_model(client):
    X, y = make_data(n=20000, p=10, k=4, seed=9)
    Xd = da.from_array(X, chunks=(2500, 10))
    yd = da.from_array(y, chunks=2500)
    params = {"solver": "lbfgs", "tol": 1e-10}
    undisturbed = SoftmaxRegression(**params).fit(Xd, yd)
    victim = sorted(_worker_pids(client).values())[0]
    killed = []

    def kill_at_third(iteration, objective):
        if iteration == 3 and not killed:
            os.kill(victim, signal.SIGKILL)  # as abrupt as a machine dying
            killed.append(iteration)

    try:
        model = SoftmaxRegression(**params).fit(Xd, yd, callback=kill_at_third)
    finally:
        # the nanny restarts the killed worker; later tests need both
        client.wait_for_workers(2, timeout=180)
    assert killed == [3]
    assert victim not in _worker_pids(client).values()
    # the lost chunks were recomputed from the graph: the very same numbers
    np.testing.assert_allclose(model.coef_, undisturbed.coef_, rtol=1e-12, atol=1e-14)
    assert model.n_iter_ == undisturbed.n_iter_
    # and the same model as in memory
    ref = SoftmaxRegression(**params).fit(X, y)
    assert relative_gap(model.objective_, ref.objective_) <= 1e-8


@pytest.mark.slow
def test_data_larger_than_one_worker_trains_across_workers(client):
    client.wait_for_workers(2, timeout=180)
    workers = sorted(client.scheduler_info()["workers"])
    n_half, p, k = 725_000, 100, 3
    nbytes = 2 * n_half * p * 8  # ~ 1.1 GiB of float64 rows: more than one worker's limit
    assert nbytes > WORKER_MEMORY
    W = np.random.default_rng(10).normal(size=(k, p)) / np.sqrt(p)
    halves = []
    for i, address in enumerate(workers):
        rs = da.random.default_rng(10 + i)
        Xh = rs.standard_normal((n_half, p), chunks=(50_000, p))
        # labels drawn from a known softmax model (Gumbel-max), made on the workers
        yh = da.argmax(Xh @ W.T + rs.gumbel(size=(n_half, k), chunks=(50_000, k)), axis=1)
        # half the rows made and kept on each worker (persisted from a graph, so
        # still recomputable): the split is fixed, not left to the load of the
        # moment, and neither worker could hold all the rows
        halves.append(client.persist([Xh, yh], workers=[address]))
    X = da.concatenate([h[0] for h in halves])
    y = da.concatenate([h[1] for h in halves])

    def rss(dask_worker):
        import psutil

        return psutil.Process().memory_info().rss

    peak = dict.fromkeys(workers, 0)

    def record_memory(iteration, objective):
        for address, value in client.run(rss).items():
            peak[address] = max(peak.get(address, 0), value)

    # a few iterations suffice to show the fit works (each is a pass over 1 GiB)
    model = SoftmaxRegression(C=1.0, solver="lbfgs", max_iter=8)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y, callback=record_memory)
    # both workers took part and each stayed below its limit all along
    assert sorted(client.scheduler_info()["workers"]) == workers  # none was restarted
    assert all(nbytes / 2 < value < WORKER_MEMORY for value in peak.values())
    # with a million rows the fit recovers the generating model closely
    assert model.n_iter_ == 8
    W0 = W - W.mean(axis=0)  # the symmetric parametrisation is centred
    cos = np.sum(model.coef_ * W0) / (np.linalg.norm(model.coef_) * np.linalg.norm(W0))
    assert cos > 0.99
