"""The fused numba loss-gradient pass versus the BLAS block pass and the bare products.

One loss-and-gradient evaluation of softmax regression on dense rows, three
ways, interleaved in one process (medians of the repeats):

* fused: ``block_loss_gradient`` going through :mod:`softmax._numba_loss`
  (``linear_loss.FUSED_MIN_WORK = 0``, ``FUSED_MIN_FEATURES`` zero);
* BLAS: the same call with the fused pass switched off (two BLAS products
  per block of rows plus NumPy softmax), which is what runs without numba;
* bare: only the two products, ``X @ W.T`` and ``G.T @ X`` over all of ``X``
  into preallocated outputs (no softmax, no blocking): what a pass costs if
  the ``O(n K)`` work were free.

BLAS runs on one thread (threadpoolctl), and so does the fused pass unless
``--threads`` is given (then both split the rows over that many Python
threads, as ``Workspace(n_threads=...)`` does in fits).

Run:  .venv/bin/python benchmarks/bench_loss_kernel.py [--quick] [--threads 1,2]
          [--compile] [--only 784] [--out benchmarks/results/loss_kernel.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import threadpoolctl
from bench_loss import cpu_model, write_atomic  # run as a script: benchmarks/ is on sys.path
from threadpoolctl import threadpool_limits

from softmax import linear_loss
from softmax.linear_loss import Workspace, block_loss_gradient

SHAPES = [
    # (n, p, K, label)
    (8_000, 784, 10, "MNIST 8000 x 784, K=10"),
    (60_000, 784, 10, "60000 x 784, K=10"),
    (1_000_000, 100, 10, "1000000 x 100, K=10"),
    (50_000, 500, 100, "50000 x 500, K=100"),
    (20_000, 200, 3, "20000 x 200, K=3"),
    (20_000, 300, 32, "20000 x 300, K=32"),
]
QUICK = [
    SHAPES[0],
    (100_000, 100, 10, "100000 x 100, K=10"),
    (10_000, 500, 100, "10000 x 500, K=100"),
]


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def make_data(n, p, K, dtype):
    rng = np.random.default_rng(0)
    if (n, p) == (8_000, 784):
        path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")
        path = os.path.join(path, "mnist10k.npz")
        if os.path.exists(path):
            d = np.load(path)
            X = np.ascontiguousarray(d["X"][:n] / 255.0, dtype=dtype)
            return X, d["y"][:n].astype(np.intp) % K, "MNIST"
    X = rng.random((n, p), dtype=np.float64).astype(dtype, copy=False)
    return X, rng.integers(0, K, n).astype(np.intp), "uniform [0, 1)"


DEFAULT_RULE = (linear_loss.FUSED_MIN_WORK, dict(linear_loss.FUSED_MIN_FEATURES))


def default_rule_uses_fused(X, K) -> bool:
    """Whether the shipped dispatch rule sends this pass to the fused kernel."""
    now = (linear_loss.FUSED_MIN_WORK, linear_loss.FUSED_MIN_FEATURES)
    linear_loss.FUSED_MIN_WORK, linear_loss.FUSED_MIN_FEATURES = DEFAULT_RULE
    try:
        return linear_loss._fused_pass(X, K) is not None
    finally:
        linear_loss.FUSED_MIN_WORK, linear_loss.FUSED_MIN_FEATURES = now


def fused_mode(on: bool):
    if on:
        linear_loss.FUSED_MIN_WORK = 0
        linear_loss.FUSED_MIN_FEATURES = {4: (0, 0), 8: (0, 0)}
    else:
        linear_loss.FUSED_MIN_WORK = float("inf")


def bench(n, p, K, dtype, threads, repeats):
    X, y, source = make_data(n, p, K, dtype)
    rng = np.random.default_rng(1)
    coef = rng.normal(scale=0.01, size=(K, p + 1))
    ws = Workspace(X, K, n_threads=threads)
    W = np.ascontiguousarray(coef[:, :p], dtype=dtype)
    Z = np.empty((n, K), dtype=dtype)
    G = rng.random((n, K)).astype(dtype)
    gW = np.empty((K, p), dtype=dtype)

    def run(on):
        fused_mode(on)
        return block_loss_gradient(coef, X, y, None, fit_intercept=True, workspace=ws)

    def bare():
        np.matmul(X, W.T, out=Z)
        np.matmul(G.T, X, out=gW)

    # warm up (and compile), and check that both paths agree
    t0 = time.perf_counter()
    lf, gf = run(True)
    first = time.perf_counter() - t0
    lb, gb = run(False)
    bare()
    err_loss = abs(lf - lb) / abs(lb)
    err_grad = float(np.abs(gf - gb).max() / np.abs(gb).max())
    times = {"fused": [], "blas": [], "bare": []}
    for _ in range(repeats):
        for name, fn in (
            ("fused", lambda: run(True)),
            ("blas", lambda: run(False)),
            ("bare", bare),
        ):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    # ratios within each repeat, then their median: robust to the machine's
    # load changing between repeats (it is shared)
    ratio_blas = statistics.median(b / f for b, f in zip(times["blas"], times["fused"]))
    ratio_bare = statistics.median(b / f for b, f in zip(times["bare"], times["fused"]))
    return {
        "n": n,
        "p": p,
        "K": K,
        "dtype": np.dtype(dtype).name,
        "source": source,
        "first_call_s": first,
        "rule": default_rule_uses_fused(X, K),
        "err_loss": err_loss,
        "err_grad": err_grad,
        **{f"{k}_ms": v for k, v in med.items()},
        "blas_over_fused": ratio_blas,
        "bare_over_fused": ratio_bare,
    }


COMPILE_SNIPPET = """
import time, numpy as np
from softmax import _numba_loss as nl
for dt in (np.float32, np.float64):
    X = np.ones((20, 5), dt)
    t, c = time.perf_counter(), time.process_time()
    nl.loss_grad_range(np.ones((3, 5), dt), np.zeros(3, dt), X, np.zeros(20, np.intp), None,
                       True, np.empty((3, 5), dt), None, 0, 20, 20)
    print(np.dtype(dt).name, time.perf_counter() - t, time.process_time() - c)
