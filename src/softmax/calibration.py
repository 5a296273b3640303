r"""Temperature scaling: one scalar that calibrates a classifier's probabilities.

A model fitted with little regularisation is usually over-confident: its
top-class probabilities are higher than its accuracy. Temperature scaling
(Guo et al., "On calibration of modern neural networks", ICML 2017) divides
the logits ``z`` by one temperature ``T > 0`` fitted on held-out rows,

.. math::

    \hat p(x) = \operatorname{softmax}(z(x) / T), \qquad
    T = \arg\min_{T > 0} \sum_i s_i \big[\operatorname{logsumexp}(z_i / T)
        - z_{i, y_i} / T\big],

the held-out negative log-likelihood (NLL). Dividing every logit of a row by
the same ``T`` keeps their order, so the predicted class never changes; only
the confidence does. In ``beta = 1 / T`` the NLL is convex (a log-sum-exp of
linear functions of ``beta``, minus a linear term), with derivative
``sum_i s_i (E_p[z_i] - z_{i, y_i})`` and second derivative
``sum_i s_i Var_p[z_i]`` (mean and variance of the row's logits under its
probabilities), so :func:`fit_temperature` finds it to rounding by a
bracketed (safeguarded) Newton iteration.

- :func:`fit_temperature`: ``T`` from logits and labels.
- :class:`TemperatureScaling`: the scikit-learn wrapper around a fitted
  classifier (``TemperatureScaling(clf).fit(X_val, y_val)``), or around
  logits themselves (``TemperatureScaling().fit(logits_val, y_val)``).

The expected calibration error to judge the result is
:func:`softmax.metrics.expected_calibration_error`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from softmax._validation import check_sample_weight, encode_with_classes

__all__ = ["TemperatureScaling", "fit_temperature"]

#: ``response_method`` values of :class:`TemperatureScaling`.
RESPONSE_METHODS = ("auto", "decision_function", "predict_proba")

#: Largest ``1 / T`` searched: beyond it the fitted probabilities are one-hot
#: to double precision for any logit gap a model produces.
_BETA_MAX = 1e12


def _moments(z: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: ``logsumexp(beta z)``, ``E_p[z]`` and ``Var_p[z]`` with ``p = softmax(beta z)``."""
    top = z.max(axis=1, keepdims=True)
    shifted = beta * (z - top)  # <= 0: exp cannot overflow
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    p = e / total
    mean = np.einsum("ij,ij->i", p, z)
    dev = z - mean[:, None]
    var = np.einsum("ij,ij,ij->i", p, dev, dev)
    lse = beta * top[:, 0] + np.log(total[:, 0])
    return lse, mean, var


def _nll(z: np.ndarray, zy: np.ndarray, w: np.ndarray, beta: float) -> float:
    lse, _, _ = _moments(z, beta)
    return float(w @ (lse - beta * zy))


