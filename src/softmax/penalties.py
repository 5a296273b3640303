"""Penalties on the weights: L2, L1 and the elastic net.

The penalty acts on the weight block ``W`` of ``coef`` (shape ``(n_classes,
n_features + fit_intercept)``) and never on the intercept column, as in
scikit-learn's ``LogisticRegression``:

.. math::

    r(W) = \\frac{1 - \\rho}{2} \\lVert W \\rVert_F^2 + \\rho \\lVert W \\rVert_1,

with ``rho = l1_ratio``. Each penalty is split into a smooth part (value and
gradient, used by gradient and Newton solvers) and a non-smooth part handled
by its proximal operator (used by the proximal solver).

Examples
--------
>>> import numpy as np
>>> from softmax.penalties import make_penalty
>>> pen = make_penalty(0.5, fit_intercept=True)
>>> coef = np.array([[1.0, -2.0, 5.0]])   # the last column is the intercept
>>> pen.value(coef)                        # 0.25 * 5 + 0.5 * 3
2.75
"""

from __future__ import annotations

import numpy as np

__all__ = ["L1", "L2", "ElasticNet", "Penalty", "make_penalty"]


class Penalty:
    """Base class: ``strength * r(W)`` on the weight columns of ``coef``.

    Parameters
    ----------
    fit_intercept : bool
        Whether the last column of ``coef`` is an (unpenalised) intercept.
    strength : float, default 1.0
        Multiplies the whole penalty (solvers that divide the objective by
        ``C * weight_sum`` pass ``1 / (C * weight_sum)``).
    """

    #: weight of the squared L2 norm (times 1/2) and of the L1 norm
    l2: float = 0.0
    l1: float = 0.0

    def __init__(self, *, fit_intercept: bool, strength: float = 1.0) -> None:
        if not strength >= 0:
            raise ValueError(f"penalty strength must be >= 0, got {strength}")
        self.fit_intercept = bool(fit_intercept)
        self.strength = float(strength)

    def _w(self, coef: np.ndarray) -> np.ndarray:
        return coef[:, :-1] if self.fit_intercept else coef

    @property
    def smooth_l2(self) -> float:
        """Coefficient ``a`` of the smooth part ``a/2 ||W||^2``."""
        return self.strength * self.l2

    @property
    def l1_weight(self) -> float:
        """Coefficient ``c`` of the non-smooth part ``c ||W||_1``."""
        return self.strength * self.l1

    def value(self, coef: np.ndarray) -> float:
        """The penalty at ``coef`` (smooth and non-smooth parts).

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)

        Returns
        -------
        float
        """
        return self.smooth_value(coef) + self.nonsmooth_value(coef)

    def smooth_value(self, coef: np.ndarray) -> float:
        """``a/2 ||W||_F^2``."""
        if self.smooth_l2 == 0:
            return 0.0
        w = self._w(coef)
        return 0.5 * self.smooth_l2 * float(np.einsum("ij,ij->", w, w))

    def nonsmooth_value(self, coef: np.ndarray) -> float:
        """``c ||W||_1``."""
        if self.l1_weight == 0:
            return 0.0
        return self.l1_weight * float(np.abs(self._w(coef)).sum())

    def add_smooth_gradient(self, coef: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Add the gradient of the smooth part to ``grad`` in place and return it.

        Parameters
        ----------
        coef, grad : ndarray of shape (n_classes, n_features + fit_intercept)
        """
        if self.smooth_l2:
            self._w(grad)[...] += self.smooth_l2 * self._w(coef)
        return grad

    def smooth_gradient(self, coef: np.ndarray) -> np.ndarray:
        """Gradient of the smooth part, of the shape of ``coef``."""
        return self.add_smooth_gradient(coef, np.zeros_like(coef, dtype=np.float64))

    def add_smooth_hessp(self, V: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out += a * V`` on the weight columns (Hessian of the smooth part)."""
        if self.smooth_l2:
            self._w(out)[...] += self.smooth_l2 * self._w(V)
        return out

    def smooth_hessian_diagonal(self, coef_shape: tuple[int, int]) -> np.ndarray:
        """Diagonal of the smooth part's Hessian, C-order flattening of ``coef``."""
        d = np.full(coef_shape, self.smooth_l2, dtype=np.float64)
        if self.fit_intercept:
            d[:, -1] = 0.0
        return d.ravel()

    def prox(self, coef: np.ndarray, step: float) -> np.ndarray:
        """Proximal operator of ``step`` times the non-smooth part.

        ``argmin_u ||u - coef||^2 / 2 + step * c ||u_W||_1``: soft
        thresholding of the weights by ``step * c``; the intercept is left as
        is. Returns a new array.
        """
        out = np.array(coef, dtype=np.float64)
        t = step * self.l1_weight
        if t > 0:
            w = self._w(out)
            w[...] = np.sign(w) * np.maximum(np.abs(w) - t, 0.0)
        return out

    def min_norm_subgradient(self, coef: np.ndarray, smooth_grad: np.ndarray) -> np.ndarray:
        """Minimum-norm element of the subdifferential of ``f + c||W||_1``.

        ``smooth_grad`` is the gradient of everything smooth at ``coef``. The
        result is zero exactly at a minimiser (an optimality measure).
        """
        g = np.array(smooth_grad, dtype=np.float64)
        c = self.l1_weight
        if c == 0:
            return g
        w = self._w(coef)
        gw = self._w(g)
        nz = w != 0
        gw[nz] += c * np.sign(w[nz])
        z = ~nz
        gw[z] = np.sign(gw[z]) * np.maximum(np.abs(gw[z]) - c, 0.0)
        return g


class L2(Penalty):
    """``strength * 1/2 ||W||_F^2``."""

    l2 = 1.0


class L1(Penalty):
    """``strength * ||W||_1``."""

    l1 = 1.0


class ElasticNet(Penalty):
    """``strength * ((1 - l1_ratio)/2 ||W||_F^2 + l1_ratio ||W||_1)``.

    Parameters
    ----------
    l1_ratio : float in [0, 1]
    fit_intercept : bool
    strength : float, default 1.0
    """

    def __init__(self, l1_ratio: float, *, fit_intercept: bool, strength: float = 1.0) -> None:
        if not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
        super().__init__(fit_intercept=fit_intercept, strength=strength)
        self.l1_ratio = float(l1_ratio)
        self.l2 = 1.0 - self.l1_ratio
        self.l1 = self.l1_ratio


def make_penalty(l1_ratio: float, *, fit_intercept: bool, strength: float = 1.0) -> Penalty:
    """The penalty for ``l1_ratio``: :class:`L2` (0), :class:`L1` (1) or :class:`ElasticNet`.

    Parameters
    ----------
    l1_ratio : float in [0, 1]
    fit_intercept : bool
    strength : float, default 1.0

    Returns
    -------
    Penalty
    """
    if l1_ratio == 0:
        return L2(fit_intercept=fit_intercept, strength=strength)
    if l1_ratio == 1:
        return L1(fit_intercept=fit_intercept, strength=strength)
    return ElasticNet(l1_ratio, fit_intercept=fit_intercept, strength=strength)
