"""Datasets for the fit/predict benchmarks (issue 4), all with a fixed seed.

Every dataset is *natively float32*: its values are float32 numbers and the
float64 copy handed to float64 peers is the exact up-cast of the same numbers.
So one reference optimum (computed in float64) is the optimum for both dtypes,
and a float32 fit is judged on the data it was given, not on a rounded copy.

Datasets (``n_train`` rows are fitted, ``n_test`` rows give held-out accuracy):

``mnist``
    8,000 / 2,000 real MNIST digits, 784 pixels scaled by 1/255, 10 classes,
    from ``/work/shared/datasets/mnist10k.npz`` (or the copy that ships with
    the package: ``softmax.datasets.load_mnist_sample``).
``dense784``
    60,000 x 784, 10 classes, synthetic multinomial logit.
``tall100``
    1,000,000 x 100, 10 classes, synthetic multinomial logit.
``wide100c``
    50,000 x 500, 100 classes, synthetic multinomial logit.
``covertype``
    200,000 x 54, 7 imbalanced classes (49/36/6/4/3/1.5/0.5 %), shaped like
    the UCI covertype data: 10 integer features on their raw scales (0-7,000),
    4 + 40 one-hot indicators (wilderness area, soil type), see
    :func:`make_covertype_like`.
``probe1000``
    50,000 x 256, 1,000 classes: a linear probe on embeddings, see
    :func:`make_probe`.
``sparse``
    100,000 x 50,000 CSR, about 1% non-zeros, 20 classes: tf-idf like rows
    (Zipf word frequencies, log counts times idf, unit L2 norm).

The synthetic dense sets draw correlated features (a low-rank factor model
plus noise) with per-feature scales spread over two decades, then labels from
``softmax(X W^T + b)`` with a random ``W`` (Gumbel-max trick), so the problem
is neither separable nor trivially conditioned.

``scale`` (0 < scale <= 1) shrinks the number of rows of a synthetic set for
quick runs; MNIST is always its 8,000 / 2,000 digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["DATASETS", "Dataset", "load_dataset", "make_covertype_like", "make_probe"]

#: where the shared MNIST sample lives on the team's machine (benchmarks only)
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist10k.npz"

#: name -> (n_train, n_test, n_features, n_classes)
DATASETS: dict[str, tuple[int, int, int, int]] = {
    "mnist": (8_000, 2_000, 784, 10),
    "dense784": (60_000, 10_000, 784, 10),
    "tall100": (1_000_000, 100_000, 100, 10),
    "wide100c": (50_000, 10_000, 500, 100),
    "sparse": (100_000, 10_000, 50_000, 20),
    "covertype": (200_000, 20_000, 54, 7),
    "probe1000": (50_000, 10_000, 256, 1000),
}

#: class frequencies of the covertype-like set (those of UCI covertype, rounded)
COVERTYPE_FREQ = (0.49, 0.36, 0.06, 0.04, 0.03, 0.015, 0.005)
#: (low, high) ranges of its 10 integer features, as in UCI covertype:
#: elevation, aspect, slope, 4 distances, 3 hillshades
COVERTYPE_RANGES = (
    (1800, 3900),
    (0, 360),
    (0, 66),
    (0, 1400),
    (-170, 600),
    (0, 7100),
    (0, 255),
    (0, 255),
    (0, 255),
    (0, 7200),
)


@dataclass
class Dataset:
    """A benchmark problem: train/test rows in both dtypes, label codes, C.

    Attributes
    ----------
    name : str
    X32, X64 : ndarray or CSR matrix of shape (n_train, n_features)
        The training rows; ``X64`` holds exactly the values of ``X32``.
    y : ndarray of shape (n_train,)
        Label codes ``0 .. n_classes - 1`` (int64).
    X_test32 : ndarray or CSR matrix of shape (n_test, n_features)
    y_test : ndarray of shape (n_test,)
    n_classes : int
    C : float
        Inverse regularisation strength of the objective.
    description : str
    """

    name: str
    X32: Any
    X64: Any
    y: np.ndarray
    X_test32: Any
    y_test: np.ndarray
    n_classes: int
    C: float
    description: str

    @property
    def sparse(self) -> bool:
        """Whether the rows are a CSR matrix."""
        return sp.issparse(self.X32)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_train, n_features)``."""
        return self.X32.shape

    def nbytes(self, dtype: str = "float32") -> int:
        """Bytes held by the training rows of ``dtype`` (data + indices for CSR)."""
        X = self.X32 if dtype == "float32" else self.X64
        if sp.issparse(X):
            return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        return X.nbytes


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    if SHARED_MNIST.exists():
        with np.load(SHARED_MNIST) as f:
            return f["X"], f["y"]
    from softmax.datasets import load_mnist_sample  # ships with the package

    X, y = load_mnist_sample(return_X_y=True)
    return np.asarray(X), np.asarray(y)


