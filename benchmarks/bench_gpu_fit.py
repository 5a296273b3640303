"""Our fit on device tensors vs PyTorch's full-batch L-BFGS on the same device.

Both minimise ``F(W, b) = C * sum_i CE_i + ||W||^2 / 2`` (float32 rows) to a
relative gap of ``--gap`` against a reference optimum (our CPU fit on the
rows in float64 at tol=1e-12); our CPU fit on the float32 rows is timed too,
and our device fit again with its L-BFGS iteration on the host (the road
before the iteration moved to the device). Prints times, gaps and the ratios
``torch_over_ours``, ``cpu_over_device`` and ``host_loop_over_device_loop``. Without a GPU the default ``--device cuda`` prints a
skip line and exits 0. ``--device cpu`` with small sizes is the smoke mode
the tests run: it prints only; results are written
(``benchmarks/results/gpu_fit.md`` and ``.json``, with the GPU, versions
and load) only from a CUDA run.

The PyTorch peer is ``torch.optim.LBFGS`` as its documentation intends a
full-batch fit: one ``step()`` call running many iterations, the strong
Wolfe line search, ``--torch-history`` pairs, and tolerances so small that
they never stop it; it stops at the first evaluation that reaches the
target (an oracle stopping rule ours does not get: our fit stops on its
own gap estimate).

    python benchmarks/bench_gpu_fit.py                  # 200,000 x 784 x 10 on CUDA
    python benchmarks/bench_gpu_fit.py --memory         # 1,000,000 x 1,024 x 1,000, 10 iterations
    python benchmarks/bench_gpu_fit.py --device cpu --n 2000 --p 20 --k 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _datasets
from bench_gpu_functions import ROOT, cpu_name, git_commit, load, write_atomic


def objective(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, C: float) -> float:
    """``C * sum_i CE_i + ||W||^2 / 2`` in float64."""
    Z = X.astype(np.float64) @ W.T + b
    Z -= Z.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return float(-C * logp[np.arange(len(y)), y].sum() + 0.5 * np.sum(W**2))


class _Reached(Exception):
    """Raised by the closure at the first evaluation with ``F <= target``."""


def _lbfgs(params: list[Any], max_iter: int, history: int) -> Any:
    import torch

    return torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iter,
        max_eval=25 * max_iter,  # the line search may take several evaluations
        tolerance_grad=1e-30,
        tolerance_change=1e-30,
        history_size=history,
        line_search_fn="strong_wolfe",
    )


def torch_lbfgs(
    X: Any, y: Any, C: float, target: float, max_iter: int = 5000, history: int = 100
) -> tuple[float, int, float, bool]:
    """PyTorch full-batch L-BFGS (strong Wolfe) until ``F <= target``.

    One ``step()`` call of at most ``max_iter`` iterations. The closure
    stops it (an exception) at the first evaluation whose float32 ``F`` is
    at most ``target`` (the caller leaves a margin for float32 rounding),
    leaving the parameters at that point; reading ``F``
    costs no extra synchronisation, since the optimizer reads every loss
    on the host anyway. (Calling ``step()`` once per iteration with
    ``max_iter=1`` instead leaves the line search no evaluations, since
    ``max_eval`` defaults to ``max_iter * 5 // 4``: that stalls it.)

    With float32 parameters it can stall above the target on badly scaled
    features (its loss stops changing; measured on the CPU smoke sizes:
    history 10 stalls at gaps of 7e-6 to 2e-5, history 100, PyTorch's
    default, reaches 1e-7 on 600 x 8 x 3 and stalls near 3e-6 on
    5000 x 50 x 5); the caller reports the gap it reached.

    Returns
    -------
    seconds, iterations, F reached (float64), whether the target was reached
    """
    import torch

    k = int(y.max()) + 1
    W = torch.zeros((k, X.shape[1]), dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros(k, dtype=X.dtype, device=X.device, requires_grad=True)
    opt = _lbfgs([W, b], max_iter, history)
    reached = False

    def closure() -> Any:
        opt.zero_grad()
        f = C * torch.nn.functional.cross_entropy(X @ W.T + b, y, reduction="sum")
        f = f + 0.5 * (W * W).sum()
        f.backward()
        if float(f.detach()) <= target:
            nonlocal reached
            reached = True
            raise _Reached
        return f

    _sync(X)
    t0 = time.perf_counter()
    with contextlib.suppress(_Reached):
        opt.step(closure)
    _sync(X)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        Z = (X @ W.T + b).double()
        f = C * torch.nn.functional.cross_entropy(Z, y, reduction="sum")
        f = float(f + 0.5 * (W.double() ** 2).sum())
    return seconds, int(opt.state[W]["n_iter"]), f, reached


def _sync(X: Any) -> None:
    import torch

    if X.device.type == "cuda":
        torch.cuda.synchronize()


def run(
    n: int,
    p: int,
    k: int,
    device: str,
    gap: float,
    C: float = 1.0,
    max_iter: int = 5000,
    history: int = 100,
) -> dict[str, float]:
    """Time the three fits; return times, ratios and the gaps reached."""
    import sklearn
    import torch

    from softmax import SoftmaxRegression

    X, y = _datasets.make_multinomial(n, p, k, seed=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    ref = SoftmaxRegression(C=C, tol=1e-12, max_iter=10_000).fit(X.astype(np.float64), y)
    f_star = objective(ref.coef_, ref.intercept_, X, y, C)

    t0 = time.perf_counter()
    cpu = SoftmaxRegression(C=C, tol=gap).fit(X, y)
    t_cpu = time.perf_counter() - t0

    Xd = torch.asarray(X, device=device)
    yd = torch.asarray(y, device=device)
    _sync(Xd)
    with sklearn.config_context(array_api_dispatch=True):
        t0 = time.perf_counter()
        ours = SoftmaxRegression(C=C, tol=gap).fit(Xd, yd)
        _sync(Xd)
        t_ours = time.perf_counter() - t0
    W = ours.coef_.cpu().numpy().astype(np.float64)
    f_ours = objective(W, ours.intercept_.cpu().numpy().astype(np.float64), X, y, C)
    # the same fit with the L-BFGS iteration on the host (passes on the device,
    # coef down and loss + gradient up per evaluation): the road before the
    # iteration moved to the device, in the same run
    from softmax.solvers import _device_lbfgs

    applies = _device_lbfgs.applies
    _device_lbfgs.applies = lambda problem: False
    try:
        with sklearn.config_context(array_api_dispatch=True):
            t0 = time.perf_counter()
            host_loop = SoftmaxRegression(C=C, tol=gap).fit(Xd, yd)
            _sync(Xd)
            t_host_loop = time.perf_counter() - t0
    finally:
        _device_lbfgs.applies = applies
    # float32 F of the peer is read against the target less a tenth of the
    # gap: its rounding (~1e-7 relative) must not count as reaching it
    t_torch, it_torch, f_torch, reached = torch_lbfgs(
        Xd, yd, C, f_star * (1 + 0.9 * gap), max_iter, history
    )
    f_cpu = objective(cpu.coef_.astype(np.float64), cpu.intercept_, X, y, C)
    return {
        "ours_device_s": t_ours,
        "torch_lbfgs_s": t_torch,
        "ours_cpu_s": t_cpu,
        "ours_host_loop_s": t_host_loop,
        "host_loop_over_device_loop": t_host_loop / t_ours,
        "host_loop_iterations": int(host_loop.n_iter_),
        "torch_over_ours": t_torch / t_ours,
        "cpu_over_device": t_cpu / t_ours,
        "ours_gap": (f_ours - f_star) / abs(f_star),
        "torch_gap": (f_torch - f_star) / abs(f_star),
        "cpu_gap": (f_cpu - f_star) / abs(f_star),
        "ours_iterations": int(ours.n_iter_),
        "torch_iterations": it_torch,
        "torch_reached": reached,
        "cpu_iterations": int(cpu.n_iter_),
    }


def run_memory(n: int, p: int, k: int, device: str, max_iter: int = 10) -> dict[str, float]:
    """Our device fit on ``n x p x k`` rows for ``max_iter`` iterations: time and memory.

    At 1,000,000 x 1,024 x 1,000 neither a reference optimum nor a CPU fit
    fits a 10-minute budget, so this mode shows that the fit runs without
    running out of device memory, and what an iteration costs.
    """
    import warnings

    import sklearn
    import torch
    from sklearn.exceptions import ConvergenceWarning

    from softmax import SoftmaxRegression

    X, y = _datasets.make_multinomial(n, p, k, seed=0)
    Xd = torch.asarray(np.ascontiguousarray(X, dtype=np.float32), device=device)
    yd = torch.asarray(y, device=device)
    del X
    _sync(Xd)
    with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        ours = SoftmaxRegression(max_iter=max_iter).fit(Xd, yd)
        _sync(Xd)
        t_ours = time.perf_counter() - t0
    return {
        "ours_device_s": t_ours,
        "ours_iterations": int(ours.n_iter_),
        "seconds_per_iteration": t_ours / max(1, int(ours.n_iter_)),
    }


def render(meta: dict[str, Any], res: dict[str, float]) -> str:
    """The results file: machine, versions, load, then one table."""
    lines = [
        "# GPU benchmark: SoftmaxRegression on CUDA tensors vs PyTorch L-BFGS and our CPU fit",
        "",
        f"Command: `{meta['command']}`; {meta['shape']} float32, C = 1, target relative "
        f"gap {meta['gap']:g} against our float64 fit at tol=1e-12.",
        "",
        f"- GPU: {meta['gpu']}",
        f"- CPU: {meta['cpu']}",
        f"- Python {meta['python']}, NumPy {meta['numpy']}, torch {meta['torch']}, "
        f"scikit-learn {meta['sklearn']}",
        f"- Commit: {meta['commit']}; load: `{meta['load']}`",
        f"- PyTorch peer: torch.optim.LBFGS, one step(), strong Wolfe, history "
        f"{meta['torch_history']}",
        f"- Our device fit's preconditioner: {meta['preconditioner']}",
        "",
        "| fit | seconds | iterations | gap reached |",
        "|---|---|---|---|",
        f"| ours, CUDA tensors | {res['ours_device_s']:.4g} | {res['ours_iterations']} "
        f"| {res['ours_gap']:.2e} |",
        f"| torch.optim.LBFGS, same GPU | {res['torch_lbfgs_s']:.4g} | "
        f"{res['torch_iterations']} | {res['torch_gap']:.2e}"
        + ("" if res["torch_reached"] else " (stalled: float32 loss stopped decreasing)")
        + " |",
        f"| ours, CUDA tensors, L-BFGS iteration on the host | {res['ours_host_loop_s']:.4g} "
        f"| {res['host_loop_iterations']} | |",
        f"| ours, CPU (NumPy) | {res['ours_cpu_s']:.4g} | {res['cpu_iterations']} "
        f"| {res['cpu_gap']:.2e} |",
        "",
        f"torch / ours on the GPU: {res['torch_over_ours']:.2f}x; our CPU / our GPU: "
        f"{res['cpu_over_device']:.1f}x; host iteration / device iteration: "
        f"{res['host_loop_over_device_loop']:.2f}x.",
    ]
    if "peak_device_mib" in res:
        lines.append(f"Peak device memory: {res['peak_device_mib']:.0f} MiB.")
    return "\n".join(lines) + "\n"


def render_memory(meta: dict[str, Any], res: dict[str, float]) -> str:
    """The results file of ``--memory``."""
    return (
        "# GPU benchmark: SoftmaxRegression on CUDA tensors, memory at "
        f"{meta['shape']}\n\nCommand: `{meta['command']}`; float32, C = 1.\n\n"
        f"- GPU: {meta['gpu']}\n- CPU: {meta['cpu']}\n"
        f"- Python {meta['python']}, NumPy {meta['numpy']}, torch {meta['torch']}, "
        f"scikit-learn {meta['sklearn']}\n"
        f"- Commit: {meta['commit']}; load: `{meta['load']}`\n\n"
        f"{res['ours_iterations']} L-BFGS iterations in {res['ours_device_s']:.3g} s "
        f"({res['seconds_per_iteration']:.3g} s each); peak device memory "
        f"{res['peak_device_mib']:.0f} MiB.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--p", type=int, default=784)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1e-6)
    parser.add_argument("--torch-history", type=int, default=100, help="PyTorch's default")
    parser.add_argument("--memory", action="store_true", help="1,000,000 x 1,024 x 1,000")
    parser.add_argument("--out", default=None, help="results .md path (.json beside it)")
    parser.add_argument(
        "--diagonal",
        action="store_true",
        help="device fit with the diagonal preconditioner only (no feature covariance)",
    )
    args = parser.parse_args(argv)
    if args.diagonal:
        from softmax.backends.array_api import ArrayAPIData

        ArrayAPIData.covariance_max_features = 0
    import sklearn
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device (use --device cpu for the smoke mode)")
        return 0
    if args.memory:
        args.n, args.p, args.k = 1_000_000, 1_024, 1_000
        res = run_memory(args.n, args.p, args.k, args.device)
    else:
        res = run(args.n, args.p, args.k, args.device, args.gap, history=args.torch_history)
    cuda = args.device.startswith("cuda")
    if cuda:
        res["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(f"{args.n} x {args.p} x {args.k} float32 on {args.device}, gap {args.gap:g}")
    for key, val in res.items():
        print(f"  {key:>16}: {val:.4g}")
    if not cuda:
        return 0  # smoke mode: CPU timings of a GPU benchmark are not results
    meta = {
        "command": "PYTHONPATH=src python benchmarks/bench_gpu_fit.py"
        + ("" if argv is None else " " + " ".join(argv)),
        "shape": f"{args.n:,} x {args.p:,} x {args.k:,}",
        "gap": args.gap,
        "gpu": torch.cuda.get_device_name(0),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "commit": git_commit(),
        "load": load(),
        "torch_history": args.torch_history,
        "preconditioner": "diagonal (--diagonal)" if args.diagonal else "auto",
    }
    name = "gpu_fit_memory" if args.memory else "gpu_fit_diagonal" if args.diagonal else "gpu_fit"
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{name}.md")
    write_atomic(out, render_memory(meta, res) if args.memory else render(meta, res))
    write_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, "results": res}, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
