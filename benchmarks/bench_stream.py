"""Streaming and stochastic training: accuracy, exactness, memory, throughput.

Run from the repository root::

    .venv/bin/python benchmarks/bench_stream.py            # all sections
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_stream.py  # as recorded
    .venv/bin/python benchmarks/bench_stream.py --quick    # fewer repeats/epochs

Sections (results to benchmarks/results/stream.md and stream.json):

1. partial_fit on MNIST (first 8,000 digits in chunks of 500, pixels in
   [0, 1], accuracy on the other 2,000) after 1, 2, 5, 10, 20, 30, 50 epochs,
   beside the batch optimum (L-BFGS), Adam (optimizer="adam", with iterate
   averaging) and scikit-learn's one-vs-rest
   SGDClassifier(loss="log_loss").partial_fit fed the same chunks.
2. Throughput in rows/s of partial_fit, ours vs SGDClassifier, interleaved
   in one process, median of repeats: the first epoch of a fresh model (it
   builds the preconditioner) and a later epoch.
3. Exact streaming fit (L-BFGS, one pass per evaluation) on the MNIST digits
   written to Parquet and CSV in blocks vs the in-memory fit: objective gap.
4. Peak RSS of streaming fits on a file 40x the block budget (subprocesses).
5. fit(solver="sgd"): epochs to the batch optimum in memory, and rows/s from Parquet.

Needs /work/shared/datasets/mnist10k.npz or softmax.datasets.load_mnist_sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = Path("/work/shared/datasets/mnist10k.npz")


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    if SHARED.exists():
        d = np.load(SHARED)
        return d["X"].astype(np.float64) / 255.0, d["y"].astype(np.int64)
    from softmax.datasets import load_mnist_sample

    return load_mnist_sample(return_X_y=True, scale=True)


def machine() -> dict:
    import numpy
    import pyarrow
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pyarrow": pyarrow.__version__,
        "blas": [
            {k: i.get(k) for k in ("internal_api", "num_threads", "version")}
            for i in threadpool_info()
        ],
    }


def log_loss(P: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-300, None))))


def objective(model, X, y, C=1.0) -> float:
    P = model.predict_proba(X)
    return C * len(y) * log_loss(P, y) + 0.5 * float(np.sum(model.coef_**2))


# --------------------------------------------------------------------------- 1 + 2


def bench_partial_fit(X, y, epochs_list, repeats) -> dict:
    from sklearn.linear_model import SGDClassifier

    from softmax import SoftmaxRegression

    Xtr, ytr, Xte, yte = X[:8000], y[:8000], X[8000:], y[8000:]
    classes = np.arange(10)
    chunks = [(Xtr[s : s + 500], ytr[s : s + 500]) for s in range(0, 8000, 500)]

    t0 = time.perf_counter()
    batch = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=5000).fit(Xtr, ytr)
    t_batch = time.perf_counter() - t0
    out: dict = {
        "batch": {
            "accuracy": batch.score(Xte, yte),
            "test_log_loss": log_loss(batch.predict_proba(Xte), yte),
            "train_objective": batch.objective_,
            "seconds": t_batch,
            "n_iter": batch.n_iter_,
        }
    }

    # accuracy / loss against epochs (ours, default parameters, and
    # optimizer="adam"; sklearn defaults)
    ours = SoftmaxRegression(random_state=0)
    adam = SoftmaxRegression(random_state=0, optimizer="adam")
    sk = SGDClassifier(loss="log_loss", random_state=0)
    ll_batch = out["batch"]["test_log_loss"]
    rows = []
    for e in range(1, max(epochs_list) + 1):
        for Xc, yc in chunks:
            ours.partial_fit(Xc, yc, classes=classes)
            adam.partial_fit(Xc, yc, classes=classes)
            sk.partial_fit(Xc, yc, classes=classes)
        if e in epochs_list:
            ll = log_loss(ours.predict_proba(Xte), yte)
            rows.append(
                {
                    "epochs": e,
                    "ours_accuracy": ours.score(Xte, yte),
                    "ours_test_log_loss": ll,
                    "ours_test_log_loss_gap": ll / ll_batch - 1,
                    "ours_objective_gap": objective(ours, Xtr, ytr) / batch.objective_ - 1,
                    "adam_objective_gap": objective(adam, Xtr, ytr) / batch.objective_ - 1,
                    "adam_test_log_loss_gap": log_loss(adam.predict_proba(Xte), yte) / ll_batch
                    - 1,
                    "sgdclassifier_accuracy": sk.score(Xte, yte),
                    "sgdclassifier_test_log_loss": log_loss(sk.predict_proba(Xte), yte),
                }
            )
            print(f"  epoch {e}: {rows[-1]}", flush=True)
    out["epochs"] = rows

    # throughput, interleaved, median of repeats: the first epoch of fresh
    # models (ours builds its preconditioner there), then a later epoch
    t_ours, t_sk, t_ours2, t_sk2, t_adam, t_adam2 = [], [], [], [], [], []
    for r in range(repeats):
        m = SoftmaxRegression(random_state=r)
        a = SoftmaxRegression(random_state=r, optimizer="adam")
        s = SGDClassifier(loss="log_loss", random_state=r)
        order = ((t_ours, m), (t_adam, a), (t_sk, s), (t_ours2, m), (t_adam2, a), (t_sk2, s))
        for times, model in order:
            t0 = time.perf_counter()
            for Xc, yc in chunks:
                model.partial_fit(Xc, yc, classes=classes)
            times.append(time.perf_counter() - t0)
    out["throughput"] = {
        "ours_rows_per_s": 8000 / float(np.median(t_ours)),
        "sgdclassifier_rows_per_s": 8000 / float(np.median(t_sk)),
        "ratio_ours_over_sklearn": float(np.median(t_sk)) / float(np.median(t_ours)),
        "ours_later_epoch_rows_per_s": 8000 / float(np.median(t_ours2)),
        "sgdclassifier_later_epoch_rows_per_s": 8000 / float(np.median(t_sk2)),
        "ratio_later_epoch": float(np.median(t_sk2)) / float(np.median(t_ours2)),
        "adam_rows_per_s": 8000 / float(np.median(t_adam)),
        "adam_later_epoch_rows_per_s": 8000 / float(np.median(t_adam2)),
        "repeats": repeats,
    }
    print(f"  throughput: {out['throughput']}", flush=True)
    return out


# --------------------------------------------------------------------------- 3


def bench_exact(X, y, tmp: Path, cache: bool = False) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from softmax import SoftmaxRegression
    from softmax.streaming import FileSource

    Xtr, ytr = X[:8000], y[:8000]
    names = [f"px{j}" for j in range(Xtr.shape[1])]
    table = pa.table({**{n: Xtr[:, j] for j, n in enumerate(names)}, "label": ytr})
    pq.write_table(table, tmp / "mnist.parquet", row_group_size=1000)
    with open(tmp / "mnist.csv", "w") as f:
        f.write(",".join([*names, "label"]) + "\n")
        for row, lab in zip(Xtr, ytr):
            f.write(",".join(f"{v:.17g}" for v in row) + f",{lab}\n")
    out = {}
    t0 = time.perf_counter()
    mem = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=5000).fit(Xtr, ytr)
    out["memory"] = {"objective": mem.objective_, "seconds": time.perf_counter() - t0,
                     "n_iter": mem.n_iter_, "passes": mem.n_passes_}  # fmt: skip
    for kind in ("parquet", "csv"):
        src = FileSource(
            tmp / f"mnist.{kind}",
            target="label",
            block_rows=1000,
            cache=tmp / f"cache-{kind}" if cache else None,
        )
        t0 = time.perf_counter()
        st = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=5000).fit(src)
        secs = time.perf_counter() - t0
        out[kind] = {
            "objective": st.objective_,
            "relative_gap": abs(st.objective_ - mem.objective_) / mem.objective_,
            "seconds": secs,
            "n_iter": st.n_iter_,
            "passes": st.n_passes_,
            "rows_per_s_per_pass": st.n_passes_ * 8000 / secs,
            "file_mb": os.path.getsize(tmp / f"mnist.{kind}") / 1e6,
        }
        print(f"  exact {kind}: {out[kind]}", flush=True)
    return out


# --------------------------------------------------------------------------- 5


def bench_sgd_fit(X, y, tmp: Path) -> dict:
    """fit(solver="sgd") in memory (epochs to the optimum) and from a Parquet file."""
    import warnings

    import pyarrow as pa
    import pyarrow.parquet as pq

    from softmax import SoftmaxRegression
    from softmax.streaming import FileSource

    Xtr, ytr, Xte, yte = X[:8000], y[:8000], X[8000:], y[8000:]
    batch = SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=5000).fit(Xtr, ytr)
    hist: list[float] = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SoftmaxRegression(solver="sgd", max_iter=300, random_state=0)
        m.fit(Xtr, ytr, callback=lambda it, f: hist.append(f))
    secs = time.perf_counter() - t0
    gaps = {
        e: hist[e - 1] / batch.objective_ - 1
        for e in (1, 5, 10, 20, 30, 50, 100)
        if e <= len(hist)
    }
    out = {
        "memory": {
            "epochs": m.n_iter_,
            "converged": m.converged_,
            "objective_gap": m.objective_ / batch.objective_ - 1,
            "gap_after_epochs": gaps,
            "accuracy": m.score(Xte, yte),
            "test_log_loss": log_loss(m.predict_proba(Xte), yte),
            "test_log_loss_gap": log_loss(m.predict_proba(Xte), yte)
            / log_loss(batch.predict_proba(Xte), yte)
            - 1,
            "seconds": secs,
        }
    }
    names = [f"px{j}" for j in range(Xtr.shape[1])]
    table = pa.table({**{n: Xtr[:, j] for j, n in enumerate(names)}, "label": ytr})
    pq.write_table(table, tmp / "sgd.parquet", row_group_size=1000)
    src = FileSource(tmp / "sgd.parquet", target="label", block_rows=1000)
    src.scan()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SoftmaxRegression(solver="sgd", max_iter=5, random_state=0).fit(src)
    secs = time.perf_counter() - t0
    out["parquet"] = {
        "epochs": f.n_iter_,
        "passes": f.n_passes_,
        "seconds": secs,
        "rows_per_s_per_pass": f.n_passes_ * 8000 / secs,
        "accuracy": f.score(pd_frame(Xte, names), yte),
    }
    print(f"  sgd fit: {out}", flush=True)
    return out


def pd_frame(X, names):
    import pandas as pd

    return pd.DataFrame(X, columns=names)


# --------------------------------------------------------------------------- 4

MEMORY_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    mode, path, block_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def reset_peak():  # Linux: writing 5 to clear_refs resets VmHWM to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def peak_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1])

    from softmax import SoftmaxRegression
    from softmax.streaming import FileSource
    import softmax.solvers.lbfgs, softmax.backends.stream, softmax.linear_loss  # imports first
    if mode == "memory":
        reset_peak()
        base = peak_kb()
        a = np.load(path)
        X, y = np.ascontiguousarray(a[:, :-1]), a[:, -1]
        del a
        t0 = time.perf_counter()
        m = SoftmaxRegression(solver="lbfgs", max_iter=5).fit(X, y)
    else:
        target = -1 if mode == "npy" else "label"
        src = FileSource(path, target=target, block_rows=block_rows)
        src.scan()
        reset_peak()
        base = peak_kb()
        t0 = time.perf_counter()
        m = SoftmaxRegression(solver="lbfgs", max_iter=5).fit(src)
    secs = time.perf_counter() - t0
    peak = peak_kb()
    print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024,
                      "growth_mb": (peak - base) / 1024, "passes": m.n_passes_,
                      "seconds": secs}))
    """
)


