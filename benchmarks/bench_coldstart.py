"""Cold start: the first fit in a fresh process against the second (issue 15).

Runs fresh Python processes one after the other, all sharing one new numba
cache directory (``NUMBA_CACHE_DIR``, empty at the start):

1. *new install*: the cache is empty, so the first fit compiles the kernels
   it needs and writes them to the cache;
2. *fresh process*, 3. *fresh process again*: the cache is filled; what a
   user meets on every later run.

Each process makes its rows, imports softmax, then fits the same rows twice
with fresh estimators and prints the import time, both fit times and each
fit's growth of the resident set (peak ``VmHWM`` during the fit minus
``VmRSS`` before it, Linux), relative to X's bytes. Targets (issue 15): in a
fresh process with the cache filled, the first fit at most 1 s slower than
the second; resident growth during a fit at most 1.5x X (covertype-like).

Run from the repository root::

    .venv/bin/python benchmarks/bench_coldstart.py                 # as recorded
    .venv/bin/python benchmarks/bench_coldstart.py --data covertype --n 200000 \
        --out benchmarks/results/coldstart_covertype.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_loss import cpu_model, write_atomic  # benchmarks/ on sys.path

CHILD = r"""
import json, sys, time
def rss_mb():
    with open("/proc/self/status") as fh:  # Linux: resident now and its peak
        d = dict(line.split(":", 1) for line in fh)
    return int(d["VmRSS"].split()[0]) / 1024, int(d["VmHWM"].split()[0]) / 1024
def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
n, p, K, dtype, data = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
import numpy as np
if data == "covertype":
    sys.path.insert(0, sys.argv[6])
    from _datasets import make_covertype_like
    X, y = make_covertype_like(n, seed=5)
else:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p)).astype(dtype)
    y = (X[:, :K] @ rng.standard_normal((K, K)) + rng.gumbel(size=(n, K))).argmax(axis=1)
t0 = time.perf_counter()
from softmax import SoftmaxRegression
t_import = time.perf_counter() - t0
fits, growth = [], []
for _ in range(2):
    reset_peak()
    before = rss_mb()[0]
    t0 = time.perf_counter()
    est = SoftmaxRegression(max_iter=30, tol=1e-12).fit(X, y)
    fits.append(time.perf_counter() - t0)
    growth.append((rss_mb()[1] - before) * 2**20 / X.nbytes)
print(json.dumps({"import_s": t_import, "fit1_s": fits[0], "fit2_s": fits[1],
                  "peak1_x": growth[0], "peak2_x": growth[1], "X_mb": X.nbytes / 1e6,
                  "n_iter": int(est.n_iter_), "numba": "numba" in sys.modules}))
"""


def run_child(args: argparse.Namespace, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    here = str(Path(__file__).resolve().parent)
    cmd = [sys.executable, "-c", CHILD, str(args.n), str(args.p), str(args.classes), args.dtype]
    cmd += [args.data, here]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--p", type=int, default=784)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument(
        "--data",
        default="gaussian",
        choices=("gaussian", "covertype"),
        help="gaussian rows of --n x --p, or the covertype-like rows (--n x 54, 7 classes)",
    )
    ap.add_argument("--fresh", type=int, default=2, help="fresh processes after the first")
    ap.add_argument("--out", default="benchmarks/results/coldstart.md")
    args = ap.parse_args()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        for i in range(1 + args.fresh):
            r = run_child(args, cache)
            r["run"] = "new install (empty cache)" if i == 0 else "fresh process, cache filled"
            rows.append(r)
            print(r, flush=True)
        cache_mb = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 1e6
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    import numba

    desc = (
        f"covertype-like {args.n} x 54 float32, 7 classes"
        if args.data == "covertype"
        else f"{args.n} x {args.p} {args.dtype}, {args.classes} classes"
    )
    worst = max(r["fit1_s"] - r["fit2_s"] for r in rows[1:])
    lines = [
        "# Cold start: first fit in a fresh process against the second",
        "",
        "Each row is a new Python process; all share one numba cache directory, "
        "empty before the first. Target (issue 15): first fit at most 1 s slower "
        "than the second in a fresh process.",
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_before}",
        f"- numpy {np.__version__}, numba {numba.__version__}; one BLAS/OpenMP thread",
        f"- fit: SoftmaxRegression(max_iter=30) on {desc} ({rows[0]['X_mb']:.1f} MB); "
        f"numba cache written: {cache_mb:.1f} MB",
        f"- load average after: {load_after}",
        "",
        "| process | import s | first fit s | second fit s | first - second s "
        "| peak RSS growth, first fit / X | second fit / X |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['import_s']:.2f} | {r['fit1_s']:.2f} | {r['fit2_s']:.2f} | "
            f"{r['fit1_s'] - r['fit2_s']:.2f} | {r['peak1_x']:.2f} | {r['peak2_x']:.2f} |"
        )
    verdict = "met" if worst <= 1.0 else "NOT met"
    lines += ["", f"Worst fresh-process excess with the cache filled: {worst:.2f} s ({verdict})."]
    write_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
