"""Query networks and one-hot lookups shared by seed 000's NN search (§2.1) and
frequency estimation (§3.1).

A query model is a 3-layer MLP with LayerNorm and ReLU (appendix A.1: hidden 1024 in
the paper). It sees the query and the history of earlier lookups and emits logits over
the positions it may read; `one_hot_lookup` turns the logits into a lookup: a
Gumbel-softmax sample with noise while training (temperature 2 in the paper), a hardmax
at inference, so that exactly one position is read per query model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class QueryMLP(nn.Module):
    """in_dim -> hidden -> hidden -> out_dim, LayerNorm + ReLU after each hidden layer."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 1024, layers: int = 3):
        super().__init__()
        if layers < 2:
            raise ValueError(f"a query MLP needs at least 2 layers, got {layers}")
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def one_hot_lookup(logits: torch.Tensor, temperature: float = 2.0, training: bool = True) -> torch.Tensor:
    """Weights over the last axis: soft Gumbel-softmax samples in training, an exact one-hot
    argmax at inference."""
    if not training:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return F.gumbel_softmax(logits, tau=temperature, hard=False, dim=-1)