"""


def compile_times() -> dict[str, tuple[float, float]]:
    """First-call (wall, CPU) seconds per dtype in a fresh process with an empty numba cache."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run(
            [sys.executable, "-c", COMPILE_SNIPPET],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rows = (line.split() for line in out.splitlines())
    return {name: (float(wall), float(cpu)) for name, wall, cpu in rows}


def run_table(shapes, dtypes, threads, repeats):
    rows = []
    saved = (linear_loss.FUSED_MIN_WORK, linear_loss.FUSED_MIN_FEATURES)
    try:
        with threadpool_limits(1):
            for n, p, K, label in shapes:
                for dt in dtypes:
                    r = bench(n, p, K, dt, threads, repeats)
                    r["label"] = label
                    r["threads"] = threads
                    rows.append(r)
                    print(
                        f"{label:26s} {r['dtype']:8s} threads {threads}  "
                        f"fused {r['fused_ms']:8.2f} ms  "
                        f"BLAS path {r['blas_ms']:8.2f} ms  bare products {r['bare_ms']:8.2f} ms  "
                        f"BLAS/fused {r['blas_over_fused']:5.2f}  "
                        f"bare/fused {r['bare_over_fused']:5.2f}  "
                        f"(first call {r['first_call_s']:.2f} s; rel. diff loss "
                        f"{r['err_loss']:.1e}, grad {r['err_grad']:.1e}; rule picks "
                        f"{'fused' if r['rule'] else 'BLAS'})",
                        flush=True,
                    )
    finally:
        linear_loss.FUSED_MIN_WORK, linear_loss.FUSED_MIN_FEATURES = saved
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three small shapes, 3 repeats")
    ap.add_argument(
        "--threads", default="1", help="comma list of row-range thread counts (Workspace)"
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--only", default=None, help="run only shapes whose label contains this")
    ap.add_argument(
        "--compile", action="store_true", help="also time a cold compile (fresh process)"
    )
    ap.add_argument("--out", default=None, help="write a markdown table here")
    args = ap.parse_args()
    shapes = QUICK if args.quick else SHAPES
    if args.only:
        shapes = [s for s in shapes if args.only in s[3]]
    repeats = 3 if args.quick else args.repeats
    dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    import numba

    info = threadpoolctl.threadpool_info()
    blas = ", ".join(f"{d.get('internal_api')} {d.get('version')}" for d in info) or "n/a"
    header = [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_average()}",
        f"numpy {np.__version__}, numba {numba.__version__}, BLAS: {blas} (1 thread)",
        f"row-range threads: {args.threads}; medians of {repeats} interleaved repeats",
    ]
    if args.compile:
        ct = compile_times()
        header.append(
            "cold compile (fresh process, empty numba cache), first call: "
            + ", ".join(f"{k} {w:.2f} s wall / {c:.2f} s CPU" for k, (w, c) in ct.items())
            + " (float32 includes numba's own first-compile set-up)"
        )
    for line in header:
        print(line)
    rows = []
    for threads in thread_counts:
        rows += run_table(shapes, dtypes, threads, repeats)
    print(f"load average after: {load_average()}")
    if args.out:
        lines = [
            "# Fused numba loss-gradient pass vs the BLAS block pass",
            "",
            "One loss-and-gradient evaluation (`block_loss_gradient`, intercept, no "
            "weights). *fused*: `softmax._numba_loss`; *BLAS path*: the same call "
            "with the fused pass off; *bare products*: `X @ W.T` and `G.T @ X` alone "
            "into preallocated outputs. Ratios (median over repeats of the ratio within "
            "a repeat) > 1 mean the fused pass is faster. *rule*: whether the default "
            "dispatch rule (`linear_loss.FUSED_MIN_FEATURES`, `FUSED_MIN_WORK`) picks "
            "the fused pass for this shape. *threads*: row ranges run in parallel "
            "Python threads (`Workspace(n_threads=...)`), BLAS on 1 thread each.",
            "",
            f"Command: `.venv/bin/python benchmarks/bench_loss_kernel.py "
            f"--threads {args.threads} --repeats {repeats}"
            f"{' --compile' if args.compile else ''}`",
            "",
            *[f"- {h}" for h in header],
            f"- load average after: {load_average()}",
            "",
            "| shape | dtype | threads | fused ms | BLAS path ms | bare products ms | "
            "BLAS/fused | bare/fused | loss rel. diff | grad rel. diff | rule |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in rows:
            lines.append(
                f"| {r['label']} | {r['dtype']} | {r['threads']} | {r['fused_ms']:.2f} | "
                f"{r['blas_ms']:.2f} | {r['bare_ms']:.2f} | {r['blas_over_fused']:.2f} | "
                f"{r['bare_over_fused']:.2f} | {r['err_loss']:.1e} | "
                f"{r['err_grad']:.1e} | {'fused' if r['rule'] else 'BLAS'} |"
            )
        write_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
