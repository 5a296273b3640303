"""The L-BFGS two-loop recursion as compiled loops (optional extra ``fast``: numba).

Imported lazily by :class:`softmax.solvers.lbfgs.LBFGSMemory` when numba is
loaded already (the fused loss pass of big in-memory problems imports it). The NumPy loop
in ``LBFGSMemory.direction`` computes the same numbers (to rounding) and is
always available.

Why compile it: the recursion is ``4 m`` vector operations (a dot product and
an ``axpy`` per stored pair and loop), each a separate NumPy call with its own
temporary; with ``m = 50`` pairs of 7,850 float32 numbers (MNIST) the calls'
overhead is most of the 0.4 ms the NumPy loop takes per iteration. Here each
pair is one pass over its two rows while ``q`` stays in L1.

Dot products accumulate in the dtype of the pairs, in SIMD lanes ("reassoc"),
as BLAS ``sdot``/``ddot`` do on the NumPy path.
"""

from __future__ import annotations

import numba
import numpy as np

_FASTMATH = {"reassoc", "nsz", "contract", "arcp"}


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def first_loop(S, Y, rho, order, q, alpha):  # pragma: no cover - compiled
    """For ``i`` in ``order``: ``alpha_i = rho_i s_i.q``, ``q -= alpha_i y_i`` (in place)."""
    n = q.shape[0]
    c = np.zeros(1, q.dtype)  # scalars of q's dtype: the loops stay at SIMD width
    zero = c[0]
    for i in order:
        acc = zero
        for j in range(n):
            acc += S[i, j] * q[j]
        a = rho[i] * np.float64(acc)
        alpha[i] = a
        c[0] = a
        ca = c[0]
        for j in range(n):
            q[j] -= ca * Y[i, j]


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def second_loop(S, Y, rho, order, q, alpha):  # pragma: no cover - compiled
    """For ``i`` in reversed ``order``: ``q += (alpha_i - rho_i y_i.q) s_i`` (in place)."""
    n = q.shape[0]
    c = np.zeros(1, q.dtype)
    zero = c[0]
    for t in range(order.shape[0] - 1, -1, -1):
        i = order[t]
        acc = zero
        for j in range(n):
            acc += Y[i, j] * q[j]
        c[0] = alpha[i] - rho[i] * np.float64(acc)
        cb = c[0]
        for j in range(n):
            q[j] += cb * S[i, j]
