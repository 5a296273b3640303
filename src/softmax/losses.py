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

With label smoothing ``eps`` (PyTorch's definition) the target is
``t = (1 - eps) e_y + eps / K`` instead of ``e_y``:

.. math::

    \\ell(z) = s \\, (\\operatorname{logsumexp}(z) - t^\\top z), \\qquad
    \\nabla_z \\ell = s \\, (p - t),

and the Hessian is unchanged (``t`` sums to one and does not depend on ``z``).

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

# the in-place row (and class-major) kernels of the functions layer
from softmax._kernels import softmax_columns_, softmax_rows_

__all__ = [
    "check_label_smoothing",
    "multinomial_hessian_product",
    "multinomial_loss",
    "multinomial_residuals_",
]


def _true_class_index(
    z: np.ndarray, y: np.ndarray, rows: np.ndarray | None, class_major: bool = False
) -> np.ndarray:
    """Flat indices of ``z[i, y_i]`` (``z[y_i, i]`` class-major) in a C-contiguous ``z``.

    Cheaper than 2-D fancy indexing.
    """
    if class_major:
        k, n = z.shape
        flat = y * n
        flat += np.arange(n) if rows is None else rows[:n]
        return flat
    n, k = z.shape
    flat = (np.arange(n) if rows is None else rows[:n]) * k
    flat += y
    return flat


def _row_losses_(
    z: np.ndarray, flat: np.ndarray, eps: float = 0.0, class_major: bool = False
) -> np.ndarray:
    """``logsumexp(z_i) - t_i^T z_i`` per row (float64); ``z`` becomes ``softmax(z)``.

    ``class_major``: ``z`` holds one row of data per column (see
    :func:`multinomial_residuals_`).
    """
    axis = 0 if class_major else 1
    zy = z.ravel().take(flat).astype(np.float64)
    zsum = z.sum(axis=axis, dtype=np.float64) if eps else None
    # z now holds the probabilities
    lse = softmax_columns_(z) if class_major else softmax_rows_(z)
    lse -= zy
    if zsum is not None:
        _smooth_(lse, zy, zsum, eps, z.shape[axis])
    return lse


def _smooth_(lse: np.ndarray, zy: np.ndarray, zsum: np.ndarray, eps: float, k: int) -> None:
    """Turn ``lse - z_y`` into ``lse - t^T z`` in place, ``t = (1 - eps) e_y + eps / K``."""
    # lse - (1 - eps) z_y - eps/K sum_k z_k = (lse - z_y) + eps (z_y - mean_k z_k)
    zy -= zsum / k
    zy *= eps
    lse += zy


def check_label_smoothing(label_smoothing: object, *, upper_inclusive: bool = False) -> float:
    """``label_smoothing`` as a float; ValueError unless it is in [0, 1) (or [0, 1]).

    A fit refuses ``eps = 1``: its target is uniform whatever the label, so
    the data term no longer depends on ``y``.
    """
    bad = isinstance(label_smoothing, bool) or not isinstance(
        label_smoothing, (int, float, np.integer, np.floating)
    )
    eps = float("nan") if bad else float(label_smoothing)  # type: ignore[arg-type]
    ok = 0.0 <= eps <= 1.0 if upper_inclusive else 0.0 <= eps < 1.0
    if not ok:
        span = "[0, 1]" if upper_inclusive else "[0, 1) (1 makes the target uniform, whatever y)"
        raise ValueError(f"label_smoothing must be a number in {span}, got {label_smoothing!r}")
    return eps


def multinomial_loss(
    raw: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    label_smoothing: float = 0.0,
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
    label_smoothing : float in [0, 1), default 0.0
        ``eps``: the target is ``(1 - eps) e_y + eps / K``.

    Returns
    -------
    loss : ndarray of shape (n_rows,), float64
        ``s_i * (logsumexp(raw_i) - t_i^T raw_i)``.
    """
    z = np.array(raw, dtype=np.result_type(raw.dtype, np.float32), order="C")
    out = _row_losses_(z, _true_class_index(z, y, None), float(label_smoothing))
    if weights is not None:
        out *= weights
    return out


def multinomial_residuals_(
    z: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    need_residuals: bool = True,
    out: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    class_major: bool = False,
) -> float:
    """Summed weighted loss of a block of logit rows, and their residuals, in place.

    The residuals ``G = s (softmax(z) - onehot(y))`` are the gradient of the
    summed loss with respect to the logits: ``G^T [X 1]`` is the gradient
    with respect to the coefficients (:mod:`softmax.linear_loss`), and the
    stochastic solvers keep them per row. This is the one place they are
    computed for the batch and stochastic paths; the compiled pass of
    :mod:`softmax._numba_loss` is tested against it.

    Parameters
    ----------
    z : ndarray of shape (n_rows, n_classes)
        Finite logits, C-contiguous float32 or float64. Overwritten by the
        probabilities ``softmax(z)`` (which Hessian products reuse), or by
        ``G`` itself when ``out`` is None.
    y : ndarray of shape (n_rows,)
        Integer label codes ``0 .. n_classes - 1``.
    weights : ndarray of shape (n_rows,), optional
        Row weights ``s_i`` (float64); None means all ones.
    need_residuals : bool, default True
        False computes the loss alone (``z`` still becomes the probabilities).
    out : ndarray of shape (n_rows, n_classes), optional
        Where to write ``G`` (C-contiguous, dtype of ``z``) so that ``z``
        keeps the probabilities; None writes ``G`` into ``z``.
    rows : ndarray, optional
        ``np.arange(m)`` with ``m >= n_rows``, reused across calls to save an
        allocation.
    label_smoothing : float in [0, 1), default 0.0
        ``eps``: the target is ``t = (1 - eps) onehot(y) + eps / K`` (PyTorch's
        definition) and ``G = s (softmax(z) - t)``. Not checked here (the
        estimator and :class:`~softmax.backends._base.RowData` check it).
    class_major : bool, default False
        ``z`` (and ``out``) are transposed, of shape (n_classes, n_rows): one
        column per row of data. For a few classes the softmax over classes
        is then faster (:func:`softmax._kernels.softmax_columns_`), and
        ``G @ X`` is the gradient with respect to the weights.

    Returns
    -------
    loss : float
        ``sum_i s_i * (logsumexp(z_i) - t_i^T z_i)``, accumulated in float64.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 2))
    >>> loss = multinomial_residuals_(z, np.array([1]))
    >>> round(loss, 6), z.tolist()  # log(2), G = p - onehot
    (0.693147, [[0.5, -0.5]])
    """
    eps = float(label_smoothing)
    flat = _true_class_index(z, y, rows, class_major)
    lse = _row_losses_(z, flat, eps, class_major)
    loss = float(lse.sum() if weights is None else np.dot(weights, lse))
    if not need_residuals:
        return loss
    if out is None:
        G = z
    else:
        G = out
        np.copyto(G, z)
    if eps:
        G -= eps / z.shape[0 if class_major else 1]
        G.ravel()[flat] -= 1.0 - eps
    else:
        G.ravel()[flat] -= 1
    if weights is not None:
        w = weights.astype(G.dtype, copy=False)
        G *= w if class_major else w[:, None]
    return loss


def multinomial_hessian_product(
    proba: np.ndarray,
    v: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
    class_major: bool = False,
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
    class_major : bool, default False
        ``proba``, ``v`` and ``out`` are transposed, of shape (n_classes,
        n_rows) (see :func:`multinomial_residuals_`).

    Returns
    -------
    hv : ndarray of shape (n_rows, n_classes)
        ``s_i * p_i * (v_i - p_i . v_i)``.
    """
    # p.v per row, in float64 (a sum of K products)
    pv = np.einsum("ki,ki->i" if class_major else "ij,ij->i", proba, v, dtype=np.float64)
    if out is None:
        out = np.empty(np.broadcast_shapes(proba.shape, v.shape), np.result_type(proba, v))
    pv = pv.astype(out.dtype, copy=False)
    np.subtract(v, pv if class_major else pv[:, None], out=out)
    out *= proba
    if weights is not None:
        w = weights.astype(out.dtype, copy=False)
        out *= w if class_major else w[:, None]
    return out
