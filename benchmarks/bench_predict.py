"""Prediction for every model/input dtype pair against a bare GEMM (issue 15).

For each pair (model dtype, rows dtype) this times, interleaved, with one
BLAS thread: ``SoftmaxRegression.predict_proba`` and ``predict``; the bare
GEMM ``X @ W.T`` in the rows' dtype into a preallocated output (the least any
prediction must do); and scikit-learn's ``predict_proba`` on the same model.
Ratios are medians over repeats of the ratio within a repeat.

Run from the repository root::

    .venv/bin/python benchmarks/bench_predict.py                     # as recorded
    .venv/bin/python benchmarks/bench_predict.py --n 20000 --repeats 3  # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import sklearn
import threadpoolctl
from bench_loss import cpu_model, write_atomic
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from softmax import SoftmaxRegression

DTYPES = (np.float32, np.float64)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def models(p: int, K: int, rng: np.random.Generator) -> dict:
    """One fitted model per dtype with the same coefficients (and its sklearn twin)."""
    X = rng.standard_normal((200, p))
    y = np.arange(200) % K
    out = {}
    for dt in DTYPES:
        est = SoftmaxRegression(max_iter=5).fit(X.astype(dt), y)
        with warnings.catch_warnings():  # the coefficients are replaced below
            warnings.simplefilter("ignore")
            skl = LogisticRegression(max_iter=5).fit(X.astype(dt), y)
        skl.coef_ = est.coef_.copy()
        skl.intercept_ = est.intercept_.copy()
        out[dt] = (est, skl)
    return out


def time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(n: int, p: int, K: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    X32 = rng.standard_normal((n, p), dtype=np.float32)
    rows = {np.float32: X32, np.float64: X32.astype(np.float64)}
    fitted = models(p, K, rng)
    rows_out = []
    for mdt in DTYPES:
        for xdt in DTYPES:
            est, skl = fitted[mdt]
            X = rows[xdt]
            W = est.coef_.astype(xdt)
            out = np.empty((n, K), dtype=xdt)
            fns = {
                "bare": lambda X=X, W=W, out=out: np.matmul(X, W.T, out=out),
                "predict_proba": lambda est=est, X=X: est.predict_proba(X),
                "predict": lambda est=est, X=X: est.predict(X),
                "sklearn predict_proba": lambda skl=skl, X=X: skl.predict_proba(X),
            }
            for fn in fns.values():  # warm-up (compiles the row kernels)
                fn()
            times: dict[str, list[float]] = {k: [] for k in fns}
            for r in range(repeats):
                names = list(fns)
                names = names[r % len(names) :] + names[: r % len(names)]
                for name in names:
                    times[name].append(time_once(fns[name]))
            ratio = {
                k: statistics.median(t / b for t, b in zip(times[k], times["bare"]))
                for k in fns
                if k != "bare"
            }
            rows_out.append(
                {
                    "model": np.dtype(mdt).name,
                    "rows": np.dtype(xdt).name,
                    "bare_ms": 1e3 * statistics.median(times["bare"]),
                    "proba_ms": 1e3 * statistics.median(times["predict_proba"]),
                    "proba_x": ratio["predict_proba"],
                    "predict_x": ratio["predict"],
                    "sklearn_x": ratio["sklearn predict_proba"],
                    "out_dtype": est.predict_proba(X[:2]).dtype.name,
                }
            )
            print(rows_out[-1], flush=True)
    return rows_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=784)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/predict.md")
    args = ap.parse_args()
    before = load_average()
    with threadpool_limits(1):
        table = run(args.n, args.p, args.classes, args.repeats)
        pools = threadpoolctl.threadpool_info()
    after = load_average()
    blas = ", ".join(
        f"{i['internal_api']} {i['version']} ({i['num_threads']} thread)" for i in pools
    )
    lines = [
        "# predict_proba / predict against a bare GEMM, every model/input dtype pair",
        "",
        "*bare*: `np.matmul(X, W.T, out=...)` in the rows' dtype; ratios are medians "
        "of the per-repeat ratio (interleaved). Target (issue 15): predict_proba "
        "<= 1.3x bare for every pair.",
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {before}",
        f"- numpy {np.__version__}, scikit-learn {sklearn.__version__}; BLAS: {blas}",
        f"- X: {args.n} x {args.p}, {args.classes} classes; medians of {args.repeats}",
        f"- load average after: {after}",
        "",
        "| model | rows | output | bare ms | predict_proba ms | predict_proba / bare "
        "| predict / bare | sklearn predict_proba / bare | target 1.3x |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in table:
        met = "met" if r["proba_x"] <= 1.3 else "NOT met"
        lines.append(
            f"| {r['model']} | {r['rows']} | {r['out_dtype']} | {r['bare_ms']:.1f} | "
            f"{r['proba_ms']:.1f} | {r['proba_x']:.2f} | {r['predict_x']:.2f} | "
            f"{r['sklearn_x']:.2f} | {met} |"
        )
    write_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
