"""Group-lasso path benchmark: the grouped multinomial path on digits (issue 17).

The path of ``SoftmaxRegression(l1_ratio=1, l1_type="grouped")`` on
scikit-learn's digits (1,797 images, 64 pixels scaled to [0, 1] by 1/16, 10
classes) over 13 values ``C = min_c * np.logspace(0.05, 3, 13)`` (from just
above the exact ``min_c``, where the first features enter, to 1,000 times
it), fitted by ``regularization_path`` (warm-started, solver
``proximal-newton``) and, for comparison in the same process:

- ``cold``: the same 13 fits, each from zero (what warm starts save);
- ``peer``: the nearest public peer. No scikit-learn solver fits the grouped
  multinomial penalty; its warm-started *elementwise* L1 path
  (``LogisticRegression(l1_ratio=1, solver="saga", warm_start=True)``, its
  default ``tol=1e-4``) over the same relative grid from the elementwise
  ``min_c`` is the closest thing: a sparse multinomial path on the same
  rows. Its time is a reference for scale, not a like-for-like race (a
  different penalty, and a first-order solver at a loose tolerance).

Every point of our path is checked against the KKT conditions with
gradients computed here with SciPy's softmax (glmnet's scale: the mean
loss, penalty weight ``1 / (C n)``); the largest violation and the number of
selected features per ``C`` are recorded, and whether that number falls
monotonically as ``C`` decreases.

Repeats are interleaved, medians reported, thread pools limited to one
thread; the load average is recorded before and after (a shared machine).

Usage::

    python benchmarks/bench_group_path.py            # writes results/group_path.md and .json
    python benchmarks/bench_group_path.py --repeats 1 --no-peer --out /tmp/gp
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
N_CS = 13


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(X / 16.0), y


def grid(X: np.ndarray, y: np.ndarray, l1_type: str) -> np.ndarray:
    from softmax import min_c

    return min_c(X, y, l1_ratio=1.0, l1_type=l1_type) * np.logspace(0.05, 3, N_CS)


def run_path(X: np.ndarray, y: np.ndarray, Cs: np.ndarray, tol: float) -> tuple[float, Any]:
    from softmax import regularization_path

    start = time.perf_counter()
    path = regularization_path(X, y, Cs, l1_ratio=1.0, l1_type="grouped", tol=tol)
    return time.perf_counter() - start, path


def run_cold(X: np.ndarray, y: np.ndarray, Cs: np.ndarray, tol: float) -> tuple[float, Any]:
    from softmax import SoftmaxRegression

    start = time.perf_counter()
    fits = [SoftmaxRegression(C=C, l1_ratio=1.0, l1_type="grouped", tol=tol).fit(X, y) for C in Cs]
    seconds = time.perf_counter() - start
    return seconds, {
        "n_iter": [f.n_iter_ for f in fits],
        "selected": [f.n_features_selected_ for f in fits],
        "objectives": [f.objective_ for f in fits],
    }


def run_peer(X: np.ndarray, y: np.ndarray, Cs: np.ndarray) -> tuple[float, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=10_000, warm_start=True)
    n_iter, selected = [], []
    start = time.perf_counter()
    for C in Cs:
        model.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        n_iter.append(int(np.max(model.n_iter_)))
        selected.append(int((model.coef_ != 0).any(axis=0).sum()))
    return time.perf_counter() - start, {"n_iter": n_iter, "selected": selected}


def kkt_violation(X: np.ndarray, y: np.ndarray, C: float, W: np.ndarray, b: np.ndarray) -> float:
    """Largest KKT violation of the grouped lasso (l1_ratio=1) at (W, b), by SciPy's softmax."""
    from scipy.special import softmax

    n, K = len(y), W.shape[0]
    R = softmax(X @ W.T + b, axis=1) - np.eye(K)[y]
    G = R.T @ X / n
    lam = 1.0 / (C * n)
    norms = np.linalg.norm(W, axis=0)
    nz = norms > 0
    worst = float(np.abs(R.mean(axis=0)).max())  # the intercepts
    if (~nz).any():
        worst = max(worst, float((np.linalg.norm(G[:, ~nz], axis=0) - lam).max()))
    if nz.any():
        res = G[:, nz] + lam * W[:, nz] / norms[nz]
        worst = max(worst, float(np.linalg.norm(res, axis=0).max()))
    return worst


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_fit import machine_info

    return machine_info()


