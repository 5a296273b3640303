"""Array API helpers: which library an array comes from, its namespace, device, dtypes.

NumPy input (and Python scalars and lists) takes the NumPy fast path without
importing :mod:`array_api_compat`. Any other array of the Array API standard
(PyTorch, CuPy, JAX, ``array_api_strict``, ...) is handled through the
namespace that :mod:`array_api_compat` finds for it (optional extra
``array-api``), so results are the same kind of array on the same device.

These helpers are general (they know nothing of softmax): the function family
uses them, and so can any layer that computes on the caller's arrays.

- :func:`array_namespace`: the namespace of a call's arrays (``numpy`` itself
  for NumPy-like input).
- :func:`library_of`: ``"numpy"``, ``"torch"``, ``"jax"``, ``"cupy"`` or
  ``None``, from the array's type alone (no import, no namespace lookup), for
  dispatch to a library's own kernels.
- :func:`device_of`, :func:`asarray_like`: create arrays next to another one.
- :func:`real_float_dtype`, :func:`compute_dtype`: the dtype a result has and
  the dtype to accumulate in (float32 for 16-bit floats).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = [
    "array_namespace",
    "asarray_like",
    "compute_dtype",
    "device_of",
    "is_numpy_namespace",
    "library_of",
    "real_float_dtype",
]


def _is_numpy_like(a: Any) -> bool:
    # Anything NumPy itself would take as data: ndarrays, NumPy scalars,
    # Python numbers and (nested) lists/tuples. None stands for "no argument".
    return a is None or isinstance(a, (np.ndarray, np.generic, int, float, bool, list, tuple))


def array_namespace(*arrays: Any) -> Any:
    """Return the array namespace of ``arrays`` (``numpy`` for NumPy input).

    Parameters
    ----------
    *arrays : array-like or None
        The arrays of one call; ``None`` entries are ignored.

    Returns
    -------
    xp : module
        :mod:`numpy` itself when every argument is NumPy-like, otherwise the
        :mod:`array_api_compat` namespace of the arrays.

    Raises
    ------
    ImportError
        For non-NumPy arrays when ``array-api-compat`` is not installed.
    TypeError
        When the arrays come from different libraries.
    """
    if all(_is_numpy_like(a) for a in arrays):
        return np
    array_api_compat = _compat()
    # Python scalars and lists mixed with library arrays are allowed: the
    # callers convert them with xp.asarray next to the library array.
    others = [
        a for a in arrays if a is not None and not isinstance(a, (int, float, bool, list, tuple))
    ]
    try:
        return array_api_compat.array_namespace(*others)
    except TypeError as exc:
        raise TypeError(
            "all array arguments must come from the same array library "
            f"(got {sorted({type(a).__module__ + '.' + type(a).__name__ for a in others})}); "
            "convert them to one kind first"
        ) from exc


def _compat() -> Any:
    try:
        import array_api_compat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from softmax._optional import install_hint

        raise ImportError(
            "softmax needs the optional package array-api-compat for arrays that are "
            f"not NumPy arrays; install it with: {install_hint('array-api-compat')}"
        ) from exc
    return array_api_compat


def is_numpy_namespace(xp: Any) -> bool:
    """True for NumPy itself (the fast path)."""
    return xp is np


#: type -> library name (or None), filled on first sight of each type
_LIBRARY_BY_TYPE: dict[type, str | None] = {np.ndarray: "numpy"}


def library_of(x: Any) -> str | None:
    """The array library ``x`` belongs to, from its type, without importing anything.

    Parameters
    ----------
    x : object
        Any object.

    Returns
    -------
    str or None
        ``"numpy"`` for :class:`numpy.ndarray`, ``"torch"`` for
        :class:`torch.Tensor` (and subclasses), ``"jax"`` for :class:`jax.Array`
        (tracers included), ``"cupy"`` for :class:`cupy.ndarray`; ``None`` for
        anything else. A library that is not imported yet cannot own ``x``, so
        this never imports one. The answer is cached per type (a dict lookup
        after the first call).
    """
    tp = type(x)
    try:
        return _LIBRARY_BY_TYPE[tp]
    except KeyError:
        pass
    name = None
    for lib, attr in (("torch", "Tensor"), ("jax", "Array"), ("cupy", "ndarray")):
        mod = sys.modules.get(lib)
        cls = getattr(mod, attr, None) if mod is not None else None
        if cls is not None and isinstance(x, cls):
            name = lib
            break
    if name is None and isinstance(x, np.ndarray):
        name = "numpy"
    _LIBRARY_BY_TYPE[tp] = name
    return name


def device_of(x: Any) -> Any:
    """The device of a non-NumPy array ``x`` (for creating arrays next to it)."""
    return _compat().device(x)


def asarray_like(xp: Any, a: Any, ref: Any, dtype: Any = None) -> Any:
    """``a`` as an array of namespace ``xp`` on the device of ``ref``.

    Parameters
    ----------
    xp : module
        The namespace of ``ref``.
    a : array_like
        An array of ``xp``, or Python numbers / (nested) lists.
    ref : array
        The array whose device the result lives on.
    dtype : dtype, optional
        Cast to this dtype (arrays of ``xp`` are cast only when it differs).
    """
    if xp is np:
        return np.asarray(a, dtype=dtype)
    if isinstance(a, (int, float, bool, list, tuple)):
        return xp.asarray(a, dtype=dtype, device=device_of(ref))
    return a if dtype is None or a.dtype == dtype else xp.astype(a, dtype)


def real_float_dtype(xp: Any, x: Any) -> Any:
    """The real floating dtype a result for array ``x`` of namespace ``xp`` has.

    Floating input keeps its dtype (bfloat16 and float16 included). Bool and
    integer input gives float64 where ``x``'s device supports it, else the
    namespace's default real floating dtype (JAX without ``jax_enable_x64``,
    Apple's MPS devices). Complex and other dtypes raise :class:`TypeError`.
    """
    dtype = x.dtype
    if xp.isdtype(dtype, "real floating"):
        return dtype
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(
            f"complex input ({dtype}) is not supported: the softmax family is defined for "
            "real numbers; pass the real part or the modulus instead"
        )
    if xp.isdtype(dtype, ("bool", "integral")):
        return _widest_float(xp, x)
    raise TypeError(f"unsupported dtype {dtype}: pass real numbers (float, int or bool)")


def _widest_float(xp: Any, x: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:  # pragma: no cover - namespaces before the 2023.12 standard
        return xp.float64
    try:
        inf = info()
        dev = device_of(x)
        if "float64" in inf.dtypes(device=dev, kind="real floating"):
            return xp.float64
        return inf.default_dtypes(device=dev)["real floating"]
    except (TypeError, ValueError, AttributeError):  # pragma: no cover - partial info objects
        return xp.float64


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype to compute in for real floating ``dtype``: float32 for 16-bit floats.

    Sums of exponentials in bfloat16 or float16 lose most of their digits (and
    float16 overflows at 65504), so narrower floats accumulate in float32 and
    only the result is rounded back; float32 and float64 compute in themselves.
    """
    if xp is np:
        return np.dtype(np.float32) if np.dtype(dtype).itemsize < 4 else np.dtype(dtype)
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype
