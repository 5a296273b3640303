"""Figures for a fitted classifier: confusion matrix, reliability diagram, weights.

Matplotlib is optional (the ``plot`` extra) and imported only when
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

__all__ = [
    "plot_class_weights",
    "plot_confusion_matrix",
    "plot_cv_scores",
    "plot_regularization_path",
    "plot_reliability_diagram",
]


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


def plot_regularization_path(
    result: Any,
    *,
    kind: str = "feature_norms",
    feature_names: Sequence[Any] | None = None,
    max_labels: int = 10,
    title: str = "Regularisation path",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw coefficients against ``C`` (log scale), with the features in use below.

    Parameters
    ----------
    result : RegularizationPath
        As returned by :func:`softmax.model_selection.regularization_path`
        (``Cs`` of shape (n_Cs,), ``coefs`` of shape (n_Cs, n_classes,
        n_features), ``n_features_selected``, ``l1_ratio``).
    kind : {"feature_norms", "coefficients"}, default="feature_norms"
        ``"feature_norms"``: one line per feature, the Euclidean norm of its
        weights over the classes (a feature enters the model when its line
        leaves 0; readable with many classes). ``"coefficients"``: one line
        per (class, feature) weight, coloured by class.
    feature_names : sequence of length n_features, optional
        Names for the labels of the largest lines (default ``x0, x1, ...``).
    max_labels : int, default=10
        Label the lines that are largest at the largest ``C`` (at most this many).
    title : str
    path : str or path-like, optional
        Save the figure there (written atomically).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    Cs = np.asarray(result.Cs, dtype=float)
    coefs = np.asarray(result.coefs, dtype=float)
    if coefs.ndim != 3 or coefs.shape[0] != Cs.shape[0]:
        raise ValueError(
            f"result.coefs of shape {coefs.shape} does not match {Cs.shape[0]} values of C; "
            "expected (n_Cs, n_classes, n_features)"
        )
    if kind not in ("feature_norms", "coefficients"):
        raise ValueError(f"kind must be 'feature_norms' or 'coefficients'; got {kind!r}")
    k, p = coefs.shape[1:]
    names = [f"x{j}" for j in range(p)] if feature_names is None else list(feature_names)
    if len(names) != p:
        raise ValueError(f"{len(names)} feature names for {p} features")
    selected = getattr(result, "n_features_selected", None)
    sparse = float(getattr(result, "l1_ratio", 0.0)) > 0 and selected is not None
    fig = _figure(figsize=(7.0, 6.2 if sparse else 4.8))
    if sparse:
        grid = fig.add_gridspec(2, 1, height_ratios=(3.0, 1.0), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        count_ax = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax = fig.add_subplot()
        count_ax = None
    if kind == "feature_norms":
        lines = np.sqrt((coefs**2).sum(axis=1))  # (n_Cs, p)
        ax.plot(Cs, lines, color="tab:blue", linewidth=0.8, alpha=0.7)
        ax.set_ylabel("norm of the feature's weights over classes")
        last = lines[-1]
        for j in np.argsort(-last)[: max(0, max_labels)]:
            if last[j] > 0:
                ax.annotate(
                    names[j],
                    (Cs[-1], last[j]),
                    fontsize=7,
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                )
    else:
        from matplotlib import colormaps

        cmap = colormaps["tab10" if k <= 10 else "tab20"]
        for c in range(k):
            ax.plot(Cs, coefs[:, c, :], color=cmap(c % cmap.N), linewidth=0.7, alpha=0.6)
        ax.set_ylabel("weight")
        ax.axhline(0.0, color="0.3", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_title(title)
    if count_ax is not None:
        ax.tick_params(labelbottom=False)
        count_ax.step(Cs, np.asarray(selected), where="post", color="tab:red")
        count_ax.set_ylabel("features\nin use")
        count_ax.set_ylim(0, p * 1.05)
        count_ax.set_xlabel("C (inverse regularisation strength)")
    else:
        ax.set_xlabel("C (inverse regularisation strength)")
    _save(fig, path)
    return fig


def plot_cv_scores(
    model: Any = None,
    *,
    Cs: Any = None,
    scores: Any = None,
    chosen_C: float | None = None,
    score_name: str | None = None,
    title: str = "Cross-validated score",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw the mean held-out score against ``C`` with a band of one standard error.

    Parameters
    ----------
    model : SoftmaxRegressionCV, optional
        A fitted model: its ``Cs_``, ``scores_``, ``l1_ratios_``, ``C_`` and
        ``scoring`` are drawn (one curve per ``l1_ratio``).
    Cs : array-like of shape (n_Cs,), optional
        Without ``model``: the grid.
    scores : array-like of shape (n_folds, n_Cs) or (n_folds, n_l1_ratios, n_Cs), optional
        Without ``model``: each fold's score.
    chosen_C : float, optional
        Mark this ``C`` (default ``model.C_``).
    score_name : str, optional
        The y-axis label (default the model's ``scoring``).
    title : str
    path : str or path-like, optional
        Save the figure there (written atomically).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    labels: list[str | None] = [None]
    if model is not None:
        Cs = model.Cs_
        scores = model.scores_
        chosen_C = model.C_ if chosen_C is None else chosen_C
        if score_name is None:
            scoring = getattr(model, "scoring", None)
            score_name = scoring if isinstance(scoring, str) else "score"
        labels = [f"l1_ratio = {r:g}" for r in np.asarray(model.l1_ratios_)]
    if Cs is None or scores is None:
        raise ValueError("give a fitted SoftmaxRegressionCV, or both Cs and scores")
    Cs = np.asarray(Cs, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 2:
        scores = scores[:, None, :]
    if scores.ndim != 3 or scores.shape[2] != Cs.shape[0] or scores.shape[0] < 1:
        raise ValueError(
            f"scores of shape {scores.shape} do not match {Cs.shape[0]} values of C; expected "
            "(n_folds, n_Cs) or (n_folds, n_l1_ratios, n_Cs)"
        )
    if len(labels) != scores.shape[1]:
        labels = [None] * scores.shape[1]
    order = np.argsort(Cs)
    n_folds = scores.shape[0]
    fig = _figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    for r in range(scores.shape[1]):
        s = scores[:, r, order]
        mean = s.mean(axis=0)
        se = s.std(axis=0, ddof=1) / np.sqrt(n_folds) if n_folds > 1 else np.zeros_like(mean)
        (line,) = ax.plot(Cs[order], mean, marker="o", markersize=3, label=labels[r])
        ax.fill_between(
            Cs[order], mean - se, mean + se, color=line.get_color(), alpha=0.2, linewidth=0
        )
    if chosen_C is not None:
        ax.axvline(
            float(chosen_C),
            color="0.3",
            linestyle="--",
            linewidth=1,
            label=f"chosen C = {float(chosen_C):.3g}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse regularisation strength)")
    ax.set_ylabel(f"mean {score_name or 'score'} over {n_folds} folds (band: 1 s.e.)")
    ax.set_title(title)
    if any(lbl is not None for lbl in labels) or chosen_C is not None:
        ax.legend(frameon=False)
    _save(fig, path)
    return fig
