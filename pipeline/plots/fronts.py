"""Front plots of a run: a static PNG (matplotlib) and an interactive HTML page (plotly).

Two objectives: one scatter of every finished trial, the front highlighted and joined
as a staircase, the classic peers (CountMin, binary search, ...) drawn beside it in their
fixed styles (`style.method_style`). Three or more: pairwise panels, the front
highlighted in each. Axes carry units (`style.axis_label`) and go log where the values
span two decades.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.plots.lines import _PLOTLY_SYMBOLS, legend_handles  # noqa: E402
from pipeline.plots.style import LEGEND, axis_label, bytes_unit, method_order, method_style, set_scale, spans_decades  # noqa: E402

FRONT_COLOR = "#d62728"  # the learned front: the colour of the learned methods
TRIAL_COLOR = "#b0b0b0"


def _peers(baselines: pd.DataFrame | None, x: str, y: str) -> pd.DataFrame | None:
    if baselines is None or not len(baselines) or not {x, y, "method"} <= set(baselines.columns):
        return None
    return baselines


def _in_units(trials: pd.DataFrame, baselines: pd.DataFrame | None, metrics: list[str]):
    """Memory metrics in KB or MB (trials and peers alike), and every axis label."""
    labels = {m: axis_label(m) for m in metrics}
    trials = trials.copy()
    baselines = None if baselines is None else baselines.copy()
    for metric in metrics:
        if metric == "bytes" or metric.endswith("_bytes"):
            values = trials[metric] if baselines is None or metric not in baselines else pd.concat(
                [trials[metric], baselines[metric]])
            divisor, unit = bytes_unit(float(values.max()))
            trials[metric] = trials[metric] / divisor
            if baselines is not None and metric in baselines:
                baselines[metric] = baselines[metric] / divisor
            labels[metric] = axis_label(metric, unit)
    return trials, baselines, labels


def front_figure(trials: pd.DataFrame, objectives: list[dict], title: str,
                 baselines: pd.DataFrame | None = None) -> Figure:
    metrics = [o["metric"] for o in objectives]
    pairs = list(combinations(metrics, 2))
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols + 2.0, 4.5 * rows), squeeze=False,
                             layout="constrained")
    trials, baselines, labels = _in_units(trials, baselines, metrics)
    front = trials[trials["pareto"]]
    methods: list[str] = []
    for ax, (x, y) in zip(axes.flat, pairs):
        ax.scatter(trials[x], trials[y], s=18, c=TRIAL_COLOR, label="trials")
        ax.scatter(front[x], front[y], s=40, c=FRONT_COLOR, label="Pareto front", zorder=3)
        if len(metrics) == 2 and len(front) > 1:
            ordered = front.sort_values(x)
            ax.step(ordered[x], ordered[y], where="post", c=FRONT_COLOR, lw=1.2, zorder=3)
        peers = _peers(baselines, x, y)
        if peers is not None:
            for method in method_order(peers["method"]):
                group = peers[peers["method"].astype(str) == method].sort_values(x)
                ax.plot(group[x].to_numpy(float), group[y].to_numpy(float), label=method, lw=1,
                        **method_style(method).line_kwargs())
                if method not in methods:
                    methods.append(method)
        ax.set_xlabel(labels[x])
        ax.set_ylabel(labels[y])
        for axis, metric in (("x", x), ("y", y)):
            set_scale(ax, axis, trials[metric] if peers is None else pd.concat([trials[metric], peers[metric]]))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], ls="", marker="o", color=TRIAL_COLOR, label="trials"),
               plt.Line2D([], [], ls="-", marker="o", color=FRONT_COLOR, label="Pareto front")]
    fig.legend(handles=handles + legend_handles(methods), **LEGEND,
               ncols=min(4, len(methods) + 2))
    fig.suptitle(title, fontsize=11)
    return fig


def static_front(trials: pd.DataFrame, objectives: list[dict], path: Path, title: str,
                 baselines: pd.DataFrame | None = None) -> Path:
    fig = front_figure(trials, objectives, title, baselines)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def interactive_front(trials: pd.DataFrame, objectives: list[dict], path: Path, title: str,
                      baselines: pd.DataFrame | None = None) -> Path:
    import plotly.express as px
    import plotly.graph_objects as go

    metrics = [o["metric"] for o in objectives]
    frame, baselines, labels = _in_units(trials, baselines, metrics)
    frame["set"] = frame["pareto"].map({True: "Pareto front", False: "trial"})
    hover = [c for c in frame.columns if c.startswith("config/")] + ["trial_id"]
    colours = {"Pareto front": FRONT_COLOR, "trial": TRIAL_COLOR}
    if len(metrics) == 2:
        fig = px.scatter(frame, x=metrics[0], y=metrics[1], color="set", hover_data=hover, title=title,
                         color_discrete_map=colours, labels=labels)
        peers = _peers(baselines, *metrics)
        if peers is not None:
            for method in method_order(peers["method"]):
                group = peers[peers["method"].astype(str) == method].sort_values(metrics[0])
                style = method_style(method)
                fig.add_trace(go.Scatter(
                    x=group[metrics[0]], y=group[metrics[1]], mode="lines+markers", name=method,
                    line={"dash": "dash" if style.linestyle == "--" else "solid", "color": style.color},
                    marker={"symbol": _PLOTLY_SYMBOLS.get(style.marker, "circle"), "color": style.color}))
        for axis, metric in (("xaxis", metrics[0]), ("yaxis", metrics[1])):
            values = frame[metric] if peers is None else pd.concat([frame[metric], peers[metric]])
            if spans_decades(values):
                fig.update_layout(**{axis: {"type": "log"}})
    else:
        fig = px.scatter_matrix(frame, dimensions=metrics, color="set", hover_data=hover, title=title,
                                color_discrete_map=colours, labels=labels)
    # the page must render offline (clusters without internet, the browser test)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
