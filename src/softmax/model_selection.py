r"""Choosing the model: the regularisation path, its start, and cross-validation.

Everything here sits above :class:`~softmax.SoftmaxRegression` and reuses its
``fit``: a path is a sequence of fits at increasing ``C`` (decreasing
penalty), each warm-started from a prediction made from the fits before it,
and cross-validation runs one path per fold.

- :func:`regularization_path`: coefficients along a grid of ``C``.
- :func:`min_c`: the smallest ``C`` at which an L1 / elastic-net (or group
  lasso) fit has a non-zero weight (below it every weight is exactly zero).
- :class:`SoftmaxRegressionCV`: a drop-in for scikit-learn's
  ``LogisticRegressionCV`` (k folds, the path per fold, any scorer, folds in
  parallel, the one-standard-error rule, a refit at the chosen ``C``).

The objective is scikit-learn's (see :mod:`softmax.regression`)

.. math::

    C \sum_i s_i \, \mathrm{CE}\big(y_i, \mathrm{softmax}(W x_i + b)\big)
    + \frac{1 - \rho}{2} \lVert W \rVert_F^2 + \rho \lVert W \rVert_1 ,

so ``C`` and ``l1_ratio`` mean what they mean for ``LogisticRegression``
(with more than two classes; see the Notes of :class:`SoftmaxRegressionCV`
for two). Each of them also takes ``l1_type="grouped"``: the group lasso
across classes, ``rho sum_j ||W[:, j]||_2`` in place of ``rho ||W||_1``
(:class:`~softmax.penalties.GroupLasso`).
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from softmax._validation import (
    check_in_range,
    check_int_at_least,
    check_sample_weight,
    encode_labels,
    labelled_rows,
    row_weights,
    validate_data,
)
from softmax.losses import check_label_smoothing
from softmax.regression import SoftmaxRegression

__all__ = ["RegularizationPath", "SoftmaxRegressionCV", "min_c", "regularization_path"]

_FLOAT_DTYPES = (np.float64, np.float32)

#: ``Cs=n`` means ``np.logspace(*DEFAULT_LOG10_C_RANGE, n)``, LogisticRegressionCV's grid.
DEFAULT_LOG10_C_RANGE = (-4.0, 4.0)

#: Values of ``SoftmaxRegressionCV(select=...)``.
SELECT_RULES = ("best", "1se")


# -- the grid -------------------------------------------------------------------


def _c_grid(Cs: int | Sequence[float] | np.ndarray, name: str = "Cs") -> np.ndarray:
    """The grid of C as a float64 array (in the order given)."""
    if isinstance(Cs, numbers.Integral) and not isinstance(Cs, bool):
        n = check_int_at_least(Cs, name, 1)
        return np.logspace(*DEFAULT_LOG10_C_RANGE, n)
    try:
        grid = np.array(Cs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be an int (number of values on LogisticRegressionCV's grid "
            f"np.logspace(-4, 4, n)) or a list of numbers > 0; got {Cs!r}."
        ) from exc
    if grid.size == 0:
        raise ValueError(f"{name} is empty; give at least one value of C.")
    if not (np.isfinite(grid).all() and (grid > 0).all()):
        raise ValueError(
            f"every value of {name} must be a finite number > 0; got {grid.tolist()}."
        )
    return grid


# -- the smallest C -------------------------------------------------------------


def _null_gradient(
    X: Any,
    codes: np.ndarray,
    weights: np.ndarray,
    n_classes: int,
    fit_intercept: bool,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""Gradient of the data term (per unit ``C``) with respect to ``W`` at ``W = 0``.

    The gradient of ``CE(t, p)`` with respect to the logits is ``p - t``,
    with the targets ``t_i = (1 - eps) e_{y_i} + eps / K`` (``eps`` the
    label smoothing). With ``W = 0`` the best unpenalised intercepts give
    every row the probabilities ``pi`` that zero the intercepts' gradient:
    the weighted mean target, ``(1 - eps)`` times the weighted class
    frequencies plus ``eps / K``; without an intercept the probabilities are
    uniform. The gradient is then ``D = sum_i s_i (pi - t_i) x_i^T`` of
    shape (n_classes, n_features).
    """
    total = float(weights.sum())
    eps = float(label_smoothing)
    if fit_intercept:
        freq = np.bincount(codes, weights=weights, minlength=n_classes) / total
        pi = (1.0 - eps) * freq + eps / n_classes
    else:
        pi = np.full(n_classes, 1.0 / n_classes)
    # sum_i s_i (pi_k - t_ik) x_i, via one (K, n) x (n, p) product
    R = np.zeros((n_classes, codes.shape[0]))
    R[codes, np.arange(codes.shape[0])] = -(1.0 - eps) * weights
    R += (pi - eps / n_classes)[:, None] * weights[None, :]
    D = R @ X if not hasattr(X, "tocsr") else np.asarray((X.T @ R.T).T)
    return np.asarray(D, dtype=np.float64)


