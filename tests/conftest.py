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

import os
import sys

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
