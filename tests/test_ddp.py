"""Data-parallel training of the torch workloads (`scaling.num_workers >= 2`).

The rule (pipeline/workloads/base.py, docs/task_files.md "scaling"): the configured batch
is the GLOBAL batch; each worker draws it whole, trains on its contiguous shard with its
loss scaled by the shard's weight, DDP averages the gradients; lr unchanged. So:

- after training, the two workers' parameters are identical (every workload);
- the result equals local mode's with the same seed and global batch, up to float
  summation order: rel 1e-4 (`smoke`, `lego`: no per-example noise); `e2e_nn` and
  `e2e_freq` draw Gumbel noise per worker, so for them only the identity of the workers'
  parameters and a finite result are checked;
- through Ray Train with 2 workers (gloo), a worker killed mid-run (rank 1 exits after
  its report of step 2 on an attempt without a checkpoint: trial.KILL_ENV) is restarted
  by Train from the last checkpoint and the trial ends with the local result.

The equality tests spawn two processes with a gloo process group (no Ray, fast); the
last test runs the pipeline's driver on a local Ray.

Run: .venv/bin/python -m pytest -q tests/test_ddp.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from pathlib import Path

import pytest
import torch

from pipeline.workloads import get
from pipeline.workloads.base import LocalReporter, finite_metrics, shard, unwrap

ROOT = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
#: local vs data-parallel results: same batches, same gradients, summed in another order
RESULT_RTOL = 1e-4

#: tiny configs: each workload's conformance size, with global batches that split evenly
TINY = {
    "smoke": {"epochs": 3, "points": 64, "batch_size": 16},
    "lego": {"steps": 4, "tasks_per_step": 4, "report_every": 2},
    "e2e_freq": {"steps": 6, "batch_size": 8, "eval_every": 3},
    "e2e_nn": {"steps": 6, "batch_size": 8, "eval_every": 3},
}


class CapturingReporter(LocalReporter):
    """LocalReporter that keeps the module the workload prepared (DDP-wrapped here)."""

    def prepare_model(self, model):
        self.model = super().prepare_model(model)
        return self.model


def _values(name: str) -> dict:
    workload = get(name)
    threads = {"threads": 1} if "threads" in workload.params.model_fields else {}
    return {**workload.smoke_params, **TINY[name], **threads}


def _params(name: str):
    workload = get(name)
    return workload, workload.make_params(_values(name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, name: str, port: int, out_dir: str) -> None:
    """One data-parallel worker: a gloo process group, the workload, its state to disk."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        workload, params = _params(name)
        reporter = CapturingReporter(world_size=WORLD_SIZE, world_rank=rank)
        metrics = finite_metrics(workload.run(params, reporter))
        state = {k: v.detach().cpu() for k, v in unwrap(reporter.model).state_dict().items()}
        torch.save({"metrics": metrics, "state": state, "history": reporter.history,
                    "ddp": type(reporter.model).__name__}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _data_parallel(name: str, tmp_path: Path) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [context.Process(target=_worker, args=(rank, name, port, str(tmp_path))) for rank in range(WORLD_SIZE)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORLD_SIZE, f"a worker of {name} failed"
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module", params=sorted(TINY))
def data_parallel_run(request, tmp_path_factory):
    name = request.param
    return name, _data_parallel(name, tmp_path_factory.mktemp(f"ddp-{name}"))


def test_ddp_workers_end_with_identical_parameters(data_parallel_run):
    name, (rank0, rank1) = data_parallel_run
    assert rank0["ddp"] == rank1["ddp"] == "DistributedDataParallel", name  # gradients really were averaged
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), f"{name}: {key} differs between workers"
    # the same reports at the same steps on every worker (Ray Train's report is collective)
    assert [r.get("step") for r in rank0["history"]] == [r.get("step") for r in rank1["history"]]


@pytest.mark.parametrize("name", ["smoke", "lego"])
def test_ddp_result_equals_local_mode(name, data_parallel_run):
    run_name, (rank0, _) = data_parallel_run
    if run_name != name:
        pytest.skip("compared with its own run")
    workload, params = _params(name)
    local = finite_metrics(workload.run(params, LocalReporter()))
    parallel = rank0["metrics"]
    assert set(local) == set(parallel)
    for key, value in local.items():
        assert parallel[key] == pytest.approx(value, rel=RESULT_RTOL, abs=1e-9), key


def test_ddp_noisy_workloads_finish_with_finite_objectives(data_parallel_run):
    name, (rank0, _) = data_parallel_run
    objective = {"e2e_freq": "mae", "e2e_nn": "accuracy", "smoke": "loss", "lego": "are"}[name]
    assert objective in rank0["metrics"]


def test_data_parallel_shards_cover_the_batch_once():
    class Worker:
        def __init__(self, rank):
            self.world_size, self.world_rank = 3, rank

    parts = [shard(Worker(r), 10) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 7), (7, 10)]
    # mean of the weighted shard means == the mean over the whole batch
    values = torch.arange(10.0)
    assert sum(float(p.take(values).mean()) * p.weight for p in parts) / 3 == pytest.approx(float(values.mean()))
    with pytest.raises(ValueError, match="cannot be split over 3 workers"):
        shard(Worker(0), 2)


