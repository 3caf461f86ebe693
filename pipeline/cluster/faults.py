"""Fault injection for the failure tests: the `smoke` workload, plus a process that dies.

`smoke_kill` trains exactly like `smoke` (pipeline/workloads/smoke.py) and, on its first
attempt only, kills its own process with SIGKILL right after reporting epoch
`kill_at_epoch`: to Ray this is a training worker lost mid-trial (an OOM kill, a spot
node gone), not an exception. A retried attempt starts from the last checkpoint, so it
does not die again and must end with the loss an uninterrupted run has. Each attempt
appends one JSON line to `marker_dir/attempts.jsonl` (process, Ray node, GPUs, first
epoch), which is how tests see where the worker ran and whether it resumed.

This is test machinery, not a workload for users: it is registered only by
`register()`, which the local test cluster runs in every Ray worker
(pipeline.cluster.local.worker_setup) and in the driver.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.workloads import smoke
from pipeline.workloads.base import Reporter, Workload

NAME = "smoke_kill"


class KillParams(smoke.SmokeParams):
    kill_at_epoch: int = Field(-1, description="SIGKILL own process after reporting this epoch, first attempt only")
    marker_dir: str = Field("", description="folder for attempts.jsonl (one line per attempt); empty: none")
    pause_s: float = Field(2.0, ge=0, description="wait before the kill so Train registers the last checkpoint")


class _KillingReporter:
    """Forwards everything to the real reporter; dies after the chosen report."""

    def __init__(self, inner: Reporter, kill_at_epoch: int, pause_s: float):
        self._inner = inner
        self._kill_at_epoch = kill_at_epoch
        self._pause_s = pause_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._inner(metrics, step=step)
        if step is not None and step == self._kill_at_epoch:
            time.sleep(self._pause_s)  # Train's controller polls workers for new checkpoints
            os.kill(os.getpid(), signal.SIGKILL)


def _where() -> dict[str, Any]:
    try:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    except Exception:  # noqa: BLE001 - outside Ray (plain tests)
        return {"node_id": None, "gpu_ids": []}


def run(params: KillParams, report: Reporter) -> dict[str, float]:
    state = report.load_checkpoint()
    first_epoch = 0 if state is None else int(state["epoch"]) + 1
    if params.marker_dir:
        line = {"pid": os.getpid(), "first_epoch": first_epoch, "device": str(report.device),
                "world_rank": report.world_rank, **_where()}
        with open(Path(params.marker_dir) / "attempts.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
    smoke_params = smoke.SmokeParams(**params.model_dump(include=set(smoke.SmokeParams.model_fields)))
    if state is None and params.kill_at_epoch >= 0:
        report = _KillingReporter(report, params.kill_at_epoch, params.pause_s)
    return smoke.run(smoke_params, report)


KILL_SMOKE = Workload(
    name=NAME,
    params=KillParams,
    run=run,
    metrics=smoke.WORKLOAD.metrics,
    description="smoke, whose first attempt kills its own process (failure tests only)",
    uses_torch=True,
    smoke_params={"epochs": 2, "points": 64},
)


def register() -> None:
    """Put `smoke_kill` in the workload registry of this process."""
    from pipeline import workloads

    workloads._REGISTRY.setdefault(NAME, "pipeline.cluster.faults:KILL_SMOKE")


def attempts(marker_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(marker_dir) / "attempts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
