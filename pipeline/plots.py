"""Front plots: a static PNG (matplotlib) and an interactive HTML page (plotly).

Two objectives: one scatter of every finished trial, the front highlighted and joined
as a staircase, reference baselines (CountMin, binary search, ...) drawn beside it.
Three or more: pairwise panels, the front highlighted in each.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _log_scale(values: pd.Series) -> bool:
    values = values.dropna()
    return bool(len(values) and (values > 0).all() and values.max() / max(values.min(), 1e-300) > 100)


def static_front(trials: pd.DataFrame, objectives: list[dict], path: Path, title: str,
                 baselines: pd.DataFrame | None = None) -> Path:
    metrics = [o["metric"] for o in objectives]
    pairs = list(combinations(metrics, 2))
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.5 * rows), squeeze=False)
    front = trials[trials["pareto"]]
    for ax, (x, y) in zip(axes.flat, pairs):
        ax.scatter(trials[x], trials[y], s=18, c="0.7", label="trials")
        ax.scatter(front[x], front[y], s=36, c="tab:red", label="Pareto front", zorder=3)
        if len(metrics) == 2 and len(front) > 1:
            ordered = front.sort_values(x)
            ax.step(ordered[x], ordered[y], where="post", c="tab:red", lw=1)
        if baselines is not None and len(baselines) and {x, y} <= set(baselines.columns):
            for i, (method, group) in enumerate(baselines.groupby("method")):
                group = group.sort_values(x)
                ax.plot(group[x], group[y], marker="os^vD"[i % 5], ls="--", lw=1, label=method)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        for axis, metric in (("x", x), ("y", y)):
            both = pd.concat([trials[metric], baselines[metric]]) if baselines is not None and metric in getattr(baselines, "columns", []) else trials[metric]
            if _log_scale(both):
                getattr(ax, f"set_{axis}scale")("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def interactive_front(trials: pd.DataFrame, objectives: list[dict], path: Path, title: str,
                      baselines: pd.DataFrame | None = None) -> Path:
    import plotly.express as px
    import plotly.graph_objects as go

    metrics = [o["metric"] for o in objectives]
    frame = trials.copy()
    frame["set"] = frame["pareto"].map({True: "Pareto front", False: "trial"})
    hover = [c for c in frame.columns if c.startswith("config/")] + ["trial_id"]
    if len(metrics) == 2:
        fig = px.scatter(frame, x=metrics[0], y=metrics[1], color="set", hover_data=hover, title=title,
                         color_discrete_map={"Pareto front": "crimson", "trial": "lightgray"})
        if baselines is not None and len(baselines) and set(metrics) <= set(baselines.columns):
            for method, group in baselines.groupby("method"):
                group = group.sort_values(metrics[0])
                fig.add_trace(go.Scatter(x=group[metrics[0]], y=group[metrics[1]], mode="lines+markers", name=method,
                                         line={"dash": "dash"}))
        for axis, metric in (("xaxis", metrics[0]), ("yaxis", metrics[1])):
            if _log_scale(frame[metric]):
                fig.update_layout(**{axis: {"type": "log"}})
    else:
        fig = px.scatter_matrix(frame, dimensions=metrics, color="set", hover_data=hover, title=title,
                                color_discrete_map={"Pareto front": "crimson", "trial": "lightgray"})
    # the page must render offline (clusters without internet, the browser test)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
