"""Runs that survive failures.

- A Ray Train worker killed mid-trial (SIGKILL, as an OOM kill or a lost spot node
  would) is restarted from the trial's last checkpoint under the task's `failure`
  settings, and the trial ends with the result an uninterrupted run has.
- The MLflow server going away mid-run does not stop the search; what could not be
  logged while it was down is kept and sent once it is back, and nothing is logged twice.
- The driver killed mid-run and restarted with `--resume`: every trial once in MLflow.
- The MLflow server unreachable at start: one line on stderr, exit code 2, before any
  compute (no Ray session is started).

The worker-kill and MLflow-outage runs share one local Ray (pipeline.cluster.local,
loopback, token auth off). The workload that dies is `smoke_kill`
(pipeline.cluster.faults): `smoke` whose first attempt kills its own process after the
report of a chosen epoch. The driver killed mid-run (SIGKILL of its process group
and its local Ray) and restarted with `--resume` finishes every trial, each with exactly
one child run in MLflow.

Run: .venv/bin/python -m pytest tests/test_faults.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.cluster import faults, mlflow_server
from pipeline.cluster.local import kill_ray_under, local_cluster
from pipeline.workloads import smoke
from pipeline.workloads.base import LocalReporter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    with local_cluster([{"num_cpus": 2}]):
        yield


def write_task(folder: Path, task: dict) -> Path:
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def child_runs(client: MlflowClient, summary: dict) -> list:
    return client.search_runs([summary["experiment_id"]],
                              filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")


# --- the driver killed mid-run, then --resume ---------------------------------------------

RESUME_TRIALS = 6


def small_cms_cli(tmp_path: Path, trials: int) -> list[str]:
    return [
        sys.executable, "-m", "pipeline.run", "tasks/cms.yaml",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "mlflow.experiment=resume",
        f"search.num_samples={trials}", "search.max_concurrent=1",
        "params.stream.universe=2000", "params.stream.length=20000", "params.stream.queries=1000",
        "search_space={parameters: {width: {type: choice, values: [128, 256, 512, 1024]},"
        " depth: {type: randint, low: 1, high: 3}}}",
    ]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Kill the driver (SIGKILL, its process group and its local Ray) right after it
    prints the second finished trial, then run the same command with --resume."""
    tmp_path = tmp_path_factory.mktemp("resume")
    # Ray's socket paths must stay under the 107-byte limit: not below pytest's tmp_path
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_tmp),
           "PIPELINE_OBJECT_STORE_MB": "100", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    command = small_cms_cli(tmp_path, RESUME_TRIALS)
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=open(tmp_path / "driver.err", "w"), text=True, start_new_session=True)
    seen = []
    try:
        for line in driver.stdout:
            seen.append(line)
            if line.startswith(f"[2/{RESUME_TRIALS}]"):
                break  # two trials done, the third starting: kill the driver now
    finally:
        kill_ray_under(ray_tmp, driver.pid)
        driver.wait()
    assert any(line.startswith(f"[2/{RESUME_TRIALS}]") for line in seen), (tmp_path / "driver.err").read_text()[-3000:]

    summary_path = tmp_path / "summary.json"
    try:
        resumed = subprocess.run(command + ["--resume", "--summary", str(summary_path)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=900)
    finally:
        kill_ray_under(ray_tmp)  # a crashed resume leaves nothing behind either
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    return {"summary": summary, "runs": child_runs(MlflowClient(summary["tracking_uri"]), summary)}


def test_driver_killed_then_resumed_finishes_every_trial_once(resumed_run):
    summary, runs = resumed_run["summary"], resumed_run["runs"]
    assert summary["trial_count"] == RESUME_TRIALS
    assert summary["trials"] == {"finished": RESUME_TRIALS}
    finished = [run.data.tags["pipeline.trial_id"] for run in runs if run.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)), "a trial has two finished child runs"
    assert len(finished) == RESUME_TRIALS, "a finished trial has no finished child run"
    assert set(summary["child_run_ids"]) <= {run.info.run_id for run in runs}


def test_driver_killed_then_resumed_leaves_no_run_open(resumed_run):
    """A trial whose end Tune had not saved when the driver died is forgotten by the
    restored Tuner (the searcher samples another); its child run is closed, not left
    RUNNING: KILLED, tagged LOST_ON_RESTART, and named in the summary."""
    runs, summary = resumed_run["runs"], resumed_run["summary"]
    assert [run.data.tags.get("pipeline.trial_id") for run in runs if run.info.status == "RUNNING"] == []
    lost = [run.data.tags["pipeline.trial_id"] for run in runs
            if run.data.tags.get("pipeline.status") == "LOST_ON_RESTART"]
    assert sorted(lost) == sorted(summary["lost_on_restart"])
    assert all(run.info.status == "KILLED" for run in runs if run.data.tags.get("pipeline.status") == "LOST_ON_RESTART")


# --- a training worker killed mid-trial -------------------------------------------------

KILL_PARAMS = {"epochs": 4, "points": 256, "lr": 0.05, "width": 4, "kill_at_epoch": 1}


