"""Datasets: real data shipped with the package, and loaders with checksums.

- :func:`load_mnist_sample`: 10,000 real MNIST digits that ship inside the
  package (no network), checked by SHA-256 at every load.
- :func:`load_digits`, :func:`load_iris`: scikit-learn's bundled data.
- :func:`load_mnist`: the full MNIST (70,000 digits), downloaded on first use,
  verified by SHA-256 and cached in the user's cache folder.
- :func:`load_builtin`: any of the above by the name the command line uses.
"""

from __future__ import annotations

from typing import Any

from softmax.datasets._mnist import get_data_home, load_mnist, read_idx
from softmax.datasets._shipped import load_digits, load_iris, load_mnist_sample

__all__ = [
    "BUILTIN_DATASETS",
    "get_data_home",
    "load_builtin",
    "load_digits",
    "load_iris",
    "load_mnist",
    "load_mnist_sample",
    "read_idx",
]

# Names accepted by ``softmax fit DATA`` and friends. Image pixels are scaled
# to [0, 1] here because that is what a linear model should be fed: on
# digits' raw grey levels 0-16 an elastic-net fit with the command line's
# defaults stops at max_iter, scaled it converges.
BUILTIN_DATASETS: dict[str, str] = {
    "mnist-sample": "10,000 MNIST digits shipped with softmax (784 pixels in [0, 1])",
    "mnist": "full MNIST, 70,000 digits (downloaded on first use, pixels in [0, 1])",
    "digits": "scikit-learn's 8x8 digits (1,797 images, 64 pixels in [0, 1])",
    "iris": "scikit-learn's iris flowers (150 rows, 4 features, 3 classes)",
}


def load_builtin(name: str) -> Any:
    """Load a built-in dataset by its command-line name.

    Parameters
    ----------
    name : {"mnist-sample", "mnist", "digits", "iris"}

    Returns
    -------
    data : sklearn.utils.Bunch
        With ``data`` of shape (n_samples, n_features), ``target`` of shape
        (n_samples,) and ``feature_names``; image datasets also carry
        ``images`` of shape (n_samples, height, width). Pixels of the image
        datasets are float64 in [0, 1] (MNIST's 0-255 and digits' 0-16 grey
        levels divided by their maximum).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if name == "mnist-sample":
        return load_mnist_sample(scale=True)
    if name == "mnist":
        return load_mnist(scale=True)
    if name == "digits":
        bunch = load_digits()
        bunch.data = bunch.data / 16.0  # grey levels 0-16
        bunch.images = bunch.images / 16.0
        bunch.feature_names = list(bunch.feature_names)
        return bunch
    if name == "iris":
        bunch = load_iris()
        bunch.feature_names = list(bunch.feature_names)
        return bunch
    raise ValueError(
        f"unknown dataset {name!r}; built-in datasets are: {', '.join(BUILTIN_DATASETS)}"
    )
