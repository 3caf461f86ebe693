"""Every plot tells the truth about its rows, read from the matplotlib artists.

Rows arrive with their methods in a different, scrambled order in each panel; for every
plot function the test checks, panel by panel, that each line's label, colour and
y-values are those of that method's rows, that each method has one colour in every panel
and plot, that the legend's entry for a method has that colour, and that panels come in
numeric order of their parameter. HTML pages must embed plotly.js (no network to open).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from pipeline.plots import method_style  # noqa: E402
from pipeline.plots.style import is_classic, method_order  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures a plot function made: pyplot's close is held back until the test ends."""
    made: list = []
    monkeypatch.setattr(plt, "close", lambda fig=None: made.append(fig) if fig is not None else None)
    yield made
    monkeypatch.undo()
    for fig in made:
        plt.close(fig)


def _colour(artist) -> str:
    return to_hex(artist.get_color())


def _legend_colours(fig) -> dict[str, str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    colours: dict[str, str] = {}
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colour = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()[0]
            colours[text.get_text()] = to_hex(np.atleast_2d(colour)[0] if not isinstance(colour, str) else colour)
    return colours


def _method_lines(ax, methods: set[str]) -> dict[str, object]:
    lines = {}
    for line in ax.get_lines():
        if line.get_label() in methods:
            assert line.get_label() not in lines, f"{line.get_label()} drawn twice in one panel"
            lines[line.get_label()] = line
    return lines


def check_panels(fig, panels: list[pd.DataFrame], x: str, y: str, x_divisor: float = 1.0) -> dict[str, str]:
    """`panels[i]` is the rows the i-th data panel must show. Returns method -> colour."""
    axes = [ax for ax in fig.axes if ax.get_lines() or ax.collections]
    assert len(axes) >= len(panels)
    legend = _legend_colours(fig)
    colours: dict[str, str] = {}
    for ax, rows in zip(axes, panels):
        methods = set(rows["method"].astype(str))
        lines = _method_lines(ax, methods)
        assert set(lines) == methods, f"panel {ax.get_title()!r}: lines {sorted(lines)} != rows {sorted(methods)}"
        for method, line in lines.items():
            own = rows[rows["method"].astype(str) == method].sort_values(x)
            np.testing.assert_allclose(line.get_xdata(), own[x].to_numpy(float) / x_divisor, rtol=1e-12,
                                       err_msg=f"{method}: x in panel {ax.get_title()!r}")
            np.testing.assert_allclose(line.get_ydata(), own[y].to_numpy(float), rtol=1e-12,
                                       err_msg=f"{method}: y in panel {ax.get_title()!r}")
            colour = _colour(line)
            assert colours.setdefault(method, colour) == colour, f"{method} changes colour across panels"
            assert legend.get(method) == colour, (
                f"panel {ax.get_title()!r}: the line of {method!r} is {colour}, its legend entry "
                f"{legend.get(method)} (legend: {legend})")
    return colours


def _scrambled(frame: pd.DataFrame, by: str, seed: int) -> pd.DataFrame:
    """Rows grouped by `by` in a scrambled order, each group's methods in another order."""
    rng = np.random.default_rng(seed)
    parts = []
    groups = [g for _, g in frame.groupby(by)]
    for i in rng.permutation(len(groups)):
        group = groups[i]
        order = list(rng.permutation(sorted(group["method"].unique())))
        parts.append(group.assign(_o=group["method"].map(order.index)).sort_values(["_o", "bytes" if "bytes" in group
                                                                                        else group.columns[0]]))
    return pd.concat(parts).drop(columns="_o").reset_index(drop=True)


# ---- Lego: ARE against bytes, one panel per skew -----------------------------------

def lego_rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for skew in (0.5, 0.9, 1.1, 1.5):
        for method in ("lego", "countmin", "countsketch", "lego_rule"):
            for bricks in (3, 6, 12, 21):
                rows.append({"stream": f"zipf_{skew}", "skew": skew, "distinct": 1000, "bricks": bricks,
                             "bytes": bricks * 102_400, "method": method, "aae": 1.0,
                             "are": float(rng.uniform(0.001, 3.0))})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lego_panels_match_their_rows_in_every_panel(figures, tmp_path, seed):
    from pipeline.workloads.lego.evaluate import plot_are_vs_bytes

    frame = lego_rows(seed)
    scrambled = _scrambled(frame, "skew", seed)
    plot_are_vs_bytes(scrambled.to_dict("records"), tmp_path)
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_lines()]
    skews = [float(re.findall(r"\d+\.\d+", ax.get_title())[-1]) for ax in axes]
    panels = [frame[frame["skew"] == s] for s in skews]
    unit = axes[0].get_xlabel()
    divisor = 1024.0 ** 2 if "MB" in unit else 1024.0 if "KB" in unit else 1.0
    colours = check_panels(fig, panels, "bytes", "are", divisor)
    assert skews == sorted(skews) == [0.5, 0.9, 1.1, 1.5], f"panels out of skew order: {skews}"
    assert colours["lego"] == method_style("lego").color
    assert "MB" in unit and axes[0].get_yscale() == "log"  # 21 bricks of 100 KB: the axis is in MB
    html = (tmp_path / "are_vs_bytes.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc=", html), "the page loads a script from elsewhere"
    assert len(html) > 1_000_000, "plotly.js is not embedded"


