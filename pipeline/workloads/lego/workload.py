"""Pipeline entry points of the Lego sketch (seed 003).

`lego`: train one brick on synthetic Zipf meta-tasks (§3.2), save it as `brick.pt`, then
evaluate it without retraining at several brick counts against CountMin and Count-Sketch
at equal bytes (§5.2-5.3). `lego_eval`: evaluate a saved brick on a user's stream file at
a list of budgets.

    python -m pipeline.run tasks/lego.yaml           # quick profile
    python -m pipeline.run tasks/lego_eval.yaml params.checkpoint=path/to/brick.pt
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from pipeline.workloads.base import Params, Reporter, Workload, write_rows
from pipeline.workloads.lego.evaluate import METHODS, evaluate, plot_are_vs_bytes
from pipeline.workloads.lego.model import (Ablations, BrickGeometry, ItemEstimate, LegoSketch, gate_item_estimate,
                                           load_brick, save_brick)
from pipeline.workloads.lego.train import SelfGuidedLoss, TrainConfig, train_brick


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


class LegoParams(Params):
    seed: int = Field(0, description="seeds the hashes, the weights and every stream")
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = torch's default)")
    # brick geometry (seed 003 §3.1, appendix C)
    depth: int = Field(5, ge=1, le=32, description="hash rows per brick = embedding size")
    slots: int = Field(5120, ge=10, description="slots per row; a brick is depth x slots x 4 bytes")
    basis_size: int = Field(80, ge=1, description="length of the learnable vector of the hash embedding")
    basis_init: str = Field("power", description="learnable vector init: 'power[k]' (u^k, k=6 by default; ours), "
                            "'log_uniform' (ours) or 'authors' (flat + noise)")
    value_floor: float = Field(0.001, gt=0, lt=1, description="learnable values are clamped to [value_floor, 1] "
                               "(appendix C; the seed text as extracted lost the range; 0.001 was ours until now)")
    # ablations of §5.5
    learnable_vector: bool = Field(True, description="False: ablation, fixed hashed vector")
    normalize: bool = Field(True, description="False: ablation, no embedding normalisation")
    scanning: bool = Field(True, description="False: ablation, no memory scanning")
    self_guided: bool = Field(True, description="False: ablation, conventional learnable-weight loss")
    # meta-task training (§3.2)
    steps: int = Field(1200, ge=1, description="optimiser steps (authors: 500K x 8 tasks)")
    tasks_per_step: int = Field(8, ge=1, description="meta-tasks per step")
    distinct_min: int = Field(1000, ge=1, description="fewest distinct items in a meta-task")
    distinct_max: int = Field(50000, ge=1, description="most distinct items in a meta-task")
    skew_min: float = Field(0.5, gt=0, description="lowest Zipf skew of a meta-task")
    skew_max: float = Field(1.5, gt=0, description="highest Zipf skew (authors: 1.0; we cover the evaluation range)")
    scale_min: float = Field(0.5, gt=0, description="smallest stream-length multiplier")
    scale_max: float = Field(10.0, gt=0, description="largest stream-length multiplier")
    query_per_task: int = Field(2048, ge=0, description="items queried per task for the loss (0 = all)")
    lr: float = Field(3e-3, gt=0, description="learning rate of the networks (authors: 1e-3 for 500K steps)")
    embedding_lr_ratio: float = Field(0.01, gt=0, description="learnable vector lr / lr (authors: 0.1). Ours: "
                                      "0.01, as in a short run the decoder's gradient lifts the vector's small "
                                      "values and worsens the rule-based read used at large budgets")
    final_lr_ratio: float = Field(0.1, gt=0, le=1, description="lr decays exponentially to this fraction")
    report_every: int = Field(100, ge=1, description="training steps between reports")
    # evaluation (§5.2-5.3): budgets are brick counts, the brick is never retrained
    brick_count: int = Field(12, ge=1, description="bricks of the budget whose ARE/bytes are the objectives")
    eval_brick_counts: list[int] = Field([3, 6, 12, 21], description="brick counts of the table and plot")
    eval_skews: list[float] = Field([0.5, 0.9, 1.1, 1.5], description="Zipf skews of the evaluation streams")
    eval_distinct: int = Field(100000, ge=1, description="distinct items of each evaluation stream")
    methods: list[str] = Field(["lego", "lego_rule", "countmin", "countsketch"],
                               description=f"evaluated methods, of {', '.join(METHODS)}")
    item_threshold: float = Field(10000.0, ge=0, description="ensemble: neural estimate above this many scanned items")
    skew_threshold: float = Field(1.6, description="ensemble: neural estimate below this scanned skew "
                                  "(authors: 1.0, their training range's top; ours trains up to 1.5)")
    item_estimate: ItemEstimate = Field(
        "scan", description="ensemble gate's item count: 'scan' (the scanner's, authors) or "
        "'linear_counting' (ours: from the brick's empty slots)")
    heavy_fraction: float = Field(0.25, gt=0, lt=1, description="D-CMS/D-Lego: budget share of the heavy part")

    @field_validator("basis_init")
    @classmethod
    def _basis_init(cls, value: str) -> str:
        power = value[5:] if value.startswith("power") else None
        if value not in ("log_uniform", "authors") and not (power is not None and (not power or _positive(power))):
            raise ValueError(f"basis_init must be 'log_uniform', 'authors' or 'power[k]' (k > 0), got {value!r}")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(METHODS))
        if unknown or not value:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; unknown: {unknown}")
        return value

    @field_validator("eval_brick_counts")
    @classmethod
    def _bricks(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError(f"eval_brick_counts must be non-empty and >= 1 (a budget below one brick), got {value}")
        return value

    @field_validator("eval_skews")
    @classmethod
    def _skews(cls, value: list[float]) -> list[float]:
        if not value or min(value) <= 0:
            raise ValueError(f"eval_skews must be non-empty and > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> "LegoParams":
        for low, high in (("distinct_min", "distinct_max"), ("skew_min", "skew_max"), ("scale_min", "scale_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        return self

    def geometry(self, embedding: str = "hash") -> BrickGeometry:
        """The brick: the Lego hash embedding, or "mlp" for the meta-sketch-like baseline."""
        return BrickGeometry(self.depth, self.slots, self.basis_size, self.seed, embedding)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, tasks_per_step=self.tasks_per_step,
                           distinct_range=(self.distinct_min, self.distinct_max),
                           skew_range=(self.skew_min, self.skew_max), scale_range=(self.scale_min, self.scale_max),
                           query_per_task=self.query_per_task, lr=self.lr, embedding_lr_ratio=self.embedding_lr_ratio,
                           final_lr_ratio=self.final_lr_ratio, self_guided=self.self_guided,
                           report_every=self.report_every, seed=self.seed)


def _build(params: LegoParams, embedding: str = "hash") -> LegoSketch:
    ablations = Ablations(params.learnable_vector, params.normalize, params.scanning)
    return LegoSketch(params.geometry(embedding), ablations, value_range=(params.value_floor, 1.0),
                      basis_init=params.basis_init)


def _summary(rows: list[dict], bricks: int, method: str) -> dict[str, float]:
    chosen = [r for r in rows if r["bricks"] == bricks and r["method"] == method]
    return {"are": float(np.mean([r["are"] for r in chosen])), "aae": float(np.mean([r["aae"] for r in chosen]))}


def run(params: LegoParams, report: Reporter) -> dict[str, float]:
    if params.threads:
        torch.set_num_threads(params.threads)
    torch.manual_seed(params.seed)
    device = report.device
    core = _build(params).to(device)
    started = time.perf_counter()
    # data-parallel over the reporter's workers (train_brick wraps its step in DDP)
    history = train_brick(core, params.train_config(), device=device,
                          on_report=lambda metrics, step: report(metrics, step=step), report=report)
    train_seconds = time.perf_counter() - started
    if report.world_rank > 0:
        # rank 0 evaluates the (identical) brick and writes the files; the other workers
        # make the same number of reports (a collective under Ray Train) and stop
        report({"train_loss": float(history[-1]), "train_seconds": train_seconds}, step=params.steps + 1)
        return {"train_loss": float(history[-1])}
    artifacts = Path(report.artifact_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    save_brick(core, artifacts / "brick.pt", extra={"params": params.model_dump(), "loss": history})
    ms_model = None
    if "ms" in params.methods:  # the meta-sketch-like MANN: same training, MLP embedding
        ms_model = _build(params, embedding="mlp").to(device)
        train_brick(ms_model, params.train_config(), device=device)
    brick_counts = sorted(set(params.eval_brick_counts) | {params.brick_count})
    rows = evaluate(core, params.eval_skews, brick_counts, params.eval_distinct, params.methods, seed=params.seed,
                    device=device, item_threshold=params.item_threshold, skew_threshold=params.skew_threshold,
                    item_estimate=params.item_estimate,
                    heavy_fraction=params.heavy_fraction, ms_model=ms_model)
    write_rows(artifacts / "lego_eval.csv", rows)
    plot_are_vs_bytes(rows, artifacts)
    lego = _summary(rows, params.brick_count, "lego")
    metrics = {"are": lego["are"], "aae": lego["aae"], "bytes": float(params.brick_count * core.geometry.brick_bytes),
               "train_loss": float(history[-1])}
    for method, key in (("countmin", "are_countmin"), ("countsketch", "are_countsketch")):
        if method in params.methods:
            metrics[key] = _summary(rows, params.brick_count, method)["are"]
    if "are_countmin" in metrics:
        metrics["are_ratio_countmin"] = metrics["are"] / max(metrics["are_countmin"], 1e-12)
    # wall time is reported, not returned: returned metrics repeat exactly for a seed
    report({**metrics, "train_seconds": train_seconds}, step=params.steps + 1)
    return metrics


def _baselines(params: LegoParams) -> list[dict]:
    """CountMin and Count-Sketch (3 rows) on the evaluation streams at each brick count's
    bytes: the classic fronts drawn beside Lego's."""
    from pipeline.workloads.lego.streams import eval_stream
    from pipeline.workloads.sketches import CountMin, CountSketch, aae, are

    streams = [eval_stream(params.eval_distinct, alpha, params.seed) for alpha in params.eval_skews]
    rows = []
    for bricks in params.eval_brick_counts:
        n_bytes = bricks * params.geometry().brick_bytes
        for name, cls in (("countmin", CountMin), ("countsketch", CountSketch)):
            errors = []
            for items, counts in streams:
                sketch = cls.for_bytes(n_bytes, depth=3, seed=params.seed)
                sketch.update(items, counts)
                est = sketch.query(items)
                errors.append((are(est, counts), aae(est, counts)))
            rows.append({"method": name, "are": float(np.mean([e[0] for e in errors])),
                         "aae": float(np.mean([e[1] for e in errors])), "bytes": float(n_bytes)})
    return rows


