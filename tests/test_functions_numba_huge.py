"""Accuracy of every row kernel on rows with huge offsets and spreads.

Each kernel path (the LLVM vector kernel for K <= 16, the short-row kernel,
the long-row one-pass kernels, in place and out of place, and the NumPy
fallback with numba switched off) is compared against mpmath at 50 digits on
rows offset by up to 1e30 (float64) / 1e30 (float32), rows mixing huge and
small entries, wide spreads, ties at the max and (through the public
functions) -inf entries.

Error bounds (in ulps of the result, derived for the algorithm
``y = (x - m) - log(sum(exp(x - m)))`` with ``m`` the row max):

* ``d = x - m`` is rounded once: an absolute error of ulp(d)/2. This is the
  condition of the subtraction: the inputs are exact, but ``d`` can need more
  bits than the format holds, and no algorithm working in the input dtype can
  do better than returning ``d`` rounded.
* ``L = log(s)``, ``s`` a sum of K terms in (0, 1] with a term 1: a few
  rounding errors relative to ``L`` plus K*eps from the sum, so an absolute
  error of at most (4 + K) * eps (the sum is >= 1, so d(log s) = ds/s).
* the final subtraction ``d - L``: ulp(y)/2.

So ``|y - y_ref| <= ulp(y) + ulp(d) + (4 + K) * eps``. The wrong algorithm
``x - (m + L)`` rounds ``m + L`` at the scale of ``m``: with m = 1e30 that is
an error of ulp(1e30) ~ 1e14, which these bounds catch.

softmax ``p = exp(y)`` inherits the absolute error of ``y`` as a relative
one, plus a few eps for the exp: ``|p - p_ref| <= (err_y + 4 eps) p_ref``
plus two ulps of the smallest subnormal for underflowing entries.
logsumexp ``m + L``: ``ulp(lse) + (4 + K) * eps``.
"""

import mpmath
import numpy as np
import pytest

from softmax import _kernels, functions

mpmath.mp.dps = 50

DTYPES = [np.float64, np.float32]
KS = [*range(1, 18), 100, 1000, 5000]


def _rows(k, dtype, rng):
    """Rows with huge offsets, spreads, ties and mixed magnitudes."""
    big = 1e30
    offsets = [0.0, 1e4, -1e4, 3.3e7, 1e15, -1e15, big, -big]
    rows = []
    for off in offsets:
        rows.append(off + rng.standard_normal(k) * max(1.0, abs(off) * 1e-7))
    # wide spread: everything but the max underflows in exp
    rows.append(1e4 + rng.standard_normal(k) * 1e3)
    # mixed huge and small: one huge entry, the rest near 0
    r = rng.standard_normal(k)
    r[rng.integers(k)] = 5e29
    rows.append(r)
    # ties at the max, large offset
    r = 1e6 + rng.standard_normal(k)
    r[: max(1, k // 2)] = 1e6 + 7.25
    rows.append(r)
    # entries just below the max at a huge offset (ulp-sized differences)
    m = np.array(1e20, dtype=dtype)
    r = np.full(k, m, dtype=np.float64)
    r[1::2] = np.nextafter(m, dtype(-np.inf)) if k > 1 else m
    rows.append(r)
    out = np.array(rows, dtype=dtype)
    assert np.isfinite(out).all()
    return out


def _ref(row):
    """mpmath (log-softmax, softmax, logsumexp) of an exactly represented row."""
    xs = [mpmath.mpf(float(v)) for v in row]
    fin = [v for v in xs if mpmath.isfinite(v)]
    m = max(fin)
    s = mpmath.fsum(mpmath.exp(v - m) for v in fin)
    L = mpmath.log(s)
    y = [(v - m) - L if mpmath.isfinite(v) else mpmath.mpf("-inf") for v in xs]
    d = [float(v - m) if mpmath.isfinite(v) else -np.inf for v in xs]
    return y, m + L, L, np.array(d)


def _ulp(v, dtype):
    return np.spacing(np.abs(np.asarray(v, dtype=dtype))).astype(np.float64)


def _check(x, logp, p, lse, where):
    dtype = x.dtype.type
    eps = float(np.finfo(dtype).eps)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    k = x.shape[1]
    for i, row in enumerate(x):
        y, lse_ref, _, d = _ref(row)
        yr = np.array([float(v) for v in y])
        fin = np.isfinite(yr)
        if logp is not None:
            assert np.array_equal(np.isfinite(logp[i]), fin), where
            bound = _ulp(yr, dtype) + _ulp(d, dtype) + (4 + k) * eps
            err = np.abs(logp[i][fin].astype(np.float64) - yr[fin])
            bad = err > bound[fin]
            assert not bad.any(), (
                f"{where} log_softmax row {i}: max err {np.max(err / bound[fin]):.3g} x bound, "
                f"x={row[fin][bad][:3]}, got={logp[i][fin][bad][:3]}, ref={yr[fin][bad][:3]}"
            )
        if p is not None:
            pr = np.array([float(mpmath.exp(v)) for v in y])
            err_y = _ulp(yr, dtype) + _ulp(d, dtype) + (4 + k) * eps
            bound = (np.where(fin, err_y, 0) + 4 * eps) * pr + 2 * tiny
            err = np.abs(p[i].astype(np.float64) - pr)
            bad = err > bound
            assert not bad.any(), (
                f"{where} softmax row {i}: max err {np.max(err / bound):.3g} x bound, "
                f"x={row[bad][:3]}, got={p[i][bad][:3]}, ref={pr[bad][:3]}"
            )
        if lse is not None:
            lr = float(lse_ref)
            bound = float(_ulp(lr, dtype)) + (4 + k) * eps
            got = float(lse[i])
            assert abs(got - lr) <= bound, f"{where} logsumexp row {i}: {got!r} vs {lr!r}"


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    monkeypatch.setattr(_kernels, "USE_NUMBA", request.param == "numba")
    monkeypatch.setattr(_kernels, "NUMBA_MIN_SIZE", 0)  # small test arrays too
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_kernels_in_place(path, k, dtype):
    x = _rows(k, dtype, np.random.default_rng(k))
    z = x.copy()
    lse = _kernels.log_softmax_rows_(z)
    _check(x, z, None, lse, f"{path} in-place log K={k}")
    z = x.copy()
    lse = _kernels.softmax_rows_(z)
    _check(x, None, z, lse, f"{path} in-place K={k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_kernels_out_of_place(path, k, dtype):
    x = _rows(k, dtype, np.random.default_rng(100 + k))
    for log in (True, False):
        out = np.empty_like(x)
        lse = _kernels.rows_into(x, out, log)
        _check(x, out if log else None, None if log else out, lse, f"{path} into log={log} K={k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 5, 8, 16, 17, 100, 1000])
def test_public_functions_with_neg_inf(path, k, dtype):
    x = _rows(k, dtype, np.random.default_rng(200 + k))
    if k > 1:
        x[:, ::3] = -np.inf  # never the whole row: column 1 stays finite
    _check(
        x,
        np.asarray(functions.log_softmax(x, axis=-1)),
        np.asarray(functions.softmax(x, axis=-1)),
        np.asarray(functions.logsumexp(x, axis=-1)),
        f"{path} public K={k}",
    )