def bench_memory(tmp: Path, n_rows: int) -> dict:
    import warnings

    import pyarrow as pa
    import pyarrow.parquet as pq

    p, block_rows, K = 50, 10_000, 5
    block_mb = block_rows * p * 8 / 1e6
    rng = np.random.default_rng(0)
    W = rng.normal(size=(K, p))
    npy = tmp / "big.npy"
    header = {"descr": "<f8", "fortran_order": False, "shape": (n_rows, p + 1)}
    writer = None
    names = [f"f{j}" for j in range(p)]
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for s in range(0, n_rows, block_rows):
            X = rng.normal(size=(min(block_rows, n_rows - s), p))
            y = np.argmax(X @ W.T + rng.gumbel(size=(len(X), K)), axis=1)
            f.write(np.column_stack([X, y]).tobytes())
            t = pa.table({**{n: X[:, j] for j, n in enumerate(names)}, "label": y})
            if writer is None:
                writer = pq.ParquetWriter(tmp / "big.parquet", t.schema)
            writer.write_table(t)
    writer.close()
    child = tmp / "child.py"
    child.write_text(MEMORY_CHILD)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = {"file_mb": os.path.getsize(npy) / 1e6, "block_mb": block_mb, "n_rows": n_rows}
    for mode, path in (("npy", npy), ("parquet", tmp / "big.parquet"), ("memory", npy)):
        res = subprocess.run(
            [sys.executable, str(child), mode, str(path), str(block_rows)],
            capture_output=True, text=True, check=True,
            env=env,
        )  # fmt: skip
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  memory {mode}: {out[mode]}", flush=True)
    warnings.simplefilter("default")
    return out


