"""Figures for a fitted classifier: confusion matrix, reliability diagram, weights.

Matplotlib is optional (``pip install softmax[plot]``) and imported only when
a figure is drawn. Figures are built with :class:`matplotlib.figure.Figure`
directly rather than through ``pyplot``, so drawing never opens a window,
never needs a display, and never changes the caller's global backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_class_weights", "plot_confusion_matrix", "plot_reliability_diagram"]


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        from softmax._optional import install_hint

        raise ImportError(f"plotting needs matplotlib: {install_hint('matplotlib')}") from None
    return Figure(**kwargs)


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    from softmax._persist import atomic_write

    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))


def plot_confusion_matrix(
    matrix: Any,
    classes: Sequence[Any],
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw a confusion matrix as a heat map with counts in the cells.

    Parameters
    ----------
    matrix : array-like of shape (n_classes, n_classes)
        Counts; rows are true classes, columns predicted classes.
    classes : sequence of length n_classes
        Class labels, in the order of the rows.
    normalize : bool, default=True
        Colour cells by the fraction of their row (recall per class), so
        classes of different sizes are comparable; the cells still show counts.
    title : str
    path : str or path-like, optional
        Save the figure there (PNG when the name ends in .png).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    if counts.shape != (k, k) or len(classes) != k:
        raise ValueError(f"matrix of shape {counts.shape} does not match {len(classes)} classes")
    row_sums = counts.sum(axis=1, keepdims=True)
    shade = counts / np.maximum(row_sums, 1) if normalize else counts.astype(float)
    size = min(12.0, 2.5 + 0.55 * k)
    fig = _figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class" if normalize else "count")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(k), labels, rotation=45 if max(map(len, labels)) > 3 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 30:  # beyond that the numbers no longer fit in the cells
        fontsize = 9 if k <= 12 else 7
        threshold = 0.5 * (shade.max() if shade.size else 1.0)
        for i in range(k):
            for j in range(k):
                if counts[i, j] == 0 and i != j:
                    continue  # empty off-diagonal cells stay blank: less clutter
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if shade[i, j] > threshold else "black",
                )
    _save(fig, path)
    return fig


def plot_reliability_diagram(
    curve: dict[str, np.ndarray],
    *,
    ece: float | None = None,
    title: str = "Reliability diagram",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw accuracy against confidence, with the share of samples per bin below.

    Parameters
    ----------
    curve : dict
        As returned by :func:`softmax.metrics.reliability_curve`: arrays
        ``bin_edges`` (n_bins + 1,), ``accuracy``, ``confidence`` and
        ``count`` (n_bins,).
    ece : float, optional
        Expected calibration error, shown in the legend.
    title : str
    path : str or path-like, optional
        Save the figure there.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    edges = np.asarray(curve["bin_edges"], dtype=float)
    accuracy = np.asarray(curve["accuracy"], dtype=float)
    confidence = np.asarray(curve["confidence"], dtype=float)
    count = np.asarray(curve["count"], dtype=float)
    width = np.diff(edges)
    left = edges[:-1]
    filled = count > 0

    fig = _figure(figsize=(6.0, 6.8))
    grid = fig.add_gridspec(2, 1, height_ratios=(3.2, 1.0), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    hist = fig.add_subplot(grid[1], sharex=ax)

    ax.plot(
        [0, 1],
        [0, 1],
        linestyle="--",
        color="0.3",
        linewidth=1,
        label="perfect calibration",
        zorder=3,  # over the bars, so it stays visible where they cross it
    )
    ax.bar(
        left[filled],
        accuracy[filled],
        width=width[filled],
        align="edge",
        color="tab:blue",
        edgecolor="white",
        alpha=0.85,
        label="accuracy in bin",
    )
    # The gap between each bin's mean confidence and its accuracy is the
    # miscalibration the ECE averages; draw it so it can be seen.
    ax.bar(
        left[filled],
        (confidence - accuracy)[filled],
        bottom=accuracy[filled],
        width=width[filled],
        align="edge",
        # Unfilled and hatched: over- and under-confidence read the same way
        # whether the gap lies above the blue bar or inside it.
        facecolor="none",
        edgecolor="tab:red",
        linewidth=1.0,
        hatch="///",
        label="gap to mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title if ece is None else f"{title}  (ECE = {ece:.4f})")
    ax.legend(loc="upper left", frameon=False)
    ax.tick_params(labelbottom=False)
    ax.set_aspect("auto")

    total = count.sum()
    hist.bar(left, count / max(total, 1.0), width=width, align="edge", color="0.55")
    hist.set_xlabel("confidence (top-label probability)")
    hist.set_ylabel("share of\nsamples")
    hist.set_ylim(0, 1)
    _save(fig, path)
    return fig


def plot_class_weights(
    coef: Any,
    classes: Sequence[Any],
    *,
    image_shape: tuple[int, int] = (28, 28),
    title: str = "Class weight vectors",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw each class's weight vector as an image (for pixel features).

    Red pixels raise the class's score, blue ones lower it; one symmetric
    colour scale is shared by all classes so their strengths compare.

    Parameters
    ----------
    coef : array-like of shape (n_classes, height * width)
        The model's ``coef_``.
    classes : sequence of length n_classes
    image_shape : (int, int), default=(28, 28)
        Height and width of the images the features came from.
    title : str
    path : str or path-like, optional
        Save the figure there.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    coef = np.asarray(coef, dtype=np.float64)
    height, width = image_shape
    if coef.ndim != 2 or coef.shape[1] != height * width or coef.shape[0] != len(classes):
        raise ValueError(
            f"coef of shape {coef.shape} cannot be drawn as {len(classes)} images of "
            f"{height}x{width}"
        )
    k = coef.shape[0]
    n_cols = min(k, 5)
    n_rows = -(-k // n_cols)
    fig = _figure(figsize=(2.0 * n_cols + 0.9, 2.15 * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    # Robust scale: the 99.5th percentile of |w| so one extreme pixel does not
    # wash out every other image.
    scale = float(np.quantile(np.abs(coef), 0.995)) or 1.0
    image = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= k:
            ax.set_axis_off()
            continue
        image = ax.imshow(
            coef[index].reshape(height, width),
            cmap="RdBu_r",
            vmin=-scale,
            vmax=scale,
            interpolation="nearest",
        )
        ax.set_title(f"class {classes[index]}", fontsize=10)
    if image is not None:
        cbar = fig.colorbar(image, ax=axes, shrink=0.8, pad=0.02)
        cbar.set_label("weight")
    fig.suptitle(title)
    _save(fig, path)
    return fig
