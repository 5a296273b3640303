"""The libraries' own kernels (softmax._native) against the generic code and the table.

For every library at hand (PyTorch on the CPU and on CUDA when present, JAX on
its default device, CuPy when installed) and every dtype it has, each case of
the numerics table (DESIGN.md section 3) is computed twice, through the
native kernel (the default) and through the generic code (``_native.ENABLED =
False``), and both are checked against a reference built independently of the
package: SciPy on the finite entries of a row, the policy's exact values
(0, 1/m, -log m, -inf, NaN) on the rest, in float64 from the input rounded to
its dtype.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import scipy.special as sps
from numpy.testing import assert_allclose

from softmax import _native
from softmax.functions import cross_entropy, log_softmax, logsumexp, softmax

inf, nan = np.inf, np.nan


# ------------------------------------------------------------------ libraries


class Lib:
    """How to make, read and check arrays of one library on one device."""

    def __init__(self, name, asarray, to_numpy, same_place, dtypes, x64=None):
        self.name = name
        self.asarray = asarray  # (float64 or int ndarray, dtype name) -> array
        self.to_numpy = to_numpy  # array -> float64 ndarray
        self.same_place = same_place  # (result, input) -> bool
        self.dtypes = dtypes
        self.x64 = x64 or contextlib.nullcontext

    def __repr__(self):
        return self.name


def _torch_lib(device):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    names = {
        "float64": torch.float64,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }

    def asarray(a, dtype):
        if dtype == "int32":
            return torch.tensor(a, dtype=torch.int32, device=device)
        # through float64 / float32, rounding to nearest even as ml_dtypes does
        t = torch.tensor(a, dtype=torch.float64 if dtype == "float64" else torch.float32)
        return t.to(device=device, dtype=names[dtype])

    def to_numpy(t):
        return t.detach().to("cpu", torch.float64).numpy()

    def same_place(r, x):
        return isinstance(r, torch.Tensor) and r.device == x.device and r.dtype == x.dtype

    return Lib(f"torch-{device}", asarray, to_numpy, same_place, list(names))


def _jax_lib():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def asarray(a, dtype):
        if dtype == "int32":
            return jnp.asarray(a.astype(np.int32))
        return jnp.asarray(a.astype(np.float32) if dtype != "float64" else a, dtype=dtype)

    def to_numpy(a):
        return np.asarray(a.astype(jnp.float32) if a.dtype != jnp.float64 else a, np.float64)

    def same_place(r, x):
        return isinstance(r, jax.Array) and r.devices() == x.devices() and r.dtype == x.dtype

    def x64():
        if hasattr(jax, "enable_x64"):
            return jax.enable_x64(True)
        from jax.experimental import enable_x64  # jax < 0.7

        return enable_x64()

    return Lib(
        "jax", asarray, to_numpy, same_place, ["float64", "float32", "bfloat16", "float16"], x64
    )


def _cupy_lib():
    cupy = pytest.importorskip("cupy")
    pytest.importorskip("cupyx.scipy.special")

    def asarray(a, dtype):
        return cupy.asarray(a.astype(dtype))

    def to_numpy(a):
        return cupy.asnumpy(a).astype(np.float64)

    def same_place(r, x):
        return isinstance(r, cupy.ndarray) and r.device == x.device and r.dtype == x.dtype

    return Lib("cupy", asarray, to_numpy, same_place, ["float64", "float32", "float16"])


LIBS = {
    "torch-cpu": lambda: _torch_lib("cpu"),
    "torch-cuda": lambda: _torch_lib("cuda"),
    "jax": _jax_lib,
    "cupy": _cupy_lib,
}


@pytest.fixture(params=list(LIBS))
def lib(request):
    return LIBS[request.param]()


@contextlib.contextmanager
def generic_only():
    old = _native.ENABLED
    _native.ENABLED = False
    try:
        yield
    finally:
        _native.ENABLED = old


# ------------------------------------------------------------------ reference


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` (as the library stores it), back in float64."""
    if dtype == "bfloat16":
        import ml_dtypes

        with np.errstate(over="ignore"):
            return a.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
    with np.errstate(over="ignore"):
        return a.astype(dtype).astype(np.float64)


