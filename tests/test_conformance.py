"""The workload conformance suite (STYLE.md, rule 5): under its smallest config each
registered workload returns finite values for every objective its task files name,
calls `report` at least once, and repeats its result for the same seed (timings
excepted). Runs without Ray or MLflow: workloads import neither."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import workloads
from pipeline.config import deep_merge
from pipeline.workloads.base import LocalReporter, Workload

ROOT = Path(__file__).resolve().parents[1]
TIMING = re.compile(r"(^|_)(ns|s|ms|us|seconds|time|per_s|throughput|wall)(_|$)|per_s|_ns|ns_|build_|items_per|speedup|bound_ratio|_vs_")


def _objectives(name: str) -> set[str]:
    out = set()
    for path in (ROOT / "tasks").glob("*.yaml"):
        task = yaml.safe_load(path.read_text())
        if task.get("workload") == name:
            out |= {o["metric"] for o in task.get("objectives", [])}
    return out


NAMES = workloads.names(available_only=True)


def test_registry_names_are_stable():
    for name in NAMES:
        assert workloads.get(name).name == name


@pytest.mark.parametrize("name", NAMES)
def test_workload_conforms(name, tmp_path):
    workload: Workload = workloads.get(name)
    assert "ray" not in workload.run.__module__ and "mlflow" not in workload.run.__module__
    params = workload.make_params(workload.smoke_params)
    if workload.validate is not None:
        workload.validate(params)
    first_reporter = LocalReporter(artifact_dir=tmp_path / "a")
    first_reporter.artifact_dir.mkdir()
    first = workload.run(params, first_reporter)
    assert first_reporter.history, f"{name} never called report"
    for metric in _objectives(name):
        assert metric in first, f"{name} does not return objective {metric!r}"
        assert math.isfinite(first[metric]), f"{name}: {metric} = {first[metric]}"
    assert set(first) <= set(workload.metrics), f"{name} returns metrics it does not declare"
    second_reporter = LocalReporter(artifact_dir=tmp_path / "b")
    second_reporter.artifact_dir.mkdir()
    second = workload.run(workload.make_params(workload.smoke_params), second_reporter)
    for key, value in first.items():
        if TIMING.search(key):
            continue
        assert second[key] == pytest.approx(value, rel=1e-6, abs=1e-9), f"{name}: {key} differs between runs"


def test_workload_modules_import_neither_ray_nor_mlflow():
    for path in (ROOT / "pipeline" / "workloads").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(ray|mlflow)\b", text, re.M), path


def test_write_rows_takes_every_column_in_first_seen_order(tmp_path):
    """The workloads' one CSV writer: a key missing from a row leaves its cell empty, a
    key first seen in a later row is a column too (neither is dropped nor an error)."""
    import pandas as pd

    from pipeline.workloads.base import write_rows

    path = write_rows(tmp_path / "t.csv", [{"a": 1, "b": 0.5}, {"b": 2.0, "c": "x"}])
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["b"].tolist() == [0.5, 2.0]
    assert pd.isna(frame.loc[1, "a"]) and pd.isna(frame.loc[0, "c"]) and frame.loc[1, "c"] == "x"
