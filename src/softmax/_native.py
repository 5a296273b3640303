"""The libraries' own kernels behind the function family (PyTorch, JAX, CuPy).

:func:`softmax.functions.softmax`, ``log_softmax`` and ``logsumexp`` hand a
PyTorch tensor, a JAX array or a CuPy array to that library's fused kernel
(``torch.softmax``, ``torch.log_softmax``, ``torch.logsumexp``,
``jax.nn.softmax``, ``jax.nn.log_softmax``, ``jax.scipy.special.logsumexp``,
``cupyx.scipy.special.softmax`` / ``logsumexp``) whenever the kernel can give
the answer of the numerics policy: one axis, no mask, no weights, a positive
temperature, a real dtype (16-bit floats accumulate in float32). Everything
else takes the careful generic code of :mod:`softmax._generic`.

The kernels disagree with the policy only on *special rows*: a row holding a
NaN, a ``+inf``, or nothing but ``-inf`` (and a finite row whose ``x / T``
overflows for ``T < 1``). How each library finds and repairs them:

- **JAX**: one jitted function runs the kernel, then ``lax.cond`` on "is the
  first entry of any row NaN" (a reduction over one entry per row) chooses,
  on the device, between the kernel's result and the careful composition of
  every row (:func:`_jax_careful`). There is no host round trip in JAX's
  program, and it works under ``jax.jit``, ``grad`` and ``vmap``. Eager
  ``jax.nn.softmax`` runs op by op, so the jitted call is usually faster than
  the native call it wraps.
- **PyTorch, CuPy**: eager libraries cannot choose work on the device. Every
  special row comes back from their softmax kernels all NaN (the row's sum of
  exponentials is NaN, and every entry is divided by it or has its log
  subtracted), so one small reduction over the first entry of each row
  (``res[..., 0].sum()``) tells whether any row is special. Reading that one
  number is the only synchronisation; when it is NaN, only the special rows
  are recomputed by the generic code and written into the result. CuPy's
  ``log_softmax`` does not turn ``+inf`` rows all NaN, so for CuPy
  ``log_softmax`` is ``z - logsumexp(z)`` from ``cupyx``'s ``logsumexp``
  (the same passes over memory), and the check reads the row logsumexps.
- ``logsumexp`` needs no check: ``torch.logsumexp``,
  ``jax.scipy.special.logsumexp`` and ``cupyx``'s already give ``+inf``, NaN
  and ``-inf`` where the policy does. A temperature is applied as
  ``m + T * logsumexp((x - m) / T)`` with the row max ``m`` (finite rows; the
  special ones keep their value), which cannot overflow
  (:func:`softmax._generic.scaled`).

Set :data:`ENABLED` to False to send every array through the generic code
(the tests compare both paths on every case of the numerics table).
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from softmax._array_api import compute_dtype, library_of, real_float_dtype
from softmax._generic import generic_softmax, scaled

__all__ = ["ENABLED", "for_array"]

#: Hand PyTorch / JAX / CuPy arrays to their own kernels (False: generic code only).
ENABLED = True

_BACKENDS: dict[str, Any] = {}


def for_array(x: Any) -> Any:
    """The native backend for array ``x`` (an object with ``softmax`` and
    ``logsumexp`` methods), or None for NumPy and other arrays.

    The backend's methods return None when they decline a call (an axis they
    do not take, an empty axis, a dtype they do not have, ``T = 0``): the
    caller then runs the generic code.
    """
    if not ENABLED:
        return None
    lib = library_of(x)
    if lib is None or lib == "numpy":
        return None
    backend = _BACKENDS.get(lib)
    if backend is None:
        # the generic code, which a special row may need, runs through
        # array-api-compat: ask for it now rather than at the first NaN
        from softmax._array_api import _compat

        _compat()
        backend = _BACKENDS[lib] = _MAKERS[lib]()
    return backend or None


def _axis(x: Any, axis: Any) -> int | None:
    """``axis`` normalised for ``x``, or None when the native kernels should not take it."""
    if type(axis) is not int:
        return None
    nd = x.ndim
    if not -nd <= axis < nd:
        return None  # the generic code raises the AxisError with its advice
    axis %= nd
    if x.shape[axis] == 0:
        return None
    return axis


def _fix_rows(backend: Any, xf: Any, res: Any, bad: Any, axis: int, t: float, log: bool) -> Any:
    """Recompute the rows of ``res`` flagged by ``bad`` with the generic code.

    ``xf``: the float input; ``res``: the kernel's result (same shape);
    ``bad``: bool array of the shape of ``res`` without ``axis``. Only the
    flagged rows are gathered, recomputed and scattered back (out of place,
    so autograd sees an ordinary operation).
    """
    xp = backend.xp
    mx = xp.moveaxis(xf, axis, -1)
    shape = tuple(mx.shape)
    k = shape[-1]
    x2 = xp.reshape(mx, (-1, k))
    r2 = xp.reshape(xp.moveaxis(res, axis, -1), (-1, k))
    idx = xp.nonzero(xp.reshape(bad, (-1,)))[0]
    rows = xp.take(x2, idx, axis=0)
    work = compute_dtype(xp, rows.dtype)
    if rows.dtype != work:
        rows = xp.astype(rows, work)
    fixed = generic_softmax(xp, rows, t, log)
    if fixed.dtype != res.dtype:
        fixed = xp.astype(fixed, res.dtype)
    r2 = backend.put_rows(r2, idx, fixed)
    return xp.moveaxis(xp.reshape(r2, shape), -1, axis)


def _tempered_lse(xp: Any, lse: Any, xf: Any, axis: int, t: Any, keepdims: bool) -> Any:
    """``T * logsumexp(x / T)`` as ``m + T * logsumexp((x - m) / T)``, ``lse`` a native logsumexp.

    ``m`` is the row max where it is finite (0 on special rows, which keep the
    native answer: NaN, ``+inf`` or ``-inf``); see
    :func:`~softmax._generic.scaled`. ``xp`` needs ``where``, ``isfinite``,
    ``isinf`` and ``zeros_like`` as NumPy has them, and ``rowmax(x, axis)`` /
    ``squeeze(x, axis)`` (the spelling differs between libraries).
    """
    m = xp.rowmax(xf, axis)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    out = lse(scaled(xp, xf, m, t), axis, True) * t + m
    return out if keepdims else xp.squeeze(out, axis)


class _Ops:
    """The few array operations :func:`_tempered_lse` needs, from one library."""

    def __init__(self, mod: Any, rowmax: Any, squeeze: Any) -> None:
        self.where, self.isfinite, self.isinf = mod.where, mod.isfinite, mod.isinf
        self.zeros_like, self.rowmax, self.squeeze = mod.zeros_like, rowmax, squeeze


def _numpy_like_ops(mod: Any) -> _Ops:
    """:class:`_Ops` for NumPy-like modules (``jax.numpy``, ``cupy``)."""
    return _Ops(
        mod,
        lambda x, a: mod.max(x, axis=a, keepdims=True),
        lambda x, a: mod.squeeze(x, axis=a),
    )


class _Backend(abc.ABC):
    """One library's kernels: the checks every call makes before a kernel takes it."""

    @abc.abstractmethod
    def floating(self, x: Any) -> Any:
        """``x`` as a float array the kernels take, or None (the generic code decides)."""

    def accept(self, x: Any, axis: Any, t: float) -> tuple[int, Any] | None:
        """``(axis, x as floats)`` when the kernels take the call, else None.

        They decline ``T = 0`` (the hard max), an axis they do not take (a
        tuple, one out of range: the generic code handles or explains it), an
        empty axis and the dtypes :meth:`floating` refuses.
        """
        ax = _axis(x, axis)
        if ax is None or t == 0.0:
            return None
        xf = self.floating(x)
        return None if xf is None else (ax, xf)