# --------------------------------------------------------------------------- report


def write_report(res: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(res, indent=1, default=float))
    m = res["machine"]
    L = ["# Streaming and stochastic training: measured", ""]
    L.append(
        f"Machine: {m['cpu']}, {m['cores']} cores (shared; load average at start "
        f"{m['load_average'][0]:.1f}), Python {m['python']}, NumPy {m['numpy']}, SciPy "
        f"{m['scipy']}, scikit-learn {m['scikit-learn']}, PyArrow {m['pyarrow']}; BLAS "
        f"{m['blas']}."
    )
    L.append("")
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    )
    L.append(f"Command: `{env + ' ' if env else ''}.venv/bin/python benchmarks/bench_stream.py`")
    if "partial_fit" in res:
        pf = res["partial_fit"]
        b = pf["batch"]
        L += [
            "",
            "## partial_fit on MNIST (8,000 training digits in chunks of 500, 2,000 held out)",
            "",
            f"Batch optimum (L-BFGS, C=1): accuracy {b['accuracy']:.4f}, held-out log loss "
            f"{b['test_log_loss']:.4f}, training objective {b['train_objective']:.2f}.",
            "",
            "Objective gap: the penalised training objective relative to the batch"
            " optimum's; log-loss gap: the held-out log loss relative to the batch"
            ' optimum\'s. Ours: the default `optimizer="auto"` (= `"vr"`, preconditioned'
            " SVRG, anchors gathered over passes); adam: Adam with iterate averaging,"
            " same chunks.",
            "",
            "| epochs | ours: accuracy | ours: held-out log loss | ours: objective gap |"
            " ours: log-loss gap | adam: objective gap | adam: log-loss gap |"
            " SGDClassifier (OvR): accuracy | SGDClassifier: log loss |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in pf["epochs"]:
            L.append(
                f"| {r['epochs']} | {r['ours_accuracy']:.4f} | {r['ours_test_log_loss']:.4f} | "
                f"{100 * r['ours_objective_gap']:.1f}% | "
                f"{100 * r['ours_test_log_loss_gap']:+.1f}% | "
                f"{100 * r['adam_objective_gap']:.1f}% | "
                f"{100 * r['adam_test_log_loss_gap']:+.1f}% | {r['sgdclassifier_accuracy']:.4f} | "
                f"{r['sgdclassifier_test_log_loss']:.4f} |"
            )
        t = pf["throughput"]
        L += [
            "",
            f"Throughput of partial_fit (16 calls of 500 rows, median of {t['repeats']},"
            f" interleaved): first epoch of a fresh model: ours {t['ours_rows_per_s']:,.0f}"
            f" rows/s, SGDClassifier(loss='log_loss') {t['sgdclassifier_rows_per_s']:,.0f}"
            f" rows/s (ours / sklearn speed = {t['ratio_ours_over_sklearn']:.2f}); a later epoch:"
            f" ours {t['ours_later_epoch_rows_per_s']:,.0f} rows/s, SGDClassifier"
            f" {t['sgdclassifier_later_epoch_rows_per_s']:,.0f} rows/s (ratio"
            f" {t['ratio_later_epoch']:.2f}). Adam (optimizer='adam', iterate averaging) in the"
            f" same run: {t['adam_rows_per_s']:,.0f} rows/s (first epoch),"
            f" {t['adam_later_epoch_rows_per_s']:,.0f} rows/s (later).",
        ]
    if "sgd_fit" in res:
        g = res["sgd_fit"]["memory"]
        q = res["sgd_fit"]["parquet"]
        gaps = ", ".join(f"{e} epochs {100 * v:.2f}%" for e, v in g["gap_after_epochs"].items())
        L += [
            "",
            "## fit(solver='sgd') on the same 8,000 digits",
            "",
            f"In memory, default parameters (optimizer 'auto' = 'vr': preconditioned SVRG, batch"
            f" 256): stopped after {g['epochs']} epochs (converged={g['converged']}) in"
            f" {g['seconds']:.1f} s with the training objective"
            f" {100 * g['objective_gap']:.2f}% above the batch optimum (after {gaps}); held-out"
            f" accuracy {g['accuracy']:.4f}, log loss {g['test_log_loss']:.4f}"
            f" ({100 * g.get('test_log_loss_gap', float('nan')):+.2f}% against the optimum's).",
            "",
            f"From Parquet (blocks of 1,000 rows, 5 epochs, each epoch plus its exact-objective "
            f"pass): {q['passes']} passes in {q['seconds']:.1f} s = "
            f"{q['rows_per_s_per_pass']:,.0f} rows/s per pass; held-out accuracy "
            f"{q['accuracy']:.4f}.",
        ]
    if "exact" in res:
        e = res["exact"]
        L += [
            "",
            "## Exact streaming fit = in-memory fit (8,000 MNIST digits, L-BFGS, tol=1e-10)",
            "",
            "| rows from | objective | relative gap to in-memory | iterations | passes |"
            " seconds | file MB |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| memory | {e['memory']['objective']:.10g} | - | {e['memory']['n_iter']} | "
            f"{e['memory']['passes']} | {e['memory']['seconds']:.1f} | - |",
        ]
        variants = [(e, "")]
        if "exact_cached" in res:
            variants.append((res["exact_cached"], ", cache=dir"))
        for ee, label in variants:
            for kind in ("parquet", "csv"):
                k = ee[kind]
                L.append(
                    f"| {kind} (blocks of 1,000 rows{label}) | {k['objective']:.10g} | "
                    f"{k['relative_gap']:.1e} | {k['n_iter']} | {k['passes']} | "
                    f"{k['seconds']:.1f} | {k['file_mb']:.0f} |"
                )
    if "memory" in res:
        mm = res["memory"]
        L += [
            "",
            f"## Peak memory: a {mm['file_mb']:.0f} MB file, blocks of "
            f"{mm['block_mb']:.1f} MB ({mm['file_mb'] / mm['block_mb']:.0f}x the block)",
            "",
            "Peak RSS (VmHWM) growth during a 5-iteration L-BFGS fit, in a fresh"
            " subprocess, the peak reset (`/proc/self/clear_refs`) after the imports and,"
            " for streams, the first pass. In memory, the growth includes loading the file.",
            "",
            "| rows from | peak RSS growth MB | passes | seconds |",
            "| --- | --- | --- | --- |",
        ]
        for mode, label in (("npy", "NPY stream"), ("parquet", "Parquet stream"),
                            ("memory", "in memory (np.load)")):  # fmt: skip
            r = mm[mode]
            L.append(f"| {label} | {r['growth_mb']:.1f} | {r['passes']} | {r['seconds']:.1f} |")
    (RESULTS / "stream.md").write_text("\n".join(L) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--only",
        choices=["partial_fit", "sgd_fit", "exact", "exact_cached", "memory"],
        action="append",
        help="run these sections only; the others are kept from the last results",
    )
    args = ap.parse_args()
    X, y = load_mnist()
    res: dict = {}
    if args.only and (RESULTS / "stream.json").exists():
        # a partial run updates its sections and keeps the others
        res = json.loads((RESULTS / "stream.json").read_text())
    res["machine"] = machine()
    only = set(args.only or ["partial_fit", "sgd_fit", "exact", "exact_cached", "memory"])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "partial_fit" in only:
            print("partial_fit", flush=True)
            epochs = [1, 2, 5] if args.quick else [1, 2, 5, 10, 20, 30, 50]
            res["partial_fit"] = bench_partial_fit(X, y, epochs, 3 if args.quick else 7)
        if "sgd_fit" in only:
            print("sgd_fit", flush=True)
            res["sgd_fit"] = bench_sgd_fit(X, y, tmp)
        if "exact" in only:
            print("exact", flush=True)
            res["exact"] = bench_exact(X, y, tmp)
        if "exact_cached" in only:
            print("exact_cached", flush=True)
            res["exact_cached"] = bench_exact(X, y, tmp, cache=True)
        if "memory" in only:
            print("memory", flush=True)
            res["memory"] = bench_memory(tmp, 100_000 if args.quick else 400_000)
    write_report(res)
    print((RESULTS / "stream.md").read_text())


if __name__ == "__main__":
    main()