def test_lego_html_traces_follow_the_fixed_styles(tmp_path):
    import json

    from pipeline.workloads.lego.evaluate import plot_are_vs_bytes

    plot_are_vs_bytes(_scrambled(lego_rows(), "skew", 3).to_dict("records"), tmp_path)
    html = (tmp_path / "are_vs_bytes.html").read_text()
    start = html.index("Plotly.newPlot(")
    # the data array is the second argument of newPlot
    payload = html[start:].split(",", 1)[1]
    traces, _ = json.JSONDecoder().raw_decode(payload.strip())
    seen = {}
    for trace in traces:
        name = trace["name"]
        assert trace["line"]["color"] == method_style(name).color
        seen.setdefault(name, 0)
        seen[name] += 1
    assert seen == {m: 4 for m in ("lego", "countmin", "countsketch", "lego_rule")}  # one trace per panel


# ---- E2E NN: accuracy per lookup ---------------------------------------------------

def test_nn_accuracy_per_lookup_matches_its_curves(figures, tmp_path):
    from pipeline.workloads.e2e.nn_workload import _plot

    rng = np.random.default_rng(4)
    curve = np.sort(rng.uniform(0, 1, 4))
    baselines = {name: {"curve": np.sort(rng.uniform(0, 1, 4)), "extra_space": 0}
                 for name in ("lsh_k3", "binary_search", "lsh_k1", "kd_tree")}
    params = SimpleNamespace(distribution="uniform1d", n=16, lookups=4, extra_space=0)
    instances = SimpleNamespace(query_points=rng.uniform(0, 1, (50, 1)))
    evaluation = {"first_positions": rng.integers(0, 16, 50)}
    _plot(tmp_path, curve, baselines, evaluation, instances, params)
    accuracy = figures[0]
    rows = [{"method": "e2e", "lookup": i + 1, "accuracy": v} for i, v in enumerate(curve)]
    rows += [{"method": n, "lookup": i + 1, "accuracy": v} for n, b in baselines.items() for i, v in enumerate(b["curve"])]
    colours = check_panels(accuracy, [pd.DataFrame(rows)], "lookup", "accuracy")
    assert len(set(colours.values())) == len(colours), f"two methods share a colour: {colours}"
    hist = figures[1].axes[0]
    assert hist.collections or hist.images, "Figure 2 (centre) drew nothing"
    assert (tmp_path / "accuracy_per_lookup.png").stat().st_size > 0


# ---- E2E frequency: MAE against memory ---------------------------------------------

