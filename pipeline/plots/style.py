"""One look for every plot: a fixed colour, marker and line style per method name, axis
labels with units, and the rule for log scales.

A method keeps its style in every panel and every plot of a run, whatever order its rows
arrive in, so a legend drawn once is true for all panels. Learned structures (Lego, E2E,
RMI, ...) are drawn solid with filled warm-coloured markers; classic peers (CountMin,
binary search, LSH, B+-tree, ...) dashed in cool colours. Names not listed below get a
style from a hash of the name (stable across processes: trials plot in their own);
numbered families (`lsh_k1`, `lsh_k2`, `btree_f16`, `countmin M=2`) share their family's
colour map, darker for larger numbers.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no screen on workers or CI
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str
    learned: bool

    def line_kwargs(self) -> dict:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle,
                "markerfacecolor": self.color if self.learned else "white", "markeredgecolor": self.color}


#: names drawn as classic peers; a name is classic if it equals one of these or starts
#: with one followed by "_", " ", "+" or a digit
CLASSIC = ("countmin", "countsketch", "count_sketch", "cu_countmin", "cms", "conservative", "binary_search", "interpolation_search", "treap",
           "kd_tree", "lsh", "bucketing", "bbs", "bfs", "kbfs", "bfe", "numpy.searchsorted", "btree", "bplus",
           "permutation", "sorted_copy", "packed_permutation", "brute_force")
#: fixed colours of the methods every reader compares (tab10, in the seeds' usual roles)
FIXED = {
    "lego": "#d62728", "e2e": "#d62728", "learned": "#d62728", "rmi": "#d62728",
    "lego_rule": "#ff7f0e", "lego_neural": "#e377c2", "dlego": "#8c564b", "ms": "#9467bd", "lcs": "#bcbd22",
    "sy_rmi": "#ff7f0e", "pgm": "#9467bd", "pgm_bicriteria": "#e377c2", "radix_spline": "#8c564b",
    "linear": "#bcbd22", "quadratic": "#ff9896", "cubic": "#c5b0d5", "ko": "#f7b6d2",
    "countmin": "#1f77b4", "countsketch": "#2ca02c", "countmin_d3": "#1f77b4", "count_sketch_d3": "#2ca02c",
    "cu_countmin": "#17becf", "dcms": "#17becf", "conservative_countmin": "#17becf",
    "binary_search": "#1f77b4", "interpolation_search": "#2ca02c", "treap": "#17becf", "kd_tree": "#7f7f7f",
    "bucketing": "#393b79", "numpy.searchsorted": "#7f7f7f", "bbs": "#1f77b4", "bfs": "#2ca02c",
    "bfe": "#17becf", "sorted_copy": "#7f7f7f", "brute_force": "#000000",
    "permutation": "#6b6ecf", "packed_permutation": "#637939",
    # the frequency-estimation peers, drawn together in one plot: each its own colour
    "countmin_learned_delta": "#17becf", "countmin_learned_readout": "#393b79", "countmin_1hash": "#7f7f7f",
    "lsh_best": "#637939",
}
#: numbered families with one colour (their members differ by marker); the others get shades
FAMILIES = {
    "kbfs": "#8c6d31", "bfs batched": "#6b6ecf",
}
_LEARNED_PALETTE = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#ff9896", "#c49c94")
_CLASSIC_PALETTE = ("#1f77b4", "#2ca02c", "#17becf", "#7f7f7f", "#393b79", "#637939", "#6b6ecf", "#8c6d31")
_LEARNED_MARKERS = ("o", "D", "P", "h", "p")
_CLASSIC_MARKERS = ("s", "^", "v", "<", ">", "X")
_NUMBERED = re.compile(r"^(.*?)[_ ]?(?:[A-Za-z]+=?)?(\d+)$")


def _stable(name: str) -> int:
    return zlib.crc32(name.encode())


def is_classic(name: str) -> bool:
    lowered = name.lower()
    return any(lowered == c or re.match(rf"^{re.escape(c)}[_ +\d]", lowered) for c in CLASSIC)


def method_style(name: str) -> Style:
    """The style of method `name`, the same in every call."""
    classic = is_classic(name)
    markers = _CLASSIC_MARKERS if classic else _LEARNED_MARKERS
    linestyle = "--" if classic else "-"
    base = name.split("+")[0]  # "permutation+pgm": the peer, whatever model it is paired with
    if base in FIXED:
        return Style(FIXED[base], markers[0] if not classic else markers[_stable(name) % len(markers)],
                     linestyle, not classic)
    numbered = _NUMBERED.match(name)
    if numbered and numbered.group(1):
        # a family: one colour map, shade by the number (log2), marker by the family
        family, number = numbered.group(1), int(numbered.group(2))
        if family in FAMILIES:
            return Style(FAMILIES[family], markers[number % len(markers)], linestyle, not classic)
        shades = colormaps["Blues" if classic else "Reds"]
        step = (number - 1) / 7 if number <= 8 else math.log2(number) / 10
        level = 0.35 + 0.6 * min(1.0, max(0.0, step))
        return Style(to_hex(shades(level)), markers[_stable(family) % len(markers)], linestyle, not classic)
    palette = _CLASSIC_PALETTE if classic else _LEARNED_PALETTE
    code = _stable(name)
    return Style(palette[code % len(palette)], markers[(code // len(palette)) % len(markers)], linestyle, not classic)


def method_order(names) -> list[str]:
    """Learned methods first, then classic peers, each alphabetical: a legend's order."""
    unique = dict.fromkeys(str(n) for n in names)
    return sorted(unique, key=lambda n: (is_classic(n), n))


