"""Meta-task training of one Lego brick (seed 003 §3.2).

Each step draws a batch of synthetic Zipf meta-tasks, stores task t into brick t of a
fresh memory, queries (a sample of) its items and descends the self-guided weighting loss
plus the auxiliary reconstruction loss of the scanned skew and distinct-item count.

Data-parallel (a reporter with world_size >= 2, pipeline.workloads.base): `tasks_per_step`
is the global batch; every worker draws the same meta-tasks and trains on its contiguous
share of them through DDP, so the run follows the local one. The training state goes to
`report.save_checkpoint` at every report and a restarted worker resumes from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pipeline.workloads.base import LocalReporter, mean_over_workers, shard
from pipeline.workloads.lego.model import LegoSketch
from pipeline.workloads.lego.streams import MetaTaskBatch, sample_meta_tasks


@dataclass
class TrainConfig:
    steps: int = 300  # optimiser steps
    tasks_per_step: int = 8  # meta-tasks per step (authors: 8)
    distinct_range: tuple[int, int] = (1000, 50000)  # n per meta-task (authors: 1000..50000)
    skew_range: tuple[float, float] = (0.5, 1.0)  # alpha per meta-task (authors' training range)
    scale_range: tuple[float, float] = (0.5, 10.0)  # stream-length multiplier (authors: 0.5..10)
    query_per_task: int = 2048  # queried items per task for the loss; 0 = all (authors: all)
    lr: float = 1e-3  # decoder/scanner learning rate (authors: 10 x 1e-4)
    embedding_lr_ratio: float = 0.1  # the learnable vector's lr relative to `lr` (authors: 0.1; workload default 0.01)
    final_lr_ratio: float = 0.1  # lr decays exponentially to this fraction at the end
    self_guided: bool = True  # False: ablation, conventional learnable-weight loss
    aux_weight: float = 0.1  # weight of the reconstruction loss (authors: 0.1)
    clip_norm: float = 10.0  # gradient clipping (authors: 10)
    guide_epsilon: float = 0.01  # floor of the guide, relative to each metric's scale (see SelfGuidedLoss)
    report_every: int = 25  # steps between reports
    seed: int = 0


def _uncertainty_weighted(weights: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Learnable uncertainty weights (Kendall et al. 2018, in the authors' form):
    sum_i 0.5 / w_i^2 * L_i + log(1 + w_i^2), over the last axis of `losses`."""
    return (0.5 / weights.square() * losses).sum(-1) + torch.log1p(weights.square()).sum()


class SelfGuidedLoss(nn.Module):
    """seed 003 §3.2: each error metric (ARE, AAE, MSE) of the neural estimate on a
    meta-task is divided by the same metric of the rule-based estimate on that task (the
    guide), squared, and weighted by learnable uncertainty weights; the reconstruction
    loss of skew and distinct items is added with weight `aux_weight`.

    The guide gets a floor `epsilon x scale` with scale (1, mean count, mean count^2) for
    (ARE, AAE, MSE): the authors add an absolute 0.001, which on tasks the rule-based read
    gets almost exactly makes the ratios explode (losses of 1e9 in our CPU runs) and lets
    those tasks drown the rest; a relative floor keeps the weighting scale-free."""

    def __init__(self, self_guided: bool = True, aux_weight: float = 0.1, epsilon: float = 0.01) -> None:
        super().__init__()
        self.self_guided = self_guided
        self.aux_weight = aux_weight
        self.epsilon = epsilon
        self.metric_weights = nn.Parameter(torch.ones(3))
        self.aux_weights = nn.Parameter(torch.ones(2))

    def forward(self, neural: torch.Tensor, rule: torch.Tensor, truth: torch.Tensor, tasks: torch.Tensor,
                task_count: int, skew_pred: torch.Tensor | None = None, skew_true: torch.Tensor | None = None,
                items_pred: torch.Tensor | None = None, items_true: torch.Tensor | None = None) -> torch.Tensor:
        def per_task(values: torch.Tensor) -> torch.Tensor:
            sums = torch.zeros(task_count, device=values.device).index_add(0, tasks, values)
            sizes = torch.zeros(task_count, device=values.device).index_add(0, tasks, torch.ones_like(values))
            return sums / sizes.clamp_min(1)

        def metrics(estimate: torch.Tensor) -> torch.Tensor:
            error = estimate - truth
            return torch.stack([per_task(error.abs() / truth), per_task(error.abs()), per_task(error.square())], -1)

        neural_metrics = metrics(neural)
        if self.self_guided:
            with torch.no_grad():
                mean_count = per_task(truth)
                scale = torch.stack([torch.ones_like(mean_count), mean_count, mean_count.square()], -1)
                guide = metrics(rule) + self.epsilon * scale
            main = _uncertainty_weighted(self.metric_weights, (neural_metrics / guide).square()).mean()
        else:  # conventional: batch-averaged metrics with learnable weights only
            main = _uncertainty_weighted(self.metric_weights, neural_metrics.mean(0))
        if skew_pred is None:
            return main
        aux = torch.stack([(skew_pred - skew_true).square().mean(), (items_pred - items_true).square().mean()])
        return main + self.aux_weight * _uncertainty_weighted(self.aux_weights, aux)


