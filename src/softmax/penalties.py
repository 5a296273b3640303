"""Penalties on the weights: L2, L1, the elastic net and the group lasso across classes.

The penalty acts on the weight block ``W`` of ``coef`` (shape ``(n_classes,
n_features + fit_intercept)``) and never on the intercept column, as in
scikit-learn's ``LogisticRegression``:

.. math::

    r(W) = \\frac{1 - \\rho}{2} \\lVert W \\rVert_F^2 + \\rho \\lVert W \\rVert_1,

with ``rho = l1_ratio`` (``l1_type="elementwise"``), or, with
``l1_type="grouped"`` (:class:`GroupLasso`, glmnet's
``type.multinomial = "grouped"``), the L1 norm replaced by the sum over
features of the Euclidean norms of their columns ``W[:, j]`` (one weight per
class): a feature then leaves the model for every class at once. Each
penalty is split into a smooth part (value and gradient, used by gradient and
Newton solvers) and a non-smooth part handled by its proximal operator (used
by the proximal solvers).

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

__all__ = ["L1", "L1_TYPES", "L2", "ElasticNet", "GroupLasso", "Penalty", "make_penalty"]

#: Values of ``l1_type``: what the non-smooth part of the penalty sums.
L1_TYPES = ("elementwise", "grouped")


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

    #: weight of the squared L2 norm (times 1/2), of the L1 norm and of the
    #: sum of column norms (the group lasso)
    l2: float = 0.0
    l1: float = 0.0
    group: float = 0.0

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

    @property
    def group_weight(self) -> float:
        """Coefficient ``c`` of the non-smooth part ``c sum_j ||W[:, j]||_2`` (group lasso)."""
        return self.strength * self.group

    @property
    def has_nonsmooth(self) -> bool:
        """Whether the penalty has a non-smooth part (an L1 or group norm)."""
        return self.l1_weight > 0 or self.group_weight > 0

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

    def prox(
        self, coef: np.ndarray, step: float | np.ndarray, *, include_smooth: bool = False
    ) -> np.ndarray:
        """Proximal operator of ``step`` times the non-smooth part (or the whole penalty).

        ``argmin_u ||u - coef||^2 / 2 + step * c ||u_W||_1``: soft
        thresholding of the weights by ``step * c``; the intercept is left as
        is. With ``include_smooth`` the operator of the whole penalty,
        ``... + step * (a/2 ||u_W||^2 + c ||u_W||_1)``: the same
        thresholding, then a division of the weights by ``1 + step * a``
        (the two parts are separable per weight, so the composition is exact).

        Parameters
        ----------
        coef : ndarray of shape (n_classes, n_features + fit_intercept)
        step : float or ndarray of shape (n_features + fit_intercept,)
            Step size (> 0), or one per column of ``coef``: the operator in
            the metric ``diag(1 / step)`` constant on each column (what a
            preconditioned solver uses; the intercept's entry is ignored).
        include_smooth : bool, default False
            Whether the L2 part is included.

        Returns
        -------
        ndarray of shape (n_classes, n_features + fit_intercept)
            A new float64 array.
        """
        out = np.array(coef, dtype=np.float64)
        if self.l1_weight > 0:
            t = self._column_steps(step, out) * self.l1_weight
            w = self._w(out)
            w[...] = np.sign(w) * np.maximum(np.abs(w) - t, 0.0)
        return self._shrink_l2(out, step, include_smooth)

    def _column_steps(self, step: float | np.ndarray, coef: np.ndarray) -> float | np.ndarray:
        """``step`` as a scalar, or per weight column (a metric constant on each column)."""
        if np.ndim(step) == 0:
            return float(step)
        return np.asarray(step, dtype=np.float64)[: self._w(coef).shape[1]]

    def _shrink_l2(
        self, out: np.ndarray, step: float | np.ndarray, include_smooth: bool
    ) -> np.ndarray:
        """Divide the weights by ``1 + step * a``: the L2 part's prox, after the other one."""
        if include_smooth and self.smooth_l2:
            self._w(out)[...] /= 1.0 + self._column_steps(step, out) * self.smooth_l2
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


class GroupLasso(Penalty):
    r"""The group lasso across classes: one group per feature, its weights for every class.

    .. math::

        r(W) = \text{strength} \Big( \rho \sum_j \lVert W_{:, j} \rVert_2
               + \frac{1 - \rho}{2} \lVert W \rVert_F^2 \Big),

    ``rho = group_ratio`` (the estimator's ``l1_ratio`` with
    ``l1_type="grouped"``), ``W[:, j]`` the column of feature ``j`` in
    ``coef`` (shape ``(n_classes, n_features + fit_intercept)``: one row per
    class), the intercept column unpenalised. The sum of column norms is zero
    exactly for the features whose weights are zero for *every* class, so a
    feature leaves the model for all classes together (glmnet's
    ``type.multinomial = "grouped"``; Friedman, Hastie & Tibshirani 2010).
    With ``rho = 0`` it is the L2 penalty.

    The proximal operator of ``t`` times the group part is *block soft
    thresholding*: ``W[:, j] * max(0, 1 - t c / ||W[:, j]||)``; that of the
    whole penalty follows it by the L2 part's ``1 / (1 + t a)`` (both are
    functions of the column norm alone, so the composition is exact).

    Parameters
    ----------
    group_ratio : float in [0, 1]
        Share of the group norm in the penalty.
    fit_intercept : bool
    strength : float, default 1.0

    Examples
    --------
    >>> import numpy as np
    >>> pen = GroupLasso(1.0, fit_intercept=False)
    >>> W = np.array([[3.0, 0.1], [4.0, 0.0]])   # columns: features
    >>> pen.value(W)                             # ||(3, 4)|| + ||(0.1, 0)||
    5.1
    >>> pen.prox(W, 0.5)                         # the second column leaves, the first shrinks
    array([[2.7, 0. ],
           [3.6, 0. ]])
    """

    def __init__(self, group_ratio: float, *, fit_intercept: bool, strength: float = 1.0) -> None:
        if not 0.0 <= group_ratio <= 1.0:
            raise ValueError(f"the group share l1_ratio must be in [0, 1], got {group_ratio}")
        super().__init__(fit_intercept=fit_intercept, strength=strength)
        self.group_ratio = float(group_ratio)
        self.l2 = 1.0 - self.group_ratio
        self.group = self.group_ratio

    def group_norms(self, coef: np.ndarray) -> np.ndarray:
        """``||W[:, j]||_2`` for every feature, of shape (n_features,)."""
        return np.sqrt(np.einsum("kj,kj->j", self._w(coef), self._w(coef)))

    def nonsmooth_value(self, coef: np.ndarray) -> float:
        """``c sum_j ||W[:, j]||_2``."""
        if self.group_weight == 0:
            return 0.0
        return self.group_weight * float(self.group_norms(coef).sum())

    def prox(
        self, coef: np.ndarray, step: float | np.ndarray, *, include_smooth: bool = False
    ) -> np.ndarray:
        """Block soft thresholding of the weight columns by ``step * c`` (see the class doc).

        Parameters and return as :meth:`Penalty.prox` (a per-column ``step``
        keeps the operator in closed form: the metric is a multiple of the
        identity on each group); a column whose norm is at most ``step * c``
        becomes exactly zero.
        """
        out = np.array(coef, dtype=np.float64)
        if self.group_weight > 0:
            t = self._column_steps(step, out) * self.group_weight
            w = self._w(out)
            norms = self.group_norms(out)
            factor = np.maximum(1.0 - t / np.maximum(norms, 1e-300), 0.0)
            w *= factor
            w[:, factor == 0] = 0.0  # +0.0, not the -0.0 of a negative weight times 0
        return self._shrink_l2(out, step, include_smooth)

    def min_norm_subgradient(self, coef: np.ndarray, smooth_grad: np.ndarray) -> np.ndarray:
        """Minimum-norm element of the subdifferential of ``f + c sum_j ||W[:, j]||``.

        For a non-zero column ``g_j + c W_j / ||W_j||``; for a zero column
        ``g_j`` shrunk by ``c`` in norm (zero when ``||g_j|| <= c``). It is
        zero exactly at a minimiser: these are the KKT conditions.
        """
        g = np.array(smooth_grad, dtype=np.float64)
        c = self.group_weight
        if c == 0:
            return g
        norms = self.group_norms(coef)
        gw = self._w(g)
        nz = norms > 0
        gw[:, nz] += c * self._w(coef)[:, nz] / norms[nz]
        z = ~nz
        gnorm = np.sqrt(np.einsum("kj,kj->j", gw[:, z], gw[:, z]))
        factor = np.zeros_like(gnorm)
        big = gnorm > c
        factor[big] = 1.0 - c / gnorm[big]
        gw[:, z] *= factor
        return g


def make_penalty(
    l1_ratio: float,
    *,
    fit_intercept: bool,
    strength: float = 1.0,
    l1_type: str = "elementwise",
) -> Penalty:
    """The penalty for ``l1_ratio`` and ``l1_type``.

    ``l1_type="elementwise"``: :class:`L2` (``l1_ratio`` 0), :class:`L1` (1)
    or :class:`ElasticNet`; ``"grouped"``: :class:`GroupLasso` with the group
    share ``l1_ratio``.

    Parameters
    ----------
    l1_ratio : float in [0, 1]
    fit_intercept : bool
    strength : float, default 1.0
    l1_type : {"elementwise", "grouped"}, default "elementwise"

    Returns
    -------
    Penalty

    Raises
    ------
    ValueError
        For an ``l1_type`` that is not one of :data:`L1_TYPES`.
    """
    if l1_type == "grouped":
        return GroupLasso(l1_ratio, fit_intercept=fit_intercept, strength=strength)
    if l1_type != "elementwise":
        raise ValueError(
            f"l1_type must be one of {list(L1_TYPES)}; got {l1_type!r} ('grouped' drops a "
            "feature from every class at once, 'elementwise' is the L1 / elastic net)"
        )
    if l1_ratio == 0:
        return L2(fit_intercept=fit_intercept, strength=strength)
    if l1_ratio == 1:
        return L1(fit_intercept=fit_intercept, strength=strength)
    return ElasticNet(l1_ratio, fit_intercept=fit_intercept, strength=strength)
