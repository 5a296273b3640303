"""Rows too large for float64 products, fitted on an exactly rescaled copy.

Finite data must always fit, but rows of size ``1e300`` overflow the
products a solver forms (``X^T X`` in a Newton step or a preconditioner,
``n * |x|`` in a gradient). The fit then runs on ``X' = X * 2**-e``, a power
of two (exact: only the exponents change) that brings ``max |X|`` into
``[0.5, 1)``, and solves the *same* problem in ``w' = w * 2**e``: with the
penalty ``r(W) = (1 - rho) / 2 ||W||^2 + rho ||W||_1`` the objective is

.. math::

    C L(w) + r(w) = \\lambda \\big( C' L(w') + r'(w') \\big),
    \\qquad \\lambda_2 = (1 - \\rho) 4^{-e}, \\quad \\lambda_1 = \\rho 2^{-e},
    \\quad \\lambda = \\lambda_1 + \\lambda_2,

with ``C' = C / lambda`` and ``rho' = lambda_1 / lambda``. The minimiser
``w'`` maps back to ``w = w' * 2**-e`` (the intercepts, on a column of
ones, are unchanged) and the objective to ``lambda`` times the rescaled
one. ``C'`` can exceed the float64 range: the penalty is then below the
rounding of the data term (``1e-600`` against ``O(n)`` at ``1e300``), and
the rescaled problem is the unpenalised one, as the original is to
rounding.

One power of two serves all columns, so the problem keeps one ``C``; a
column ``1e308`` times smaller than the largest loses its digits below the
float64 range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SCALE_ABOVE", "RowScale", "row_scale"]

#: Rows whose largest ``|x|`` exceeds this (by dtype) are fitted on a rescaled
#: copy: ``n * max|x|**2`` then stays inside the dtype's range for any ``n``
#: up to ``2**400`` (float64, max ``2**1024``) or ``2**48`` (float32, ``2**128``).
SCALE_ABOVE = {np.dtype(np.float64): 2.0**300, np.dtype(np.float32): 2.0**40}


class RowScale:
    """The exponent ``e`` of ``X' = X * 2**-e`` and the problem it maps to.

    Parameters
    ----------
    exponent : int
        ``e > 0``.
    largest : float, optional
        The ``max |X|`` it was chosen for (for messages).
    """

    def __init__(self, exponent: int, largest: float | None = None) -> None:
        self.exponent = int(exponent)
        self.largest = largest

    def rows(self, X: Any) -> Any:
        """A rescaled copy of ``X`` (ndarray or CSR; the caller's is never changed).

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_features)

        Returns
        -------
        X_scaled : same type and dtype as ``X``
        """
        if hasattr(X, "tocsr"):
            out = X.copy()
            out.data = np.ldexp(out.data, -self.exponent).astype(X.dtype, copy=False)
            return out
        return np.ldexp(X, -self.exponent).astype(X.dtype, copy=False)

    def penalty(self, C: float, l1_ratio: float) -> tuple[float, float, float]:
        """``(C', l1_ratio', lambda)`` of the rescaled problem (see the module docstring).

        Parameters
        ----------
        C : float
            ``> 0``, or ``inf``.
        l1_ratio : float in [0, 1]

        Returns
        -------
        C_scaled : float
            ``inf`` when ``C / lambda`` exceeds the float64 range.
        l1_ratio_scaled : float
        lam : float
            The factor from the rescaled objective back to the original one.
        """
        lam2 = (1.0 - l1_ratio) * math.ldexp(1.0, -2 * self.exponent)
        lam1 = l1_ratio * math.ldexp(1.0, -self.exponent)
        lam = lam1 + lam2
        if lam == 0.0 or not math.isfinite(C):
            # unpenalised, or lambda itself underflows (L2 with e > 537): so
            # does the penalty; l1_ratio' still picks the solver family
            return math.inf, (lam1 / lam if lam > 0 else l1_ratio), lam
        with np.errstate(over="ignore"):
            C_scaled = float(np.float64(C) / np.float64(lam))
        return C_scaled, lam1 / lam, lam

    def coef(self, coef: np.ndarray, n_features: int) -> np.ndarray:
        """Coefficients of ``X'`` (intercepts last) as coefficients of ``X``.

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)

        Returns
        -------
        coef : ndarray of the same shape (a new array)
        """
        out = np.array(coef, dtype=np.float64)
        out[:, :n_features] = np.ldexp(out[:, :n_features], -self.exponent)
        return out

    def coef0(self, coef: np.ndarray | None, n_features: int) -> np.ndarray | None:
        """A start point in coefficients of ``X`` as one for ``X'`` (None stays None)."""
        if coef is None:
            return None
        out = np.array(coef, dtype=np.float64)
        with np.errstate(over="ignore"):
            out[:, :n_features] = np.ldexp(out[:, :n_features], self.exponent)
        return out if np.isfinite(out).all() else None

    def objective(self, F_scaled: float, C: float, C_scaled: float, lam: float) -> float:
        """The original objective from the rescaled one.

        With ``C'`` finite, ``F = lambda * F'``. With ``C' = inf`` the rescaled
        fit reports the data term ``L``: the original is ``C * L`` (the
        penalty is below its rounding), or ``L`` when ``C`` is ``inf`` too.
        """
        if math.isfinite(C_scaled):
            return F_scaled * lam
        return F_scaled if not math.isfinite(C) else C * F_scaled


def row_scale(X: Any) -> RowScale | None:
    """The rescaling ``X`` needs, or None when its products cannot overflow.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
        Finite rows (validated).

    Returns
    -------
    RowScale or None
        The power of two that brings ``max |X|`` into ``[0.5, 1)``, when
        ``max |X|`` exceeds ``SCALE_ABOVE`` of its dtype.
    """
    values = X.data if hasattr(X, "tocsr") else X
    limit = SCALE_ABOVE.get(values.dtype)
    if values.size == 0 or limit is None:
        return None
    # two reductions, no temporary: np.abs(values) would be a copy the size of X
    largest = max(float(values.max()), -float(values.min()))
    if not largest > limit:
        return None
    return RowScale(math.frexp(largest)[1], largest)
