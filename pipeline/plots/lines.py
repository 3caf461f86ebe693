"""Lines per method, one panel per value of a parameter: the shape of most workload plots
(Lego ARE against memory per skew, NN accuracy per lookup, frequency MAE against memory).

`line_panels` builds the matplotlib figure (tests read its artists), `lines_html` the
same data as a self-contained plotly page; `write_line_panels` writes both. Panels come
in numeric order of their parameter, each method keeps its style (`style.method_style`)
in every panel, and one legend, drawn from those styles, serves the whole figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pipeline.plots.style import LEGEND, axis_label, axis_scale, bytes_unit, method_order, method_style  # noqa: E402


def panel_values(column: pd.Series) -> list:
    """The panels' parameter values in numeric order (text values: in natural order)."""
    values = list(dict.fromkeys(column.tolist()))
    numeric = pd.to_numeric(pd.Series(values), errors="coerce")
    if numeric.notna().all():
        return [v for _, v in sorted(zip(numeric, values))]
    return sorted(values, key=str)


def _x_scaling(frame: pd.DataFrame, x: str) -> tuple[float, str]:
    if x == "bytes" or x.endswith("_bytes"):
        divisor, unit = bytes_unit(float(frame[x].max()))
        return divisor, axis_label(x, unit)
    return 1.0, axis_label(x)


def _scale(choice: str | None, values) -> str:
    if choice is not None:
        return choice
    return axis_scale(values)[0]


def legend_handles(methods: list[str], highlight: dict[str, dict] | None = None) -> list[Line2D]:
    """Legend entries drawn like the lines: the method's style and its highlight."""
    return [Line2D([], [], label=m, **(method_style(m).line_kwargs() | (highlight or {}).get(m, {})))
            for m in methods]


def line_panels(frame: pd.DataFrame, x: str, y: str, *, method: str = "method", panel: str | None = None,
                panel_title: str = "{name} = {value}", title: str | None = None, x_scale: str | None = None,
                y_scale: str | None = None, x_base: float = 10, ylim: tuple[float, float] | None = None,
                highlight: dict[str, dict] | None = None) -> Figure:
    """One panel per value of `panel` (or one panel), one line per method.

    x_scale / y_scale: "log", "linear" or None (log where the data spans two decades).
    highlight: extra matplotlib keywords per method (e.g. a bigger marker for a single
    learned point)."""
    frame = frame.copy()
    divisor, x_label = _x_scaling(frame, x)
    frame["_x"] = frame[x].astype(float) / divisor
    panels = panel_values(frame[panel]) if panel else [None]
    methods = method_order(frame[method])
    cols = len(panels)
    fig, axes = plt.subplots(1, cols, figsize=(4.2 * cols + 1.8, 3.8), squeeze=False, sharey=True,
                             layout="constrained")
    xs, ys = frame["_x"], frame[y].astype(float)
    for ax, value in zip(axes[0], panels):
        part = frame if panel is None else frame[frame[panel] == value]
        for rank, name in enumerate(methods):
            group = part[part[method].astype(str) == name].sort_values("_x")
            if group.empty:
                continue
            # the legend's first methods (the learned ones) on top where lines overlap
            kwargs = method_style(name).line_kwargs() | {"zorder": 2 + (len(methods) - rank) / len(methods)}
            kwargs |= (highlight or {}).get(name, {})
            ax.plot(group["_x"].to_numpy(), group[y].astype(float).to_numpy(), label=name, **kwargs)
        for axis, choice, values in (("x", x_scale, xs), ("y", y_scale, ys)):
            scale = _scale(choice, values)
            options = axis_scale(values)[1] if scale == "symlog" else {}
            if scale == "log" and axis == "x":
                options = {"base": x_base}
            getattr(ax, f"set_{axis}scale")(scale, **options)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xlabel(x_label)
        if value is not None:
            ax.set_title(panel_title.format(name=panel, value=value), fontsize=10)
        ax.grid(alpha=0.3, which="both" if _scale(y_scale, ys) == "log" else "major")
    axes[0][0].set_ylabel(axis_label(y))
    shown = [m for m in methods if (frame[method].astype(str) == m).any()]
    fig.legend(handles=legend_handles(shown, highlight), **LEGEND, ncols=min(4, len(shown)))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def lines_html(frame: pd.DataFrame, x: str, y: str, path: Path, *, method: str = "method",
               panel: str | None = None, title: str | None = None, x_scale: str | None = None,
               y_scale: str | None = None) -> Path:
    """The same lines as a self-contained plotly page (plotly.js embedded: opens offline)."""
    import plotly.express as px

    frame = frame.copy()
    divisor, x_label = _x_scaling(frame, x)
    frame[x_label] = frame[x].astype(float) / divisor
    frame[method] = frame[method].astype(str)
    methods = method_order(frame[method])
    styles = {m: method_style(m) for m in methods}
    orders = {method: methods}
    if panel:
        orders[panel] = panel_values(frame[panel])
    figure = px.line(
        frame.sort_values(x_label), x=x_label, y=y, color=method, facet_col=panel, markers=True,
        line_dash=method, symbol=method, category_orders=orders, title=title,
        color_discrete_map={m: s.color for m, s in styles.items()},
        line_dash_map={m: "dash" if s.linestyle == "--" else "solid" for m, s in styles.items()},
        symbol_map={m: _PLOTLY_SYMBOLS.get(s.marker, "circle") for m, s in styles.items()},
        labels={y: axis_label(y)},
    )
    figure.data = figure.data[::-1]  # the learned methods, first in the legend, drawn last (on top)
    figure.update_layout(legend={"traceorder": "reversed"})
    if _scale(x_scale, frame[x_label]) == "log":
        figure.update_xaxes(type="log")
    if _scale(y_scale, frame[y].astype(float)) == "log":
        figure.update_yaxes(type="log")
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path


_PLOTLY_SYMBOLS = {"o": "circle", "s": "square", "^": "triangle-up", "v": "triangle-down", "<": "triangle-left",
                   ">": "triangle-right", "D": "diamond", "P": "cross", "X": "x", "h": "hexagon", "p": "pentagon",
                   "*": "star"}


def write_line_panels(frame: pd.DataFrame, x: str, y: str, directory: Path, stem: str, *, html: bool = True,
                      **options) -> list[Path]:
    """`stem`.png (and `stem`.html): the figure of `line_panels` and its plotly page."""
    directory = Path(directory)
    out = [save(line_panels(frame, x, y, **options), directory / f"{stem}.png")]
    if html:
        keep = {k: options[k] for k in ("method", "panel", "title", "x_scale", "y_scale") if k in options}
        out.append(lines_html(frame, x, y, directory / f"{stem}.html", **keep))
    return out


__all__ = ["line_panels", "lines_html", "write_line_panels", "panel_values", "legend_handles", "save"]