def test_killed_training_worker_resumes_from_checkpoint(local_ray, tmp_path):
    from pipeline.config import load_task
    from pipeline.driver import execute

    marker_dir = tmp_path / "attempts"
    marker_dir.mkdir()
    task = write_task(tmp_path, {
        "workload": faults.NAME,
        "params": {**KILL_PARAMS, "marker_dir": str(marker_dir)},
        "search_space": {"parameters": {"width": {"type": "choice", "values": [KILL_PARAMS["width"]]}}},
        "objectives": [{"metric": "loss", "mode": "min"}, {"metric": "parameters", "mode": "min"}],
        "search": {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
        # a real Train worker (not local mode), so that killing it is a worker failure
        "scaling": {"num_workers": 1, "use_gpu": False, "resources_per_worker": {"CPU": 1}, "trial_cpus": 1},
        "failure": {"max_retries": 1},  # Train's FailureConfig(max_failures) and Tune's
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    })
    summary = execute(load_task(task))

    attempts = faults.attempts(marker_dir)
    assert len(attempts) == 2, attempts  # killed once, retried once
    first, retry = attempts
    assert first["first_epoch"] == 0
    assert retry["pid"] != first["pid"]  # a new worker process...
    assert 1 <= retry["first_epoch"] <= KILL_PARAMS["kill_at_epoch"] + 1  # ...started from a checkpoint

    assert summary["trials"] == {"finished": 1}
    uninterrupted = smoke.run(smoke.SmokeParams(**{k: v for k, v in KILL_PARAMS.items() if k != "kill_at_epoch"}),
                              LocalReporter())
    [front] = summary["pareto"]
    assert front["objectives"]["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-6)
    assert front["objectives"]["parameters"] == uninterrupted["parameters"]

    [run] = child_runs(MlflowClient(summary["tracking_uri"]), summary)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-6)


# --- the MLflow server going away mid-run -----------------------------------------------

NUM_CMS_TRIALS = 4
OUTAGE = {}  # the server process and how to restart it, for `outage_printer`


def outage_printer(line: str) -> None:
    """The run's printer: stops the server when the first trial completes, starts it
    again when the third does. Module-level, so that the Tuner can pickle it."""
    print(line)
    if line.startswith(f"[1/{NUM_CMS_TRIALS}]"):
        mlflow_server.stop(OUTAGE["process"])
        OUTAGE["stopped_at"] = line
    elif line.startswith(f"[3/{NUM_CMS_TRIALS}]"):
        OUTAGE["process"] = mlflow_server.start(OUTAGE["store"], OUTAGE["port"], log=OUTAGE["log"])


def test_mlflow_going_away_mid_run_keeps_and_sends_results(local_ray, tmp_path, monkeypatch):
    from pipeline.config import load_task
    from pipeline.driver import execute

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast while it is down
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.setenv("PIPELINE_RESULTS", str(tmp_path / "ray_results"))
    port = mlflow_server.free_port()
    OUTAGE.update(store=tmp_path / "server", port=port, log=tmp_path / "server.log")
    OUTAGE["store"].mkdir()
    OUTAGE["process"] = mlflow_server.start(OUTAGE["store"], port, log=OUTAGE["log"])
    try:
        resolved = load_task(ROOT / "tasks" / "cms.yaml", "quick", [
            f"mlflow.tracking_uri=http://127.0.0.1:{port}", "mlflow.experiment=outage",
            f"search.num_samples={NUM_CMS_TRIALS}", "search.max_concurrent=1",
            "params.stream.universe=2000", "params.stream.length=20000", "params.stream.queries=1000",
            # no constraints: every trial runs (a rejected point is a different path)
            "search_space={parameters: {width: {type: choice, values: [128, 256, 512, 1024]},"
            " depth: {type: randint, low: 1, high: 3}}}",
        ])
        summary = execute(resolved, printer=outage_printer)
        assert "stopped_at" in OUTAGE  # the outage did happen during the run

        assert summary["trial_count"] == NUM_CMS_TRIALS
        assert summary["trials"] == {"finished": NUM_CMS_TRIALS}  # the search went on
        assert summary["not_logged"] == []  # everything queued was sent after the restart

        client = MlflowClient(summary["tracking_uri"])
        runs = child_runs(client, summary)
        trial_ids = [run.data.tags["pipeline.trial_id"] for run in runs]
        assert sorted(trial_ids) == sorted(set(trial_ids)), "a trial was logged twice"
        assert len(runs) == NUM_CMS_TRIALS
        for run in runs:
            assert run.info.status == "FINISHED", run.data.tags
            assert {"aae", "bytes"} <= set(run.data.metrics)
        parent = client.get_run(summary["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert "pareto.csv" in {f.path for f in client.list_artifacts(summary["parent_run_id"])}
    finally:
        mlflow_server.stop(OUTAGE["process"])


# --- the MLflow server unreachable at start ---------------------------------------------

def test_mlflow_unreachable_at_start_fails_in_one_line_before_compute(tmp_path):
    port = mlflow_server.free_port()  # nothing listens there
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray"), "RAY_AUTH_MODE": "disabled",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "PIPELINE_RESULTS": str(tmp_path / "results")}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "tasks/cms.yaml", f"mlflow.tracking_uri=http://127.0.0.1:{port}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "unreachable" in errors[0]
    assert "trials of" not in done.stdout  # the search never started
    assert not (tmp_path / "ray").exists()  # nor did Ray
    assert not (tmp_path / "results").exists()
