"""The test environment is the one the README and pyproject.toml promise.

``pip install -e ".[test]"`` installs every package of the ``test`` extra, so
the suite runs every test that needs one of them: a missing package is a
failure here (and tests/conftest.py turns a skip for want of one into a
failure where it happens). Only what no install brings (a CUDA device) may
skip.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import declared_test_dependencies
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_test_dependencies_are_read_from_pyproject():
    deps = declared_test_dependencies()
    # What the suite's comparisons need, by the names the tests import.
    for name in ("torch", "jax", "array_api_strict", "statsmodels", "onnxruntime", "dask",
                 "pyarrow", "pandas", "safetensors", "numba", "hypothesis", "mpmath"):  # fmt: skip
        assert name in deps, name
    assert deps["torch"] == "torch==2.13.0"  # the pin README.md names


@pytest.mark.parametrize("name", sorted(declared_test_dependencies()))
def test_every_test_dependency_is_installed_at_a_declared_version(name):
    req = Requirement(declared_test_dependencies()[name])
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{req} is in the test extra but not installed: pip install -e '.[test]'")
    assert req.specifier.contains(version, prereleases=True), (str(req), version)
    module = importlib.import_module(name)
    for extra in sorted(req.extras):  # dask[array,dataframe]: what the extras bring imports
        if name == "dask":
            importlib.import_module(f"dask.{extra}")
    assert module is not None


def test_scipy_reads_the_array_api_switch():
    """conftest.py sets SCIPY_ARRAY_API=1 before SciPy is imported; SciPy saw it."""
    from scipy._lib._array_api import SCIPY_ARRAY_API

    assert os.environ["SCIPY_ARRAY_API"] == "1"
    assert SCIPY_ARRAY_API


_PROBE = """
import pytest

pytest.importorskip("not_installed_test_dep")


def test_never_runs():
    pass
"""

_PROBE_IN_TEST = """
import pytest


def test_needs_a_declared_package():
    pytest.importorskip("not_installed_test_dep.sub")


def test_needs_an_undeclared_package():
    pytest.importorskip("not_a_test_dep_at_all")


def test_needs_a_device():
    pytest.skip("no CUDA device")
"""


def test_a_skip_for_want_of_a_test_dependency_fails_the_run(tmp_path):
    """In a copy of this conftest.py beside a pyproject.toml whose test extra
    names a package that is not installed, pytest (run for real) fails the
    tests that skip for want of it, at import time and inside a test, and
    leaves other skips alone."""
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "softmax"
            [project.optional-dependencies]
            cli = ["not-installed-test-dep>=1"]
            test = ["softmax[cli]", "pytest>=7"]
            """
        )
    )
    (tmp_path / "tests" / "test_probe_module.py").write_text(_PROBE)
    (tmp_path / "tests" / "test_probe.py").write_text(_PROBE_IN_TEST)

    def pytest_run(name):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", f"tests/{name}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    want = "skipped for want of 'not_installed_test_dep', a test dependency"
    # Inside tests: that test fails, the others skip as before.
    proc = pytest_run("test_probe.py")
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "FAILED tests/test_probe.py::test_needs_a_declared_package" in out, out
    assert "SKIPPED [1] tests/test_probe.py" in out and "not_a_test_dep_at_all" in out, out
    assert "no CUDA device" in out, out
    assert "1 failed, 2 skipped" in out and want in out, out
    # At import time: a collection error, which stops the run (pytest's rule).
    proc = pytest_run("test_probe_module.py")
    out = proc.stdout
    assert proc.returncode == 2, out
    assert "ERROR tests/test_probe_module.py" in out and want in out, out
    assert "1 error in" in out and "SKIPPED" not in out, out
