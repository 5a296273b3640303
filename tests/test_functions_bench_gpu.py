"""The GPU benchmark of the function family (benchmarks/bench_gpu_functions.py) runs.

It is meant for a CUDA machine; here its ``--device cpu`` smoke mode runs the
same code on PyTorch and JAX on the CPU with tiny shapes, so that the script
cannot rot between GPU runs: its correctness check must pass on every library
at hand, and every timed cell must produce finite ratios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_gpu_functions as bench  # noqa: E402  (ours: a broken import must fail, not skip)


@pytest.fixture
def restored_jax_config(monkeypatch):
    """The script turns on float64 in JAX and sets environment variables: undo both."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except ImportError:
        yield
        return
    x64 = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", x64)


def test_smoke_run_on_the_cpu(tmp_path, restored_jax_config):
    pytest.importorskip("torch")
    out = tmp_path / "gpu_functions.md"
    rc = bench.main(
        [
            "--device",
            "cpu",
            "--libs",
            "torch,jax",
            "--shapes",
            "64x10",
            "--dtypes",
            "float32",
            "--rounds",
            "1",
            "--target-ms",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.with_suffix(".json").read_text())
    libs = {c["lib"] for c in data["cells"]}
    assert "torch" in libs
    for lib, checks in data["checks"].items():
        assert checks and all(v == "ok" for v in checks.values()), (lib, checks)
    for c in data["cells"]:
        assert np.isfinite(c["ratio_synced"]) and np.isfinite(c["ratio_pipelined"])
        assert c["synced_ms"]["native"] > 0 and c["synced_ms"]["ours"] > 0
    # 3 functions x 1 shape x 1 dtype per library
    assert len(data["cells"]) == 3 * len(libs)
    md = out.read_text()
    assert "| library | function |" in md and "Correctness on the device" in md


def test_without_a_gpu_it_says_so_and_exits_0(capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    rc = bench.main(["--libs", "torch", "--no-write"])
    assert rc == 0
    assert "nothing to benchmark" in capsys.readouterr().out
