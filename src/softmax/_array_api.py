"""Array API dispatch for the function family.

NumPy input (and Python scalars and lists) takes the NumPy fast path without
importing :mod:`array_api_compat`. Any other array of the Array API standard
(PyTorch, CuPy, JAX, ``array_api_strict``, ...) is handled through the
namespace that :mod:`array_api_compat` finds for it (optional extra
``array-api``), so the result is the same kind of array on the same device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["array_namespace", "is_numpy_namespace", "real_float_dtype"]

_INSTALL_HINT = (
    "softmax needs the optional package 'array-api-compat' for arrays that are not "
    "NumPy arrays; install it with: pip install softmax[array-api]"
)


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
    try:
        import array_api_compat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from exc
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


def is_numpy_namespace(xp: Any) -> bool:
    """True for NumPy itself (the fast path)."""
    return xp is np


def device_of(x: Any) -> Any:
    """The device of a non-NumPy array ``x`` (for creating arrays next to it)."""
    import array_api_compat

    return array_api_compat.device(x)


def real_float_dtype(xp: Any, x: Any) -> Any:
    """The real floating dtype to compute in for array ``x`` of namespace ``xp``.

    Floating input keeps its dtype; bool and integer input is computed in
    float64. Complex and other dtypes raise :class:`TypeError`.
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
        return xp.float64
    raise TypeError(f"unsupported dtype {dtype}: pass real numbers (float, int or bool)")
