"""Cold start and resident memory: the first fit in a fresh process against the second (issue 15).

Runs fresh Python processes one after the other, all sharing one new numba
cache directory (``NUMBA_CACHE_DIR``, empty at the start):

1. *new install*: the cache is empty, so the first fit compiles the kernels
   it needs and writes them to the cache;
2. *fresh process*, 3. *fresh process again*: the cache is filled; what a
   user meets on every later run.

Each process makes its rows, imports softmax, then fits the same rows twice
with fresh estimators and prints the import time, the resident set before
and after the import, both fit times and each fit's growth of the resident
set (peak ``VmHWM`` during the fit minus ``VmRSS`` just before it, Linux),
relative to X's bytes. Targets (issue 15): in a fresh process with the cache
filled, the first fit at most 1 s slower than the second; resident growth
during a fit at most 1.5x X (covertype-like rows, ``SoftmaxRegression()``
with its defaults, C = 1).

``--account`` adds one more fresh process (cache filled, not timed) in
which a thread samples the resident set every half millisecond and charges
each rise to what the main thread was doing: the module being imported, the
numba runtime and kernel loading, or the innermost ``softmax`` function.
The samples lag the allocations a little, so the split is approximate; the
total is the measured growth.

Run from the repository root::

    .venv/bin/python benchmarks/bench_coldstart.py --fresh 1 --account
    .venv/bin/python benchmarks/bench_coldstart.py --data covertype --n 200000 \
        --fresh 2 --account --out benchmarks/results/coldstart_covertype.md
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
import json, os, sys, threading, time
cfg = json.loads(sys.argv[1])

def rss_mb():
    with open("/proc/self/status") as fh:  # Linux: resident now and its peak
        d = dict(line.split(":", 1) for line in fh)
    return int(d["VmRSS"].split()[0]) / 1024, int(d["VmHWM"].split()[0]) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")

def label(frame):
    # what the main thread is doing: numba (importing it, or its runtime and
    # kernels), else the outermost import under way, else the innermost
    # softmax function
    stack = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    imports = [str(f.f_locals.get("name", "?")) for f in reversed(stack)
               if f.f_code.co_name == "_find_and_load"]  # outermost first
    in_numba = any("/numba/" in f.f_code.co_filename or "/llvmlite/" in f.f_code.co_filename
                   for f in stack)
    numba_import = any(m.split(".")[0] in ("numba", "llvmlite") or
                       m.split(".")[-1].startswith("_numba") for m in imports)
    if in_numba or numba_import:
        if imports:
            return "numba: import (numba, llvmlite, softmax's numba modules)"
        return "numba: runtime start and kernels loaded from the cache"
    for name in imports:
        if name.split(".")[0] != "softmax":
            return "import " + name.split(".")[0]
    if imports:
        return "import " + imports[0]
    for f in stack:  # innermost first
        name = f.f_code.co_filename.replace(os.sep, "/")
        if "/softmax/" in name:
            mod = name.rsplit("/softmax/", 1)[1][:-3].replace("/", ".")
            return f"softmax.{mod}.{f.f_code.co_name}"
    return "other: " + os.path.basename(stack[0].f_code.co_filename)

class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.main = threading.main_thread().ident
        self.stop, self.top, self.charged, self.seen = False, rss_mb()[0], {}, {}
    def run(self):
        prev, t_prev = None, time.perf_counter()
        while not self.stop:
            r = rss_mb()[0]
            f = sys._current_frames().get(self.main)
            key = label(f) if f is not None else "?"
            now = time.perf_counter()
            # a C step that holds the interpreter (loading LLVM) keeps this
            # thread waiting: charge what grew meanwhile to where it began
            charge = prev if prev is not None and now - t_prev > 0.005 else key
            self.seen[key] = self.seen.get(key, 0) + 1  # share of the fit's time
            if r > self.top:
                self.charged[charge] = self.charged.get(charge, 0.0) + r - self.top
                self.top = r
            prev, t_prev = key, now
            time.sleep(0.0005)

import numpy as np
n, p, K = cfg["n"], cfg["p"], cfg["classes"]
if cfg["data"] == "covertype":
    sys.path.insert(0, cfg["here"])
    from _datasets import make_covertype_like
    X, y = make_covertype_like(n, seed=5)
    K = 7
else:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p)).astype(cfg["dtype"])
    y = (X[:, :K] @ rng.standard_normal((K, K)) + rng.gumbel(size=(n, K))).argmax(axis=1)
rss_data = rss_mb()[0]
t0 = time.perf_counter()
import sklearn.base, sklearn.utils.validation  # what softmax builds on, measured apart
rss_sklearn = rss_mb()[0]
from softmax import SoftmaxRegression
t_import = time.perf_counter() - t0
rss_import = rss_mb()[0]
from softmax.backends.memory import _n_threads
kw = {} if cfg["max_iter"] is None else {"max_iter": cfg["max_iter"], "tol": 1e-12}
fits, growth, charged = [], [], []
for _ in range(2):
    reset_peak()
    before = rss_mb()[0]
    sampler = Sampler() if cfg["account"] else None
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    est = SoftmaxRegression(**kw).fit(X, y)
    fits.append(time.perf_counter() - t0)
    growth.append((rss_mb()[1] - before) * 2**20 / X.nbytes)
    if sampler:
        sampler.stop = True
        sampler.join()
        total = max(1, sum(sampler.seen.values()))
        charged.append({k: [sampler.charged.get(k, 0.0), fits[-1] * c / total]
                        for k, c in sampler.seen.items()})
print(json.dumps({"import_s": t_import, "fit1_s": fits[0], "fit2_s": fits[1],
                  "rss_data_mb": rss_data, "rss_import_mb": rss_import,
                  "rss_sklearn_mb": rss_sklearn,
                  "peak1_x": growth[0], "peak2_x": growth[1], "X_mb": X.nbytes / 1e6,
                  "X_mib": X.nbytes / 2**20, "n_iter": int(est.n_iter_),
                  "row_threads": _n_threads(X, K), "numba": "numba" in sys.modules,
                  "charged": charged}))
"""


