"""Tests for softmax.preprocessing.SoftmaxScaler.

References are computed independently of the scaler: with mpmath at 50
digits, with NumPy percentiles, and with scikit-learn's StandardScaler and
RobustScaler followed by the squash written out by hand.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from scipy.stats import norm
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from softmax.preprocessing import SoftmaxScaler

EPS64 = np.finfo(np.float64).eps


def _data(n: int = 60, p: int = 4, seed: int = 0) -> np.ndarray:
    """Features on different scales, with a few outliers in the last column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.array([1.0, 10.0, 0.01, 3.0])[:p] + np.arange(p) * 5.0
    X[:3, -1] = [250.0, -400.0, 1e4]
    return X


def _mp_reference(X: np.ndarray, width: float, method: str) -> np.ndarray:
    """The formulas of the reference text, evaluated at 50 digits.

    centre = mean, spread = population std; the two squashes exactly as the
    text writes them: 1 / (1 + e^-z) and (1 - e^-z) / (1 + e^-z).
    """
    out = np.empty_like(X)
    with mpmath.workdps(50):
        for j in range(X.shape[1]):
            col = [mpmath.mpf(float(v)) for v in X[:, j]]
            mu = mpmath.fsum(col) / len(col)
            sigma = mpmath.sqrt(mpmath.fsum((v - mu) ** 2 for v in col) / len(col))
            for i, v in enumerate(col):
                e = mpmath.exp(-(v - mu) / (mpmath.mpf(width) * sigma))
                value = 1 / (1 + e) if method == "logistic" else (1 - e) / (1 + e)
                out[i, j] = float(value)
    return out


# --------------------------------------------------------------------- formulas
@pytest.mark.parametrize("method", ["logistic", "tanh"])
@pytest.mark.parametrize("width", [1.0, 0.3, 2.5])
def test_matches_the_formulas_to_float_precision(method, width):
    X = _data(n=40, p=4)
    got = SoftmaxScaler(method=method, width=width).fit_transform(X)
    ref = _mp_reference(X, width, method)
    # Float precision of the problem itself: the float64 centre is off by up to
    # an ulp of itself, so z carries an absolute error of about
    # eps * (|x| + |centre|) / scale (column 2 is 10 +- 0.01: z loses 3 digits
    # whatever the algorithm), times the slope of the squash (<= 1/2).
    mu, scale = X.mean(axis=0), width * X.std(axis=0)
    dz = 8 * EPS64 * ((np.abs(X) + np.abs(mu)) / scale + 1)
    assert np.all(np.abs(got - ref) <= 0.5 * dz + 2 * EPS64 * np.abs(ref))
    # Where the data are not so concentrated it is a few ulps.
    well_conditioned = [0, 1, 3]
    assert_allclose(got[:, well_conditioned], ref[:, well_conditioned], rtol=1e-14, atol=1e-16)


def test_tanh_form_is_tanh_half_z_and_twice_sigmoid_minus_one():
    X = _data()
    logistic = SoftmaxScaler(method="logistic").fit_transform(X)
    tanh = SoftmaxScaler(method="tanh").fit_transform(X)
    z = StandardScaler().fit_transform(X)
    # (1 - e^-z)/(1 + e^-z) == tanh(z/2) == 2 * sigmoid(z) - 1
    assert_allclose(tanh, np.tanh(z / 2), rtol=1e-14, atol=1e-16)
    assert_allclose(tanh, 2 * logistic - 1, rtol=0, atol=4 * EPS64)
    assert np.all(np.abs(tanh) < 1)


def test_matches_standard_scaler_then_sigmoid():
    X = _data()
    z = StandardScaler().fit_transform(X)
    got = SoftmaxScaler(width=1.0).fit_transform(X)
    assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-14)


def test_width_is_pyles_lambda_over_two_pi():
    # Pyle (1999), as in R's DMwR::SoftMax:
    #   vt = (x - mean) / (lambda * (std / (2 * pi))),  x' = 1 / (1 + exp(-vt))
    X = _data()
    lam = 2.0
    mean, std = X.mean(axis=0), X.std(axis=0)
    vt = (X - mean) / (lam * (std / (2 * np.pi)))
    got = SoftmaxScaler(width=lam / (2 * np.pi)).fit_transform(X)
    assert_allclose(got, 1 / (1 + np.exp(-vt)), rtol=1e-13)


