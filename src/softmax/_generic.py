"""The careful (log-)softmax and logsumexp along the last axis, in any array namespace.

This is the code that decides every special value of the numerics policy
(:mod:`softmax.functions`: NaN rows, ``+inf`` entries, rows of ``-inf``,
``T = 0``) with nothing but Array API operations, so it runs on NumPy, on
``array_api_strict`` and on the PyTorch, JAX and CuPy namespaces of
:mod:`array_api_compat`. It is used for

- the few NumPy rows the fast kernels flag (:mod:`softmax.functions`),
- every row of the Array API arrays without a native kernel,
- the special rows a library's own kernel gets wrong (:mod:`softmax._native`).

It sits below both :mod:`softmax.functions` and :mod:`softmax._native` and
imports neither: the dispatch layers build on it, never the other way round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["astype", "generic_logsumexp", "generic_softmax", "scaled"]


def scaled(xp: Any, x: Any, m: Any, t: Any) -> Any:
    """``(x - m) / T`` for a finite row max ``m`` (0 on special rows), never overflowing.

    Shifting first makes the largest entry exactly 0, whatever XLA fuses: a
    compiler that contracts ``x * (1/T) - max(x * (1/T))`` into a fused
    multiply-add compares an exact product with a rounded one, which for
    ``|x / T|`` beyond about 1e7 (float32) is off by more than 1 and beyond
    about 1e30 overflows ``exp`` (XLA on the CPU does this). Where ``x - m``
    itself overflows (opposite signs near the float range) the terms are
    divided first: the true value is then below ``-max_float / T``.
    """
    d = x - m
    return xp.where(xp.isinf(d) & xp.isfinite(x), x / t - m / t, d / t)


def generic_softmax(xp: Any, x: Any, t: float, log: bool) -> Any:
    """(log-)softmax of ``x`` along the last axis, handling every special value.

    ``x`` is a real floating array that may hold NaN and +-inf (masked entries
    already set to -inf). Used for Array API arrays without a native kernel,
    for the few NumPy rows the fast path flags and for the special rows of a
    native kernel.
    """
    dtype = x.dtype
    inf = float("inf")
    nan_row = xp.any(xp.isnan(x), axis=-1, keepdims=True)
    if t == 0.0:
        # Hard max: the mass is split over the entries equal to the row max
        # (the +inf entries when there are any); a row of -inf gets none.
        m = xp.max(x, axis=-1, keepdims=True)
        top = (x == m) & (m > -inf)
    else:
        top = x == inf
    count = xp.sum(astype(xp, top, dtype), axis=-1, keepdims=True)
    has_top = count > 0
    safe_count = xp.where(has_top, count, xp.ones_like(count))
    if t == 0.0:
        # every row is decided by its top entries (or is all -inf)
        if log:
            res = xp.where(top, -xp.log(safe_count), xp.full_like(x, -inf))
        else:
            res = astype(xp, top, dtype) / safe_count
    else:
        # The finite part of the computation sees NaN and +inf as -inf (their
        # rows are decided by the masks above), so no operation below makes
        # an inf or NaN that was not there: no RuntimeWarning in any library.
        xc = xp.where(top | xp.isnan(x), xp.full_like(x, -inf), x)
        m = xp.max(xc, axis=-1, keepdims=True)
        m_safe = xp.where(m > -inf, m, xp.zeros_like(m))
        # shift, then divide: x / T alone could overflow to +inf, and the
        # row's largest entry becomes exactly 0 (see scaled, also for where
        # x - max overflows)
        z = xc - m_safe if t == 1.0 else scaled(xp, xc, m_safe, t)
        e = xp.exp(z)
        s = xp.sum(e, axis=-1, keepdims=True)
        pos = s > 0
        safe_s = xp.where(pos, s, xp.ones_like(s))
        if log:
            finite_part = xp.where(pos, z - xp.log(safe_s), xp.full_like(x, -inf))
            top_part = xp.where(top, -xp.log(safe_count), xp.full_like(x, -inf))
        else:
            finite_part = e / safe_s
            top_part = astype(xp, top, dtype) / safe_count
        res = xp.where(has_top, top_part, finite_part)
    return xp.where(nan_row, xp.full_like(x, float("nan")), res)


def generic_logsumexp(xp: Any, x: Any, b: Any | None, t: float = 1.0) -> tuple[Any, Any]:
    """``T * log(sum(b * exp(x / T)))`` and its sign along the last axis, keepdims.

    Zero weights (and masked entries, set to -inf by the caller) are ignored,
    as in :func:`scipy.special.logsumexp`. The sign is 0 where the sum is 0.
    ``T = 0`` (no weights) is the limit, the row max: NaN for a NaN row.
    """
    dtype = x.dtype
    inf = float("inf")
    nan_row = xp.any(xp.isnan(x), axis=-1, keepdims=True)
    if t == 0.0:
        m = xp.max(xp.where(xp.isnan(x), xp.full_like(x, -inf), x), axis=-1, keepdims=True)
        nan = xp.full_like(m, float("nan"))
        sign = xp.where(m > -inf, xp.ones_like(m), xp.zeros_like(m))
        return xp.where(nan_row, nan, m), xp.where(nan_row, nan, sign)
    if b is not None:
        nan_row = nan_row | xp.any(xp.isnan(b), axis=-1, keepdims=True)
        zero = b == 0
        x = xp.where(zero, xp.full_like(x, -inf), x)
        b = xp.where(zero | xp.isnan(b), xp.zeros_like(b), b)
    posinf = x == inf
    # finite part: NaN and +inf entries count as -inf here (decided below)
    xc = xp.where(posinf | xp.isnan(x), xp.full_like(x, -inf), x)
    m = xp.max(xc, axis=-1, keepdims=True)
    m_safe = xp.where(m > -inf, m, xp.zeros_like(m))
    # as in generic_softmax: no intermediate overflows where the result is finite
    z = xc - m_safe if t == 1.0 else scaled(xp, xc, m_safe, t)
    e = xp.exp(z)
    if b is not None:
        e = e * b
        top = xp.sum(xp.where(posinf, b, xp.zeros_like(b)), axis=-1, keepdims=True)
    else:
        top = xp.sum(astype(xp, posinf, dtype), axis=-1, keepdims=True)
    s = xp.sum(e, axis=-1, keepdims=True)
    has_inf = xp.any(posinf, axis=-1, keepdims=True)
    sign = xp.where(has_inf, xp.sign(top), xp.sign(s))
    abs_s = xp.abs(s)
    safe_s = xp.where(abs_s > 0, abs_s, xp.ones_like(abs_s))
    log_s = xp.log(safe_s) if t == 1.0 else xp.log(safe_s) * t
    out = xp.where(abs_s > 0, log_s + m_safe, xp.full_like(s, -inf))
    # +inf terms dominate; +inf and -inf weights that cancel give NaN
    out = xp.where(
        has_inf, xp.where(top != 0, xp.full_like(s, inf), xp.full_like(s, float("nan"))), out
    )
    nan = xp.full_like(s, float("nan"))
    out = xp.where(nan_row, nan, out)
    sign = xp.where(nan_row | (has_inf & (top == 0)), nan, sign)
    return out, sign


def astype(xp: Any, x: Any, dtype: Any) -> Any:
    # np.astype is NumPy >= 2 only; the method works on every NumPy version
    return x.astype(dtype) if xp is np else xp.astype(x, dtype)
