"""Workload `e2e_nn`: end-to-end data-structure discovery for nearest-neighbour search
(seed 000 §2). Trains the model of `nn_model` on one distribution of `nn_data`, then
evaluates it and the classic baselines of `nn_baselines` on the same test instances.

    python -m pipeline.run tasks/nn_uniform_1d.yaml            # quick profile
    python -m pipeline.run tasks/nn_uniform_1d.yaml --profile paper
    python -m pipeline.run tasks/nn_uniform_1d.yaml --local params.lookups=4   # one trial, no Ray/MLflow

Artifacts: `accuracy_per_lookup.png` (model against every baseline), `accuracy_per_lookup.csv`,
`first_lookup_positions.png` (Figure 2 centre) and `.csv`, `model.pt`; on the hypersphere
`lookup_components.png` (Figure 19, appendix C.3; `nn_reverse`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline.workloads.base import Params, Reporter, Workload, finite_metrics, write_rows
from pipeline.workloads.e2e import nn_data

CURVE_METRICS = 16  # accuracy_lookup_i is returned for i <= min(M, 16)
BASELINE_METRICS = ("binary_search", "interpolation_search", "treap", "kd_tree", "lsh_best", "bucketing")
NATURAL_DIM = {"uniform1d": 1, "zipf1d": 1, "hard1d": 1, "uniform2d": 2, "hard2d": 2}


class NNParams(Params):
    """Settings of one training run (defaults: the paper's 1D uniform setting, §2.2 and A.1)."""

    distribution: Literal["uniform1d", "zipf1d", "hard1d", "uniform2d", "hard2d", "hypersphere", "digits", "file"] = Field(
        "uniform1d", description="dataset/query distribution (nn_data module docstring); points_file implies file")
    points_file: str | None = Field(None, description="a user's points (.npy of shape (n, d), or a CSV's numeric columns): "
                                    "instances draw N of them; replaces the distribution")
    queries_file: str | None = Field(None, description="with points_file: the query points (same d); None = held-out points")
    query_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="with points_file and no queries_file: share of the "
                                  "points held out as queries")
    points_columns: list[str] | None = Field(None, description="CSV points: the columns to use (None = every numeric one)")
    n: int = Field(100, ge=2, description="dataset size N")
    lookups: int = Field(7, ge=1, description="lookup budget M (number of query models)")
    extra_space: int = Field(0, ge=0, description="extra vectors T the data network may store (§2.5)")
    extra_mode: Literal["unrestricted", "coefficients", "copy"] = Field(
        "unrestricted", description="extra space: free vectors, linear combinations of the data (C.5), "
                                    "or copies of chosen points (ours; nn_model docstring)")
    dim: int | None = Field(None, ge=1, description="point dimension; None = the distribution's own (30 for hypersphere)")
    rho: float = Field(0.8, ge=0.0, le=1.0, description="hypersphere: inner product of query and its anchor point")
    zipf_alpha: float = Field(1.2, gt=0.0, description="zipf1d: query skew alpha")
    zipf_support: int = Field(200, ge=2, description="zipf1d: values are drawn from {1..zipf_support}")
    hard_base: float = Field(7.0, gt=1.0, description="hard1d/2d: the anti-concentration constant a of B.1")
    feature_dim: int = Field(1, ge=1, description="digits: output size of the CNN feature model F_phi")
    width: int = Field(64, ge=1, description="transformer embedding size")
    layers: int = Field(8, ge=1, description="transformer layers")
    heads: int = Field(8, ge=1, description="attention heads (must divide width)")
    query_hidden: int = Field(1024, ge=1, description="hidden size of each query MLP")
    query_layers: int = Field(3, ge=2, description="layers of each query MLP")
    lookup_temperature: float = Field(2.0, gt=0.0, description="Gumbel-softmax temperature of the lookups (A.1: 2)")
    loss: Literal["mse", "ce"] = Field("mse", description="squared error on the answer or cross-entropy on its position")
    loss_every_lookup: bool = Field(False, description="average the loss over all M lookups, not only the last (ours)")
    closest_read_loss: bool = Field(False, description="adaptive models: loss on the read closest to q, the §2.2 answer, "
                                                       "as for non-adaptive ones (ours)")
    lr: float = Field(1e-4, gt=0.0, description="Adam learning rate (A.1 grid: 1e-4, 5e-5, 1e-5)")
    weight_decay: float = Field(1e-3, ge=0.0, description="Adam weight decay (A.1: 1e-3)")
    batch_size: int = Field(1024, ge=1, description="instances per gradient step (A.1: 1024)")
    steps: int = Field(100_000, ge=1, description="gradient steps (the paper: up to 4M with early stopping)")
    grad_clip: float = Field(0.0, ge=0.0, description="max gradient norm; 0 = no clipping")
    eval_every: int = Field(1000, ge=1, description="steps between progress evaluations and reports")
    monitor_instances: int = Field(1000, ge=1, description="instances in each progress evaluation")
    eval_instances: int = Field(10_000, ge=1, description="test instances for the final evaluation (§2.1: 10k)")
    freeze_data_network: bool = Field(False, description="ablation E2E (frozen): data network keeps its initial weights")
    permute: bool = Field(True, description="False = ablation E2E (no-permute): the transformer outputs the points")
    adaptive: bool = Field(True, description="False = ablation E2E (non-adaptive): query models see only q")
    shared_query: bool = Field(False, description="one query model used M times (appendix F)")
    threads: int = Field(0, ge=0, description="torch intra-op threads for this run; 0 = torch's default")
    plots: bool = Field(True, description="write the PNG plots to the artifact dir")
    seed: int = Field(0, description="seed of weights, training and test instances")

    def point_dim(self) -> int:
        if self.points_file:
            return self.pool().dim
        if self.distribution == "hypersphere":
            return self.dim or 30
        return NATURAL_DIM.get(self.distribution, 1)

    def pool(self) -> nn_data.PointPool:
        """The user's points (cached per process): d must be `dim` when given, else the
        named distribution's own when it has one (uniform2d: 2), else the file's."""
        need = self.dim if self.dim is not None else (None if self.distribution == "file" else NATURAL_DIM.get(self.distribution))
        return nn_data.point_pool(self.points_file, self.queries_file, self.query_fraction,
                                  tuple(self.points_columns) if self.points_columns else None, need, self.n, self.seed)