class _Eager(_Backend):
    """PyTorch and CuPy: eager kernels, special rows repaired by the generic code.

    A subclass gives ``compat`` (array-api-compat's namespace for the library,
    which the generic code runs in), ``ops`` (:class:`_Ops`), :meth:`widen`,
    :meth:`cast`, :meth:`_lse` (the library's logsumexp) and :meth:`_softmax`
    (its softmax kernel and the check for special rows).
    """

    compat = ""
    ops: _Ops

    def __init__(self) -> None:
        self._xp: Any = None

    @property
    def xp(self) -> Any:
        """The array-api-compat namespace, imported on first use (special rows only)."""
        if self._xp is None:
            import importlib

            from softmax._array_api import _compat

            _compat()  # the install hint when array-api-compat is missing
            self._xp = importlib.import_module(self.compat)
        return self._xp

    @abc.abstractmethod
    def widen(self, xf: Any) -> Any:
        """``xf`` in float32 when it is a 16-bit float (the kernels accumulate there)."""

    @abc.abstractmethod
    def cast(self, a: Any, dtype: Any) -> Any:
        """``a`` as ``dtype`` (``a`` itself when it has that dtype)."""

    @abc.abstractmethod
    def _lse(self, z: Any, axis: int, keepdims: bool) -> Any:
        """The library's own logsumexp of ``z`` along ``axis``."""

    @abc.abstractmethod
    def _softmax(self, xf: Any, z: Any, ax: int, t: float, log: bool) -> Any:
        """The kernel on ``z = xf / T`` along ``ax``, special rows repaired (:func:`_fix_rows`)."""

    def softmax(self, x: Any, axis: Any, t: float, log: bool) -> Any:
        call = self.accept(x, axis, t)
        if call is None:
            return None
        ax, xf = call
        # 16-bit input: divide in float32 (x / T rounded to 8 bits would shift
        # every probability by up to 0.4% per unit of |x / T|)
        z = xf if t == 1.0 else self.widen(xf) / t
        return self._softmax(xf, z, ax, t, log)

    def logsumexp(self, x: Any, axis: Any, t: float, keepdims: bool) -> Any:
        call = self.accept(x, axis, t)
        if call is None:
            return None
        ax, xf = call
        if t == 1.0:
            return self._lse(xf, ax, keepdims)
        out = _tempered_lse(self.ops, self._lse, self.widen(xf), ax, t, keepdims)
        return self.cast(out, xf.dtype)


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