def ref_row(row: np.ndarray, t: float = 1.0):
    """softmax, log_softmax, logsumexp (tempered) of one float64 row, by the policy.

    Finite entries: SciPy on ``(x - max) / T`` (shifted first, so nothing
    overflows); the special rows: their exact values.
    """
    k = row.size
    if np.isnan(row).any():
        return np.full(k, nan), np.full(k, nan), nan
    top = row == inf
    if top.any():
        m = top.sum()
        return top / m, np.where(top, -np.log(m), -inf), inf
    if (row == -inf).all():
        return np.zeros(k), np.full(k, -inf), -inf
    mx = row[np.isfinite(row)].max()
    with np.errstate(over="ignore"):  # x - max below -max_float: exp is 0 anyway
        z = (row - mx) / t
    return sps.softmax(z), sps.log_softmax(z), mx + t * sps.logsumexp(z)


def reference(x: np.ndarray, axis: int, t: float = 1.0):
    moved = np.moveaxis(x, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    rows = [ref_row(r, t) for r in flat]
    sm = np.array([r[0] for r in rows]).reshape(moved.shape)
    lsm = np.array([r[1] for r in rows]).reshape(moved.shape)
    lse = np.array([r[2] for r in rows]).reshape(moved.shape[:-1])
    return np.moveaxis(sm, -1, axis), np.moveaxis(lsm, -1, axis), lse


RTOL = {"float64": 1e-13, "float32": 3e-6, "bfloat16": 1.6e-2, "float16": 2e-3}


def check(got, ref, dtype, atol=0.0):
    """Same non-finite values at the same places, finite ones within the dtype's error.

    The reference is rounded to ``dtype`` first (beyond its range it is +-inf).
    ``atol``: a number or an array of ``ref``'s shape.
    """
    got = np.asarray(got, np.float64)
    ref = rounded(np.asarray(ref, np.float64), dtype)
    assert got.shape == ref.shape
    same_special = (np.isnan(got) == np.isnan(ref)).all() and (
        np.isinf(got) == np.isinf(ref)
    ).all()
    assert same_special, f"special values differ:\n{got}\n{ref}"
    assert (got[np.isinf(got)] == ref[np.isinf(ref)]).all()
    fin = np.isfinite(ref)
    atol = np.broadcast_to(atol, ref.shape)[fin]
    err = np.abs(got[fin] - ref[fin])
    bound = atol + RTOL[dtype] * np.abs(ref[fin])
    assert (err <= bound).all(), f"max excess {np.max(err - bound)}"


def lsm_atol(xr, axis, dtype, t=1.0):
    """log_softmax cancels (x - lse): its error is relative to the row's largest |x| / T."""
    a = np.where(np.isfinite(xr), np.abs(xr), 0.0)
    return RTOL[dtype] * np.max(a, axis=axis, keepdims=True) / t * np.ones_like(xr)


def table(dtype: str) -> np.ndarray:
    """The numerics table as rows, with 'huge' as huge as the dtype allows."""
    big = {"float64": 1e308, "float32": 1e38, "bfloat16": 1e38, "float16": 3e4}[dtype]
    return np.array(
        [
            [1.0, 2.0, 3.0, 4.0],  # ordinary
            [big, big, -big, 0.0],  # huge finite values
            [1.0, -inf, 2.0, -inf],  # some -inf
            [-inf, -inf, -inf, -inf],  # all -inf
            [inf, 1.0, inf, 0.0],  # some +inf (first entry)
            [1.0, 2.0, inf, 3.0],  # one +inf, not first
            [nan, 1.0, 2.0, 3.0],  # NaN
            [2.0, inf, nan, 1.0],  # NaN beside +inf
        ]
    )


def both_paths(f, *args, **kw):
    native = f(*args, **kw)
    with generic_only():
        generic = f(*args, **kw)
    return native, generic


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("axis", [-1, 0])
def test_table_native_and_generic_agree(lib, axis):
    for dtype in lib.dtypes:
        with lib.x64():
            xr = rounded(table(dtype), dtype)
            if axis == 0:
                xr = xr.T.copy()
            x = lib.asarray(xr, dtype)
            assert _native.for_array(x) is not None
            sm_ref, lsm_ref, lse_ref = reference(xr, axis)
            atol = lsm_atol(xr, axis, dtype)
            for f, ref, at in (
                (softmax, sm_ref, 0.0),
                (log_softmax, lsm_ref, atol),
                (logsumexp, lse_ref, 0.0),
            ):
                native, generic = both_paths(f, x, axis)
                for got in (native, generic):
                    assert lib.same_place(got, x), (f.__name__, dtype, type(got))
                    check(lib.to_numpy(got), ref, dtype, at)
                # the two paths agree with each other at least as well
                check(lib.to_numpy(native), lib.to_numpy(generic), dtype, at)


@pytest.mark.parametrize("t", [0.5, 3.0, 1e-3])
def test_temperature_native_and_generic_agree(lib, t):
    rng = np.random.default_rng(1)
    for dtype in lib.dtypes:
        with lib.x64():
            base = np.vstack([rng.standard_normal((5, 4)) * 3, table(dtype)[2:]])
            # huge finite values: x / T overflows for T < 1, the result does not
            big = {"float64": 1e306, "float16": 6e3}.get(dtype, 1e36)
            base[0, :2] = [big, 0.999 * big]
            xr = rounded(base, dtype)
            x = lib.asarray(xr, dtype)
            sm_ref, lsm_ref, lse_ref = reference(xr, -1, t)
            atol = lsm_atol(xr, -1, dtype, t)
            for f, ref, at in (
                (softmax, sm_ref, 0.0),
                (log_softmax, lsm_ref, atol),
                (logsumexp, lse_ref, atol[:, 0] * t),
            ):
                native, generic = both_paths(f, x, temperature=t)
                for got in (native, generic):
                    assert lib.same_place(got, x)
                    check(lib.to_numpy(got), ref, dtype, at)


def test_hard_max_and_empty_axis(lib):
    with lib.x64():
        xn = np.array([[1.0, 3.0, 3.0], [-inf, -inf, -inf], [2.0, inf, nan]])
        x = lib.asarray(xn, "float32")
        sm = lib.to_numpy(softmax(x, temperature=0))
        assert_allclose(sm[0], [0, 0.5, 0.5])
        assert (sm[1] == 0).all() and np.isnan(sm[2]).all()
        lse = lib.to_numpy(logsumexp(x, temperature=0))
        assert lse[0] == 3.0 and lse[1] == -inf and np.isnan(lse[2])
        e = lib.asarray(np.zeros((3, 0)), "float32")
        assert tuple(softmax(e).shape) == (3, 0)
        assert (lib.to_numpy(logsumexp(e)) == -inf).all()


def test_special_rows_in_a_large_batch(lib):
    """Only the special rows are recomputed; the others stay the kernel's, on any axis."""
    rng = np.random.default_rng(2)
    xr = rng.standard_normal((6, 7, 50)) * 4
    xr[0, 3, 5] = inf
    xr[2, :, 10] = -inf  # axis=1: row (2, 10) all -inf
    xr[4, 6, 49] = nan
    xr[5, 0, 0] = inf
    xr[5, 1, 0] = inf
    for dtype in ("float32",):
        x = lib.asarray(xr, dtype)
        xq = rounded(xr, dtype)
        for axis in (-1, 1):
            sm_ref, lsm_ref, lse_ref = reference(xq, axis)
            for f, ref in ((softmax, sm_ref), (log_softmax, lsm_ref), (logsumexp, lse_ref)):
                atol = lsm_atol(xq, axis, dtype) if f is log_softmax else 0.0
                native, generic = both_paths(f, x, axis)
                check(lib.to_numpy(native), ref, dtype, atol)
                check(lib.to_numpy(generic), ref, dtype, atol)


def test_narrow_floats_accumulate_in_float32(lib):
    """4096 equal terms: a bfloat16/float16 running sum stalls at 256 / 2048."""
    for dtype in [d for d in lib.dtypes if d in ("bfloat16", "float16")]:
        x = lib.asarray(np.zeros((2, 4096)), dtype)
        for native_on in (True, False):
            with contextlib.nullcontext() if native_on else generic_only():
                sm = lib.to_numpy(softmax(x))
                lse = lib.to_numpy(logsumexp(x))
                lsm = lib.to_numpy(log_softmax(x))
            assert_allclose(sm, 1 / 4096, rtol=RTOL[dtype])
            assert_allclose(lse, math.log(4096), rtol=RTOL[dtype])
            assert_allclose(lsm, -math.log(4096), rtol=RTOL[dtype])


def test_int_input(lib):
    with lib.x64():
        xi = lib.asarray(np.array([[1, 0, 2]]), "int32")
        for f, ref in ((softmax, sps.softmax), (log_softmax, sps.log_softmax)):
            got = f(xi)
            assert "float" in str(got.dtype)
            assert_allclose(lib.to_numpy(got), ref([[1.0, 0.0, 2.0]], axis=-1), rtol=1e-6)


def test_cross_entropy_matches_reference(lib):
    rng = np.random.default_rng(3)
    xn = rng.standard_normal((20, 5)) * 3
    y = rng.integers(0, 5, 20)
    with lib.x64():
        x = lib.asarray(xn, "float64" if "float64" in lib.dtypes else "float32")
        xq = lib.to_numpy(x)
        ref = -sps.log_softmax(xq, axis=1)[np.arange(20), y]
        if lib.name.startswith("torch"):
            import torch

            yt = torch.as_tensor(y, device=x.device)
        elif lib.name == "jax":
            yt = np.asarray(y).tolist()
        else:
            import cupy

            yt = cupy.asarray(y)
        got = cross_entropy(x, yt, reduction="none")
        assert lib.same_place(got, x)
        assert_allclose(lib.to_numpy(got), ref, rtol=1e-6)
        w = rng.random(5)
        got = cross_entropy(x, yt, class_weight=w.tolist(), label_smoothing=0.2)
        p = 0.8 * np.eye(5)[y] + 0.2 / 5
        lsm = sps.log_softmax(xq, axis=1)
        refw = -(p * w * lsm).sum(1).sum() / w[y].sum()
        assert_allclose(float(got), refw, rtol=1e-6)


# ------------------------------------------------------ library-specific checks


def test_torch_calls_its_own_kernels(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    for name in ("softmax", "log_softmax", "logsumexp"):
        real = getattr(torch, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(torch, name, spy)
    x = torch.randn(4, 5, dtype=torch.float64)
    softmax(x), log_softmax(x, 0), logsumexp(x), softmax(x, temperature=2.0)
    assert calls == ["softmax", "log_softmax", "logsumexp", "softmax"]
    # masks, weights, T = 0 take the generic code
    calls.clear()
    softmax(x, where=x > 0), logsumexp(x, b=x), softmax(x, temperature=0)
    assert calls == []


def test_torch_autograd_through_both_paths():
    torch = pytest.importorskip("torch")
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 5, dtype=torch.float64)
    (ours,) = torch.autograd.grad((softmax(x) * g).sum(), x)
    (theirs,) = torch.autograd.grad((torch.softmax(x, -1) * g).sum(), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-15)
    # a special row is fixed out of place: the other rows keep their gradients
    xs = x.detach().clone()
    xs[2, 1] = float("inf")
    xs.requires_grad_(True)
    out = log_softmax(xs)
    assert torch.isfinite(out[2, 1]) and out[2, 1] == 0.0
    (gs,) = torch.autograd.grad((out[[0, 1, 3, 4, 5]] * g[[0, 1, 3, 4, 5]]).sum(), xs)
    (gt,) = torch.autograd.grad((torch.log_softmax(x, -1) * g).sum(), x)
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(gs[keep], gt[keep], rtol=1e-13, atol=1e-15)


def test_torch_never_writes_into_input():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, float("inf"), 2.0], [-float("inf")] * 3, [1.0, 2.0, 3.0]])
    x0 = x.clone()
    softmax(x), log_softmax(x), logsumexp(x, temperature=0.5), softmax(x, temperature=0.3)
    assert torch.equal(torch.nan_to_num(x), torch.nan_to_num(x0))


def test_jax_under_jit_vmap_grad():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    xn = np.array([[1.0, 2.0, 3.0], [inf, 0.0, inf], [-inf, -inf, -inf]], np.float32)
    x = jnp.asarray(xn)
    ref_sm, ref_lsm, ref_lse = reference(xn.astype(np.float64), -1)
    check(np.asarray(jax.jit(softmax)(x), np.float64), ref_sm, "float32")
    check(np.asarray(jax.vmap(log_softmax)(x), np.float64), ref_lsm, "float32", 1e-6)
    check(np.asarray(jax.jit(logsumexp)(x), np.float64), ref_lse, "float32")
    check(
        np.asarray(jax.jit(lambda a: logsumexp(a, temperature=0.5))(x), np.float64),
        reference(xn.astype(np.float64), -1, 0.5)[2],
        "float32",
    )
    # d logsumexp_T / dx = softmax(x / T) on a finite row
    g = jax.grad(lambda a: logsumexp(a, temperature=0.5))(x[0])
    assert_allclose(np.asarray(g), sps.softmax(xn[0] / 0.5), rtol=1e-6)