# --- a local Ray that holds one trial ----------------------------------------------------

def test_local_ray_gets_the_cpus_one_trial_holds(monkeypatch):
    import ray

    from pipeline import driver
    from pipeline.trial import trial_cpu_demand

    scaling = {"num_workers": WORLD_SIZE, "use_gpu": False, "resources_per_worker": {"CPU": 1}, "trial_cpus": 1}
    need = trial_cpu_demand(scaling)
    assert need == pytest.approx(WORLD_SIZE + 0.01)
    calls, lines = [], []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    driver.init_ray(printer=lines.append, min_cpus=need)
    assert calls[-1]["num_cpus"] == 3 and "3 logical CPUs on 2 cores" in lines[-1]
    driver.init_ray(printer=lines.append, min_cpus=1.0)
    assert calls[-1]["num_cpus"] == 2


def test_a_local_ray_too_small_for_one_trial_is_one_line(monkeypatch):
    import ray

    from pipeline import driver
    from pipeline.errors import TaskError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(TaskError, match=r"one trial needs 2.01 CPUs .* this local Ray has 2: lower scaling"):
        driver._check_trial_fits(2.01)
    driver._check_trial_fits(2.0)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster may autoscale: not checked
    driver._check_trial_fits(64)


# --- through Ray Train: 2 workers, one killed mid-run ---------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    import ray

    from pipeline.driver import init_ray

    if ray.is_initialized():  # a Ray another test left behind may be too small for this trial
        ray.shutdown()
    init_ray(printer=lambda _: None, min_cpus=WORLD_SIZE + 0.01)  # what the driver gives this test's trial
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ddp_ray_train_worker_killed_resumes_from_checkpoint(ray_session, tmp_path, monkeypatch):
    import pandas as pd
    import yaml
    from mlflow.tracking import MlflowClient

    from pipeline.config import load_task
    from pipeline.driver import execute
    from pipeline.trial import KILL_ENV

    workload, params = _params("lego")
    values = _values("lego")
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({
        "workload": "lego", "params": values,
        "search_space": {"parameters": {"seed": {"type": "choice", "values": [params.seed]}}},
        "objectives": [{"metric": "are", "mode": "min"}, {"metric": "bytes", "mode": "min"}],
        "search": {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
        "scaling": {"num_workers": WORLD_SIZE, "resources_per_worker": {"CPU": 1}},
        "failure": {"max_retries": 1},  # Train's FailureConfig(max_failures)
    }))
    monkeypatch.setenv("PIPELINE_RESULTS", str(tmp_path / "ray_results"))
    monkeypatch.setenv(KILL_ENV, "1:2")  # rank 1 exits after its report of step 2, first attempt only
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = execute(load_task(task, None, [f"mlflow.tracking_uri={uri}"]), printer=lambda _: None)

    assert summary["trials"] == {"finished": 1}
    trials = pd.read_csv(MlflowClient(uri).download_artifacts(summary["parent_run_id"], "trials.csv", str(tmp_path)))
    [row] = trials.to_dict("records")
    assert row["world_size"] == WORLD_SIZE
    assert row["resumed_from_checkpoint"] == 1  # the finishing attempt started from a checkpoint
    local = finite_metrics(workload.run(params, LocalReporter()))
    [front] = summary["pareto"]
    assert front["objectives"]["are"] == pytest.approx(local["are"], rel=RESULT_RTOL)
    assert front["objectives"]["bytes"] == local["bytes"]
    [child] = MlflowClient(uri).search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
    assert "brick.pt" in {a.path for a in MlflowClient(uri).list_artifacts(child.info.run_id)}  # rank 0's files
    json.dumps(summary)  # plain data
