"""The full MNIST set: downloaded on first use, verified, cached, parsed from IDX."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_data_home", "load_mnist", "read_idx"]

# Mirrors tried in order. ossci-datasets is the one torchvision uses; the CVDF
# bucket is the one TensorFlow uses. Both serve the original gzip'd IDX files
# byte for byte, so one set of digests covers both.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# SHA-256 of each gzip'd file as published (torchvision, TensorFlow Datasets and
# many independent projects list the same digests).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}

_SUBSET_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_DOWNLOAD_TIMEOUT_S = 60.0


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Folder where downloaded datasets are cached (created if needed).

    Parameters
    ----------
    data_home : str or path-like, optional
        Use this folder. By default ``$XDG_CACHE_HOME/softmax`` or, when that
        variable is unset, ``~/.cache/softmax``.

    Returns
    -------
    path : pathlib.Path
    """
    if data_home is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        data_home = os.path.join(cache, "softmax")
    path = Path(data_home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_idx(data: bytes) -> np.ndarray:
    """Parse one IDX file (already decompressed) into an array.

    Parameters
    ----------
    data : bytes
        The whole file: two zero bytes, a type byte, the number of
        dimensions, one big-endian uint32 per dimension, then the values.

    Returns
    -------
    array : ndarray
        Of the shape the header gives, in native byte order.

    Raises
    ------
    ValueError
        If the magic number, type byte or length is wrong.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file: the first two bytes must be zero")
    dtype = _IDX_DTYPES.get(data[2])
    if dtype is None:
        raise ValueError(f"not an IDX file: unknown type byte 0x{data[2]:02x}")
    ndim = data[3]
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise ValueError("IDX file truncated inside its header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise ValueError(
            f"IDX file holds {len(data) - header_end} bytes of values, but its header "
            f"announces shape {shape} ({expected} bytes)"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, destination: Path) -> None:
    """Copy ``url`` to ``destination`` (tests replace this to stay offline)."""
    from urllib.request import urlopen

    with urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(destination, "wb") as fh:
        shutil.copyfileobj(response, fh)


def _download_verified(name: str, sha256: str, folder: Path, mirrors: tuple[str, ...]) -> Path:
    """Download ``name`` into ``folder`` from the first mirror that serves it intact."""
    target = folder / name
    errors: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        # Download next to the target and rename only once the digest matches,
        # so an interrupted download never looks like a cached file.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp)
            digest = _sha256_file(tmp)
            if digest != sha256:
                errors.append(f"{url}: SHA-256 {digest} does not match {sha256}")
                continue
            os.replace(tmp, target)
            return target
        except OSError as exc:  # URLError, timeouts and refused connections are OSErrors
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ConnectionError(
        f"could not download MNIST file {name!r} (no network connection, or every "
        f"mirror failed): {'; '.join(errors)}. Are you offline? Copy the four "
        f"MNIST .gz files into {folder} to use them without a download."
    )


def _load_subset(
    subset: str, folder: Path, download_if_missing: bool, mirrors: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name in _SUBSET_FILES[subset]:
        sha256 = MNIST_FILES[name]
        path = folder / name
        if path.exists() and _sha256_file(path) != sha256:
            # A damaged cache entry (say, a disk error) is downloaded again.
            path.unlink()
        if not path.exists():
            if not download_if_missing:
                raise OSError(
                    f"MNIST file {name!r} is not in the cache {folder} and "
                    "download_if_missing=False"
                )
            path = _download_verified(name, sha256, folder, mirrors)
        with gzip.open(path, "rb") as fh:
            arrays.append(read_idx(fh.read()))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {subset} files disagree: images {images.shape}, labels {labels.shape}"
        )
    return images, labels


def load_mnist(
    data_home: str | os.PathLike[str] | None = None,
    *,
    subset: str = "all",
    return_X_y: bool = False,
    scale: bool = False,
    download_if_missing: bool = True,
) -> Any:
    """Load the full MNIST set (60,000 training + 10,000 test digits).

    The four gzip'd IDX files are downloaded on first use from a canonical
    mirror (the one torchvision uses, then the one TensorFlow uses), checked
    against their published SHA-256 digests and cached in ``data_home``.

    Parameters
    ----------
    data_home : str or path-like, optional
        Cache folder; see :func:`get_data_home`. The files live in its
        ``mnist`` subfolder.
    subset : {"all", "train", "test"}, default="all"
        "all" stacks the 60,000 training digits and then the 10,000 test
        digits, so ``X[:60000]`` / ``X[60000:]`` is the standard split.
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a Bunch.
    scale : bool, default=False
        Pixels as float64 in [0, 1] instead of uint8 0-255.
    download_if_missing : bool, default=True
        Raise ``OSError`` instead of downloading when a file is not cached.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` of shape (n_samples, 784), ``target`` of shape (n_samples,)
        int64, ``images`` of shape (n_samples, 28, 28), ``n_train`` (the
        number of leading rows from the training set), ``DESCR``.
    (X, y) : tuple of ndarray
        When ``return_X_y`` is true.

    Raises
    ------
    ConnectionError
        When a file must be downloaded and no mirror can be reached (offline).
    ValueError
        For an unknown ``subset`` or files that do not parse as IDX.
    """
    if subset not in ("all", "train", "test"):
        raise ValueError(f"subset must be 'all', 'train' or 'test', got {subset!r}")
    folder = get_data_home(data_home) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["train", "test"] if subset == "all" else [subset]
    parts = [_load_subset(s, folder, download_if_missing, MNIST_MIRRORS) for s in names]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    target = np.concatenate([p[1] for p in parts]).astype(np.int64)
    X = images.reshape(images.shape[0], -1)
    if scale:
        X = X.astype(np.float64) / 255.0
    if return_X_y:
        return X, target
    from sklearn.utils import Bunch

    n_train = parts[0][0].shape[0] if names[0] == "train" else 0
    return Bunch(
        data=X,
        target=target,
        images=X.reshape(images.shape),
        n_train=n_train,
        feature_names=[
            f"pixel_{r}_{c}" for r in range(images.shape[1]) for c in range(images.shape[2])
        ],
        target_names=np.arange(10),
        DESCR="MNIST handwritten digits (LeCun, Cortes and Burges): 60,000 training and "
        "10,000 test images of 28x28 grey levels.",
    )
