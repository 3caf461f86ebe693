"""The contract between the pipeline and a workload.

A workload is science code: numpy, numba or torch. It imports neither Ray nor MLflow
(STYLE.md, rule 1), so it runs and tests alone. The pipeline knows it only through a
`Workload` record:

- `params`: a pydantic model with `extra="forbid"`: the schema of the task file's
  `params:` block. Search-space keys are names of its fields.
- `run(params, report) -> dict[str, float]`: trains or builds, calls `report(...)`
  one or more times with metrics, and returns the final metrics.
- `metrics`: every metric name `run` may return; a task's objectives must be among them.

`report` is a `Reporter`. Under Ray it forwards to Ray Train or Tune; in tests and
scripts `LocalReporter` just records what it was given.

Data-parallel training (`scaling.num_workers >= 2`): every worker runs the same `run`
with the same seed. The configured batch is the GLOBAL batch: each worker draws it whole
(same generator) and trains on its own contiguous `shard` of it, its loss scaled by
`shard.weight` so that DDP's gradient average equals the gradient of the whole batch's
mean loss; the learning rate is the configured one. A data-parallel run thus follows the
local run of the same task, step for step (up to float summation order and any noise a
model draws from torch's generator per example). Every worker calls `report` at the same
points (Ray Train's report is collective); only rank 0's values reach Tune, and only
rank 0 writes files into `artifact_dir`.
"""

from __future__ import annotations

import csv
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base class for a workload's params: unknown keys are errors, values are validated
    on assignment, and numbers written as strings in YAML (`1e-4`) are coerced."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@runtime_checkable
class Reporter(Protocol):
    """What a workload may call while it runs."""

    #: "cpu" or "cuda[:i]": where tensors should live (from the task's `scaling.use_gpu`).
    device: str
    #: Files written here are logged as artifacts of the trial's MLflow run.
    artifact_dir: Path
    #: Number of data-parallel training workers (1 in local mode) and this one's rank.
    world_size: int
    world_rank: int

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Report intermediate metrics (one call per epoch or evaluation step)."""

    def prepare_model(self, model: Any) -> Any:
        """Wrap a torch module for data-parallel training (DDP under Ray Train with
        more than one worker) and move it to `device`; identity otherwise."""

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Keep a picklable training state so a retried trial resumes from it."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last state given to `save_checkpoint` by an earlier attempt, or None."""


@dataclass(frozen=True)
class Shard:
    """This worker's part [start, stop) of a global batch of `total` examples."""

    start: int
    stop: int
    total: int
    world_size: int

    @property
    def weight(self) -> float:
        """Multiply this worker's mean loss by it: the average over workers of the scaled
        losses is then the mean loss over the whole batch, even for unequal shards."""
        return (self.stop - self.start) * self.world_size / self.total

    def take(self, values):
        return values[self.start:self.stop]


def shard(report: Any, total: int) -> Shard:
    """The contiguous slice of a global batch of `total` examples this worker trains on
    (the whole batch in local mode). A batch smaller than the worker count is an error:
    a worker with nothing to train on would stall DDP's gradient average."""
    world_size, rank = getattr(report, "world_size", 1), getattr(report, "world_rank", 0)
    if total < world_size:
        raise ValueError(f"a global batch of {total} cannot be split over {world_size} workers "
                         "(scaling.num_workers); raise the batch size or lower num_workers")
    base, extra = divmod(total, world_size)
    start = rank * base + min(rank, extra)
    return Shard(start, start + base + (rank < extra), total, world_size)


def mean_over_workers(report: Any, value: float) -> float:
    """The mean of `value` over the data-parallel workers (itself in local mode): a
    training loss averaged over the workers' weighted shards is the whole batch's loss.
    Collective: every worker must call it at the same point."""
    if getattr(report, "world_size", 1) <= 1:
        return float(value)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.to(getattr(report, "device", "cuda"))
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def wrap_data_parallel(model: Any, device: str = "cpu") -> Any:
    """DDP over the default process group when there is one of two or more processes
    (what Ray Train's prepare_model does; used by LocalReporter in spawned-process tests).
    Unused parameters are allowed: a workload's loss may skip a module (e.g. the
    scanner's weights when scanning is ablated)."""
    model = model.to(device) if hasattr(model, "to") else model
    try:
        import torch.distributed as dist
    except ImportError:
        return model
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device] if str(device).startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: Any) -> Any:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


@dataclass
class LocalReporter:
    """A Reporter for tests and plain scripts: records every call."""

    device: str = "cpu"
    artifact_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="artifacts-")))
    world_size: int = 1
    world_rank: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = dict(metrics)
        if step is not None:
            row["step"] = step
        self.history.append(row)

    def prepare_model(self, model: Any) -> Any:
        if self.world_size > 1:  # processes of a torch.distributed group (tests, scripts)
            return wrap_data_parallel(model, self.device)
        return model.to(self.device) if hasattr(model, "to") else model

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.checkpoint = state

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.checkpoint


BaselineRows = list[dict[str, Any]]


@dataclass(frozen=True)
class Workload:
    """A registered workload. See the module docstring."""

    name: str
    params: type[Params]
    run: Callable[[Params, Reporter], dict[str, float]]
    metrics: tuple[str, ...]
    description: str = ""
    #: True: the pipeline runs `run` inside a Ray Train TorchTrainer (one per trial).
    uses_torch: bool = False
    #: Overrides that make the smallest config (seconds on one core): the conformance
    #: suite runs every workload with these.
    smoke_params: dict[str, Any] = field(default_factory=dict)
    #: Optional: classic peers on the same data, drawn beside the front. Returns rows
    #: `{"method": name, <metric>: value, ...}` with the same metric names as `metrics`.
    baselines: Callable[[Params], BaselineRows] | None = None
    #: Optional: checks across fields of params that pydantic validators cannot see
    #: (e.g. a file that must exist). Raise ValueError with a one-line message.
    validate: Callable[[Params], None] | None = None
    #: Optional: a summary of the whole run, made after the front from every trial's row
    #: (the driver's `trials.csv` frame), written as files into the given folder; the
    #: pipeline logs them under `report/` of the parent MLflow run (e.g. seed 001's
    #: Table 2 for `learned_index`).
    report: Callable[[Any, Path], None] | None = None

    def make_params(self, values: dict[str, Any]) -> Params:
        return self.params.model_validate(values)


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep numeric metrics as floats; raise on NaN/inf so that a broken trial is FAILED,
    not silently on the front."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {key!r} is not finite: {value}")
        out[key] = value
    return out


def write_rows(path: Path | str, rows: Iterable[dict[str, Any]]) -> Path:
    """Write `rows` (one dict each) as a CSV file with a header: the workloads' one CSV
    writer for their artifacts. The columns are every key in the order first seen; a row
    without a key leaves that cell empty."""
    rows = list(rows)
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return path
