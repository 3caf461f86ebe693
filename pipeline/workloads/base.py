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
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

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
