"""Every plot the project writes: one look (`style`), lines per method in panels
(`lines`), run fronts (`fronts`) and the seeds' diagnostic pictures (`figures`).

Imports nothing of the pipeline but itself, and neither Ray nor MLflow: workloads draw
through it. Every HTML page embeds plotly.js, so it opens without a network.
"""

from pipeline.plots.fronts import front_figure, interactive_front, static_front
from pipeline.plots.lines import line_panels, lines_html, write_line_panels
from pipeline.plots.style import axis_label, method_order, method_style

__all__ = ["axis_label", "front_figure", "interactive_front", "line_panels", "lines_html", "method_order",
           "method_style", "static_front", "write_line_panels"]