def fit_temperature(
    logits: Any,
    y: Any,
    *,
    sample_weight: Any = None,
    max_iter: int = 200,
) -> float:
    r"""The temperature ``T`` that minimises the NLL of ``softmax(logits / T)``.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Held-out logits (any finite numbers: log-probabilities work too).
    y : array-like of shape (n_samples,)
        Integer class indices ``0 .. n_classes - 1`` (the column of each
        row's true class).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights.
    max_iter : int, default=200
        Safeguard on the Newton/bisection steps (about 10 are needed).

    Returns
    -------
    T : float
        In ``(0, inf)``; ``inf`` when the logits are no better than uniform
        probabilities on these rows (their NLL only falls as ``T`` grows), and
        ``0.0`` when every row's true class has the strictly largest logit
        (the NLL falls towards 0 as ``T`` shrinks): both warn.

    Raises
    ------
    ValueError
        Logits that are not 2-D or not finite, labels outside
        ``0 .. n_classes - 1``, a length mismatch, or bad weights.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax.calibration import fit_temperature
    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> y = np.array([0, 0, 1, 1])  # right 3 times in 4 with confidence 0.98
    >>> T = fit_temperature(logits, y)
    >>> round(T, 4), round(float(1 / (1 + np.exp(-4 / T))), 4)  # now 3/4 confident
    (3.641, 0.75)
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(
            f"logits must be 2-D of shape (n_samples, n_classes >= 2); got shape {z.shape}."
        )
    if z.shape[0] == 0:
        raise ValueError("fit_temperature needs at least one row of logits; got 0.")
    if not np.isfinite(z).all():
        raise ValueError(
            "logits contain NaN or infinity; pass finite logits (clip log-probabilities "
            "of 0 to a finite floor first)."
        )
    codes = np.asarray(y)
    if codes.shape != (z.shape[0],):
        raise ValueError(f"y has shape {codes.shape}; expected ({z.shape[0]},), one per row.")
    if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= z.shape[1]:
        raise ValueError(
            f"y must hold integer class indices in 0 .. {z.shape[1] - 1} (the logit column "
            "of each row's class)."
        )
    w = check_sample_weight(sample_weight, z.shape[0])
    # the NLL is unchanged by a per-row shift of the logits: centre the rows so
    # that the moments below see only the spread
    z = z - z.mean(axis=1, keepdims=True)
    zy = z[np.arange(z.shape[0]), codes]

    def slope_curv(beta: float) -> tuple[float, float]:
        _, mean, var = _moments(z, beta)
        return float(w @ (mean - zy)), float(w @ var)

    # d NLL / d beta at beta = 0 is sum_i s_i (mean_k z_ik - z_iy): the logits
    # help only if it is negative
    g0, _ = slope_curv(0.0)
    if g0 >= 0:
        warnings.warn(
            "fit_temperature: on these rows the logits do no better than uniform "
            "probabilities, so the held-out NLL falls as T grows without bound; T = inf "
            "(uniform probabilities). Check that the labels match the logit columns.",
            UserWarning,
            stacklevel=2,
        )
        return math.inf
    # As beta grows the slope tends to sum_i s_i (max_k z_ik - z_iy) >= 0: it
    # stays negative (no finite optimum) only if every weighted row's true
    # class has the largest logit.
    if (zy >= z.max(axis=1))[w > 0].all():
        warnings.warn(
            "fit_temperature: every row's true class has the largest logit, so the "
            "held-out NLL falls towards 0 as T shrinks; T = 0 (one-hot probabilities). "
            "Use more held-out rows.",
            UserWarning,
            stacklevel=2,
        )
        return 0.0
    # bracket the root of the increasing slope: g(lo) < 0 <= g(hi)
    lo, hi = 0.0, 1.0
    g_hi, h_hi = slope_curv(hi)
    while g_hi < 0 and hi < _BETA_MAX:
        lo = hi
        hi *= 4.0
        g_hi, h_hi = slope_curv(hi)
    beta, g, h = hi, g_hi, h_hi
    for _ in range(max_iter):
        if g == 0.0 or hi - lo <= 4 * np.finfo(float).eps * hi:
            break
        if g > 0:
            hi = beta
        else:
            lo = beta
        step = beta - g / h if h > 0 else math.nan
        # Newton inside the bracket, else bisection (the slope is increasing)
        beta_new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(beta_new - beta) <= 2 * np.finfo(float).eps * beta:
            break
        beta = beta_new
        g, h = slope_curv(beta)
    return 1.0 / beta


def _logits_of(estimator: Any, X: Any, method: str) -> np.ndarray:
    """The estimator's logits for ``X``, of shape (n_samples, n_classes)."""
    if method == "auto":
        method = (
            "decision_function" if hasattr(estimator, "decision_function") else "predict_proba"
        )
    if method == "decision_function":
        z = np.asarray(estimator.decision_function(X), dtype=np.float64)
        if z.ndim == 1:
            # binary log-odds d: sigmoid(d) = softmax([0, d])[1]
            z = np.column_stack([np.zeros_like(z), z])
        return z
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    # log-probabilities are logits; a probability of 0 gets the floor log(tiny)
    return np.log(np.maximum(proba, np.finfo(np.float64).tiny))


