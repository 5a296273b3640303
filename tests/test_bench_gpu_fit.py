"""Smoke mode of benchmarks/bench_gpu_fit.py (CPU tensors, small sizes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_gpu_fit


def test_cpu_smoke_reaches_the_gap():
    res = bench_gpu_fit.run(600, 8, 3, "cpu", 1e-6, max_iter=200)
    assert 0 <= res["ours_gap"] <= 1e-6 and res["cpu_gap"] <= 1e-6
    assert res["torch_gap"] > -1e-6  # no peer goes below the reference optimum
    assert res["torch_over_ours"] > 0


def test_skips_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert bench_gpu_fit.main(["--device", "cuda"]) == 0
    assert "skipped" in capsys.readouterr().out
