"""One trial: the function Ray Tune runs per sampled point.

Plain workloads (classic structures) run inside the Tune function with a
`TuneReporter`. Torch workloads (`uses_torch=True`) are fitted by a Ray Train
`TorchTrainer` built inside the trial (Ray 2.60 runs Train V2: a trainer can no longer
be handed to a Tuner): `ScalingConfig(num_workers=0)` is Train's local mode (same
process, no actors) for CPU quick runs; `num_workers > 0` starts workers, with
`use_gpu` on a cluster, whose reports reach Tune through Train's `TuneReportCallback`.

With `num_workers >= 2` the workers train data-parallel (pipeline.workloads.base: the
configured batch is the global batch, sharded, lr unchanged): `prepare_model` wraps the
model in DDP (gloo on CPU, nccl on GPU, Train's defaults), every rank reports at the same
points (Train V2's report is collective) and rank 0's metrics and files reach Tune. The
training state a workload hands `save_checkpoint` goes to Train as a checkpoint with the
next report (rank 0's); a worker that dies makes Train restart the worker group
(`FailureConfig(max_failures=failure.max_retries)`) and `load_checkpoint` returns that
state, so training resumes from it. The trial function itself only waits on its
TorchTrainer, so with workers it reserves a sliver of a CPU (`trial_resources`): the workers' CPUs
are one placement group, all or nothing, and trials that do not fit wait for it instead
of holding CPUs their workers need.

Every trial ends with one report carrying `final=1` and the workload's artifact folder
as a Tune checkpoint, which the driver logs to the trial's MLflow run. A sampled point
that breaks a search-space constraint is not run: it reports `rejected=1`, NaN
objectives (Optuna records the trial as failed, so it never reaches a front) and the
reason.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.workloads.base import finite_metrics

STATE_FILE = "trial_state.pt"
#: Test hook (tests/test_ddp.py): "RANK:STEP" makes Train worker RANK exit after its
#: report of STEP, on an attempt that started without a checkpoint: a worker lost mid-run.
KILL_ENV = "PIPELINE_TEST_KILL_WORKER"
#: Train checkpoints kept per trial: the last training state and the final artifacts.
CHECKPOINTS_KEPT = 2
#: A trial function with Train workers only waits; Tune refuses an empty request, so it
#: asks for a sliver: 100 of them fit one CPU, none takes a CPU its workers need.
TRIAL_WAITER_CPUS = 0.01


class _ReporterBase:
    """Shared parts of the Ray-side Reporters (see pipeline.workloads.base.Reporter)."""

    def __init__(self, device: str, world_size: int = 1, world_rank: int = 0):
        self.device = device
        self.world_size = world_size
        self.world_rank = world_rank
        self.artifact_dir = Path(tempfile.mkdtemp(prefix="trial-artifacts-"))
        self._pending_state: dict[str, Any] | None = None
        self.last: dict[str, float] = {}

    def prepare_model(self, model):
        return model.to(self.device) if hasattr(model, "to") else model

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self._pending_state = state  # sent with the next report

    def _state_checkpoint(self, checkpoint_class=None):
        if self._pending_state is None:
            return None
        import torch

        if checkpoint_class is None:
            from ray.tune import Checkpoint as checkpoint_class
        folder = Path(tempfile.mkdtemp(prefix="trial-state-"))
        torch.save(self._pending_state, folder / STATE_FILE)
        self._pending_state = None
        return checkpoint_class.from_directory(str(folder))

    @staticmethod
    def _read_state(checkpoint) -> dict[str, Any] | None:
        if checkpoint is None:
            return None
        import torch

        with checkpoint.as_directory() as folder:
            path = Path(folder) / STATE_FILE
            if not path.exists():
                return None
            return torch.load(path, weights_only=False)


class TuneReporter(_ReporterBase):
    """Reports straight into the Tune session: plain workloads, and torch workloads in
    Train's local mode (same process as the Tune function)."""

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        from ray import tune

        row = finite_metrics(metrics)
        self.last = row
        tune.report({**row, "final": 0.0, **({} if step is None else {"step": step})},
                    checkpoint=self._state_checkpoint())

    def load_checkpoint(self):
        from ray import tune

        return self._read_state(tune.get_checkpoint())


