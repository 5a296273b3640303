"""In-place row-wise softmax kernels for finite 2-D arrays.

These are the hot loops under :mod:`softmax.functions` and the loss layers.
They assume what their callers have already checked: ``z`` is a 2-D,
C-contiguous float32 or float64 array of *finite* values. Special values
(``inf``, ``NaN``, masks, temperature) are handled one level up.

Why row blocks: the textbook ``exp(z - max) / sum`` makes four passes over
the data. Done on the whole array each pass streams it from main memory;
done on a block of rows that fits in the L2 cache, only the first read and
the last write touch memory and the other passes run from cache. That brings
the whole softmax close to the cost of ``np.exp`` alone.

Why column loops for short rows: NumPy reduces ``axis=-1`` of a C-contiguous
array with an inner loop of length ``K``; for ``K = 10`` that is a function
call per 10 numbers. Reducing with ``K`` elementwise ufunc calls over the
columns of the block (each a strided vector of block length) is several times
faster, and exact: the maximum is order independent and the sum of ``K``
terms is accumulated in float64.

When numba is installed (optional extra ``fast``) the compiled kernels of
:mod:`softmax._numba_kernels` are used instead for arrays of at least
``NUMBA_MIN_SIZE`` elements: one pass per row for the max, one fused
exp-and-sum pass with a vectorised ``exp``, one scaling pass, about twice as
fast as the NumPy path; :func:`rows_into` then reads ``x`` and writes ``out``
in that same pass (no separate copy). The NumPy path always works and is
always tested (set ``softmax._kernels.USE_NUMBA = False`` to force it).

Beyond the finite-input contract, both paths guarantee what
:mod:`softmax.functions` builds on (under ``np.errstate(all="ignore")``):
``-inf`` entries are exact (their exp is 0), and a row holding a NaN, a
``+inf`` or nothing but ``-inf`` gets a non-finite logsumexp (its values are
then garbage, to be recomputed by the caller).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["log_softmax_rows_", "softmax_columns_", "softmax_rows_"]

#: Bytes of rows processed together; a few passes over a block stay in L2.
BLOCK_BYTES = 128 * 1024
#: Rows at most this long are reduced by looping over columns (see module doc).
SHORT_ROW = 32
#: Use the numba kernels when numba imports (set False to force NumPy).
USE_NUMBA = True
#: Smaller arrays take the NumPy path: it is as fast there, and a small call
#: does not pay numba's import (~0.5-1 s once per process).
NUMBA_MIN_SIZE = 1 << 15


def _block_rows(z: np.ndarray) -> int:
    n, k = z.shape
    rows = BLOCK_BYTES // max(1, k * z.itemsize)
    # Short rows: larger blocks amortise the per-call overhead of the
    # column loop (2 K ufunc calls per block).
    if k <= SHORT_ROW:
        rows = max(rows, 4096)
    return max(1, min(n, rows))


def _row_max_sum_short(zb: np.ndarray, m: np.ndarray, s: np.ndarray, e: np.ndarray | None) -> None:
    """Column-loop reductions for a block ``zb`` of short rows.

    Writes the row max into ``m``, shifts ``zb`` by it in place, exponentiates
    (in place into ``zb``, or into ``e`` when given) and writes the row sums
    (float64) into ``s``.
    """
    k = zb.shape[1]
    np.copyto(m, zb[:, 0])
    for j in range(1, k):
        np.maximum(m, zb[:, j], out=m)
    np.subtract(zb, m[:, None], out=zb)
    dst = zb if e is None else e
    np.exp(zb, out=dst)
    np.copyto(s, dst[:, 0])
    for j in range(1, k):
        np.add(s, dst[:, j], out=s)


def _numpy_rows(z: np.ndarray, log: bool) -> np.ndarray:
    n, k = z.shape
    lse = np.empty(n, dtype=np.float64)
    if n == 0:
        return lse
    if k == 0:
        lse.fill(-np.inf)
        return lse
    if z.size <= 4096:
        # small input: a handful of whole-array ufunc calls beats any blocking
        m = np.max(z, axis=1)
        np.subtract(z, m[:, None], out=z)
        e = np.exp(z) if log else np.exp(z, out=z)
        s = np.sum(e, axis=1, dtype=np.float64)
        log_s = np.log(s)
        if log:
            np.subtract(z, log_s[:, None], out=z, casting="unsafe")
        else:
            np.divide(z, s[:, None], out=z, casting="unsafe")
        return np.add(m, log_s)
    step = _block_rows(z)
    short = k <= SHORT_ROW
    m_buf = np.empty(step, dtype=z.dtype)
    # Short rows: K-term sums accumulated in float64 (cheap, column loop).
    # Long rows: NumPy's pairwise summation in the input dtype (relative error
    # ~ log2(K) eps, terms in (0, 1]); an out= of another dtype would make the
    # reduction cast through buffers, several times slower.
    s_buf = np.empty(step, dtype=np.float64 if short else z.dtype)
    # log_softmax keeps z - max for the result, so exp goes to a scratch block
    e_buf = np.empty((step, k), dtype=z.dtype) if log else None
    for start in range(0, n, step):
        stop = min(n, start + step)
        r = stop - start
        zb = z[start:stop]
        m = m_buf[:r]
        s = s_buf[:r]
        e = None if e_buf is None else e_buf[:r]
        if short:
            _row_max_sum_short(zb, m, s, e)
        else:
            np.max(zb, axis=1, out=m)
            np.subtract(zb, m[:, None], out=zb)
            dst = zb if e is None else e
            np.exp(zb, out=dst)
            np.sum(dst, axis=1, out=s)
        log_s = np.log(s, dtype=np.float64)
        if log:
            # z - max - log(sum); subtract in the input dtype
            np.subtract(zb, log_s.astype(z.dtype, copy=False)[:, None], out=zb)
        else:
            np.divide(zb, s.astype(z.dtype, copy=False)[:, None], out=zb)
        np.add(m, log_s, out=lse[start:stop])
    return lse


def softmax_rows_(z: np.ndarray, *, load_compiled: bool = True) -> np.ndarray:
    """Overwrite ``z`` with its row-wise softmax; return the row logsumexp.

    Parameters
    ----------
    z : ndarray of shape (n_rows, n_classes)
        C-contiguous float32 or float64 array of finite values. Overwritten.
    load_compiled : bool, default True
        False: take the numba kernels only when they are loaded already. For
        one-off calls (a fit's preconditioner on a few classes, whose passes
        stay in NumPy): importing numba and loading a kernel costs about
        0.5 s and 40 MB of resident memory once per process, far more than
        the kernel saves on one call.

    Returns
    -------
    lse : ndarray of shape (n_rows,), float64
        ``log(sum(exp(z_original), axis=1))``; ``-inf`` for rows of length 0.
    """
    return _rows_(z, log=False, load_compiled=load_compiled)


def log_softmax_rows_(z: np.ndarray) -> np.ndarray:
    """Overwrite ``z`` with its row-wise log-softmax; return the row logsumexp.

    The contract of :func:`softmax_rows_`: ``z`` of shape (n_rows, n_classes),
    C-contiguous float32 or float64, finite values, overwritten; ``lse`` of
    shape (n_rows,), float64 (``-inf`` for rows of length 0).
    """
    return _rows_(z, log=True)


def softmax_columns_(z: np.ndarray) -> np.ndarray:
    """Overwrite ``z`` with its column-wise softmax; return the column logsumexp.

    The class-major layout of :func:`softmax_rows_`: one column per row of
    data, one row per class. For a few classes the reductions over the
    classes are then ``K`` elementwise operations on contiguous rows of
    ``z`` (no strided columns, no short inner loops), about three times
    faster than the row kernel's column loop for ``K = 10``. The sums of the
    ``K`` exponentials are accumulated in float64.

    Parameters
    ----------
    z : ndarray of shape (n_classes, n_rows)
        C-contiguous float32 or float64 array of finite values. Overwritten.

    Returns
    -------
    lse : ndarray of shape (n_rows,), float64
        ``log(sum(exp(z_original), axis=0))``; ``-inf`` when ``n_classes`` is 0.
    """
    _check(z)
    k, n = z.shape
    if k == 0 or n == 0:
        return np.full(n, -np.inf)
    m = np.maximum.reduce(z, axis=0)
    np.subtract(z, m, out=z)
    np.exp(z, out=z)
    s = np.add.reduce(z, axis=0, dtype=np.float64)
    np.divide(z, s.astype(z.dtype, copy=False), out=z)
    lse = np.log(s)
    lse += m
    return lse


def rows_into(x: np.ndarray, out: np.ndarray, log: bool) -> np.ndarray:
    """Row-wise (log-)softmax of finite ``x`` written to ``out``; ``x`` untouched.

    ``x`` and ``out``: 2-D, same shape, ``out`` C-contiguous float32/float64
    (``x`` any real dtype and layout; it is cast into ``out``). Copies one
    L2-sized block of rows at a time just before transforming it in place, so
    the copy costs one pass over memory and no temporary the size of ``x``.
    Returns the float64 row logsumexp.
    """
    n, k = out.shape
    if n == 0 or k == 0 or x is out:
        if x is not out:
            np.copyto(out, x, casting="unsafe")
        return _rows_(out, log)
    if (
        USE_NUMBA
        and out.size >= NUMBA_MIN_SIZE
        and x.dtype == out.dtype
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(x, out)
    ):
        nk = _numba()
        if nk is not None:
            try:
                # one pass: read x, write out (no separate copy)
                return nk.rows_into_(x, out, log)
            except Exception as exc:  # pragma: no cover - a broken numba/LLVM install
                _numba_failed(exc)
    step = max(1, (8 * BLOCK_BYTES) // max(1, k * out.itemsize))
    if step >= n:
        np.copyto(out, x, casting="unsafe")
        return _rows_(out, log)
    lse = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        stop = min(n, start + step)
        ob = out[start:stop]
        np.copyto(ob, x[start:stop], casting="unsafe")
        lse[start:stop] = _rows_(ob, log)
    return lse


def _rows_(z: np.ndarray, log: bool, load_compiled: bool = True) -> np.ndarray:
    _check(z)
    n, k = z.shape
    if n == 0 or k == 0:
        return np.full(n, -np.inf)
    use = USE_NUMBA and z.size >= NUMBA_MIN_SIZE and (load_compiled or bool(_NUMBA_STATE))
    nk = _numba() if use else None
    if nk is not None:
        try:
            return nk.rows_(z, log)
        except Exception as exc:  # pragma: no cover - a broken numba/LLVM install
            _numba_failed(exc)
    return _numpy_rows(z, log)


def _numba_failed(exc: Exception) -> None:  # pragma: no cover - a broken numba/LLVM install
    # The contract checks passed, so this is numba failing to compile or
    # load: fall back to NumPy for the rest of the session. The arrays are
    # untouched: the kernels fail at dispatch, before any write.
    _NUMBA_STATE[0] = None
    warnings.warn(
        f"softmax: the numba kernels failed ({exc!r}); using the NumPy kernels",
        RuntimeWarning,
        stacklevel=4,
    )


def _check(z: np.ndarray) -> None:
    # Cheap contract checks only (no pass over the data): these are internal.
    if not isinstance(z, np.ndarray) or z.ndim != 2:
        raise TypeError("softmax kernels need a 2-D numpy array")
    if z.dtype not in (np.float32, np.float64):
        raise TypeError(f"softmax kernels need float32 or float64, got {z.dtype}")
    if not z.flags.c_contiguous or not z.flags.writeable:
        raise ValueError("softmax kernels need a writeable C-contiguous array")


_NUMBA_STATE: list = []  # [] = not tried yet, [module] or [None] once tried


def _numba():
    """The numba kernels module, or None when numba is not installed."""
    if not _NUMBA_STATE:
        try:
            from softmax import _numba_kernels
        except ImportError:  # the optional extra "fast" is not installed
            _numba_kernels = None
        _NUMBA_STATE.append(_numba_kernels)
    return _NUMBA_STATE[0]