def test_values_one_width_from_the_centre():
    # x = centre +- width * spread is z = +-1.
    X = _data()
    sc = SoftmaxScaler(width=1.7).fit(X)
    probe = np.vstack([sc.centre_, sc.centre_ + 1.7 * sc.spread_, sc.centre_ - 1.7 * sc.spread_])
    out = sc.transform(probe)
    assert_allclose(out[0], 0.5, rtol=1e-15)
    # The probe itself is rounded (column 2 is 10 +- 0.01): a few ulps of z.
    assert_allclose(out[1], 1 / (1 + np.exp(-1.0)), rtol=1e-12)
    assert_allclose(out[2], 1 / (1 + np.exp(1.0)), rtol=1e-12)


# ----------------------------------------------------------------- robust variant
@pytest.mark.parametrize("quantile_range", [(25.0, 75.0), (10.0, 90.0)])
def test_median_iqr_against_numpy_percentiles(quantile_range):
    X = _data(n=101)
    q_lo, q_hi = quantile_range
    sc = SoftmaxScaler(centre="median", spread="iqr", quantile_range=quantile_range).fit(X)
    median = np.percentile(X, 50, axis=0)
    iqr = np.percentile(X, q_hi, axis=0) - np.percentile(X, q_lo, axis=0)
    sigma_hat = iqr / (norm.ppf(q_hi / 100) - norm.ppf(q_lo / 100))
    assert_allclose(sc.centre_, median, rtol=1e-15)
    assert_allclose(sc.spread_, sigma_hat, rtol=1e-14)
    z = (X - median) / sigma_hat
    assert_allclose(sc.transform(X), 1 / (1 + np.exp(-z)), rtol=1e-13)


def test_median_iqr_matches_robust_scaler_with_unit_variance():
    X = _data(n=80)
    z = RobustScaler(unit_variance=True).fit_transform(X)
    got = SoftmaxScaler(method="tanh", centre="median", spread="iqr").fit_transform(X)
    assert_allclose(got, np.tanh(z / 2), rtol=1e-13, atol=1e-16)


def test_iqr_estimates_the_standard_deviation_of_normal_data():
    rng = np.random.default_rng(3)
    X = rng.normal(loc=7.0, scale=2.0, size=(20_000, 1))
    sc = SoftmaxScaler(centre="median", spread="iqr").fit(X)
    assert abs(sc.spread_[0] - 2.0) < 0.06
    assert abs(sc.centre_[0] - 7.0) < 0.06


def test_mixed_centre_and_spread():
    X = _data()
    sc = SoftmaxScaler(centre="median", spread="std").fit(X)
    assert_allclose(sc.centre_, np.median(X, axis=0), rtol=1e-15)
    assert_allclose(sc.spread_, np.std(X, axis=0), rtol=1e-14)
    sc = SoftmaxScaler(centre="mean", spread="iqr").fit(X)
    assert_allclose(sc.centre_, np.mean(X, axis=0), rtol=1e-14)


def test_robust_variant_resists_an_outlier():
    # One huge value moves the mean/std a lot and the median/IQR hardly at all.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 1))
    X_out = X.copy()
    X_out[0, 0] = 1e6
    robust = SoftmaxScaler(centre="median", spread="iqr")
    plain = SoftmaxScaler()
    inliers = slice(1, None)
    moved_robust = np.abs(
        robust.fit_transform(X)[inliers] - robust.fit_transform(X_out)[inliers]
    ).max()
    moved_plain = np.abs(plain.fit_transform(X)[inliers] - plain.fit_transform(X_out)[inliers])
    assert moved_robust < 0.01
    assert moved_plain.max() > 0.2


def test_transform_keeps_the_order_of_each_feature():
    X = _data()
    for method in ("logistic", "tanh"):
        out = SoftmaxScaler(method=method, width=0.2).fit_transform(X)
        for j in range(X.shape[1]):
            order = np.argsort(X[:, j], kind="stable")
            assert np.all(np.diff(out[order, j]) >= 0)


