"""Training and evaluation of the end-to-end NN model (seed 000 §2.1 "Data Generation
and Training", appendix A.1), and the baselines on the same test instances.

`train(params, device, on_eval)` samples fresh instances each step (batch i is drawn
from `default_rng([seed, i])`, so a resumed run sees the same batches), minimises the
§2.1 loss with Adam, and every `eval_every` steps calls `on_eval(step, metrics, state)`.
`evaluate` runs the model with hard permutations and hardmax lookups and applies the
best-so-far rule of §2.2 (it also returns the first lookup's positions and where each
point was placed, for the reverse-engineering of appendix C.3 in `nn_reverse`).
`params` is the workload's `NNParams` (any object with its fields works).

Data-parallel (`report` with world_size >= 2, pipeline.workloads.base): `batch_size` is
the global batch; every worker draws it and trains on its shard through DDP (`prepare`).
The Gumbel noise of the lookups is drawn per worker, so a data-parallel run is a
statistically equivalent run, not the local run's exact steps.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from pipeline.workloads.base import mean_over_workers, shard
from pipeline.workloads.e2e import nn_baselines as base
from pipeline.workloads.e2e import nn_data
from pipeline.workloads.e2e.nn_model import NNModel, nn_loss

DIGIT_FEATURES = "digits"


def point_dim(params: Any) -> int:
    return nn_data.dimension_of(params.distribution, params.dim)


def build_model(params: Any) -> NNModel:
    image_features = params.feature_dim if params.distribution == DIGIT_FEATURES else 0
    return NNModel(
        n=params.n, lookups=params.lookups, point_dim=point_dim(params) or 1, extra=params.extra_space,
        extra_mode=params.extra_mode, width=params.width, layers=params.layers, heads=params.heads,
        query_hidden=params.query_hidden, query_layers=params.query_layers,
        lookup_temperature=params.lookup_temperature, permute=params.permute, adaptive=params.adaptive,
        shared_query=params.shared_query, image_features=image_features)


def sample(params: Any, rng: np.random.Generator, batch: int, split: str = "train") -> nn_data.Instances:
    return nn_data.sample(params.distribution, rng, batch, params.n, dim=params.dim, rho=params.rho,
                          zipf_alpha=params.zipf_alpha, zipf_support=params.zipf_support,
                          hard_base=params.hard_base, split=split, pool=getattr(params, "pool", None))


def test_instances(params: Any) -> nn_data.Instances:
    """The fixed evaluation set (digit images from the held-out pool), same for every
    method and every trial with the same seed."""
    rng = np.random.default_rng([params.seed, 10**9])
    return sample(params, rng, params.eval_instances, split="test")


def monitor_instances(params: Any) -> nn_data.Instances:
    """The fixed instances of the progress evaluations during training."""
    return sample(params, np.random.default_rng([params.seed, 10**9 + 1]), params.monitor_instances)


def _tensors(instances: nn_data.Instances, device: str) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(instances.data).to(device), torch.from_numpy(instances.queries).to(device),
            torch.from_numpy(instances.nn_index).to(device))


def retrieved_indices(out: dict[str, torch.Tensor], n: int, permute: bool) -> np.ndarray:
    """[B, M] original index of the point each hard lookup read (-1: an extra slot).
    Without permutation the stored vectors are not the inputs: each read value is
    mapped to its nearest input (an optimistic reading; the paper reports no accuracy
    for this ablation, only how far outputs are from inputs)."""
    positions = out["lookups"].argmax(-1)  # [B, M]
    if not permute:
        gaps = torch.cdist(out["values"], out["points"])  # [B, M, N]
        return gaps.argmin(-1).cpu().numpy()
    original = out["perm"].argmax(-1)  # [B, N(+T)]: position -> original index ("copy" slots too)
    placed = original.shape[1]
    in_data = positions < placed
    picked = torch.gather(original, 1, positions.clamp(max=placed - 1))
    return torch.where(in_data, picked, torch.full_like(picked, -1)).cpu().numpy()


@torch.no_grad()
def evaluate(model: NNModel, params: Any, instances: nn_data.Instances, device: str,
             chunk: int = 1024) -> dict[str, Any]:
    """Hard-permutation, hardmax evaluation: accuracy per lookup (best-so-far rule), MSE
    of the final read against y, the fraction of points in sorted position (1D metric
    spaces; ascending or descending, whichever matches more), first-lookup positions, and for the no-permute ablation the mean distance
    from each input to its closest output."""
    model.eval()
    retrieved, first_positions, squared, in_place, retention, losses = [], [], [], [], [], []
    placed = []  # [B, N]: the position each input point was put in (with permutation)
    for lo in range(0, len(instances.nn_index), chunk):
        part = nn_data.Instances(*(a[lo:lo + chunk] for a in (instances.data, instances.queries, instances.points,
                                                              instances.query_points, instances.nn_index)))
        data, queries, nn_index = _tensors(part, device)
        out = model(data, queries, training=False)
        losses.append(float(nn_loss(out, nn_index, params.loss, params.loss_every_lookup, params.adaptive,
                                    closest_read=params.closest_read_loss)))
        retrieved.append(retrieved_indices(out, params.n, params.permute))
        first_positions.append(out["lookups"][:, 0].argmax(-1).cpu().numpy())
        rows = torch.arange(len(nn_index), device=device)
        target = out["points"][rows, nn_index]
        squared.append(((out["values"][:, -1] - target) ** 2).sum(-1).cpu().numpy())
        if params.permute:
            order = out["perm"][:, :params.n].argmax(-1).cpu().numpy()  # position -> original index
            placed.append(order.argsort(-1))
        if params.permute and part.points.shape[-1] == 1:
            laid = np.take_along_axis(part.points[..., 0], order, 1)
            ascending = np.sort(part.points[..., 0], axis=1)
            # descending order is as searchable as ascending: count the better of the two
            in_place.append(np.maximum((laid == ascending).mean(1), (laid == ascending[:, ::-1]).mean(1)))
        if not params.permute:
            stored = out["structure"][:, :params.n]
            retention.append(torch.cdist(out["points"], stored).min(-1).values.mean(-1).cpu().numpy())
    model.train()
    retrieved_all = np.concatenate(retrieved)
    result: dict[str, Any] = {
        "curve": base.accuracy_curve(instances, retrieved_all), "retrieved": retrieved_all,
        "mse": float(np.concatenate(squared).mean()), "loss": float(np.mean(losses)),
        "first_positions": np.concatenate(first_positions)}
    if placed:
        result["placed_positions"] = np.concatenate(placed)
    if in_place:
        result["sorted_fraction"] = float(np.concatenate(in_place).mean())
    if retention:
        result["retention_distance"] = float(np.concatenate(retention).mean())
    return result


def baseline_curves(params: Any, instances: nn_data.Instances) -> dict[str, dict[str, Any]]:
    """The classic methods that apply to this distribution, on the model's test
    instances: {name: {"curve": accuracy per lookup, "lookups": M, "extra_space": T}}."""
    m, dist = params.lookups, params.distribution
    rows: dict[str, dict[str, Any]] = {}

    def add(name: str, retrieved: np.ndarray, extra: int = 0) -> None:
        rows[name] = {"curve": base.accuracy_curve(instances, retrieved), "lookups": retrieved.shape[1],
                      "extra_space": extra}

    if instances.points.shape[-1] == 1:  # 1D and digits (searched on the labels: Fig. 12's reference)
        low, high = nn_data.support(dist, params.zipf_support)
        add("binary_search", base.binary_search(instances, m))
        if dist in ("uniform1d", "zipf1d", "digits"):
            if dist == "digits":
                low, high = 0.0, (nn_data.DIGIT_LABELS - 1) / nn_data.DIGIT_LABELS
            add("interpolation_search", base.interpolation_search(instances, m, low, high))
        if dist == "zipf1d":
            add("treap", base.treap_search(instances, m, zipf_support=params.zipf_support,
                                           zipf_alpha=params.zipf_alpha, seed=params.seed))
        if dist == "uniform1d" and params.extra_space > 0:
            add("bucketing", base.bucketing(instances, params.extra_space, low, high), params.extra_space)
    elif dist in ("uniform2d", "hard2d", "file"):  # a user's points: the k-d tree is the classic peer in any d
        add("kd_tree", base.kd_tree_search(instances, m))
    if dist == "hypersphere":
        for k in range(1, max(1, int(math.log2(params.n))) + 1):
            add(f"lsh_k{k}", base.lsh_search(instances, m, k, seed=params.seed))
    return rows


def train(params: Any, device: str = "cpu",
          on_eval: Callable[[int, dict[str, Any], dict[str, Any]], bool | None] | None = None,
          prepare: Callable[[Any], Any] = lambda model: model,
          resume: dict[str, Any] | None = None, report: Any = None) -> tuple[NNModel, dict[str, Any]]:
    """Train for `params.steps` steps (fewer if `on_eval` returns True). Returns the
    model and the last evaluation. `report` (a Reporter) gives this worker's share of
    each global batch (module docstring); None: the whole batch."""
    torch.manual_seed(params.seed)
    model = prepare(build_model(params).to(device))
    core = getattr(model, "module", model)
    data_net = list(core.data_net.parameters())
    # E2E (frozen): the data network keeps its initial weights (§2.1)
    trainable = [p for p in core.parameters()
                 if p.requires_grad and not (params.freeze_data_network and any(p is q for q in data_net))]
    optimizer = torch.optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay)
    start = 0
    if resume:
        core.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        start = int(resume["step"])
        torch.set_rng_state(resume["torch_rng"])
    eval_set = monitor_instances(params)
    last: dict[str, Any] = {}
    started = time.perf_counter()
    step_seconds = 0.0  # time in training steps only (data, forward, backward, update), no evaluation
    for step in range(start + 1, params.steps + 1):
        tick = time.perf_counter()
        batch = sample(params, np.random.default_rng([params.seed, step]), params.batch_size)
        part = shard(report, params.batch_size)  # this worker's instances of the global batch
        if part.stop - part.start < params.batch_size:
            batch = nn_data.Instances(*(part.take(a) for a in (batch.data, batch.queries, batch.points,
                                                               batch.query_points, batch.nn_index)))
        data, queries, nn_index = _tensors(batch, device)
        loss = nn_loss(model(data, queries, training=True), nn_index, params.loss, params.loss_every_lookup,
                       params.adaptive, closest_read=params.closest_read_loss) * part.weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
        optimizer.step()
        step_seconds += time.perf_counter() - tick
        if step % params.eval_every == 0 or step == params.steps:
            last = evaluate(core, params, eval_set, device)
            last["train_loss"] = mean_over_workers(report, float(loss.detach()))  # the global batch's
            last["step"] = step
            last["seconds"] = time.perf_counter() - started
            last["train_seconds"] = step_seconds
            state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "torch_rng": torch.get_rng_state()}
            if on_eval is not None and on_eval(step, last, state):
                break
    return core, last
