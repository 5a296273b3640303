"""Dask backend: time per function evaluation and per fit, 1 vs 2 workers vs in memory.

The same synthetic rows (float32, labels drawn from a softmax model by the
Gumbel-max trick) are generated from one seeded Dask graph three times: on a
LocalCluster with one worker, on one with two workers (both kept alive for the
whole run) and, computed into the client's memory, for the in-memory fit. The
three are then measured interleaved, round after round, so that load from
other processes on the machine hits all of them alike; medians are reported.

Measured
--------
- one loss-and-gradient evaluation (the question every L-BFGS iteration asks),
  after the rows are persisted (``build_row_data``);
- ``build_row_data`` itself on rows already persisted on the cluster (the
  validation pass and the per-chunk label coding);
- a whole ``SoftmaxRegression(solver="lbfgs").fit`` from rows persisted on the
  cluster (build included), and the same fit on the in-memory arrays.

Workers run one thread each (Dask sets OMP/OPENBLAS threads to 1 in them); the
in-memory fit uses the client's BLAS threads (all cores).

Usage::

    .venv/bin/python benchmarks/bench_dask.py --rows 10_000_000 --features 20 --classes 5
    .venv/bin/python benchmarks/bench_dask.py --rows 1_000_000 --out benchmarks/results/dask.md --append
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def machine_info() -> dict[str, str]:
    import dask
    import distributed
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = ", ".join(
        f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    )
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "CPU": cpu,
        "logical cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "BLAS (client)": blas,
    }


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def make_rows(n: int, p: int, k: int, chunk: int, seed: int):
    """The same lazy (X, y) on any scheduler: float32 rows, softmax-model labels."""
    import dask.array as da

    rs = da.random.default_rng(seed)
    X = rs.standard_normal((n, p), chunks=(chunk, p), dtype=np.float32)
    W = (np.random.default_rng(seed).normal(size=(k, p)) / np.sqrt(p)).astype(np.float32)
    y = da.argmax(X @ W.T + rs.gumbel(size=(n, k), chunks=(chunk, k)), axis=1)
    return X, y


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=250_000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--evals", type=int, default=5, help="evaluations timed per round")
    ap.add_argument("--fit-rounds", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from softmax import SoftmaxRegression
    from softmax.backends.dask import build_row_data
    from softmax.backends.memory import InMemoryData

    n, p, k = args.rows, args.features, args.classes
    load_before = load()
    print(f"{n:,} rows x {p} features (float32, {n * p * 4 / 2**30:.2f} GiB), {k} classes")
    print(load_before)

    clusters, clients, rows = {}, {}, {}
    for w in (1, 2):
        clusters[w] = LocalCluster(
            n_workers=w,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=0,  # no limit: the benchmark measures speed, not limits
            silence_logs=logging.ERROR,
        )
        clients[w] = Client(clusters[w], set_as_default=False)
        with clients[w].as_current():
            X, y = make_rows(n, p, k, args.chunk, seed=0)
            X, y = dask.persist(X, y)  # the rows live on the cluster from here on
            dask.compute(X.sum(), y.sum())  # wait for them
        rows[w] = (X, y)
    print("clusters up, rows persisted")

    with dask.config.set(scheduler="threads"):
        Xm, ym = dask.compute(*make_rows(n, p, k, args.chunk, seed=0))
    classes = np.unique(ym)
    mem = InMemoryData(Xm, ym.astype(np.intp), None, classes, fit_intercept=True)

    data = {}
    build_times = {1: [], 2: []}
    for w in (1, 2):
        with clients[w].as_current():
            t = time.perf_counter()
            data[w] = build_row_data(*rows[w])
            build_times[w].append(time.perf_counter() - t)
    coef = np.random.default_rng(1).normal(size=mem.coef_shape) * 0.01

    # -- per evaluation, interleaved ------------------------------------------
    evals = {"memory": [], 1: [], 2: []}
    for r in range(args.rounds):
        evals["memory"].append(median_time(lambda: mem.loss_gradient(coef), args.evals))
        for w in (1, 2):
            with clients[w].as_current():
                evals[w].append(median_time(lambda w=w: data[w].loss_gradient(coef), args.evals))
        print(
            f"round {r}: eval memory {evals['memory'][-1]:.3f}s, 1 worker "
            f"{evals[1][-1]:.3f}s, 2 workers {evals[2][-1]:.3f}s"
        )
    # agreement of the sums (a benchmark that computes nonsense is no benchmark)
    ref = mem.loss_gradient(coef)[0]
    for w in (1, 2):
        with clients[w].as_current():
            assert abs(data[w].loss_gradient(coef)[0] - ref) <= 1e-9 * abs(ref)
    for w in (1, 2):
        with clients[w].as_current():
            t = time.perf_counter()
            build_row_data(*rows[w])
            build_times[w].append(time.perf_counter() - t)
    data.clear()  # release the persisted chunks before the fits

    # -- whole fits, interleaved ------------------------------------------------
    params = {"solver": "lbfgs", "tol": args.tol, "max_iter": args.max_iter}
    fits = {"memory": [], 1: [], 2: []}
    fitted = {}
    for r in range(args.fit_rounds):
        t = time.perf_counter()
        fitted["memory"] = SoftmaxRegression(**params).fit(Xm, ym)
        fits["memory"].append(time.perf_counter() - t)
        for w in (1, 2):
            with clients[w].as_current():
                t = time.perf_counter()
                fitted[w] = SoftmaxRegression(**params).fit(*rows[w])
                fits[w].append(time.perf_counter() - t)
        print(
            f"fit round {r}: memory {fits['memory'][-1]:.1f}s, 1 worker {fits[1][-1]:.1f}s, "
            f"2 workers {fits[2][-1]:.1f}s"
        )
    obj = fitted["memory"].objective_
    gaps = {w: abs(fitted[w].objective_ - obj) / obj for w in (1, 2)}
    load_after = load()
    for w in (1, 2):
        clients[w].close()
        clusters[w].close()

    med = {key: statistics.median(v) for key, v in evals.items()}
    fmed = {key: statistics.median(v) for key, v in fits.items()}
    bmed = {key: statistics.median(v) for key, v in build_times.items()}
    lines = [
        f"### {n:,} rows x {p} features, {k} classes (float32, {n * p * 4 / 2**30:.2f} GiB of X)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_dask.py --rows {n} --features {p} "
        f"--classes {k} --chunk {args.chunk} --rounds {args.rounds} --evals {args.evals} "
        f"--fit-rounds {args.fit_rounds}`  ",
        f"{n // args.chunk + (n % args.chunk > 0)} chunks of {args.chunk:,} rows. "
        f"Load before: `{load_before}`; after: `{load_after}`.",
        "",
        "| | in memory | Dask, 1 worker | Dask, 2 workers |",
        "| --- | --- | --- | --- |",
        f"| loss + gradient, one evaluation (median) | {med['memory'] * 1e3:.0f} ms | "
        f"{med[1] * 1e3:.0f} ms ({med[1] / med['memory']:.2f}x) | "
        f"{med[2] * 1e3:.0f} ms ({med[2] / med['memory']:.2f}x) |",
        f"| one evaluation, fastest round (least disturbed by other load) | "
        f"{min(evals['memory']) * 1e3:.0f} ms | {min(evals[1]) * 1e3:.0f} ms "
        f"({min(evals[1]) / min(evals['memory']):.2f}x) | {min(evals[2]) * 1e3:.0f} ms "
        f"({min(evals[2]) / min(evals['memory']):.2f}x) |",
        f"| build_row_data on persisted rows (median) | - | {bmed[1]:.2f} s | {bmed[2]:.2f} s |",
        f"| whole lbfgs fit, tol={args.tol:g} (median) | {fmed['memory']:.1f} s | "
        f"{fmed[1]:.1f} s ({fmed[1] / fmed['memory']:.2f}x) | "
        f"{fmed[2]:.1f} s ({fmed[2] / fmed['memory']:.2f}x) |",
        f"| iterations / passes | {fitted['memory'].n_iter_} / {fitted['memory'].n_passes_} | "
        f"{fitted[1].n_iter_} / {fitted[1].n_passes_} | {fitted[2].n_iter_} / "
        f"{fitted[2].n_passes_} |",
        f"| relative objective gap to in memory | - | {gaps[1]:.1e} | {gaps[2]:.1e} |",
        "",
        f"2 workers vs 1: {med[1] / med[2]:.2f}x faster per evaluation (median), "
        f"{min(evals[1]) / min(evals[2]):.2f}x (fastest rounds), {fmed[1] / fmed[2]:.2f}x per fit. "
        "In memory: the client's BLAS threads; each worker: one thread.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        header = ["# Dask backend benchmark", ""]
        header += [f"- {key}: {value}" for key, value in machine_info().items()]
        header += ["", ""]
        if args.append and args.out.exists():
            args.out.write_text(args.out.read_text() + "\n" + text)
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text("\n".join(header) + text)
            os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