# ------------------------------------------------------------------------ inverse
@pytest.mark.parametrize("method", ["logistic", "tanh"])
@pytest.mark.parametrize(("centre", "spread"), [("mean", "std"), ("median", "iqr")])
def test_inverse_round_trip(method, centre, spread):
    X = _data(n=200)
    sc = SoftmaxScaler(method=method, centre=centre, spread=spread, width=3.0).fit(X)
    Xt = sc.transform(X)
    back = sc.inverse_transform(Xt)
    assert np.all(np.abs(back - X) <= _round_trip_bound(sc, X, Xt, EPS64))
    # Away from the ends this is close to machine precision.
    z = (X - sc.centre_) / sc.scale_
    inner = np.abs(z) < 2
    assert_allclose(back[inner], X[inner], rtol=1e-12, atol=0)


def _round_trip_bound(sc, X, Xt, eps):
    """Error bound from the conditioning of the inverse sigmoid.

    A relative rounding of eps in x' moves z by about eps / (distance of x' to
    its nearer bound, relative to the interval); z itself and centre + scale * z
    add a few eps of |z| and |x|. Saturated outputs (x' at a bound) have an
    infinite bound: their x is lost, by design.
    """
    z = (X - sc.centre_) / sc.scale_
    p = (Xt.astype(np.float64) + 1) / 2 if sc.method == "tanh" else Xt.astype(np.float64)
    with np.errstate(divide="ignore"):
        dz = 1 / np.minimum(p, 1 - p) + np.abs(z)
    return 8 * eps * (sc.scale_ * dz + np.abs(X))


