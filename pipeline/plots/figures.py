"""The seeds' diagnostic pictures that are not lines per method: where a learned model
looks or writes. Each takes plain arrays, so the workloads hand over data, not axes.

- `lookup_positions`: seed 000 Figure 2 (centre), the first query model's lookup
  position against the query value (1D) or its histogram (higher dimensions).
- `lookup_components`: seed 000 Figure 19 (appendix C.3), queries and points projected
  on the top two components of the first query model's classifiers.
- `decision_boundary`: seed 000 §3's learned write rule, the counter each label writes
  to, own counter or shared.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.plots.style import method_style  # noqa: E402


def lookup_positions(query_values: np.ndarray | None, positions: np.ndarray, slots: int, data_slots: int,
                     title: str = "first query model: lookup positions") -> Figure:
    """`query_values` (1D queries) draws a 2D histogram; None a histogram of positions.
    `data_slots` < `slots` marks where the extra space begins."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if query_values is not None:
        *_, image = ax.hist2d(query_values, positions, bins=(40, slots), cmap="viridis",
                              range=((query_values.min(), query_values.max()), (-0.5, slots - 0.5)))
        fig.colorbar(image, ax=ax, label="queries")
        ax.set(xlabel="query value", ylabel="position of first lookup (slot)")
        if data_slots < slots:
            ax.axhline(data_slots - 0.5, color="w", linestyle=":", label="extra space above")
    else:
        ax.hist(positions, bins=np.arange(slots + 1) - 0.5, color=method_style("e2e").color)
        ax.set(xlabel="position of first lookup (slot)", ylabel="queries")
        if data_slots < slots:
            ax.axvline(data_slots - 0.5, color="k", linestyle=":", label="extra space right")
    ax.set_title(title, fontsize=10)
    return fig


def lookup_components(query_xy: np.ndarray, query_positions: np.ndarray, point_xy: np.ndarray,
                      point_positions: np.ndarray) -> Figure:
    """Both panels coloured by slot on one colour scale, with its colour bar."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.5), layout="constrained")
    top = max(int(query_positions.max(initial=0)), int(point_positions.max(initial=0)))
    shared = {"cmap": "viridis", "s": 4, "vmin": 0, "vmax": top}
    left.scatter(query_xy[:, 0], query_xy[:, 1], c=query_positions, **shared)
    left.set(title="queries, by first lookup position", xlabel="PC 1", ylabel="PC 2")
    dots = right.scatter(point_xy[:, 0], point_xy[:, 1], c=point_positions, **shared)
    right.set(title="points, by placed position", xlabel="PC 1", ylabel="PC 2")
    fig.colorbar(dots, ax=[left, right], label="slot")
    return fig


def decision_boundary(labels: np.ndarray, write_positions: np.ndarray, own_counter: np.ndarray) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    ax.scatter(labels[own_counter], write_positions[own_counter], s=14, label="own counter")
    ax.scatter(labels[~own_counter], write_positions[~own_counter], s=14, marker="x", label="shared")
    ax.set_xlabel("label (rank - 1: small numbers are heavy hitters)")
    ax.set_ylabel("counter written (majority)")
    ax.legend(fontsize=8)
    return fig


def save(fig: Figure, path: Path, dpi: int = 120) -> Path:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def panel_fronts(frame, x: str, y: str, *, method: str, panel: str, front: str = "pareto",
                 title: str | None = None) -> Figure:
    """One panel per value of `panel`: every configuration as a point in its method's
    style (markers only), the panel's front joined as a staircase (seed 001's per-table
    fronts of time against space)."""
    from pipeline.plots.lines import legend_handles, panel_values
    from pipeline.plots.style import LEGEND, axis_label, method_order, set_scale

    panels = panel_values(frame[panel])
    methods = method_order(frame[method])
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1.8, 3.6 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, value in zip(axes.flat, panels):
        part = frame[frame[panel] == value]
        for name in methods:
            group = part[part[method].astype(str) == name]
            if len(group):
                kwargs = method_style(name).line_kwargs() | {"linestyle": "none"}
                ax.plot(group[x].to_numpy(float), group[y].to_numpy(float), label=name, alpha=0.8, **kwargs)
        best = part[part[front].astype(bool)].sort_values(x)
        if len(best):
            ax.step(best[x].to_numpy(float), best[y].to_numpy(float), where="post", color="k", lw=1, label="front")
        for axis, metric in (("x", x), ("y", y)):
            set_scale(ax, axis, frame[metric])
        ax.set(xlabel=axis_label(x), ylabel=axis_label(y), title=f"{panel} = {value}")
        ax.grid(alpha=0.3)
    front_handle = plt.Line2D([], [], color="k", lw=1, label="front")
    fig.legend(handles=legend_handles(methods, {m: {"linestyle": "none"} for m in methods}) + [front_handle], **LEGEND,
               ncols=min(4, len(methods) + 1))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
