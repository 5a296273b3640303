"""Where the rows of a fit live: memory, a stream of file blocks, or Dask.

The estimator hands any ``X`` to :func:`external_backend`; NumPy arrays,
SciPy sparse matrices and data frames go through the estimator's own
validation into :class:`softmax.backends.memory.InMemoryData`, while a Dask
collection or a chunked file source is handed to the module that owns it.
Those modules are imported only when such an input arrives, so Dask and
PyArrow stay optional.

Each external backend module provides::

    build_row_data(X, y, *, sample_weight=None, classes=None, class_weight=None,
                   fit_intercept=True, dtype=None) -> RowData

which validates its input, discovers the classes (or takes them), folds in the
weights and returns a :class:`~softmax.backends._base.RowData` whose
``classes`` attribute is set.
"""

from __future__ import annotations

import sys

from softmax.backends._base import RowData

__all__ = ["RowData", "external_backend", "is_dask_collection"]


def is_dask_collection(X: object) -> bool:
    """True for a Dask array, data frame or series (without importing Dask)."""
    if "dask" not in sys.modules:
        return False  # nothing can be a Dask collection if Dask was never imported
    from dask import is_dask_collection as _is_dask

    return bool(_is_dask(X))


def external_backend(X: object) -> str | None:
    """Name of the backend module that owns ``X``, or None for in-memory data."""
    if is_dask_collection(X):
        return "softmax.backends.dask"
    if getattr(X, "__softmax_row_source__", False):
        return "softmax.backends.stream"
    return None