class _Torch(_Eager):
    """``torch.softmax`` / ``log_softmax`` / ``logsumexp`` with the check above."""

    compat = "array_api_compat.torch"

    def __init__(self) -> None:
        super().__init__()
        import torch

        self.torch = torch
        self.floats = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
        self.narrow = {torch.float16, torch.bfloat16}
        self.numpy_floats = {torch.float16, torch.float32, torch.float64}
        self.ops = _Ops(
            torch,
            lambda x, a: torch.amax(x, a, keepdim=True),
            lambda x, a: torch.squeeze(x, a),
        )

    def floating(self, x: Any) -> Any:
        dt = x.dtype
        if dt in self.floats:
            return x
        if dt.is_floating_point or dt.is_complex:
            return None  # float8, complex: the generic code explains or refuses
        return x.to(real_float_dtype(self.xp, x))  # bool, integers

    def widen(self, xf: Any) -> Any:
        return xf.float() if xf.dtype in self.narrow else xf

    def cast(self, a: Any, dtype: Any) -> Any:
        return a.to(dtype)

    def _lse(self, z: Any, axis: int, keepdims: bool) -> Any:
        return self.torch.logsumexp(z, axis, keepdim=keepdims)

    def put_rows(self, r2: Any, idx: Any, rows: Any) -> Any:
        return r2.index_copy(0, idx, rows)

    def _softmax(self, xf: Any, z: Any, ax: int, t: float, log: bool) -> Any:
        torch = self.torch
        res = torch.log_softmax(z, ax) if log else torch.softmax(z, ax)
        if res.dtype != xf.dtype:
            res = res.to(xf.dtype)
        plain = res.detach() if res.requires_grad else res  # no autograd graph for the check
        try:
            if plain.is_cpu and plain.dtype in self.numpy_floats:
                # on the host: a NumPy view reduces in a third of torch's call overhead
                col = plain.numpy()[(slice(None),) * ax + (0,)]
                flag = float(np.add.reduce(col, axis=None))
            else:
                flag = plain.select(ax, 0).sum().item()  # the one synchronisation
        except RuntimeError:  # pragma: no cover - vmap / tracing: no data on the host
            return None
        if flag == flag:
            return res
        bad = torch.isnan(plain.select(ax, 0))
        return _fix_rows(self, xf, res, bad, ax, t, log)


