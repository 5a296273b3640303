"""Shared test configuration.

- SciPy's array API support is switched on (``SCIPY_ARRAY_API=1``) for
  scikit-learn's array-API estimator checks. SciPy reads the variable when it
  is first imported, so it is set here, before any test module imports SciPy;
  ``tests/test_estimator_checks.py`` checks that it took effect.
- Figures are drawn with the non-interactive Agg backend (CI has no screen).
- Hypothesis runs without per-example deadlines: the machines are shared and
  timing noise must not fail a correctness test; example counts are set per
  test where the default would be slow.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10: the skip guard below is off
    tomllib = None

if "scipy" in sys.modules and os.environ.get("SCIPY_ARRAY_API") != "1":  # pragma: no cover
    raise RuntimeError(
        "SciPy was imported before tests/conftest.py could set SCIPY_ARRAY_API=1 (a pytest "
        "plugin?); run with SCIPY_ARRAY_API=1 in the environment"
    )
os.environ.setdefault("SCIPY_ARRAY_API", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    from hypothesis import HealthCheck, settings
except ModuleNotFoundError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    settings.register_profile(
        "default",
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("default")


# -- a skip for want of a test dependency is a failure ------------------------------------
#
# Every package of the ``test`` extra is one that ``pip install -e ".[test]"``
# installs, so a test skipped because one of them cannot be imported hides a
# broken environment (that is how 58 PyTorch and array-API checks once went
# unrun in CI). Such a skip fails the test, naming the package. Skips for what
# no install brings (a CUDA device, CuPy without one) stay skips.


@functools.cache
def declared_test_dependencies() -> dict[str, str]:
    """Import name -> requirement of every package in pyproject.toml's ``test`` extra.

    ``softmax[a,b]`` entries are expanded to the extras they name. The import
    name of each of these packages is its distribution name with ``-`` as ``_``.
    Empty where the standard library has no TOML reader (Python 3.10).
    """
    if tomllib is None:  # pragma: no cover
        return {}
    with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    out: dict[str, str] = {}
    todo = list(extras["test"])
    while todo:
        req = todo.pop()
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
        if name == "softmax":
            todo += [r for extra in re.findall(r"\[(.*)\]", req)[0].split(",")
                     for r in extras[extra.strip()]]  # fmt: skip
        else:
            out[name.lower().replace("-", "_")] = req
    return out


def _missing_dependency(longrepr: object) -> str | None:
    """The test dependency a skip report blames, if any ("could not import 'x'")."""
    text = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    found = re.search(r"could not import '([A-Za-z0-9_]+)", text)
    if found and found.group(1) in declared_test_dependencies():
        return found.group(1)
    return None


def _fail_skip_for_dependency(report) -> None:
    if report.skipped:
        name = _missing_dependency(report.longrepr)
        if name is not None:
            report.outcome = "failed"
            report.longrepr = (
                f"skipped for want of {name!r}, a test dependency "
                f"({declared_test_dependencies()[name]!r} in pyproject.toml's test extra): "
                'install it (pip install -e ".[test]") rather than skip'
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_for_dependency(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_for_dependency(outcome.get_result())