def test_freq_front_matches_its_rows(figures, tmp_path):
    from pipeline.workloads.e2e.freq_workload import _plot_front

    rng = np.random.default_rng(5)
    rows = [{"method": "learned", "k": 64, "M": 2, "mae": 0.4}]
    for method in ("countsketch", "countmin", "countmin_1hash", "countmin_learned_delta"):
        for k in rng.permutation([16, 32, 64, 128, 256]):
            rows.append({"method": method, "k": int(k), "M": 2, "mae": float(rng.uniform(0.1, 50))})
    rng.shuffle(rows)
    _plot_front(tmp_path / "front.png", rows, "t")
    (fig,) = figures
    check_panels(fig, [pd.DataFrame(rows)], "k", "mae")
    learned = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "learned"][0]
    assert learned.get_marker() == "*"
    legend_marker = {t.get_text(): h.get_marker() for h, t in zip(fig.legends[0].legend_handles,
                                                                     fig.legends[0].get_texts())}
    assert legend_marker["learned"] == "*", "the legend draws the learned point unlike the plot"


# ---- the run's front, with the classic peers ---------------------------------------

def test_front_draws_each_peer_in_its_style(figures, tmp_path):
    from pipeline.plots import static_front

    rng = np.random.default_rng(6)
    trials = pd.DataFrame({"bytes": rng.uniform(1e3, 1e6, 30), "are": rng.uniform(0.001, 1, 30)})
    trials["pareto"] = False
    trials.loc[trials["are"].idxmin(), "pareto"] = True
    peers = pd.DataFrame([{"method": m, "bytes": b, "are": float(rng.uniform(0.01, 2))}
                          for m in ("countsketch", "countmin") for b in rng.permutation([1e3, 1e4, 1e5, 1e6])])
    objectives = [{"metric": "bytes", "mode": "min"}, {"metric": "are", "mode": "min"}]
    static_front(trials, objectives, tmp_path / "front.png", "t", peers)
    (fig,) = figures
    assert fig.axes[0].get_xlabel() == "memory (KB)"  # up to 1e6 bytes
    colours = check_panels(fig, [peers], "bytes", "are", 1024.0)
    assert colours == {m: method_style(m).color for m in ("countmin", "countsketch")}
    assert fig.axes[0].get_xscale() == "log"


# ---- learned index: per-table fronts -----------------------------------------------

def test_learned_index_fronts_per_table(figures, tmp_path):
    from pipeline.workloads.learned_index.report import fronts, plot_fronts

    rng = np.random.default_rng(7)
    rows = pd.DataFrame([{"model": m, "search": "bbs", "level": "L2", "dist": d,
                          "ns_per_lookup": float(rng.uniform(10, 500)), "space_fraction": float(rng.uniform(1e-4, 0.1)),
                          "reduction_factor": 99.0}
                         for d in ("osm", "lognormal", "amzn") for m in ("rmi", "pgm", "btree", "cubic") * 3])
    per_table = fronts(rows.sample(frac=1, random_state=1))
    plot_fronts(per_table, tmp_path / "fronts.png")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_lines()]
    tables = [ax.get_title().split()[-1] for ax in axes]
    assert tables == sorted(tables)
    legend = _legend_colours(fig)
    for ax, table in zip(axes, tables):
        part = per_table[per_table["dist"] == table]
        for line in ax.get_lines():
            if line.get_label() in ("rmi", "pgm", "btree", "cubic"):
                own = part[part["model"] == line.get_label()]
                assert sorted(line.get_ydata()) == sorted(own["ns_per_lookup"])
                assert _colour(line) == legend[line.get_label()] == method_style(line.get_label()).color
        step = [ln for ln in ax.get_lines() if ln.get_label() == "front"][0]
        best = part[part["pareto"]].sort_values("space_fraction")
        np.testing.assert_allclose(step.get_ydata(), best["ns_per_lookup"])


# ---- the style itself ----------------------------------------------------------------

