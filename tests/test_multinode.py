"""Several Ray nodes on one machine: GPU trials put their Train workers on the GPU node
and the trials spread over both nodes; a job submitted with `ray job submit` to two
`ray start` nodes with token authentication puts its trial's 2 Train workers on both.

A two-node Ray cluster on loopback (pipeline.cluster.local: Ray's test-cluster
utilities): the head with 1 CPU and no GPU, a second node with 1 CPU and 2 fake GPUs.
The task asks for `scaling.use_gpu` with one Train worker per trial
(`resources_per_worker: {CPU: 0, GPU: 1}`) and two concurrent trials of one CPU each,
so the two trial drivers need both nodes' CPUs, while every Train worker can only run
where the GPUs are. Where each process ran is read back from what the trained workload
wrote (pipeline.cluster.faults: node id and GPU ids per attempt) and from Ray's actor
table.

The cluster path, as a user runs it (clusters/README.md, "Several nodes on one
machine"), with token authentication ON: a fresh random token in RAY_AUTH_TOKEN of every
subprocess (never ~/.ray/auth_token), each node its own temp dir and free ports
(pipeline.cluster.local.ray_start_command), one `trainslot` resource per node:

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<hex>
    ray start --head --port=G --dashboard-host=127.0.0.1 --dashboard-port=D --num-cpus=2 \
        --resources='{"trainslot": 1}' --temp-dir=BASE/h ...
    ray start --address=127.0.0.1:G --num-cpus=2 --resources='{"trainslot": 1}' --temp-dir=BASE/w ...
    ray job list --address http://127.0.0.1:D            # refused without the token / with a wrong one
    ray job submit --address http://127.0.0.1:D --working-dir . --runtime-env clusters/runtime_env.yaml \
        -- python -m pipeline.run TMP/lego_ddp.yaml mlflow.tracking_uri=sqlite:////TMP/mlflow.db --summary TMP/summary.json
    ray list actors --address http://127.0.0.1:D --filter class_name=RayTrainWorker --detail --format json

The job is one `lego` trial (tests/test_ddp.py's tiny size) trained by 2 Ray Train workers
that each ask for `{CPU: 1, trainslot: 1}`, so they can only run on different nodes;
the actor table (dead actors keep their node_id) shows they did. Afterwards every
process under BASE is killed (`ray stop` would stop every Ray on the machine).

Run: .venv/bin/python -m pytest tests/test_multinode.py
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.cluster import faults
from pipeline.cluster.local import actor_nodes, kill_ray_under, local_cluster, node_ids, ray_start_command
from pipeline.cluster.mlflow_server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NUM_TRIALS = 2


def gpu_task(tmp_path) -> dict:
    marker_dir = tmp_path / "attempts"
    marker_dir.mkdir()
    return {
        "workload": faults.NAME,  # `smoke` that also records where it ran
        "params": {"epochs": 2, "points": 64, "marker_dir": str(marker_dir)},
        "search_space": {"parameters": {"lr": {"type": "choice", "values": [0.05, 0.1]},
                                        "width": {"type": "choice", "values": [1, 4]}}},
        "objectives": [{"metric": "loss", "mode": "min"}, {"metric": "parameters", "mode": "min"}],
        "search": {"sampler": "random", "num_samples": NUM_TRIALS, "max_concurrent": NUM_TRIALS, "seed": 0},
        "scaling": {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"CPU": 0, "GPU": 1},
                    "trial_cpus": 1},
        "failure": {"max_retries": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    from pipeline.config import load_task
    from pipeline.driver import execute

    tmp_path = tmp_path_factory.mktemp("multinode")
    task = gpu_task(tmp_path)
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(task))
    with local_cluster([{"num_cpus": 1}, {"num_cpus": 1, "num_gpus": 2}]) as cluster:
        summary = execute(load_task(tmp_path / "gpu.yaml"))
        yield {
            "summary": summary,
            "head": node_ids(cluster)[0],
            "gpu_node": node_ids(cluster)[1],
            "attempts": faults.attempts(task["params"]["marker_dir"]),
            "trial_nodes": actor_nodes("ImplicitFunc"),  # Tune's actor for a function trainable
            "train_worker_nodes": actor_nodes("RayTrainWorker"),
        }


def test_every_trial_finishes(gpu_run):
    summary = gpu_run["summary"]
    assert summary["trial_count"] == NUM_TRIALS
    assert summary["trials"] == {"finished": NUM_TRIALS}
    assert len(summary["child_run_ids"]) == NUM_TRIALS
    assert summary["pareto"]


def test_train_workers_run_on_the_gpu_node(gpu_run):
    attempts = gpu_run["attempts"]
    assert len(attempts) == NUM_TRIALS  # one Train worker per trial, none retried
    for attempt in attempts:
        assert attempt["node_id"] == gpu_run["gpu_node"]
        assert len(attempt["gpu_ids"]) == 1  # Ray gave the worker one of the node's GPUs
    assert gpu_run["train_worker_nodes"]
    assert set(gpu_run["train_worker_nodes"]) == {gpu_run["gpu_node"]}


def test_trials_spread_over_both_nodes(gpu_run):
    # two concurrent trial drivers of 1 CPU each, one CPU per node: both nodes are used
    assert len(gpu_run["trial_nodes"]) >= NUM_TRIALS
    assert set(gpu_run["trial_nodes"]) == {gpu_run["head"], gpu_run["gpu_node"]}


# --- the cluster path: `ray start` nodes, token auth on, `ray job submit` ------------------

BIN = Path(sys.executable).parent
#: the workers' tiny lego (tests/test_ddp.py's size): global batch 4 tasks, 2 per worker
LEGO_TINY = {"steps": 4, "tasks_per_step": 4, "report_every": 2}


def lego_ddp_task() -> dict:
    from pipeline.workloads import get

    return {
        "workload": "lego", "params": {**get("lego").smoke_params, **LEGO_TINY},
        "search_space": {"parameters": {"seed": {"type": "choice", "values": [0]}}},
        "objectives": [{"metric": "are", "mode": "min"}, {"metric": "bytes", "mode": "min"}],
        "search": {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
        # one `trainslot` per node and one per worker: the two workers cannot share a node.
        # 2 CPUs per node, so the trial's waiter (trial.trial_resources) fits beside a worker
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1, "trainslot": 1}},
        "failure": {"max_retries": 0},
    }


def ray_cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def wait_for_nodes(dashboard: str, env: dict, count: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        out = ray_cli(["list", "nodes", "--address", dashboard, "--format", "json"], env)
        nodes = [n for n in json.loads(out.stdout or "[]") if n["state"] == "ALIVE"] if out.returncode == 0 else []
        if len(nodes) >= count or time.monotonic() > deadline:
            return nodes
        time.sleep(2)


@pytest.fixture(scope="module")
def submitted_job(tmp_path_factory):
    """Two `ray start` nodes with token auth, one lego trial of 2 Train workers submitted
    with `ray job submit`; everything Ray started is killed afterwards, pass or fail."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    tmp_path = tmp_path_factory.mktemp("jobsubmit")
    # Ray's unix socket paths must stay under ~107 bytes: not below pytest's tmp_path.
    # Both nodes' folders sit in `base`, so one kill_ray_under(base) ends both.
    base = Path(tempfile.mkdtemp(prefix="rm", dir="/tmp"))
    token = secrets.token_hex(32)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_TMPDIR": str(base),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "PIPELINE_RESULTS"):
        env.pop(name, None)
    gcs, dash_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dash_port}"
    task_file = tmp_path / "lego_ddp.yaml"
    task_file.write_text(yaml.safe_dump(lego_ddp_task()))
    summary_path = tmp_path / "summary.json"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        for command in (ray_start_command(base / "h", num_cpus=2, resources={"trainslot": 1}, gcs_port=gcs,
                                          dashboard_port=dash_port),
                        ray_start_command(base / "w", num_cpus=2, resources={"trainslot": 1},
                                          head_address=f"127.0.0.1:{gcs}")):
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        nodes = wait_for_nodes(dashboard, env, 2)
        assert len(nodes) == 2, nodes

        # a client without the cluster's token: no token at all (no ~/.ray/auth_token in
        # its HOME either), and a wrong one
        no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"} | {"HOME": str(tmp_path)}
        refused = {"none": ray_cli(["job", "list", "--address", dashboard], no_token),
                   "wrong": ray_cli(["job", "list", "--address", dashboard],
                                    {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})}

        submit = ["job", "submit", "--address", dashboard, "--working-dir", str(ROOT),
                  "--runtime-env", str(ROOT / "clusters" / "runtime_env.yaml"), "--",
                  "python", "-m", "pipeline.run", str(task_file), f"mlflow.tracking_uri={store}",
                  "--summary", str(summary_path)]
        for _ in range(12):
            out = ray_cli(submit, env, timeout=600)
            # `ray start` returns before the head's job agent is up (slow on a busy box);
            # Ray's own answer then is to try again later
            if "No available agent to submit job" not in out.stderr:
                break
            time.sleep(5)
        jobs = ray_cli(["job", "list", "--address", dashboard], env)
        actors = ray_cli(["list", "actors", "--address", dashboard, "--filter", "class_name=RayTrainWorker",
                          "--detail", "--limit", "1000", "--format", "json"], env)
        yield {"nodes": {n["node_id"] for n in nodes}, "refused": refused, "submit": out, "jobs": jobs,
               "actors": actors, "summary_path": summary_path, "store": store}
    finally:
        kill_ray_under(base)  # only this cluster's processes: `ray stop` would stop every Ray here
        shutil.rmtree(base, ignore_errors=True)


