"""The function family at the ends of each float range, against mpmath.

Inputs near the largest finite value, subnormals, and both mixed with
``inf`` and NaN, in float16, float32 and float64. The reference is the
numerics policy of the function family (``softmax.functions``, DESIGN.md
section 3) with every finite row computed in mpmath at 1,200 bits from the
exact input values and rounded to the input's dtype. Each case runs through
the small-input path (Python floats, at most 32 elements), the row kernels
(the same row repeated past 4,096 elements) and the generic code (a mask
that keeps every entry), and must never warn.

Regression: Hypothesis found ``log_softmax`` of float32
``[-1.0141205e31, 3.4028235e38]`` warning "overflow encountered in cast" on
the small-input path. The exact answer, ``-(2**128 - 2**103)`` minus a
vanishing term, lies beyond float32's range: rounded, it is ``-inf``.
"""

from __future__ import annotations

import warnings
from typing import Any

import mpmath
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softmax import _kernels
from softmax.functions import log_softmax, logsumexp, softmax

inf, nan = np.inf, np.nan
DTYPES = [np.float16, np.float32, np.float64]


def _cases(dtype: type) -> list[list[float]]:
    info = np.finfo(dtype)
    big, tiny, sub = float(info.max), float(info.tiny), float(info.smallest_subnormal)
    # beyond max + half an ulp, rounding gives inf
    half_ulp = (big - float(np.nextafter(info.max, dtype(0)))) / 2
    return [
        [-half_ulp, big],  # float32: the Hypothesis example (-2**103 is 1.0141205e31)
        [-half_ulp / 2, big],  # the answer rounds to -max, not -inf
        [-big, big],
        [big, big],
        [-big, -big],
        [big, -big, 0.0, sub],
        [sub, -sub],
        [sub, 0.0, tiny, -tiny],
        [big, -inf],
        [-big, inf],
        [inf, big, inf, -big],
        [big, nan],
        [nan, -big],
        [-inf, -inf],
        [sub, inf, nan, -inf],
    ]


def _round(value: mpmath.mpf, dtype: type) -> float:
    """``value`` rounded to ``dtype`` (through float64, which is exact enough here)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.asarray(float(value), dtype=np.float64).astype(dtype))


def _policy(row: list[float], t: float, dtype: type) -> tuple[list, list, float]:
    """softmax, log_softmax, logsumexp of one row by the numerics policy, in ``dtype``."""
    k = len(row)
    if any(np.isnan(v) for v in row):
        return [nan] * k, [nan] * k, nan
    n_top = sum(v == inf for v in row)
    if n_top:  # the mass split evenly over the +inf entries (the limit)
        sm = [1.0 / n_top if v == inf else 0.0 for v in row]
        lsm = [-float(mpmath.log(n_top)) if v == inf else -inf for v in row]
        return [_round(v, dtype) for v in sm], [_round(v, dtype) for v in lsm], inf
    if all(v == -inf for v in row):
        return [0.0] * k, [-inf] * k, -inf
    # 1,200 bits: log_softmax of 1e308-sized entries is a difference of 1e308s
    # that must keep its units digit, and a subnormal beside 0 must not vanish
    with mpmath.workprec(1200):
        z = [None if v == -inf else mpmath.mpf(v) / t for v in row]  # exact inputs
        log_total = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z if v is not None))
        sm = [0.0 if v is None else _round(mpmath.exp(v - log_total), dtype) for v in z]
        lsm = [-inf if v is None else _round(v - log_total, dtype) for v in z]
        lse = _round(log_total * t, dtype)
    return sm, lsm, lse


def _assert_close(got: np.ndarray, want: Any, dtype: type, scale: float = 0.0) -> None:
    """``got`` is ``want`` to a few rounding errors of ``dtype``, infinities exactly.

    ``scale``: the size of the terms, for an absolute tolerance of a few
    rounding errors of it (see the log_softmax call).
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.broadcast_to(np.asarray(want, dtype=np.float64), got.shape)
    assert_array_equal(np.isnan(got), np.isnan(want))
    special = ~np.isfinite(want)
    assert_array_equal(got[special], want[special])  # inf of the right sign, NaN
    eps = float(np.finfo(dtype).eps)
    assert np.all(np.isfinite(got[~special]))
    assert_allclose(
        got[~special],
        want[~special],
        rtol=4 * eps,
        atol=4 * float(np.finfo(dtype).smallest_subnormal) + 4 * eps * scale,
    )


def _term_size(row: list[float], t: float) -> float:
    """The largest finite ``|x / T|`` of the row, at most the float64 maximum."""
    big = float(np.finfo(np.float64).max)
    return max((min(abs(v) / t, big) for v in row if np.isfinite(v)), default=0.0)


def _paths(row: list[float], dtype: type) -> dict[str, tuple[np.ndarray, dict]]:
    """The same row as the small-input path, the row kernels and the generic code see it."""
    x = np.array(row, dtype=dtype)
    many = np.tile(x, (4097 // len(row) + 1, 1))  # past the small-input limit
    return {
        "small": (x, {}),
        "kernels": (many, {}),
        "generic": (x, {"where": np.ones(x.shape, dtype=bool)}),
    }


@pytest.mark.parametrize("numba", [False, True], ids=["numpy", "numba"])
@pytest.mark.parametrize("t", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_extremes_match_mpmath(dtype, t, numba, monkeypatch):
    if numba:
        pytest.importorskip("numba")
    monkeypatch.setattr(_kernels, "USE_NUMBA", numba)
    monkeypatch.setattr(_kernels, "NUMBA_MIN_SIZE", 0)
    for row in _cases(dtype):
        sm, lsm, lse = _policy(row, t, dtype)
        for path, (x, kw) in _paths(row, dtype).items():
            x0 = x.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got_sm = softmax(x, temperature=t, **kw)
                got_lsm = log_softmax(x, temperature=t, **kw)
                got_lse = logsumexp(x, temperature=t, **kw)
            assert_array_equal(x, x0)  # input untouched
            assert got_sm.dtype == got_lsm.dtype == got_lse.dtype == np.dtype(dtype)
            context = f"{np.dtype(dtype).name} T={t} {path} path, x={row}"
            try:
                _assert_close(got_sm, sm, dtype)
                # log_softmax is x - logsumexp(x), which the compiled kernels
                # compute as one subtraction: its error is relative to the size
                # of the terms, not of the result (as in tests/test_functions.py)
                _assert_close(got_lsm, lsm, dtype, scale=_term_size(row, t))
                _assert_close(got_lse, lse, dtype)
            except AssertionError as exc:
                raise AssertionError(f"{context}: {exc}") from None


def test_hypothesis_example_float32():
    """The example Hypothesis found, on the path it found it on (two elements)."""
    x = np.array([-1.0141205e31, 3.4028235e38], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = log_softmax(x)
        got_2d = log_softmax(np.stack([x, np.zeros(2, np.float32)]))
    assert got.dtype == np.float32
    assert_array_equal(got, [-inf, 0.0])
    # one row beyond the range leaves the other row's answer as it is
    assert_array_equal(got_2d, [[-inf, 0.0], np.float32([-np.log(2), -np.log(2)])])
    # just inside the range: -max, not -inf
    inside = log_softmax(np.array([-1.0e31, 3.4028235e38], np.float32))
    assert_array_equal(inside, [-np.finfo(np.float32).max, 0.0])
