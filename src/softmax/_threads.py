"""BLAS thread limits without threadpoolctl's per-call library scan.

``threadpoolctl.threadpool_limits`` rescans the loaded libraries at every
call (13 ms measured: a twentieth of a whole MNIST fit, as much as the update
of a 500-row ``partial_fit`` chunk). One controller per process, created on
first use, serves every limit instead.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def controller() -> Any:
    """The process's ``threadpoolctl.ThreadpoolController``.

    SciPy's linear algebra is imported first so that its own OpenBLAS (a
    different library from NumPy's) is among the pools the controller sees.
    """
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS before the scan)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_limit(threads: int) -> Any:
    """Context manager holding every BLAS pool to ``threads`` threads."""
    return controller().limit(limits=int(threads), user_api="blas")
