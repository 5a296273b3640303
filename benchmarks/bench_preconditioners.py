"""Benchmark: L-BFGS's preconditioners on MNIST digits, across C and dtype.

Each run fits ``SOLVERS["lbfgs"].with_options(preconditioner=...)`` on the
8,000 MNIST training digits (pixels / 255, 10 classes) through the public
solver API (``Problem`` on ``InMemoryData``) and records, with
``bench_fit.py``'s recorder, the time, iterations and passes over X to a
relative objective gap of 1e-6 against a certified float64 optimum. Runs are
interleaved (every preconditioner and dtype once per repeat); the table gives
medians. One thread everywhere (BLAS, OpenMP, our row threads).

Usage::

    python benchmarks/bench_preconditioners.py            # C = 0.01, 1, 100; 3 repeats
    python benchmarks/bench_preconditioners.py --C 1 --repeats 1

Writes ``<out>.json`` and ``<out>.md`` (default
``benchmarks/results/preconditioners``), which ``docs/solvers.md`` includes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _datasets import load_dataset
from bench_fit import (
    Recorder,
    Stop,
    machine_info,
    recording_backend,
    reference_solution,
    write_results,
)

PRECONDITIONERS = ("diagonal", "kronecker", "blocks", "auto")
TARGET = 1e-6


def run_one(ds: Any, f_ref: float, dtype: str, preconditioner: str, budget: float) -> dict:
    """One L-BFGS fit to a gap of 1e-6 (or the budget): time, iterations, passes."""
    from softmax.backends.memory import InMemoryData
    from softmax.solvers import SOLVERS, Problem

    X = ds.X32 if dtype == "float32" else ds.X64
    rec = Recorder(ds, f_ref, (TARGET,), budget, stall=200, X=ds.X64)
    data = InMemoryData(X, ds.y, None, np.arange(ds.n_classes), fit_intercept=True)
    solver = SOLVERS["lbfgs"].with_options(preconditioner=preconditioner)

    def callback(iteration: int, objective: float) -> None:
        rec.iters = iteration

    with recording_backend(rec):
        rec.start()
        with contextlib.suppress(Stop):  # the recorder ends the run at 1e-6 or the budget
            solver.solve(Problem(data, C=ds.C), tol=1e-14, max_iter=100_000, callback=callback)
    hit = rec.hits[TARGET]
    return {
        "C": ds.C,
        "dtype": dtype,
        "preconditioner": preconditioner,
        "time": None if hit is None else hit["time"],
        "iters": None if hit is None else hit["iters"],
        "passes": None if hit is None else hit["passes"],
        "best_gap": rec.best_gap,
        "stop": rec.reason,
    }


def summarise(runs: list[dict]) -> list[dict]:
    """Medians over the repeats of each (C, dtype, preconditioner)."""
    keys = sorted({(r["C"], r["dtype"], r["preconditioner"]) for r in runs})
    out = []
    for C, dtype, pc in keys:
        group = [r for r in runs if (r["C"], r["dtype"], r["preconditioner"]) == (C, dtype, pc)]
        reached = [r for r in group if r["time"] is not None]
        row: dict[str, Any] = {"C": C, "dtype": dtype, "preconditioner": pc, "runs": len(group)}
        if len(reached) == len(group):
            for k in ("time", "iters", "passes"):
                row[k] = statistics.median(r[k] for r in reached)
        else:
            row["best_gap"] = min(r["best_gap"] for r in group)
        out.append(row)
    return out


def _cell(row: dict) -> str:
    if "time" not in row:
        return f"not reached (best gap {row['best_gap']:.1e})"
    return f"{row['time']:.3g} s / {row['iters']:g} / {row['passes']:g}"


def markdown(report: dict) -> str:
    """The results file: command, machine, then one row per (C, dtype)."""
    m = report["machine"]
    lines = [
        "# L-BFGS preconditioners on MNIST digits (8,000 x 784, X / 255, 10 classes)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date (UTC): {report['date']}; one thread (BLAS, OpenMP, softmax row threads); "
        f"medians of {report['repeats']} interleaved runs  ",
        f"Load average before / after: {report['load_before']} / {report['load_after']}",
        "",
        f"- CPU: {m['CPU']}, {m['logical cores']} logical cores; python {m['python']}, "
        f"numpy {m['numpy']}, scipy {m['scipy']}, softmax {m['softmax']}",
        "",
        "Each cell: seconds to a relative objective gap of 1e-6 / L-BFGS iterations / "
        'passes over X (`SOLVERS["lbfgs"].with_options(preconditioner=...)`).',
        "",
        "| C | dtype | " + " | ".join(report["preconditioners"]) + " |",
        "|---|---|" + "---|" * len(report["preconditioners"]),
    ]
    rows = {(r["C"], r["dtype"], r["preconditioner"]): r for r in report["summary"]}
    for C in report["C"]:
        for dtype in report["dtypes"]:
            cells = [_cell(rows[(C, dtype, pc)]) for pc in report["preconditioners"]]
            short = "f32" if dtype == "float32" else "f64"
            lines.append(f"| {C:g} | {short} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", default="0.01,1,100", help="comma list of C values")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--preconditioners", default=",".join(PRECONDITIONERS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per run")
    ap.add_argument("--out", default="benchmarks/results/preconditioners")
    args = ap.parse_args(argv)
    unknown = set(args.preconditioners.split(",")) - set(PRECONDITIONERS)
    if unknown:
        ap.error(f"unknown preconditioners {sorted(unknown)}; choose from {PRECONDITIONERS}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; write ``<out>.json`` and ``<out>.md``."""
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    import softmax.backends.memory

    softmax.backends.memory.N_THREADS = 1
    Cs = [float(c) for c in args.C.split(",")]
    dtypes = args.dtypes.split(",")
    pcs = args.preconditioners.split(",")
    report: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(),
        "C": Cs,
        "dtypes": dtypes,
        "preconditioners": pcs,
        "repeats": args.repeats,
        "runs": [],
    }
    base = load_dataset("mnist")
    with threadpool_limits(limits=1):
        for C in Cs:
            ds = dataclasses.replace(base, C=C)
            ref = reference_solution(ds)
            for r in range(args.repeats):
                for dtype in dtypes:
                    for pc in pcs[r % len(pcs) :] + pcs[: r % len(pcs)]:
                        res = run_one(ds, float(ref["f"]), dtype, pc, args.budget)
                        res["repeat"] = r
                        report["runs"].append(res)
                        print(
                            f"  C={C:g} {dtype} {pc:9s} {_cell(summarise([res])[0])}", flush=True
                        )
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["summary"] = summarise(report["runs"])
    write_results(Path(args.out), report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
