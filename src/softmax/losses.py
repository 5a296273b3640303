"""The multinomial (softmax cross-entropy) loss per row, in logit space.

For a row with logits ``z`` (one per class), label code ``y`` and weight
``s``, with ``p = softmax(z)``:

.. math::

    \\ell(z) = s \\, (\\operatorname{logsumexp}(z) - z_y), \\qquad
    \\nabla_z \\ell = s \\, (p - e_y), \\qquad
    \\nabla_z^2 \\ell \\, v = s \\, p \\odot (v - p^\\top v).

The Hessian is ``s (diag(p) - p p^T)``: positive semi-definite, with the
all-ones direction in its null space (adding a constant to every logit of a
row changes nothing).

This layer knows nothing of coefficients or features; :mod:`softmax.linear_loss`
lifts it to ``(W, b)``. The functions work on arrays of shape
``(n_rows, n_classes)`` in float32 or float64; the per-row losses are returned
in float64 so that sums over many rows keep their precision.

Examples
--------
>>> import numpy as np
>>> from softmax.losses import multinomial_loss
>>> z = np.array([[0.0, 0.0]])
>>> float(multinomial_loss(z, np.array([1]))[0])  # log(2)
0.6931471805599453
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "multinomial_gradient",
    "multinomial_hessian_product",
    "multinomial_loss",
    "multinomial_loss_gradient",
]

try:  # the fast in-place kernel of the FUNCTIONS layer
    from softmax._kernels import softmax_rows_
except ImportError:  # pragma: no cover - only while that module is missing

    def softmax_rows_(z: np.ndarray) -> np.ndarray:
        """Overwrite finite ``z`` by its row softmax; return the row logsumexp."""
        m = z.max(axis=1, keepdims=True)
        np.subtract(z, m, out=z)
        np.exp(z, out=z)
        s = z.sum(axis=1, dtype=np.float64)
        z /= s.astype(z.dtype)[:, None]
        return m[:, 0].astype(np.float64) + np.log(s)


def _rows(n: int) -> np.ndarray:
    return np.arange(n)


def multinomial_loss(
    raw: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted cross-entropy of each row.

    Parameters
    ----------
    raw : ndarray of shape (n_rows, n_classes)
        Finite logits (float32 or float64). Not modified.
    y : ndarray of shape (n_rows,)
        Integer label codes in ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_rows,), optional
        Row weights ``s_i``; None means all ones.

    Returns
    -------
    loss : ndarray of shape (n_rows,), float64
        ``s_i * (logsumexp(raw_i) - raw_i[y_i])``.
    """
    z = np.array(raw, dtype=np.result_type(raw.dtype, np.float32), order="C")
    zy = z[_rows(len(z)), y].astype(np.float64)
    lse = softmax_rows_(z)
    out = lse - zy
    if weights is not None:
        out *= weights
    return out


def multinomial_loss_gradient(
    raw: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted cross-entropy of each row and its gradient w.r.t. the logits.

    Parameters
    ----------
    raw : ndarray of shape (n_rows, n_classes)
        Finite logits, float32 or float64.
    y : ndarray of shape (n_rows,)
        Integer label codes.
    weights : ndarray of shape (n_rows,), optional
        Row weights; None means all ones.
    overwrite : bool, default False
        If True and ``raw`` is a C-contiguous float array, the gradient is
        written into ``raw`` (no allocation of the size of ``raw``): the hot
        path of :mod:`softmax.linear_loss` uses this.

    Returns
    -------
    loss : ndarray of shape (n_rows,), float64
    gradient : ndarray of shape (n_rows, n_classes), dtype of ``raw``
        ``s_i * (softmax(raw_i) - onehot(y_i))``.
    """
    if overwrite and raw.dtype in (np.float32, np.float64) and raw.flags.c_contiguous:
        z = raw
    else:
        z = np.array(raw, dtype=np.result_type(raw.dtype, np.float32), order="C")
    rows = _rows(len(z))
    zy = z[rows, y].astype(np.float64)
    lse = softmax_rows_(z)
    z[rows, y] -= 1
    loss = lse - zy
    if weights is not None:
        loss *= weights
        z *= weights.astype(z.dtype, copy=False)[:, None]
    return loss, z


def multinomial_gradient(
    raw: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of the weighted cross-entropy w.r.t. the logits.

    Parameters
    ----------
    raw : ndarray of shape (n_rows, n_classes)
    y : ndarray of shape (n_rows,)
    weights : ndarray of shape (n_rows,), optional

    Returns
    -------
    gradient : ndarray of shape (n_rows, n_classes)
        ``s_i * (softmax(raw_i) - onehot(y_i))``.
    """
    return multinomial_loss_gradient(raw, y, weights)[1]


def multinomial_hessian_product(
    proba: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Hessian of the weighted cross-entropy w.r.t. the logits, times ``v``, per row.

    Parameters
    ----------
    proba : ndarray of shape (n_rows, n_classes)
        ``softmax(raw)`` at the point where the Hessian is taken.
    v : ndarray of shape (n_rows, n_classes)
        One direction per row.
    weights : ndarray of shape (n_rows,), optional
        Row weights; None means all ones.
    out : ndarray of shape (n_rows, n_classes), optional
        Where to write the result (may be ``v`` itself).

    Returns
    -------
    hv : ndarray of shape (n_rows, n_classes)
        ``s_i * p_i * (v_i - p_i . v_i)``.
    """
    # p.v per row, in float64 (a sum of K products)
    pv = np.einsum("ij,ij->i", proba, v, dtype=np.float64)
    if out is None:
        out = np.empty(np.broadcast_shapes(proba.shape, v.shape), np.result_type(proba, v))
    np.subtract(v, pv.astype(out.dtype, copy=False)[:, None], out=out)
    out *= proba
    if weights is not None:
        out *= weights.astype(out.dtype, copy=False)[:, None]
    return out
