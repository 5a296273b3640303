r"""Blocked information matrix, score outer products and marginal-effect Jacobians.

The statistics of :mod:`softmax.inference` are computed in the baseline-category
(reference class) parametrisation: with ``K`` classes, a reference class ``r``
and ``tilde x_i = (x_i, 1)`` (the 1 only when the model has an intercept),
the free coefficients are ``theta_k = beta_k - beta_r`` for the ``K - 1`` other
classes, flattened class-major (index ``k' * q + j`` with ``q = p + intercept``,
``k'`` counting the non-reference classes in ``classes_`` order). For the
weighted log-likelihood ``sum_i s_i log p_{i y_i}``:

.. math::

    \text{score} = \sum_i s_i (e_i - p_i) \otimes \tilde x_i, \qquad
    I = \sum_i s_i (\operatorname{diag}(p_i) - p_i p_i^\top)
        \otimes \tilde x_i \tilde x_i^\top,

where ``p_i`` and ``e_i`` (one-hot of ``y_i``) are restricted to the ``K - 1``
non-reference classes. ``I`` is assembled in one pass over the rows, by
blocks: the block-diagonal part ``sum_k X_b^T diag(s p_k) X_b`` by one GEMM
for all classes, and the rank-``r`` correction ``- M_b^T M_b`` with ``M_b`` of shape
``(rows, (K - 1) q)``, ``M_i = sqrt(s_i) p_i \otimes \tilde x_i``, by one
symmetric rank-k update (BLAS ``dsyrk``, only the upper triangle, half the
flops of a GEMM) into a Fortran-ordered float64 accumulator, so no block
result is ever copied. The cost is ``n ((K - 1) q)^2`` multiply-adds, the
number of distinct entries of ``I`` times the rows; the memory is ``I``
itself plus one ``M_b`` of about :data:`BLOCK_BYTES`.

The sandwich "meat" ``sum_i s_i u_i u_i^T`` (HC0, frequency weights: each
row counts ``s_i`` times, so the weight is not squared) and the cluster meat
``sum_g U_g U_g^T`` (``U_g`` the summed scores of cluster ``g``) use the same
rank-k update on score rows, in the same pass; for clusters the rows are
visited in group order, so only one partial cluster sum is ever carried
between blocks and the memory stays one block.

Everything is float64 whatever the dtype of ``X``: the information is a
difference of two large terms (``diag(p) - p p^T``) and float32 products lose
the digits the standard errors are made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

__all__ = [
    "BLOCK_BYTES",
    "InformationPass",
    "information_pass",
    "marginal_effects_pass",
    "symmetrize_upper",
    "zero_lower",
]

#: Target size in bytes of the ``(rows, (K - 1) q)`` score block ``M_b``: large
#: enough that the rank-k update streams the accumulator from memory rarely
#: (each block reads and writes all of ``I`` once), small next to ``I``.
BLOCK_BYTES = 32 * 1024 * 1024
#: Rows per block never go below this (BLAS efficiency, Python overhead).
MIN_BLOCK_ROWS = 256


@dataclass
class InformationPass:
    """What one pass over the rows returns (see :func:`information_pass`).

    Attributes
    ----------
    loglik : float
        ``sum_i s_i log p_{i y_i}``.
    score : ndarray of shape ((K - 1) * q,)
        Gradient of ``loglik`` with respect to the reference-form coefficients.
    information : ndarray of shape ((K - 1) * q, (K - 1) * q)
        Fortran-ordered; only the upper triangle is meaningful (see
        :func:`symmetrize_upper`).
    meat : ndarray of the same shape or None
        Upper triangle of the HC0 or cluster meat when asked for.
    """

    loglik: float
    score: np.ndarray
    information: np.ndarray
    meat: np.ndarray | None


def _block_rows(n: int, width: int) -> int:
    rows = max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, 8 * width))
    return max(1, min(n, rows))


def _dense_block(X: Any, index: Any, fit_intercept: bool, out: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``X`` as float64 with a trailing column of ones."""
    Xb = X[index]
    r = Xb.shape[0]
    Xt = out[:r]
    p = X.shape[1]
    Xt[:, :p] = Xb.toarray() if sp.issparse(Xb) else Xb
    if fit_intercept:
        Xt[:, p] = 1.0
    return Xt


