"""One loss-and-gradient evaluation versus the two bare matrix products.

A loss-and-gradient pass over (X, y) is two matrix products, ``Z = X W^T``
and ``G^T X``, plus O(n K) work (softmax, one-hot, weights). This benchmark
times ``softmax.linear_loss.block_loss_gradient`` against exactly those two
products (same shapes, same dtype, preallocated outputs), interleaved in one
process, and prints the median ratio. It also times both at 1 and 2 BLAS
threads, which is what ``softmax.solvers._base.BLAS_THREADS`` is tuned on.

Run:  .venv/bin/python benchmarks/bench_loss.py [--quick] [--out benchmarks/results/loss.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy
import threadpoolctl
from threadpoolctl import threadpool_limits

from softmax.linear_loss import Workspace, block_loss_gradient

SHAPES = [
    # (n, p, K, label)
    (8_000, 784, 10, "MNIST digits (8k x 784, K=10)"),
    (60_000, 784, 10, "synthetic 60k x 784, K=10"),
    (200_000, 100, 10, "synthetic 200k x 100, K=10"),
    (50_000, 500, 100, "synthetic 50k x 500, K=100"),
    (1_797, 64, 10, "digits size (1797 x 64, K=10)"),
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: never a half-written table."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    print(f"wrote {path}")


def time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(n, p, K, dtype, threads, repeats):
    rng = np.random.default_rng(0)
    X = rng.random((n, p), dtype=np.float32 if dtype == np.float32 else np.float64)
    y = rng.integers(0, K, n)
    coef = rng.normal(scale=0.01, size=(K, p + 1))
    W = coef[:, :p].astype(dtype)
    Z = np.empty((n, K), dtype=dtype)
    Gt = np.empty((K, p), dtype=dtype)
    ws = Workspace(X, K)
    ws2 = Workspace(X, K, n_threads=2)

    def ours():
        block_loss_gradient(coef, X, y, None, fit_intercept=True, workspace=ws)

    def ours2():
        block_loss_gradient(coef, X, y, None, fit_intercept=True, workspace=ws2)

    def bare():
        np.matmul(X, W.T, out=Z)
        np.matmul(Z.T, X, out=Gt)

    t_ours, t_ours2, t_bare = [], [], []
    with threadpool_limits(limits=threads, user_api="blas"):
        ours(), ours2(), bare()  # warm up (page in X, load kernels)
        for _ in range(repeats):
            t_ours.append(time_once(ours))
            t_ours2.append(time_once(ours2))
            t_bare.append(time_once(bare))
    return statistics.median(t_ours), statistics.median(t_ours2), statistics.median(t_bare)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes only")
    ap.add_argument("--out", default=None, help="write a markdown table here")
    ap.add_argument(
        "--threads", default="1", help="comma-separated BLAS thread counts to compare (e.g. 1,2)"
    )
    args = ap.parse_args()
    repeats = 3 if args.quick else 7
    shapes = SHAPES[:1] + SHAPES[-1:] if args.quick else SHAPES
    thread_counts = [int(t) for t in args.threads.split(",")]
    rows = []
    print(
        f"{'shape':34s} {'dtype':8s} {'thr':>3s} {'ours ms':>9s} {'ours 2 rows-thr':>15s} "
        f"{'2 matmuls ms':>12s} {'ratio':>6s} {'ratio2':>6s}"
    )
    for n, p, K, label in shapes:
        for dtype in (np.float32, np.float64):
            for threads in thread_counts:
                t_o, t_o2, t_b = bench(n, p, K, dtype, threads, repeats)
                rows.append(
                    (label, np.dtype(dtype).name, threads, t_o * 1e3, t_o2 * 1e3, t_b * 1e3)
                )
                print(
                    f"{label:34s} {np.dtype(dtype).name:8s} {threads:3d} {t_o * 1e3:9.2f} "
                    f"{t_o2 * 1e3:15.2f} {t_b * 1e3:12.2f} {t_o / t_b:6.2f} {t_o2 / t_b:6.2f}",
                    flush=True,
                )
    if args.out:
        info = threadpoolctl.threadpool_info()
        blas = ", ".join(
            f"{d['internal_api']} {d.get('version')} ({d['num_threads']} thr)" for d in info
        )
        load = os.getloadavg()
        lines = [
            "# One loss-and-gradient pass vs the two bare matrix products",
            "",
            "`block_loss_gradient` (fit_intercept=True, no weights) against "
            "`np.matmul(X, W.T, out=Z); np.matmul(Z.T, X, out=Gt)` on the same "
            f"data, interleaved, median of {repeats}. Ratio = ours / bare. 'ours, 2 row "
            "threads' splits the rows over two Python threads (opt-in: "
            "`softmax.backends.memory.N_THREADS = 2`); the bare products run on the "
            "same BLAS thread count as the row.",
            "",
            f"- machine: {cpu_model()}, {os.cpu_count()} cores; load average at the end "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared machine)",
            f"- numpy {np.__version__}, scipy {scipy.__version__}, Python {platform.python_version()}",
            f"- thread pools: {blas}",
            f"- command: `.venv/bin/python benchmarks/bench_loss.py{' --quick' if args.quick else ''} --threads {args.threads} --out {args.out}`",
            "",
            "| data | dtype | BLAS threads | loss+grad ms | ours, 2 row threads ms "
            "| 2 matmuls ms | ratio | ratio, 2 row threads |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, dt, thr, to, to2, tb in rows:
            lines.append(
                f"| {label} | {dt} | {thr} | {to:.2f} | {to2:.2f} | {tb:.2f} "
                f"| {to / tb:.2f} | {to2 / tb:.2f} |"
            )
        write_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
