"""`python -m pipeline.bench pipeline_scaling` at tiny counts: the pipeline and Optuna
alone at each count, with the figures the scaling table quotes; a bad --trials value is
one line on stderr and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"method", "trials", "sampler", "s_per_trial", "overhead_s_per_trial", "driver_cpu_s_per_trial",
          "search_s", "front_s", "peak_rss_mb", "rss_growth_mb", "front_size", "ratio_vs_first"}
PIPELINE_FIELDS = FIELDS | {"store_mb", "optuna_db_mb", "steady_s_per_trial", "first_trial_s", "tracking_drain_s",
                            "ray_start_s", "finished", "not_logged", "search_rss_kb_per_trial",
                            "rss_last_trial_mb"}


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.bench", "pipeline_scaling", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tiny_counts_give_every_figure(tmp_path):
    out = tmp_path / "out.json"
    done = _bench("--trials", "5,10", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bench"] == "pipeline_scaling" and "--trials 5,10" in report["command"]
    rows = report["results"]
    assert [(r["method"], r["trials"]) for r in rows] == [
        (m, n) for n in (5, 10) for m in ("pipeline", "optuna_memory", "optuna_sqlite")]
    for row in rows:
        assert (PIPELINE_FIELDS if row["method"] == "pipeline" else FIELDS) <= set(row), row["method"]
        assert row["s_per_trial"] > 0 and row["peak_rss_mb"] > 0 and row["front_size"] >= 1
    first = {r["method"]: r for r in rows if r["trials"] == 5}
    assert all(r["ratio_vs_first"] == 1.0 for r in first.values())
    for row in rows:
        if row["trials"] == 10:
            base = first[row["method"]]["overhead_s_per_trial"]
            assert row["ratio_vs_first"] == pytest.approx(row["overhead_s_per_trial"] / base)
    for row in (r for r in rows if r["method"] == "pipeline"):
        assert row["finished"] == row["trials"] and row["not_logged"] == 0
        assert row["store_mb"] > 0 and row["optuna_db_mb"] > 0
    assert all(r["optuna_db_mb"] > 0 for r in rows if r["method"] == "optuna_sqlite")


@pytest.mark.parametrize("value", ["5,x", "0", "10,-3", ""])
def test_bad_trials_is_one_line_and_exit_2(value):
    done = _bench("--trials", value, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --trials: "), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_methods_is_one_line_and_exit_2():
    done = _bench("--trials", "5", "--methods", "pipeline,optuna_redis", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --methods: optuna_redis not among pipeline, optuna_memory, "
                                                "optuna_sqlite"]
