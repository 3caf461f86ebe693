"""Training and evaluation of the learned frequency sketch (seed 000 §3.1, appendix A.2).

Each training example is a fresh stream of `length` items and `queries` query items
drawn from the same distribution; the loss is the absolute error between the model's
estimate and the true count (the seed's metric; "mse" is an option, seed footnote 4). Adam with
weight decay 1e-3 as in appendix A.1/A.2; early stopping keeps the weights with the best
MAE on a fixed validation set of streams. Evaluation uses hard one-hot updates and
lookups, so the model then writes at most M counters per item and reads M per query.

Data-parallel (`report` with world_size >= 2, pipeline.workloads.base): `batch_size` is
the global batch of streams; every worker draws it and trains on its shard through DDP.
The Gumbel noise of the writes and reads is drawn per worker, so a data-parallel run is a
statistically equivalent run, not the local run's exact steps. The training state goes
to `report.save_checkpoint` at every evaluation and a restarted worker resumes from it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.workloads.base import LocalReporter, mean_over_workers, shard
from pipeline.workloads.e2e.freq_data import (
    DigitPools, Streams, digit_pools, render_numbers, sample_streams)
from pipeline.workloads.e2e.freq_model import FreqSketch


@dataclass
class FreqSetting:
    """What a stream looks like: Zipf over ids (random rank order per stream) or the
    heavy-hitter image setting (fixed rank order, items rendered as digit images)."""

    universe: int = 1000
    alpha: float = 1.2
    length: int = 100
    queries: int = 16
    fixed_rank_order: bool = False
    images: bool = False
    held_out_fraction: float = 0.3
    pools: tuple[DigitPools, DigitPools] | None = field(default=None, repr=False)
    #: the `file` setting: a user's stream as frequency-ranked ids (freq_data.file_stream_ids)
    file_ids: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images and self.pools is None:
            self.pools = digit_pools(self.held_out_fraction)

    def sample(self, rng: np.random.Generator, batch: int) -> Streams:
        if self.file_ids is not None:
            from pipeline.workloads.e2e.freq_data import sample_file_streams

            return sample_file_streams(rng, self.file_ids, batch, self.length, self.queries)
        return sample_streams(rng, batch, self.length, self.queries, self.universe,
                              self.alpha, self.fixed_rank_order)

    def tensors(self, streams: Streams, rng: np.random.Generator, split: str,
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs (items, queries) and targets: ids, or images of the labels drawn
        from the training (`split="train"`) or held-out (`"eval"`) digit images."""
        counts = torch.as_tensor(streams.counts, dtype=torch.float32, device=device)
        if not self.images:
            return (torch.as_tensor(streams.items, device=device),
                    torch.as_tensor(streams.queries, device=device), counts)
        pool = self.pools[0] if split == "train" else self.pools[1]
        items = render_numbers(rng, streams.items, pool)
        queries = render_numbers(rng, streams.queries, pool)
        return (torch.as_tensor(items, device=device), torch.as_tensor(queries, device=device),
                counts)


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return {"l1": F.l1_loss, "mse": F.mse_loss}[name]


@torch.no_grad()
def predict(model: FreqSketch, setting: FreqSetting, streams: Streams, seed: int,
            device: str | torch.device = "cpu", chunk: int = 512) -> np.ndarray:
    """Hard-inference estimates (B, Q) for `streams`, in chunks of streams."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, streams.items.shape[0], chunk):
        part = Streams(streams.items[start:start + chunk], streams.queries[start:start + chunk],
                       streams.counts[start:start + chunk])
        items, queries, _ = setting.tensors(part, rng, "eval", device)
        out.append(model(items, queries).cpu().numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(out, axis=0)


class _TrainStep(nn.Module):
    """One step's loss as a module's forward, so DDP (which syncs the gradients of what
    runs through `forward`) covers `forward_with_usage` and the balance term."""

    def __init__(self, model: FreqSketch, criterion, balance: float) -> None:
        super().__init__()
        self.model, self.criterion, self.balance = model, criterion, balance

    def forward(self, items: torch.Tensor, queries: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        estimate, usage = self.model.forward_with_usage(items, queries)
        value = self.criterion(estimate, counts)
        if self.balance:
            # load balancing (not in the seed): k * sum_j usage_j^2 is 1 when the writes
            # spread evenly over the k counters and grows as they pile onto few of them
            value = value + self.balance * (usage.shape[-1] * (usage ** 2).sum(-1).mean() - 1.0)
        return value


@dataclass
class TrainResult:
    losses: list[float]  # training loss per step
    val_mae: list[tuple[int, float]]  # (step, validation MAE) at each evaluation
    best_step: int
    best_val_mae: float


def train(model: FreqSketch, setting: FreqSetting, *, steps: int, batch_size: int, lr: float,
          weight_decay: float = 1e-3, loss: str = "l1", balance: float = 0.0,
          eval_every: int = 100,
          patience: int = 0, val_streams: Streams | None = None, seed: int = 0,
          device: str | torch.device = "cpu",
          on_eval: Callable[[int, float, float], None] | None = None, report: Any = None) -> TrainResult:
    """Adam on fresh batches; every `eval_every` steps the validation MAE is measured
    (hard inference) and the best weights kept; `patience` evaluations without
    improvement stop early (0: never). The model ends with the best weights. `balance`
    weighs an optional load-balancing term on the write positions (0: the seed's loss).
    `report` (a Reporter) makes training data-parallel and checkpointed (module
    docstring); None: one process, no checkpoints."""
    report = report if report is not None else LocalReporter(device=str(device))
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    step_module = report.prepare_model(_TrainStep(model, loss_fn(loss), balance))
    losses: list[float] = []
    history: list[tuple[int, float]] = []
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    stale, first = 0, 1
    state = report.load_checkpoint()
    if state is not None:  # a restarted worker: go on from the last evaluation
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        losses, history, best, stale = list(state["losses"]), list(state["history"]), state["best"], state["stale"]
        first = int(state["step"]) + 1
    model.train()
    for step in range(first, steps + 1):
        items, queries, counts = setting.tensors(setting.sample(rng, batch_size), rng, "train", device)
        part = shard(report, batch_size)  # this worker's streams of the global batch
        value = step_module(part.take(items), part.take(queries), part.take(counts)) * part.weight
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))
        if val_streams is not None and (step % eval_every == 0 or step == steps):
            est = predict(model, setting, val_streams, seed + 1, device)
            val = float(np.abs(est - val_streams.counts).mean())
            history.append((step, val))
            train_loss = mean_over_workers(report, float(np.mean(losses[-eval_every:])))  # the global batch's
            if val < best[0]:
                best, stale = (val, step, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
            report.save_checkpoint({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                    "rng": rng.bit_generator.state, "step": step, "losses": list(losses),
                                    "history": list(history), "best": best, "stale": stale})
            if on_eval is not None:
                on_eval(step, train_loss, val)
            if patience and stale >= patience:
                break
    if val_streams is not None:
        model.load_state_dict(best[2])
    return TrainResult(losses, history, best[1], best[0])