#: axis labels with units; `bytes` is rescaled to KB or MB (1024-based, as the docs quote memory)
LABELS = {
    "are": "ARE (average relative error)", "aae": "AAE (average absolute error)", "mae": "MAE",
    "ns_per_lookup": "query time (ns/lookup)", "ns_per_access": "access time (ns)",
    "space_fraction": "space (fraction of the table)", "bits_per_element": "space (bits/element)",
    "accuracy": "NN accuracy", "lookups": "lookups M", "lookup": "lookup", "extra_space": "extra space T (slots)",
    "k": "memory k (counters)", "reduction_factor": "reduction factor (%)", "train_seconds": "training time (s)",
    "width": "width (counters)", "bricks": "memory bricks",
}


#: one legend per figure, below the panels: it never covers a title or a line
LEGEND = {"loc": "outside lower center", "fontsize": 8, "frameon": False}


def bytes_unit(max_bytes: float) -> tuple[float, str]:
    """(divisor, unit) for memory axes: KB below 1 MB, MB above."""
    return (1024.0 ** 2, "MB") if max_bytes >= 1024.0 ** 2 else (1024.0, "KB")


def axis_label(metric: str, unit: str | None = None) -> str:
    if metric == "bytes" or metric.endswith("_bytes"):
        return f"memory ({unit or 'bytes'})"
    return LABELS.get(metric, metric)


def spans_decades(values, decades: float = 2.0) -> bool:
    """Log scale when every value is positive and they span `decades` powers of ten."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return bool(arr.size and (arr > 0).all() and arr.max() / max(arr.min(), 1e-300) >= 10.0 ** decades)


def axis_scale(values, decades: float = 2.0) -> tuple[str, dict]:
    """(matplotlib scale, its keywords): log where the positive values span `decades`
    powers of ten; symlog, linear below the smallest positive value, where zeros sit
    beside them (a peer with no extra space on a space axis); else linear."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    positive = arr[arr > 0]
    if not positive.size or (arr < 0).any() or positive.max() / positive.min() < 10.0 ** decades:
        return "linear", {}
    if (arr == 0).any():
        return "symlog", {"linthresh": float(positive.min())}
    return "log", {}


def set_scale(ax, axis: str, values) -> str:
    scale, options = axis_scale(values)
    getattr(ax, f"set_{axis}scale")(scale, **options)
    return scale
