"""Datasets: the shipped MNIST sample, scikit-learn's data, and the MNIST loader.

The loader's download path is tested with file:// mirrors and IDX files the
tests write themselves: never the network.
"""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import sklearn.datasets

from softmax import datasets
from softmax.datasets import _mnist, _shipped


def test_mnist_sample_shapes_and_content():
    bunch = datasets.load_mnist_sample()
    assert bunch.data.shape == (10_000, 784) and bunch.data.dtype == np.uint8
    assert bunch.images.shape == (10_000, 28, 28)
    assert bunch.target.shape == (10_000,)
    # About 1,000 of each digit, all ten present.
    counts = np.bincount(bunch.target, minlength=10)
    assert counts.min() > 800 and counts.max() < 1200
    assert bunch.data.max() == 255 and bunch.data.min() == 0
    # Real digits: on average about 19% of the pixels of an MNIST digit carry ink.
    assert 0.12 < (bunch.data > 0).mean() < 0.25
    assert "LeCun" in bunch.DESCR and len(bunch.feature_names) == 784


def test_mnist_sample_scaled_and_return_X_y():
    X, y = datasets.load_mnist_sample(return_X_y=True, scale=True)
    raw = datasets.load_mnist_sample().data
    assert X.dtype == np.float64 and X.max() == 1.0
    np.testing.assert_array_equal(np.rint(X * 255).astype(np.uint8), raw)
    assert y.dtype == np.int64


def test_mnist_sample_checksum_is_enforced(monkeypatch):
    monkeypatch.setattr(_shipped, "MNIST_SAMPLE_SHA256", "0" * 64)
    with pytest.raises(OSError, match="damaged"):
        datasets.load_mnist_sample()


def test_shipped_file_matches_its_readme_digest():
    from importlib import resources

    data = resources.files("softmax.datasets").joinpath("data", "mnist10k.npz").read_bytes()
    readme = resources.files("softmax.datasets").joinpath("data", "README.md").read_text()
    digest = hashlib.sha256(data).hexdigest()
    assert digest in readme
    assert "MIT" in readme and "LeCun" in readme  # provenance and licence kept


def test_digits_and_iris_are_sklearns():
    for ours, theirs in (
        (datasets.load_digits, sklearn.datasets.load_digits),
        (datasets.load_iris, sklearn.datasets.load_iris),
    ):
        X, y = ours(return_X_y=True)
        X_ref, y_ref = theirs(return_X_y=True)
        np.testing.assert_array_equal(X, X_ref)
        np.testing.assert_array_equal(y, y_ref)


def test_load_builtin_names():
    assert datasets.load_builtin("iris").data.shape == (150, 4)
    assert datasets.load_builtin("digits").images.shape == (1797, 8, 8)
    sample = datasets.load_builtin("mnist-sample")
    assert sample.data.dtype == np.float64 and sample.data.max() == 1.0
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*mnist-sample"):
        datasets.load_builtin("cifar")


# -- IDX files and the MNIST loader ----------------------------------------------


def _idx(array: np.ndarray, type_byte: int) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    ("dtype", "type_byte"),
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
)
def test_read_idx_all_types(dtype, type_byte):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    parsed = datasets.read_idx(_idx(array, type_byte))
    assert parsed.shape == (3, 4, 5) and parsed.dtype == np.dtype(dtype)
    assert parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, array)


def test_read_idx_against_hand_written_bytes():
    # Magic 0x00000801 (uint8, 1-D), 3 items: 7, 2, 1: the head of MNIST's t10k labels.
    data = bytes.fromhex("00000801") + (3).to_bytes(4, "big") + bytes([7, 2, 1])
    np.testing.assert_array_equal(datasets.read_idx(data), [7, 2, 1])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x08\x01",
        b"\x00\x00\x07\x01" + b"\x00" * 8,
        b"\x00\x00\x08\x02\x00\x00",
        bytes.fromhex("00000801") + (3).to_bytes(4, "big") + bytes([7, 2]),
    ],
    ids=["empty", "magic", "type", "short-header", "short-data"],
)
def test_read_idx_rejects_bad_files(data):
    with pytest.raises(ValueError):
        datasets.read_idx(data)


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """Small gzip'd IDX files in a folder served as a file:// mirror."""
    rng = np.random.default_rng(1)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {
        "train-images-idx3-ubyte.gz": (rng.integers(0, 256, (6, 28, 28)).astype(np.uint8), 8),
        "train-labels-idx1-ubyte.gz": (rng.integers(0, 10, 6).astype(np.uint8), 8),
        "t10k-images-idx3-ubyte.gz": (rng.integers(0, 256, (4, 28, 28)).astype(np.uint8), 8),
        "t10k-labels-idx1-ubyte.gz": (rng.integers(0, 10, 4).astype(np.uint8), 8),
    }
    digests = {}
    for name, (array, type_byte) in arrays.items():
        payload = gzip.compress(_idx(array, type_byte))
        (mirror / name).write_bytes(payload)
        digests[name] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(_mnist, "MNIST_FILES", digests)
    monkeypatch.setattr(_mnist, "MNIST_MIRRORS", (mirror.as_uri() + "/",))
    return {name: a for name, (a, _) in arrays.items()}, mirror