def markdown(r: dict[str, Any]) -> str:
    runs = r["runs"]
    ours = runs["path"]["median"]
    lines = [
        "**Group-lasso path on digits** (issue 17, `benchmarks/bench_group_path.py`)",
        "",
        f"Command: `{r['command']}`  ",
        f"Date (UTC): {r['date']}; repeats: {r['repeats']} (interleaved, medians); "
        f"thread pools limited to {r['threads']} thread(s)  ",
        f"Load average before / after: {r['load_before']} / {r['load_after']} "
        "(a shared 2-core machine: other jobs ran meanwhile)",
        "",
        "Data: scikit-learn's digits, 1,797 x 64 pixels / 16, 10 classes; "
        f"{N_CS} values `C = min_c * np.logspace(0.05, 3, {N_CS})` "
        f"(grouped `min_c` = {r['min_c_grouped']:.6g}; elementwise {r['min_c_l1']:.6g} "
        "for the peer); our tol = " + f"{r['tol']:g}.",
        "",
        "| configuration | median s | runs (s) | iterations per C | this / path |",
        "|---|---|---|---|---|",
    ]
    for run in runs.values():
        lines.append(
            f"| {run['label']} | {run['median']:.3f} | "
            + ", ".join(f"{t:.2f}" for t in run["times"])
            + f" | {' '.join(str(i) for i in run['n_iter'])} | {run['median'] / ours:.1f}x |"
        )
    lines += [
        "",
        "| C / min_c | C (grouped) | features selected (grouped path) | KKT violation "
        "| features selected (peer: elementwise L1 at C / min_c of its own min_c) |",
        "|---|---|---|---|---|",
    ]
    peer_sel = runs.get("peer", {}).get("selected")
    for k, C in enumerate(r["Cs"]):
        peer = "" if peer_sel is None else str(peer_sel[k])
        factor = C / r["min_c_grouped"]
        lines.append(
            f"| {factor:.3g} | {C:.4g} | {r['selected'][k]} | {r['kkt'][k]:.1e} | {peer} |"
        )
    lines += [
        "",
        "#### Verdict",
        "",
        f"- KKT conditions: largest violation {max(r['kkt']):.1e} over the path "
        f"(goal 1e-6: {'met' if max(r['kkt']) <= 1e-6 else 'NOT met'})",
        "- features selected fall monotonically as C decreases: "
        + ("yes" if r["monotone"] else "NO"),
        f"- cold fits / warm path: {runs['cold']['median'] / ours:.1f}x",
    ]
    if "peer" in runs:
        lines.append(
            f"- the elementwise-L1 saga path (a different penalty; for scale): "
            f"{runs['peer']['median'] / ours:.1f}x our grouped path's time"
        )
    lines += ["", "#### Machine", ""]
    lines += [f"- {k}: {v}" for k, v in r["machine"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-10, help="our tol (default 1e-10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="skip scikit-learn's saga path")
    parser.add_argument("--out", default=str(RESULTS / "group_path"), help="path, no suffix")
    parser.add_argument(
        "--render", metavar="JSON", help="only rewrite the .md next to this results .json"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    args = parse_args(argv)
    if args.render:  # the table layout changed, not the measurements
        path = Path(args.render)
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        return 0
    load_before = [round(x, 2) for x in os.getloadavg()]
    X, y = load()
    Cs = grid(X, y, "grouped")
    Cs_l1 = grid(X, y, "elementwise")
    configs = {
        "path": ("regularization_path(l1_type='grouped'), warm-started", run_path),
        "cold": ("13 cold fits SoftmaxRegression(l1_type='grouped')", run_cold),
        "peer": ("peer: LogisticRegression(l1_ratio=1, saga) warm path, elementwise L1", None),
    }
    if args.no_peer:
        del configs["peer"]
    times: dict[str, list[float]] = {name: [] for name in configs}
    results: dict[str, Any] = {}
    with threadpool_limits(limits=args.threads):
        names = list(configs)
        for rep in range(args.repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                if name == "peer":
                    seconds, res = run_peer(X, y, Cs_l1)
                else:
                    seconds, res = configs[name][1](X, y, Cs, args.tol)
                times[name].append(seconds)
                results[name] = res
                print(f"repeat {rep}: {configs[name][0]}: {seconds:.3f} s", flush=True)
    load_after = [round(x, 2) for x in os.getloadavg()]
    path = results["path"]
    kkt = [
        kkt_violation(X, y, C, path.coefs[k], path.intercepts[k]) for k, C in enumerate(path.Cs)
    ]
    selected = [int(s) for s in path.n_features_selected]
    runs: dict[str, Any] = {}
    for name in configs:
        res = results[name]
        n_iter = res.n_iter.tolist() if name == "path" else res["n_iter"]
        runs[name] = {
            "label": configs[name][0],
            "times": times[name],
            "median": statistics.median(times[name]),
            "n_iter": [int(i) for i in n_iter],
        }
        if name == "peer":
            runs[name]["selected"] = res["selected"]
    report = {
        "command": "python benchmarks/bench_group_path.py" + "".join(f" {a}" for a in argv or []),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "repeats": args.repeats,
        "threads": args.threads,
        "tol": args.tol,
        "load_before": load_before,
        "load_after": load_after,
        "min_c_grouped": float(Cs[0] / 10**0.05),
        "min_c_l1": float(Cs_l1[0] / 10**0.05),
        "Cs": [float(c) for c in Cs],
        "selected": selected,
        "kkt": kkt,
        "monotone": bool(np.all(np.diff(selected) >= 0)),
        "cold_selected_equal": results["cold"]["selected"] == selected,
        "runs": runs,
        "machine": machine(),
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