def _split_dense(X: np.ndarray, y: np.ndarray, n_train: int) -> tuple[Any, ...]:
    X32 = np.ascontiguousarray(X[:n_train], dtype=np.float32)
    Xt = np.ascontiguousarray(X[n_train:], dtype=np.float32)
    return (
        X32,
        X32.astype(np.float64),
        y[:n_train].astype(np.int64),
        Xt,
        y[n_train:].astype(np.int64),
    )


def _gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one class per row from ``softmax(logits)`` (Gumbel-max trick)."""
    return np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=1)


def make_multinomial(
    n_samples: int,
    n_features: int,
    n_classes: int,
    *,
    seed: int,
    signal: float = 3.0,
    block: int = 50_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense rows and labels from a multinomial-logit model.

    Features are ``(Z + F L) * scales``: ``Z`` standard normal, ``F L`` a
    rank ``max(1, n_features // 10)`` factor part (correlations), ``scales``
    log-uniform on [0.1, 10]. ``W[k, j] ~ N(0, 1) * signal / (scale_j *
    sqrt(2 n_features))`` keeps the logits' spread near ``signal`` whatever the
    scales, so the labels are informative but noisy.

    Parameters
    ----------
    n_samples, n_features, n_classes : int
    seed : int
        Seed of the ``numpy.random.Generator``.
    signal : float, default 3.0
        Standard deviation of the true logits.
    block : int
        Rows generated at a time (bounds the temporary memory).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    rank = max(1, n_features // 10)
    L = rng.standard_normal((rank, n_features)) / math.sqrt(rank)
    scales = 10.0 ** rng.uniform(-1.0, 1.0, n_features)
    W = (
        rng.standard_normal((n_classes, n_features))
        * signal
        / (scales * math.sqrt(2 * n_features))
    )
    b = 0.5 * rng.standard_normal(n_classes)
    X = np.empty((n_samples, n_features), dtype=np.float32)
    y = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        m = stop - start
        Z = rng.standard_normal((m, n_features)) + rng.standard_normal((m, rank)) @ L
        Z *= scales
        X[start:stop] = Z
        # labels from the float32 rows actually stored
        y[start:stop] = _gumbel_argmax(X[start:stop].astype(np.float64) @ W.T + b, rng)
    return X, y


def make_covertype_like(n_samples: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows shaped like UCI covertype: raw integer scales, one-hot blocks, rare classes.

    Labels are drawn first with :data:`COVERTYPE_FREQ`; then each of the 10
    integer features is normal around a class mean (spread over a third of
    its range in :data:`COVERTYPE_RANGES`), with a within-class spread of a
    sixth of the range, clipped and rounded; the wilderness area (4) and soil
    type (40) indicators are one-hot draws from class-dependent categorical
    distributions. The classes overlap (no separation), the columns' scales
    differ by four decades (indicators 0/1 against distances in the
    thousands), as in the real set.

    Returns
    -------
    X : ndarray of shape (n_samples, 54), float32 (integers, exact)
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    K = len(COVERTYPE_FREQ)
    y = rng.choice(K, size=n_samples, p=np.asarray(COVERTYPE_FREQ) / sum(COVERTYPE_FREQ))
    lo, hi = np.asarray(COVERTYPE_RANGES, dtype=np.float64).T
    width = hi - lo
    centre = lo + width * (0.5 + rng.uniform(-1 / 6, 1 / 6, (K, lo.size)))
    X = np.empty((n_samples, 54), dtype=np.float32)
    cont = centre[y] + rng.standard_normal((n_samples, lo.size)) * (width / 6)
    X[:, :10] = np.rint(np.clip(cont, lo, hi))
    X[:, 10:] = 0.0
    rows = np.arange(n_samples)
    for start, size, conc in ((10, 4, 1.0), (14, 40, 0.3)):
        probs = rng.dirichlet(np.full(size, conc), K)  # (K, size)
        cdf = np.cumsum(probs, axis=1)[y]
        pick = (rng.random((n_samples, 1)) > cdf).sum(axis=1)
        X[rows, start + np.minimum(pick, size - 1)] = 1.0
    return X, y


def make_probe(
    n_samples: int, n_features: int, n_classes: int, *, seed: int, separation: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-like rows for a linear probe: many balanced classes, a decaying spectrum.

    Class centroids ``c_k ~ N(0, I)``; a row of class ``k`` is
    ``(separation * c_k + N(0, I)) S R / sqrt(n_features)`` with ``S`` the
    singular values ``j^-1/2`` (normalised to unit mean square) and ``R`` a
    random rotation, so the features are correlated and their variances
    decay, as in a network's embeddings; labels uniform over the classes.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    p = n_features
    centroids = rng.standard_normal((n_classes, p))
    s = np.arange(1, p + 1) ** -0.5
    s /= math.sqrt(np.mean(s**2))
    R, _ = np.linalg.qr(rng.standard_normal((p, p)))
    mix = (s[:, None] * R) / math.sqrt(p)
    y = rng.integers(0, n_classes, n_samples)
    Z = separation * centroids[y] + rng.standard_normal((n_samples, p))
    return (Z @ mix).astype(np.float32), y


def make_sparse_text(
    n_samples: int,
    n_features: int,
    n_classes: int,
    *,
    seed: int,
    density: float = 0.01,
    signal: float = 4.0,
    block: int = 20_000,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Text-like CSR rows (tf-idf of Zipf-distributed words) and labels.

    Each row draws about ``1.22 * density * n_features`` word occurrences (row
    lengths uniform on [0.5, 1.5] times that) from a Zipf(1) vocabulary in a
    random order; duplicates become counts; values are ``log1p(count) *
    idf`` with ``idf = log(1 / p_word)``, and rows have unit L2 norm. Labels
    come from a multinomial logit with ``W ~ N(0, signal^2)``.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(n_features)
    p = 1.0 / (ranks + 10.0)
    p /= p.sum()
    cdf = np.cumsum(p)
    idf = np.log(1.0 / p).astype(np.float32)
    # Zipf draws repeat popular words; 1.22x the draws leaves ~density non-zeros
    mean_len = 1.22 * density * n_features
    W = rng.standard_normal((n_classes, n_features)) * signal
    blocks = []
    y = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, block):
        m = min(block, n_samples - start)
        lengths = rng.integers(int(0.5 * mean_len), int(1.5 * mean_len) + 1, m)
        words = np.searchsorted(cdf, rng.random(int(lengths.sum())) * cdf[-1]).astype(np.int32)
        np.minimum(words, n_features - 1, out=words)
        indptr = np.concatenate(([0], np.cumsum(lengths)))
        ones = np.ones(words.size, dtype=np.float32)
        Xb = sp.csr_matrix((ones, words, indptr), shape=(m, n_features))
        Xb.sum_duplicates()  # counts; also sorts the indices
        Xb.data = np.log1p(Xb.data) * idf[Xb.indices]
        norms = np.sqrt(np.add.reduceat(Xb.data.astype(np.float64) ** 2, Xb.indptr[:-1]))
        Xb.data /= np.repeat(norms, np.diff(Xb.indptr)).astype(np.float32)
        y[start : start + m] = _gumbel_argmax(Xb @ W.T, rng)
        blocks.append(Xb)
    X = sp.vstack(blocks, format="csr", dtype=np.float32)
    X.indices = X.indices.astype(np.int32, copy=False)
    return X, y


def load_dataset(name: str, *, scale: float = 1.0, seed: int = 0) -> Dataset:
    """Build (or load) benchmark dataset ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    scale : float, default 1.0
        Fraction of the rows to keep for the synthetic sets (quick runs).
    seed : int, default 0

    Returns
    -------
    Dataset
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    n_train, n_test, p, K = DATASETS[name]
    if name == "mnist":
        X, y = _mnist()
        X = (X[: n_train + n_test].astype(np.float32) / np.float32(255.0)).astype(np.float32)
        parts = _split_dense(X, y[: n_train + n_test], n_train)
        desc = "MNIST digits 8,000 / 2,000, pixels / 255"
        return Dataset(name, *parts, n_classes=K, C=1.0, description=desc)
    n_train = max(int(n_train * scale), 10 * K)
    n_test = max(int(n_test * scale), 10 * K)
    n = n_train + n_test
    if name == "sparse":
        X, y = make_sparse_text(n, p, K, seed=seed + 4)
        Xtr = X[:n_train]
        desc = (
            f"sparse tf-idf-like CSR {n_train:,} x {p:,}, "
            f"{Xtr.nnz / (n_train * p):.2%} non-zeros, {K} classes"
        )
        return Dataset(
            name,
            Xtr,
            Xtr.astype(np.float64),
            y[:n_train],
            X[n_train:],
            y[n_train:],
            n_classes=K,
            C=1.0,
            description=desc,
        )
    if name == "covertype":
        X, y = make_covertype_like(n, seed=seed + 5)
        parts = _split_dense(X, y, n_train)
        desc = f"covertype-like {n_train:,} x {p}, {K} imbalanced classes, raw feature scales"
        return Dataset(name, *parts, n_classes=K, C=1.0, description=desc)
    if name == "probe1000":
        X, y = make_probe(n, p, K, seed=seed + 6)
        parts = _split_dense(X, y, n_train)
        desc = f"linear probe on embeddings {n_train:,} x {p}, {K} classes"
        return Dataset(name, *parts, n_classes=K, C=1.0, description=desc)
    seeds = {"dense784": 1, "tall100": 2, "wide100c": 3}
    X, y = make_multinomial(n, p, K, seed=seed + seeds[name])
    parts = _split_dense(X, y, n_train)
    desc = f"synthetic multinomial logit {n_train:,} x {p}, {K} classes"
    return Dataset(name, *parts, n_classes=K, C=1.0, description=desc)