def min_c(
    X: Any,
    y: Any,
    *,
    l1_ratio: float = 1.0,
    sample_weight: Any = None,
    class_weight: dict[Any, float] | str | None = None,
    fit_intercept: bool = True,
    l1_type: str = "elementwise",
    label_smoothing: float = 0.0,
) -> float:
    r"""The smallest ``C`` at which an L1 / elastic-net / group-lasso fit has a non-zero weight.

    For ``C <= min_c`` the optimum of the objective has ``W = 0`` exactly
    (the intercepts, which are not penalised, take the log class
    frequencies); above it at least one weight is non-zero. It is the start of
    a useful L1 path, as scikit-learn's ``sklearn.svm.l1_min_c`` is for the
    binary models, here for the multinomial objective with unpenalised
    intercepts.

    At ``W = 0`` with the best intercepts every row gets the weighted class
    frequencies ``pi`` as probabilities, and the gradient of the summed loss
    with respect to ``W`` is ``C D`` with

    .. math::

        D_{kj} = \sum_i s_i \, (\pi_k - [y_i = k]) \, x_{ij} .

    ``W = 0`` is optimal while every ``|C D_kj| <= l1_ratio`` (the L2 part of
    the penalty has zero gradient there), so

    .. math::

        C_{\min} = \frac{\rho}{\max_{k,j} |D_{kj}|}, \qquad \rho = \text{l1\_ratio}.

    Without an intercept ``pi`` is uniform (``1 / n_classes``). With the
    grouped penalty (``l1_type="grouped"``) ``W = 0`` is optimal while every
    column's norm ``||C D_{:, j}||_2 <= rho`` (the subdifferential of the
    group norm at zero is the ball of radius ``rho``), so

    .. math::

        C_{\min} = \frac{\rho}{\max_j \lVert D_{:, j} \rVert_2} .

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    l1_ratio : float in (0, 1], default=1.0
        Share of the L1 norm in the penalty; 0 (pure L2) never gives exact
        zeros and is refused.
    sample_weight : array-like of shape (n_samples,), default=None
    class_weight : dict, "balanced" or None, default=None
        As in :class:`~softmax.SoftmaxRegression`.
    fit_intercept : bool, default=True
    l1_type : {"elementwise", "grouped"}, default="elementwise"
        The L1 norm, or the group lasso across classes (see above).
    label_smoothing : float in [0, 1), default=0.0
        As in :class:`~softmax.SoftmaxRegression`: the fits are trained
        against smoothed targets ``t_i = (1 - eps) e_{y_i} + eps / K``, so
        ``D`` uses ``t_i`` in place of ``e_{y_i}`` and ``pi`` is their
        weighted mean (with or without an intercept that shrinks ``D`` by
        ``1 - eps``, so ``min_c`` grows by ``1 / (1 - eps)``).

    Returns
    -------
    c : float
        ``C`` below which (and at which) every weight is zero.

    Raises
    ------
    ValueError
        ``l1_ratio`` outside (0, 1], ``label_smoothing`` outside [0, 1), an
        unknown ``l1_type``, fewer than two
        classes, or a gradient that is zero for every feature (then every
        ``C`` gives ``W = 0``).
    TypeError
        For a Dask collection or a file source (this needs one pass over rows
        in memory).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from softmax.model_selection import min_c
    >>> X, y = load_iris(return_X_y=True)
    >>> c = min_c(X, y)  # L1: all weights are zero for C <= c
    >>> round(c, 6)
    0.008711
    """
    rho = check_in_range(l1_ratio, "l1_ratio", 0.0, 1.0)
    _check_l1_type(l1_type)
    if rho == 0.0:
        raise ValueError(
            "min_c needs l1_ratio > 0: the L2 penalty (l1_ratio=0) shrinks weights "
            "towards zero but never sets them exactly to zero, at any C."
        )
    _refuse_external(X, "min_c")
    X, codes, classes = _check_xy(X, y)
    weights = row_weights(codes, classes, sample_weight, class_weight)
    eps = check_label_smoothing(label_smoothing)
    D = _null_gradient(X, codes, weights, len(classes), bool(fit_intercept), eps)
    if l1_type == "grouped":
        top = float(np.sqrt(np.einsum("kj,kj->j", D, D)).max(initial=0.0))
    else:
        top = float(np.abs(D).max(initial=0.0))
    if not top > 0:
        raise ValueError(
            "Ill-posed min_c: the loss gradient at W = 0 is zero for every feature (all "
            "features constant, or equal across classes), so every C gives W = 0."
        )
    return rho / top


# -- the path -------------------------------------------------------------------


@dataclass
class RegularizationPath:
    """Coefficients along a grid of ``C`` (what :func:`regularization_path` returns).

    Attributes
    ----------
    Cs : ndarray of shape (n_Cs,)
        The grid, increasing (decreasing penalty).
    l1_ratio : float
    classes : ndarray of shape (n_classes,)
    coefs : ndarray of shape (n_Cs, n_classes, n_features)
        ``coef_`` at each ``C``.
    intercepts : ndarray of shape (n_Cs, n_classes)
        ``intercept_`` at each ``C`` (centred; zeros without intercept).
    n_iter : ndarray of shape (n_Cs,)
        Solver iterations of each fit.
    objectives : ndarray of shape (n_Cs,)
        The objective at each solution.
    converged : ndarray of shape (n_Cs,), bool
    n_features_selected : ndarray of shape (n_Cs,), int
        Features with a non-zero weight for at least one class (all of them,
        save constant ones, when ``l1_ratio`` is 0).
    l1_type : str
        ``"elementwise"`` or ``"grouped"`` (the group lasso across classes).
    """

    Cs: np.ndarray
    l1_ratio: float
    classes: np.ndarray
    coefs: np.ndarray
    intercepts: np.ndarray
    n_iter: np.ndarray
    objectives: np.ndarray
    converged: np.ndarray
    n_features_selected: np.ndarray
    l1_type: str = "elementwise"


