r"""The softmax function family: exact on every input, and fast.

.. math::

    \operatorname{softmax}(x)_k = \frac{e^{x_k / T}}{\sum_j e^{x_j / T}}, \qquad
    \operatorname{logsumexp}(x) = \log \sum_j e^{x_j}

All functions work along one axis (``axis=-1`` by default; note that
:func:`scipy.special.softmax` uses the whole array by default; ``softmax``,
``log_softmax`` and ``logsumexp`` also take a tuple of axes or ``None``, the
whole array) and follow one numerics policy:

=========================  ==========================  =======================  ============
input                      softmax                     log_softmax              logsumexp
=========================  ==========================  =======================  ============
huge finite values         exact, no overflow          exact                    exact
some entries ``-inf``      those get 0                 ``-inf``                 ignored
all ``-inf`` / all masked  all 0                       all ``-inf``             ``-inf``
some entries ``+inf``      mass split evenly over the  ``-log(m)`` on the m     ``+inf``
                           m ``+inf`` entries          ``+inf``, ``-inf`` else
NaN in a row               that row all NaN            NaN                      NaN
empty axis                 empty                       empty                    ``-inf``
int / bool                 computed in float64
float16/32/64              same dtype out
temperature ``T``          ``softmax(x / T)``; ``T = 0`` is the hard max (ties split)
=========================  ==========================  =======================  ============

NumPy arrays take a fast path: finite rows go through the row-blocked kernels
of :mod:`softmax._kernels` (numba-compiled when the ``fast`` extra is
installed), and only rows whose logsumexp comes out non-finite (a NaN, a
``+inf``, or nothing but ``-inf``) are recomputed by the careful generic code.
Other Array API arrays (PyTorch, CuPy, JAX, ...) go through the generic code
in their own namespace and come back as the same kind of array on the same
device. No function ever writes into its input or emits a RuntimeWarning.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np

from softmax import _kernels, _native
from softmax._array_api import (
    array_namespace,
    asarray_like,
    compute_dtype,
    device_of,
    real_float_dtype,
)
from softmax._generic import astype, generic_logsumexp, generic_softmax

__all__ = [
    "cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]

ArrayLike = Any  # NumPy array-likes or any Array API array


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_temperature(temperature: Any) -> float:
    tp = type(temperature)
    if tp is float or tp is int:  # the common case, without the ABC checks below
        t = float(temperature)
        if 0.0 <= t < math.inf:  # False for NaN too
            return t
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(
        temperature, (numbers.Real, np.floating, np.integer)
    ):
        raise ValueError(
            f"temperature must be a real number >= 0, got {temperature!r}; "
            "use 1.0 for the plain softmax and 0 for the hard max"
        )
    t = float(temperature)
    if not math.isfinite(t) or t < 0:
        raise ValueError(
            f"temperature must be finite and >= 0, got {t!r}; use 0 for the hard-max "
            "limit and a large finite value for a nearly uniform distribution"
        )
    return t


def _normalize_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(
            f"axis {axis} is out of bounds for an array of dimension {ndim}; "
            f"pass an axis in [{-ndim}, {ndim - 1}]"
            + (" (a 0-d input has no axis: pass a 1-d array)" if ndim == 0 else "")
        )
    return axis % ndim


def _np_float(x: ArrayLike, name: str = "x") -> tuple[np.ndarray, np.dtype, np.dtype]:
    """``x`` as an ndarray, the dtype to compute in and the dtype to return."""
    a = np.asarray(x)
    kind = a.dtype.kind
    if kind == "f":
        out_dtype = a.dtype
    elif kind in "biu":
        out_dtype = np.dtype(np.float64)
    elif kind == "c":
        raise TypeError(
            f"complex input ({name}.dtype={a.dtype}) is not supported: the softmax family is "
            "defined for real numbers; pass the real part or the modulus instead"
        )
    else:
        raise TypeError(
            f"unsupported dtype {a.dtype} for {name}: pass real numbers (float, int or bool)"
        )
    # The kernels run in float32/float64; float16 (and longer floats, which
    # the kernels do not have) are computed in the nearest of the two.
    if out_dtype == np.float16:
        work = np.dtype(np.float32)
    elif out_dtype in (np.float32, np.float64):
        work = out_dtype
    else:
        work = np.dtype(np.float64)
    return a, work, out_dtype


def _broadcast_to(xp: Any, arr: Any, shape: tuple[int, ...], name: str) -> Any:
    try:
        return xp.broadcast_to(arr, shape)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name} of shape {tuple(arr.shape)} does not broadcast to the input's shape "
            f"{tuple(shape)}; give {name} the input's shape or one that broadcasts to it"
        ) from exc


def _np_mask(where: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(
            f"where must be a boolean mask (True = keep), got dtype {w.dtype}; "
            "use e.g. where=(mask != 0)"
        )
    return _broadcast_to(np, w, shape, "where")


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    if xp is np:
        return np.dtype(dtype).kind in {"integral": "iu", "real floating": "f"}[kind]
    return xp.isdtype(dtype, kind)


def _moveaxis(xp: Any, x: Any, src: int, dst: int) -> Any:
    if src % x.ndim == dst % x.ndim:
        return x
    return xp.moveaxis(x, src, dst)


# --------------------------------------------------------------------------
# NumPy fast path
# --------------------------------------------------------------------------


def _np_softmax(x, axis, t, where, out, log):
    a, work, out_dtype = _np_float(x)
    axis = _normalize_axis(axis, a.ndim)
    mask = None if where is None else _np_mask(where, a.shape)
    moved = _moveaxis(np, a, axis, -1)
    batch, k = moved.shape[:-1], moved.shape[-1]
    n = math.prod(batch)
    buf = np.empty((n, k), dtype=work)
    if out is not None:
        _check_out(out, a.shape, out_dtype)
    with np.errstate(all="ignore"):
        if mask is None and t == 1.0 and moved.flags.c_contiguous:
            # the common case: copy block by block just ahead of the kernel
            lse = _kernels.rows_into(moved.reshape(n, k), buf, log)
        else:
            buf3 = buf.reshape(moved.shape)
            np.copyto(buf3, moved, casting="unsafe")
            mmask = None
            if mask is not None:
                mmask = np.moveaxis(mask, axis, -1)
                np.copyto(buf3, -np.inf, where=~mmask)
            if t == 0.0:
                lse = np.full(n, np.nan)  # every row takes the generic path
            else:
                if t < 1.0 and k:
                    # shift first: x / T alone could overflow (see _generic.scaled)
                    buf -= np.max(buf, axis=1, keepdims=True)
                if t != 1.0:
                    buf /= t
                lse = _kernels._rows_(buf, log) if k else np.full(n, -np.inf)
        if k and not np.isfinite(lse).all():
            bad = np.flatnonzero(~np.isfinite(lse))
            if bad.size:
                rows = _take_rows(moved, bad, work, mask, axis)
                buf[bad] = generic_softmax(np, rows, t, log)
    res = _moveaxis(np, buf.reshape(moved.shape), -1, axis)
    if out is not None:
        np.copyto(out, res, casting="same_kind")
        return out
    if res.dtype != out_dtype:
        with np.errstate(over="ignore"):  # float16: beyond its range is +-inf
            res = res.astype(out_dtype)
    return res


def _take_rows(
    moved: np.ndarray, rows: np.ndarray, work: np.dtype, mask: np.ndarray | None, axis: int
) -> np.ndarray:
    """Rows (flat indices over the batch shape) of ``moved`` as (len(rows), K), masked."""
    batch = moved.shape[:-1]
    # index the original (possibly strided) array: reshaping it to 2-D could copy it all
    idx = np.unravel_index(rows, batch) if batch else (rows * 0,)
    src = moved if batch else moved[None]
    out = src[idx].astype(work)
    if mask is not None:
        mm = np.moveaxis(mask, axis, -1)
        out[~(mm if batch else mm[None])[idx]] = -np.inf
    return out


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError("out must be a NumPy array (out= is supported for NumPy input only)")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, but the result has shape {shape}")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"out has dtype {out.dtype}; the result ({dtype}) needs a float array")


#: Largest input (elements) the small-input fast path takes; at most the size
#: below which :func:`softmax._kernels._numpy_rows` uses the same whole-array
#: formula, so both paths give identical results.
_SMALL = 4096
_max_reduce = np.maximum.reduce
_add_reduce = np.add.reduce


def _np_small(x: Any, axis: Any, temperature: Any, log: bool) -> np.ndarray | None:
    """(log-)softmax of a small float ndarray along its last axis, or None.

    Per-call overhead dominates small inputs (a bandit draws from a (1, 10)
    softmax at every step): this path does the few whole-array operations
    directly (Python floats up to ``_TINY`` elements), after checks that
    cost no pass over the data beyond the row max. It returns None, for the
    general path, on anything else: other types, dtypes or layouts, axis,
    temperature, and rows whose max is not finite (NaN, +inf, all -inf; -inf
    entries elsewhere are exact here).
    """
    if (
        type(x) is not np.ndarray
        or x.dtype.char not in "fd"
        or not 0 < x.size <= _SMALL
        or x.ndim > 2
        or x.ndim == 0
        or type(axis) is not int
        or (axis != -1 and axis != x.ndim - 1)
        or type(temperature) not in (float, int)
        or temperature != 1
    ):
        return None
    if x.size <= _TINY:
        return _py_small(x, log)
    m = _max_reduce(x, axis=-1, keepdims=True)
    # errstate: x - m may overflow to -inf (exp gives 0, the limit); the sum
    # of the maxima may overflow (then the general path takes it: rare, fine)
    with np.errstate(all="ignore"):
        if not math.isfinite(_add_reduce(m, axis=None)):
            return None  # a NaN or +inf in some row, or a row of -inf only
        z = np.subtract(x, m)
        e = np.exp(z)
        s = _add_reduce(e, axis=-1, keepdims=True, dtype=np.float64)
        if log:
            return np.subtract(z, np.log(s), out=z, casting="unsafe")
        return np.divide(e, s, out=e, casting="unsafe")


#: Inputs up to this many elements are computed with Python floats: each
#: NumPy call costs about a microsecond whatever its size, a Python float
#: operation a few tens of nanoseconds (a (10,) softmax: 5.2 -> 2 us).
_TINY = 32
_exp, _log, _inf = math.exp, math.log, math.inf
_F32_MAX = float(np.finfo(np.float32).max)


def _py_small(x: np.ndarray, log: bool) -> np.ndarray | None:
    """(log-)softmax of a tiny 1-d or 2-d float array along its last axis, or None.

    Computed in Python floats (float64, so float32 input is rounded once at
    the end), the same formula as the kernels. None when a row's max is not
    finite (the general path decides those rows); a NaN after a row's first
    entry gives that row NaN here too, as it should (exp(NaN) is NaN, and so
    is the sum).
    """
    rows = x.tolist()
    if x.ndim == 1:
        rows = [rows]
    # float32 log_softmax can fall below -max_float32 (x = [-2e31, 3.4e38]);
    # the rounded answer is then -inf, and the cast must not warn about it
    narrow = log and x.dtype.char == "f"
    beyond = False
    out = []
    for r in rows:
        m = max(r)
        if not -_inf < m < _inf:
            return None
        # v - m rounds to -inf where the true value is below -max_float: exp 0
        if log:
            z = [v - m for v in r]
            ls = _log(sum([_exp(v) for v in z]))
            out.append([v - ls for v in z])
            if narrow and m - min(r) > _F32_MAX:
                beyond = True
        else:
            e = [_exp(v - m) for v in r]
            s = sum(e)
            out.append([v / s for v in e])
    res = out[0] if x.ndim == 1 else out
    if not beyond:
        return np.array(res, dtype=x.dtype)
    with np.errstate(over="ignore"):  # costs a microsecond: only when needed
        return np.array(res, dtype=x.dtype)


# --------------------------------------------------------------------------
# generic-namespace path
# --------------------------------------------------------------------------


def _xp_prepare(xp: Any, x: Any, axis: Any, where: Any) -> tuple[Any, int, Any]:
    """``x`` with ``axis`` moved last, in the dtype to compute in, masked entries -inf.

    Returns the moved array, the normalised axis and the result dtype (16-bit
    floats compute in float32 and are rounded back by the caller).
    """
    dtype = real_float_dtype(xp, x)
    axis = _normalize_axis(axis, x.ndim)
    work = compute_dtype(xp, dtype)
    xf = astype(xp, x, work) if x.dtype != work else x
    moved = _moveaxis(xp, xf, axis, -1)
    if where is not None:
        if where.dtype != xp.bool:
            raise TypeError(f"where must be a boolean mask (True = keep), got dtype {where.dtype}")
        w = _moveaxis(xp, _broadcast_to(xp, where, tuple(x.shape), "where"), axis, -1)
        moved = xp.where(w, moved, xp.full_like(moved, -float("inf")))
    return moved, axis, dtype


def _xp_softmax(xp, x, axis, t, where, out, log):
    if out is not None:
        raise TypeError("out= is supported for NumPy arrays only")
    moved, axis, dtype = _xp_prepare(xp, x, axis, where)
    if moved.shape[-1] == 0:  # an empty axis: an empty result (no max to take)
        return xp.astype(_moveaxis(xp, moved, -1, axis), dtype)
    # NumPy-backed namespaces (array_api_strict, ...) warn on overflow to
    # -inf in x - max, which is the correct limit here (exp gives 0)
    with np.errstate(all="ignore"):
        res = _moveaxis(xp, generic_softmax(xp, moved, t, log), -1, axis)
    return res if res.dtype == dtype else xp.astype(res, dtype)


# --------------------------------------------------------------------------
# several axes (or all: axis=None) folded into one
# --------------------------------------------------------------------------


class _Folded:
    """``x`` with the reduced axes moved last and merged into one of length K.

    ``axis=None`` (every axis, as :func:`scipy.special.softmax`'s default) or
    a tuple of axes: the one-axis code then runs on ``(..., K)`` rows, and
    :meth:`unfold` / :attr:`kept_shape` put results back in ``x``'s layout.
    """

    def __init__(self, xp: Any, x: Any, axis: Any) -> None:
        nd = x.ndim
        if axis is None:
            axes = tuple(range(nd))
        else:
            axes = tuple(_normalize_axis(a, nd) for a in axis)
            if len(set(axes)) != len(axes):
                raise ValueError(f"axis {axis!r} names an axis twice; list each axis once")
        keep = [i for i in range(nd) if i not in axes]
        self.xp, self.shape, self.axes = xp, tuple(x.shape), axes
        self.perm = (*keep, *axes)
        self.batch = tuple(self.shape[i] for i in keep)
        self.k = math.prod(self.shape[i] for i in axes)
        #: shape of a reduction with keepdims (1 on every reduced axis)
        self.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(self.shape))

    def _permute(self, a: Any, perm: tuple[int, ...]) -> Any:
        xp = self.xp
        return np.transpose(a, perm) if xp is np else xp.permute_dims(a, perm)

    def fold(self, a: Any, name: str = "x") -> Any:
        """``a`` (broadcast to ``x``'s shape) as rows of shape ``(..., K)``."""
        a = _broadcast_to(self.xp, a, self.shape, name)
        return self.xp.reshape(self._permute(a, self.perm), (*self.batch, self.k))

    def unfold(self, r: Any) -> Any:
        """Rows of shape ``(..., K)`` back to ``x``'s shape and axis order."""
        r = self.xp.reshape(r, (*self.batch, *(self.shape[i] for i in self.axes)))
        inverse = tuple(int(i) for i in np.argsort(self.perm))
        return self._permute(r, inverse)


def _several_axes(axis: Any) -> bool:
    return axis is None or isinstance(axis, tuple)


def _softmax_folded(x, axis, temperature, where, out, log):
    """(log-)softmax over ``axis=None`` or a tuple of axes."""
    xp = array_namespace(x, where)
    x = _like(xp, x, x)
    f = _Folded(xp, x, axis)
    w = None if where is None else f.fold(_like(xp, where, x), "where")
    fn = log_softmax if log else softmax
    res = f.unfold(fn(f.fold(x), -1, temperature=temperature, where=w))
    if out is None:
        return res
    if xp is not np:
        raise TypeError("out= is supported for NumPy arrays only")
    _check_out(out, tuple(res.shape), res.dtype)
    out[...] = res
    return out


def _softmax(x, axis, temperature, where, out, log):
    """(log-)softmax of any input the small-input path declined.

    A library's own kernel when it takes the call (:mod:`softmax._native`),
    else several axes folded into one, the NumPy path or the generic code in
    the array's namespace.
    """
    t = _check_temperature(temperature)
    if where is None and out is None:
        nat = _native.for_array(x)
        if nat is not None:
            res = nat.softmax(x, axis, t, log)
            if res is not None:
                return res
    if _several_axes(axis):
        return _softmax_folded(x, axis, t, where, out, log)
    xp = array_namespace(x, where)
    if xp is np:
        return _np_softmax(x, axis, t, where, out, log)
    return _xp_softmax(xp, x, axis, t, where, out, log)


# --------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------


def softmax(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> Any:
    r"""Softmax along one axis: ``exp(x / T) / sum(exp(x / T))``.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input (float16/32/64 kept; bool and int computed in float64).
        NumPy input or any Array API array (PyTorch, CuPy, JAX, ...).
    axis : int, tuple of int or None, default=-1
        The axis of length ``K`` to normalise over; a tuple normalises over
        those axes together, None over the whole array. Unlike
        :func:`scipy.special.softmax`, whose default is the whole array, the
        default is the last axis (one distribution per row).
    temperature : float, default=1.0
        ``T >= 0``. ``T = 0`` is the hard-max limit (the mass is split evenly
        over the entries tied for the maximum); large ``T`` tends to uniform.
    where : array_like of bool, optional
        Mask broadcastable to ``x``; ``False`` entries are left out of the
        normalisation and get 0. A fully masked row is all 0.
    out : ndarray, optional
        NumPy array of the result's shape to write into (may be ``x``).

    Returns
    -------
    ndarray of the shape of ``x``
        Non-negative, summing to 1 along ``axis`` (0 for rows with no
        unmasked finite-or-+inf entry), NaN for rows that contain a NaN.
        ``+inf`` entries share the mass evenly (the limit).

    Examples
    --------
    >>> import numpy as np
    >>> from softmax import softmax
    >>> np.round(softmax([1, 2, 3, 4, 1, 2, 3]), 3)
    array([0.024, 0.064, 0.175, 0.475, 0.024, 0.064, 0.175])
    >>> softmax([1.0, 3.0, 3.0], temperature=0)
    array([0. , 0.5, 0.5])
    """
    if where is None and out is None:
        # the small-input path first, inline: it exists for the per-call overhead
        res = _np_small(x, axis, temperature, log=False)
        if res is not None:
            return res
    return _softmax(x, axis, temperature, where, out, log=False)


def log_softmax(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> Any:
    r"""Logarithm of :func:`softmax`, computed directly: ``x/T - logsumexp(x/T)``.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input, as for :func:`softmax`.
    axis : int, tuple of int or None, default=-1
        Axis to normalise over; a tuple normalises over those axes together,
        None over the whole array (scipy's default).
    temperature : float, default=1.0
        ``T >= 0``; ``T = 0`` gives ``-log(m)`` on the ``m`` maxima, ``-inf``
        elsewhere.
    where : array_like of bool, optional
        Mask broadcastable to ``x``; masked entries get ``-inf``.
    out : ndarray, optional
        NumPy array of the result's shape to write into.

    Returns
    -------
    ndarray of the shape of ``x``
        Values ``<= 0``; ``-inf`` for entries with zero probability, NaN for
        rows containing a NaN.

    Examples
    --------
    >>> from softmax import log_softmax
    >>> log_softmax([1000.0, 1000.0])
    array([-0.69314718, -0.69314718])
    """
    if where is None and out is None:
        # the small-input path first, inline: it exists for the per-call overhead
        res = _np_small(x, axis, temperature, log=True)
        if res is not None:
            return res
    return _softmax(x, axis, temperature, where, out, log=True)


def logsumexp(
    x: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    where: ArrayLike | None = None,
    temperature: float = 1.0,
) -> Any:
    r"""``T * log(sum(b * exp(x / T)))`` along one axis, without overflow.

    With the default ``T = 1`` this is ``log(sum(b * exp(x)))``, as
    :func:`scipy.special.logsumexp`. The temperature ``T`` makes it the
    smooth maximum whose gradient is ``softmax(x, temperature=T)``:

    .. math::

        \operatorname{lse}_T(x) = T \log \sum_j b_j e^{x_j / T}, \qquad
        \max_j x_j \le \operatorname{lse}_T(x) \le \max_j x_j + T \log K
        \quad (b = 1),

    so ``T -> 0`` tends to the row maximum (``T = 0`` is that limit, as
    ``softmax(x, temperature=0)`` is the hard max) and ``log_softmax(x, T)``
    equals ``(x - lse_T(x)) / T``.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input.
    axis : int, tuple of int or None, default=-1
        Axis to reduce; a tuple reduces those axes, None the whole array
        (scipy's default).
    b : array_like, optional
        Weights broadcastable to ``x``; may be negative (then use
        ``return_sign``). Terms with ``b == 0`` are ignored, even where ``x``
        is ``inf``. Not raised to ``1 / T``.
    keepdims : bool, default=False
        Keep the reduced axis with length 1.
    return_sign : bool, default=False
        Also return the sign of the sum (0 where the sum is 0). Without it a
        negative sum gives NaN, as in :func:`scipy.special.logsumexp`.
    where : array_like of bool, optional
        Mask broadcastable to ``x``; only ``True`` entries are summed.
    temperature : float, default=1.0
        ``T >= 0``. ``T = 0`` gives the maximum of the (unmasked) entries;
        it does not take weights ``b`` (the limit would depend on how the
        weights of tied entries cancel).

    Returns
    -------
    lse : ndarray of shape (..., ...) (``x`` without ``axis``)
        ``-inf`` for empty or all ``-inf`` rows, ``+inf`` if a term is
        ``+inf``, NaN if a term is NaN. Same float dtype as ``x``.
    sign : ndarray, only with ``return_sign``
        +1, -1 or 0.

    Examples
    --------
    >>> from softmax import logsumexp
    >>> float(logsumexp([1e308, 1e308]))
    1e+308
    >>> logsumexp([0.0, 0.0], b=[1, -2], return_sign=True)
    (array(0.), array(-1.))
    >>> float(logsumexp([1.0, 3.0], temperature=0))
    3.0
    >>> round(float(logsumexp([1.0, 3.0], temperature=0.5)), 6)
    3.009075
    """
    t = _check_temperature(temperature)
    if t == 0.0 and b is not None:
        raise ValueError(
            "temperature=0 does not take weights b: the limit depends on how the weights "
            "of tied maxima cancel; pass a small positive temperature, or drop b"
        )
    if b is None and where is None and not return_sign:
        nat = _native.for_array(x)
        if nat is not None:
            res = nat.logsumexp(x, axis, t, keepdims)
            if res is not None:
                return res
    xp = array_namespace(x, b, where)
    if _several_axes(axis):
        x = _like(xp, x, x)
        f = _Folded(xp, x, axis)
        bf = None if b is None else f.fold(_like(xp, b, x), "b")
        wf = None if where is None else f.fold(_like(xp, where, x), "where")
        res = logsumexp(f.fold(x), -1, b=bf, return_sign=True, where=wf, temperature=t)
        reshape = f.kept_shape if keepdims else f.batch
        lse, sign = (xp.reshape(r, reshape) for r in res)
        return (lse, sign) if return_sign else lse
    if xp is np:
        lse, sign, ax = _np_logsumexp(x, axis, b, where, t, return_sign)
        if keepdims:
            lse = np.expand_dims(lse, ax)
            sign = np.expand_dims(sign, ax)
        return (lse, sign) if return_sign else lse

    moved, ax, dtype = _xp_prepare(xp, x, axis, where)
    bm = None
    if b is not None:
        bm = _broadcast_to(xp, _like(xp, b, x, moved.dtype), tuple(x.shape), "b")
        bm = _moveaxis(xp, bm, ax, -1)
        if where is not None:
            w = _moveaxis(xp, _broadcast_to(xp, where, tuple(x.shape), "where"), ax, -1)
            bm = xp.where(w, bm, xp.zeros_like(bm))
    if x.shape[ax] == 0:
        shape = (*moved.shape[:-1], 1)
        lse = xp.full(shape, -float("inf"), dtype=dtype, device=_device(x))
        sign = xp.zeros(shape, dtype=dtype, device=_device(x))
    else:
        with np.errstate(all="ignore"):  # see _xp_softmax
            lse, sign = generic_logsumexp(xp, moved, bm, t)
        if lse.dtype != dtype:
            lse, sign = xp.astype(lse, dtype), xp.astype(sign, dtype)
    if not return_sign:
        lse = xp.where(sign < 0, xp.full_like(lse, float("nan")), lse)
    if keepdims:
        lse, sign = _moveaxis(xp, lse, -1, ax), _moveaxis(xp, sign, -1, ax)
    else:
        lse, sign = lse[..., 0], sign[..., 0]
    return (lse, sign) if return_sign else lse


def _np_logsumexp(
    x: ArrayLike, axis: Any, b: Any, where: Any, t: float, return_sign: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """logsumexp and sign of NumPy input along one axis (reduced away), and the axis."""
    a, work, out_dtype = _np_float(x)
    ax = _normalize_axis(axis, a.ndim)
    mask = None if where is None else _np_mask(where, a.shape)
    moved = _moveaxis(np, a, ax, -1)
    batch, k = moved.shape[:-1], moved.shape[-1]
    with np.errstate(all="ignore"):
        if b is None:
            buf = np.empty(moved.shape, dtype=work)
            np.copyto(buf, moved, casting="unsafe")
            if mask is not None:
                np.copyto(buf, -np.inf, where=~np.moveaxis(mask, ax, -1))
            buf2 = buf.reshape(math.prod(batch), k)
            if not k:
                lse = np.full(buf2.shape[0], -np.inf)
            elif t == 0.0:
                lse = np.full(buf2.shape[0], np.nan)  # every row takes the generic path
            elif t == 1.0:
                lse = _kernels._rows_(buf2, True)
            elif t < 1.0:
                # shift, then divide (x / T alone could overflow); rows whose
                # max is not finite come out non-finite and are redone below
                m = np.max(buf2, axis=1)
                buf2 -= m[:, None]
                buf2 /= t
                lse = m + t * _kernels._rows_(buf2, True)
            else:
                buf2 /= t
                lse = t * _kernels._rows_(buf2, True)
            bad = np.flatnonzero(~np.isfinite(lse))
            if bad.size and k:
                rows = _take_rows(moved, bad, work, mask, ax)
                lse[bad] = generic_logsumexp(np, rows, None, t)[0][:, 0]
            lse = lse.reshape(batch)
            sign = np.where(np.isnan(lse), np.nan, np.where(lse == -np.inf, 0.0, 1.0))
        else:
            bb = np.asarray(b)
            if bb.dtype.kind not in "biuf":
                raise TypeError(f"b must be real numbers, got dtype {bb.dtype}")
            bb = _broadcast_to(np, bb, a.shape, "b").astype(work)
            xf = a.astype(work)
            if mask is not None:
                xf = np.where(mask, xf, -np.inf)
                bb = np.where(mask, bb, 0.0)
            if k == 0:
                lse, sign = np.full(batch, -np.inf, work), np.zeros(batch, work)
            else:
                lse, sign = generic_logsumexp(
                    np, _moveaxis(np, xf, ax, -1), _moveaxis(np, bb, ax, -1), t
                )
                lse, sign = lse[..., 0], sign[..., 0]
            if not return_sign:
                lse = np.where(sign < 0, np.nan, lse)
    with np.errstate(over="ignore"):  # float16: beyond its range is +-inf
        lse = lse.astype(out_dtype)
        sign = sign.astype(out_dtype)
    return lse, sign, ax


def _like(xp: Any, a: Any, ref: Any, dtype: Any = None) -> Any:
    """``a`` as an array of namespace ``xp`` on the device of ``ref`` (lists ok)."""
    return asarray_like(xp, a, ref, dtype)


def _device(x: Any) -> Any:
    return device_of(x)


def softmax_jacobian(x: ArrayLike, axis: int = -1, *, temperature: float = 1.0) -> Any:
    r"""Jacobian of :func:`softmax`: ``(diag(s) - s s^T) / T`` for each row.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input.
    axis : int, default=-1
        The softmax axis.
    temperature : float, default=1.0
        ``T > 0`` (the hard max ``T = 0`` has no useful derivative).

    Returns
    -------
    J : ndarray of shape (B..., K, K)
        ``J[..., i, j] = d softmax(x)_i / d x_j``, where ``B...`` is the shape
        of ``x`` without ``axis``. Symmetric.

    Examples
    --------
    >>> from softmax import softmax_jacobian
    >>> softmax_jacobian([0.0, 0.0])
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    t = _check_grad_temperature(temperature)
    xp = array_namespace(x)
    s = softmax(x, axis, temperature=t)
    ax = _normalize_axis(axis, s.ndim)
    s = _moveaxis(xp, s, ax, -1)
    si = s[..., :, None]
    sj = s[..., None, :]
    k = s.shape[-1]
    eye = xp.eye(k, dtype=s.dtype) if xp is np else xp.eye(k, dtype=s.dtype, device=_device(s))
    jac = si * eye - si * sj
    return jac / t if t != 1.0 else jac


def _check_grad_temperature(temperature: Any) -> float:
    t = _check_temperature(temperature)
    if t == 0.0:
        raise ValueError(
            "temperature=0 is the hard max, which is piecewise constant: its derivative "
            "is 0 or undefined; pass a small positive temperature instead"
        )
    return t


def _softmax_product(x: ArrayLike, v: ArrayLike, axis: int, t: float, name: str) -> Any:
    xp = array_namespace(x, v)
    s = softmax(x, axis, temperature=t)
    if xp is np:
        va = np.asarray(v)
        if va.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numbers, got dtype {va.dtype}")
        va = _broadcast_to(np, va, s.shape, name)
        with np.errstate(all="ignore"):
            dot = np.sum(s * va, axis=axis, keepdims=True)
            res = s * (va - dot)
            if t != 1.0:
                res /= t
        return res.astype(s.dtype, copy=False)
    va = _broadcast_to(xp, _like(xp, v, s, s.dtype), tuple(s.shape), name)
    with np.errstate(all="ignore"):  # NumPy-backed namespaces: 0 * inf in v is NaN
        dot = xp.sum(s * va, axis=_normalize_axis(axis, s.ndim), keepdims=True)
        res = s * (va - dot)
        return res / t if t != 1.0 else res


def softmax_jvp(x: ArrayLike, v: ArrayLike, axis: int = -1, *, temperature: float = 1.0) -> Any:
    r"""Jacobian-vector product ``J v`` of :func:`softmax`, in O(K) per row.

    ``J v = s * (v - sum(s * v)) / T`` along ``axis``, without forming ``J``.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input.
    v : array_like, broadcastable to the shape of ``x``
        Tangent vectors (one per row along ``axis``).
    axis : int, default=-1
        The softmax axis.
    temperature : float, default=1.0
        ``T > 0``.

    Returns
    -------
    ndarray of the shape of ``x``

    Examples
    --------
    >>> from softmax import softmax_jvp
    >>> softmax_jvp([0.0, 0.0], [1.0, 0.0])
    array([ 0.25, -0.25])
    """
    t = _check_grad_temperature(temperature)
    return _softmax_product(x, v, axis, t, "v")


def softmax_vjp(x: ArrayLike, g: ArrayLike, axis: int = -1, *, temperature: float = 1.0) -> Any:
    r"""Vector-Jacobian product ``g^T J`` of :func:`softmax`, in O(K) per row.

    The softmax Jacobian is symmetric, so this equals :func:`softmax_jvp`:
    ``s * (g - sum(s * g)) / T`` along ``axis``. It is what backpropagation
    through a softmax computes.

    Parameters
    ----------
    x : array_like of shape (..., K, ...)
        Real input.
    g : array_like, broadcastable to the shape of ``x``
        Cotangent vectors (gradients with respect to the softmax output).
    axis : int, default=-1
        The softmax axis.
    temperature : float, default=1.0
        ``T > 0``.

    Returns
    -------
    ndarray of the shape of ``x``
        The gradient with respect to ``x``.

    Examples
    --------
    >>> from softmax import softmax_vjp
    >>> softmax_vjp([0.0, 0.0], [1.0, 0.0])
    array([ 0.25, -0.25])
    """
    t = _check_grad_temperature(temperature)
    return _softmax_product(x, g, axis, t, "g")


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    axis: int = -1,
    *,
    sample_weight: ArrayLike | None = None,
    class_weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Any:
    r"""Cross-entropy between ``softmax(logits)`` and targets, from :func:`log_softmax`.

    Never computed as the log of a softmax, so it stays finite for logits of
    any size. Follows :func:`torch.nn.functional.cross_entropy`.

    Parameters
    ----------
    logits : array_like of shape (..., C, ...)
        Unnormalised scores; ``axis`` is the class axis.
    target : array_like
        Either integer class indices of shape ``logits.shape`` without
        ``axis`` (values in ``[0, C)``), or probability rows of the shape of
        ``logits`` (non-negative, summing to 1 along ``axis``).
    axis : int, default=-1
        The class axis.
    sample_weight : array_like of shape (...), optional
        One non-negative weight per sample (the shape of ``logits`` without
        ``axis``).
    class_weight : array_like of shape (C,), optional
        One weight per class, applied as in PyTorch's ``weight=``.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the target with the uniform distribution: ``(1 - eps) y + eps / C``.
        ``eps = 1`` is accepted, as in PyTorch: this function only evaluates a
        loss. ``SoftmaxRegression(label_smoothing=...)`` trains on the same
        target but refuses 1 (the objective would then ignore the labels), and
        its ``class_weight`` weighs a whole row by its label's weight, where
        ``class_weight`` here weighs each class's term of the smoothed sum
        (PyTorch's ``weight=``); without class weights the two agree.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"`` returns one loss per sample. ``"mean"`` with class indices
        is the weighted mean ``sum(w_i l_i) / sum(w_i)`` with
        ``w_i = sample_weight_i * class_weight[y_i]`` (PyTorch's rule); with
        probability targets it is ``sum(sample_weight_i l_i) / sum(sample_weight_i)``
        (PyTorch divides by the number of samples).

    Returns
    -------
    float array (0-d) or ndarray of shape (...)
        The loss. ``0 * log(0)`` counts as 0, so probability targets with
        zeros where the model puts no mass give finite losses. The mean of
        no samples (or of samples whose weights are all 0) is NaN.

    Examples
    --------
    >>> from softmax import cross_entropy
    >>> round(float(cross_entropy([[2.0, 0.0], [0.0, 2.0]], [0, 1])), 6)
    0.126928
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    xp = array_namespace(logits, target, sample_weight, class_weight)
    if xp is np:
        logits = np.asarray(logits)
    target = _like(xp, target, logits)
    logp = log_softmax(logits, axis)
    ax = _normalize_axis(axis, logp.ndim)
    logp = _moveaxis(xp, logp, ax, -1)
    dtype = logp.dtype
    c = logp.shape[-1]
    batch = tuple(logp.shape[:-1])
    dev = None if xp is np else _device(logp)

    def asarr(a: Any) -> Any:
        return _like(xp, a, logp, dtype)

    cw = None
    if class_weight is not None:
        cw = asarr(class_weight)
        if tuple(cw.shape) != (c,):
            raise ValueError(
                f"class_weight must have one entry per class, shape ({c},); "
                f"got shape {tuple(cw.shape)}"
            )
    sw = None
    if sample_weight is not None:
        sw = asarr(sample_weight)
        sw = _broadcast_to(xp, sw, batch, "sample_weight")
        if bool(xp.any(sw < 0)):
            raise ValueError("sample_weight must be non-negative")

    tshape = tuple(target.shape)
    if tshape == tuple(logits.shape) and c > 0 and _isdtype(xp, target.dtype, "real floating"):
        # probability rows
        p = _moveaxis(xp, astype(xp, target, dtype), ax, -1)
        tol = max(1e-6, 100 * float(xp.finfo(dtype).eps))
        if bool(xp.any(xp.isnan(p))) or bool(xp.any(p < 0)):
            raise ValueError("probability targets must be non-negative numbers (no NaN)")
        if bool(xp.any(xp.abs(xp.sum(p, axis=-1) - 1) > tol)):
            raise ValueError(
                "probability targets must sum to 1 along the class axis; normalise them "
                "(p / p.sum(axis, keepdims=True)) or pass integer class indices"
            )
        if eps:
            p = p * (1 - eps) + eps / c
        # 0 * log 0 = 0: a class with no target mass contributes nothing,
        # even where the model gives it none (logp = -inf)
        weight = p if cw is None else p * cw
        terms = weight * xp.where(weight > 0, logp, xp.zeros_like(logp))
        loss = -xp.sum(terms, axis=-1)
        denom_w = xp.ones_like(loss)
    else:
        if tshape != batch:
            raise ValueError(
                f"target of shape {tshape} fits neither class indices (shape {batch}: the "
                f"logits' shape without axis {ax}) nor probability rows (shape "
                f"{tuple(logits.shape)})"
            )
        if _isdtype(xp, target.dtype, "integral"):
            y = target
        elif _isdtype(xp, target.dtype, "real floating") and bool(
            xp.all(target == xp.round(target))
        ):
            y = astype(xp, target, xp.int64)  # integral floats: class indices
        else:
            raise TypeError(
                f"class-index targets must be integers, got dtype {target.dtype}; "
                "pass probability rows of the logits' shape for soft targets"
            )
        # one check (one device synchronisation) for the whole range
        if math.prod(tshape) and bool(xp.any((y < 0) | (y >= c))):
            raise ValueError(
                f"class indices must be in [0, {c}) for {c} classes; got values in "
                f"[{int(xp.min(y))}, {int(xp.max(y))}]"
            )
        if hasattr(xp, "take_along_axis"):
            # gather one entry per sample instead of masking all C of them
            yi = y if _isdtype(xp, y.dtype, "integral") else astype(xp, y, xp.int64)
            nll = -xp.take_along_axis(logp, yi[..., None], axis=-1)[..., 0]
            wy = None
            if cw is not None:
                wy = xp.reshape(xp.take(cw, xp.reshape(yi, (-1,)), axis=0), batch)
        else:  # pragma: no cover - namespaces before the 2024.12 standard
            classes = xp.arange(c) if xp is np else xp.arange(c, device=dev)
            onehot = y[..., None] == classes
            nll = -xp.sum(xp.where(onehot, logp, xp.zeros_like(logp)), axis=-1)
            wy = None
            if cw is not None:
                wy = xp.sum(xp.where(onehot, cw, xp.zeros_like(logp)), axis=-1)
        if cw is not None:
            # zero weight: the sample counts for nothing, even at logp = -inf
            nll = wy * xp.where(wy != 0, nll, xp.zeros_like(nll))
        else:
            wy = xp.ones_like(nll)
        loss = nll
        if eps:
            if cw is not None:
                zero_w = xp.zeros_like(logp)
                smooth = -xp.sum(cw * xp.where(cw != 0, logp, zero_w), axis=-1)
            else:
                smooth = -xp.sum(logp, axis=-1)
            loss = (1 - eps) * nll + (eps / c) * smooth
        denom_w = wy
    if sw is not None:
        loss = sw * xp.where(sw != 0, loss, xp.zeros_like(loss))
        denom_w = denom_w * sw
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if reduction == "sum":
        return total
    # no samples, or all weights 0: the mean is undefined, NaN (as in torch)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / xp.sum(denom_w)
