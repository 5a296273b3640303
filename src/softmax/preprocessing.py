"""Softmax (sigmoidal) normalisation of features.

Softmax normalisation reduces the influence of extreme values and outliers
without removing them: each feature is standardised and then squashed by a
sigmoid, which is nearly linear around the centre of the data and bends
smoothly towards its bounds at both ends (D. Pyle, *Data Preparation for Data
Mining*, 1999; K. Priddy and P. Keller, *Artificial Neural Networks: An
Introduction*, 2005, pp. 16-17).

:class:`SoftmaxScaler` is the scikit-learn transformer that does it.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import expit, logit, ndtri
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

__all__ = ["SoftmaxScaler"]

_METHODS = ("logistic", "tanh")
_CENTRES = ("mean", "median")
_SPREADS = ("std", "iqr")
# Dtypes kept as they are; anything else (ints, bools, float16) becomes float64.
_KEPT_DTYPES = [np.float64, np.float32]


class SoftmaxScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Squash each feature through a sigmoid after standardising it.

    Each feature is centred and divided by ``width`` times its spread,

    .. math::

        z = \frac{x - c}{\mathrm{width} \cdot s},

    and then mapped into a bounded interval:

    - ``method="logistic"``: :math:`x' = 1 / (1 + e^{-z})`, in :math:`(0, 1)`;
    - ``method="tanh"``: :math:`x' = (1 - e^{-z}) / (1 + e^{-z})`, in
      :math:`(-1, 1)`. This is the same function as :math:`\tanh(z/2)` and as
      :math:`2\,\sigma(z) - 1`, where :math:`\sigma` is the logistic sigmoid, and
      it is computed as :math:`\tanh(z/2)` (accurate near 0, no overflow).

    Both are nearly linear near the centre and monotone and smooth at both
    ends, so outliers keep their order but can no longer dominate a model.
    Within ``width`` spreads of the centre (:math:`|z| \le 1`) the squash
    keeps at least 92% of the linear response it has at the centre (its
    secant slope :math:`(x'(z) - x'(0)) / z` over its slope at 0); at
    :math:`|z| = 2` it keeps 76%, at :math:`|z| = 3` 60%.

    Parameters
    ----------
    method : {"logistic", "tanh"}, default="logistic"
        The squashing function: the logistic sigmoid into (0, 1), or the
        hyperbolic-tangent form into (-1, 1).
    width : float, default=1.0
        How many spreads make one unit of ``z``, i.e. the half-width, in
        spreads, of the nearly linear part of the squash. Must be positive
        and finite. Pyle's softmax scaling,
        :math:`z = (x - \bar{x}) / (\lambda\,\sigma / (2\pi))`, is
        ``width = lambda / (2 * pi)``; its usual default ``lambda = 2`` (R's
        ``DMwR::SoftMax``) is ``width = 1 / pi``.
    centre : {"mean", "median"}, default="mean"
        The centre :math:`c` of each feature, mapped to 0.5 (logistic) or 0
        (tanh).
    spread : {"std", "iqr"}, default="std"
        The spread :math:`s` of each feature. ``"std"`` is the population
        standard deviation (``ddof=0``, as in ``StandardScaler``). ``"iqr"``
        is the inter-quantile range of ``quantile_range`` divided by the same
        range of the standard normal distribution (1.349 for the quartiles),
        so that it estimates the standard deviation of normal data and
        ``width`` means the same with either spread; it is the robust choice
        (``RobustScaler(unit_variance=True)`` uses the same scale).
    quantile_range : tuple of (float, float), default=(25.0, 75.0)
        Percentiles ``(q_min, q_max)`` with ``0 < q_min < q_max < 100`` used
        by ``spread="iqr"``; ignored otherwise.

    Attributes
    ----------
    centre_ : ndarray of shape (n_features,), dtype float64
        The centre of each feature (0 for a feature that is all NaN).
    spread_ : ndarray of shape (n_features,), dtype float64
        The spread of each feature; 1 where it was 0 (a constant feature, or
        an inter-quantile range of 0 because most values tie), so such a
        feature is only centred, as scikit-learn's scalers do.
    scale_ : ndarray of shape (n_features,), dtype float64
        ``width * spread_``, the divisor that gives ``z``.
    n_samples_seen_ : int or ndarray of shape (n_features,)
        Number of samples used per feature: an int when ``X`` had no NaN,
        otherwise the count of non-NaN values of each feature.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during :meth:`fit`, when ``X`` had string
        column names.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : ``z`` without the squash.
    sklearn.preprocessing.RobustScaler : median and IQR, without the squash.

    Notes
    -----
    *Missing values.* NaN is ignored by :meth:`fit` and kept as NaN by
    :meth:`transform` and :meth:`inverse_transform`.

    *Numerics.* Statistics are accumulated in float64 and ``z`` is computed in
    float64 for float32 input too (the output is cast back), so the result is
    the correctly rounded squash of ``z`` up to a few ulps. Huge ``z`` never
    overflows: it saturates at the bounds. A feature whose values are close to
    the float64 limit is rescaled by a power of two before its statistics are
    taken, so its mean or deviations do not overflow either.

    *Inverse.* The squash loses information only where it rounds to its
    bound: for the logistic form, ``z`` above about 36.7 in float64 (17.3 in
    float32) gives exactly 1 (and ``z`` below about -745 (-104) exactly 0); for
    the tanh form, ``|z|`` above about 38.0 (18.0) gives exactly -1 or 1.
    :meth:`inverse_transform` maps a value at or beyond an open end to the
    nearest representable value inside the interval, so it always returns
    finite numbers; elsewhere it recovers ``x`` to float precision (the error
    grows like ``eps / (1 - |x'|)`` near the upper bound, the conditioning of
    the inverse sigmoid).

    *Sparse input* is rejected: centring and squashing make every entry
    non-zero (a zero becomes ``sigmoid(-c / scale)``), so the result would be
    dense anyway; densify with ``X.toarray()`` if it fits in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax.preprocessing import SoftmaxScaler
    >>> X = np.array([[1.0, -3.0], [2.0, 0.0], [3.0, 1.0], [4.0, 2.0], [100.0, 5.0]])
    >>> scaler = SoftmaxScaler(centre="median", spread="iqr").fit(X)
    >>> np.round(scaler.transform(X), 3)
    array([[0.206, 0.063],
           [0.337, 0.337],
           [0.5  , 0.5  ],
           [0.663, 0.663],
           [1.   , 0.937]])

    The outlier 100 saturates at 1.0 (its ``z`` is 65), so only the other rows
    invert exactly:

    >>> X_back = scaler.inverse_transform(scaler.transform(X))
    >>> np.allclose(X_back[:4], X[:4]), bool(X_back[4, 0] < 100)
    (True, True)
    """

    def __init__(
        self,
        method: Literal["logistic", "tanh"] = "logistic",
        width: float = 1.0,
        centre: Literal["mean", "median"] = "mean",
        spread: Literal["std", "iqr"] = "std",
        quantile_range: tuple[float, float] = (25.0, 75.0),
    ) -> None:
        self.method = method
        self.width = width
        self.centre = centre
        self.spread = spread
        self.quantile_range = quantile_range

    # ------------------------------------------------------------------ fit
    def fit(self, X: ArrayLike, y: Any = None) -> SoftmaxScaler:
        """Compute the centre and spread of each feature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data; NaN values are ignored. Sparse matrices are rejected.
        y : None
            Ignored; present for pipeline compatibility.

        Returns
        -------
        self : SoftmaxScaler
            The fitted scaler.
        """
        self._check_params()
        _reject_sparse(X)
        X = validate_data(self, X, dtype=_KEPT_DTYPES, ensure_all_finite="allow-nan")

        # One reduction says whether any NaN is there (an overflowing sum only
        # sends us down the exact NaN-aware path, which is still correct); the
        # per-feature counts are needed only then.
        with np.errstate(over="ignore", invalid="ignore"):
            has_nan = not np.isfinite(X.sum())
        if has_nan:
            counts = X.shape[0] - np.isnan(X).sum(axis=0)
            has_nan = bool(counts.min() < X.shape[0])
        if has_nan:
            self.n_samples_seen_ = counts
        else:
            counts = np.full(X.shape[1], X.shape[0])
            self.n_samples_seen_ = int(X.shape[0])

        centre = np.zeros(X.shape[1])
        spread = np.ones(X.shape[1])
        seen = counts > 0  # all-NaN features keep centre 0 and spread 1
        if seen.any():
            Xs = X if seen.all() else X[:, seen]
            c, s = _column_statistics(Xs, self.centre, self.spread, self.quantile_range, has_nan)
            centre[seen] = c
            spread[seen] = s
        self.centre_ = centre
        self.spread_ = spread

        with np.errstate(over="ignore", under="ignore"):
            scale = float(self.width) * spread
        bad = ~(np.isfinite(scale) & (scale > 0))
        if bad.any():
            raise ValueError(
                f"width * spread over- or underflows float64 for features "
                f"{np.flatnonzero(bad).tolist()} (width={self.width!r}); use a width "
                f"closer to 1 or rescale those features first."
            )
        self.scale_ = scale
        return self

    # ------------------------------------------------------------ transform
    def transform(self, X: ArrayLike) -> NDArray[np.floating]:
        """Standardise and squash ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data to transform; NaN stays NaN.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            The squashed data, in (0, 1) for ``method="logistic"`` and in
            (-1, 1) for ``method="tanh"`` (the closed bounds are reached only
            where the squash rounds to them). float32 input gives float32
            output, everything else float64.
        """
        check_is_fitted(self)
        _reject_sparse(X)
        X = validate_data(self, X, dtype=_KEPT_DTYPES, ensure_all_finite="allow-nan", reset=False)
        Z = self._standardise(X)
        if self.method == "logistic":
            expit(Z, out=Z)  # scipy's expit saturates at 0 and 1 without overflow
        else:
            # (1 - e^-z) / (1 + e^-z) == tanh(z / 2); tanh keeps full relative
            # accuracy near 0, where 2 * expit(z) - 1 would cancel.
            Z *= 0.5
            np.tanh(Z, out=Z)
        return Z.astype(X.dtype, copy=False)

    def inverse_transform(self, X: ArrayLike) -> NDArray[np.floating]:
        """Map squashed values back to the original feature space.

        Values at or beyond the open ends of the output interval (for
        example exactly 1.0 from a saturated squash, or 1.2 from elsewhere)
        are first clipped to the nearest representable value inside it, so
        the result is always finite.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Squashed data, as returned by :meth:`transform`; NaN stays NaN.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            The data in the original units; float32 input gives float32.
        """
        check_is_fitted(self)
        _reject_sparse(X)
        X = check_array(X, dtype=_KEPT_DTYPES, ensure_all_finite="allow-nan")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but SoftmaxScaler was fitted with "
                f"{self.n_features_in_} features."
            )
        # The representable interior of the interval in the caller's dtype:
        # clipping there keeps logit/arctanh finite.
        one = X.dtype.type(1)
        lower = np.nextafter(X.dtype.type(0) if self.method == "logistic" else -one, one)
        upper = np.nextafter(one, X.dtype.type(0))
        Z = np.clip(X.astype(np.float64), float(lower), float(upper))
        if self.method == "logistic":
            logit(Z, out=Z)
        else:
            np.arctanh(Z, out=Z)
            Z *= 2.0
        with np.errstate(over="ignore"):  # only for a scale near the float64 limit
            Z *= self.scale_
            Z += self.centre_
        return Z.astype(X.dtype, copy=False)

    # -------------------------------------------------------------- helpers
    def _standardise(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """``(X - centre_) / scale_`` as a new float64 array, without overflow."""
        with np.errstate(over="ignore", invalid="ignore"):
            Z = np.subtract(X, self.centre_, dtype=np.float64)
            # X - centre_ is the accurate form, but it can overflow when X and
            # the centre are huge and of opposite signs (inf is never valid
            # input, so any inf here is an overflow). Redo those entries as
            # X / s - c / s, whose terms cannot overflow.
            # Rounding overflows only past max + ulp(max) / 2 = max + 2**970,
            # so for |centre| < 2**969 no finite x can make x - centre
            # overflow and the check is skipped.
            check = float(np.max(np.abs(self.centre_), initial=0.0)) >= 2.0**969
            overflow = np.isinf(Z) if check else None
            # A quotient that overflows becomes +-inf, the right limit for the
            # squash.
            Z /= self.scale_
            if check and overflow.any():
                rows, cols = np.nonzero(overflow)
                s = self.scale_[cols]
                Z[rows, cols] = X[rows, cols] / s - self.centre_[cols] / s
        return Z

    def _check_params(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(
                f"method must be 'logistic' (output in (0, 1)) or 'tanh' "
                f"(output in (-1, 1)), got {self.method!r}."
            )
        if self.centre not in _CENTRES:
            raise ValueError(f"centre must be 'mean' or 'median', got {self.centre!r}.")
        if self.spread not in _SPREADS:
            raise ValueError(
                f"spread must be 'std' or 'iqr' (the robust inter-quantile range), "
                f"got {self.spread!r}."
            )
        width = self.width
        if isinstance(width, bool) or not isinstance(width, Real):
            raise TypeError(f"width must be a real number, got {type(width).__name__}.")
        if not (np.isfinite(width) and width > 0):
            raise ValueError(
                f"width must be positive and finite (the number of spreads in one "
                f"unit of z), got {width!r}."
            )
        qr = self.quantile_range
        valid = (
            isinstance(qr, tuple | list)
            and len(qr) == 2
            and all(isinstance(q, Real) and not isinstance(q, bool) for q in qr)
        )
        if not valid or not (0 < qr[0] < qr[1] < 100):
            raise ValueError(
                f"quantile_range must be a pair (q_min, q_max) of percentiles with "
                f"0 < q_min < q_max < 100, got {qr!r}."
            )

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _reject_sparse(X: Any) -> None:
    if sparse.issparse(X):
        raise TypeError(
            "SoftmaxScaler does not accept sparse input: centring and squashing make "
            "every entry non-zero, so the result is dense anyway. Convert it with "
            "X.toarray() first."
        )


def _column_statistics(
    X: NDArray[np.floating],
    centre: str,
    spread: str,
    quantile_range: tuple[float, float],
    has_nan: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centre and spread of each column of ``X`` (no all-NaN column).

    Returns two float64 arrays of shape (n_features,). A spread of 0 is
    returned as 1. Columns whose statistics overflow are redone on a copy
    scaled by a power of two (exact), then scaled back.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        c, s = _raw_statistics(X, centre, spread, quantile_range, has_nan)
    overflow = ~(np.isfinite(c) & np.isfinite(s))
    if overflow.any():
        cols = np.flatnonzero(overflow)
        Xo = X[:, cols].astype(np.float64)
        _, exponent = np.frexp(np.nanmax(np.abs(Xo), axis=0))
        Xo = np.ldexp(Xo, -exponent)  # every |value| <= 1 now; exact unless subnormal
        co, so = _raw_statistics(Xo, centre, spread, quantile_range, has_nan)
        with np.errstate(over="ignore"):
            c[cols] = np.ldexp(co, exponent)
            s[cols] = np.ldexp(so, exponent)
        if not np.isfinite(s[cols]).all():
            # Only the normalised IQR can exceed the float64 range (it can be
            # larger than the largest |value|).
            raise ValueError(
                f"the spread of features {cols[~np.isfinite(s[cols])].tolist()} "
                f"overflows float64; divide them by a large constant first."
            )
    if spread == "std":
        # A constant column can get a tiny non-zero std from rounding in the
        # mean (at most a few n * eps * |mean|). Test the few candidates for
        # exact constancy, and centre them on their own value so that value
        # maps exactly to the middle of the interval.
        # (For a near-constant column the median is as close to the value as
        # the mean, so either centre serves in the bound.)
        candidates = np.flatnonzero(s <= X.shape[0] * 4 * np.finfo(np.float64).eps * np.abs(c))
        if candidates.size:
            Xc = X[:, candidates]
            lo = np.nanmin(Xc, axis=0) if has_nan else Xc.min(axis=0)
            hi = np.nanmax(Xc, axis=0) if has_nan else Xc.max(axis=0)
            constant = candidates[lo == hi]
            c[constant] = lo[lo == hi]
            s[constant] = 0.0
    s[s == 0] = 1.0
    return c, s


def _raw_statistics(
    X: NDArray[np.floating],
    centre: str,
    spread: str,
    quantile_range: tuple[float, float],
    has_nan: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    c = s = None
    if centre == "mean" or spread == "std":
        mean = np.nanmean if has_nan else np.mean
        std = np.nanstd if has_nan else np.std
        if centre == "mean":
            c = np.asarray(mean(X, axis=0, dtype=np.float64), dtype=np.float64)
        if spread == "std":
            s = np.asarray(std(X, axis=0, dtype=np.float64), dtype=np.float64)
    if centre == "median" or spread == "iqr":
        percentile = np.nanpercentile if has_nan else np.percentile
        q_lo, q_hi = (float(q) for q in quantile_range)
        # One call so the data are partitioned once for all three percentiles.
        lo, med, hi = percentile(X.astype(np.float64, copy=False), [q_lo, 50.0, q_hi], axis=0)
        if centre == "median":
            c = med
        if spread == "iqr":
            # Divide by the same range of N(0, 1), so s estimates the std of
            # normal data and `width` keeps its meaning with either spread.
            s = (hi - lo) / (ndtri(q_hi / 100.0) - ndtri(q_lo / 100.0))
    return c, s
