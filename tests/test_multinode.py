"""Several Ray nodes on one machine: GPU trials put their Train workers on the GPU node
and the trials spread over both nodes.

A two-node Ray cluster on loopback (pipeline.cluster.local: Ray's test-cluster
utilities): the head with 1 CPU and no GPU, a second node with 1 CPU and 2 fake GPUs.
The task asks for `scaling.use_gpu` with one Train worker per trial
(`resources_per_worker: {CPU: 0, GPU: 1}`) and two concurrent trials of one CPU each,
so the two trial drivers need both nodes' CPUs, while every Train worker can only run
where the GPUs are. Where each process ran is read back from what the trained workload
wrote (pipeline.cluster.faults: node id and GPU ids per attempt) and from Ray's actor
table.

Run: .venv/bin/python -m pytest tests/test_multinode.py
"""

from __future__ import annotations

import pytest
import yaml

from pipeline.cluster import faults
from pipeline.cluster.local import actor_nodes, local_cluster, node_ids

pytestmark = pytest.mark.slow

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