# --------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------


class _Jax(_Backend):
    """``jax.nn.softmax`` / ``log_softmax`` / ``jax.scipy.special.logsumexp``, jitted
    together with the policy's answer for special rows (no host round trip)."""

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self._fns: dict[tuple, Any] = {}

    def _jitted(self, kind: str, axis: int, flag: bool, t: float) -> Any:
        """The jitted function for one static setting, called as ``f(x)`` or ``f(x, t)``.

        ``T = 1`` takes no temperature argument: converting a Python float to
        a device scalar on every call costs about as much as a small softmax.
        """
        key = (kind, axis, flag, t == 1.0)
        fn = self._fns.get(key)
        if fn is None:
            mode = "plain" if t == 1.0 else "scaled"
            body = _jax_softmax if kind == "softmax" else _jax_logsumexp
            kw = {"axis": axis, "mode": mode, ("log" if kind == "softmax" else "keepdims"): flag}
            if mode == "plain":
                fn = self.jax.jit(lambda x: body(x, 1.0, **kw))
            else:
                fn = self.jax.jit(lambda x, t: body(x, t, **kw))
            self._fns[key] = fn
        return fn

    def floating(self, x: Any) -> Any:
        jnp = self.jnp
        dt = x.dtype
        if jnp.issubdtype(dt, jnp.floating):
            return x
        if jnp.issubdtype(dt, jnp.complexfloating) or not (
            jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.bool_)
        ):
            return None
        from softmax._array_api import array_namespace

        return x.astype(real_float_dtype(array_namespace(x), x))

    def _call(self, kind: str, x: Any, axis: Any, t: float, flag: bool) -> Any:
        call = self.accept(x, axis, t)
        if call is None:
            return None
        ax, xf = call
        fn = self._jitted(kind, ax, flag, t)
        return fn(xf) if t == 1.0 else fn(xf, t)

    def softmax(self, x: Any, axis: Any, t: float, log: bool) -> Any:
        return self._call("softmax", x, axis, t, log)

    def logsumexp(self, x: Any, axis: Any, t: float, keepdims: bool) -> Any:
        return self._call("logsumexp", x, axis, t, keepdims)