def validate(params: NNParams) -> None:
    """Cross-field checks, so bad input fails before anything is trained."""
    if params.lookups > params.n + params.extra_space:
        raise ValueError(f"lookups M={params.lookups} exceeds the N+T={params.n + params.extra_space} positions")
    if params.distribution == "file" and not params.points_file:
        raise ValueError("distribution 'file' needs params.points_file")
    if params.points_file:
        params.pool()  # one line naming the file: missing, NaN / inf, wrong dimension, too few points
    natural = None if params.points_file else NATURAL_DIM.get(params.distribution)
    if params.dim is not None and natural is not None and params.dim != natural:
        raise ValueError(f"dim={params.dim} does not match distribution {params.distribution!r} (dimension {natural})")
    if params.dim is not None and params.distribution == "digits":
        raise ValueError("dim is not used by distribution 'digits' (images); set feature_dim instead")
    if params.width % params.heads:
        raise ValueError(f"width={params.width} is not divisible by heads={params.heads}")
    if params.distribution == "digits" and params.n > nn_data.DIGIT_LABELS:
        raise ValueError(f"n={params.n} exceeds the {nn_data.DIGIT_LABELS} distinct digit labels")
    if params.extra_space and not params.permute and params.extra_mode in ("coefficients", "copy"):
        raise ValueError(f"extra_mode={params.extra_mode!r} stores input points; it needs permute=true")


class _Resolved:
    """`params` with `dim` resolved, as `nn_train` expects."""

    def __init__(self, params: NNParams):
        self.__dict__.update(params.model_dump())
        self.dim = params.point_dim()
        self.pool = params.pool() if params.points_file else None
        if self.pool is not None:
            self.distribution = "file"


