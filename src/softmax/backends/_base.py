"""The contract between solvers and the places rows live: :class:`RowData`.

Every solver asks the data one question: "for these coefficients, what are the
summed loss and its gradient over all rows?" A backend answers it wherever
the rows are: a NumPy/SciPy array in memory (:mod:`softmax.backends.memory`),
a stream of blocks read from files (:mod:`softmax.backends.stream`), or chunks
persisted on a Dask cluster (:mod:`softmax.backends.dask`). All of them
compute each block with the same functions of :mod:`softmax.linear_loss`, so
they give the same answer.

Beyond that one question a backend may answer others (Hessian products, the
full Hessian, minibatches, feature moments for preconditioners). Which ones
is *declared*, not probed: ``capabilities`` is a set of :class:`Capability`
values, and every optional method exists on the base class (raising
``NotImplementedError`` naming the capability) so that callers write
``Capability.HESSP in data.capabilities`` and never ``hasattr``. A new
backend (GPU arrays through the Array API, say) subclasses :class:`RowData`,
implements :meth:`RowData.loss_gradient` and declares what else it answers.

Conventions shared by every backend
-----------------------------------
- Labels arrive encoded as integer codes ``0 .. n_classes - 1``.
- Per-row weights ``s_i = sample_weight_i * class_weight[y_i]`` are folded in
  by the backend (validated by :mod:`softmax._validation`, the same rules for
  every backend); ``weight_sum`` is their sum.
- ``coef`` has shape ``(n_classes, n_features + fit_intercept)``, float64,
  C-contiguous, on the host; when ``fit_intercept`` the last column is the
  intercept. Answers are host float64 arrays whatever the rows are.
- The data term is the *sum* ``sum_i s_i * CE(t_i, softmax(W x_i + b))``; the
  penalty and the factor ``C`` are the solver's business, not the backend's.
  The target ``t_i`` is ``onehot(y_i)``, or with label smoothing ``eps``
  (``label_smoothing``, folded into the rows like the weights)
  ``(1 - eps) onehot(y_i) + eps / n_classes``. The Hessian does not depend on
  it; the *information* (inference) is the unsmoothed likelihood's, and
  backends refuse it for smoothed rows.
- Gradients have the shape of ``coef``. Sums are accumulated in float64 even
  when the rows are float32.
- Hessians act on, and full Hessians are laid out in, the C-order flattening
  of ``coef``. The *information* (:meth:`RowData.information`) is the same
  matrix in the reference-class form the statistics of
  :func:`softmax.inference` are reported in, summed over row blocks with the
  log-likelihood, the score and, when asked, a sandwich "meat".
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["BLOCK_SUMS", "Capability", "RowData", "check_batch_size"]


class Capability(str, enum.Enum):
    """The optional questions a backend can answer (see :class:`RowData`)."""

    #: :meth:`RowData.gradient_hessian_product`
    HESSP = "hessp"
    #: :meth:`RowData.hessian` (the full ``n_coef x n_coef`` Hessian)
    HESSIAN = "hessian"
    #: :meth:`RowData.iter_minibatches` (stochastic solvers)
    MINIBATCHES = "minibatches"
    #: :meth:`RowData.feature_moments` (diagonal preconditioner)
    FEATURE_MOMENTS = "feature_moments"
    #: :meth:`RowData.curvature_moments` (refreshing the diagonal preconditioner)
    CURVATURE_MOMENTS = "curvature_moments"
    #: :meth:`RowData.feature_covariance` (feature factor of Kronecker preconditioners)
    FEATURE_COVARIANCE = "feature_covariance"
    #: :meth:`RowData.class_curvature` (class factor of the Kronecker preconditioner)
    CLASS_CURVATURE = "class_curvature"
    #: :meth:`RowData.subspace_curvature` (the class-block preconditioner)
    SUBSPACE_CURVATURE = "subspace_curvature"
    #: answers are logged to :attr:`RowData.checkpoint` and replayed on a restart
    EVALUATION_LOG = "evaluation_log"
    #: :meth:`RowData.information` (log-likelihood, score, information, meat)
    INFORMATION = "information"
    #: the answers above also come as arrays on the rows' own device, taking
    #: coefficients there (:class:`~softmax.backends.array_api.ArrayAPIData`'s
    #: ``device_*`` methods): L-BFGS then keeps its iterate, history and
    #: preconditioner on that device (:mod:`softmax.solvers._device_lbfgs`)
    DEVICE_ARRAYS = "device_arrays"


#: What a backend answers when it computes every block with the functions of
#: :mod:`softmax.linear_loss` (memory, file streams, Dask chunks alike).
BLOCK_SUMS = frozenset(
    {
        Capability.HESSP,
        Capability.HESSIAN,
        Capability.MINIBATCHES,
        Capability.FEATURE_MOMENTS,
        Capability.CURVATURE_MOMENTS,
        Capability.INFORMATION,
    }
)


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int; ValueError unless it is a positive integer."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


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
    capabilities : frozenset of Capability
        The optional methods this backend answers.
    is_sparse : bool
        Whether the rows are sparse (CSR): full Hessians then cost a
        densified block per pass, which ``solver="auto"`` avoids.
    feature_names : ndarray of shape (n_features,) or None
        Column names, when the rows came from a frame with string columns.
    checkpoint : softmax._persist.Checkpoint or None
        Where a fit on these rows saves its progress (file sources with
        ``checkpoint=``); stochastic solvers save their state there.
    record_evaluations : bool
        With :attr:`Capability.EVALUATION_LOG`: whether answers are logged
        and replayed (solvers that checkpoint their own state turn it off).
    label_smoothing : float in [0, 1)
        ``eps`` of the smoothed target (0: the one-hot labels).
    """

    classes: np.ndarray
    n_samples: int
    n_features: int
    fit_intercept: bool
    dtype: np.dtype
    weight_sum: float
    n_passes: int = 0
    capabilities: frozenset[Capability] = frozenset()
    is_sparse: bool = False
    feature_names: np.ndarray | None = None
    checkpoint: Any = None
    record_evaluations: bool = False
    label_smoothing: float = 0.0

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def coef_shape(self) -> tuple[int, int]:
        return (self.n_classes, self.n_features + int(self.fit_intercept))

    def supports(self, *capabilities: Capability) -> bool:
        """Whether the backend answers every one of ``capabilities``."""
        return set(capabilities) <= self.capabilities

    def _missing(self, capability: Capability) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} does not offer {capability.value!r} "
            f"(its capabilities: {sorted(c.value for c in self.capabilities)})"
        )

    # -- the one question every backend answers --------------------------------

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

    # -- optional questions: see ``capabilities`` ------------------------------

    def gradient_hessian_product(
        self, coef: np.ndarray
    ) -> tuple[float, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Loss, gradient, and a function ``v -> H v`` at ``coef`` (:attr:`Capability.HESSP`).

        ``v`` and ``H v`` have the shape of ``coef``; each product is one pass.
        """
        raise self._missing(Capability.HESSP)

    def hessian(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, gradient and the full Hessian (:attr:`Capability.HESSIAN`).

        Returns
        -------
        loss : float
        gradient : ndarray of shape (n_classes, n_features + fit_intercept)
        hessian : ndarray of shape (n_coef, n_coef), C-order of ``coef``
        """
        raise self._missing(Capability.HESSIAN)

    def iter_minibatches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """One epoch of shuffled minibatches ``(X_batch, y_codes, weights)``.

        :attr:`Capability.MINIBATCHES`; used by the stochastic solver.
        ``X_batch`` is a float array or CSR matrix of shape (batch,
        n_features) in ``dtype``; ``weights`` already hold ``s_i``. Backends
        whose rows cannot be shuffled globally (streams, Dask) visit their
        blocks in a random order and shuffle rows within a block.
        """
        raise self._missing(Capability.MINIBATCHES)

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of each feature and of its square (:attr:`Capability.FEATURE_MOMENTS`).

        Returns
        -------
        mean, sq_mean : ndarray of shape (n_features,), float64
        """
        raise self._missing(Capability.FEATURE_MOMENTS)

    def curvature_moments(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curvature-weighted row moments at ``coef`` (:attr:`Capability.CURVATURE_MOMENTS`).

        See :func:`softmax.linear_loss.block_curvature_moments`; one pass.
        """
        raise self._missing(Capability.CURVATURE_MOMENTS)

    def feature_covariance(self, passes: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Weighted feature mean and centred covariance (:attr:`Capability.FEATURE_COVARIANCE`).

        Parameters
        ----------
        passes : float, optional
            The work it may take, in loss-gradient passes; beyond it the
            covariance is formed from an even stride of rows. None: the
            backend's default (``COVARIANCE_PASSES``).

        Returns
        -------
        mean : ndarray of shape (n_features,), float64
        cov : ndarray of shape (n_features, n_features)
            A new array the caller may overwrite (it is a large part of a
            fit's memory when there are few rows).
        """
        raise self._missing(Capability.FEATURE_COVARIANCE)

    def class_curvature(self, coef: np.ndarray) -> np.ndarray:
        """Mean logit Hessian ``sum_i s_i (diag(p_i) - p_i p_i^T) / sum_i s_i``.

        :attr:`Capability.CLASS_CURVATURE`; of shape (n_classes, n_classes).
        """
        raise self._missing(Capability.CLASS_CURVATURE)

    def subspace_curvature(
        self, coef: np.ndarray, V: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each class's curvature in the feature subspace spanned by ``V``.

        :attr:`Capability.SUBSPACE_CURVATURE`. With ``z_i = V^T (x_i - mean)``
        (``mean`` the weighted feature mean; ``x_i`` itself without
        intercept), followed by a 1 when the model has an intercept, and
        ``w_ik = p_ik (1 - p_ik)`` at ``coef``: the weighted means over rows
        (a backend may take them over a subsample).

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)
        V : ndarray of shape (n_features, r)
            Orthonormal columns. A backend may cache the projected rows for
            as long as the caller passes the same array object.

        Returns
        -------
        blocks : ndarray of shape (n_classes, r + fit_intercept, r + fit_intercept)
            ``mean_i s_i w_ik z_i z_i^T``, float64.
        curvature : ndarray of shape (n_classes,)
            ``mean_i s_i w_ik`` (the diagonal of the mean class curvature).
        rows : ndarray of shape (n_classes,)
            How much sampling noise each block carries against its value over
            every row: the effective number of rows used, ``(sum_i s_i
            w_ik)^2 / sum_i (s_i w_ik)^2`` (Kish), divided by one minus the
            fraction of rows used; ``inf`` when every row is used.
        """
        raise self._missing(Capability.SUBSPACE_CURVATURE)

    def information(
        self,
        coef: np.ndarray,
        reference: int,
        *,
        meat: str | None = None,
        groups: np.ndarray | None = None,
    ) -> Any:
        """Log-likelihood, score and information, reference form (``INFORMATION``).

        See :func:`softmax.linear_loss.block_information`, summed over all
        rows; one pass (not counted in ``n_passes``: no solver asks it).

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)
        reference : int
            Code of the reference class.
        meat : {None, "hc", "cluster"}
            Also the HC0 meat, or the cluster meat (rows in memory only).
        groups : ndarray of shape (n_samples,), optional
            Cluster codes, with ``meat="cluster"``.

        Returns
        -------
        softmax.linear_loss.InformationSums
        """
        raise self._missing(Capability.INFORMATION)

    def _check_unsmoothed(self, what: str) -> None:
        """ValueError when the rows' targets are smoothed: ``what`` needs the likelihood."""
        if self.label_smoothing:
            raise ValueError(
                f"{what} is defined for the likelihood of the labels, but these rows "
                f"have label_smoothing={self.label_smoothing!r}; refit with "
                "label_smoothing=0 for inference."
            )
