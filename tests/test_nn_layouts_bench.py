"""The `nn_layouts` bench: hand-made sort layouts on the hypersphere, fitted on one
sample and scored on another, beside LSH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.bench import nn_layouts
from pipeline.workloads.e2e import nn_data


def instances(count, n=8, dim=6, seed=0):
    return nn_data.sample("hypersphere", np.random.default_rng(seed), count, n, dim=dim, rho=0.8)


def curve(kind, lookups, n=8, dim=6, bins=20):
    inst = instances(6000, n, dim)
    direction = np.eye(dim)[:2]
    return nn_layouts.layout_curve(inst.points, inst.query_points, inst.nn_index, 4000, lookups, bins, kind,
                                   direction)


@pytest.mark.parametrize("kind", ["projection_sort", "angle_sort"])
def test_reading_every_position_finds_every_nearest_neighbour(kind):
    got = curve(kind, lookups=8)
    assert got[-1] == pytest.approx(1.0)
    assert np.all(np.diff(got) >= 0)  # best-so-far: never decreases


def test_a_layout_beats_reading_blind_and_the_angle_beats_one_projection():
    blind = 2 / 8  # two positions of eight, read without looking at the query
    projection, angle = curve("projection_sort", 2), curve("angle_sort", 2)
    assert projection[-1] > blind + 0.1
    assert angle[-1] > projection[-1]


def test_reads_come_from_the_fit_sample_only():
    inst = instances(3000)
    scored = nn_layouts.layout_curve(inst.points, inst.query_points, inst.nn_index, 2000, 2, 10,
                                     "projection_sort", np.eye(6)[:2])
    # the same test instances, but fit on nearest neighbours shuffled among the fit instances:
    # the reads lose their signal, so they were taken from the fit sample
    shuffled = inst.nn_index.copy()
    shuffled[:2000] = np.random.default_rng(1).permutation(shuffled[:2000])  # a fit sample with no signal
    blind = nn_layouts.layout_curve(inst.points, inst.query_points, shuffled, 2000, 2, 10,
                                    "projection_sort", np.eye(6)[:2])
    assert blind[-1] < scored[-1] - 0.05


def test_bench_rows_and_bad_input(tmp_path):
    rows = nn_layouts.main(["--lookups", "2", "--fit", "2000"])
    methods = {row["method"] for row in rows}
    assert {"projection_sort", "angle_sort", "lsh_k1"} <= methods
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["lookups"] == 2 for row in rows)
    with pytest.raises(SystemExit, match="nn_layouts needs 'hypersphere'"):
        nn_layouts.main(["--task", str(Path(__file__).resolve().parents[1] / "tasks" / "nn_uniform_1d.yaml")])
    with pytest.raises(SystemExit, match="comma-separated integers"):
        nn_layouts.main(["--lookups", "two"])
    with pytest.raises(ValueError, match="unknown layout"):
        nn_layouts.layout_curve(*curve_inputs(), 10, 2, 4, "hilbert", np.eye(6)[:2])


def curve_inputs():
    inst = instances(20)
    return inst.points, inst.query_points, inst.nn_index


def test_the_bench_runner_gives_one_line_errors(tmp_path, capsys):
    from pipeline.bench.__main__ import main as bench

    assert bench(["nn_layouts", "--task", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.yaml'}: task file not found"
    assert bench(["no_such_bench"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    out = tmp_path / "rows.json"
    assert bench(["nn_layouts", "--lookups", "1", "--fit", "500", "--json", str(out)]) == 0
    assert '"bench": "nn_layouts"' in out.read_text()
