"""Solvers for the softmax regression objective, one module each.

Every solver module defines ``solve(data, *, C, l1_ratio, coef0, tol,
max_iter, verbose, callback, random_state, **options) -> SolverResult`` and
the constants ``SUPPORTS_L1`` (can it handle ``l1_ratio > 0``) and ``NEEDS``
(what it asks of the data: ``"gradient"``, ``"hessp"``, ``"hessian"`` or
``"minibatches"``). Modules are imported only when their solver is used.

:func:`solve` is the entry point: it resolves ``"auto"``, checks that the
solver can do the penalty, sets the thread pools for the problem's size and
calls the module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from softmax.backends._base import RowData
from softmax.solvers._base import SolverResult

__all__ = ["SOLVERS", "SolverResult", "blas_threads_for", "resolve_solver", "solve"]

#: solver name -> module path (imported lazily)
SOLVERS: dict[str, str] = {
    "lbfgs": "softmax.solvers.lbfgs",
    "newton-cg": "softmax.solvers.newton_cg",
    "newton-cholesky": "softmax.solvers.newton_cholesky",
    "proximal": "softmax.solvers.proximal",
    "sgd": "softmax.solvers.sgd",
}

#: "auto" uses newton-cholesky for dense rows while a full Hessian is cheap:
#: at most this many coefficients and n_samples * n_coef^2 <= NEWTON_CHOLESKY_MAX_WORK.
#: Measured (docs/solvers.md): the preconditioned L-BFGS was faster from
#: 20,000 x 21 x 5 up (0.06 s vs 0.15 s), Newton about as fast below; Newton
#: is kept there for its robustness (near-separable data) and 1e-10 accuracy.
NEWTON_CHOLESKY_MAX_COEF = 200
NEWTON_CHOLESKY_MAX_WORK = 200_000_000

#: BLAS threads the solvers run with (None: leave the pools as they are).
#: One, deliberately: a pass works in row blocks that fit in cache, i.e. many
#: small GEMMs, and on this 2-core machine two OpenBLAS threads made such a
#: pass 7x *slower* (thread wake-ups per call, two pools contending), while
#: they sped the bare big products up only 1.7x. Measured in
#: benchmarks/results/loss.md; see docs/solvers.md.
BLAS_THREADS: int | None = 1


def _module(name: str) -> ModuleType:
    try:
        path = SOLVERS[name]
    except KeyError:
        raise ValueError(
            f"unknown solver {name!r}; choose one of 'auto', {', '.join(map(repr, SOLVERS))}"
        ) from None
    return importlib.import_module(path)


def _needs_met(module: ModuleType, data: RowData) -> bool:
    needs = getattr(module, "NEEDS", "gradient")
    method = {
        "hessp": "gradient_hessian_product",
        "hessian": "hessian",
        "minibatches": "iter_minibatches",
    }.get(needs)
    if method is None:
        return True
    # a backend that inherits the base method's NotImplementedError cannot do it
    return getattr(type(data), method) is not getattr(RowData, method)


def resolve_solver(name: str, data: RowData, l1_ratio: float) -> str:
    """The solver to use for ``name`` (resolving ``"auto"``).

    ``"auto"`` picks ``"proximal"`` when ``l1_ratio > 0``; otherwise
    ``"newton-cholesky"`` for dense rows whose full Hessian is cheap
    (``n_coef = n_classes * (n_features + fit_intercept) <=
    NEWTON_CHOLESKY_MAX_COEF`` and ``n_samples * n_coef**2 <=
    NEWTON_CHOLESKY_MAX_WORK``) and more rows than coefficients, else
    ``"lbfgs"``.

    Parameters
    ----------
    name : str
        ``"auto"`` or a key of :data:`SOLVERS`.
    data : RowData
        The rows (shape, sparsity and what the backend can compute matter).
    l1_ratio : float

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown name, or a solver that cannot do the penalty or that
        the backend cannot serve; the message names one that can.
    """
    if name == "auto":
        if l1_ratio > 0:
            return "proximal"
        n_coef = data.coef_shape[0] * data.coef_shape[1]
        dense = not getattr(data, "is_sparse", False) and not _is_sparse_data(data)
        nc = _module("newton-cholesky")
        if (
            dense
            and n_coef <= NEWTON_CHOLESKY_MAX_COEF
            and data.n_samples * n_coef**2 <= NEWTON_CHOLESKY_MAX_WORK
            and data.n_samples >= n_coef
            and _needs_met(nc, data)
        ):
            return "newton-cholesky"
        return "lbfgs"
    module = _module(name)
    if l1_ratio > 0 and not getattr(module, "SUPPORTS_L1", False):
        raise ValueError(
            f"solver {name!r} supports only the L2 penalty (l1_ratio=0), got "
            f"l1_ratio={l1_ratio}; use solver='proximal' (or 'auto') for L1 / elastic net"
        )
    if not _needs_met(module, data):
        raise ValueError(
            f"solver {name!r} needs {module.NEEDS!r} products, which the "
            f"{type(data).__name__} backend does not provide; use solver='lbfgs'"
        )
    return name


def _is_sparse_data(data: RowData) -> bool:
    X = getattr(data, "X", None)
    if X is None:
        return False
    import scipy.sparse as sp

    return sp.issparse(X)


def blas_threads_for(data: RowData) -> int | None:
    """BLAS threads to use for a fit on ``data`` (:data:`BLAS_THREADS`; None: unchanged)."""
    return BLAS_THREADS


def solve(
    data: RowData,
    *,
    solver: str = "auto",
    C: float = 1.0,
    l1_ratio: float = 0.0,
    coef0: np.ndarray | None = None,
    tol: float = 1e-7,
    max_iter: int = 1000,
    verbose: int = 0,
    callback: Callable[[int, float], None] | None = None,
    random_state: Any = None,
    **options: Any,
) -> SolverResult:
    """Minimise ``C * sum_i s_i CE_i + (1-l1_ratio)/2 ||W||^2 + l1_ratio ||W||_1``.

    Parameters
    ----------
    data : RowData
        The rows (in memory, streamed, or on Dask).
    solver : str, default "auto"
        ``"auto"``, ``"lbfgs"``, ``"newton-cg"``, ``"newton-cholesky"``,
        ``"proximal"`` or ``"sgd"``.
    C : float
        Inverse regularisation strength (> 0).
    l1_ratio : float in [0, 1]
        Share of the L1 norm in the penalty.
    coef0 : ndarray of shape (n_classes, n_features + fit_intercept), optional
        Starting point (warm start); zeros when None.
    tol : float, default 1e-7
        Relative tolerance: solvers stop when the estimated relative objective
        gap to the optimum falls below it.
    max_iter : int, default 1000
    verbose : int, default 0
    callback : callable, optional
        ``callback(iteration, objective)`` once per iteration.
    random_state : int, Generator or None
        Used by stochastic solvers only.
    **options
        Solver-specific options (e.g. ``history_size`` for L-BFGS).

    Returns
    -------
    SolverResult
        ``coef`` (n_classes, n_features + fit_intercept), ``n_iter``,
        ``converged``, ``objective``, ``n_passes``, ``message``, ``history``.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax.backends.memory import InMemoryData
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> data = InMemoryData(X, np.array([0, 0, 1, 1]), None, np.array([0, 1]),
    ...                     fit_intercept=True)
    >>> res = solve(data, solver="lbfgs", C=1.0)
    >>> res.converged, res.coef.shape
    (True, (2, 2))
    """
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if not (isinstance(tol, (int, float, np.floating)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
    name = resolve_solver(solver, data, l1_ratio)
    module = _module(name)
    kwargs = dict(
        C=C,
        l1_ratio=l1_ratio,
        coef0=coef0,
        tol=float(tol),
        max_iter=int(max_iter),
        verbose=verbose,
        callback=callback,
        random_state=random_state,
        **options,
    )
    threads = blas_threads_for(data)
    if threads is None:
        return module.solve(data, **kwargs)
    from softmax._threads import blas_limit

    with blas_limit(threads):
        return module.solve(data, **kwargs)