def _extrapolated_start(
    history: list[tuple[float, np.ndarray, np.ndarray]], log_c: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """A start for the fit at ``log C`` extrapolated from the last solutions.

    Along an L2 path the solution moves smoothly with ``log C``: the
    parabola through the last three solutions (in ``log C``), or the straight
    line through the last two, starts the next fit closer than the last
    solution alone. On scikit-learn's digits the straight line took a
    13-value path from 4,000 to 3,070 L-BFGS iterations at the same
    tolerance, and the parabola the 5-fold cross-validation of
    benchmarks/bench_cv.py from 2,759 to 2,613. The step is capped at the
    last one's length (beyond it the parabola is not used), so an uneven grid
    cannot throw the start far away.
    """
    if len(history) < 2:
        return None
    (l1, w1, b1), (l2, w2, b2) = history[-2], history[-1]
    if not l2 > l1:
        return None
    ratio = (log_c - l2) / (l2 - l1)
    a = min(ratio, 1.0)
    # an even grid in log C gives ratio 1 up to rounding
    if len(history) >= 3 and ratio <= 1.0 + 1e-9 and history[-3][0] < l1:
        l0, w0, b0 = history[-3]
        # Lagrange weights of the three points at log_c
        c0 = (log_c - l1) * (log_c - l2) / ((l0 - l1) * (l0 - l2))
        c1 = (log_c - l0) * (log_c - l2) / ((l1 - l0) * (l1 - l2))
        c2 = (log_c - l0) * (log_c - l1) / ((l2 - l0) * (l2 - l1))
        return c0 * w0 + c1 * w1 + c2 * w2, c0 * b0 + c1 * b1 + c2 * b2
    return w2 + a * (w2 - w1), b2 + a * (b2 - b1)


#: Along a path with ``solver="auto"`` and an L2 penalty, the fits at small
#: ``C`` use ``"newton-cg"`` while the bound on the condition number of the
#: weights' Hessian, ``1 + C lambda_max(sum_i s_i x~_i x~_i^T) / 2`` (the
#: logit Hessian ``diag(p) - p p^T`` is at most 1/2, Boehning's bound; ``x~``
#: with the intercept's 1), is at most this. There the penalty dominates the
#: curvature: Newton-CG stops on its decrement after 3-6 iterations of few CG
#: steps each, where L-BFGS's stopping rule waits for 20 iterations (its rate
#: estimate needs two windows of 10). On a digits fold (1,437 x 64, 10
#: classes; bounds 0.8, 3.8, 18, 82, 381, 1766 and 8199 at C = 1e-4 ... 1)
#: the warm-started fits took 2.4, 2.6, 3.8, 5.1, 6.2, 7.2 and 11.7 ms with
#: Newton-CG against 9.0, 9.2, 8.5, 6.8, 7.0, 8.8 and 10.3 ms with L-BFGS.
PATH_NEWTON_CG_MAX_CONDITION = 1000.0

#: Above :data:`PATH_NEWTON_CG_MAX_CONDITION` the penalty no longer
#: dominates, and the weakly regularised fits are where a path spends its
#: time. There, for at most this many features (each class's curvature block
#: is then exact, :data:`softmax.solvers._preconditioners.CLASS_BLOCK_RANK`),
#: the fits use Newton-CG preconditioned by each class's own curvature block
#: (``NewtonCG(preconditioner="blocks")``, built once per fit at the warm
#: start), where L-BFGS with its diagonal preconditioner needs 26-80
#: iterations. On the digits folds of benchmarks/bench_cv.py (C = 0.215 ...
#: 1e4) they took 4-6 outer iterations of about 3 CG steps each: the 5-fold
#: cross-validation went from 2,219 to 316 iterations (its time:
#: benchmarks/results/cv.md). Newton's last step also leaves those fits
#: closer to the optimum than ``tol`` asks: held-out scores within about 2e-7
#: of the exact optimum's, where L-BFGS left up to 4e-6.
PATH_BLOCKS_MAX_FEATURES = 100


def _path_solvers(
    model: SoftmaxRegression, X: Any, y: Any, sample_weight: Any, Cs: np.ndarray
) -> list[Any] | None:
    """Per-``C`` solvers for a path of ``model`` with ``solver="auto"``, or None.

    ``"newton-cg"`` where :data:`PATH_NEWTON_CG_MAX_CONDITION` allows; above
    it Newton-CG with the class-block preconditioner (a configured
    :class:`~softmax.solvers.newton_cg.NewtonCG`) for at most
    :data:`PATH_BLOCKS_MAX_FEATURES` features, else ``"auto"``. For dense
    rows in memory of at most 2,048 features (the class blocks need the
    feature covariance), an L2 penalty, and more coefficients than
    ``"auto"`` gives the full-Hessian Newton (which it then keeps). Only the
    solver changes, not the optimum.
    """
    from softmax.solvers import NEWTON_CHOLESKY_MAX_COEF, SOLVERS

    if model.solver != "auto" or model.l1_ratio != 0 or not isinstance(X, np.ndarray):
        return None
    n, p = X.shape
    fi = bool(model.fit_intercept)
    if p > 2048 or n == 0 or len(np.unique(np.asarray(y))) * (p + fi) <= NEWTON_CHOLESKY_MAX_COEF:
        return None
    rows = X.astype(np.float64, copy=False)
    s = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    gram = (rows.T * s) @ rows if s is not None else rows.T @ rows
    if fi:
        col = rows.sum(axis=0) if s is None else s @ rows
        total = float(n if s is None else s.sum())
        gram = np.block([[gram, col[:, None]], [col[None, :], np.array([[total]])]])
    top = float(np.linalg.eigvalsh(gram)[-1])
    blocks = SOLVERS["newton-cg"].with_options(preconditioner="blocks")
    above = blocks if p <= PATH_BLOCKS_MAX_FEATURES else "auto"
    return [
        "newton-cg" if 0.5 * float(C) * top <= PATH_NEWTON_CG_MAX_CONDITION else above for C in Cs
    ]


def _fit_path(
    model: SoftmaxRegression,
    X: Any,
    y: Any,
    sample_weight: Any,
    Cs: np.ndarray,
    visit: Callable[[int, SoftmaxRegression], None] | None = None,
) -> dict[str, Any]:
    """Fit ``model`` at each ``C`` of the increasing grid ``Cs``, warm-started.

    ``visit(j, model)`` is called after the fit at ``Cs[j]`` (cross-validation
    scores the held-out rows there). ConvergenceWarnings of single fits are
    held back: the caller reports the values of ``C`` that did not converge
    once, from the returned ``converged``. With ``solver="auto"`` the
    solver may differ along the path (:func:`_path_solvers`).
    """
    solvers = _path_solvers(model, X, y, sample_weight, Cs)
    model.set_params(warm_start=True)
    # the same arrays at every C: validated once (SoftmaxRegression._kept_in_memory_data)
    model._keep_rows = True
    try:
        return _fit_grid(model, X, y, sample_weight, Cs, solvers, visit)
    finally:
        model._keep_rows = False
        model.__dict__.pop("_kept_rows", None)
        model.__dict__.pop("_path_solver", None)


def _fit_grid(
    model: SoftmaxRegression,
    X: Any,
    y: Any,
    sample_weight: Any,
    Cs: np.ndarray,
    solvers: list[str] | None,
    visit: Callable[[int, SoftmaxRegression], None] | None,
) -> dict[str, Any]:
    """The loop of :func:`_fit_path` (parameters as there; ``solvers`` per C or None)."""
    n = len(Cs)
    coefs: list[np.ndarray] = []
    intercepts: list[np.ndarray] = []
    n_iter = np.zeros(n, dtype=np.int64)
    objectives = np.zeros(n)
    converged = np.zeros(n, dtype=bool)
    history: list[tuple[float, np.ndarray, np.ndarray]] = []
    for j, C in enumerate(Cs):
        log_c = math.log(float(C))
        start = _extrapolated_start(history, log_c)
        if start is not None:
            # warm_start=True starts the solver from coef_ / intercept_
            model.coef_ = start[0].astype(model.coef_.dtype, copy=False)
            model.intercept_ = start[1].astype(model.intercept_.dtype, copy=False)
        # our own estimator's parameters, set directly: set_params checks the
        # names through inspect.signature at every call (~0.3 ms a fit)
        model.C = float(C)
        if solvers is not None:
            # a name is the estimator's own parameter; a configured solver (the
            # class-block Newton-CG) goes through the private _path_solver
            named = isinstance(solvers[j], str)
            model.solver = solvers[j] if named else "auto"
            model._path_solver = None if named else solvers[j]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y, sample_weight=sample_weight)
        coefs.append(np.array(model.coef_))
        intercepts.append(np.array(model.intercept_))
        n_iter[j] = model.n_iter_
        objectives[j] = model.objective_
        converged[j] = model.converged_
        if converged[j]:
            history.append((log_c, np.array(model.coef_, np.float64), np.array(model.intercept_)))
        else:
            history.clear()  # a curve through an unfinished fit would mislead
        if visit is not None:
            visit(j, model)
    return {
        "coefs": np.stack(coefs),
        "intercepts": np.stack(intercepts),
        "n_iter": n_iter,
        "objectives": objectives,
        "converged": converged,
        "classes": np.asarray(model.classes_),
    }