def run_child(args: argparse.Namespace, cache: str, account: bool) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.row_threads is not None:
        env["SOFTMAX_NUM_THREADS"] = str(args.row_threads)
    max_iter = args.max_iter
    if max_iter is None and args.data == "gaussian":
        max_iter = 30
    cfg = {
        "n": args.n,
        "p": args.p,
        "classes": args.classes,
        "dtype": args.dtype,
        "data": args.data,
        "here": str(Path(__file__).resolve().parent),
        "max_iter": max_iter if max_iter and max_iter > 0 else None,
        "account": account,
    }
    cmd = [sys.executable, "-c", CHILD, json.dumps(cfg)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def account_lines(r: dict, top: int = 8) -> list[str]:
    """The ``--account`` table: resident growth and time charged to what the fit was doing."""
    lines = [
        "",
        "## Where the resident set grew (one more fresh process, cache filled, sampled)",
        "",
        f"Resident set: {r['rss_data_mb']:.0f} MB with the rows made, "
        f"{r['rss_import_mb']:.0f} MB after `from softmax import SoftmaxRegression` "
        f"(+{r['rss_import_mb'] - r['rss_data_mb']:.0f} MB before any fit, of which "
        f"scikit-learn's import, with what it imports, "
        f"{r['rss_sklearn_mb'] - r['rss_data_mb']:.0f} MB). "
        "Each rise of the resident set during a fit is charged to what the main thread "
        "was doing when it was sampled: numba (its import, or its runtime and "
        "kernels), another import, or the innermost softmax function; the time is "
        "the share of samples (the sampling thread slows the fit; the shares "
        f"stand). Largest {top} by first-fit growth:",
        "",
        "| charged to | first fit MB | / X | first fit s | second fit MB | / X | second fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    first, second = r["charged"]
    zero = [0.0, 0.0]
    keys = sorted(set(first) | set(second), key=lambda k: (-first.get(k, zero)[0], k))
    x_mib = r["X_mib"]

    def row(name: str, a: list[float], b: list[float]) -> str:
        return (
            f"| {name} | {a[0]:.1f} | {a[0] / x_mib:.2f} | {a[1]:.2f} "
            f"| {b[0]:.1f} | {b[0] / x_mib:.2f} | {b[1]:.2f} |"
        )

    def total(d: dict, names: list[str]) -> list[float]:
        return [sum(d.get(k, zero)[i] for k in names) for i in (0, 1)]

    for k in keys[:top]:
        lines.append(row(k, first.get(k, zero), second.get(k, zero)))
    lines.append(row("the rest", total(first, keys[top:]), total(second, keys[top:])))
    lines.append(row("**sampled total**", total(first, keys), total(second, keys)))
    lines.append(
        f"| peak growth (VmHWM) | {r['peak1_x'] * x_mib:.1f} | {r['peak1_x']:.2f} | "
        f"| {r['peak2_x'] * x_mib:.1f} | {r['peak2_x']:.2f} | |"
    )
    return lines


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
    ap.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="cap the fit (tol 1e-12); default 30 for gaussian, the estimator's "
        "defaults for covertype; 0: the estimator's defaults",
    )
    ap.add_argument(
        "--row-threads", type=int, default=None, help="SOFTMAX_NUM_THREADS (default: automatic)"
    )
    ap.add_argument("--fresh", type=int, default=2, help="fresh processes after the first")
    ap.add_argument("--account", action="store_true", help="one more process, sampled")
    ap.add_argument("--out", default="benchmarks/results/coldstart.md")
    args = ap.parse_args()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        for i in range(1 + args.fresh):
            r = run_child(args, cache, account=False)
            r["run"] = "new install (empty cache)" if i == 0 else "fresh process, cache filled"
            rows.append(r)
            print({k: v for k, v in r.items() if k != "charged"}, flush=True)
        accounted = run_child(args, cache, account=True) if args.account else None
        cache_mb = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 1e6
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    import numba

    desc = (
        f"covertype-like {args.n} x 54 float32, 7 classes"
        if args.data == "covertype"
        else f"{args.n} x {args.p} {args.dtype}, {args.classes} classes"
    )
    est = (
        "SoftmaxRegression() (defaults, C = 1)"
        if args.data == "covertype" and not args.max_iter
        else f"SoftmaxRegression(max_iter={args.max_iter or 30}, tol=1e-12)"
    )
    excess = [r["fit1_s"] - r["fit2_s"] for r in rows[1:]]
    worst, median = max(excess), float(np.median(excess))
    worst_peak = max(max(r["peak1_x"], r["peak2_x"]) for r in rows[1:])
    lines = [
        "# Cold start and resident memory: first fit in a fresh process against the second",
        "",
        "Each row is a new Python process; all share one numba cache directory, "
        "empty before the first. Targets (issue 15): first fit at most 1 s slower "
        "than the second in a fresh process; resident growth during a fit (peak "
        "VmHWM minus VmRSS just before `fit`, after `import softmax`) at most 1.5x X "
        "on the covertype-like set.",
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {load_before}",
        f"- numpy {np.__version__}, numba {numba.__version__}; one BLAS/OpenMP thread; "
        f"softmax row threads: {rows[0]['row_threads']}",
        f"- fit: {est} on {desc} ({rows[0]['X_mb']:.1f} MB, {rows[0]['n_iter']} iterations); "
        f"numba loaded by the fit: {'yes' if rows[0]['numba'] else 'no'}; "
        f"numba cache written: {cache_mb:.1f} MB",
        f"- load average after: {load_after}",
        "",
        "| process | import s | RSS after import MB | first fit s | second fit s "
        "| first - second s | RSS growth, first fit / X | second fit / X |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['import_s']:.2f} | {r['rss_import_mb']:.0f} | "
            f"{r['fit1_s']:.2f} | {r['fit2_s']:.2f} | {r['fit1_s'] - r['fit2_s']:.2f} | "
            f"{r['peak1_x']:.2f} | {r['peak2_x']:.2f} |"
        )
    lines += [
        "",
        f"Worst fresh-process excess with the cache filled: {worst:.2f} s "
        f"({'met' if worst <= 1.0 else 'NOT met'}; median {median:.2f} s); "
        "worst resident growth during a fit "
        f"with the cache filled: {worst_peak:.2f}x X "
        f"({'within' if worst_peak <= 1.5 else 'above'} 1.5x).",
    ]
    if accounted is not None:
        lines += account_lines(accounted)
    write_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