def _validate(params: LegoParams) -> None:
    if "dlego" in params.methods and min(params.eval_brick_counts) < 2:
        raise ValueError("methods: dlego needs eval_brick_counts >= 2 (a light part of whole bricks plus a heavy part)")


WORKLOAD = Workload(
    name="lego",
    params=LegoParams,
    run=run,
    metrics=("are", "aae", "bytes", "train_loss", "train_seconds", "are_countmin", "are_countsketch",
             "are_ratio_countmin", "loss", "val_are_neural", "val_are_rule"),
    description="Lego sketch (seed 003): train one memory brick on Zipf meta-tasks, evaluate at brick counts",
    uses_torch=True,
    smoke_params={"steps": 3, "tasks_per_step": 2, "distinct_min": 200, "distinct_max": 800, "slots": 256,
                  "basis_size": 16, "query_per_task": 128, "report_every": 1, "brick_count": 2,
                  "eval_brick_counts": [1, 2], "eval_skews": [1.1], "eval_distinct": 2000, "threads": 1},
    baselines=_baselines,
    validate=_validate,
)


# -- lego_eval: a saved brick on a user's stream ---------------------------------------------
class LegoEvalParams(Params):
    checkpoint: str = Field("", description="brick.pt saved by the lego workload: a path, or an MLflow artifact "
                            "runs:/<run_id>/brick.pt or mlflow-run:<run name>/brick.pt; '' = an untrained brick")
    stream_file: str = Field("", description="one item per line, or a .npy of integers; '' = Zipf streams")
    stream_column: str | None = Field(None, description="stream_file is a CSV: the column whose values are the items")
    budgets_kb: list[float] = Field([300, 1200, 2100], description="memory budgets in KB (1024 B), each >= one brick")
    depth: int | None = Field(None, description="expected brick depth (None = accept the checkpoint's)")
    slots: int | None = Field(None, description="expected slots per row (None = accept the checkpoint's)")
    basis_size: int | None = Field(None, description="expected learnable vector length (None = accept)")
    eval_skews: list[float] = Field([0.9, 1.1, 1.5], description="Zipf skews when no stream file is given")
    eval_distinct: int = Field(100000, ge=1, description="distinct items of the Zipf streams")
    methods: list[str] = Field(["lego", "countmin", "countsketch"], description=f"of {', '.join(METHODS)}")
    item_threshold: float = Field(10000.0, ge=0, description="ensemble: neural estimate above this many scanned items")
    skew_threshold: float = Field(1.6, description="ensemble: neural estimate below this scanned skew "
                                  "(authors: 1.0, their training range's top; ours trains up to 1.5)")
    item_estimate: ItemEstimate | None = Field(
        None, description="ensemble gate's item count: 'scan' (the scanner's, authors) or 'linear_counting' "
        "(ours: from the brick's empty slots); None = what the brick was trained with")
    heavy_fraction: float = Field(0.25, gt=0, lt=1, description="D-CMS/D-Lego: budget share of the heavy part")
    seed: int = Field(0, description="seeds the streams and the classic sketches")

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - (set(METHODS) - {"ms"}))
        if unknown or not value:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(m for m in METHODS if m != 'ms')}")
        return value

    @field_validator("budgets_kb")
    @classmethod
    def _budgets(cls, value: list[float]) -> list[float]:
        if not value or min(value) <= 0:
            raise ValueError(f"budgets_kb must be non-empty and positive, got {value}")
        return value


