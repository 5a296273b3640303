"""softmax: softmax regression and the softmax function family.

The public API is re-exported here and loaded on first use, so that
``import softmax`` (and ``softmax --help``) stay fast: scikit-learn, SciPy and
the optional extras are imported only by the parts that need them.

Layers, from pure functions up (see ``docs/architecture.md``):

- :mod:`softmax.functions`: ``softmax``, ``log_softmax``, ``logsumexp``, the
  Jacobian and its products, ``cross_entropy``.
- :mod:`softmax.losses` and :mod:`softmax.linear_loss`: the multinomial loss in
  logit space and lifted to coefficients.
- :mod:`softmax.penalties` and :mod:`softmax.solvers`.
- :class:`softmax.SoftmaxRegression`: the scikit-learn estimator;
  :func:`softmax.inference` (standard errors, tests, ``summary()``),
  :func:`softmax.lr_test`, :func:`softmax.check_separation`.
- :mod:`softmax.backends`: where the rows live (memory, file streams, Dask).
- :mod:`softmax.bandits`, :mod:`softmax.preprocessing`,
  :mod:`softmax.datasets`, :mod:`softmax.io`, :mod:`softmax.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "softmax": "softmax.functions",
    "log_softmax": "softmax.functions",
    "logsumexp": "softmax.functions",
    "softmax_jacobian": "softmax.functions",
    "softmax_jvp": "softmax.functions",
    "softmax_vjp": "softmax.functions",
    "cross_entropy": "softmax.functions",
    "SoftmaxRegression": "softmax.regression",
    "SoftmaxScaler": "softmax.preprocessing",
    "SoftmaxRegressionCV": "softmax.model_selection",
    "regularization_path": "softmax.model_selection",
    "min_c": "softmax.model_selection",
    "TemperatureScaling": "softmax.calibration",
    "load_model": "softmax.io",
    "FileSource": "softmax.streaming",
    "inference": "softmax._inference",
    "InferenceResults": "softmax._inference",
    "MarginalEffects": "softmax._inference",
    "ChiSquareTest": "softmax._inference",
    "lr_test": "softmax._inference",
    "check_separation": "softmax._inference",
    "SeparationResult": "softmax._separation",
    "SeparationWarning": "softmax._separation",
    "DeviceCopyWarning": "softmax._dispatch",
}

__all__ = [
    "ChiSquareTest",
    "DeviceCopyWarning",
    "FileSource",
    "InferenceResults",
    "MarginalEffects",
    "SeparationResult",
    "SeparationWarning",
    "SoftmaxRegression",
    "SoftmaxRegressionCV",
    "SoftmaxScaler",
    "TemperatureScaling",
    "__version__",
    "check_separation",
    "cross_entropy",
    "inference",
    "load_model",
    "log_softmax",
    "logsumexp",
    "lr_test",
    "min_c",
    "regularization_path",
    "softmax",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from softmax._dispatch import DeviceCopyWarning
    from softmax._inference import (
        ChiSquareTest,
        InferenceResults,
        MarginalEffects,
        check_separation,
        inference,
        lr_test,
    )
    from softmax._separation import SeparationResult, SeparationWarning
    from softmax.calibration import TemperatureScaling
    from softmax.functions import (
        cross_entropy,
        log_softmax,
        logsumexp,
        softmax,
        softmax_jacobian,
        softmax_jvp,
        softmax_vjp,
    )
    from softmax.io import load_model
    from softmax.model_selection import SoftmaxRegressionCV, min_c, regularization_path
    from softmax.preprocessing import SoftmaxScaler
    from softmax.regression import SoftmaxRegression
    from softmax.streaming import FileSource


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'softmax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