def _fit_as_on_path(model: SoftmaxRegression, X: Any, y: Any, sample_weight: Any) -> None:
    """``model.fit`` with the solver a path would use at its ``C`` (:func:`_path_solvers`).

    The refit of :class:`SoftmaxRegressionCV` at the chosen ``C``: the same
    optimum, by the solver that reaches it fastest there; the estimator's
    parameters (``solver="auto"``) are left as they are.
    """
    from softmax.solvers import SOLVERS

    solvers = _path_solvers(model, X, y, sample_weight, np.array([float(model.C)]))
    if solvers is not None and solvers[0] != "auto":
        model._path_solver = SOLVERS[solvers[0]] if isinstance(solvers[0], str) else solvers[0]
    try:
        model.fit(X, y, sample_weight=sample_weight)
    finally:
        model.__dict__.pop("_path_solver", None)


def _warn_unconverged(Cs: np.ndarray, converged: np.ndarray, where: str, max_iter: int) -> None:
    bad = np.unique(Cs[~converged])
    if bad.size:
        shown = ", ".join(f"{c:.3g}" for c in bad[:8]) + (" ..." if bad.size > 8 else "")
        warnings.warn(
            f"{where}: the fits at C = {shown} did not converge within max_iter={max_iter}. "
            "Increase max_iter, scale the features (e.g. StandardScaler), or leave out the "
            "largest values of C.",
            ConvergenceWarning,
            stacklevel=3,
        )


def regularization_path(
    X: Any,
    y: Any,
    Cs: int | Sequence[float] | np.ndarray = 10,
    *,
    l1_ratio: float = 0.0,
    sample_weight: Any = None,
    class_weight: dict[Any, float] | str | None = None,
    fit_intercept: bool = True,
    solver: str = "auto",
    tol: float = 1e-7,
    max_iter: int = 1000,
    label_smoothing: float = 0.0,
    l1_type: str = "elementwise",
) -> RegularizationPath:
    """Fit the model along an increasing grid of ``C``, each fit warm-started.

    The fits run from the smallest ``C`` (the strongest penalty: small
    weights, a fast fit) to the largest; each starts from the extrapolation
    (in ``log C``) of the solutions before it (the parabola through the last
    three, the straight line through the first two), which is much closer to
    its optimum than zero. Each point is the same optimum
    :class:`~softmax.SoftmaxRegression` would find at that ``C``, to ``tol``.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Also a Dask collection or a ``softmax.streaming.FileSource``, fitted
        out of core by the estimator (each ``C`` is then one out-of-core fit).
    y : array-like of shape (n_samples,)
    Cs : int or array-like of shape (n_Cs,), default=10
        An int ``n`` is ``np.logspace(-4, 4, n)`` (LogisticRegressionCV's
        grid); values are sorted increasing.
    l1_ratio : float in [0, 1], default=0.0
        Elastic-net mixing (1 is the lasso). With ``l1_ratio > 0`` start the
        grid near :func:`min_c`, below which every weight is zero (given the
        same ``l1_ratio``, ``l1_type``, weights, ``fit_intercept`` and
        ``label_smoothing``: smoothing raises it by about ``1 / (1 - eps)``).
    sample_weight : array-like of shape (n_samples,), default=None
    class_weight : dict, "balanced" or None, default=None
    fit_intercept : bool, default=True
    solver : str, default="auto"
        As in :class:`~softmax.SoftmaxRegression`.
    tol : float, default=1e-7
        Solver tolerance of every fit (relative objective gap).
    max_iter : int, default=1000
        Iteration limit of every fit.
    label_smoothing : float in [0, 1), default=0.0
        Smoothed training targets (see :class:`~softmax.SoftmaxRegression`).
    l1_type : {"elementwise", "grouped"}, default="elementwise"
        ``"grouped"``: the group lasso across classes (a feature enters or
        leaves the model for every class at once); start the grid near
        ``min_c(X, y, l1_ratio=..., l1_type="grouped")``.

    Returns
    -------
    path : RegularizationPath
        ``Cs``, ``coefs`` (n_Cs, n_classes, n_features), ``intercepts``,
        ``n_iter``, ``objectives``, ``converged``, ``n_features_selected``.

    Warns
    -----
    ConvergenceWarning
        Once, naming the values of ``C`` whose fit did not converge.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from softmax.model_selection import min_c, regularization_path
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> c0 = min_c(X, y)
    >>> path = regularization_path(X, y, c0 * np.logspace(0, 3, 4), l1_ratio=1.0)
    >>> path.coefs.shape
    (4, 3, 4)
    >>> path.n_features_selected.tolist()  # features used, as C grows
    [0, 3, 4, 4]
    """
    grid = np.sort(_c_grid(Cs))
    model = SoftmaxRegression(
        l1_ratio=l1_ratio,
        l1_type=l1_type,
        fit_intercept=fit_intercept,
        class_weight=class_weight,
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        warm_start=True,
        label_smoothing=label_smoothing,
    )
    from softmax.backends import external_backend

    if external_backend(X) is None:
        # validate once (not once per C): the fits then get a ready float array
        X = _check_x(X)
    fits = _fit_path(model, X, y, sample_weight, grid)
    _warn_unconverged(grid, fits["converged"], "regularization_path", max_iter)
    coefs = fits["coefs"]
    return RegularizationPath(
        Cs=grid,
        l1_ratio=float(l1_ratio),
        classes=fits["classes"],
        coefs=coefs,
        intercepts=fits["intercepts"],
        n_iter=fits["n_iter"],
        objectives=fits["objectives"],
        converged=fits["converged"],
        n_features_selected=(coefs != 0).any(axis=1).sum(axis=1),
        l1_type=str(l1_type),
    )


