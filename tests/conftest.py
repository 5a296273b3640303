"""Shared test configuration.

- Figures are drawn with the non-interactive Agg backend (CI has no screen).
- Hypothesis runs without per-example deadlines: the machines are shared and
  timing noise must not fail a correctness test; example counts are set per
  test where the default would be slow.
"""

from __future__ import annotations

import os

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