def _step_batch(model: LegoSketch, batch, device: str):
    items = torch.from_numpy(batch.items).to(device)
    counts = torch.from_numpy(batch.counts).to(device)
    tasks = torch.from_numpy(batch.tasks).to(device)
    query = torch.from_numpy(batch.query).to(device)
    state = model.new_memory(len(batch.skew), device=device)
    state = model.store(state, items, counts, bricks=tasks)  # the write is outside the graph, as the authors
    out = model.decode(state, items[query], tasks[query])
    return out, counts[query], tasks[query]


def _shard_batch(batch: MetaTaskBatch, start: int, stop: int) -> MetaTaskBatch:
    """Meta-tasks [start, stop) of a batch, renumbered from 0 (tasks are concatenated in
    order, so their items are one contiguous run)."""
    if start == 0 and stop == len(batch.skew):
        return batch
    where = np.flatnonzero((batch.tasks >= start) & (batch.tasks < stop))
    lo, hi = int(where[0]), int(where[-1]) + 1
    query = batch.query[(batch.query >= lo) & (batch.query < hi)] - lo
    return MetaTaskBatch(batch.items[lo:hi], batch.counts[lo:hi], batch.tasks[lo:hi] - start, query,
                         batch.skew[start:stop], batch.distinct[start:stop])


class _TrainStep(nn.Module):
    """One step's loss as a module's forward, so DDP (which syncs gradients of what runs
    through `forward`) covers Store, Decode and the loss's learnable weights together."""

    def __init__(self, model: LegoSketch, loss_fn: SelfGuidedLoss) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: MetaTaskBatch, device: str) -> torch.Tensor:
        out, truth, tasks = _step_batch(self.model, batch, device)
        kwargs = {}
        if self.model.scanner is not None:
            kwargs = dict(skew_pred=out["skew"], skew_true=torch.from_numpy(batch.skew).to(device),
                          items_pred=out["items"],
                          items_true=torch.from_numpy(batch.distinct).to(device) / self.model.item_scale)
        return self.loss_fn(out["neural"], out["rule"], truth, tasks, len(batch.skew), **kwargs)


def train_brick(model: LegoSketch, config: TrainConfig, device: str = "cpu",
                on_report: Callable[[dict[str, float], int], None] | None = None,
                loss_fn: SelfGuidedLoss | None = None, report: Any = None) -> list[float]:
    """Train `model` in place; returns the mean loss of each report window. `on_report`
    gets {"loss", "val_are_neural", "val_are_rule"} and the step. `report` (a Reporter)
    makes the training data-parallel over its workers and checkpointed (module docstring);
    None: one process, no checkpoints."""
    report = report if report is not None else LocalReporter(device=device)
    rng = np.random.default_rng([config.seed, 11])
    torch.manual_seed(config.seed)
    loss_fn = loss_fn or SelfGuidedLoss(config.self_guided, config.aux_weight, config.guide_epsilon)
    loss_fn.to(device)
    step_module = report.prepare_model(_TrainStep(model, loss_fn))
    # the learnable vector gets its own lr (embedding_lr_ratio); the MS baseline's MLP
    # embedding is a network like the decoder and trains at the main lr
    embed_params = [p for n, p in model.named_parameters() if n == "basis" and p.requires_grad]
    main_params = [p for n, p in model.named_parameters() if n != "basis" and p.requires_grad]
    groups = [{"params": main_params + list(loss_fn.parameters()), "lr": config.lr}]
    if embed_params:
        groups.append({"params": embed_params, "lr": config.lr * config.embedding_lr_ratio})
    optimizer = torch.optim.Adam(groups)
    gamma = config.final_lr_ratio ** (1.0 / max(1, config.steps))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    # a fixed validation batch: the same meta-tasks at every report
    val_batch = sample_meta_tasks(np.random.default_rng([config.seed, 12]), config.tasks_per_step,
                                  config.distinct_range, config.skew_range, (1.0, 1.0), config.query_per_task)
    history, window = [], []
    first = 1
    state = report.load_checkpoint()
    if state is not None:  # a restarted worker: go on from the last report
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss_fn"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        history, first = list(state["history"]), int(state["step"]) + 1
    model.train()
    for step in range(first, config.steps + 1):
        batch = sample_meta_tasks(rng, config.tasks_per_step, config.distinct_range, config.skew_range,
                                  config.scale_range, config.query_per_task)
        part = shard(report, len(batch.skew))  # this worker's meta-tasks of the global batch
        loss = step_module(_shard_batch(batch, part.start, part.stop), device) * part.weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        scheduler.step()
        model.clamp_basis()
        window.append(float(loss.detach()))
        if step % config.report_every == 0 or step == config.steps:
            mean_loss = mean_over_workers(report, float(np.mean(window)))  # the global batch's loss
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"training loss is not finite at step {step}")
            history.append(mean_loss)
            window = []
            report.save_checkpoint({"model": model.state_dict(), "loss_fn": loss_fn.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": rng.bit_generator.state, "step": step, "history": list(history)})
            if on_report is not None:
                with torch.no_grad():
                    model.eval()
                    val_out, val_truth, _ = _step_batch(model, val_batch, device)
                    model.train()
                metrics = {"loss": mean_loss,
                           "val_are_neural": float(((val_out["neural"] - val_truth).abs() / val_truth).mean()),
                           "val_are_rule": float(((val_out["rule"] - val_truth).abs() / val_truth).mean())}
                on_report(metrics, step)
    model.eval()
    return history
