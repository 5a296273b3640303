"""Rows held by an Array API library (PyTorch, CuPy, JAX, array_api_strict).

:class:`ArrayAPIData` answers the :class:`~softmax.backends._base.RowData`
question (loss and gradient over all rows) with the operations of the rows'
own namespace, on their own device: ``X``, the labels and the weights never
leave it. Only ``coef`` (``n_classes x (n_features + 1)`` numbers) crosses,
once each way per pass, so the existing NumPy solvers drive a fit whose
passes over ``X`` run where ``X`` lives.

float32 rows are computed in float32 (bfloat16/float16 rows are promoted to
float32 first: their 8- or 11-bit mantissas cannot hold a gradient sum); the
loss and gradient come back as float64, like :class:`InMemoryData`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softmax._array_api import array_namespace, device_of
from softmax.backends._base import RowData
from softmax.losses import check_label_smoothing

__all__ = ["ArrayAPIData"]


def _to_numpy(xp: Any, a: Any) -> np.ndarray:
    """``a`` as a float64 NumPy array (the small coef-sized results only)."""
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, RuntimeError, ValueError):
        # devices that refuse an implicit host copy (CUDA tensors,
        # array_api_strict's other devices): move explicitly via DLPack/CPU
        import array_api_compat

        try:
            host = array_api_compat.to_device(a, "cpu")
        except ValueError:
            # array_api_strict names its host device CPU_DEVICE, its default
            host = a.to_device(xp.__array_namespace_info__().default_device())
        return np.asarray(host, dtype=np.float64)


class ArrayAPIData(RowData):
    """Rows of an Array API array answering loss and gradient on their device.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        A real floating array of an Array API library (torch, CuPy, JAX,
        array_api_strict). Not copied unless its dtype is below float32.
    y_codes : array of shape (n_samples,)
        Integer label codes ``0 .. n_classes - 1``, in ``X``'s namespace and
        on its device.
    weights : array of shape (n_samples,) or None
        Row weights ``s_i`` in ``X``'s namespace and on its device; None means
        all ones.
    classes : ndarray of shape (n_classes,)
        The original labels (``classes[k]`` is code ``k``).
    fit_intercept : bool
        Whether ``coef`` carries an intercept column.
    label_smoothing : float in [0, 1), default 0.0
        Smoothed targets ``(1 - eps) onehot(y) + eps / n_classes``.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> data = ArrayAPIData(X, torch.tensor([0, 1, 1]), None, np.array(["a", "b"]),
    ...                     fit_intercept=True)
    >>> loss, grad = data.loss_gradient(np.zeros(data.coef_shape))
    >>> bool(round(loss / 3, 6) == round(np.log(2), 6)), grad.shape
    (True, (2, 3))
    """

    def __init__(
        self,
        X: Any,
        y_codes: Any,
        weights: Any,
        classes: np.ndarray,
        *,
        fit_intercept: bool,
        label_smoothing: float = 0.0,
    ) -> None:
        eps = check_label_smoothing(label_smoothing)
        self.label_smoothing = eps
        xp = array_namespace(X)
        if getattr(X, "ndim", None) != 2:
            raise TypeError("X must be a 2-D array")
        if not xp.isdtype(X.dtype, "real floating"):
            raise TypeError(f"X must be a real floating array, got {X.dtype}")
        if X.dtype not in (xp.float32, xp.float64):
            X = xp.astype(X, xp.float32)  # bfloat16/float16: accumulate in float32
        n, p = X.shape
        if tuple(y_codes.shape) != (n,):
            raise ValueError(f"y_codes has shape {tuple(y_codes.shape)}; expected ({n},)")
        classes = np.asarray(classes)
        if weights is not None:
            if tuple(weights.shape) != (n,):
                raise ValueError(f"weights has shape {tuple(weights.shape)}; expected ({n},)")
            weights = xp.astype(weights, X.dtype)
        self.xp = xp
        self.device = device_of(X)
        self.X = X
        self.y = xp.astype(y_codes, xp.int64)
        k = len(classes)
        # the (smoothed) one-hot targets built once on the device (n x K, small next to X)
        self._target = xp.astype(
            self.y[:, None] == xp.arange(k, dtype=xp.int64, device=self.device)[None, :],
            X.dtype,
        )
        if eps:
            self._target = self._target * (1.0 - eps) + eps / k
        self.weights = weights
        self.classes = classes
        self.n_samples = int(n)
        self.n_features = int(p)
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype("float32" if X.dtype == xp.float32 else "float64")
        self.weight_sum = float(n) if weights is None else float(_to_numpy(xp, xp.sum(weights)))
        self.n_passes = 0
        self.capabilities = frozenset()
        # the loss is summed in float64 where the device has it (not Apple's
        # MPS): a float32 sum over many rows limits the relative gap to ~1e-6
        info = xp.__array_namespace_info__()
        has64 = "float64" in info.dtypes(device=self.device, kind="real floating")
        self._sum_dtype = xp.float64 if has64 else X.dtype

    def _coef(self, coef: np.ndarray) -> tuple[Any, Any]:
        xp = self.xp
        c = xp.asarray(np.ascontiguousarray(coef, dtype=self.dtype), device=self.device)
        if self.fit_intercept:
            return c[:, : self.n_features], c[:, self.n_features]
        return c, None

    def _pass(self, coef: np.ndarray, need_gradient: bool) -> tuple[float, np.ndarray | None]:
        xp = self.xp
        self.n_passes += 1
        W, b = self._coef(coef)
        Z = self.X @ xp.permute_dims(W, (1, 0))
        if b is not None:
            Z = Z + b[None, :]
        zmax = xp.max(Z, axis=1, keepdims=True)
        shifted = Z - zmax
        lse = xp.log(xp.sum(xp.exp(shifted), axis=1))
        z_true = xp.sum(shifted * self._target, axis=1)  # t^T z (shifted: t sums to 1)
        per_row = lse - z_true
        if self.weights is not None:
            per_row = per_row * self.weights
        loss = float(_to_numpy(xp, xp.sum(xp.astype(per_row, self._sum_dtype))))
        if not need_gradient:
            return loss, None
        R = xp.exp(shifted - lse[:, None]) - self._target  # (n, K) residuals
        if self.weights is not None:
            R = R * self.weights[:, None]
        gW = xp.permute_dims(R, (1, 0)) @ self.X
        g = xp.concat([gW, xp.sum(R, axis=0)[:, None]], axis=1) if self.fit_intercept else gW
        return loss, _to_numpy(xp, g)

    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = self._pass(coef, True)
        assert grad is not None
        return loss, grad

    def loss(self, coef: np.ndarray) -> float:
        return self._pass(coef, False)[0]
