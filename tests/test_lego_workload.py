"""Lego workloads `lego` and `lego_eval`: params and bad inputs (fast), task files
(milliseconds), and smoke runs (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import load_task
from pipeline.workloads.base import LocalReporter
from pipeline.workloads.lego.model import BrickGeometry, LegoSketch, save_brick
from pipeline.workloads.lego.workload import EVAL_WORKLOAD, WORKLOAD

GEOMETRY = BrickGeometry(depth=3, slots=1024, basis_size=24)  # a 12 KB brick


@pytest.fixture
def brick(tmp_path):
    return save_brick(LegoSketch(GEOMETRY), tmp_path / "brick.pt")


def _eval_params(**overrides):
    values = {"eval_distinct": 3000, "eval_skews": [1.1], "budgets_kb": [12, 48]}
    values.update(overrides)
    params = EVAL_WORKLOAD.make_params(values)
    EVAL_WORKLOAD.validate(params)
    return params


@pytest.mark.parametrize("bad", [
    {"methods": ["lego", "bloom"]}, {"methods": []}, {"eval_brick_counts": [0, 3]}, {"eval_skews": []},
    {"distinct_min": 5000, "distinct_max": 100}, {"skew_min": 1.5, "skew_max": 0.5},
    {"basis_init": "zeros"}, {"steps": 0}, {"slots": 5}, {"unknown_key": 1}, {"value_floor": 0}, {"value_floor": 1},
    {"item_estimate": "hll"},
])
def test_lego_params_reject_bad_values(bad):
    with pytest.raises(ValueError):
        WORKLOAD.make_params(bad)


def test_lego_value_floor_reaches_the_model():
    from pipeline.workloads.lego.workload import _build

    params = WORKLOAD.make_params({"depth": 4, "slots": 64, "basis_size": 200, "basis_init": "power12",
                                   "value_floor": 1e-5})
    model = _build(params)
    assert model.value_range == (1e-5, 1.0)
    basis = model.basis.detach()
    assert basis.min() >= 1e-5 and (basis < 1e-3).any()  # below the old 0.001 floor
    with torch.no_grad():
        model.basis.fill_(1e-7)
    model.clamp_basis()
    assert torch.all(model.basis == torch.tensor(1e-5))


def test_geometry_scan_rows():
    from pipeline.workloads.lego.geometry_scan import scan

    rows = scan([2, 4], [16], ["power6"], [1e-3, 1e-5], [0, 1], [1.1], [1, 2], brick_bytes=4096, distinct=1500)
    assert len(rows) == 2 * 2 * 2  # (depth, floor) x brick counts
    assert {r["slots"] for r in rows} == {512, 256}  # equal bytes per brick: slots = bytes / (4 x rows)
    for r in rows:
        assert math.isfinite(r["ratio_mean"]) and 0 < r["ratio_mean"] <= r["ratio_worst"]


def test_lego_validate_dlego_needs_two_bricks():
    with pytest.raises(ValueError, match="dlego"):
        WORKLOAD.validate(WORKLOAD.make_params({"methods": ["lego", "dlego"], "eval_brick_counts": [1, 4]}))


def test_lego_eval_bad_inputs(brick, tmp_path):
    with pytest.raises(ValueError, match="smaller than one brick"):
        _eval_params(checkpoint=str(brick), budgets_kb=[5])
    (tmp_path / "junk.pt").write_text("garbage")
    with pytest.raises(ValueError, match="unreadable"):
        _eval_params(checkpoint=str(tmp_path / "junk.pt"))
    with pytest.raises(ValueError, match="no such file"):
        _eval_params(checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="slots=1024"):
        _eval_params(checkpoint=str(brick), slots=5120)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt: no items"):
        _eval_params(checkpoint=str(brick), stream_file=str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError):
        EVAL_WORKLOAD.make_params({"budgets_kb": []})


@pytest.mark.slow
def test_lego_eval_on_a_stream_file(brick, tmp_path):
    stream = np.random.default_rng(0).zipf(1.3, size=20000) % 5000
    np.save(tmp_path / "stream.npy", stream)
    params = _eval_params(checkpoint=str(brick), stream_file=str(tmp_path / "stream.npy"))
    report = LocalReporter(artifact_dir=tmp_path / "art")
    metrics = EVAL_WORKLOAD.run(params, report)
    assert set(metrics) <= set(EVAL_WORKLOAD.metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["bytes"] == 48 * 1024 and len(report.history) == 2
    assert {"lego_eval.csv", "are_vs_bytes.png", "are_vs_bytes.html"} <= {p.name for p in (tmp_path / "art").iterdir()}


@pytest.mark.parametrize("task", ["tasks/lego.yaml", "tasks/lego_eval.yaml"])
@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_task_files_load(task, profile):
    resolved = load_task(task, profile=profile)
    assert resolved.params is not None


@pytest.mark.slow
def test_lego_smoke_run_is_finite_and_repeatable(tmp_path):
    params = WORKLOAD.make_params(WORKLOAD.smoke_params)
    first = LocalReporter(artifact_dir=tmp_path / "a")
    metrics = WORKLOAD.run(params, first)
    assert set(metrics) <= set(WORKLOAD.metrics) and {"are", "bytes"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert first.history and (tmp_path / "a" / "brick.pt").is_file()
    assert {"lego_eval.csv", "are_vs_bytes.png", "are_vs_bytes.html"} <= {p.name for p in (tmp_path / "a").iterdir()}
    assert WORKLOAD.run(params, LocalReporter(artifact_dir=tmp_path / "b")) == metrics
    rows = WORKLOAD.baselines(params)
    assert {r["method"] for r in rows} == {"countmin", "countsketch"}
    # the saved brick evaluates again, at other budgets, with no retraining
    again = EVAL_WORKLOAD.make_params({"checkpoint": str(tmp_path / "a" / "brick.pt"), "budgets_kb": [10, 40],
                                        "eval_skews": [1.1], "eval_distinct": 2000})
    EVAL_WORKLOAD.validate(again)
    assert math.isfinite(EVAL_WORKLOAD.run(again, LocalReporter(artifact_dir=tmp_path / "c"))["are"])


@pytest.mark.slow
def test_lego_ablations_and_all_baselines_run(tmp_path):
    values = dict(WORKLOAD.smoke_params, learnable_vector=False, normalize=False, scanning=False,
                  self_guided=False, methods=["lego", "countmin", "lcs", "dcms", "dlego", "ms"],
                  eval_brick_counts=[2, 3], brick_count=2, eval_distinct=3000)
    params = WORKLOAD.make_params(values)
    WORKLOAD.validate(params)
    metrics = WORKLOAD.run(params, LocalReporter(artifact_dir=tmp_path))
    assert all(math.isfinite(v) for v in metrics.values())
    import pandas as pd

    table = pd.read_csv(tmp_path / "lego_eval.csv")
    assert set(table["method"]) == {"lego", "countmin", "lcs", "dcms", "dlego", "ms"}
    assert np.isfinite(table["are"]).all()


@pytest.mark.slow
def test_local_runner_writes_the_trial_artifacts(tmp_path):
    """python -m pipeline.run tasks/lego.yaml --local: the task's params plus overrides, one
    trial; then python -m pipeline.workloads.lego.local OUT: its ARE table."""
    import json

    from pipeline import run
    from pipeline.workloads.lego import local

    overrides = [f"params.{k}={v}" for k, v in WORKLOAD.smoke_params.items()]
    assert run.main(["tasks/lego.yaml", "--local", "--out", str(tmp_path), *[o.replace(" ", "") for o in overrides],
                     "params.depth=5"]) == 0  # the quick profile's 8 rows, overridden
    assert {"brick.pt", "lego_eval.csv", "summary.json", "are_vs_bytes.png"} <= {p.name for p in tmp_path.iterdir()}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "lego/countmin" in local.main([str(tmp_path)])
    assert math.isfinite(summary["metrics"]["are"]) and summary["metrics"]["bytes"] == 2 * 5 * 256 * 4  # 2 bricks of 5 x 256 float32