def test_styles_are_fixed_and_tell_learned_from_classic():
    assert method_style("lego") == method_style("lego")
    assert method_style("lego").linestyle == "-" and method_style("countmin").linestyle == "--"
    for name in ("countmin", "countsketch", "binary_search", "lsh_k3", "btree_f16", "numpy.searchsorted",
                 "countmin M=2", "packed_permutation+pgm"):
        assert is_classic(name), name
    for name in ("lego", "e2e", "learned", "rmi", "ms", "lcs", "pgm"):
        assert not is_classic(name), name
    lsh = [method_style(f"lsh_k{k}").color for k in range(1, 9)]
    assert len(set(lsh)) == 8, "the LSH family's members must be told apart"
    assert method_order(["countmin", "lego", "binary_search", "e2e"]) == ["e2e", "lego", "binary_search", "countmin"]


def test_figures_draw_their_data(figures, tmp_path):
    from pipeline.plots import figures as pictures

    rng = np.random.default_rng(8)
    fig = pictures.lookup_components(rng.normal(size=(40, 2)), rng.integers(0, 8, 40), rng.normal(size=(30, 2)),
                                     rng.integers(0, 8, 30))
    left, right = fig.axes[:2]
    assert left.collections[0].get_offsets().shape == (40, 2) and right.collections[0].get_offsets().shape == (30, 2)
    assert left.collections[0].get_clim() == right.collections[0].get_clim(), "panels on different colour scales"
    labels = np.arange(20)
    own = labels < 5
    fig = pictures.decision_boundary(labels, rng.integers(0, 10, 20), own)
    offsets = [c.get_offsets().shape[0] for c in fig.axes[0].collections]
    assert offsets == [5, 15]


def test_front_keeps_peers_at_zero_space_visible(figures, tmp_path):
    """Plain searches take no space: a log axis would drop them, so the axis is symlog."""
    from pipeline.plots import static_front

    trials = pd.DataFrame({"ns_per_lookup": [40.0, 60.0, 90.0], "space_fraction": [0.5, 0.01, 0.0007],
                           "pareto": [True, True, True]})
    peers = pd.DataFrame([{"method": "numpy.searchsorted", "ns_per_lookup": 100.0, "space_fraction": 0.0},
                          {"method": "bbs", "ns_per_lookup": 80.0, "space_fraction": 0.0}])
    objectives = [{"metric": "ns_per_lookup", "mode": "min"}, {"metric": "space_fraction", "mode": "min"}]
    static_front(trials, objectives, tmp_path / "front.png", "t", peers)
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylabel() == "space (fraction of the table)"
    lo, hi = ax.get_ylim()
    assert lo <= 0.0 <= hi, "the peers at zero space are off the axis"
    check_panels(figures[0], [peers], "ns_per_lookup", "space_fraction")


@pytest.mark.parametrize("methods", [
    # the methods each workload draws in one plot
    ("lego", "lego_rule", "lego_neural", "dlego", "ms", "lcs", "countmin", "countsketch", "dcms"),
    ("learned", "countmin", "countmin_learned_delta", "countmin_learned_readout", "countmin_1hash", "countsketch"),
    ("countmin M=1", "countmin M=2", "countmin M=4", "learned"),
    ("e2e", "binary_search", "interpolation_search", "treap", "bucketing"),
    ("e2e", *(f"lsh_k{k}" for k in range(1, 7)), "lsh_best"),
    ("bbs", "bfs", "kbfs_k6", "bfe", "bfs batched G=64", "numpy.searchsorted"),
    ("rmi", "sy_rmi", "pgm", "pgm_bicriteria", "radix_spline", "linear", "quadratic", "cubic", "ko", "btree"),
    ("btree_f64", "permutation+pgm", "sorted_copy+pgm", "packed_permutation+pgm"),
    ("countmin_d3", "count_sketch_d3"),
])
def test_methods_drawn_together_look_different(methods):
    looks = {m: (method_style(m).color, method_style(m).marker) for m in methods}
    colours = [c for c, _ in looks.values()]
    assert len(set(looks.values())) == len(methods), f"two methods drawn alike: {looks}"
    assert len(set(colours)) == len(colours) or "countmin M=1" in methods or "lsh_k1" in methods, looks