class TemperatureScaling(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Calibrate a fitted classifier with one temperature fitted on held-out rows.

    ``TemperatureScaling(clf).fit(X_val, y_val)`` takes the logits of an
    already fitted classifier ``clf`` on held-out rows (rows ``clf`` was not
    fitted on) and finds the ``T`` that minimises their negative
    log-likelihood under ``softmax(logits / T)`` (see
    :func:`fit_temperature`). ``predict_proba`` then returns those
    probabilities; ``predict`` is ``clf.predict``, unchanged.

    With ``estimator=None`` the rows given to ``fit`` and the prediction
    methods are the logits themselves, of shape (n_samples, n_classes).

    Parameters
    ----------
    estimator : classifier or None, default=None
        A *fitted* classifier (like ``CalibratedClassifierCV``'s prefit
        estimator; ``clone`` leaves it unfitted, so inside pipelines or search
        wrap it in ``sklearn.frozen.FrozenEstimator``); None: ``X`` are logits.
    response_method : {"auto", "decision_function", "predict_proba"}, default="auto"
        Where the logits come from: ``decision_function`` (binary log-odds
        ``d`` become ``[0, d]``), or the log of ``predict_proba``; ``"auto"``
        uses ``decision_function`` when the estimator has it.
    classes : array-like of shape (n_classes,), default=None
        With ``estimator=None``: the label of each logit column (default
        ``0 .. n_classes - 1``). Ignored otherwise (``estimator.classes_``).

    Attributes
    ----------
    temperature_ : float
        The fitted ``T`` (> 1 softens over-confident probabilities).
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
        Features of ``X`` (the estimator's), or the number of logit columns.

    See Also
    --------
    fit_temperature : the same on arrays.
    softmax.metrics.expected_calibration_error : to judge calibration.
    sklearn.calibration.CalibratedClassifierCV : sigmoid / isotonic calibration.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from softmax import SoftmaxRegression
    >>> from softmax.calibration import TemperatureScaling
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SoftmaxRegression(C=100.0).fit(X[:1000] / 16, y[:1000])
    >>> ts = TemperatureScaling(clf).fit(X[1000:1400] / 16, y[1000:1400])
    >>> bool(ts.temperature_ > 1)  # the C = 100 fit was over-confident
    True
    >>> bool((ts.predict(X[1400:] / 16) == clf.predict(X[1400:] / 16)).all())
    True
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        response_method: str = "auto",
        classes: Any = None,
    ) -> None:
        self.estimator = estimator
        self.response_method = response_method
        self.classes = classes

    def _check_response_method(self) -> str:
        if self.response_method not in RESPONSE_METHODS:
            raise ValueError(
                f"response_method must be one of {list(RESPONSE_METHODS)}; got "
                f"{self.response_method!r}."
            )
        return self.response_method

    def _raw_logits(self, X: Any, *, fitting: bool) -> np.ndarray:
        """Logits of ``X`` before the temperature (validated)."""
        method = self._check_response_method()
        if self.estimator is None:
            from sklearn.utils import check_array

            z = check_array(X, dtype=np.float64)
            if fitting:
                if z.shape[1] < 2:
                    raise ValueError(
                        f"With estimator=None, X holds logits of shape (n_samples, "
                        f"n_classes >= 2); got {z.shape[1]} column."
                    )
                self.n_features_in_ = z.shape[1]
            elif z.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {z.shape[1]} columns, but TemperatureScaling was fitted on "
                    f"logits of {self.n_features_in_} classes."
                )
            return z
        if fitting:
            try:
                check_is_fitted(self.estimator)
            except NotFittedError:
                raise NotFittedError(
                    f"TemperatureScaling calibrates an already fitted classifier, but this "
                    f"{type(self.estimator).__name__} is not fitted: fit it on the training "
                    "rows first, then fit TemperatureScaling on held-out rows (to use it "
                    "inside a pipeline or a search, wrap the fitted classifier in "
                    "sklearn.frozen.FrozenEstimator)."
                ) from None
            if not hasattr(self.estimator, "classes_"):
                raise TypeError(
                    f"{type(self.estimator).__name__} has no classes_: TemperatureScaling "
                    "needs a classifier."
                )
        z = _logits_of(self.estimator, X, method)
        if not np.isfinite(z).all():
            raise ValueError(
                f"The estimator's {method} gave NaN or infinite values; check X for NaN "
                "or infinity."
            )
        return z

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TemperatureScaling:
        """Fit the temperature on held-out rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out rows for the estimator (rows it was not fitted on), or
            logits of shape (n_samples, n_classes) when ``estimator=None``.
        y : array-like of shape (n_samples,)
            Their labels, each one of the classes.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : TemperatureScaling
        """
        z = self._raw_logits(X, fitting=True)
        if self.estimator is None:
            classes = np.arange(z.shape[1]) if self.classes is None else np.asarray(self.classes)
            if classes.shape != (z.shape[1],):
                raise ValueError(
                    f"classes has {classes.size} labels for {z.shape[1]} logit columns."
                )
            if np.unique(classes).size != classes.size:
                raise ValueError("classes must not repeat a label.")
        else:
            classes = np.asarray(self.estimator.classes_)
            self.n_features_in_ = getattr(self.estimator, "n_features_in_", None)
            if self.n_features_in_ is None:
                del self.n_features_in_
        y = np.asarray(y)
        if y.shape != (z.shape[0],):
            raise ValueError(f"y has shape {y.shape}; expected ({z.shape[0]},), one per row.")
        order = np.argsort(classes, kind="stable")
        sorted_codes = encode_with_classes(y, classes[order])
        codes = order[sorted_codes]
        self.temperature_ = fit_temperature(z, codes, sample_weight=sample_weight)
        self.classes_ = classes
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits divided by the temperature, of shape (n_samples, n_classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        logits : ndarray of shape (n_samples, n_classes)
            Two columns also for a binary estimator (``[0, d] / T``).
        """
        check_is_fitted(self)
        z = self._raw_logits(X, fitting=False)
        T = self.temperature_
        if T == 0.0 or math.isinf(T):
            raise ValueError(
                f"the fitted temperature is {T}: the scaled logits are not finite; use "
                "predict_proba, which takes the limit."
            )
        return z / T

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / temperature_)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Column ``k`` is ``P(y = classes_[k] | x)``.
        """
        from softmax.functions import softmax

        check_is_fitted(self)
        z = self._raw_logits(X, fitting=False)
        T = self.temperature_
        if math.isinf(T):
            return np.full(z.shape, 1.0 / z.shape[1])
        return softmax(z, axis=1, temperature=T)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed without underflow.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        from softmax.functions import log_softmax

        check_is_fitted(self)
        z = self._raw_logits(X, fitting=False)
        T = self.temperature_
        if math.isinf(T):
            return np.full(z.shape, -math.log(z.shape[1]))
        return log_softmax(z, axis=1, temperature=T)

    def predict(self, X: Any) -> np.ndarray:
        """The estimator's predictions, unchanged (a temperature keeps the argmax).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if self.estimator is not None:
            return self.estimator.predict(X)
        z = self._raw_logits(X, fitting=False)
        return self.classes_[np.argmax(z, axis=1)]
