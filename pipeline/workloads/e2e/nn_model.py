"""The end-to-end nearest-neighbour model of seed 000 §2.1 and appendix A.1.

data-processing network: a NanoGPT-style transformer (no causal mask: the input is a
set) reads the N points and emits one rank score per point; a differentiable sort
(NeuralSort, Grover et al. 2019, which the seed cites; written here in a few lines
because no maintained package ships it for torch) turns the scores into a soft
permutation P, and D_hat = [P @ D, b_1..b_T]. The T extra vectors come from T
learned "extra" tokens appended to the sequence (appendix C.5: "unrestricted" emits a
d-vector, "coefficients" emits N weights over the permuted data). "copy" (ours, not in
the paper) is coefficients restricted to one-hot: each extra token points at one data
point by attention (a Gumbel-softmax over the N points in training, a hardmax at
inference, as for the lookups) and its slot holds an exact copy of that point, which is
what the bucketing baseline of C.4.1 stores; a read of such a slot is a read of the point.

query-execution network: M query MLPs (`lookup.QueryMLP`); Q^i sees the query and the
history (m_1, v_1, ..., m_{i-1}, v_{i-1}) and emits logits over the N+T positions;
`lookup.one_hot_lookup` makes a Gumbel-softmax lookup in training, a hardmax at inference.

Ablations (§2.1 "Evaluation and Baselines"): `permute=False` (no-permute: the
transformer outputs the points directly), `adaptive=False` (each Q^i sees only q; the
answer is the retrieved value closest to q), frozen data network (in `nn_train`, by
leaving its weights out of the optimiser). `shared_query=True` is appendix F's one query
model used M times (it also reads a one-hot step index and a zero-padded history).
For digit images a small CNN feature model F_phi maps each image to `feature_dim`
numbers that both networks read (§2.4).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.workloads.e2e.lookup import QueryMLP, one_hot_lookup

#: NeuralSort's temperature: the seed does not state it; 1 is assumed (0.3, 3 and 10 were
#: tried and moved 30D accuracy by at most a point: docs/benchmarks.md, "30D")
SORT_TEMPERATURE = 1.0
EXTRA_MODES = ("unrestricted", "coefficients", "copy")


def neural_sort(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """NeuralSort relaxation: [B, N] scores -> [B, N, N] row-stochastic P with P[b, i, j]
    ~ 1 if point j has the i-th smallest score (ascending, unlike the paper's descending
    form, by negating the scores)."""
    s = -scores.unsqueeze(-1)  # [B, N, 1]
    n = s.shape[1]
    pairwise = (s - s.transpose(1, 2)).abs().sum(dim=2, keepdim=True).transpose(1, 2)  # [B, 1, N]
    scale = (n + 1 - 2 * torch.arange(1, n + 1, device=s.device, dtype=s.dtype)).view(1, n, 1)
    return F.softmax((scale * s.transpose(1, 2) - pairwise) / temperature, dim=-1)


def hard_permutation(scores: torch.Tensor) -> torch.Tensor:
    """The exact permutation matrix of an ascending argsort (what inference uses)."""
    return F.one_hot(scores.argsort(dim=-1), scores.shape[-1]).to(scores.dtype)


class Block(nn.Module):
    """NanoGPT block: pre-LayerNorm attention and MLP with residuals, no causal mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=-1)
        q, k, v = (t.view(b, n, self.heads, w // self.heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, w)
        x = x + self.proj(att)
        return x + self.mlp(self.ln2(x))


class DigitFeatures(nn.Module):
    """F_phi of §2.4: a small CNN from an 8x24 digit image to `feature_dim` numbers."""

    def __init__(self, feature_dim: int, channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * 4 * 12, 64), nn.ReLU(), nn.Linear(64, feature_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        lead = images.shape[:-2]
        return self.net(images.reshape(-1, 1, *images.shape[-2:])).view(*lead, -1)


class DataNetwork(nn.Module):
    """Transformer over the N points (+ T extra tokens): rank scores, extra vectors, or,
    without permutation, the transformed points themselves."""

    def __init__(self, point_dim: int, n: int, extra: int, width: int, layers: int, heads: int,
                 extra_mode: str, permute: bool):
        super().__init__()
        self.extra, self.extra_mode, self.permute = extra, extra_mode, permute
        self.embed = nn.Linear(point_dim, width)
        self.extra_tokens = nn.Parameter(torch.randn(extra, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.rank_head = nn.Linear(width, 1)
        self.point_head = nn.Linear(width, point_dim)  # no-permute ablation only
        self.extra_head = nn.Linear(width, {"coefficients": n, "copy": width}.get(extra_mode, point_dim))
        self.pointer_key = nn.Linear(width, width) if extra_mode == "copy" else None

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """points [B, N, d] -> (rank scores [B, N], transformed points [B, N, d], extra head
        output [B, T, d or N]; for "copy": pointer logits [B, T, N] over the input points)."""
        h = self.embed(points)
        if self.extra:
            h = torch.cat([h, self.extra_tokens.expand(h.shape[0], -1, -1)], dim=1)
        for block in self.blocks:
            h = block(h)
        h = self.ln(h)
        n = points.shape[1]
        extra_out = self.extra_head(h[:, n:])
        if self.pointer_key is not None:  # scaled dot-product pointer from each extra token to each point
            extra_out = extra_out @ self.pointer_key(h[:, :n]).transpose(1, 2) / h.shape[-1] ** 0.5
        return self.rank_head(h[:, :n]).squeeze(-1), self.point_head(h[:, :n]), extra_out


class NNModel(nn.Module):
    """Data-processing network + M query models (module docstring)."""

    def __init__(self, *, n: int, lookups: int, point_dim: int, extra: int = 0,
                 extra_mode: str = "unrestricted", width: int = 64, layers: int = 8, heads: int = 8,
                 query_hidden: int = 1024, query_layers: int = 3, lookup_temperature: float = 2.0,
                 permute: bool = True, adaptive: bool = True, shared_query: bool = False,
                 image_features: int = 0):
        super().__init__()
        if extra_mode not in EXTRA_MODES:
            raise ValueError(f"unknown extra_mode {extra_mode!r}; valid: {', '.join(EXTRA_MODES)}")
        self.n, self.lookups, self.extra = n, lookups, extra
        self.lookup_temperature = lookup_temperature
        self.permute, self.adaptive, self.shared_query = permute, adaptive, shared_query
        self.features = DigitFeatures(image_features) if image_features else None
        dim = image_features or point_dim
        self.dim = dim
        self.data_net = DataNetwork(dim, n, extra, width, layers, heads, extra_mode, permute)
        slots = n + extra
        if shared_query:
            # appendix F: one model, history zero-padded to M-1 entries, step as one-hot
            in_dim = dim + (lookups - 1) * (slots + dim) + lookups
            self.query_models = nn.ModuleList([QueryMLP(in_dim, slots, query_hidden, query_layers)])
        else:
            in_dims = [dim + (i * (slots + dim) if adaptive else 0) for i in range(lookups)]
            self.query_models = nn.ModuleList(QueryMLP(d, slots, query_hidden, query_layers) for d in in_dims)

    def embed(self, data: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features is None:
            return data, queries
        return self.features(data), self.features(queries)

    def structure(self, points: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D_hat [B, N+T, d], the placement [B, N(+T), N] (rows: positions, columns:
        original points: the permutation, identity without permutation, then for "copy"
        the pointer of each extra slot) and the rank scores [B, N]."""
        scores, transformed, extra_out = self.data_net(points)
        b, n, _ = points.shape
        if not self.permute:
            perm = torch.eye(n, device=points.device, dtype=points.dtype).expand(b, n, n)
            laid_out = transformed
        else:
            perm = neural_sort(scores, SORT_TEMPERATURE) if training else hard_permutation(scores)
            laid_out = perm @ points
        if self.extra and self.data_net.extra_mode == "copy":
            pointer = one_hot_lookup(extra_out, self.lookup_temperature, training=training)  # [B, T, N]
            laid_out = torch.cat([laid_out, pointer @ points], dim=1)
            perm = torch.cat([perm, pointer], dim=1)
        elif self.extra:
            extra = extra_out @ laid_out if self.data_net.extra_mode == "coefficients" else extra_out
            laid_out = torch.cat([laid_out, extra], dim=1)
        return laid_out, perm, scores

    def query_input(self, step: int, query: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
        if self.shared_query:
            b = query.shape[0]
            width = (self.lookups - 1) * (self.n + self.extra + self.dim)
            past = torch.cat(history, dim=-1) if history else query.new_zeros(b, 0)
            pad = query.new_zeros(b, width - past.shape[1])
            step_code = F.one_hot(torch.full((b,), step, device=query.device), self.lookups).to(query.dtype)
            return torch.cat([query, past, pad, step_code], dim=-1)
        if not self.adaptive or not history:
            return query
        return torch.cat([query, *history], dim=-1)

    def forward(self, data: torch.Tensor, queries: torch.Tensor, training: bool = True) -> dict[str, torch.Tensor]:
        points, query = self.embed(data, queries)
        laid_out, perm, scores = self.structure(points, training)
        history: list[torch.Tensor] = []
        lookups, values = [], []
        for step in range(self.lookups):
            model = self.query_models[0 if self.shared_query else step]
            logits = model(self.query_input(step, query, history))
            weights = one_hot_lookup(logits, self.lookup_temperature, training=training)
            value = (weights.unsqueeze(1) @ laid_out).squeeze(1)
            lookups.append(weights)
            values.append(value)
            history += [weights, value]
        return {"lookups": torch.stack(lookups, 1), "values": torch.stack(values, 1), "structure": laid_out,
                "perm": perm, "scores": scores, "points": points, "query": query}


def nn_loss(out: dict[str, torch.Tensor], nn_index: torch.Tensor, loss: str, every_lookup: bool,
            adaptive: bool, closest_read: bool = False) -> torch.Tensor:
    """§2.1: squared error between y and y_hat = m_M^T D_hat, or cross-entropy of the
    position that holds y (probability mass the lookup puts on y's soft position).
    `every_lookup` averages the loss over all M lookups instead of only the last
    (an option of ours, off in the paper profiles). Without adaptivity the answer is the lookup whose value is
    closest to q (§2.1), chosen without gradient; `closest_read` (ours) trains an adaptive
    model on that answer too, the one the best-so-far rule of §2.2 scores."""
    values, lookups = out["values"], out["lookups"]  # [B, M, d], [B, M, N+T]
    b = values.shape[0]
    rows = torch.arange(b, device=values.device)
    target = out["points"][rows, nn_index]  # [B, d]
    if loss == "mse":
        per_lookup = ((values - target.unsqueeze(1)) ** 2).sum(-1)
    else:
        where_y = out["perm"][rows, :, nn_index]  # [B, N(+T)]: soft position of y (and of its copies)
        n = where_y.shape[1]  # slots that hold input points
        hit = (lookups[..., :n] * where_y.unsqueeze(1)).sum(-1)  # [B, M]
        if every_lookup and adaptive and not closest_read and lookups.shape[-1] > n:
            # with extra space, an earlier lookup may read a stored statistic instead of a
            # point (§2.5): score it only on where it reads among the points, weighted by
            # the (constant) mass it puts on points, so the loss neither pushes it away
            # from the extra slots nor towards them; the last lookup keeps the plain
            # cross-entropy (it must read y itself)
            data_mass = lookups[:, :-1, :n].sum(-1)
            earlier = -torch.log((hit[:, :-1] / data_mass.clamp_min(1e-9)).clamp_min(1e-9)) * data_mass.detach()
            return _lookup_mean(torch.cat([earlier, -torch.log(hit[:, -1:].clamp_min(1e-9))], dim=1))
        per_lookup = -torch.log(hit.clamp_min(1e-9))
    if not adaptive or closest_read:
        # the non-adaptive models answer together (the read closest to q), so they are
        # trained on that answer even with `every_lookup`: averaging over lookups would
        # train M copies of the same one-lookup guess; `closest_read` does the same for
        # an adaptive model, whose lookups otherwise each chase y alone
        chosen = ((values - out["query"].unsqueeze(1)) ** 2).sum(-1).detach().argmin(1)
        return per_lookup[rows, chosen].mean()
    if every_lookup:
        return _lookup_mean(per_lookup)
    return per_lookup[:, -1].mean()


def _lookup_mean(per_lookup: torch.Tensor) -> torch.Tensor:
    """Mean over [B, M]: the sum over lookups, averaged over the batch, over M (this order of
    summation, so that runs repeat the recorded figures bit for bit)."""
    return per_lookup.sum(1).mean() / per_lookup.shape[1]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
