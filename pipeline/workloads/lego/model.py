"""The Lego sketch network (seed 003 §3.1): normalised multi-hash embedding, hash
addressing, scalable memory of bricks with counting buckets, memory scanning (Deep Sets)
and ensemble decoding.

Memory is a dense tensor `(brick_count, depth, slots)`; an item is routed to one brick by
a hash and writes `count * embedding[d]` into slot `address[d]` of each row `d` (the
sparse address vector of §3.1 is never materialised: writes are one `index_add_` and reads
one gather over flat indices, so memory grows with the bricks, not items x slots).

The brick's geometry, ablation switches and hashes are in `brick`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.workloads.lego.brick import (  # noqa: F401  (public here too: geometry, hashes)
    CHECKPOINT_FORMAT, ITEM_ESTIMATES, Ablations, BrickGeometry, ItemEstimate, _hash_constants, hash_items)


def _mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.LeakyReLU(0.01))
    return nn.Sequential(*layers)


class MemoryScanner(nn.Module):
    """seed 003 §3.1, memory scanning: a Deep Sets network over a fraction (1/10) of each
    brick's slots regresses the brick's skew and distinct-item count and emits further
    (implicit) stream features.

    Deviation, configurable by nothing but documented: the authors feed raw memory values;
    we divide them by the brick's mean load (bucket / slots) and take log1p, and append the
    log mean load to the pooled set, so that a short CPU training sees inputs of order one
    whatever the stream length."""

    def __init__(self, features: int = 4, scan_fraction: float = 0.1) -> None:
        super().__init__()
        self.scan_fraction = scan_fraction
        self.element = _mlp([1, 8, 16, 32], last_activation=True)
        self.features = _mlp([34, 16, 8, features])
        self.skew_head = _mlp([34, 16, 8, 1])
        self.items_head = _mlp([34, 16, 8, 1])

    def forward(self, memory: torch.Tensor, bucket: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        slots = memory.shape[-1]
        scanned = max(1, int(slots * self.scan_fraction))
        load = (bucket / slots).clamp_min(1e-6)  # mean counter value (embeddings have mean 1)
        window = memory[:, :, :scanned].detach()
        x = torch.log1p((window / load[:, None, None]).clamp_min(0.0))
        pooled = self.element(x.unsqueeze(-1)).mean(dim=(1, 2))  # permutation-invariant pooling
        empty = (window == 0).float().mean(dim=(1, 2))
        pooled = torch.cat([pooled, torch.log1p(load)[:, None], torch.log(empty + 1e-3)[:, None]], dim=-1)
        return self.features(pooled), self.skew_head(pooled).squeeze(-1), self.items_head(pooled).squeeze(-1)


class EnsembleDecoder(nn.Module):
    """seed 003 §3.1, ensemble decoding (neural part): a Deep Sets encoder over the item's
    (read value, embedding value) pairs, then an MLP with the rule-based estimate, the
    bucket and the stream features, giving the neural estimate.

    Choices of ours (the extracted text does not fix them): counts enter relative to the
    brick's mean load (bucket / slots) and in log scale, so one brick serves any stream
    length; besides the mean-pooled set, the sorted per-row ratios read/embedding go to the
    MLP (a fixed-size, order-free view that keeps the minimum and its runners-up); and the
    output is a correction of the rule-based estimate in units of the load,
    `rule - load * z`, with the last layer started at zero so that training starts from
    the rule-based estimate (the authors' output is linear in counts too; a bounded form
    such as rule * sigmoid(z) saturated in our runs and never left the rule-based
    estimate). Query clamps it to [0, rule], as the authors' Cluster.dec_query does."""

    def __init__(self, depth: int, stream_features: int = 6) -> None:
        super().__init__()
        context = depth + 2 + stream_features
        self.element = _mlp([3, 8, 16, 16], last_activation=True)
        self.body = _mlp([16 + context, 32, 16], last_activation=True)
        self.head = _mlp([16 + context, 8, 4, 1])
        nn.init.zeros_(self.head[-1].weight)  # start exactly at the rule-based estimate
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, read: torch.Tensor, embedding: torch.Tensor, rule: torch.Tensor,
                bucket: torch.Tensor, stream: torch.Tensor, slots: int) -> torch.Tensor:
        load = (bucket / slots).clamp_min(1e-6)[:, None]
        ratio = torch.log1p((read / embedding).clamp_min(0.0) / load)
        elements = torch.stack([torch.log1p(read.clamp_min(0.0) / load), embedding, ratio], dim=-1)
        pooled = self.element(elements).mean(dim=1)
        context = torch.cat([ratio.sort(dim=1).values, torch.log1p(rule[:, None] / load),
                             torch.log(load), stream], dim=-1)
        hidden = self.body(torch.cat([pooled, context], dim=-1))
        z = self.head(torch.cat([hidden, context], dim=-1)).squeeze(-1)
        return rule - load[:, 0] * z