def run(params: NNParams, report: Reporter) -> dict[str, float]:
    validate(params)
    import torch  # imported here so listing workloads does not load torch

    if params.threads:
        torch.set_num_threads(params.threads)  # on a shared, loaded box 1 thread beats 2 contended ones

    from pipeline.workloads.e2e import nn_train

    resolved = _Resolved(params)
    started = time.perf_counter()

    def on_eval(step: int, metrics: dict[str, Any], state: dict[str, Any]) -> bool:
        row = {"accuracy": float(metrics["curve"][-1]), "loss": metrics["loss"], "train_loss": metrics["train_loss"],
               "mse": metrics["mse"]}
        if "sorted_fraction" in metrics:
            row["sorted_fraction"] = metrics["sorted_fraction"]
        report(row, step=step)
        report.save_checkpoint(state)
        return False

    model, last = nn_train.train(resolved, report.device, on_eval, prepare=report.prepare_model,
                                 resume=report.load_checkpoint(), report=report)
    # wall time goes to the report only: returned metrics must repeat for the same seed
    report({"train_seconds": time.perf_counter() - started}, step=params.steps)
    if report.world_rank > 0:
        # data-parallel: rank 0 evaluates the (identical) model and writes the files; the
        # others make the same number of reports (a collective under Ray Train) and stop
        row = {"train_loss": float(last["train_loss"])} if "train_loss" in last else {}
        report(row, step=params.steps)
        return row
    instances = nn_train.test_instances(resolved)
    evaluation = nn_train.evaluate(model, resolved, instances, report.device)
    baselines = nn_train.baseline_curves(resolved, instances)

    curve = evaluation["curve"]
    metrics: dict[str, float] = {
        "accuracy": float(curve[-1]), "mse": evaluation["mse"], "loss": evaluation["loss"],
        "lookups": float(params.lookups), "extra_space": float(params.extra_space), "dataset_size": float(params.n)}
    for i, value in enumerate(curve[:CURVE_METRICS], start=1):
        metrics[f"accuracy_lookup_{i}"] = float(value)
    for key in ("sorted_fraction", "retention_distance"):
        if key in evaluation:
            metrics[key] = evaluation[key]
    components = _reverse_engineer(params, evaluation, instances, metrics)
    for name, row in baselines.items():
        key = "lsh_best" if name.startswith("lsh_k") else name
        metrics[f"{key}_accuracy"] = max(metrics.get(f"{key}_accuracy", 0.0), float(row["curve"][-1]))
    if "binary_search" in baselines:
        # mean lead over binary search at lookups 2 .. log2(N)-1 (the 1D criterion)
        last = max(2, min(params.lookups, int(math.log2(params.n)) - 1))
        gap = curve[1:last] - baselines["binary_search"]["curve"][1:last]
        metrics["gain_vs_binary_search"] = float(gap.mean()) if len(gap) else 0.0

    out_dir = Path(report.artifact_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_tables(out_dir, curve, baselines, evaluation, params)
    if params.plots:
        _plot(out_dir, curve, baselines, evaluation, instances, params)
        if components is not None:
            _plot_components(out_dir, components, evaluation, instances)
    torch.save(model.state_dict(), out_dir / "model.pt")
    final = finite_metrics(metrics)
    report(final, step=params.steps)
    return final


def _reverse_engineer(params: NNParams, evaluation: dict[str, Any], instances,
                      metrics: dict[str, float]):
    """Appendix C.3 on the hypersphere: how many directions explain the first query
    model's lookups (`query_pca_top1`, `query_pca_top2`: explained-variance ratio of the
    first one / two components of its classifiers) and how closely the data network's
    layout follows the first (`layout_pc1_spearman`). Sets the metrics; returns the
    components for the plot (None where C.3 does not apply)."""
    from pipeline.workloads.e2e import nn_reverse

    if params.distribution != "hypersphere" or "placed_positions" not in evaluation:
        return None
    components = nn_reverse.lookup_components(instances.query_points, evaluation["first_positions"], params.seed)
    if components is None:
        return None
    explained = np.cumsum(components.explained)
    metrics["query_pca_top1"] = float(explained[0])
    metrics["query_pca_top2"] = float(explained[min(1, len(explained) - 1)])
    metrics["layout_pc1_spearman"] = nn_reverse.layout_agreement(
        instances.points, evaluation["placed_positions"], components.axes[0])
    return components


def _write_tables(out_dir: Path, curve, baselines, evaluation, params: NNParams) -> None:
    curves = [("e2e", curve, params.extra_space)] + [(name, row["curve"], row["extra_space"])
                                                      for name, row in baselines.items()]
    write_rows(out_dir / "accuracy_per_lookup.csv",
               [{"method": name, "lookup": i, "accuracy": f"{value:.6f}", "extra_space": extra}
                for name, values, extra in curves for i, value in enumerate(values, start=1)])
    counts = np.bincount(evaluation["first_positions"], minlength=params.n + params.extra_space)
    write_rows(out_dir / "first_lookup_positions.csv",
               [{"position": i, "count": c} for i, c in enumerate(counts.tolist())])


def _plot(out_dir: Path, curve, baselines, evaluation, instances, params: NNParams) -> None:
    import pandas as pd

    from pipeline.plots import figures, line_panels
    from pipeline.plots.lines import save

    rows = [{"method": "e2e", "lookup": i, "accuracy": v} for i, v in enumerate(curve, start=1)]
    rows += [{"method": name, "lookup": i, "accuracy": v}
             for name, row in baselines.items() for i, v in enumerate(row["curve"], start=1)]
    title = f"{params.distribution}: N={params.n}, M={params.lookups}, T={params.extra_space}"
    fig = line_panels(pd.DataFrame(rows), "lookup", "accuracy", x_scale="linear", y_scale="linear",
                      ylim=(0, 1.02), title=title, highlight={"e2e": {"linewidth": 2.2, "zorder": 3}})
    fig.axes[0].set_xticks(range(1, len(curve) + 1))
    fig.axes[0].set_ylabel("NN accuracy (best so far)")
    save(fig, out_dir / "accuracy_per_lookup.png", dpi=120)

    # Figure 2 (centre): where the first query model looks, against the query value
    slots = params.n + params.extra_space
    one_d = instances.query_points.shape[-1] == 1
    fig = figures.lookup_positions(instances.query_points[:, 0] if one_d else None, evaluation["first_positions"],
                                   slots, params.n)
    figures.save(fig, out_dir / "first_lookup_positions.png")


def _plot_components(out_dir: Path, components, evaluation, instances) -> None:
    """Figure 19: queries (left) and points (right) projected on the top two components
    of the first query model's classifiers, coloured by lookup / placed position."""
    from pipeline.plots import figures

    axes = components.axes[:2]
    queries, points = slice(0, 2000), slice(0, 100)  # enough to see the partition, few enough to read
    fig = figures.lookup_components(
        instances.query_points[queries] @ axes.T, evaluation["first_positions"][queries],
        (instances.points[points] @ axes.T).reshape(-1, 2), evaluation["placed_positions"][points].reshape(-1))
    figures.save(fig, out_dir / "lookup_components.png")


def baselines(params: NNParams) -> list[dict[str, Any]]:
    """Classic peers on the task's test instances, one row per method and lookup count
    (and per extra space T for bucketing), for drawing beside the front."""
    validate(params)
    from pipeline.workloads.e2e import nn_baselines as base
    from pipeline.workloads.e2e import nn_train

    resolved = _Resolved(params)
    instances = nn_train.test_instances(resolved)
    rows = []
    for name, row in nn_train.baseline_curves(resolved, instances).items():
        for m, value in enumerate(row["curve"], start=1):
            rows.append({"method": name, "accuracy": float(value), "lookups": float(m),
                         "extra_space": float(row["extra_space"])})
    if params.distribution == "uniform1d" and params.extra_space > 0 and not params.points_file:
        low, high = nn_data.support("uniform1d")
        for t in [2**k for k in range(1, 8)]:
            acc = base.accuracy_curve(instances, base.bucketing(instances, t, low, high))[-1]
            rows.append({"method": "bucketing", "accuracy": float(acc), "lookups": 1.0, "extra_space": float(t)})
    return rows


METRICS = (
    "accuracy", "mse", "loss", "lookups", "extra_space", "dataset_size", "train_seconds",
    "sorted_fraction", "retention_distance", "gain_vs_binary_search",
    "query_pca_top1", "query_pca_top2", "layout_pc1_spearman",
    *(f"accuracy_lookup_{i}" for i in range(1, CURVE_METRICS + 1)),
    *(f"{name}_accuracy" for name in BASELINE_METRICS),
)

WORKLOAD = Workload(
    name="e2e_nn",
    params=NNParams,
    run=run,
    metrics=METRICS,
    description="seed 000 §2: transformer + differentiable sort + M query models for NN search",
    uses_torch=True,
    smoke_params={"n": 8, "lookups": 3, "width": 16, "layers": 1, "heads": 2, "query_hidden": 32,
                  "batch_size": 32, "steps": 20, "eval_every": 10, "monitor_instances": 64,
                  "eval_instances": 128, "lr": 1e-3, "plots": False},
    baselines=baselines,
    validate=validate,
)

