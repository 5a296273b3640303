"""The contract between solvers and the places rows live.

Every solver asks the data one question: "for these coefficients, what are the
summed loss and its gradient over all rows?" (and, where the backend can
answer it, "and the Hessian times this direction?"). A backend answers it
wherever the rows are: a NumPy/SciPy array in memory
(:mod:`softmax.backends.memory`), a stream of blocks read from files
(:mod:`softmax.backends.stream`), or chunks persisted on a Dask cluster
(:mod:`softmax.backends.dask`). All of them compute each block with the same
functions of :mod:`softmax.linear_loss`, so they give the same answer.

Conventions shared by every backend
-----------------------------------
- Labels arrive encoded as integer codes ``0 .. n_classes - 1``.
- Per-row weights ``s_i = sample_weight_i * class_weight[y_i]`` are folded in
  by the backend; ``weight_sum`` is their sum.
- ``coef`` has shape ``(n_classes, n_features + fit_intercept)``, float64,
  C-contiguous; when ``fit_intercept`` the last column is the intercept.
- The data term is the *sum* ``sum_i s_i * CE(y_i, softmax(W x_i + b))``; the
  penalty and the factor ``C`` are the solver's business, not the backend's.
- Gradients have the shape of ``coef`` and are float64. Sums are accumulated in
  float64 even when the rows are float32.
- Hessians act on, and full Hessians are laid out in, the C-order flattening of
  ``coef``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["RowData"]


class RowData(ABC):
    """Rows of a fit, wherever they live; answers sums over all rows.

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        The original labels; code ``k`` stands for ``classes[k]``.
    n_samples : int
        Number of rows.
    n_features : int
        Number of features (columns of X, without the intercept).
    fit_intercept : bool
        Whether ``coef`` carries an intercept column.
    dtype : numpy.dtype
        The dtype the rows are computed in (float32 or float64).
    weight_sum : float
        Sum of the per-row weights ``s_i``.
    n_passes : int
        Number of passes over the rows made so far (one per loss/gradient
        evaluation, one per Hessian-vector product); solvers report it.
    """

    classes: np.ndarray
    n_samples: int
    n_features: int
    fit_intercept: bool
    dtype: np.dtype
    weight_sum: float
    n_passes: int = 0

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def coef_shape(self) -> tuple[int, int]:
        return (self.n_classes, self.n_features + int(self.fit_intercept))

    @abstractmethod
    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        """Summed weighted cross-entropy and its gradient.

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)

        Returns
        -------
        loss : float
        gradient : ndarray of shape (n_classes, n_features + fit_intercept)
        """

    def loss(self, coef: np.ndarray) -> float:
        """Summed weighted cross-entropy alone (backends may do it cheaper)."""
        return self.loss_gradient(coef)[0]

    def gradient_hessian_product(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Loss, gradient, and a function ``v -> H v`` at ``coef``.

        ``v`` and ``H v`` have the shape of ``coef``. Backends that cannot
        answer raise ``NotImplementedError``; solvers that need it say so.
        """
        raise NotImplementedError(f"{type(self).__name__} has no Hessian-vector products")

    def hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, gradient and the full Hessian (n_coef x n_coef, C-order of coef)."""
        raise NotImplementedError(f"{type(self).__name__} has no full Hessian")

    def iter_minibatches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """One epoch of shuffled minibatches ``(X_batch, y_codes, weights)``.

        Used by the stochastic solver (``solver="sgd"``). ``X_batch`` is a
        float array or CSR matrix of shape (batch, n_features) in ``dtype``;
        ``weights`` already hold ``s_i``. Backends whose rows cannot be
        shuffled globally (streams) shuffle blocks and rows within a block.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot yield minibatches")
