"""Learning-curve plots of testbed results (matplotlib, imported lazily).

Needs matplotlib (the ``plot`` extra); without it the error names the
command that installs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from softmax.bandits.testbed import TestbedResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_results"]


def plot_results(
    results: TestbedResult | Mapping[str, TestbedResult] | Iterable[TestbedResult],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    dpi: int = 150,
) -> Figure:
    """Plot average reward and % optimal action against the step.

    Two panels sharing the step axis, in the layout of Sutton & Barto's
    figures: the average reward (with the best possible, the mean of each
    run's best arm, dashed) and the percentage of runs choosing their best arm.

    Parameters
    ----------
    results : TestbedResult, mapping of label to TestbedResult, or iterable
        What :func:`~softmax.bandits.testbed` or
        :func:`~softmax.bandits.compare_policies` returned.
    path : str or path-like, optional
        Save the figure there (format from the suffix, e.g. ``.png``,
        ``.svg``, ``.pdf``). Written to a temporary file first and renamed,
        so a failure never leaves half a file behind.
    title : str, optional
        Figure title.
    dpi : int, default 150
        Resolution for raster formats.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        from softmax._optional import install_hint

        raise ImportError(f"plot_results needs matplotlib: {install_hint('matplotlib')}") from exc

    items = _as_list(results)
    if not items:
        raise ValueError("results is empty; nothing to plot.")
    # Figure() rather than pyplot.figure(): no global state, no GUI backend,
    # and nothing to close for the caller.
    legend_rows = 0 if len(items) <= 5 else -(-len(items) // 3)
    fig = Figure(figsize=(8.0, 7.0 + 0.25 * legend_rows), layout="constrained")
    ax_reward, ax_optimal = fig.subplots(2, 1, sharex=True)
    colors = _colors(len(items))
    for color, res in zip(colors, items):
        steps = range(1, res.n_steps + 1)
        ax_reward.plot(steps, res.average_reward, color=color, lw=1.0, label=res.label)
        ax_optimal.plot(steps, 100.0 * res.optimal_action, color=color, lw=1.0)
    best = items[0].best_reward
    ax_reward.axhline(best, color="0.4", ls="--", lw=1.0, label=f"best possible ({best:.3f})")
    ax_reward.set_ylabel("Average reward")
    ax_optimal.set_ylabel("% optimal action")
    ax_optimal.set_xlabel("Step")
    ax_optimal.set_ylim(0, 100)
    ax_optimal.set_xlim(1, max(r.n_steps for r in items))
    for ax in (ax_reward, ax_optimal):
        ax.grid(True, color="0.9", lw=0.8)
        ax.spines[["top", "right"]].set_visible(False)
    if len(items) <= 5:
        ax_reward.legend(loc="lower right", fontsize="small", frameon=False, ncols=2)
    else:
        # Many curves would hide the data: put the legend under the figure.
        handles, labels = ax_reward.get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="outside lower center", ncols=3, fontsize="small", frameon=False
        )
    runs = items[0].n_runs
    arms = items[0].arm_means.shape[1]
    fig.suptitle(title or f"{arms}-armed testbed, average of {runs} runs")
    if path is not None:
        _save_atomic(fig, Path(path), dpi=dpi)
    return fig


def _as_list(results: Any) -> list[TestbedResult]:
    if isinstance(results, TestbedResult):
        return [results]
    if isinstance(results, Mapping):
        results = results.values()
    items = list(results)
    for r in items:
        if not isinstance(r, TestbedResult):
            raise TypeError(f"expected TestbedResult objects, got {type(r).__name__}.")
    return items


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _save_atomic(fig: Figure, path: Path, *, dpi: int) -> None:
    """Save the figure so that ``path`` is never left half-written."""
    from softmax._persist import atomic_write

    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi))