# -- input checks ---------------------------------------------------------------


def _check_l1_type(l1_type: Any) -> str:
    from softmax.penalties import L1_TYPES

    if not isinstance(l1_type, str) or l1_type not in L1_TYPES:
        raise ValueError(
            f"l1_type must be one of {list(L1_TYPES)}; got {l1_type!r} ('grouped' drops a "
            "feature from every class at once, 'elementwise' is the L1 / elastic net)."
        )
    return l1_type


def _refuse_external(X: Any, what: str) -> None:
    from softmax.backends import external_backend

    if external_backend(X) is not None:
        raise TypeError(
            f"{what} needs the rows in memory (a NumPy array, SciPy sparse matrix or data "
            f"frame); got {type(X).__name__}. Load the rows (e.g. dask_array.compute()) "
            "or fit a regularization_path, which accepts out-of-core data."
        )


def _check_x(X: Any) -> Any:
    from sklearn.utils import check_array

    return check_array(X, accept_sparse="csr", dtype=_FLOAT_DTYPES, order="C")


def _check_xy(X: Any, y: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    from sklearn.utils import check_X_y

    X, y = check_X_y(X, y, accept_sparse="csr", dtype=_FLOAT_DTYPES, order="C")
    classes, codes = encode_labels(y)
    if len(classes) < 2:
        raise ValueError(
            "needs samples of at least 2 classes in the data, but the data contain only "
            f"one class: {classes.tolist()}."
        )
    return X, codes, classes


# -- cross-validation -----------------------------------------------------------


def _labelled_scorer(scoring: Any, classes: np.ndarray) -> Callable[..., float]:
    """The scorer for ``scoring``, told every class where its metric takes ``labels``.

    A held-out fold may lack a class; metrics such as ``log_loss`` then need
    the full list of classes (what LogisticRegressionCV does too).
    """
    from sklearn.metrics import get_scorer, make_scorer

    if scoring is None:
        return get_scorer("accuracy")
    scorer = get_scorer(scoring)
    func = getattr(scorer, "_score_func", None)
    if func is None:
        return scorer
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return scorer
    kwargs = dict(getattr(scorer, "_kwargs", {}))
    if "labels" not in params or "labels" in kwargs:
        return scorer
    if len(classes) == 2 and "pos_label" in params and "pos_label" not in kwargs:
        kwargs["pos_label"] = classes[-1]
    return make_scorer(
        func,
        greater_is_better=getattr(scorer, "_sign", 1) > 0,
        response_method=getattr(scorer, "_response_method", "predict"),
        labels=classes,
        **kwargs,
    )


class _FastScore:
    """scikit-learn's ``neg_log_loss`` or ``accuracy`` scorer without its input checks.

    The held-out rows of a fold are scored at every ``C``; scikit-learn's
    scorer spends ~8 ms per call validating labels and probabilities (more
    than a warm-started fit at a small ``C``), so for these two scorers and
    our own estimator the same numbers are computed directly from label
    codes found once per fold: ``log_loss`` clips the probabilities to
    ``[eps, 1 - eps]`` (``eps`` of their dtype) as scikit-learn does, and
    both average with ``sample_weight``. Tests check equality with
    scikit-learn's scorers.
    """

    def __init__(
        self, kind: str, y: np.ndarray, classes: np.ndarray, sample_weight: np.ndarray | None
    ) -> None:
        self.kind = kind
        self.y = y
        self.codes = np.searchsorted(classes, y)  # classes are sorted (np.unique)
        self.rows = np.arange(y.shape[0])
        self.weight = sample_weight

    def __call__(self, model: SoftmaxRegression, X: Any) -> float:
        if self.kind == "accuracy":
            return float(np.average(model.predict(X) == self.y, weights=self.weight))
        proba = model.predict_proba(X)
        eps = np.finfo(proba.dtype).eps
        p = np.clip(proba[self.rows, self.codes], eps, 1 - eps).astype(np.float64)
        return float(np.average(np.log(p), weights=self.weight))


def _fast_score_kind(scoring: Any) -> str | None:
    if scoring is None or scoring == "accuracy":
        return "accuracy"
    if scoring == "neg_log_loss":
        return "neg_log_loss"
    return None


def _fold_path(
    X: Any,
    y: np.ndarray,
    weights: np.ndarray,
    sample_weight: np.ndarray | None,
    train: np.ndarray,
    test: np.ndarray,
    classes: np.ndarray,
    Cs: np.ndarray,
    l1_ratio: float,
    params: dict[str, Any],
    scoring: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One fold's path: coefficients, held-out scores, iterations, convergence."""
    X_train, y_train, w_train = X[train], y[train], weights[train]
    absent = np.setdiff1d(classes, y_train)
    if absent.size:
        # Every fold must know every class (so that paths line up and the scorer
        # sees all columns): one zero-weight row per class missing from the
        # training rows adds the class without changing the objective; its
        # probability is driven towards 0, as with no rows at all.
        X_train = _append_zero_rows(X_train, absent.size)
        y_train = np.concatenate([y_train, absent])
        w_train = np.concatenate([w_train, np.zeros(absent.size)])
    X_test, y_test = X[test], y[test]
    sw_test = None if sample_weight is None else sample_weight[test]
    order = np.argsort(Cs, kind="stable")
    scores = np.empty(len(Cs))
    kind = _fast_score_kind(scoring)
    if kind is not None:
        fast = _FastScore(kind, y_test, classes, sw_test)

        def visit(j: int, model: SoftmaxRegression) -> None:
            scores[j] = fast(model, X_test)

    else:
        scorer = _labelled_scorer(scoring, classes)
        score_kwargs = {} if sw_test is None else {"sample_weight": sw_test}

        def visit(j: int, model: SoftmaxRegression) -> None:
            scores[j] = scorer(model, X_test, y_test, **score_kwargs)

    model = SoftmaxRegression(l1_ratio=l1_ratio, **params)
    with warnings.catch_warnings():
        # classes without weight in this fold: expected here (see above)
        warnings.filterwarnings("ignore", message=r"Classes .* have zero total weight")
        fits = _fit_path(model, X_train, y_train, w_train, Cs[order], visit)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    coefs = fits["coefs"]
    if params["fit_intercept"]:
        coefs = np.concatenate([coefs, fits["intercepts"][:, :, None]], axis=2)
    return coefs[inverse], scores[inverse], fits["n_iter"][inverse], fits["converged"][inverse]


def _append_zero_rows(X: Any, n: int) -> Any:
    if hasattr(X, "tocsr"):
        import scipy.sparse as sp

        return sp.vstack([X, sp.csr_matrix((n, X.shape[1]), dtype=X.dtype)], format="csr")
    return np.vstack([X, np.zeros((n, X.shape[1]), dtype=X.dtype)])


def _estimator_method(name: str) -> Callable[[SoftmaxRegressionCV, Any], np.ndarray]:
    """``SoftmaxRegressionCV.<name>``: the refitted ``estimator_``'s, after this model's checks.

    One piece of code for the four predicting methods; each keeps the
    docstring of :class:`~softmax.SoftmaxRegression`'s method, which is what
    it runs (``estimator_`` is a SoftmaxRegression).
    """

    def method(self: SoftmaxRegressionCV, X: Any) -> np.ndarray:
        X = self._checked(X)  # first: NotFittedError before estimator_ is read
        return getattr(self.estimator_, name)(X)

    method.__name__ = name
    method.__qualname__ = f"SoftmaxRegressionCV.{name}"
    method.__doc__ = getattr(SoftmaxRegression, name).__doc__
    return method


class SoftmaxRegressionCV(ClassifierMixin, BaseEstimator):
    """Softmax regression with ``C`` (and ``l1_ratio``) chosen by cross-validation.

    A drop-in for scikit-learn's ``LogisticRegressionCV`` with the same
    parameter names and fitted attributes where they mean something here:
    for each fold and ``l1_ratio`` the model is fitted along the grid ``Cs``
    (increasing, each fit warm-started from the ones before it, see
    :func:`regularization_path`) and scored on the held-out rows; the best
    mean score picks ``C_`` and ``l1_ratio_``, and the model is refitted on
    all rows there. Folds run in parallel with ``n_jobs``.

    Parameters
    ----------
    Cs : int or array-like of shape (n_Cs,), default=10
        Values of ``C`` to try; an int ``n`` is ``np.logspace(-4, 4, n)``.
    l1_ratios : array-like of shape (n_l1_ratios,), default=(0.0,)
        Elastic-net mixings to try, each in [0, 1] (0: L2, 1: lasso).
    l1_type : {"elementwise", "grouped"}, default="elementwise"
        What the ``l1_ratio`` share sums: ``|W_kj|``, or (``"grouped"``) the
        features' column norms, the group lasso across classes (see
        :class:`~softmax.SoftmaxRegression`).
    fit_intercept : bool, default=True
    cv : int, cross-validation generator or iterable, default=None
        As in scikit-learn: None is 5 folds, an int ``k`` is ``k`` folds,
        stratified (``StratifiedKFold``, not shuffled); or a splitter, or a
        list of ``(train, test)`` index pairs.
    scoring : str, callable or None, default="neg_log_loss"
        A scikit-learn scorer name or ``scorer(estimator, X, y)``; greater is
        better. None is accuracy. **The default differs from
        LogisticRegressionCV's** (accuracy until scikit-learn 1.11): the
        held-out log loss judges the probabilities, is smooth in ``C`` and
        rarely ties, where accuracy moves in steps of ``1 / n_test``.
    solver : str, default="auto"
        Solver of every fit (see :class:`~softmax.SoftmaxRegression`).
    tol : float, default=1e-7
        Solver tolerance of every fit: the relative objective gap (not
        LogisticRegressionCV's gradient tolerance).
    max_iter : int, default=1000
        Iteration limit of every fit.
    class_weight : dict, "balanced" or None, default=None
        Per-class weights; ``"balanced"`` is computed once on all of ``y``
        (with ``sample_weight``), as LogisticRegressionCV does.
    n_jobs : int, default=None
        Folds (times ``l1_ratios``) fitted in parallel by joblib; None is 1
        unless in a ``joblib.parallel_backend`` context, -1 all cores.
    verbose : int, default=0
        joblib's progress messages when > 0.
    refit : bool, default=True
        Refit on all rows at the chosen ``C`` and ``l1_ratio`` (warm-started
        from the folds' mean coefficients there). If False, the coefficients
        are the mean over folds of each fold's best coefficients and ``C_``
        the mean of their ``C`` (LogisticRegressionCV's rule); with
        ``select="1se"`` every fold contributes its coefficients at the
        chosen ``C``.
    random_state : int, numpy.random.Generator or None, default=None
        Passed to the solver (only the stochastic one uses it); it does not
        shuffle the folds (give ``cv=StratifiedKFold(k, shuffle=True,
        random_state=...)`` for that).
    select : {"best", "1se"}, default="best"
        ``"best"``: the grid point with the best mean score. ``"1se"``: the
        one-standard-error rule (Breiman et al. 1984; glmnet's
        ``lambda.1se``): the smallest ``C`` (the most regularised model),
        with the best point's ``l1_ratio``, whose mean score is within one
        standard error (over folds) of the best mean.
    label_smoothing : float in [0, 1), default=0.0
        Smoothed training targets of every fit (see
        :class:`~softmax.SoftmaxRegression`); the held-out rows are scored
        against their true labels.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
    Cs_ : ndarray of shape (n_Cs,)
        The grid of ``C``, in the order given.
    l1_ratios_ : ndarray of shape (n_l1_ratios,)
    scores_ : ndarray of shape (n_folds, n_l1_ratios, n_Cs)
        Held-out score of each fold at each grid point (the layout of
        LogisticRegressionCV with ``use_legacy_attributes=False``).
    coefs_paths_ : ndarray of shape (n_folds, n_l1_ratios, n_Cs, n_classes, n_dof)
        Each fold's coefficients, ``n_dof = n_features + fit_intercept``
        (intercepts last).
    n_iter_ : ndarray of shape (n_folds, n_l1_ratios, n_Cs)
        Solver iterations of each fit.
    C_ : float
        The chosen ``C``.
    l1_ratio_ : float
        The chosen ``l1_ratio``.
    best_index_ : tuple of (int, int)
        ``(l1_ratio index, C index)`` of the chosen grid point in ``scores_``
        (with ``refit=False`` and ``select="best"``, of the best mean score).
    n_features_selected_ : int
        Features the chosen model uses (a weight not zero for some class).
    estimator_ : SoftmaxRegression
        The model that predicts (holding ``coef_`` and ``intercept_``): save
        it with ``estimator_.save(path)`` or export it like any fitted
        :class:`~softmax.SoftmaxRegression`.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        When fitted on a data frame with string column names.

    See Also
    --------
    regularization_path : one path, on all rows.
    sklearn.linear_model.LogisticRegressionCV : the same with LogisticRegression.

    Notes
    -----
    Differences from LogisticRegressionCV: ``scoring`` defaults to
    ``"neg_log_loss"``; ``tol`` is a relative objective gap; attributes
    have the new (not legacy) layout; ``coef_`` has one row per class also
    with two classes, and there, as for :class:`~softmax.SoftmaxRegression`,
    ``C`` with an L2 penalty equals LogisticRegression's ``2 * C``;
    ``dual``, ``penalty`` (deprecated there) and ``intercept_scaling`` do not
    apply. ``score`` uses ``scoring``, as LogisticRegressionCV's does.
    Rows must be in memory (Dask collections and file sources are refused
    with a ``TypeError``; :func:`regularization_path` accepts them).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from softmax import SoftmaxRegressionCV
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxRegressionCV(Cs=5).fit(X, y)
    >>> float(clf.C_)
    100.0
    >>> clf.scores_.shape  # (folds, l1_ratios, Cs)
    (5, 1, 5)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    def __init__(
        self,
        *,
        Cs: int | Sequence[float] = 10,
        l1_ratios: Sequence[float] = (0.0,),
        fit_intercept: bool = True,
        cv: Any = None,
        scoring: Any = "neg_log_loss",
        solver: str = "auto",
        tol: float = 1e-7,
        max_iter: int = 1000,
        class_weight: dict[Any, float] | str | None = None,
        n_jobs: int | None = None,
        verbose: int = 0,
        refit: bool = True,
        random_state: int | np.random.Generator | None = None,
        select: str = "best",
        label_smoothing: float = 0.0,
        l1_type: str = "elementwise",
    ) -> None:
        self.Cs = Cs
        self.l1_ratios = l1_ratios
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.refit = refit
        self.random_state = random_state
        self.select = select
        self.label_smoothing = label_smoothing
        self.l1_type = l1_type

    def __sklearn_tags__(self):  # -> sklearn.utils.Tags (sklearn >= 1.6)
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = True
        return tags

    # -- fitting -----------------------------------------------------------------

    def _l1_ratio_grid(self) -> np.ndarray:
        values = self.l1_ratios
        if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(
                "l1_ratios must be a list of numbers in [0, 1] (e.g. (0.0,) for L2, "
                f"(1.0,) for the lasso); got {values!r}."
            )
        grid = [check_in_range(v, "each value of l1_ratios", 0.0, 1.0) for v in values]
        if not grid:
            raise ValueError("l1_ratios is empty; give at least one value, e.g. (0.0,).")
        return np.asarray(grid, dtype=np.float64)

    def _fold_params(self) -> dict[str, Any]:
        """Parameters of every fold's SoftmaxRegression.

        Those this class reads itself are checked here; the solver's name is
        checked by the first fit (with SoftmaxRegression's message).
        """
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ValueError(f"fit_intercept must be True or False; got {self.fit_intercept!r}.")
        return {
            "fit_intercept": bool(self.fit_intercept),
            "solver": self.solver,
            "tol": check_in_range(self.tol, "tol", 0.0, np.inf),
            "max_iter": check_int_at_least(self.max_iter, "max_iter", 1),
            "random_state": self.random_state,
            "label_smoothing": check_label_smoothing(self.label_smoothing),
            "l1_type": _check_l1_type(self.l1_type),
        }

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, groups: Any = None
    ) -> SoftmaxRegressionCV:
        """Cross-validate the grid, choose ``C`` (and ``l1_ratio``), refit.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
            Rows in memory (float32 is kept, anything else becomes float64).
        y : array-like of shape (n_samples,)
            Labels of any type; at least two classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the fits, and of the held-out scores (passed to
            the scorer as ``sample_weight``).
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` (e.g. ``GroupKFold``).

        Returns
        -------
        self : SoftmaxRegressionCV
        """
        from joblib import Parallel, delayed
        from sklearn.model_selection import check_cv

        Cs = _c_grid(self.Cs)
        l1_ratios = self._l1_ratio_grid()
        if not isinstance(self.refit, (bool, np.bool_)):
            raise ValueError(f"refit must be True or False; got {self.refit!r}.")
        if self.select not in SELECT_RULES:
            raise ValueError(f"select must be one of {list(SELECT_RULES)}; got {self.select!r}.")
        params = self._fold_params()
        _refuse_external(X, "SoftmaxRegressionCV")
        X, y, classes, codes, weights = labelled_rows(self, X, y, sample_weight, self.class_weight)
        sw = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
        if not (np.bincount(codes, weights=weights, minlength=len(classes)) > 0).sum() >= 2:
            raise ValueError(
                "SoftmaxRegressionCV needs at least 2 classes with positive total weight; "
                "the sample weights or class_weight remove all but one."
            )
        cv = check_cv(self.cv, y, classifier=True)
        folds = list(cv.split(X, y, groups))
        if _fast_score_kind(self.scoring) is None:
            _labelled_scorer(self.scoring, classes)  # an unknown name fails here, once
        results = Parallel(n_jobs=self.n_jobs, verbose=self.verbose, prefer="processes")(
            delayed(_fold_path)(
                X, y, weights, sw, train, test, classes, Cs, float(l1), params, self.scoring
            )
            for train, test in folds
            for l1 in l1_ratios
        )
        n_folds, n_l1, n_cs = len(folds), len(l1_ratios), len(Cs)
        coefs, scores, n_iter, converged = (np.asarray(part) for part in zip(*results))
        self.coefs_paths_ = coefs.reshape(n_folds, n_l1, n_cs, *coefs.shape[2:])
        self.scores_ = scores.reshape(n_folds, n_l1, n_cs)
        self.n_iter_ = n_iter.reshape(n_folds, n_l1, n_cs)
        self.Cs_ = Cs
        self.l1_ratios_ = l1_ratios
        self.classes_ = classes
        _warn_unconverged(Cs, converged.all(axis=0), "SoftmaxRegressionCV", params["max_iter"])

        best_l1, best_c = self._choose(self.scores_)
        self.best_index_ = (int(best_l1), int(best_c))
        p = X.shape[1]
        if self.refit:
            self.C_ = float(Cs[best_c])
            self.l1_ratio_ = float(l1_ratios[best_l1])
            start = self.coefs_paths_[:, best_l1, best_c].mean(axis=0)
            model = SoftmaxRegression(
                C=self.C_, l1_ratio=self.l1_ratio_, warm_start=True, **params
            )
            model.classes_ = classes
            model.coef_ = np.ascontiguousarray(start[:, :p], dtype=X.dtype)
            model.intercept_ = (
                start[:, p].astype(X.dtype) if params["fit_intercept"] else np.zeros(len(classes))
            )
            _fit_as_on_path(model, X, y, weights)
            model.set_params(warm_start=False)
        else:
            coef, self.C_, self.l1_ratio_ = self._average_folds(best_l1, best_c, Cs, l1_ratios)
            model = SoftmaxRegression(C=self.C_, l1_ratio=self.l1_ratio_, **params)
            model.classes_ = classes
            model.n_features_in_ = p
            model.coef_ = np.ascontiguousarray(coef[:, :p], dtype=X.dtype)
            intercept = (
                coef[:, p] - coef[:, p].mean() if params["fit_intercept"] else 0 * coef[:, 0]
            )
            model.intercept_ = intercept.astype(X.dtype)
        names = getattr(self, "feature_names_in_", None)
        if names is not None:  # fitted on the checked array: give it the frame's names
            model.feature_names_in_ = names
        self.estimator_ = model
        self.coef_ = model.coef_
        self.intercept_ = model.intercept_
        return self

    def _choose(self, scores: np.ndarray) -> tuple[int, int]:
        """``(l1_ratio index, C index)`` picked by ``select`` from ``scores``."""
        mean = scores.mean(axis=0)  # (n_l1, n_cs)
        # the first maximum in (C, l1_ratio) order: LogisticRegressionCV's tie rule
        flat = int(np.argmax(mean.T))
        best_c, best_l1 = np.unravel_index(flat, mean.T.shape)
        if self.select == "best":
            return int(best_l1), int(best_c)
        n_folds = scores.shape[0]
        se = scores.std(axis=0, ddof=1) / math.sqrt(n_folds) if n_folds > 1 else 0 * mean
        threshold = mean[best_l1, best_c] - se[best_l1, best_c]
        Cs = _c_grid(self.Cs)
        within = np.flatnonzero(mean[best_l1] >= threshold)
        return int(best_l1), int(within[np.argmin(Cs[within])])

    def _average_folds(
        self, best_l1: int, best_c: int, Cs: np.ndarray, l1_ratios: np.ndarray
    ) -> tuple[np.ndarray, float, float]:
        """``refit=False``: mean coefficients over folds, and the mean C / l1_ratio."""
        paths = self.coefs_paths_
        if self.select == "1se":
            return (
                paths[:, best_l1, best_c].mean(axis=0),
                float(Cs[best_c]),
                float(l1_ratios[best_l1]),
            )
        n_folds, n_l1, n_cs = self.scores_.shape
        # each fold's own best grid point (LogisticRegressionCV's refit=False)
        per_fold = self.scores_.transpose(0, 2, 1).reshape(n_folds, -1).argmax(axis=1)
        c_idx, l1_idx = np.unravel_index(per_fold, (n_cs, n_l1))
        coef = np.mean([paths[f, l1_idx[f], c_idx[f]] for f in range(n_folds)], axis=0)
        return coef, float(Cs[c_idx].mean()), float(l1_ratios[l1_idx].mean())

    @property
    def n_features_selected_(self) -> int:
        """Features the chosen model uses (``estimator_.n_features_selected_``)."""
        check_is_fitted(self)
        return self.estimator_.n_features_selected_

    # -- prediction --------------------------------------------------------------

    def _checked(self, X: Any) -> Any:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, accept_sparse="csr", dtype=_FLOAT_DTYPES)

    decision_function = _estimator_method("decision_function")
    predict_proba = _estimator_method("predict_proba")
    predict_log_proba = _estimator_method("predict_log_proba")
    predict = _estimator_method("predict")

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """The ``scoring`` metric on ``(X, y)`` (greater is better), as in LogisticRegressionCV.

        Parameters
        ----------
        X : {array-like, sparse matrix, data frame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            Negative log loss with the default ``scoring``.
        """
        check_is_fitted(self)
        scorer = _labelled_scorer(self.scoring, self.classes_)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return float(scorer(self, X, y, **kwargs))
