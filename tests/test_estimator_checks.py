"""scikit-learn's estimator checks, all of them, with no expected failures."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import (
    check_class_weight_balanced_linear_classifier,
    check_class_weight_classifiers,
    check_dataframe_column_names_consistency,
    parametrize_with_checks,
)
from threadpoolctl import threadpool_limits

from softmax import SoftmaxRegression

# The default ("auto" picks newton-cholesky on the checks' tiny data) and
# L-BFGS. class_weight="balanced" is checked below rather than here: like
# scikit-learn's SGDClassifier it refuses partial_fit (a batch's class counts
# are not the data's), which the generic checks call.
ESTIMATORS = [SoftmaxRegression(), SoftmaxRegression(solver="lbfgs")]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Tiny problems: one BLAS thread avoids contention on shared cores.
    with threadpool_limits(limits=1):
        yield


def test_scipy_array_api_support_is_on():
    """conftest.py's SCIPY_ARRAY_API=1 reached SciPy (the array-API checks below need it)."""
    xp = pytest.importorskip("array_api_strict")
    from scipy.special import logsumexp

    # With the support off, SciPy turns the array into a NumPy scalar instead.
    out = logsumexp(xp.asarray([0.0, 0.0]))
    assert type(out).__module__.startswith("array_api_strict")
    assert float(out) == pytest.approx(0.6931471805599453)


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_dataframe_column_names_consistency():
    pytest.importorskip("pandas")
    check_dataframe_column_names_consistency("SoftmaxRegression", SoftmaxRegression())


@pytest.mark.parametrize(
    "check", [check_class_weight_classifiers, check_class_weight_balanced_linear_classifier]
)
def test_class_weight_checks(check):
    check("SoftmaxRegression", SoftmaxRegression())