class TrainReporter(_ReporterBase):
    """Reports from Ray Train workers (num_workers > 0): every rank reports at the same
    points (Train V2's report is a collective), rank 0's metrics reach Tune and only rank
    0 sends the state checkpoint that lets Train restart failed workers from it."""

    def __init__(self, device: str, world_size: int, world_rank: int, kill: str | None = None):
        import ray.train

        super().__init__(device, world_size, world_rank)
        self.resumed = False
        self._kill_step = None
        if kill and ray.train.get_checkpoint() is None:  # first attempt only
            rank, step = (int(x) for x in kill.split(":"))
            self._kill_step = step if rank == world_rank else None

    def prepare_model(self, model):
        from ray.train.torch import prepare_model

        # DDP with more than one worker (gloo on CPU, nccl on GPU); unused parameters are
        # allowed (an ablated module's weights get no gradient)
        return prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        import ray.train

        row = finite_metrics(metrics)
        self.last = row
        checkpoint = self._state_checkpoint(ray.train.Checkpoint) if self.world_rank == 0 else None
        self._pending_state = None
        ray.train.report({**row, "final": 0.0, **({} if step is None else {"step": step})}, checkpoint=checkpoint,
                         delete_local_checkpoint_after_upload=checkpoint is not None)
        if self._kill_step is not None and step == self._kill_step:
            time.sleep(2.0)  # Train's controller polls the workers for the new checkpoint
            os._exit(1)

    def load_checkpoint(self):
        import ray.train

        state = self._read_state(ray.train.get_checkpoint())
        self.resumed = self.resumed or state is not None
        return state


def _params_for(payload: dict[str, Any], config: dict[str, Any]):
    from pipeline.config import deep_merge, nest
    from pipeline.workloads import get

    workload = get(payload["workload"])
    values = deep_merge(payload["params"], nest(config))
    # --- artifact params: an MLflow artifact URI in params (runs:/<id>/<path>,
    # mlflow-run:<run name>/<path>) becomes a local file before the workload sees it
    from pipeline.artifacts import has_artifact_uri, resolve_params

    if has_artifact_uri(values):
        values = resolve_params(values, payload.get("tracking_uri") or _default_tracking_uri())
    # --- end artifact params
    return workload, workload.make_params(values)


def _torch_threads(cpus: float) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, int(cpus)))
    except ImportError:
        pass


