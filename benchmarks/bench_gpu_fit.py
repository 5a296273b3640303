"""Our fit on device tensors vs PyTorch's full-batch L-BFGS on the same device.

Both minimise ``F(W, b) = C * sum_i CE_i + ||W||^2 / 2`` (float32 rows) to a
relative gap of ``--gap`` against a reference optimum (our CPU fit at
tol=1e-10); our CPU fit is timed too. Prints times and ratios. Without a GPU
the default ``--device cuda`` prints a skip line and exits 0;
``--device cpu`` with small sizes is the smoke mode CI runs.

    python benchmarks/bench_gpu_fit.py                  # 200,000 x 784 x 10 on CUDA
    python benchmarks/bench_gpu_fit.py --memory         # 1,000,000 x 1,024 x 1,000: peak memory
    python benchmarks/bench_gpu_fit.py --device cpu --n 2000 --p 20 --k 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _datasets


def objective(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, C: float) -> float:
    """``C * sum_i CE_i + ||W||^2 / 2`` in float64."""
    Z = X.astype(np.float64) @ W.T + b
    Z -= Z.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return float(-C * logp[np.arange(len(y)), y].sum() + 0.5 * np.sum(W**2))


def torch_lbfgs(
    X: Any, y: Any, C: float, target: float, max_iter: int = 5000
) -> tuple[float, int]:
    """PyTorch full-batch L-BFGS (strong Wolfe) until F <= target.

    Returns (seconds, iterations, final F); float32 parameters may stall above
    the target, which the caller reports as the gap reached.
    """
    import torch

    k = int(y.max()) + 1
    W = torch.zeros((k, X.shape[1]), dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros(k, dtype=X.dtype, device=X.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b], lr=1, max_iter=1, history_size=10, line_search_fn="strong_wolfe",
        tolerance_grad=0.0, tolerance_change=0.0,
    )  # fmt: skip

    def closure() -> Any:
        opt.zero_grad()
        f = C * torch.nn.functional.cross_entropy(X @ W.T + b, y, reduction="sum")
        f = f + 0.5 * (W * W).sum()
        f.backward()
        return f

    _sync(X)
    t0 = time.perf_counter()
    it = 0
    while it < max_iter:
        it += 1
        opt.step(closure)
        with torch.no_grad():  # F at the new point (step() returns F before it)
            Z = (X @ W.T + b).double()
            f = C * torch.nn.functional.cross_entropy(Z, y, reduction="sum")
            f = float(f + 0.5 * (W.double() ** 2).sum())
        if f <= target:
            break
    _sync(X)
    return time.perf_counter() - t0, it, f


def _sync(X: Any) -> None:
    import torch

    if X.device.type == "cuda":
        torch.cuda.synchronize()


def run(
    n: int, p: int, k: int, device: str, gap: float, C: float = 1.0, max_iter: int = 5000
) -> dict[str, float]:
    """Time the three fits; return times, ratios and the gaps reached."""
    import sklearn
    import torch

    from softmax import SoftmaxRegression

    X, y = _datasets.make_multinomial(n, p, k, seed=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    ref = SoftmaxRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
    f_star = objective(ref.coef_.astype(np.float64), ref.intercept_, X, y, C)
    target = f_star * (1 + gap)

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
    t_torch, it_torch, f_torch = torch_lbfgs(Xd, yd, C, target, max_iter=max_iter)
    out = {
        "ours_device_s": t_ours,
        "torch_lbfgs_s": t_torch,
        "ours_cpu_s": t_cpu,
        "torch_over_ours": t_torch / t_ours,
        "cpu_over_device": t_cpu / t_ours,
        "ours_gap": (f_ours - f_star) / abs(f_star),
        "cpu_gap": (objective(cpu.coef_.astype(np.float64), cpu.intercept_, X, y, C) - f_star)
        / abs(f_star),
        "torch_gap": (f_torch - f_star) / abs(f_star),
        "torch_iterations": it_torch,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--p", type=int, default=784)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1e-6)
    parser.add_argument("--memory", action="store_true", help="1,000,000 x 1,024 x 1,000")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device (use --device cpu for the smoke mode)")
        return 0
    if args.memory:
        args.n, args.p, args.k = 1_000_000, 1_024, 1_000
    res = run(args.n, args.p, args.k, args.device, args.gap)
    print(f"{args.n} x {args.p} x {args.k} float32 on {args.device}, gap {args.gap:g}")
    for key, val in res.items():
        print(f"  {key:>16}: {val:.4g}")
    if args.device.startswith("cuda"):
        print(f"  peak device memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
