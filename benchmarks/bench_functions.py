"""Benchmark: row-wise softmax / log_softmax against SciPy, PyTorch and np.exp.

Run::

    python benchmarks/bench_functions.py            # full run, writes results
    python benchmarks/bench_functions.py --quick    # fewer repeats, no file

Every candidate is timed on the same array, interleaved round by round in one
process (so a load spike hits all of them alike), and the median is reported.
``np.exp(x)`` (allocating its output, as every candidate does) is the floor:
a softmax must read ``x``, exponentiate it and write the result.
Threads: NumPy ufuncs and the numba kernels are single-threaded, so torch is
pinned to one thread (``torch.set_num_threads(1)``) for a like-for-like
comparison; BLAS is not involved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.special as sps

from softmax import _kernels
from softmax.functions import log_softmax, softmax

SHAPES = [(10000, 1000), (1000, 1000), (1000000, 10), (100, 100000)]
DTYPES = [np.float32, np.float64]


def cpu_info() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return "n/a"


def numpy_path(f):
    def run(x):
        _kernels.USE_NUMBA = False
        try:
            return f(x)
        finally:
            _kernels.USE_NUMBA = True

    return run


def candidates(log: bool):
    torch = None
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    ours = log_softmax if log else softmax
    c = {
        "softmax (ours)": ours,
        "ours, NumPy path": numpy_path(ours),
        "scipy": (lambda x: sps.log_softmax(x, axis=-1))
        if log
        else (lambda x: sps.softmax(x, axis=-1)),
    }
    if torch is not None:
        tf = torch.log_softmax if log else torch.softmax
        c["torch"] = lambda x: tf(torch.from_numpy(x), -1)
    c["np.exp"] = np.exp
    return c


def bench(x, cands, repeats):
    times = {name: [] for name in cands}
    for f in cands.values():  # warm up (numba compile, page faults)
        f(x)
    for _ in range(repeats):
        for name, f in cands.items():
            t0 = time.perf_counter()
            f(x)
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    best = {name: float(np.min(t)) * 1e3 for name, t in times.items()}
    return med, best


SMALL_SHAPES = [((10,), np.float64), ((1, 10), np.float64), ((100, 10), np.float32)]


def bench_small(repeats: int) -> list[dict]:
    """Per-call time (microseconds) on small inputs, where call overhead dominates.

    Best of ``number`` calls per round (the minimum is the least disturbed by
    other processes on a shared machine), median over interleaved rounds.
    """
    import timeit

    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(1)
    rows = []
    for shape, dtype in SMALL_SHAPES:
        x = rng.standard_normal(shape).astype(dtype)
        cands = {
            "softmax (ours)": lambda x=x: softmax(x),
            "log_softmax (ours)": lambda x=x: log_softmax(x),
            "scipy softmax": lambda x=x: sps.softmax(x, axis=-1),
            "scipy log_softmax": lambda x=x: sps.log_softmax(x, axis=-1),
        }
        if torch is not None:
            cands["torch softmax"] = lambda x=x: torch.softmax(torch.from_numpy(x), -1).numpy()
        times = {k: [] for k in cands}
        for _ in range(repeats):
            for k, f in cands.items():
                times[k].append(min(timeit.repeat(f, number=200, repeat=3)) / 200 * 1e6)
        rows.append(
            {"shape": shape, "dtype": np.dtype(dtype).name}
            | {k: float(np.median(v)) for k, v in times.items()}
        )
        print(
            f"small {shape!s:10s} {np.dtype(dtype).name:7s} "
            + " ".join(f"{k}={v:.2f}us" for k, v in rows[-1].items() if isinstance(v, float)),
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="5 repeats, do not write results")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "functions.md"))
    args = p.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    rows = []
    load_before = load()
    for log in (False, True):
        cands = candidates(log)
        for shape in SHAPES:
            for dtype in DTYPES:
                x = rng.standard_normal(shape).astype(dtype)
                t, best = bench(x, cands, repeats)
                ours = t["softmax (ours)"]
                row = {
                    "fn": "log_softmax" if log else "softmax",
                    "shape": shape,
                    "dtype": np.dtype(dtype).name,
                    **t,
                    "scipy/ours": t["scipy"] / ours,
                    "torch/ours": t["torch"] / ours if "torch" in t else float("nan"),
                    "ours/exp": ours / t["np.exp"],
                    # the fastest run of each: the least disturbed by other
                    # processes on a shared machine (a preemption costs a
                    # fixed slice, so it inflates the longer call's median)
                    "ours/exp best": best["softmax (ours)"] / best["np.exp"],
                }
                rows.append(row)
                print(
                    f"{row['fn']:11s} {shape!s:14s} {row['dtype']:7s} "
                    + " ".join(f"{k}={v:7.1f}ms" for k, v in t.items())
                    + f" | scipy/ours {row['scipy/ours']:.2f}x torch/ours {row['torch/ours']:.2f}x"
                    f" ours/exp {row['ours/exp']:.2f} (best runs {row['ours/exp best']:.2f})",
                    flush=True,
                )
    small = bench_small(repeats)
    load_after = load()
    if args.quick:
        return 0
    try:
        import torch

        torch_v = f"{torch.__version__} (1 thread)"
    except ImportError:
        torch_v = "not installed"
    try:
        import numba

        numba_v = numba.__version__
    except ImportError:
        numba_v = "not installed"
    names = [k for k in rows[0] if k not in ("fn", "shape", "dtype") and "/" not in k]
    lines = [
        "# Benchmark: softmax function family",
        "",
        f"Command: `python benchmarks/bench_functions.py --repeats {repeats}`; "
        "median of the interleaved runs, milliseconds (lower is better). The last "
        "column compares the fastest run of each (on a shared machine a preemption "
        "costs a fixed time slice, which inflates the median of the longer call).",
        "",
        f"- CPU: {cpu_info()}",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"PyTorch {torch_v}, numba {numba_v}",
        "- Threads: NumPy/numba single-threaded; torch.set_num_threads(1)",
        f"- Load before: `{load_before}`",
        f"- Load after: `{load_after}`",
        "",
        "| function | shape | dtype | "
        + " | ".join(names)
        + " | scipy / ours | torch / ours | ours / np.exp | ours / np.exp, fastest runs |",
        "|" + "---|" * (len(names) + 7),
    ]
    for r in rows:
        lines.append(
            f"| {r['fn']} | {r['shape'][0]}x{r['shape'][1]} | {r['dtype']} | "
            + " | ".join(f"{r[n]:.1f}" for n in names)
            + f" | {r['scipy/ours']:.2f}x | {r['torch/ours']:.2f}x | {r['ours/exp']:.2f} "
            f"| {r['ours/exp best']:.2f} |"
        )
    snames = [k for k in small[0] if k not in ("shape", "dtype")]
    lines += [
        "",
        "Small inputs (per-call overhead; microseconds per call, best of 200 calls, "
        "median over the rounds):",
        "",
        "| shape | dtype | "
        + " | ".join(snames)
        + " | scipy / ours (softmax) | torch / ours (softmax) |",
        "|" + "---|" * (len(snames) + 4),
    ]
    for r in small:
        lines.append(
            f"| {r['shape']} | {r['dtype']} | "
            + " | ".join(f"{r[n]:.2f}" for n in snames)
            + f" | {r['scipy softmax'] / r['softmax (ours)']:.2f}x"
            + f" | {r.get('torch softmax', float('nan')) / r['softmax (ours)']:.2f}x |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": f"python benchmarks/bench_functions.py --repeats {repeats}",
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch_v,
        "numba": numba_v,
        "load_before": load_before,
        "load_after": load_after,
    }
    as_json = {
        "meta": meta,
        "rows": [r | {"shape": list(r["shape"])} for r in rows],
        "small": [r | {"shape": list(r["shape"])} for r in small],
    }
    for path, text in (
        (out, "\n".join(lines) + "\n"),
        (out.with_suffix(".json"), json.dumps(as_json, indent=1) + "\n"),
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # never a half-written results file
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
