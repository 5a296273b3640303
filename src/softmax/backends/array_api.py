"""Rows held by an Array API library (PyTorch, CuPy, JAX, array_api_strict).

:class:`ArrayAPIData` answers the :class:`~softmax.backends._base.RowData`
questions with the operations of the rows' own namespace, on their own
device: ``X``, the labels and the weights never leave it. Each question is
answered twice: as host float64 arrays (the ``RowData`` methods, for any
solver: only results of the size of ``coef`` or of the preconditioners'
moments cross, once per pass), and as arrays left on the device taking
device coefficients (the ``device_*`` methods, declared by
``Capability.DEVICE_ARRAYS``), with which L-BFGS keeps its whole iteration
on the device (:mod:`softmax.solvers._device_lbfgs`).

Beyond the loss and gradient it answers the questions L-BFGS builds its
preconditioners from (feature moments, curvature moments, the class
curvature and the feature covariance), so a fit on the device takes the
same iterations as one on the CPU: without them L-BFGS on unscaled features
needs ~15x more iterations, and its gap estimates, which see only the
directions it explored, stop it several times above ``tol``.

A pass visits the rows in blocks of at most ``BLOCK_ELEMENTS / n_classes``
rows (the ``(rows, n_classes)`` temporaries stay bounded, whatever
``n_samples``). float32 rows are computed in float32 (bfloat16/float16 rows
are promoted to float32 first: their 8- or 11-bit mantissas cannot hold a
gradient sum), and, as in :class:`~softmax.backends.memory.InMemoryData`,
each block's sums are added in float64 where the device has it (not Apple's
MPS); results come back as host float64 arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from softmax._array_api import array_namespace, device_of
from softmax.backends._base import Capability, RowData
from softmax.backends.memory import (
    COVARIANCE_MAX_FEATURES,
    COVARIANCE_MIN_ROWS,
    COVARIANCE_PASSES,
    CURVATURE_ROWS,
)
from softmax.losses import check_label_smoothing

__all__ = ["BLOCK_ELEMENTS", "ArrayAPIData"]

#: Most entries of a block's ``(rows, n_classes)`` temporaries (logits,
#: probabilities, residuals): 64 MiB each in float32. Big enough that each
#: block's products run near a GPU's peak, small next to its memory.
BLOCK_ELEMENTS = 1 << 24
#: ...but never fewer rows than this per block.
MIN_BLOCK_ROWS = 1024


def _to_numpy(xp: Any, a: Any, dtype: Any = np.float64) -> np.ndarray:
    """``a`` as a writable NumPy array of ``dtype`` (the small coef-sized results only).

    Writable because solvers scale the answers in place; JAX hands NumPy
    read-only views of its (immutable) buffers.
    """
    try:
        out = np.asarray(a, dtype=dtype)
        return out if out.flags.writeable else out.copy()
    except (TypeError, RuntimeError, ValueError):
        # devices that refuse an implicit host copy (CUDA tensors,
        # array_api_strict's other devices): move explicitly via DLPack/CPU
        import array_api_compat

        try:
            host = array_api_compat.to_device(a, "cpu")
        except ValueError:
            # array_api_strict names its host device CPU_DEVICE, its default
            host = a.to_device(xp.__array_namespace_info__().default_device())
        return np.array(host, dtype=dtype)


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

    #: Widest rows for which ``feature_covariance`` is declared (so that
    #: L-BFGS may use the Kronecker preconditioner). Its ``p x p``
    #: eigendecomposition (once) and basis rotations (each iteration) run on
    #: the device; whether they pay there over the diagonal preconditioner is
    #: not measured on a GPU yet (0 keeps to the diagonal one;
    #: ``benchmarks/bench_gpu_fit.py --diagonal`` measures that road).
    covariance_max_features: int = COVARIANCE_MAX_FEATURES

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
        info = xp.__array_namespace_info__()
        # the namespace's index dtype: int32 on JAX without x64, int64 elsewhere
        index = info.default_dtypes(device=self.device)["indexing"]
        self.y = xp.astype(y_codes, index)
        k = len(classes)
        self._class_codes = xp.arange(k, dtype=index, device=self.device)
        self.weights = weights
        self.classes = classes
        self.n_samples = int(n)
        self.n_features = int(p)
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype("float32" if X.dtype == xp.float32 else "float64")
        self.weight_sum = float(n) if weights is None else float(_to_numpy(xp, xp.sum(weights)))
        self.n_passes = 0
        caps = {
            Capability.DEVICE_ARRAYS,
            Capability.FEATURE_MOMENTS,
            Capability.CURVATURE_MOMENTS,
            Capability.CLASS_CURVATURE,
        }
        if 0 < p <= self.covariance_max_features:
            caps.add(Capability.FEATURE_COVARIANCE)
        self.capabilities = frozenset(caps)
        self.block_rows = max(MIN_BLOCK_ROWS, BLOCK_ELEMENTS // max(1, k))
        # block sums in float64 where the device has it (not Apple's MPS, not
        # JAX without x64): the float32 rows' rounding then does not add up
        has64 = "float64" in info.dtypes(device=self.device, kind="real floating")
        self._sum_dtype = xp.float64 if has64 else X.dtype
        self._moments: tuple[np.ndarray, np.ndarray] | None = None
        self._sums: Any = None  # the feature sums on the device (feature_moments)
        self._weights_by_stride: dict[int, float] = {}

    # -- helpers ---------------------------------------------------------------

    @property
    def work_dtype(self) -> Any:
        """The device dtype of iterates and gradients: float64 where the device has it."""
        return self._sum_dtype

    def _coef(self, coef: np.ndarray) -> tuple[Any, Any]:
        """``(W^T, b)`` on the device in the rows' dtype (``b`` None without intercept)."""
        xp = self.xp
        c = xp.asarray(np.ascontiguousarray(coef, dtype=self.dtype), device=self.device)
        return self._split(c)

    def _coef_device(self, coef: Any) -> tuple[Any, Any]:
        """``(W^T, b)`` from coefficients already on the device (any real dtype)."""
        if tuple(coef.shape) != self.coef_shape:
            raise ValueError(f"coef has shape {tuple(coef.shape)}; expected {self.coef_shape}")
        return self._split(self.xp.astype(coef, self.X.dtype))

    def _split(self, c: Any) -> tuple[Any, Any]:
        W = c[:, : self.n_features] if self.fit_intercept else c
        b = c[:, self.n_features] if self.fit_intercept else None
        return self.xp.permute_dims(W, (1, 0)), b

    def _blocks(self, stride: int = 1) -> Iterator[tuple[Any, Any, Any]]:
        """``(X_b, y_b, s_b)`` over every ``stride``-th row, ``s_b`` None when unweighted."""
        n, step = self.n_samples, self.block_rows * stride
        for start in range(0, n, step):
            stop = min(n, start + step)
            s = None if self.weights is None else self.weights[start:stop:stride]
            yield self.X[start:stop:stride, :], self.y[start:stop:stride], s

    def _proba(self, Xb: Any, WT: Any, b: Any) -> Any:
        xp = self.xp
        Z = Xb @ WT
        if b is not None:
            Z = Z + b[None, :]
        E = xp.exp(Z - xp.max(Z, axis=1, keepdims=True))
        return E / xp.sum(E, axis=1, keepdims=True)

    def _sum(self, a: Any, axis: int | None = None) -> Any:
        return self.xp.sum(a, axis=axis, dtype=self._sum_dtype)

    def _zeros(self, shape: tuple[int, ...]) -> Any:
        return self.xp.zeros(shape, dtype=self._sum_dtype, device=self.device)

    # -- the passes, on the device ---------------------------------------------

    def _pass(self, WT: Any, b: Any, need_gradient: bool) -> tuple[Any, Any]:
        """Loss (0-d) and gradient (``coef_shape``, or None) as device arrays of ``work_dtype``."""
        xp = self.xp
        self.n_passes += 1
        K, p = self.n_classes, self.n_features
        loss = self._zeros(())
        gW = self._zeros((K, p)) if need_gradient else None
        gb = self._zeros((K,)) if need_gradient and self.fit_intercept else None
        for Xb, yb, s in self._blocks():
            Z = Xb @ WT
            if b is not None:
                Z = Z + b[None, :]
            shifted = Z - xp.max(Z, axis=1, keepdims=True)
            E = xp.exp(shifted)
            total = xp.sum(E, axis=1)
            # one-hot of the block's labels: (rows, K) like the logits, never (n, K)
            onehot = xp.astype(yb[:, None] == self._class_codes[None, :], Z.dtype)
            if self.label_smoothing:
                # PyTorch's smoothed target (1 - eps) onehot + eps / K; it sums to 1,
                # so the shifted logits still give t^T z - lse exactly
                eps = self.label_smoothing
                onehot = onehot * (1.0 - eps) + eps / K
            per_row = xp.log(total) - xp.sum(shifted * onehot, axis=1)
            if s is not None:
                per_row = per_row * s
            loss = loss + self._sum(per_row)
            if need_gradient:
                R = E / total[:, None] - onehot  # (rows, K) residuals: one exp per pass
                if s is not None:
                    R = R * s[:, None]
                gW = gW + xp.astype(xp.permute_dims(R, (1, 0)) @ Xb, self._sum_dtype)
                if gb is not None:
                    gb = gb + self._sum(R, axis=0)
        if not need_gradient:
            return loss, None
        g = xp.concat([gW, gb[:, None]], axis=1) if gb is not None else gW
        return loss, g

    def _host_pass(self, coef: np.ndarray, need_gradient: bool) -> tuple[float, np.ndarray | None]:
        xp = self.xp
        loss, g = self._pass(*self._coef(coef), need_gradient)
        if g is None:
            return float(_to_numpy(xp, loss)), None
        # loss and gradient cross together: one transfer (one sync on a GPU)
        out = _to_numpy(xp, xp.concat([xp.reshape(g, (-1,)), xp.reshape(loss, (1,))]))
        return float(out[-1]), out[:-1].reshape(self.coef_shape)

    def device_loss_gradient(self, coef: Any) -> tuple[Any, Any]:
        """Loss and gradient at device ``coef``, left on the device (``DEVICE_ARRAYS``).

        Parameters
        ----------
        coef : array of shape (n_classes, n_features + fit_intercept)
            On the rows' device, any real floating dtype (cast to the rows').

        Returns
        -------
        loss : 0-d array of ``work_dtype``
        grad : array of shape ``coef_shape``, ``work_dtype``
        """
        return self._pass(*self._coef_device(coef), True)

    def _feature_sums(self) -> Any:
        """``(2, p)``: the weighted sums of each feature and of its square, on the device."""
        if self._sums is None:
            s1 = self._zeros((self.n_features,))
            s2 = self._zeros((self.n_features,))
            for Xb, _, s in self._blocks():
                sX = Xb if s is None else Xb * s[:, None]
                s1 = s1 + self._sum(sX, axis=0)
                s2 = s2 + self._sum(sX * Xb, axis=0)
            self._sums = self.xp.stack([s1, s2])
        return self._sums

    def device_feature_moments(self) -> tuple[Any, Any]:
        """:meth:`feature_moments` as device arrays of ``work_dtype`` (cached)."""
        m = self._feature_sums() / max(self.weight_sum, 1e-300)
        return m[0, :], m[1, :]

    def _curvature_sums(self, WT: Any, b: Any) -> Any:
        xp = self.xp
        self.n_passes += 1
        K, p = self.n_classes, self.n_features
        s0, s1, s2 = self._zeros((K,)), self._zeros((K, p)), self._zeros((K, p))
        for Xb, _, s in self._blocks():
            P = self._proba(Xb, WT, b)
            Wc = P * (1 - P)
            if s is not None:
                Wc = Wc * s[:, None]
            WcT = xp.permute_dims(Wc, (1, 0))
            s0 = s0 + self._sum(Wc, axis=0)
            s1 = s1 + xp.astype(WcT @ Xb, self._sum_dtype)
            s2 = s2 + xp.astype(WcT @ (Xb * Xb), self._sum_dtype)
        return xp.concat([s0[:, None], s1, s2], axis=1)

    def device_curvature_moments(self, coef: Any) -> tuple[Any, Any, Any]:
        """:meth:`curvature_moments` at device ``coef``, as device arrays of ``work_dtype``."""
        out = self._curvature_sums(*self._coef_device(coef))
        p = self.n_features
        return out[:, 0], out[:, 1 : p + 1], out[:, p + 1 :]

    def _class_sums(self, WT: Any, b: Any) -> tuple[Any, float]:
        """``(K, K + 1)``: ``sum s_i p_i p_i^T`` and ``sum s_i p_i``; and the weight summed."""
        xp = self.xp
        stride = max(1, self.n_samples // CURVATURE_ROWS)
        if stride == 1:
            self.n_passes += 1
        K = self.n_classes
        diag, outer = self._zeros((K,)), self._zeros((K, K))
        for Xb, _, s in self._blocks(stride):
            P = xp.astype(self._proba(Xb, WT, b), self._sum_dtype)
            sP = P if s is None else P * xp.astype(s, self._sum_dtype)[:, None]
            diag = diag + xp.sum(sP, axis=0)
            outer = outer + xp.permute_dims(sP, (1, 0)) @ P
        return xp.concat([outer, diag[:, None]], axis=1), self._strided_weight(stride)

    def device_class_curvature(self, coef: Any) -> Any:
        """:meth:`class_curvature` at device ``coef``, a device ``(K, K)`` array."""
        xp = self.xp
        out, weight = self._class_sums(*self._coef_device(coef))
        K = self.n_classes
        eye = xp.eye(K, dtype=self._sum_dtype, device=self.device)
        return (eye * out[:, K][None, :] - out[:, :K]) / max(weight, 1e-300)

    def _covariance_sums(self, shift: Any, passes: float | None = None) -> tuple[Any, float]:
        if Capability.FEATURE_COVARIANCE not in self.capabilities:
            raise self._missing(Capability.FEATURE_COVARIANCE)
        xp = self.xp
        n, p = self.n_samples, self.n_features
        passes = COVARIANCE_PASSES if passes is None else passes
        budget = int(passes * 4 * max(1, self.n_classes) * n // p)
        stride = max(1, -(-n // max(budget, COVARIANCE_MIN_ROWS * p, 1)))
        cov = self._zeros((p, p))
        for Xb, _, s in self._blocks(stride):
            Xc = Xb - shift[None, :]  # centred: no cancellation
            if s is not None:  # weights >= 0: rows scaled by sqrt(s_i)
                Xc = Xc * xp.sqrt(s)[:, None]
            cov = cov + xp.astype(xp.permute_dims(Xc, (1, 0)) @ Xc, self._sum_dtype)
        return cov, self._strided_weight(stride)

    def device_feature_covariance(self) -> tuple[Any, Any]:
        """:meth:`feature_covariance` as device arrays of ``work_dtype``."""
        mean = self.device_feature_moments()[0]
        cov, weight = self._covariance_sums(self.xp.astype(mean, self.X.dtype))
        return mean, cov / max(weight, 1e-300)

    # -- the RowData questions, answered on the host ----------------------------

    def loss_gradient(self, coef: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = self._host_pass(coef, True)
        assert grad is not None
        return loss, grad

    def loss(self, coef: np.ndarray) -> float:
        return self._host_pass(coef, False)[0]

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of each feature and of its square (see :class:`RowData`).

        One pass on the device (not counted in ``n_passes``), cached.
        """
        if self._moments is None:
            m = _to_numpy(self.xp, self._feature_sums()) / max(self.weight_sum, 1e-300)
            self._moments = (m[0], m[1])
        return self._moments

    def curvature_moments(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Curvature-weighted row moments at ``coef`` (see :class:`RowData`).

        ``sum_i w_ik``, ``sum_i w_ik x_ij`` and ``sum_i w_ik x_ij^2`` with
        ``w_ik = s_i p_ik (1 - p_ik)``, as
        :func:`softmax.linear_loss.block_curvature_moments`; one pass.
        """
        out = _to_numpy(self.xp, self._curvature_sums(*self._coef(coef)))
        p = self.n_features
        return out[:, 0], out[:, 1 : p + 1], out[:, p + 1 :]

    def class_curvature(self, coef: np.ndarray) -> np.ndarray:
        """Mean logit Hessian ``sum_i s_i (diag(p_i) - p_i p_i^T) / sum_i s_i``.

        Over an even stride of rows beyond ``2 * CURVATURE_ROWS`` (not
        counted as a pass), over all rows otherwise (counted as one), as
        ``InMemoryData.class_curvature``.
        """
        sums, weight = self._class_sums(*self._coef(coef))
        out = _to_numpy(self.xp, sums)
        K = self.n_classes
        return (np.diag(out[:, K]) - out[:, :K]) / max(weight, 1e-300)

    def _strided_weight(self, stride: int) -> float:
        """Sum of the weights of every ``stride``-th row (one host number, cached)."""
        if self.weights is None:
            return float(len(range(0, self.n_samples, stride)))
        if stride not in self._weights_by_stride:
            total = _to_numpy(self.xp, self._sum(self.weights[::stride]))
            self._weights_by_stride[stride] = float(total)
        return self._weights_by_stride[stride]

    def feature_covariance(self, passes: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Weighted feature mean and centred covariance (see :class:`RowData`).

        Formed on the device (``X_b^T X_b`` per block, blocks added in
        float64), from an even stride of rows when all of them would cost
        more than ``passes`` passes (default ``COVARIANCE_PASSES``), as
        ``InMemoryData.feature_covariance``; not counted in ``n_passes``.
        Only the ``p x p`` result crosses.

        Returns
        -------
        mean : ndarray of shape (n_features,), float64
        cov : ndarray of shape (n_features, n_features), the rows' dtype
        """
        if Capability.FEATURE_COVARIANCE not in self.capabilities:
            raise self._missing(Capability.FEATURE_COVARIANCE)
        mean = self.feature_moments()[0]
        shift = self.xp.asarray(mean.astype(self.dtype), device=self.device)
        cov, weight = self._covariance_sums(shift, passes)
        cov = _to_numpy(self.xp, cov) / max(weight, 1e-300)
        return mean, cov.astype(self.dtype, copy=False)
