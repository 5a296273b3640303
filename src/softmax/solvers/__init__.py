"""Solvers for the softmax regression objective, behind one interface.

A solver is an object with ``solve(problem, coef0, *, tol, max_iter,
callback) -> SolverResult`` (:class:`~softmax.solvers._base.Solver`); the
:class:`Problem` holds the rows, the penalty and ``C``. :data:`SOLVERS` maps
the names the estimator's ``solver=`` takes to default instances; options
(history sizes, preconditioners, the stochastic optimizer) are the
instances' fields, changed with ``SOLVERS[name].with_options(...)``.

:func:`resolve_solver` turns ``"auto"`` (or a name) into a solver that can do
the problem: its penalty and what the backend answers (``capabilities``).
:func:`solve` resolves and runs.

Examples
--------
>>> import numpy as np
>>> from softmax.backends.memory import InMemoryData
>>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
>>> data = InMemoryData(X, np.array([0, 0, 1, 1]), None, np.array([0, 1]),
...                     fit_intercept=True)
>>> res = solve(Problem(data, C=1.0), solver="lbfgs")
>>> res.converged, res.coef.shape
(True, (2, 2))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from softmax.backends._base import Capability
from softmax.solvers._base import Callback, Solver
from softmax.solvers._problem import Problem, SolverResult
from softmax.solvers.lbfgs import LBFGS
from softmax.solvers.newton_cg import NewtonCG
from softmax.solvers.newton_cholesky import NewtonCholesky
from softmax.solvers.proximal import Proximal
from softmax.solvers.proximal_newton import ProximalNewton
from softmax.solvers.stochastic import SGD

__all__ = ["SOLVERS", "Problem", "Solver", "SolverResult", "resolve_solver", "solve"]

#: solver name -> default instance
SOLVERS: Mapping[str, Solver] = MappingProxyType(
    {
        s.name: s
        for s in (LBFGS(), NewtonCG(), NewtonCholesky(), Proximal(), ProximalNewton(), SGD())
    }
)

#: "auto" uses newton-cholesky for dense rows while a full Hessian is cheap:
#: at most this many coefficients and n_samples * n_coef^2 <= NEWTON_CHOLESKY_MAX_WORK.
#: Measured (docs/solvers.md): the preconditioned L-BFGS was faster from
#: 20,000 x 21 x 5 up (0.06 s vs 0.15 s), Newton about as fast below; Newton
#: is kept there for its robustness (near-separable data) and 1e-10 accuracy.
NEWTON_CHOLESKY_MAX_COEF = 200
NEWTON_CHOLESKY_MAX_WORK = 200_000_000


def _auto(problem: Problem) -> Solver:
    """What ``"auto"`` picks (see :func:`resolve_solver`)."""
    if problem.has_group:
        return SOLVERS["proximal-newton"]
    if problem.has_l1:
        return SOLVERS["proximal"]
    data = problem.data
    n_coef = data.coef_shape[0] * data.coef_shape[1]
    if (
        not data.is_sparse
        and Capability.HESSIAN in data.capabilities
        and n_coef <= NEWTON_CHOLESKY_MAX_COEF
        and data.n_samples * n_coef**2 <= NEWTON_CHOLESKY_MAX_WORK
        and data.n_samples >= n_coef
    ):
        return SOLVERS["newton-cholesky"]
    return SOLVERS["lbfgs"]


def resolve_solver(solver: str | Solver, problem: Problem) -> Solver:
    """The solver for ``solver`` (a name, ``"auto"``, or an instance), checked against the problem.

    ``"auto"`` picks ``"proximal-newton"`` for the grouped penalty
    (``l1_type="grouped"``), ``"proximal"`` when the penalty has an L1 part;
    otherwise ``"newton-cholesky"`` for dense rows whose full Hessian is cheap
    (``n_coef = n_classes * (n_features + fit_intercept) <=
    NEWTON_CHOLESKY_MAX_COEF`` and ``n_samples * n_coef**2 <=
    NEWTON_CHOLESKY_MAX_WORK``), at least as many rows as coefficients and a
    backend with full Hessians; else ``"lbfgs"``. What it reads of the rows
    are their declared properties (``is_sparse``, ``capabilities``), never
    the rows themselves.

    Parameters
    ----------
    solver : str or Solver
        ``"auto"``, a key of :data:`SOLVERS`, or a configured instance.
    problem : Problem

    Returns
    -------
    Solver

    Raises
    ------
    ValueError
        For an unknown name, or a solver that cannot do the penalty or that
        the backend cannot serve; the message names one that can.
    """
    if isinstance(solver, Solver):
        chosen = solver
    elif solver == "auto":
        chosen = _auto(problem)
    elif isinstance(solver, str) and solver in SOLVERS:
        chosen = SOLVERS[solver]
    else:
        raise ValueError(
            f"unknown solver {solver!r}; choose one of 'auto', {', '.join(map(repr, SOLVERS))}"
        )
    chosen.check(problem)
    return chosen


def solve(
    problem: Problem,
    coef0: np.ndarray | None = None,
    *,
    solver: str | Solver = "auto",
    tol: float = 1e-7,
    max_iter: int = 1000,
    callback: Callback | None = None,
) -> SolverResult:
    """Minimise ``C * sum_i s_i CE_i + (1-l1_ratio)/2 ||W||^2 + l1_ratio ||W||_1``.

    :func:`resolve_solver`, then :meth:`Solver.solve` (parameters as there);
    ``solver`` is ``"auto"``, ``"lbfgs"``, ``"newton-cg"``,
    ``"newton-cholesky"``, ``"proximal"``, ``"proximal-newton"``, ``"sgd"``, or a configured
    instance (``SOLVERS["lbfgs"].with_options(history_size=10)``).

    Returns
    -------
    SolverResult
    """
    return resolve_solver(solver, problem).solve(
        problem, coef0, tol=tol, max_iter=max_iter, callback=callback
    )
