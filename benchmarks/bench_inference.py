"""Fit plus inference: softmax vs statsmodels' MNLogit, and inference at scale.

Run from the repository root::

    .venv/bin/python benchmarks/bench_inference.py                 # as recorded
    .venv/bin/python benchmarks/bench_inference.py --quick         # small sizes, no file

Sections (results to benchmarks/results/inference.md and inference.json):

1. 100,000 x 50 with 10 classes (synthetic multinomial data, standard normal
   features): time of ``SoftmaxRegression(C=np.inf).fit`` + ``softmax.inference``
   + ``summary()`` against ``statsmodels MNLogit(...).fit()`` + ``summary()``,
   interleaved in this one process (ours, statsmodels, ours: the better of our
   two runs; statsmodels takes about half a minute, so it runs once), the ratio,
   and how far the two sets of standard errors are apart.
2. ``softmax.inference`` alone on 100,000 x 200 with 20 classes (an
   information matrix of 3,819 x 3,819): time and peak of the memory NumPy
   allocates (tracemalloc), next to the size of the information matrix; then
   the full ``cov_params()``, and ``cov_type="HC0"``.

BLAS runs on ``--threads`` threads for both (default 1: the benchmark machine
is shared, and oversubscribed BLAS threads measure the load, not the code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg  # noqa: F401  (SciPy's own OpenBLAS loaded before the thread limit)
from bench_loss import cpu_model, write_atomic  # run as a script: benchmarks/ is on sys.path
from threadpoolctl import threadpool_info, threadpool_limits

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def make_data(n: int, p: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ~ N(0, I), labels drawn from a softmax model with moderate signal."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((K, p)) * (1.0 / np.sqrt(p))
    b = rng.standard_normal(K) * 0.5
    logits = X @ W.T + b
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return X, y


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def ours(X: np.ndarray, y: np.ndarray) -> tuple[float, float, float, object]:
    from softmax import SoftmaxRegression, inference

    t0 = time.perf_counter()
    clf = SoftmaxRegression(C=np.inf).fit(X, y)
    t1 = time.perf_counter()
    res = inference(clf, X, y)
    text = res.summary()
    t2 = time.perf_counter()
    assert "std err" in text
    return t2 - t0, t1 - t0, t2 - t1, res


def statsmodels_peer(X: np.ndarray, y: np.ndarray) -> tuple[float, object]:
    import statsmodels.api as sm

    t0 = time.perf_counter()
    res = sm.MNLogit(y, np.column_stack([X, np.ones(len(X))])).fit(disp=0)
    text = str(res.summary())
    t = time.perf_counter() - t0
    assert "std err" in text
    return t, res


def section_compare(n: int, p: int, K: int) -> dict:
    X, y = make_data(n, p, K)
    print(f"[1] {n} x {p}, {K} classes", flush=True)
    a = ours(X, y)
    print(f"    ours: {a[0]:.2f} s (fit {a[1]:.2f} s, inference + summary {a[2]:.2f} s)")
    t_sm, sm_res = statsmodels_peer(X, y)
    print(f"    statsmodels MNLogit fit + summary: {t_sm:.2f} s")
    b = ours(X, y)
    print(f"    ours again: {b[0]:.2f} s")
    best = a if a[0] <= b[0] else b
    res = best[3]
    sm_bse = np.asarray(sm_res.bse).T  # (K - 1, p + 1), constant last like ours
    sm_params = np.asarray(sm_res.params).T
    out = {
        "n": n,
        "p": p,
        "K": K,
        "ours_total_s": best[0],
        "ours_fit_s": best[1],
        "ours_inference_summary_s": best[2],
        "ours_runs_s": [a[0], b[0]],
        "statsmodels_s": t_sm,
        "statsmodels_iterations": int(sm_res.mle_retvals["iterations"]),
        "ratio": t_sm / best[0],
        "max_rel_diff_bse": float(np.max(np.abs(res.bse / sm_bse - 1))),
        "max_diff_params_in_se": float(np.max(np.abs(res.params - sm_params) / sm_bse)),
        "newton_step_se": res.newton_step_se,
    }
    print(f"    ratio statsmodels / ours: {out['ratio']:.1f}x")
    print(
        f"    bse max relative difference {out['max_rel_diff_bse']:.2e}; params differ by "
        f"at most {out['max_diff_params_in_se']:.2e} standard errors"
    )
    return out


def section_scale(n: int, p: int, K: int) -> dict:
    from softmax import SoftmaxRegression, inference

    X, y = make_data(n, p, K, seed=1)
    print(f"[2] inference alone on {n} x {p}, {K} classes", flush=True)
    t0 = time.perf_counter()
    clf = SoftmaxRegression(C=np.inf).fit(X, y)
    t_fit = time.perf_counter() - t0
    m = (K - 1) * (p + 1)
    tracemalloc.start()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a loose default-tol fit may be flagged; timed anyway
        res = inference(clf, X, y)
    t_inf = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    separation_checked = res.separation is not None
    t0 = time.perf_counter()
    res.cov_params()
    t_cov = time.perf_counter() - t0
    _, peak_cov = tracemalloc.get_traced_memory()
    del res
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference(clf, X, y, cov_type="HC0")
    t_hc0 = time.perf_counter() - t0
    _, peak_hc0 = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "n": n,
        "p": p,
        "K": K,
        "n_coef": m,
        "information_MB": m * m * 8 / 2**20,
        "X_MB": X.nbytes / 2**20,
        "fit_s": t_fit,
        "inference_s": t_inf,
        "inference_peak_MB": peak / 2**20,
        "cov_params_s": t_cov,
        "peak_with_cov_MB": peak_cov / 2**20,
        "hc0_s": t_hc0,
        "hc0_peak_MB": peak_hc0 / 2**20,
        "separation_checked": separation_checked,
    }
    print(
        f"    fit {t_fit:.1f} s; inference {t_inf:.1f} s, peak {out['inference_peak_MB']:.0f} MB "
        f"(information {out['information_MB']:.0f} MB); full cov_params() {t_cov:.1f} s, "
        f"peak then {out['peak_with_cov_MB']:.0f} MB; HC0 {t_hc0:.1f} s, peak "
        f"{out['hc0_peak_MB']:.0f} MB"
    )
    return out


def machine(threads: int) -> dict:
    import scipy
    import sklearn
    import statsmodels

    import softmax

    pools = [
        f"{p['user_api']}/{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
        for p in threadpool_info()
    ]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "statsmodels": statsmodels.__version__,
        "softmax": softmax.__version__,
        "blas_threads": threads,
        "thread_pools": pools,
    }


def write_results(record: dict, stem: Path) -> None:
    c, s, m = record["compare"], record["scale"], record["machine"]
    lines = [
        # a level-3 title: the table is included in docs/inference.md
        "### Fit + inference vs statsmodels MNLogit; inference at scale",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores (shared); load average before "
        f"{record['load_before']}, after {record['load_after']}",
        f"- numpy {m['numpy']}, scipy {m['scipy']}, scikit-learn {m['scikit-learn']}, "
        f"statsmodels {m['statsmodels']}, Python {m['python']}; BLAS threads: {m['blas_threads']}",
        f"- command: `{record['command']}`",
        "",
        f"Synthetic multinomial data, {c['n']:,} x {c['p']} features, {c['K']} classes. Ours: "
        f"`SoftmaxRegression(C=np.inf).fit` + `softmax.inference` + `summary()` (better of two "
        f"runs, interleaved with the peer); statsmodels: `MNLogit(y, X).fit()` + `summary()` "
        f"(Newton, {c['statsmodels_iterations']} iterations, one run).",
        "",
        "| | ours | statsmodels MNLogit | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| fit + inference + summary, s | {c['ours_total_s']:.2f} | {c['statsmodels_s']:.2f} | "
        f"{c['ratio']:.1f}x |",
        f"| of which fit, s | {c['ours_fit_s']:.2f} | | |",
        f"| of which inference + summary, s | {c['ours_inference_summary_s']:.2f} | | |",
        "",
        f"Agreement (our default tol=1e-7 fit against statsmodels' Newton optimum): standard "
        f"errors within {c['max_rel_diff_bse']:.1e} (relative), coefficients within "
        f"{c['max_diff_params_in_se']:.1e} standard errors.",
        "",
        f"Inference alone on {s['n']:,} x {s['p']} features, {s['K']} classes "
        f"({s['n_coef']:,} coefficients; X is {s['X_MB']:.0f} MB):",
        "",
        "| | value |",
        "| --- | ---: |",
        f"| `softmax.inference` (nonrobust: information, Cholesky, standard errors), s | "
        f"{s['inference_s']:.1f} |",
        f"| peak memory NumPy allocates during it, MB | {s['inference_peak_MB']:.0f} |",
        f"| the information matrix alone, MB | {s['information_MB']:.0f} |",
        f"| full `cov_params()` afterwards, s | {s['cov_params_s']:.1f} |",
        f"| peak memory including `cov_params()`, MB | {s['peak_with_cov_MB']:.0f} |",
        f'| `softmax.inference(cov_type="HC0")` (information and meat in one pass), s | '
        f"{s['hc0_s']:.1f} |",
        f"| peak memory during HC0, MB | {s['hc0_peak_MB']:.0f} |",
        f"| (the fit before it, s) | {s['fit_s']:.1f} |",
        "",
    ]
    write_atomic(str(stem.with_suffix(".md")), "\n".join(lines))
    write_atomic(str(stem.with_suffix(".json")), json.dumps(record, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both peers")
    parser.add_argument("--quick", action="store_true", help="small sizes, no result files")
    parser.add_argument("--out", default=str(RESULTS / "inference"), help="results stem")
    args = parser.parse_args()
    compare = (5_000, 10, 4) if args.quick else (100_000, 50, 10)
    scale = (5_000, 20, 5) if args.quick else (100_000, 200, 20)
    load_before = load_average()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        record = {
            "command": " ".join(["python benchmarks/bench_inference.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(args.threads),
            "load_before": load_before,
            "compare": section_compare(*compare),
            "scale": section_scale(*scale),
        }
    record["load_after"] = load_average()
    print(f"load average before {load_before}, after {record['load_after']}")
    if not args.quick:
        write_results(record, Path(args.out))


if __name__ == "__main__":
    main()