def _load_for_eval(params: LegoEvalParams) -> LegoSketch:
    if not params.checkpoint:  # untrained: its rule-based read is still a sketch
        defaults = BrickGeometry()
        return LegoSketch(BrickGeometry(params.depth or defaults.depth, params.slots or defaults.slots,
                                        params.basis_size or defaults.basis_size, params.seed))
    model = load_brick(params.checkpoint)
    for field in ("depth", "slots", "basis_size"):
        expected = getattr(params, field)
        actual = getattr(model.geometry, field)
        if expected is not None and expected != actual:
            raise ValueError(f"checkpoint {params.checkpoint}: trained with {field}={actual}, params ask for {expected}")
    return model


def _eval_brick_counts(params: LegoEvalParams, brick_bytes: int) -> list[int]:
    counts = []
    for kb in params.budgets_kb:
        bricks = int(kb * 1024 // brick_bytes)
        if bricks < 1:
            raise ValueError(f"budgets_kb: {kb} KB is smaller than one brick ({brick_bytes / 1024:g} KB)")
        counts.append(bricks)
    return counts


#: checkpoint values the pipeline resolves to a local file before `run` (pipeline/artifacts.py)
ARTIFACT_URI_PREFIXES = ("runs:/", "mlflow-run:")


def _validate_eval(params: LegoEvalParams) -> None:
    if params.checkpoint.startswith(ARTIFACT_URI_PREFIXES):
        # an MLflow artifact: downloaded by the trial, then checked by run_eval like a file
        if params.stream_file:
            from pipeline.workloads.lego.streams import read_stream_file

            read_stream_file(params.stream_file, params.stream_column)
        return
    model = _load_for_eval(params)
    _eval_brick_counts(params, model.geometry.brick_bytes)
    if params.stream_file:
        from pipeline.workloads.lego.streams import read_stream_file

        read_stream_file(params.stream_file, params.stream_column)
    if "dlego" in params.methods and min(_eval_brick_counts(params, model.geometry.brick_bytes)) < 2:
        raise ValueError("methods: dlego needs budgets of at least two bricks")


def run_eval(params: LegoEvalParams, report: Reporter) -> dict[str, float]:
    from pipeline.workloads.lego.streams import read_stream_file

    model = _load_for_eval(params).to(report.device)
    brick_counts = _eval_brick_counts(params, model.geometry.brick_bytes)
    streams = None
    if params.stream_file:
        streams = {Path(params.stream_file).name: read_stream_file(params.stream_file, params.stream_column)}
    rows = evaluate(model, params.eval_skews, brick_counts, params.eval_distinct, params.methods, seed=params.seed,
                    device=report.device, item_threshold=params.item_threshold, skew_threshold=params.skew_threshold,
                    item_estimate=gate_item_estimate(model, params.item_estimate),
                    heavy_fraction=params.heavy_fraction, streams=streams)
    artifacts = Path(report.artifact_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    write_rows(artifacts / "lego_eval.csv", rows)
    plot_are_vs_bytes(rows, artifacts)
    metrics: dict[str, float] = {}
    for step, bricks in enumerate(brick_counts):
        metrics = {"bytes": float(bricks * model.geometry.brick_bytes)}
        for method in params.methods:
            summary = _summary(rows, bricks, method)
            key = "" if method == "lego" else f"_{method}"
            metrics[f"are{key}"], metrics[f"aae{key}"] = summary["are"], summary["aae"]
        report(metrics, step=step)
    return metrics  # the last (largest listed) budget


EVAL_WORKLOAD = Workload(
    name="lego_eval",
    params=LegoEvalParams,
    run=run_eval,
    metrics=("are", "aae", "bytes") + tuple(f"{x}_{m}" for m in METHODS if m not in ("lego", "ms") for x in ("are", "aae")),
    description="evaluate a trained Lego brick on a stream file at a list of budgets",
    uses_torch=False,  # inference only: no Train worker needed (tensors still go to report.device)
    smoke_params={"budgets_kb": [100, 200], "eval_skews": [1.1], "eval_distinct": 2000},
    validate=_validate_eval,
)