def test_inverse_round_trip_float32():
    X = _data(n=100).astype(np.float32)
    sc = SoftmaxScaler(width=2.0).fit(X)
    Xt = sc.transform(X)
    back = sc.inverse_transform(Xt)
    assert back.dtype == np.float32
    eps32 = float(np.finfo(np.float32).eps)
    assert np.all(np.abs(back - X) <= _round_trip_bound(sc, X.astype(np.float64), Xt, eps32))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inverse_clips_values_at_or_beyond_the_open_ends(dtype):
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    sc = SoftmaxScaler().fit(X)
    P = np.array([[0.0], [-0.5], [1.0], [1.5], [np.nan], [0.5]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = sc.inverse_transform(P)
    assert back.dtype == dtype
    finite = back[[0, 1, 2, 3, 5], 0]
    assert np.all(np.isfinite(finite))
    lo = float(np.nextafter(dtype(0), dtype(1)))
    hi = float(np.nextafter(dtype(1), dtype(0)))
    # Independent logit: log(p) - log1p(-p).
    expected_lo = sc.centre_[0] + sc.scale_[0] * (np.log(lo) - np.log1p(-lo))
    expected_hi = sc.centre_[0] + sc.scale_[0] * (np.log(hi) - np.log1p(-hi))
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert_allclose(back[[0, 1], 0], expected_lo, rtol=rtol)
    assert_allclose(back[[2, 3], 0], expected_hi, rtol=rtol)
    assert np.isnan(back[4, 0])
    assert_allclose(back[5, 0], sc.centre_[0], rtol=1e-7)


def test_inverse_tanh_clips_symmetrically():
    sc = SoftmaxScaler(method="tanh").fit(np.array([[-1.0], [1.0]]))  # centre 0, scale 1
    back = sc.inverse_transform(np.array([[-1.0], [1.0], [-7.0], [7.0]]))
    edge = 1 - EPS64 / 2  # nextafter(1, 0)
    expected = np.log((1 + edge) / (1 - edge))  # 2 artanh(edge)
    assert_allclose(back[:, 0], [-expected, expected, -expected, expected], rtol=1e-12)


# ------------------------------------------------------------------ edge numerics
@pytest.mark.parametrize("method", ["logistic", "tanh"])
def test_huge_z_saturates_without_overflow_or_warnings(method):
    X = np.array([[0.0], [1e-300], [2e-300]])
    sc = SoftmaxScaler(method=method).fit(X)
    probe = np.array([[1e300], [-1e300], [1.7e308], [-1.7e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sc.transform(probe)
    low = 0.0 if method == "logistic" else -1.0
    assert_array_equal(out[:, 0], [1.0, low, 1.0, low])


def test_data_near_the_float64_limit():
    # The sum inside the mean and X - centre both overflow if done naively.
    col = np.array([-1.7e308, -1.7e308, -1.6e308, 1.7e308, 1.0e308])
    X = col[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc = SoftmaxScaler(width=0.5).fit(X)
        out = sc.transform(np.array([[1.75e308], [-1.75e308]]))
    with mpmath.workdps(50):
        vals = [mpmath.mpf(float(v)) for v in col]
        mu = mpmath.fsum(vals) / len(vals)
        sd = mpmath.sqrt(mpmath.fsum((v - mu) ** 2 for v in vals) / len(vals))
        ref = [
            float(1 / (1 + mpmath.exp(-(mpmath.mpf(x) - mu) / (mpmath.mpf(0.5) * sd))))
            for x in (1.75e308, -1.75e308)
        ]
    assert_allclose(sc.centre_[0], float(mu), rtol=1e-14)
    assert_allclose(sc.spread_[0], float(sd), rtol=1e-14)
    assert_allclose(out[:, 0], ref, rtol=1e-13)


def test_constant_columns_give_the_middle_without_nan_or_warnings():
    X = np.column_stack(
        [
            np.full(7, 0.1),  # the mean of repeated 0.1 is not exactly 0.1
            np.full(7, -3.0),
            np.arange(7.0),
        ]
    )
    for kwargs in ({}, {"centre": "median", "spread": "iqr"}, {"method": "tanh"}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sc = SoftmaxScaler(**kwargs).fit(X)
            out = sc.transform(X)
        assert not np.isnan(out).any()
        assert_array_equal(sc.spread_[:2], [1.0, 1.0])
        assert_array_equal(sc.centre_[:2], [0.1, -3.0])
        middle = 0.0 if kwargs.get("method") == "tanh" else 0.5
        assert_array_equal(out[:, :2], middle)
        # A value one unit away moves by the squash of +-1 (spread treated as 1).
        shifted = sc.transform(np.array([[1.1, -2.0, 3.0]]))
        ref = 1 / (1 + np.exp(-1.0)) if middle == 0.5 else np.tanh(0.5)
        assert_allclose(shifted[0, :2], ref, rtol=1e-12)


def test_zero_iqr_is_treated_as_one():
    # More than half of the values tie: IQR = 0.
    X = np.array([[0.0], [0.0], [0.0], [0.0], [0.0], [5.0]])
    sc = SoftmaxScaler(centre="median", spread="iqr").fit(X)
    assert sc.spread_[0] == 1.0
    assert_allclose(sc.transform(X)[:, 0], 1 / (1 + np.exp(-X[:, 0])), rtol=1e-15)


def test_nan_is_ignored_by_fit_and_kept_by_transform_like_standard_scaler():
    X = _data(n=50)
    rng = np.random.default_rng(7)
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 2] = np.nan  # an all-NaN feature
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc = SoftmaxScaler().fit(X)
        out = sc.transform(X)
        back = sc.inverse_transform(out)
    assert_array_equal(np.isnan(out), np.isnan(X))
    assert_array_equal(np.isnan(back), np.isnan(X))
    keep = [0, 1, 3]
    assert_allclose(sc.centre_[keep], np.nanmean(X[:, keep], axis=0), rtol=1e-14)
    assert_allclose(sc.spread_[keep], np.nanstd(X[:, keep], axis=0), rtol=1e-14)
    assert_array_equal(sc.n_samples_seen_, (~np.isnan(X)).sum(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # StandardScaler's own all-NaN warnings
        z = StandardScaler().fit(X).transform(X)
    assert_allclose(out[:, keep], 1 / (1 + np.exp(-z[:, keep])), rtol=1e-14)
    assert_allclose(back[:, keep], X[:, keep], rtol=1e-10)


def test_nan_with_median_and_iqr():
    X = _data(n=51)
    X[::4, 1] = np.nan
    sc = SoftmaxScaler(centre="median", spread="iqr").fit(X)
    col = X[:, 1][~np.isnan(X[:, 1])]
    q1, med, q3 = np.percentile(col, [25, 50, 75])
    assert_allclose(sc.centre_[1], med, rtol=1e-15)
    assert_allclose(sc.spread_[1], (q3 - q1) / (2 * norm.ppf(0.75)), rtol=1e-14)
    assert sc.n_samples_seen_[1] == col.size


def test_inf_is_rejected():
    X = _data()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        SoftmaxScaler().fit(X)


# ------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("method", ["logistic", "tanh"])
def test_float32_is_kept_and_correctly_rounded(method):
    X32 = _data().astype(np.float32)
    out = SoftmaxScaler(method=method).fit_transform(X32)
    assert out.dtype == np.float32
    ref = _mp_reference(X32.astype(np.float64), 1.0, method)
    assert_allclose(out, ref, rtol=2 * np.finfo(np.float32).eps, atol=1e-30)


def test_other_dtypes_become_float64():
    X = np.arange(12, dtype=np.int64).reshape(6, 2)
    assert SoftmaxScaler().fit_transform(X).dtype == np.float64
    assert SoftmaxScaler().fit_transform(X.astype(np.float16)).dtype == np.float64


def test_input_is_not_modified():
    X = _data()
    X[1, 1] = np.nan
    before = X.copy()
    sc = SoftmaxScaler(centre="median", spread="iqr").fit(X)
    Xt = sc.transform(X)
    Xt_before = Xt.copy()
    sc.inverse_transform(Xt)
    assert_array_equal(X, before)
    assert_array_equal(Xt, Xt_before)


# ---------------------------------------------------------- frames and pipelines
def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(_data(p=3), columns=["age", "income", "score"])
    sc = SoftmaxScaler().set_output(transform="pandas")
    out = sc.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["age", "income", "score"]
    assert_array_equal(sc.get_feature_names_out(), ["age", "income", "score"])
    assert_allclose(out.to_numpy(), SoftmaxScaler().fit_transform(X.to_numpy()), rtol=0)
    assert_array_equal(sc.feature_names_in_, ["age", "income", "score"])


def test_polars_output():
    pl = pytest.importorskip("polars")
    X = pl.DataFrame({"a": [1.0, 2.0, 3.0, 10.0], "b": [0.5, 0.1, 0.2, 0.3]})
    sc = SoftmaxScaler(method="tanh").set_output(transform="polars")
    out = sc.fit_transform(X)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == ["a", "b"]
    assert_allclose(out.to_numpy(), SoftmaxScaler(method="tanh").fit_transform(X.to_numpy()))


def test_feature_names_without_frame():
    sc = SoftmaxScaler().fit(_data(p=3))
    assert_array_equal(sc.get_feature_names_out(), ["x0", "x1", "x2"])


def _classification_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 2.0, 2.0]])
    y = rng.integers(0, 3, size=300)
    X = centres[y] + rng.normal(size=(300, 3))
    X[:5] *= 50.0  # outliers
    return X, y


def test_pipeline_with_logistic_regression():
    X, y = _classification_data()
    pipe = make_pipeline(SoftmaxScaler(centre="median", spread="iqr"), LogisticRegression())
    pipe.fit(X, y)
    proba = pipe.predict_proba(X)
    assert proba.shape == (300, 3)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert pipe.score(X, y) > 0.7
    # The pipeline feeds the classifier exactly what the scaler makes.
    manual = LogisticRegression().fit(
        SoftmaxScaler(centre="median", spread="iqr").fit_transform(X), y
    )
    assert_allclose(pipe[-1].coef_, manual.coef_, rtol=1e-10)


def test_pipeline_with_softmax_regression():
    from softmax.regression import SoftmaxRegression

    X, y = _classification_data(seed=1)
    pipe = Pipeline([("scale", SoftmaxScaler()), ("clf", SoftmaxRegression())]).fit(X, y)
    assert pipe.score(X, y) > 0.7
    assert pipe.predict_proba(X).shape == (300, 3)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"method": "softplus"}, ValueError, "method must be 'logistic'.*'tanh'.*softplus"),
        ({"width": 0.0}, ValueError, "width must be positive and finite"),
        ({"width": -1.0}, ValueError, "width must be positive and finite"),
        ({"width": np.inf}, ValueError, "width must be positive and finite"),
        ({"width": np.nan}, ValueError, "width must be positive and finite"),
        ({"width": "wide"}, TypeError, "width must be a real number, got str"),
        ({"width": True}, TypeError, "width must be a real number"),
        ({"centre": "mode"}, ValueError, "centre must be 'mean' or 'median', got 'mode'"),
        ({"spread": "mad"}, ValueError, "spread must be 'std' or 'iqr'"),
        ({"spread": "iqr", "quantile_range": (75, 25)}, ValueError, "0 < q_min < q_max < 100"),
        ({"quantile_range": (0, 100)}, ValueError, "0 < q_min < q_max < 100"),
        ({"quantile_range": (25,)}, ValueError, "quantile_range must be a pair"),
        ({"quantile_range": "iqr"}, ValueError, "quantile_range must be a pair"),
    ],
)
def test_bad_parameters_are_reported_clearly(params, error, match):
    with pytest.raises(error, match=match):
        SoftmaxScaler(**params).fit(_data())


def test_width_times_spread_overflow_is_reported():
    X = np.array([[-1e308], [1e308]])
    with pytest.raises(ValueError, match="width \\* spread over- or underflows"):
        SoftmaxScaler(width=1e10).fit(X)


@pytest.mark.parametrize("fmt", [sparse.csr_matrix, sparse.csr_array, sparse.csc_matrix])
def test_sparse_input_is_rejected_with_advice(fmt):
    X = fmt(np.eye(4))
    with pytest.raises(TypeError, match=r"sparse input.*toarray"):
        SoftmaxScaler().fit(X)
    sc = SoftmaxScaler().fit(np.eye(4))
    with pytest.raises(TypeError, match="sparse"):
        sc.transform(X)
    with pytest.raises(TypeError, match="sparse"):
        sc.inverse_transform(X)


def test_wrong_number_of_features():
    sc = SoftmaxScaler().fit(_data(p=3))
    with pytest.raises(ValueError, match="4 features"):
        sc.transform(_data(p=4))
    with pytest.raises(ValueError, match="X has 4 features, but SoftmaxScaler was fitted"):
        sc.inverse_transform(np.full((2, 4), 0.5))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        SoftmaxScaler().transform(_data())
    with pytest.raises(NotFittedError):
        SoftmaxScaler().inverse_transform(_data())


# -------------------------------------------------------- scikit-learn's checks
@parametrize_with_checks(
    [
        SoftmaxScaler(),
        SoftmaxScaler(method="tanh", centre="median", spread="iqr", width=0.5),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------- property-based
@settings(max_examples=60)
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 3)),
        elements=st.floats(-1e308, 1e308, allow_nan=False, allow_infinity=False),
    ),
    method=st.sampled_from(["logistic", "tanh"]),
    robust=st.booleans(),
)
def test_any_finite_data_gives_ordered_bounded_output_without_warnings(X, method, robust):
    kwargs = {"centre": "median", "spread": "iqr"} if robust else {}
    sc = SoftmaxScaler(method=method, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = sc.fit_transform(X)
        except ValueError as exc:  # the one documented refusal: an IQR beyond float64
            assert robust and "overflows float64" in str(exc)
            return
        back = sc.inverse_transform(out)
    low = 0.0 if method == "logistic" else -1.0
    assert np.all((out >= low) & (out <= 1.0))
    assert np.all(np.isfinite(sc.centre_)) and np.all(sc.scale_ > 0)
    assert np.all(np.isfinite(back))
    for j in range(X.shape[1]):
        order = np.argsort(X[:, j], kind="stable")
        assert np.all(np.diff(out[order, j]) >= 0)
