"""The stochastic solvers: ``solver="sgd"`` and ``partial_fit``.

Both minimise the objective of every other solver,

.. math::

    F(W, b) = C \\sum_i s_i \\, CE_i + \\tfrac{1 - \\rho}{2} \\lVert W \\rVert_F^2
              + \\rho \\lVert W \\rVert_1 ,

through its rescaled form ``f = F / (C S)`` (``S = sum_i s_i``), by
minibatch updates of one :class:`Optimizer` (``"vr"``, ``"adam"``,
``"adagrad"``, ``"sgd"``; see :mod:`._optimizers`). Two drivers run them:

- :class:`SGD` (``solver="sgd"``, :mod:`._sgd`): epochs over a backend's
  minibatches, stopped on the exact objective, checkpointed;
- :class:`PartialFitState` (:mod:`._partial_fit`): what ``partial_fit``
  keeps between calls; the estimator owns it.

:mod:`._batches` holds what both compute on a minibatch (residuals, row
digests, the feature statistics of the preconditioner).
"""

from __future__ import annotations

from softmax.solvers.stochastic._optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    Optimizer,
    check_settings,
    resolve_optimizer,
)
from softmax.solvers.stochastic._partial_fit import PartialFitState
from softmax.solvers.stochastic._sgd import SGD

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Optimizer",
    "PartialFitState",
    "check_settings",
    "resolve_optimizer",
]