def _train_loop(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    """Runs on each Ray Train worker, or in-process in local mode, where `ray.train.report`
    is refused inside a Tune function: there the result is returned instead."""
    import ray.train

    payload, config = loop_config["payload"], loop_config["config"]
    workload, params = _params_for(payload, config)
    local = payload["scaling"]["num_workers"] == 0
    if local:
        reporter: _ReporterBase = TuneReporter(device=_device(payload))
    else:
        import ray.train.torch

        context = ray.train.get_context()
        reporter = TrainReporter(device=str(ray.train.torch.get_device()),
                                 world_size=context.get_world_size(), world_rank=context.get_world_rank(),
                                 kill=payload.get("test_kill"))
    _torch_threads(payload["scaling"]["trial_cpus"] if local else payload["scaling"]["resources_per_worker"].get("CPU", 1))
    metrics = finite_metrics(workload.run(params, reporter))
    if local:
        return {"metrics": metrics, "artifact_dir": str(reporter.artifact_dir)}
    from ray.train import Checkpoint

    checkpoint = Checkpoint.from_directory(str(reporter.artifact_dir)) if reporter.world_rank == 0 else None
    # resumed_from_checkpoint: this attempt started from a Train checkpoint (a worker was lost)
    ray.train.report({**metrics, "final": 1.0, "world_size": float(reporter.world_size),
                      "resumed_from_checkpoint": float(reporter.resumed)}, checkpoint=checkpoint)
    return None


def trial_resources(scaling: dict[str, Any]) -> dict[str, float]:
    """What Tune reserves for one trial's function. Local mode trains in it: trial_cpus
    (and a GPU with use_gpu). With Train workers it only waits on its TorchTrainer, and a
    CPU held there would be one its workers may need: 2 trials x (1 + 2 workers) on 2
    cores would never start, while workers alone queue for their placement group."""
    if scaling["num_workers"] == 0:
        return {"cpu": scaling["trial_cpus"], **({"gpu": 1} if scaling["use_gpu"] else {})}
    return {"cpu": TRIAL_WAITER_CPUS}


def trial_cpu_demand(scaling: dict[str, Any]) -> float:
    """CPUs one trial holds at once: its function's reservation plus its Train workers'."""
    workers = scaling["num_workers"] * scaling["resources_per_worker"].get("CPU", 1)
    return trial_resources(scaling)["cpu"] + workers


def _device(payload: dict[str, Any]) -> str:
    if not payload["scaling"]["use_gpu"]:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_trial(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """The Tune function. `payload` is the resolved task, made plain for pickling."""
    from ray import tune

    from pipeline.space import SearchSpace, violated

    workload, params = _params_for(payload, config)
    reason = violated(SearchSpace.model_validate(payload["space"]), params)
    if reason is not None:
        nan = {o["metric"]: math.nan for o in payload["objectives"]}
        tune.report({**nan, "rejected": 1.0, "final": 0.0, "reject_reason": reason})
        return

    if not workload.uses_torch:
        _torch_threads(payload["scaling"]["trial_cpus"])
        reporter = TuneReporter(device=_device(payload))
        metrics = finite_metrics(workload.run(params, reporter))
        _final_report(metrics, reporter.artifact_dir)
        return

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    scaling = payload["scaling"]
    callbacks = []
    if scaling["num_workers"] > 0:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    context = tune.get_context()
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"payload": payload, "config": config},
        scaling_config=ScalingConfig(num_workers=scaling["num_workers"], use_gpu=scaling["use_gpu"],
                                     resources_per_worker=scaling["resources_per_worker"]
                                     if scaling["num_workers"] > 0 else None),
        run_config=RunConfig(
            name=f"train-{context.get_trial_id()}",
            storage_path=payload["storage_path"],
            failure_config=FailureConfig(max_failures=payload["max_retries"]),
            checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=callbacks,
        ),
    )
    result = trainer.fit()
    returned = getattr(result, "return_value", None)
    if scaling["num_workers"] == 0 and returned:
        _final_report(returned["metrics"], Path(returned["artifact_dir"]))
        return
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    metrics.pop("final", None)
    folder = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as path:
            folder = Path(tempfile.mkdtemp(prefix="trial-artifacts-"))
            shutil.copytree(path, folder, dirs_exist_ok=True)
    _final_report(metrics, folder)


def _final_report(metrics: dict[str, float], artifact_dir: Path | None) -> None:
    from ray import tune
    from ray.tune import Checkpoint

    checkpoint = None
    if artifact_dir is not None and any(Path(artifact_dir).iterdir()):
        checkpoint = Checkpoint.from_directory(str(artifact_dir))
    tune.report({**metrics, "final": 1.0}, checkpoint=checkpoint)


def trial_payload(resolved, storage_path: str) -> dict[str, Any]:
    """What every trial needs from the resolved task, as plain data."""
    task = resolved.task
    return {
        "workload": task.workload,
        "params": task.params,
        "space": resolved.space.model_dump(),
        "objectives": [o.model_dump() for o in task.objectives],
        "scaling": task.scaling.model_dump(),
        "max_retries": task.failure.max_retries,
        "storage_path": storage_path,
        "pid": os.getpid(),
        "test_kill": os.environ.get(KILL_ENV),  # tests only (KILL_ENV)
        # --- artifact params: the store that artifact URIs in params are read from
        "tracking_uri": task.mlflow.tracking_uri or _default_tracking_uri(),
        # --- end artifact params
    }


# --- artifact params
def _default_tracking_uri() -> str:
    from pipeline import paths

    return paths.default_tracking_uri()
# --- end artifact params