def test_load_mnist_downloads_verifies_and_caches(tmp_path, fake_mirror, monkeypatch):
    arrays, _ = fake_mirror
    home = tmp_path / "cache"
    bunch = datasets.load_mnist(data_home=home)
    assert bunch.data.shape == (10, 784) and bunch.n_train == 6
    np.testing.assert_array_equal(bunch.images[:6], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(bunch.target[6:], arrays["t10k-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in (home / "mnist").iterdir()) == sorted(arrays)

    # Second call: served from the cache, the network (here: _fetch) is not touched.
    def no_fetch(url, destination):
        raise AssertionError("fetched although cached")

    monkeypatch.setattr(_mnist, "_fetch", no_fetch)
    X, y = datasets.load_mnist(data_home=home, subset="test", return_X_y=True, scale=True)
    assert X.shape == (4, 784) and X.max() <= 1.0
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte.gz"])


def test_load_mnist_tries_the_next_mirror(tmp_path, fake_mirror, monkeypatch):
    _, mirror = fake_mirror
    dead = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setattr(_mnist, "MNIST_MIRRORS", (dead, mirror.as_uri() + "/"))
    X, _ = datasets.load_mnist(data_home=tmp_path / "c", subset="train", return_X_y=True)
    assert X.shape == (6, 784)


def test_load_mnist_offline_says_so(tmp_path, monkeypatch):
    def offline(url, destination):
        from urllib.error import URLError

        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(_mnist, "_fetch", offline)
    home = tmp_path / "cache"
    with pytest.raises(ConnectionError, match="offline"):
        datasets.load_mnist(data_home=home)
    # Nothing half-downloaded is left in the cache.
    assert list((home / "mnist").iterdir()) == []


def test_load_mnist_rejects_wrong_checksum(tmp_path, fake_mirror, monkeypatch):
    bad = dict(_mnist.MNIST_FILES)
    bad["train-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(_mnist, "MNIST_FILES", bad)
    home = tmp_path / "cache"
    with pytest.raises(ConnectionError, match="SHA-256"):
        datasets.load_mnist(data_home=home, subset="train")
    assert not (home / "mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_damaged_cache_is_downloaded_again(tmp_path, fake_mirror):
    home = tmp_path / "cache"
    datasets.load_mnist(data_home=home, subset="test")
    cached = home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    cached.write_bytes(b"garbage")
    _, y = datasets.load_mnist(data_home=home, subset="test", return_X_y=True)
    assert y.shape == (4,)
    assert cached.read_bytes() != b"garbage"


def test_no_download_when_not_allowed(tmp_path, fake_mirror):
    with pytest.raises(OSError, match="download_if_missing"):
        datasets.load_mnist(data_home=tmp_path / "empty", download_if_missing=False)


def test_bad_subset():
    with pytest.raises(ValueError, match="subset"):
        datasets.load_mnist(subset="validation")


def test_real_digests_are_the_published_ones():
    # The four SHA-256 digests of the canonical gzip'd files (torchvision,
    # TensorFlow and many others publish the same): guard against typos.
    expected = {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea37026",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cc",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e3",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd",
    }
    for name, prefix in expected.items():
        assert _mnist.MNIST_FILES[name].startswith(prefix)
        assert len(_mnist.MNIST_FILES[name]) == 64


def test_data_home_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.get_data_home() == tmp_path / "xdg" / "softmax"
    assert (tmp_path / "xdg" / "softmax").is_dir()
    assert datasets.get_data_home(tmp_path / "mine") == tmp_path / "mine"