def _job_failed(job: dict) -> str:
    out = job["submit"]
    return f"rc={out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-3000:]}"


def test_client_without_the_token_is_refused(submitted_job):
    for name, out in submitted_job["refused"].items():
        assert out.returncode != 0, f"{name}: {out.stdout[-500:]}"
        text = (out.stdout + out.stderr).lower()
        assert "authentication token" in text, f"{name}: {text[-1000:]}"
    jobs = submitted_job["jobs"]
    assert jobs.returncode == 0, jobs.stderr[-1000:]  # the same call with the token is answered
    assert "SUCCEEDED" in jobs.stdout, jobs.stdout[-2000:]


def test_submitted_job_succeeds_with_pareto_front_and_mlflow_runs(submitted_job):
    out = submitted_job["submit"]
    assert out.returncode == 0, _job_failed(submitted_job)
    assert "succeeded" in out.stdout.lower(), _job_failed(submitted_job)
    summary = json.loads(submitted_job["summary_path"].read_text())
    assert summary["trials"] == {"finished": 1}
    assert summary["pareto"]
    client = MlflowClient(submitted_job["store"])
    assert client.get_run(summary["parent_run_id"]).info.status == "FINISHED"
    children = client.search_runs([summary["experiment_id"]],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    trials = pd.read_csv(client.download_artifacts(summary["parent_run_id"], "trials.csv",
                                                   str(submitted_job["summary_path"].parent)))
    assert trials["world_size"].tolist() == [2]


def test_train_workers_ran_on_both_nodes(submitted_job):
    actors = submitted_job["actors"]
    assert actors.returncode == 0, actors.stderr[-2000:]
    workers = json.loads(actors.stdout)
    assert len(workers) == 2, workers  # one trial, 2 workers, none restarted
    assert {w["node_id"] for w in workers} == submitted_job["nodes"]