def _jax_softmax(x: Any, t: Any, *, axis: int, log: bool, mode: str) -> Any:
    """The native kernel; the careful composition only if a row came out NaN.

    ``jax.nn.softmax`` is called as it is, so that XLA fuses it as it fuses
    the library's own call (XLA's CPU backend matches its pattern to a single
    fused kernel). Special rows come out all NaN; ``lax.cond`` on "any first
    entry is NaN" (a reduction over one entry per row) runs
    :func:`_jax_careful` instead, on the device. With a temperature the
    kernel gets ``(x - max) / T`` (see :func:`~softmax._generic.scaled`), not
    ``x / T``.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    dtype = x.dtype
    work = jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype
    xw = x.astype(work)
    z = xw if mode == "plain" else scaled(jnp, xw, _safe_max(xw, axis), t)
    native = jax.nn.log_softmax(z, axis=axis) if log else jax.nn.softmax(z, axis=axis)
    special = jnp.any(jnp.isnan(lax.index_in_dim(native, 0, axis, keepdims=False)))
    out = lax.cond(
        special, lambda: _jax_careful(xw, t, axis=axis, log=log, mode=mode), lambda: native
    )
    return out.astype(dtype)


def _safe_max(xw: Any, axis: int) -> Any:
    import jax.numpy as jnp

    m = jnp.max(xw, axis=axis, keepdims=True)
    return jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))


def _jax_careful(xw: Any, t: Any, *, axis: int, log: bool, mode: str) -> Any:
    """(log-)softmax of every row by the numerics policy, in one max-exp-sum pass.

    Rows with a ``+inf`` are replaced by 0 on their ``+inf`` entries and
    ``-inf`` elsewhere (the limit: the mass split evenly); a NaN row keeps its
    NaN, which the sum spreads over the row; a row of ``-inf`` sums to 0 and
    gets 0 (``-inf`` for ``log_softmax``).
    """
    import jax.numpy as jnp

    m = jnp.max(xw, axis=axis, keepdims=True)  # NaN-propagating
    m_safe = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    z = xw - m_safe if mode == "plain" else scaled(jnp, xw, m_safe, t)
    y = jnp.where(m == jnp.inf, jnp.where(xw == jnp.inf, 0.0, -jnp.inf), z)
    e = jnp.exp(y)
    s = jnp.sum(e, axis=axis, keepdims=True)
    s = jnp.where(s == 0, jnp.ones_like(s), s)
    return y - jnp.log(s) if log else e / s


def _jax_logsumexp(x: Any, t: Any, *, axis: int, keepdims: bool, mode: str) -> Any:
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    dtype = x.dtype
    work = jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype
    xw = x.astype(work)
    if mode == "plain":
        out = logsumexp(xw, axis=axis, keepdims=keepdims)
    else:
        out = _tempered_lse(
            _numpy_like_ops(jnp),
            lambda z, a, k: logsumexp(z, axis=a, keepdims=k),
            xw,
            axis,
            t,
            keepdims,
        )
    return out.astype(dtype)


# --------------------------------------------------------------------------
# CuPy
# --------------------------------------------------------------------------


class _Cupy(_Eager):
    """``cupyx.scipy.special.softmax`` / ``logsumexp`` with the check above."""

    compat = "array_api_compat.cupy"

    def __init__(self) -> None:
        super().__init__()
        import cupy
        import cupyx.scipy.special as special

        self.cupy, self.special = cupy, special
        self.floats = {cupy.dtype(d) for d in (cupy.float16, cupy.float32, cupy.float64)}
        self.ops = _numpy_like_ops(cupy)

    def floating(self, x: Any) -> Any:
        if x.dtype in self.floats:
            return x
        if x.dtype.kind in "biu":
            return x.astype(self.cupy.float64)
        return None

    def widen(self, xf: Any) -> Any:
        return xf.astype(self.cupy.float32) if xf.dtype == self.cupy.float16 else xf

    def cast(self, a: Any, dtype: Any) -> Any:
        return a if a.dtype == dtype else a.astype(dtype)

    def _lse(self, z: Any, axis: int, keepdims: bool) -> Any:
        return self.special.logsumexp(z, axis=axis, keepdims=keepdims)

    def put_rows(self, r2: Any, idx: Any, rows: Any) -> Any:
        r2[idx] = rows  # r2 is (a view of) the fresh result, never the input
        return r2

    def _softmax(self, xf: Any, z: Any, ax: int, t: float, log: bool) -> Any:
        cupy = self.cupy
        if log:
            lse = self._lse(z, ax, True)
            res = z - lse
            flag = float(lse.sum())  # the one synchronisation: inf or NaN if a row is special
            special = not math.isfinite(flag)
        else:
            res = self.special.softmax(z, axis=ax)
            flag = float(res[(slice(None),) * ax + (0,)].sum())
            special = flag != flag
        res = self.cast(res, xf.dtype)
        if not special:
            return res
        if log:
            bad = ~cupy.isfinite(cupy.squeeze(lse, axis=ax))
        else:
            bad = cupy.isnan(res[(slice(None),) * ax + (0,)])
        return _fix_rows(self, xf, res, bad, ax, t, log)


def _make_cupy() -> Any:
    try:
        backend = _Cupy()
    except ImportError:  # pragma: no cover - cupy without cupyx.scipy
        return False
    if not hasattr(backend.special, "softmax"):  # pragma: no cover - CuPy < 13
        return False
    return backend


_MAKERS = {"torch": _Torch, "jax": _Jax, "cupy": _make_cupy}
