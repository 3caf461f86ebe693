"""The quick profiles of tasks/cms.yaml and tasks/smoke.yaml end to end through Ray,
Optuna and a sqlite MLflow store in a temporary folder; a trial that raises; and
`ray job submit` against a local head.

One Ray for this module (started by the pipeline's own `init_ray`), shut down at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.config import load_task
from pipeline.cluster.local import kill_ray_under
from pipeline.driver import execute, init_ray

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    init_ray(printer=lambda _: None)
    yield
    ray.shutdown()


def _children(client: MlflowClient, summary: dict):
    return client.search_runs([summary["experiment_id"]],
                              filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")


def _run(tmp_path, task, overrides, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("PIPELINE_RESULTS", str(tmp_path / "ray_results"))
    resolved = load_task(ROOT / task, "quick", [f"mlflow.tracking_uri={uri}", *overrides])
    lines: list[str] = []
    summary = execute(resolved, printer=lines.append)
    return summary, MlflowClient(uri), lines


def test_cms_quick_end_to_end(ray_session, tmp_path, monkeypatch):
    summary, client, lines = _run(tmp_path, "tasks/cms.yaml", [
        "search.num_samples=8", "params.stream.universe=5000", "params.stream.length=50000"], monkeypatch)
    assert summary["trial_count"] == 8
    assert summary["pareto"], "a front of at least one trial"
    assert summary["hypervolume"] > 0
    # the terminal got one line per trial
    assert sum(line.startswith("[") for line in lines) == 8
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pipeline.git_commit"]
    artifacts = {a.path for a in client.list_artifacts(summary["parent_run_id"])}
    assert {"pareto.csv", "front.png", "front.html", "trials.csv", "task"} <= artifacts
    task_files = {a.path for a in client.list_artifacts(summary["parent_run_id"], "task")}
    assert "task/task.yaml" in task_files and "task/versions.json" in task_files
    children = _children(client, summary)
    assert len(children) == 8
    on_front = [r for r in children if r.data.tags.get("pipeline.pareto") == "true"]
    assert len(on_front) == len(summary["pareto"])
    finished = [r for r in children if r.data.tags.get("pipeline.status") == "FINISHED"]
    for run in finished:
        assert {"aae", "bytes"} <= set(run.data.metrics)
        assert "width" in run.data.params
    # the front is non-dominated among the finished trials
    points = [(r.data.metrics["aae"], r.data.metrics["bytes"]) for r in finished]
    for row in summary["pareto"]:
        a, b = row["objectives"]["aae"], row["objectives"]["bytes"]
        assert not any(x <= a and y <= b and (x, y) != (a, b) for x, y in points)
    # the Optuna study is in RDB storage beside the store
    import optuna

    study = optuna.load_study(study_name=summary["optuna_study"], storage=summary["optuna_storage"])
    assert len(study.trials) == 8


def test_rejected_points_and_failures(ray_session, tmp_path, monkeypatch):
    """Constraint-breaking points are REJECTED with their reason; a trial that raises
    on every attempt is FAILED with its traceback; the search goes on."""
    summary, client, _ = _run(tmp_path, "tasks/smoke.yaml", [
        "search.sampler=grid", "search.num_samples=null", "failure.max_retries=0", "params.epochs=2",
        "search_space={parameters: {width: {type: grid, values: [1, 4]}, fail_at_epoch: {type: grid, values: [-1, 0]}},"
        " constraints: [{expr: 'width <= 2 or fail_at_epoch < 0', reason: 'wide models are not tried to fail'}]}",
    ], monkeypatch)
    assert summary["trial_count"] == 4
    assert summary["trials"] == {"finished": 2, "failed": 1, "rejected": 1}
    children = {r.data.tags.get("pipeline.status"): r for r in _children(client, summary)}
    failed = children["FAILED"]
    assert failed.info.status == "FAILED"
    tb = client.download_artifacts(failed.info.run_id, "traceback.txt", str(tmp_path))
    assert "injected failure at epoch 0" in Path(tb).read_text()
    rejected = children["REJECTED"]
    assert rejected.data.tags["pipeline.reject_reason"] == "wide models are not tried to fail"
    assert rejected.info.status == "KILLED"
    # the torch trials went through TorchTrainer and left their artifact
    done = children["FINISHED"]
    assert "model.txt" in {a.path for a in client.list_artifacts(done.info.run_id)}
    assert "loss" in done.data.metrics
    assert len(client.get_metric_history(done.info.run_id, "loss")) >= 2  # per-epoch steps


def test_asha_front_only_counts_full_budget(ray_session, tmp_path, monkeypatch):
    summary, client, _ = _run(tmp_path, "tasks/smoke.yaml", [
        "search.num_samples=6", "search.max_concurrent=1", "params.epochs=6",
        "search.scheduler={type: asha, metric: loss, mode: min, max_t: 6, grace_period: 1, reduction_factor: 2}",
    ], monkeypatch)
    stopped = summary["trials"].get("stopped", 0)
    assert summary["trials"].get("finished", 0) + stopped == 6
    front_ids = {row["trial_id"] for row in summary["pareto"]}
    statuses = {r.data.tags[f"pipeline.trial_id"]: r.data.tags.get("pipeline.status") for r in _children(client, summary)}
    assert all(statuses[t] == "FINISHED" for t in front_ids)


def test_workload_report_is_logged_with_the_front(ray_session, tmp_path, monkeypatch):
    """A workload's `report` hook (learned_index: seed 001 Table 2) lands under `report/`
    of the parent run, made from the run's own trials."""
    summary, client, _ = _run(tmp_path, "tasks/learned_index.yaml", [
        "search.num_samples=3", "params.level=[L1]", "params.dist=[normal]", "params.queries=2000",
        "params.repeats=1", "search_space={parameters: {model: {type: choice, values: [none, linear, ko]}}}",
    ], monkeypatch)
    assert summary["trials"].get("finished", 0) >= 1
    files = {a.path for a in client.list_artifacts(summary["parent_run_id"], "report")}
    assert files == {"report/fronts.csv", "report/fronts.png", "report/synoptic.csv"}
    import pandas as pd

    table = pd.read_csv(client.download_artifacts(summary["parent_run_id"], "report/synoptic.csv", str(tmp_path)))
    assert set(table["level"]) == {"L1"}
    assert table["time_s"].notna().any()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_against_local_head(tmp_path):
    """`ray job submit --working-dir . -- python -m pipeline.run tasks/cms.yaml` on a
    head started with `ray start --head` (loopback, token auth off: tests only)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    # short: Ray's unix socket paths under --temp-dir must stay under ~107 characters
    temp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    start = [str(bin_dir / "ray"), "start", "--head", f"--port={gcs}", "--num-cpus=2",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--object-store-memory=200000000",
             f"--temp-dir={temp}", "--disable-usage-stats",
             # the agents' default ports (52365...) may be held by another Ray on this
             # machine, and a head whose job agent cannot bind never accepts a job
             f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
             f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
             f"--ray-client-server-port={_free_port()}"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=180)
    try:
        summary = tmp_path / "s.json"
        store = tmp_path / "mlflow.db"
        cmd = [str(bin_dir / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", ".",
               "--", "python", "-m", "pipeline.run", "tasks/cms.yaml", f"mlflow.tracking_uri=sqlite:///{store}",
               "search.num_samples=3", "params.stream.universe=1000", "params.stream.length=10000",
               "--summary", str(summary)]
        for _ in range(12):
            out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            # `ray start` returns before the head's job agent is up (slow on a busy box);
            # Ray's own answer then is to try again later
            if "No available agent to submit job" not in out.stderr:
                break
            time.sleep(5)
        if out.returncode != 0:
            logs = sorted((temp / "session_latest" / "logs").glob("dashboard_agent*.log"))
            agent = logs[0].read_text()[-2000:] if logs else "(no dashboard agent log)"
            pytest.fail(out.stdout[-2000:] + out.stderr[-2000:] + "\n--- dashboard agent ---\n" + agent)
        assert "succeeded" in out.stdout.lower()
        data = json.loads(summary.read_text())
        assert data["trial_count"] == 3
        # the results live beside the store, not in the job's temporary working copy
        assert data["ray_results"].startswith(str(tmp_path))
        assert len(MlflowClient(f"sqlite:///{store}").search_runs(
            [data["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{data['parent_run_id']}'")) == 3
    finally:
        # only this head's processes: `ray stop` would stop every Ray on the machine
        kill_ray_under(temp)
        shutil.rmtree(temp, ignore_errors=True)