def log_proba(Xt: np.ndarray, theta_full: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``Xt @ theta_full.T`` (float64, shape (rows, K))."""
    Z = Xt @ theta_full.T
    Z -= Z.max(axis=1, keepdims=True)
    Z -= np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return Z


def full_coefficients(theta: np.ndarray, reference: int) -> np.ndarray:
    """``(K, q)`` coefficients with a zero row for the reference class."""
    return np.insert(theta, reference, 0.0, axis=0)


def information_pass(
    X: Any,
    y: np.ndarray,
    weights: np.ndarray,
    theta: np.ndarray,
    reference: int,
    *,
    fit_intercept: bool,
    meat: str | None = None,
    groups: np.ndarray | None = None,
) -> InformationPass:
    """Log-likelihood, score, information and (optionally) meat in one pass.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_rows, n_features)
        Rows (any float dtype; computed in float64 by blocks, never copied whole).
    y : ndarray of shape (n_rows,)
        Class codes ``0 .. K - 1``.
    weights : ndarray of shape (n_rows,)
        Frequency weights ``s_i >= 0`` (float64).
    theta : ndarray of shape (K - 1, q)
        Reference-form coefficients (intercept last when ``fit_intercept``).
    reference : int
        Code of the reference class.
    fit_intercept : bool
    meat : {None, "hc", "cluster"}
        Which sandwich meat to accumulate as well.
    groups : ndarray of shape (n_rows,), intp, optional
        Cluster codes ``0 .. G - 1``; required for ``meat="cluster"``.

    Returns
    -------
    InformationPass
    """
    n = X.shape[0]
    Kr, q = theta.shape
    m = Kr * q
    theta_full = full_coefficients(theta, reference)
    others = np.array([k for k in range(Kr + 1) if k != reference])
    # position of each class among the non-reference ones (-1 for the reference)
    position = np.full(Kr + 1, -1)
    position[others] = np.arange(Kr)

    info = np.zeros((m, m), order="F")
    meat_acc = np.zeros((m, m), order="F") if meat else None
    score = np.zeros((Kr, q))
    loglik = 0.0

    order = None
    carry: np.ndarray | None = None  # partial score sum of the cluster cut by a block end
    carry_group = -1
    if meat == "cluster":
        if groups is None:
            raise ValueError("meat='cluster' needs groups")
        order = np.argsort(groups, kind="stable")

    step = _block_rows(n, m)
    xbuf = np.empty((step, q))
    mbuf = np.empty((step, m), order="F")
    for start in range(0, n, step):
        stop = min(n, start + step)
        r = stop - start
        index = slice(start, stop) if order is None else order[start:stop]
        Xt = _dense_block(X, index, fit_intercept, xbuf)
        yb = y[index]
        sb = weights[index]
        logP = log_proba(Xt, theta_full)
        rows = np.arange(r)
        loglik += float(sb @ logP[rows, yb])
        P = np.exp(logP[:, others])  # (r, Kr)
        sP = P * sb[:, None]
        # residuals e - p for the non-reference classes, weighted
        R = -sP
        pos = position[yb]
        hit = pos >= 0
        R[rows[hit], pos[hit]] += sb[hit]
        score += R.T @ Xt
        # M_i = sqrt(s_i) p_i (x) xt_i, one column block per non-reference class
        if r != mbuf.shape[0]:  # the last, shorter block: free the full-size buffer first
            M = mbuf = None
            mbuf = np.empty((r, m), order="F")
        M = mbuf
        sq = np.sqrt(sb)
        for k in range(Kr):
            np.multiply(Xt, (sq * P[:, k])[:, None], out=M[:, k * q : (k + 1) * q])
        # block-diagonal part X^T diag(s p_k) X = (sqrt(s) X)^T M_k: one GEMM for all k
        diag = (Xt * sq[:, None]).T @ M  # (q, m)
        for k in range(Kr):
            sl = slice(k * q, (k + 1) * q)
            info[sl, sl] += diag[:, sl]
        # minus M^T M (upper triangle), by a symmetric rank-r update
        info = blas.dsyrk(-1.0, M, beta=1.0, c=info, trans=1, lower=0, overwrite_c=1)
        if meat == "hc":
            # u_i = (e_i - p_i) (x) xt_i, weight s_i (not s_i^2): sqrt(s_i) u_i
            Ru = R / np.where(sq > 0, sq, 1.0)[:, None]
            for k in range(Kr):
                np.multiply(Xt, Ru[:, k : k + 1], out=M[:, k * q : (k + 1) * q])
            meat_acc = blas.dsyrk(1.0, M, beta=1.0, c=meat_acc, trans=1, lower=0, overwrite_c=1)
        elif meat == "cluster":
            for k in range(Kr):
                np.multiply(Xt, R[:, k : k + 1], out=M[:, k * q : (k + 1) * q])
            gb = groups[index]
            starts = np.flatnonzero(np.r_[True, gb[1:] != gb[:-1]])
            U = np.add.reduceat(M, starts, axis=0)  # one summed score row per cluster
            if carry is not None:
                if gb[0] == carry_group:
                    U[0] += carry
                else:  # the carried cluster ended with the previous block
                    meat_acc = _add_outer(meat_acc, carry[None, :])
            # the last cluster of the block may continue in the next one
            carry, carry_group = U[-1].copy(), gb[-1]
            if len(U) > 1:
                meat_acc = _add_outer(meat_acc, U[:-1])
    if carry is not None:
        meat_acc = _add_outer(meat_acc, carry[None, :])
    return InformationPass(loglik, score.ravel(), info, meat_acc)


def _add_outer(acc: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``acc += U^T U`` (upper triangle) by a rank-k update."""
    return blas.dsyrk(1.0, np.asfortranarray(U), beta=1.0, c=acc, trans=1, lower=0, overwrite_c=1)


