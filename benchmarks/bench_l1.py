"""L1 / elastic-net solvers: OWL-QN vs proximal Newton vs scikit-learn's saga.

For each problem (a data set, an ``l1_ratio`` and a ``C`` on a grid of
multiples of its ``min_c``) three fits run in the same process, each from
zero, thread pools limited to one thread:

- ``proximal``: our OWL-QN (``SoftmaxRegression(solver="proximal")``, the
  default ``tol=1e-7``);
- ``proximal-newton``: our proximal Newton (same ``tol``);
- ``saga``: scikit-learn's ``LogisticRegression(solver="saga")`` (the peer),
  at ``tol=1e-4`` and, if that does not reach the gap, ``tol=1e-6``
  (``max_iter`` epochs capped), reporting the first that does.

Every fit's objective ``F = C sum CE + (1 - rho)/2 ||W||^2 + rho ||W||_1`` is
computed here from its coefficients with SciPy's ``logsumexp`` in float64
(independent of both libraries), and its relative gap taken against the
best value any fit reached, including a reference ``proximal-newton`` fit
at ``tol=1e-12``. A fit "reaches 1e-6" when that gap is at most 1e-6; the
table gives its time, or ``not reached``. It also says which solver
``solver="auto"`` picks for the problem, and the time of the 13-point
warm-started digits L1 path (``regularization_path``, ``tol=1e-8``, as in
the group-lasso report) with each of our two solvers.

Data sets: scikit-learn's digits scaled to [0, 1] (1,797 x 64, 10 classes;
float64 and float32), a sparse text-like CSR set (4,000 x 300, 4 classes,
``make_sparse_text``), and a wide one with more features than rows (200 x
500, 3 classes, standardised ``make_multinomial``).

Usage::

    python benchmarks/bench_l1.py                  # writes results/l1.md and .json
    python benchmarks/bench_l1.py --quick --out /tmp/l1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

FACTORS = (2.0, 10.0, 100.0, 1000.0)
GOAL = 1e-6


def datasets(quick: bool) -> dict[str, tuple[Any, np.ndarray]]:
    """The data sets by name: (X, y)."""
    from _datasets import make_multinomial, make_sparse_text
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = np.ascontiguousarray(X / 16.0)
    out: dict[str, tuple[Any, np.ndarray]] = {"digits": (X, y)}
    if quick:
        return out
    out["digits-f32"] = (X.astype(np.float32), y)
    Xs, ys = make_sparse_text(4000, 300, 4, seed=0, density=0.03)
    out["sparse"] = (Xs.astype(np.float64), ys)
    Xw, yw = make_multinomial(200, 500, 3, seed=0)
    out["wide"] = (StandardScaler().fit_transform(Xw), yw)
    return out


def objective(
    X: Any, y: np.ndarray, C: float, rho: float, coef: np.ndarray, b: np.ndarray
) -> float:
    """``F`` in float64 with SciPy (the unscaled objective both libraries minimise)."""
    from scipy.special import logsumexp

    Z = np.asarray(X.astype(np.float64) @ coef.T) + b
    ce = logsumexp(Z, axis=1) - Z[np.arange(len(y)), np.searchsorted(np.unique(y), y)]
    return float(C * ce.sum() + 0.5 * (1 - rho) * np.sum(coef**2) + rho * np.abs(coef).sum())


def fit_ours(X: Any, y: np.ndarray, C: float, rho: float, solver: str, tol: float) -> dict:
    from softmax import SoftmaxRegression

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = SoftmaxRegression(C=C, l1_ratio=rho, solver=solver, tol=tol, max_iter=1000).fit(X, y)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "n_iter": int(m.n_iter_),
        "converged": bool(m.converged_),
        "F": objective(X, y, C, rho, m.coef_, m.intercept_),
        "solver": m.solver_,
    }


def fit_saga(X: Any, y: np.ndarray, C: float, rho: float, tol: float, max_iter: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        m = LogisticRegression(C=C, l1_ratio=rho, solver="saga", tol=tol, max_iter=max_iter)
        m.fit(X, y)
    seconds = time.perf_counter() - start
    n_iter = int(np.max(m.n_iter_))
    return {
        "seconds": seconds,
        "n_iter": n_iter,
        "converged": n_iter < max_iter,
        "F": objective(X, y, C, rho, m.coef_, m.intercept_),
        "tol": tol,
    }


def auto_choice(X: Any, y: np.ndarray, C: float, rho: float) -> str:
    """What ``solver="auto"`` resolves to (no fit)."""
    from softmax import SoftmaxRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SoftmaxRegression(C=C, l1_ratio=rho, max_iter=1).fit(X, y).solver_


def run_path(X: np.ndarray, y: np.ndarray, solver: str) -> dict:
    from softmax import min_c, regularization_path

    Cs = min_c(X, y, l1_ratio=1.0) * np.logspace(0.05, 3, 13)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = regularization_path(X, y, Cs, l1_ratio=1.0, solver=solver, tol=1e-8)
    return {
        "seconds": time.perf_counter() - start,
        "n_iter": [int(i) for i in path.n_iter],
        "not_converged": int(np.sum(~np.asarray(path.converged))),
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "**L1 / elastic-net solvers** (`benchmarks/bench_l1.py`)",
        "",
        f"Command: `{r['command']}`  ",
        f"Date (UTC): {r['date']}; one run per fit, each from zero; thread pools limited to "
        "1 thread  ",
        f"Load average before / after: {r['load_before']} / {r['load_after']} "
        "(a shared 2-core machine: other jobs ran meanwhile)",
        "",
        f"Time to a relative objective gap of {GOAL:g} (against the best objective any fit "
        "reached, computed here with SciPy); `not reached` when the fit stopped above it "
        f"(gap in brackets). Ours at tol={r['tol']:g}, max_iter=1000; saga at tol=1e-4, "
        f"then 1e-6 (max_iter={r['saga_max_iter']}), the first reaching the gap. "
        '`auto` is what `solver="auto"` picks.',
        "",
        "| data | l1_ratio | C / min_c | auto | proximal (OWL-QN) | proximal-newton "
        "| saga | saga / best of ours |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(f: dict) -> str:
        gap = f["gap"]
        if gap <= GOAL:
            return f"{f['seconds']:.3f} s ({f['n_iter']} it.)"
        return f"not reached ({gap:.0e}, {f['seconds']:.2f} s)"

    for p in r["problems"]:
        ours = [p["fits"][s] for s in ("proximal", "proximal-newton")]
        best = min((f["seconds"] for f in ours if f["gap"] <= GOAL), default=None)
        saga = p["fits"]["saga"]
        ratio = (
            f"{saga['seconds'] / best:.1f}x" if best is not None and saga["gap"] <= GOAL else "-"
        )
        lines.append(
            f"| {p['data']} | {p['l1_ratio']:g} | {p['factor']:g} | {p['auto']} | "
            f"{cell(p['fits']['proximal'])} | {cell(p['fits']['proximal-newton'])} | "
            f"{cell(saga)} | {ratio} |"
        )
    if r.get("paths"):
        lines += [
            "",
            "13-point warm-started L1 path on digits (`regularization_path`, "
            "`C = min_c * np.logspace(0.05, 3, 13)`, tol=1e-8):",
            "",
            "| solver | seconds | points not converged | iterations per C |",
            "|---|---|---|---|",
        ]
        for name, pr in r["paths"].items():
            lines.append(
                f"| {name} | {pr['seconds']:.2f} | {pr['not_converged']} | "
                + " ".join(map(str, pr["n_iter"]))
                + " |"
            )
    counts = r["summary"]
    lines += [
        "",
        "#### Verdict",
        "",
        f"- problems: {counts['problems']}; reached {GOAL:g}: proximal {counts['proximal']}, "
        f"proximal-newton {counts['proximal-newton']}, saga {counts['saga']}",
        f"- proximal-newton faster than proximal where both reached it: "
        f"{counts['pn_faster']} of {counts['both']}",
        "",
        "#### Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in r["machine"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tol", type=float, default=1e-7, help="our tol (default 1e-7)")
    parser.add_argument("--saga-max-iter", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="digits only, no path")
    parser.add_argument("--no-path", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "l1"), help="path, no suffix")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench_fit import machine_info
    from threadpoolctl import threadpool_limits

    from softmax import SoftmaxRegression, min_c

    args = parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    problems = []
    paths: dict[str, Any] = {}
    with threadpool_limits(limits=1):
        for name, (X, y) in datasets(args.quick).items():
            for rho in (1.0, 0.5):
                c0 = min_c(X, y, l1_ratio=rho)
                for factor in FACTORS:
                    C = c0 * factor
                    ref = SoftmaxRegression(
                        C=C, l1_ratio=rho, solver="proximal-newton", tol=1e-12, max_iter=500
                    ).fit(np.asarray(X, dtype=np.float64) if name == "digits-f32" else X, y)
                    F_ref = objective(X, y, C, rho, ref.coef_, ref.intercept_)
                    fits = {
                        s: fit_ours(X, y, C, rho, s, args.tol)
                        for s in ("proximal", "proximal-newton")
                    }
                    saga = fit_saga(X, y, C, rho, 1e-4, args.saga_max_iter)
                    best = min(F_ref, saga["F"], *(f["F"] for f in fits.values()))
                    if (saga["F"] - best) / abs(best) > GOAL:
                        more = fit_saga(X, y, C, rho, 1e-6, args.saga_max_iter)
                        saga = more
                        best = min(best, saga["F"])
                    fits["saga"] = saga
                    for f in fits.values():
                        f["gap"] = (f["F"] - best) / abs(best)
                    p = {
                        "data": name,
                        "l1_ratio": rho,
                        "factor": factor,
                        "C": C,
                        "auto": auto_choice(X, y, C, rho),
                        "fits": fits,
                    }
                    problems.append(p)
                    print(
                        name,
                        rho,
                        factor,
                        p["auto"],
                        *(f"{s}: {f['seconds']:.3f}s gap {f['gap']:.1e}" for s, f in fits.items()),
                        flush=True,
                    )
        if not (args.quick or args.no_path):
            X, y = datasets(True)["digits"]
            for s in ("proximal", "proximal-newton"):
                paths[s] = run_path(X, y, s)
                print("path", s, paths[s], flush=True)
    load_after = [round(x, 2) for x in os.getloadavg()]

    def reached(p: dict, s: str) -> bool:
        return p["fits"][s]["gap"] <= GOAL

    both = [p for p in problems if reached(p, "proximal") and reached(p, "proximal-newton")]
    summary = {
        "problems": len(problems),
        **{
            s: sum(reached(p, s) for p in problems)
            for s in ("proximal", "proximal-newton", "saga")
        },
        "both": len(both),
        "pn_faster": sum(
            p["fits"]["proximal-newton"]["seconds"] < p["fits"]["proximal"]["seconds"]
            for p in both
        ),
    }
    report = {
        "command": "python benchmarks/bench_l1.py" + "".join(f" {a}" for a in argv or []),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "tol": args.tol,
        "saga_max_iter": args.saga_max_iter,
        "load_before": load_before,
        "load_after": load_after,
        "problems": problems,
        "paths": paths,
        "summary": summary,
        "machine": machine_info(),
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
