"""Optional dependencies: the command that installs a missing one.

softmax's extras (``softmax[plot]``, ``softmax[onnx]``, ...) are only a
name for a set of packages. A hint that says ``pip install "softmax[plot]"``
fails for a softmax installed from a clone or a wheel (pip would fetch
whatever the index calls softmax), so the hints name the packages
themselves, with the version bounds softmax declares for them.
"""

from __future__ import annotations

import re

__all__ = ["install_hint", "requirement"]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(package: str) -> str:
    """``package`` with the version bound softmax's metadata gives it, e.g. ``matplotlib>=3.7``.

    Parameters
    ----------
    package : str
        A distribution name.

    Returns
    -------
    requirement : str
        The requirement without its environment marker (with the package's
        own extras, e.g. ``dask[array,dataframe]>=2024.1``); ``package`` itself
        when softmax's metadata is unavailable or does not name it.
    """
    from importlib import metadata

    try:
        requires = metadata.requires("softmax") or []
    except metadata.PackageNotFoundError:
        return package
    for line in requires:
        spec = line.split(";", 1)[0].strip()
        found = _NAME.match(spec)
        if found and _normalise(found[1]) == _normalise(package):
            # the package's own extras stay (dask[array,dataframe]: the
            # Dask backend needs both)
            return spec.replace(" ", "")
    return package


def install_hint(*packages: str) -> str:
    """A ``pip install`` command for ``packages``, each quoted for any shell.

    Parameters
    ----------
    *packages : str
        Distribution names, e.g. ``"matplotlib"``.

    Returns
    -------
    hint : str
        e.g. ``pip install "matplotlib>=3.7"``.

    Examples
    --------
    >>> install_hint("matplotlib")  # doctest: +SKIP
    'pip install "matplotlib>=3.7"'
    """
    return "pip install " + " ".join(f'"{requirement(p)}"' for p in packages)