def symmetrize_upper(A: np.ndarray, block: int = 512) -> np.ndarray:
    """Copy the upper triangle of square ``A`` into its lower one, in place.

    Done by column blocks so that no ``A``-sized temporary is made.
    """
    m = A.shape[0]
    for a in range(0, m, block):
        b = min(m, a + block)
        A[a:b, :a] = A[:a, a:b].T
        D = A[a:b, a:b]
        lower = np.tril_indices(b - a, -1)
        D[lower] = D.T[lower]
    return A


def zero_lower(A: np.ndarray, block: int = 512) -> np.ndarray:
    """Set the strictly lower triangle of square ``A`` to zero, in place, by blocks."""
    m = A.shape[0]
    for a in range(0, m, block):
        b = min(m, a + block)
        A[b:, a:b] = 0.0
        D = A[a:b, a:b]
        D[np.tril_indices(b - a, -1)] = 0.0
    return A


def marginal_effects_pass(
    X: Any,
    weights: np.ndarray,
    theta: np.ndarray,
    reference: int,
    *,
    fit_intercept: bool,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Average marginal effects on every class probability and their Jacobian.

    With ``D_{ikj} = theta_{kj} - sum_l p_{il} theta_{lj}`` (feature ``j``, all
    ``K`` classes, the reference row of ``theta`` zero), the effect of feature
    ``j`` on ``P(y = k | x_i)`` is ``p_{ik} D_{ikj}``; its weighted average is

    .. math::

        \mathrm{AME}_{kj} = \frac{1}{N} \sum_i s_i p_{ik} D_{ikj}, \qquad N = \sum_i s_i,

    and its derivative with respect to ``theta_{mr}`` (``m`` a non-reference
    class, ``r`` a term) is the average of

    .. math::

        p_{ik} \big[(\delta_{km} - p_{im}) D_{ikj} - p_{im} D_{imj}\big]
        \tilde x_{ir} + p_{ik} (\delta_{km} - p_{im}) \delta_{jr}.

    The term quadratic in the probabilities, ``sum_i s p_k p_m (D_k + D_m)
    x``, is one GEMM per block of ``(rows, K p)`` by ``(rows, (K - 1) q)``:
    the whole pass costs ``O(n K^2 p q)``, computed only when asked for.

    Returns
    -------
    ame : ndarray of shape (K, p)
    jacobian : ndarray of shape (K * p, (K - 1) * q)
        Derivative of ``ame.ravel()`` with respect to the flattened ``theta``.
    """
    n, p = X.shape
    Kr, q = theta.shape
    K = Kr + 1
    theta_full = full_coefficients(theta, reference)
    T = theta_full[:, :p]  # (K, p) slopes
    others = np.array([k for k in range(K) if k != reference])
    N = float(weights.sum())
    ame = np.zeros((K, p))
    J = np.zeros((K, p, Kr, q))
    step = _block_rows(n, K * max(p, q))
    xbuf = np.empty((step, q))
    for start in range(0, n, step):
        stop = min(n, start + step)
        Xt = _dense_block(X, slice(start, stop), fit_intercept, xbuf)
        sb = weights[start:stop]
        P = np.exp(log_proba(Xt, theta_full))  # (r, K)
        Tbar = P @ T  # (r, p): sum_l p_l theta_l
        sP = P * sb[:, None]
        ame += sP.sum(axis=0)[:, None] * T - sP.T @ Tbar
        Pm = P[:, others]  # (r, Kr)
        # A_i,(k,j) = s p_ik D_ikj ; B_i,(m,r) = p_im x_ir
        D = T[None, :, :] - Tbar[:, None, :]  # (r, K, p)
        A = (sP[:, :, None] * D).reshape(-1, K * p)
        B = (Pm[:, :, None] * Xt[:, None, :]).reshape(-1, Kr * q)
        # - sum_i s p_k p_m D_k x  (k, j, m, r)
        J -= (A.T @ B).reshape(K, p, Kr, q)
        # - sum_i s p_k p_m D_m x = -(A^T B) with (k,j) <-> (m,j) for the K-1 m's
        Am = A.reshape(-1, K, p)[:, others, :].reshape(-1, Kr * p)
        Bk = (P[:, :, None] * Xt[:, None, :]).reshape(-1, K * q)
        J -= (Bk.T @ Am).reshape(K, q, Kr, p).transpose(0, 3, 2, 1)
        # delta_km sum_i s p_k D_k x
        for mi, k in enumerate(others):
            J[k, :, mi, :] += A.reshape(-1, K, p)[:, k, :].T @ Xt
        # delta_jr (delta_km sum s p_k - sum s p_k p_m)
        S = sP.T @ Pm  # (K, Kr)
        for mi, k in enumerate(others):
            S[k, mi] -= sP[:, k].sum()
        for j in range(p):
            J[:, j, :, j] -= S
    ame /= N
    J /= N
    return ame, J.reshape(K * p, Kr * q)
