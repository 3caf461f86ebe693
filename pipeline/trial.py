"""One trial: the function Ray Tune runs per sampled point.

Plain workloads (classic structures) run inside the Tune function with a
`TuneReporter`. Torch workloads (`uses_torch=True`) are fitted by a Ray Train
`TorchTrainer` built inside the trial (Ray 2.60 runs Train V2: a trainer can no longer
be handed to a Tuner): `ScalingConfig(num_workers=0)` is Train's local mode (same
process, no actors) for CPU quick runs; `num_workers > 0` starts workers, with
`use_gpu` on a cluster, whose reports reach Tune through Train's `TuneReportCallback`.

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
from pathlib import Path
from typing import Any

from pipeline.workloads.base import finite_metrics

STATE_FILE = "trial_state.pt"


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

    def _state_checkpoint(self):
        if self._pending_state is None:
            return None
        import torch
        from ray.tune import Checkpoint

        folder = Path(tempfile.mkdtemp(prefix="trial-state-"))
        torch.save(self._pending_state, folder / STATE_FILE)
        self._pending_state = None
        return Checkpoint.from_directory(str(folder))

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
    """Reports from Ray Train workers (num_workers > 0): every rank reports, rank 0's
    metrics reach Tune; the state checkpoint lets Train restart failed workers."""

    def prepare_model(self, model):
        from ray.train.torch import prepare_model

        return prepare_model(model)

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        import ray.train

        row = finite_metrics(metrics)
        self.last = row
        checkpoint = self._state_checkpoint() if self.world_rank == 0 else None
        self._pending_state = None
        ray.train.report({**row, "final": 0.0, **({} if step is None else {"step": step})}, checkpoint=checkpoint)

    def load_checkpoint(self):
        import ray.train

        return self._read_state(ray.train.get_checkpoint())


def _params_for(payload: dict[str, Any], config: dict[str, Any]):
    from pipeline.config import deep_merge, nest
    from pipeline.workloads import get

    workload = get(payload["workload"])
    values = deep_merge(payload["params"], nest(config))
    # --- artifact params (issue 4): an MLflow artifact URI in params (runs:/<id>/<path>,
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
                                 world_size=context.get_world_size(), world_rank=context.get_world_rank())
    _torch_threads(payload["scaling"]["trial_cpus"] if local else payload["scaling"]["resources_per_worker"].get("CPU", 1))
    metrics = finite_metrics(workload.run(params, reporter))
    if local:
        return {"metrics": metrics, "artifact_dir": str(reporter.artifact_dir)}
    from ray.train import Checkpoint

    checkpoint = Checkpoint.from_directory(str(reporter.artifact_dir)) if reporter.world_rank == 0 else None
    ray.train.report({**metrics, "final": 1.0}, checkpoint=checkpoint)
    return None


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

    from ray.train import FailureConfig, RunConfig, ScalingConfig
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
        # --- artifact params (issue 4): the store that artifact URIs in params are read from
        "tracking_uri": task.mlflow.tracking_uri or _default_tracking_uri(),
        # --- end artifact params
    }


# --- artifact params (issue 4)
def _default_tracking_uri() -> str:
    from pipeline import paths

    return paths.default_tracking_uri()
# --- end artifact params
