"""GPU benchmark: softmax, log_softmax, logsumexp, ours against each library's own call.

One command, from the repository root (about one to two minutes on an H200)::

    PYTHONPATH=src python benchmarks/bench_gpu_functions.py

For PyTorch, CuPy and JAX arrays on a CUDA device, our ``softmax``,
``log_softmax`` and ``logsumexp`` are timed beside the library's own call on
the same array (``torch.softmax`` / ``torch.log_softmax`` / ``torch.logsumexp``,
``cupyx.scipy.special.softmax`` / ``log_softmax`` / ``logsumexp``,
``jax.nn.softmax`` / ``jax.nn.log_softmax`` / ``jax.scipy.special.logsumexp``),
on rows of shape (1000000, 10), (4096, 32000) and (10000, 1000) in float32,
bfloat16 (PyTorch, JAX) and float64, along the last axis. Candidates are
interleaved round by round and each timing brackets device-synchronised calls
with ``time.perf_counter`` (``torch.cuda.synchronize``, CuPy's stream
``synchronize``, JAX's ``block_until_ready``), in two modes:

- *synced*: every call is followed by a synchronisation (latency of one call);
- *pipelined*: ``n`` calls back to back, one synchronisation at the end (the
  throughput of a loop; a host synchronisation inside a call shows here).

Diagnostic columns: for PyTorch and CuPy, ``native + check`` is the native
call followed by the one-number check our softmax does (how much of the gap
is the check); for JAX, ``jit(native)`` is the native function compiled with
``jax.jit`` (eager ``jax.nn.softmax`` runs op by op), and ``ours, select not
cond`` our JAX path with a per-row ``jnp.where`` in place of ``lax.cond``
(which of the two XLA runs faster on the GPU).

Before timing, each library's results are checked on its device against SciPy
in float64 on the host: every case of the numerics table, and finite input.

Without a CUDA device the script says so and exits 0. ``--device cpu`` runs
the same code on PyTorch CPU and JAX CPU with smaller shapes (a smoke test of
the script itself; its timings say nothing about GPUs). A library that is not
installed (or has no GPU backend) is skipped. Results go to
``benchmarks/results/gpu_functions.md`` and ``.json`` (GPU mode), with the GPU
name and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(1_000_000, 10), (4096, 32000), (10_000, 1_000)]
SMOKE_SHAPES = [(20_000, 10), (16, 32000), (1_000, 1_000)]
DTYPES = ["float32", "bfloat16", "float64"]
FNS = ["softmax", "log_softmax", "logsumexp"]
TARGET = 1.1  # ours / native, every cell (issue 16)


def _import_softmax() -> Any:
    try:
        import softmax.functions as F
    except ImportError:  # run from a checkout without PYTHONPATH=src
        sys.path.insert(0, str(ROOT / "src"))
        import softmax.functions as F
    return F


# --------------------------------------------------------------------------
# libraries
# --------------------------------------------------------------------------


class Lib:
    """One array library on one device: arrays, synchronisation, native calls."""

    name = ""
    dtypes: tuple[str, ...] = ()

    def version(self) -> str:
        raise NotImplementedError

    def random(self, shape: tuple[int, int], dtype: str, seed: int) -> Any:
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray, dtype: str) -> Any:
        raise NotImplementedError

    def to_numpy(self, a: Any) -> np.ndarray:
        raise NotImplementedError

    def sync(self, r: Any) -> None:
        raise NotImplementedError

    def device_of(self, a: Any) -> str:
        raise NotImplementedError

    def native(self, fn: str) -> Callable[[Any], Any]:
        raise NotImplementedError

    def extras(self, fn: str) -> dict[str, Callable[[Any], Any]]:
        return {}

    def free(self) -> None:
        pass


class TorchLib(Lib):
    name = "torch"
    dtypes = ("float32", "bfloat16", "float64")

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.device = torch, device
        self.cuda = device == "cuda"
        if not self.cuda:
            # smoke runs share small machines: one thread keeps PyTorch's
            # thread-pool hand-offs out of the timings
            torch.set_num_threads(1)

    def version(self) -> str:
        t = self.torch
        if self.cuda:
            return f"torch {t.__version__} (CUDA {t.version.cuda})"
        return f"torch {t.__version__} (CPU, 1 thread)"

    def _dt(self, dtype: str) -> Any:
        return getattr(self.torch, dtype)

    def random(self, shape, dtype, seed):
        g = self.torch.Generator(device=self.device).manual_seed(seed)
        x = self.torch.randn(shape, generator=g, device=self.device, dtype=self.torch.float32)
        return x.to(self._dt(dtype)) if dtype != "float32" else x

    def from_numpy(self, a, dtype):
        src = self.torch.tensor(a, dtype=self.torch.float64 if dtype == "float64" else None)
        return src.to(device=self.device, dtype=self._dt(dtype))

    def to_numpy(self, a):
        return a.detach().to("cpu", self.torch.float64).numpy()

    def sync(self, r):
        if self.cuda:
            self.torch.cuda.synchronize()

    def device_of(self, a):
        return str(a.device)

    def native(self, fn):
        t = self.torch
        if fn == "softmax":
            return lambda x: t.softmax(x, -1)
        if fn == "log_softmax":
            return lambda x: t.log_softmax(x, -1)
        return lambda x: t.logsumexp(x, -1)

    def extras(self, fn):
        if fn == "logsumexp":
            return {}
        nat = self.native(fn)

        def native_and_check(x):
            r = nat(x)
            r.select(-1, 0).sum().item()  # the check our call makes
            return r

        return {"native + check": native_and_check}

    def free(self):
        if self.cuda:
            self.torch.cuda.empty_cache()


class CupyLib(Lib):
    name = "cupy"
    dtypes = ("float32", "float64")

    def __init__(self) -> None:
        import cupy
        import cupyx.scipy.special as special

        self.cupy, self.special = cupy, special

    def version(self):
        return f"cupy {self.cupy.__version__}"

    def random(self, shape, dtype, seed):
        return self.cupy.random.default_rng(seed).standard_normal(shape, dtype=dtype)

    def from_numpy(self, a, dtype):
        return self.cupy.asarray(a.astype(dtype))

    def to_numpy(self, a):
        return self.cupy.asnumpy(a).astype(np.float64)

    def sync(self, r):
        self.cupy.cuda.get_current_stream().synchronize()

    def device_of(self, a):
        return f"cuda:{a.device.id}"

    def native(self, fn):
        f = getattr(self.special, fn)
        return lambda x: f(x, axis=-1)

    def extras(self, fn):
        if fn == "logsumexp":
            return {}
        nat = self.native(fn)

        def native_and_check(x):
            r = nat(x)
            float(r[..., 0].sum())
            return r

        return {"native + check": native_and_check}

    def free(self):
        self.cupy.get_default_memory_pool().free_all_blocks()


class JaxLib(Lib):
    name = "jax"
    dtypes = ("float32", "bfloat16", "float64")

    def __init__(self, platform_: str) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 arrays
        self.jax, self.jnp = jax, jax.numpy
        self.dev = jax.devices(platform_)[0]
        self._jit = {}

    def version(self):
        import jaxlib

        return f"jax {self.jax.__version__} (jaxlib {jaxlib.__version__}, {self.dev.platform})"

    def random(self, shape, dtype, seed):
        key = self.jax.random.PRNGKey(seed)
        with self.jax.default_device(self.dev):
            x = self.jax.random.normal(key, shape, dtype=self.jnp.float32)
            return x.astype(dtype) if dtype != "float32" else x

    def from_numpy(self, a, dtype):
        src = a if dtype == "float64" else a.astype(np.float32)
        return self.jax.device_put(self.jnp.asarray(src, dtype=dtype), self.dev)

    def to_numpy(self, a):
        return np.asarray(a.astype(self.jnp.float64))

    def sync(self, r):
        r.block_until_ready()

    def device_of(self, a):
        return str(next(iter(a.devices())))

    def _fn(self, fn):
        if fn == "softmax":
            return lambda x: self.jax.nn.softmax(x, axis=-1)
        if fn == "log_softmax":
            return lambda x: self.jax.nn.log_softmax(x, axis=-1)
        from jax.scipy.special import logsumexp

        return lambda x: logsumexp(x, axis=-1)

    def native(self, fn):
        return self._fn(fn)

    def extras(self, fn):
        if fn not in self._jit:
            self._jit[fn] = self.jax.jit(self._fn(fn))
            if fn != "logsumexp":
                self._jit[fn + " select"] = self.jax.jit(self._select_variant(fn == "log_softmax"))
        out = {"jit(native)": self._jit[fn]}
        if fn != "logsumexp":
            out["ours, select not cond"] = self._jit[fn + " select"]
        return out

    def _select_variant(self, log):
        """Diagnostic: our JAX path with a per-row select instead of ``lax.cond``.

        Both results are computed for every row and ``jnp.where`` picks one:
        no conditional in the program (which XLA may run with a host round
        trip on a GPU), at the price of the careful composition's passes.
        """
        from softmax._native import _jax_careful

        jax, jnp = self.jax, self.jnp

        def f(x):
            work = jnp.float32 if jnp.finfo(x.dtype).bits < 32 else x.dtype
            xw = x.astype(work)
            native = jax.nn.log_softmax(xw, axis=-1) if log else jax.nn.softmax(xw, axis=-1)
            finite = jnp.isfinite(jnp.max(xw, axis=-1, keepdims=True))
            careful = _jax_careful(xw, 1.0, axis=x.ndim - 1, log=log, mode="plain")
            return jnp.where(finite, native, careful).astype(x.dtype)

        return f


def available_libs(device: str, wanted: list[str]) -> tuple[list[Lib], list[str]]:
    """The libraries to benchmark on ``device``, and a note for each one skipped."""
    libs: list[Lib] = []
    notes: list[str] = []
    if "torch" in wanted:
        try:
            import torch

            if device == "cpu" or torch.cuda.is_available():
                libs.append(TorchLib(device))
            else:
                notes.append("torch: no CUDA device visible to PyTorch")
        except ImportError as exc:
            notes.append(f"torch: not installed ({exc})")
    if "cupy" in wanted:
        if device == "cpu":
            notes.append("cupy: GPU only")
        else:
            try:
                import cupy

                if cupy.cuda.runtime.getDeviceCount() > 0:
                    libs.append(CupyLib())
                else:  # pragma: no cover
                    notes.append("cupy: no CUDA device")
            except Exception as exc:  # ImportError, or CUDA runtime errors
                notes.append(f"cupy: unavailable ({type(exc).__name__}: {exc})")
    if "jax" in wanted:
        try:
            libs.append(JaxLib("cpu" if device == "cpu" else "gpu"))
        except ImportError as exc:
            notes.append(f"jax: not installed ({exc})")
        except RuntimeError as exc:  # no GPU backend (jax without CUDA plugin)
            notes.append(f"jax: no GPU backend ({exc})".splitlines()[0])
    return libs, notes


# --------------------------------------------------------------------------
# correctness on the device
# --------------------------------------------------------------------------


def _ref_rows(x: np.ndarray):
    """softmax, log_softmax, logsumexp of float64 rows by the numerics policy (SciPy)."""
    import scipy.special as sps

    with np.errstate(all="ignore"):  # SciPy warns on the huge rows; the values are right
        return _ref_rows_quiet(x, sps)


def _ref_rows_quiet(x: np.ndarray, sps: Any):
    sm, lsm, lse = [], [], []
    for row in x:
        k = row.size
        if np.isnan(row).any():
            r = (np.full(k, np.nan), np.full(k, np.nan), np.nan)
        elif (row == np.inf).any():
            top = row == np.inf
            r = (top / top.sum(), np.where(top, -np.log(top.sum()), -np.inf), np.inf)
        elif (row == -np.inf).all():
            r = (np.zeros(k), np.full(k, -np.inf), -np.inf)
        else:
            r = (sps.softmax(row), sps.log_softmax(row), sps.logsumexp(row))
        sm.append(r[0])
        lsm.append(r[1])
        lse.append(r[2])
    return np.array(sm), np.array(lsm), np.array(lse)


def _same(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> bool:
    if got.shape != ref.shape:
        return False
    nan_ok = (np.isnan(got) == np.isnan(ref)).all()
    inf_ok = (np.isinf(got) == np.isinf(ref)).all() and (
        got[np.isinf(got)] == ref[np.isinf(ref)]
    ).all()
    fin = np.isfinite(ref)
    return bool(nan_ok and inf_ok and np.allclose(got[fin], ref[fin], rtol=rtol, atol=atol))


def validate(lib: Lib, F: Any) -> dict[str, str]:
    """Check ours on the device: the numerics table, and ours against the native call."""
    inf, nan = np.inf, np.nan
    out: dict[str, str] = {}
    funcs = {"softmax": F.softmax, "log_softmax": F.log_softmax, "logsumexp": F.logsumexp}
    from softmax import _native

    probe = lib.random((4, 3), lib.dtypes[0], seed=1)
    out["dispatch to the native kernels"] = (
        "ok" if _native.for_array(probe) is not None else "NO: the generic code runs"
    )
    for dtype in ("float32", "float64"):
        if dtype not in lib.dtypes:
            continue
        big = 1e38 if dtype == "float32" else 1e308
        table = np.array(
            [
                [1.0, 2.0, 3.0, 4.0],
                [big, big, -big, 0.0],
                [1.0, -inf, 2.0, -inf],
                [-inf, -inf, -inf, -inf],
                [inf, 1.0, inf, 0.0],
                [1.0, 2.0, inf, 3.0],
                [nan, 1.0, 2.0, 3.0],
                [2.0, inf, nan, 1.0],
            ]
        )
        refs = _ref_rows(table)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        try:
            x = lib.from_numpy(table, dtype)
            for (name, f), ref in zip(funcs.items(), refs):
                r = f(x)
                lib.sync(r)
                if lib.device_of(r) != lib.device_of(x):
                    out[f"table {dtype} {name}"] = f"moved to {lib.device_of(r)}"
                    continue
                atol = rtol * big if name == "log_softmax" else 0.0
                ok = _same(lib.to_numpy(r), ref, rtol, atol)
                out[f"table {dtype} {name}"] = "ok" if ok else f"MISMATCH {lib.to_numpy(r)}"
        except Exception as exc:  # report, keep benchmarking
            out[f"table {dtype}"] = f"ERROR {type(exc).__name__}: {exc}"
    for dtype in lib.dtypes:
        # finite input: ours and the native call against float64 on the host (for
        # bfloat16 ours accumulates in float32, which the native call may not)
        x = lib.random((1000, 37), dtype, seed=5)
        x64 = lib.to_numpy(x)
        refs = dict(zip(funcs, _ref_rows(x64)))
        rtol = {"float32": 2e-5, "bfloat16": 1.6e-2, "float64": 1e-12}[dtype]
        for name, f in funcs.items():
            try:
                got, nat = lib.to_numpy(f(x)), lib.to_numpy(lib.native(name)(x))
                atol = rtol * np.max(np.abs(x64)) if name == "log_softmax" else 0.0
                ok = _same(got, refs[name], rtol, atol)
                errs = [
                    np.max(np.abs(a - refs[name]) / (np.abs(refs[name]) + atol))
                    for a in (got, nat)
                ]
                out[f"finite {dtype} {name}"] = (
                    "ok" if ok else f"MISMATCH rel error ours {errs[0]:.1e}, native {errs[1]:.1e}"
                )
            except Exception as exc:
                out[f"finite {dtype} {name}"] = f"ERROR {type(exc).__name__}: {exc}"
    return out


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def time_cell(lib: Lib, cands: dict[str, Callable], x: Any, rounds: int, target_s: float):
    """Median seconds per call of each candidate, synced and pipelined."""
    est = {}
    for name, f in cands.items():  # warm up: compile, allocate, page in
        for _ in range(2):
            lib.sync(f(x))
        t0 = time.perf_counter()
        lib.sync(f(x))
        est[name] = time.perf_counter() - t0
    n = max(1, min(50, int(target_s / max(min(est.values()), 1e-6))))
    synced = {k: [] for k in cands}
    piped = {k: [] for k in cands}
    names = list(cands)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            f = cands[name]
            for _ in range(n):
                t0 = time.perf_counter()
                lib.sync(f(x))
                synced[name].append(time.perf_counter() - t0)
            lib.sync(f(x))
            t0 = time.perf_counter()
            res = None
            for _ in range(n):
                res = f(x)
            lib.sync(res)
            piped[name].append((time.perf_counter() - t0) / n)
            del res
    med = lambda v: float(np.median(v))  # noqa: E731
    return {k: med(v) for k, v in synced.items()}, {k: med(v) for k, v in piped.items()}, n


def gpu_name(libs: list[Lib]) -> str:
    try:
        r = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    for lib in libs:
        if isinstance(lib, TorchLib) and lib.cuda:
            return lib.torch.cuda.get_device_name(0)
        if isinstance(lib, JaxLib):
            return lib.dev.device_kind
    return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f", {os.cpu_count()} logical cores"
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def git_commit() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout.strip() or "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--libs", default="torch,cupy,jax", help="comma-separated subset")
    p.add_argument("--fns", default=",".join(FNS))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per cell")
    p.add_argument("--target-ms", type=float, default=3.0, help="time per measurement")
    p.add_argument(
        "--shapes", default=None, help="e.g. 1000000x10,4096x32000 (default: the three)"
    )
    p.add_argument("--budget-s", type=float, default=110.0, help="fewer rounds past this")
    p.add_argument("--out", default=None, help="results .md path (.json beside it)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)

    # before any JAX import: no 75% preallocation beside torch and CuPy; CPU mode stays CPU
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    start = time.perf_counter()
    F = _import_softmax()
    try:
        import array_api_compat  # noqa: F401
    except ImportError:
        print(
            "softmax needs array-api-compat for PyTorch, CuPy and JAX arrays: "
            "pip install array-api-compat (or the wheel shipped with this run), then rerun"
        )
        return 2
    wanted = [s.strip() for s in args.libs.split(",") if s.strip()]
    libs, notes = available_libs(args.device, wanted)
    for note in notes:
        print(f"skipped {note}", flush=True)
    if not libs:
        print(
            f"no {args.device.upper()} device with PyTorch, CuPy or JAX here: nothing to "
            "benchmark (run on a machine with a CUDA GPU, or pass --device cpu for a smoke run)"
        )
        return 0
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    else:
        shapes = SHAPES if args.device == "cuda" else SMOKE_SHAPES
    fns = [f.strip() for f in args.fns.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    ours = {"softmax": F.softmax, "log_softmax": F.log_softmax, "logsumexp": F.logsumexp}

    checks: dict[str, dict[str, str]] = {}
    for lib in libs:
        try:
            checks[lib.name] = validate(lib, F)
        except Exception as exc:  # report it; the timings still mean something
            checks[lib.name] = {"validation": f"ERROR {type(exc).__name__}: {exc}"}
        bad = {k: v for k, v in checks[lib.name].items() if v != "ok"}
        print(
            f"{lib.name}: correctness on the device: "
            + ("all ok" if not bad else f"{len(bad)} problem(s): {bad}"),
            flush=True,
        )

    cells = []
    n_cells = sum(len([d for d in dtypes if d in lib.dtypes]) for lib in libs)
    n_cells *= len(fns) * len(shapes)
    done = 0
    for lib in libs:
        for shape in shapes:
            for dtype in dtypes:
                if dtype not in lib.dtypes:
                    continue
                try:
                    x = lib.random(shape, dtype, seed=0)
                    lib.sync(x)
                except Exception as exc:  # out of memory: go on with the next shape
                    notes.append(f"{lib.name} {shape[0]}x{shape[1]} {dtype}: {type(exc).__name__}")
                    done += len(fns)
                    continue
                for fn in fns:
                    elapsed = time.perf_counter() - start
                    left = max(1, n_cells - done)
                    per_cell = (args.budget_s - elapsed) / left
                    rounds = args.rounds if per_cell > 1.0 else max(3, args.rounds // 2)
                    cands = {"native": lib.native(fn), "ours": ours[fn], **lib.extras(fn)}
                    try:
                        synced, piped, n = time_cell(lib, cands, x, rounds, args.target_ms / 1e3)
                    except Exception as exc:  # out of memory, a missing kernel: go on
                        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                        print(f"{lib.name} {fn} {shape} {dtype}: skipped ({msg})", flush=True)
                        notes.append(f"{lib.name} {fn} {shape[0]}x{shape[1]} {dtype}: {msg}")
                        done += 1
                        continue
                    cell = {
                        "lib": lib.name,
                        "fn": fn,
                        "shape": list(shape),
                        "dtype": dtype,
                        "calls_per_measurement": n,
                        "rounds": rounds,
                        "synced_ms": {k: v * 1e3 for k, v in synced.items()},
                        "pipelined_ms": {k: v * 1e3 for k, v in piped.items()},
                        "ratio_synced": synced["ours"] / synced["native"],
                        "ratio_pipelined": piped["ours"] / piped["native"],
                    }
                    cells.append(cell)
                    done += 1
                    extra = " ".join(
                        f"{k}={v * 1e3:.3f}"
                        for k, v in synced.items()
                        if k not in ("ours", "native")
                    )
                    print(
                        f"{lib.name:5s} {fn:11s} {shape[0]}x{shape[1]:<6d} {dtype:8s} synced "
                        f"native={synced['native'] * 1e3:.3f} ours={synced['ours'] * 1e3:.3f} ms "
                        f"ours/native {cell['ratio_synced']:.2f}x | pipelined "
                        f"{piped['native'] * 1e3:.3f} / {piped['ours'] * 1e3:.3f} ms "
                        f"{cell['ratio_pipelined']:.2f}x {extra}",
                        flush=True,
                    )
                del x
                lib.free()
    total = time.perf_counter() - start
    print(f"total {total:.1f} s", flush=True)

    meta = {
        "command": "PYTHONPATH=src python benchmarks/bench_gpu_functions.py"
        + ("" if argv is None else " " + " ".join(argv)),
        "device": args.device,
        "gpu": gpu_name(libs) if args.device == "cuda" else "none (CPU smoke run)",
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "libraries": {lib.name: lib.version() for lib in libs},
        "skipped": notes,
        "softmax_package": str(Path(F.__file__).resolve().parent),
        "commit": git_commit(),
        "load": load(),
        "seconds": round(total, 1),
        "target": f"ours / native <= {TARGET} in every cell",
    }
    md = render(meta, checks, cells)
    print(md)
    if args.no_write:
        return 0
    out = args.out or (
        str(ROOT / "benchmarks" / "results" / "gpu_functions.md")
        if args.device == "cuda"
        else None
    )
    if out is None:
        print("CPU smoke run: nothing written (pass --out PATH to keep it)", file=sys.stderr)
        return 0
    write_atomic(Path(out), md)
    write_atomic(
        Path(out).with_suffix(".json"),
        json.dumps({"meta": meta, "checks": checks, "cells": cells}, indent=1) + "\n",
    )
    print(f"wrote {out} and {Path(out).with_suffix('.json')}", file=sys.stderr)
    return 0


def render(meta: dict, checks: dict, cells: list[dict]) -> str:
    lines = [
        "# GPU benchmark: softmax function family, ours vs each library's own call",
        "",
        f"Command: `{meta['command']}`; times in milliseconds per call, medians over "
        "interleaved rounds (lower is better); ratio = ours / native.",
        "",
        f"- GPU: {meta['gpu']}",
        f"- CPU: {meta['cpu']}",
        f"- Python {meta['python']}, NumPy {meta['numpy']}, "
        + ", ".join(meta["libraries"].values()),
        f"- Commit: {meta['commit']}; load: `{meta['load']}`; total {meta['seconds']} s",
    ]
    if meta["skipped"]:
        lines.append("- Skipped: " + "; ".join(meta["skipped"]))
    lines += [
        "- synced: each call followed by a device synchronisation; pipelined: calls back "
        "to back, one synchronisation at the end",
        "",
        "Correctness on the device (the numerics table, and finite input, against SciPy "
        "in float64 on the host):",
        "",
    ]
    for lib, res in checks.items():
        bad = {k: v for k, v in res.items() if v != "ok"}
        lines.append(
            f"- {lib}: "
            + (
                f"all {len(res)} checks ok"
                if not bad
                else "; ".join(f"{k}: {v}" for k, v in bad.items())
            )
        )
    diag = sorted({k for c in cells for k in c["synced_ms"] if k not in ("native", "ours")})
    lines += [
        "",
        "| library | function | shape | dtype | native (synced) | ours (synced) | ratio "
        "| native (pipelined) | ours (pipelined) | ratio | "
        + " | ".join(f"{d} (synced)" for d in diag)
        + " |",
        "|" + "---|" * (10 + len(diag)),
    ]
    for c in cells:
        s, q = c["synced_ms"], c["pipelined_ms"]
        flag = lambda r: f"**{r:.2f}x**" if r > TARGET else f"{r:.2f}x"  # noqa: E731
        lines.append(
            f"| {c['lib']} | {c['fn']} | {c['shape'][0]}x{c['shape'][1]} | {c['dtype']} "
            f"| {s['native']:.3f} | {s['ours']:.3f} | {flag(c['ratio_synced'])} "
            f"| {q['native']:.3f} | {q['ours']:.3f} | {flag(c['ratio_pipelined'])} | "
            + " | ".join(f"{s[d]:.3f}" if d in s else "" for d in diag)
            + " |"
        )
    if cells:
        lines += [
            "",
            "Worst ratio (ours / native) per library; cells above the target in bold:",
            "",
        ]
        for lib in dict.fromkeys(c["lib"] for c in cells):
            cs = [c for c in cells if c["lib"] == lib]
            ws = max(cs, key=lambda c: c["ratio_synced"])
            wp = max(cs, key=lambda c: c["ratio_pipelined"])
            over = sum(c["ratio_synced"] > TARGET or c["ratio_pipelined"] > TARGET for c in cs)
            lines.append(
                f"- {lib}: synced {ws['ratio_synced']:.2f}x ({ws['fn']} "
                f"{ws['shape'][0]}x{ws['shape'][1]} {ws['dtype']}), pipelined "
                f"{wp['ratio_pipelined']:.2f}x ({wp['fn']} {wp['shape'][0]}x{wp['shape'][1]} "
                f"{wp['dtype']}); {over} of {len(cs)} cells above {TARGET}x"
            )
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # never a half-written results file


if __name__ == "__main__":
    raise SystemExit(main())
