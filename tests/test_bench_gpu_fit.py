"""Smoke mode of benchmarks/bench_gpu_fit.py (CPU tensors, small sizes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_gpu_fit


def test_cpu_smoke_reaches_the_gap():
    """Ours, our CPU fit and the PyTorch peer all reach 1e-6 (the peer from one step())."""
    res = bench_gpu_fit.run(600, 8, 3, "cpu", 1e-6, max_iter=500)
    assert 0 <= res["ours_gap"] <= 1e-6 and 0 <= res["cpu_gap"] <= 1e-6
    assert res["torch_reached"] and 0 <= res["torch_gap"] <= 1e-6
    assert res["torch_over_ours"] == pytest.approx(res["torch_lbfgs_s"] / res["ours_device_s"])
    # the host-iteration road of the same fit takes the same steps
    assert res["host_loop_iterations"] == res["ours_iterations"]
    meta = dict.fromkeys(["command", "shape", "gpu", "cpu", "python", "numpy", "torch"], "x")
    meta.update(sklearn="x", commit="x", load="x", torch_history=100, gap=1e-6)
    meta["preconditioner"] = "auto"
    md = bench_gpu_fit.render(meta, res)  # the CUDA run's results file
    assert f"| {res['ours_gap']:.2e} |" in md and f"{res['torch_over_ours']:.2f}x" in md
    assert "stalled" not in md


def test_torch_peer_matches_scipy_optimum():
    """The peer's objective is ours: run to its end in float64 it reaches SciPy's minimum."""
    import numpy as np
    import scipy.optimize
    import torch

    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4)) * np.array([0.2, 1.0, 3.0, 1.0])
    y = rng.integers(0, 3, 300)
    C = 0.5

    def f(v):
        W, b = v[:12].reshape(3, 4), v[12:]
        return bench_gpu_fit.objective(W, b, X, y, C)

    ref = scipy.optimize.minimize(f, np.zeros(15), method="BFGS", options={"gtol": 1e-9})
    _, _, f_torch, reached = bench_gpu_fit.torch_lbfgs(
        torch.asarray(X), torch.asarray(y), C, -np.inf, max_iter=500
    )
    assert not reached and f_torch == pytest.approx(ref.fun, rel=1e-9)


def test_cpu_smoke_writes_no_results(tmp_path, capsys):
    out = tmp_path / "gpu_fit.md"
    argv = ["--device", "cpu", "--n", "400", "--p", "6", "--k", "3", "--out", str(out)]
    assert bench_gpu_fit.main(argv) == 0
    assert "torch_over_ours" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_skips_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert bench_gpu_fit.main(["--device", "cuda"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_memory_mode_runs_its_iterations():
    res = bench_gpu_fit.run_memory(2000, 16, 40, "cpu", max_iter=3)
    assert res["ours_iterations"] == 3
    assert res["seconds_per_iteration"] == pytest.approx(res["ours_device_s"] / 3)
    meta = dict.fromkeys(["command", "shape", "gpu", "cpu", "python", "numpy", "torch"], "x")
    meta.update(sklearn="x", commit="x", load="x")
    md = bench_gpu_fit.render_memory(meta, {**res, "peak_device_mib": 12.0})
    assert "3 L-BFGS iterations" in md and "12 MiB" in md


def test_diagonal_flag_keeps_the_device_fit_off_the_covariance(monkeypatch, capsys):
    from softmax.backends.array_api import ArrayAPIData

    # restored after the test: the flag sets a class attribute for the run
    monkeypatch.setattr(ArrayAPIData, "covariance_max_features", 2048)
    argv = ["--device", "cpu", "--n", "400", "--p", "6", "--k", "3", "--diagonal"]
    assert bench_gpu_fit.main(argv) == 0
    assert ArrayAPIData.covariance_max_features == 0
    assert "ours_gap" in capsys.readouterr().out