@dataclass
class BrickMemory:
    """The state of a Lego sketch over a stream: bricks and their counting buckets."""

    memory: torch.Tensor  # (brick_count, depth, slots) float32
    bucket: torch.Tensor  # (brick_count,) sub-stream lengths (the counting buckets)

    @property
    def brick_count(self) -> int:
        return self.memory.shape[0]


class LegoSketch(nn.Module):
    """One trained brick's networks; memories of any brick count are created by
    `new_memory` (seed 003 §3.1, scalable memory) and share these weights."""

    def __init__(self, geometry: BrickGeometry = BrickGeometry(), ablations: Ablations = Ablations(),
                 value_range: tuple[float, float] = (0.001, 1.0), item_scale: float = 10000.0,
                 basis_init: str = "log_uniform") -> None:
        super().__init__()
        geometry.validate()
        self.geometry = geometry
        self.ablations = ablations
        self.value_range = value_range  # Appendix C: learnable values are clamped to a range
        self.trained_params: dict[str, Any] = {}  # the training params of a loaded brick (load_brick)
        self.item_scale = item_scale  # distinct-item regression target is n / item_scale
        low, high = value_range
        generator = torch.Generator().manual_seed(geometry.hash_seed)
        if basis_init == "authors":  # their code: the middle of the range + N(0, 1/5) noise
            basis = (low + high) / 2 + torch.randn(geometry.basis_size, generator=generator) / 5
        elif basis_init == "log_uniform":
            # Ours: log-uniform over the range. A spread vector is what the authors' 48 GPU
            # hours of training reach (an item then dominates some rows and barely touches
            # others, which lowers the rule-based error); a short CPU run cannot travel
            # that far from the authors' flat start, so we start spread.
            u = torch.rand(geometry.basis_size, generator=generator)
            basis = low * (high / low) ** u
        elif basis_init.startswith("power"):
            # Ours: u^k (k = 6 unless "power<k>"), clamped to the range: most values near
            # the floor, a few large. An item then has, in some row, a value far above its
            # neighbours' values there, and the rule-based read (the min over rows of
            # read / embedding) is nearly exact for it. With the read alone (no training)
            # at 1.2 MB this gives 0.49-0.63x CountMin's ARE over skews 0.9-1.5 against
            # 0.56-0.68x for log-uniform (docs/benchmarks.md, Lego section).
            try:
                power = float(basis_init[5:] or 6)
            except ValueError:
                power = -1.0
            if power <= 0:
                raise ValueError(f"basis_init 'power[k]' needs a number k > 0, got {basis_init!r}")
            basis = torch.rand(geometry.basis_size, generator=generator) ** power
        else:
            raise ValueError(f"basis_init must be 'authors', 'log_uniform' or 'power[k]', got {basis_init!r}")
        self.basis = nn.Parameter(basis.clamp(low, high), requires_grad=ablations.learnable_vector)
        if geometry.embedding == "mlp":  # meta-sketch-like: an MLP over the id's bits
            self.embed_mlp = _mlp([32, 32, 32, geometry.depth])
        for role, name, count in ((1, "embed", geometry.depth), (2, "address", geometry.depth), (3, "brick", 1)):
            mult, add = _hash_constants(geometry.hash_seed, role, count)
            self.register_buffer(f"{name}_mult", mult, persistent=True)
            self.register_buffer(f"{name}_add", add, persistent=True)
        stream_features = 4 + 2 if ablations.scanning else 0
        self.scanner = MemoryScanner(features=4) if ablations.scanning else None
        self.decoder = EnsembleDecoder(geometry.depth, stream_features=stream_features)

    # -- seed 003 §3.1: embedding, addressing, routing ------------------------------------
    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Normalised multi-hash embedding: (n,) items -> (n, depth) positive values with
        mean 1 per item (the authors divide by the detached sum and multiply by depth)."""
        if self.geometry.embedding == "mlp":
            bits = hash_items(items, self.embed_mult[:1], self.embed_add[:1], 1 << 32)
            shifts = torch.arange(32, device=items.device)
            x = ((bits >> shifts) & 1).to(torch.float32) * 2 - 1
            values = torch.nn.functional.softplus(self.embed_mlp(x)) + self.value_range[0]
        else:
            index = hash_items(items, self.embed_mult, self.embed_add, self.geometry.basis_size)
            values = self.basis[index]
        if self.ablations.normalize:
            values = values / values.sum(dim=1, keepdim=True).detach() * self.geometry.depth
        return values

    def address(self, items: torch.Tensor) -> torch.Tensor:
        """Hash addressing: the slot of each row, (n, depth) in [0, slots)."""
        return hash_items(items, self.address_mult, self.address_add, self.geometry.slots)

    def route(self, items: torch.Tensor, brick_count: int) -> torch.Tensor:
        """Scalable memory: the brick of each item, (n,) in [0, brick_count)."""
        if brick_count == 1:
            return torch.zeros(items.shape[0], dtype=torch.int64, device=items.device)
        return hash_items(items, self.brick_mult, self.brick_add, brick_count)[:, 0]

    def clamp_basis(self) -> None:
        """Keep learnable values in `value_range` after each optimiser step (Appendix C)."""
        with torch.no_grad():
            self.basis.clamp_(*self.value_range)

    # -- Store / Query ---------------------------------------------------------------------
    def new_memory(self, brick_count: int, device: str | torch.device | None = None) -> BrickMemory:
        if brick_count < 1:
            raise ValueError(f"brick_count must be >= 1, got {brick_count}")
        device = device if device is not None else self.basis.device
        g = self.geometry
        return BrickMemory(torch.zeros(brick_count, g.depth, g.slots, device=device),
                           torch.zeros(brick_count, device=device))

    def _flat_index(self, items: torch.Tensor, bricks: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        rows = torch.arange(g.depth, device=items.device)
        return (bricks[:, None] * g.depth + rows[None, :]) * g.slots + self.address(items)

    def store(self, state: BrickMemory, items: torch.Tensor, counts: torch.Tensor | None = None,
              bricks: torch.Tensor | None = None, grad: bool = False) -> BrickMemory:
        """Store: add `count * embedding` at each item's addresses in its brick, and the
        count to the brick's bucket. `bricks` overrides routing (training: one task per
        brick). With `grad`, the write stays in the autograd graph (the authors' write is
        not: they add to `.data`), and a new memory tensor is returned instead of in-place."""
        if counts is None:
            counts = torch.ones(items.shape[0], device=state.memory.device)
        counts = counts.to(state.memory.dtype)
        if bricks is None and not (grad and torch.is_grad_enabled()) and self._use_kernels(state):
            from pipeline.workloads.lego import kernels

            bucket = state.bucket.clone()
            kernels.store_kernel(items.contiguous().numpy(), counts.contiguous().numpy(),
                                 self.basis.detach().numpy(), *self._hash_arrays(),
                                 self.ablations.normalize, state.memory.numpy(), bucket.numpy())
            return BrickMemory(state.memory, bucket)
        if bricks is None:
            bricks = self.route(items, state.brick_count)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            values = (self.embed(items) * counts[:, None]).reshape(-1)
            flat = self._flat_index(items, bricks).reshape(-1)
            if grad:
                memory = state.memory.reshape(-1).index_add(0, flat, values).view_as(state.memory)
            else:
                memory = state.memory
                memory.view(-1).index_add_(0, flat, values.detach())
        bucket = state.bucket.index_add(0, bricks, counts)
        return BrickMemory(memory, bucket)

    #: use the numba kernels for no-grad Store and Query on CPU (False: torch reference path)
    use_kernels: bool = True

    def _use_kernels(self, state: BrickMemory) -> bool:
        return (self.use_kernels and self.geometry.embedding == "hash" and state.memory.device.type == "cpu"
                and state.memory.dtype == torch.float32 and self.basis.dtype == torch.float32)

    def _hash_arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(t.cpu().numpy() for t in (self.embed_mult, self.embed_add, self.address_mult,
                                               self.address_add, self.brick_mult, self.brick_add))

    def _fast_query(self, state: BrickMemory, items: torch.Tensor, use_neural: torch.Tensor,
                    stream: torch.Tensor) -> torch.Tensor:
        """Query through `kernels.query_kernel`: the decoder's per-brick inputs (log load,
        stream features) are folded into per-brick biases of its two first layers once,
        then each item is routed, read and (where its brick uses it) decoded in one pass."""
        import numba

        from pipeline.workloads.lego import kernels

        decoder, slots, depth = self.decoder, self.geometry.slots, self.geometry.depth
        load = (state.bucket / slots).clamp_min(1e-6)
        brick_context = torch.cat([torch.log(load)[:, None], stream], dim=-1)  # context minus per-item part

        def padded(weight_t: torch.Tensor, bias: torch.Tensor, rows: list[tuple[int, int]]):
            """(in, out) weights and bias as float32 arrays, outputs padded with zeros to a
            multiple of 8 (the kernel's vector width); `rows` = (count, padded count) of
            each input group, zero rows filling each group to its padded count."""
            pad_out = -weight_t.shape[1] % 8
            parts, start = [], 0
            for count, target in rows:
                part = weight_t[start:start + count]
                parts.append(torch.nn.functional.pad(part, (0, pad_out, 0, target - count)))
                start += count
            bias = torch.nn.functional.pad(bias, (0, pad_out))
            return torch.cat(parts).contiguous().numpy(), bias.contiguous().numpy()

        def width(layer: nn.Linear) -> int:
            return -(-layer.out_features // 8) * 8

        def plain(layer: nn.Linear, previous: nn.Linear | None = None):
            rows = layer.in_features if previous is None else width(previous)
            return padded(layer.weight.detach().T, layer.bias.detach(), [(layer.in_features, rows)])

        def folded(layer: nn.Linear, previous: nn.Linear):
            """The first layer of body or head: input [previous layer's output, sorted
            ratios, log1p(rule / load) | log load, stream]; the part after `|` is the same
            for every item of a brick and goes into a per-brick bias (bricks, out)."""
            weight = layer.weight.detach()
            per_item = previous.out_features + depth + 1
            bias = layer.bias.detach() + brick_context @ weight[:, per_item:].T
            return padded(weight[:, :per_item].T, bias, [(previous.out_features, width(previous)), (depth + 1, depth + 1)])

        element, body, head = decoder.element, decoder.body, decoder.head
        weights = (*plain(element[0]), *plain(element[2], element[0]), *plain(element[4], element[2]),
                   *folded(body[0], element[4]), *plain(body[2], body[0]),
                   *folded(head[0], body[2]), *plain(head[2], head[0]), *plain(head[4], head[2]))
        out = np.empty(items.shape[0], np.float32)
        # as many kernel threads as torch may use (a trial's `threads`): two trials side by
        # side on two cores must not each start two spinning OpenMP threads
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())))
        kernels.query_kernel(items.contiguous().numpy(), self.basis.detach().numpy(), *self._hash_arrays(),
                             self.ablations.normalize, state.memory.numpy(), load.contiguous().numpy(),
                             use_neural.contiguous().numpy(), *weights, max(1, min(len(out), 8 * numba.get_num_threads())), out)
        return torch.from_numpy(out)

    def read(self, state: BrickMemory, items: torch.Tensor, bricks: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read: (bricks, read values (n, depth), embeddings (n, depth), rule-based
        estimate (n,)). The rule-based estimate is min_d read[d] / embedding[d] (the
        authors' cm_readhead): exact when no other item shares any of the slots."""
        if bricks is None:
            bricks = self.route(items, state.brick_count)
        embedding = self.embed(items)
        read = state.memory.reshape(-1)[self._flat_index(items, bricks)]
        rule = (read / embedding).min(dim=1).values
        return bricks, read, embedding, rule

    def scan(self, state: BrickMemory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory scanning of every brick: (stream features (B, F), skew (B,), items (B,))
        with items in units of `item_scale`."""
        if self.scanner is None:
            zeros = torch.zeros(state.brick_count, device=state.memory.device)
            return torch.zeros(state.brick_count, 0, device=state.memory.device), zeros, zeros
        return self.scanner(state.memory, state.bucket)

    def decode(self, state: BrickMemory, items: torch.Tensor, bricks: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
        """Neural and rule-based estimates of `items`, with the scanned brick features."""
        bricks, read, embedding, rule = self.read(state, items, bricks)
        features, skew, distinct = self.scan(state)
        if self.scanner is not None:
            stream = torch.cat([features, skew[:, None], distinct[:, None]], dim=-1)[bricks]
        else:
            stream = features[bricks]
        neural = self.decoder(read, embedding, rule, state.bucket[bricks], stream, self.geometry.slots)
        return {"neural": neural, "rule": rule, "bricks": bricks, "skew": skew, "items": distinct}

    @staticmethod
    def linear_counting(state: BrickMemory) -> torch.Tensor:
        """Distinct items per brick by linear counting (Whang et al., 1990) over the
        brick's empty slots: an item writes a positive value into one slot of each row,
        so with z the empty share of a row's `slots`, n ~ -slots * ln(z), averaged over
        the rows; inf where no slot is empty. Ours, for the ensemble's gate (`query`)."""
        slots = state.memory.shape[-1]
        empty = (state.memory == 0).to(torch.float64).mean(dim=-1)  # (B, depth)
        return (-slots * torch.log(empty)).mean(dim=-1).to(torch.float32)

    @torch.no_grad()
    def ensemble_choice(self, state: BrickMemory, mode: str = "auto", item_threshold: float = 10000.0,
                        skew_threshold: float = 1.0, item_estimate: str = "scan"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per brick: whether Query uses the neural estimate (bool (B,)), and the scanned
        stream features the decoder sees ((B, F)); see `query`."""
        if mode not in ("auto", "neural", "rule"):
            raise ValueError(f"query mode must be auto, neural or rule, got {mode!r}")
        if item_estimate not in ITEM_ESTIMATES:
            raise ValueError(f"item_estimate must be one of {', '.join(ITEM_ESTIMATES)}, got {item_estimate!r}")
        features, skew, distinct = self.scan(state)
        # without a scanner the authors' gate has no item count ("auto" = neural); linear
        # counting needs none, so the no-scanning ablation keeps that gate
        if mode == "auto" and (self.scanner is not None or item_estimate == "linear_counting"):
            items = distinct * self.item_scale if item_estimate == "scan" else self.linear_counting(state)
            use_neural = (items > item_threshold) & (skew < skew_threshold)
        else:
            use_neural = torch.full((state.brick_count,), mode != "rule", device=state.memory.device)
        stream = (torch.cat([features, skew[:, None], distinct[:, None]], dim=-1)
                  if self.scanner is not None else features)
        return use_neural, stream

    @torch.no_grad()
    def query(self, state: BrickMemory, items: torch.Tensor, mode: str = "auto",
              item_threshold: float = 10000.0, skew_threshold: float = 1.0, item_estimate: str = "scan",
              chunk: int = 1 << 18) -> torch.Tensor:
        """Query (seed 003 Algorithm 2, as in the authors' code): per brick, the neural
        estimate where the scanned distinct-item count exceeds `item_threshold` and the
        scanned skew is below `skew_threshold`, the rule-based one elsewhere. `mode`
        "neural" or "rule" forces one of them (no scanning and the scanner's count: "auto"
        means "neural").
        `item_estimate` "linear_counting" (ours) takes the item count of the gate from
        the brick's empty slots instead of the scanner; the decoder still sees the scan."""
        use_neural, stream = self.ensemble_choice(state, mode, item_threshold, skew_threshold, item_estimate)
        if self._use_kernels(state):
            return self._fast_query(state, items, use_neural, stream)
        out = []
        for start in range(0, items.shape[0], chunk):  # bounded memory; one op per chunk
            part = items[start:start + chunk]
            bricks, read, embedding, rule = self.read(state, part)
            if mode == "rule":
                out.append(rule)
                continue
            chosen = use_neural[bricks].nonzero().squeeze(1)  # decode only where the ensemble uses it
            if chosen.numel():
                b = bricks[chosen]
                neural = self.decoder(read[chosen], embedding[chosen], rule[chosen], state.bucket[b], stream[b],
                                      self.geometry.slots)
                rule = rule.clone()
                rule[chosen] = torch.minimum(neural, rule[chosen]).clamp_min(0.0)
            out.append(rule)
        if not out:
            return torch.zeros(0, device=state.memory.device)
        return torch.cat(out)


# -- checkpoints -----------------------------------------------------------------------------
def save_brick(model: LegoSketch, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """A trained brick as one file: its geometry, ablation switches and weights."""
    path = Path(path)
    torch.save({"format": CHECKPOINT_FORMAT, "geometry": asdict(model.geometry),
                "ablations": asdict(model.ablations), "value_range": list(model.value_range),
                "item_scale": model.item_scale,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "extra": extra or {}}, path)
    return path


def load_brick(path: str | Path, expected: BrickGeometry | None = None, device: str = "cpu") -> LegoSketch:
    """Load a brick saved by `save_brick`. ValueError if the file is missing or unreadable,
    or (with `expected`) if it was trained with another geometry."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise ValueError(f"checkpoint {path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path}: not a Lego brick (format {CHECKPOINT_FORMAT} expected)")
    geometry = BrickGeometry(**blob["geometry"])
    if expected is not None and geometry != expected:
        raise ValueError(f"checkpoint {path}: trained with geometry {geometry}, expected {expected}")
    model = LegoSketch(geometry, Ablations(**blob["ablations"]), tuple(blob["value_range"]), blob["item_scale"])
    model.load_state_dict(blob["state_dict"])
    model.trained_params = dict((blob.get("extra") or {}).get("params") or {})
    return model.to(device)


def gate_item_estimate(model: LegoSketch, requested: str | None = None) -> str:
    """The ensemble gate's item count for `model`: `requested`, else the one its brick was
    trained and evaluated with, else the authors' scanner."""
    return requested or model.trained_params.get("item_estimate") or "scan"
