"""What a Lego brick is made of apart from its network (seed 003 §3.1): its geometry (the
shape that makes two bricks interchangeable), the ablation switches of §5.5, and the hashes
that route an item to a brick and address its slots.

Apart from `model` because checkpoints, kernels and benches need them without the torch
modules, and because the hashes must stay bit-for-bit what trained bricks were built with.
Hashes are written here (a murmur3 finaliser over int64 torch tensors) because they must be
vectorised, deterministic across processes and stored with the brick; no library offers
that for torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
CHECKPOINT_FORMAT = "lego-brick-v1"
ItemEstimate = Literal["scan", "linear_counting"]  # where the ensemble gate takes its item count
ITEM_ESTIMATES: tuple[str, ...] = get_args(ItemEstimate)


def hash_items(items: torch.Tensor, mult: torch.Tensor, add: torch.Tensor, table: int) -> torch.Tensor:
    """`len(mult)` independent hashes of int64 `items` into `[0, table)`: shape (n, k).

    (a*x + b) mod 2^32 followed by the murmur3 32-bit finaliser; int64 products wrap, but
    only their low 32 bits are kept, which wrapping does not change."""
    x = items.to(torch.int64)
    x = (x ^ (x >> 32)) & _MASK32  # fold 64-bit ids into 32 bits
    h = (x[:, None] * mult[None, :] + add[None, :]) & _MASK32
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    h = h ^ (h >> 16)
    return h % table


def _hash_constants(seed: int, role: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, role])
    mult = rng.integers(1 << 20, 1 << 32, size=count, dtype=np.int64) | 1  # odd multipliers
    add = rng.integers(0, 1 << 32, size=count, dtype=np.int64)
    return torch.from_numpy(mult), torch.from_numpy(add)


@dataclass(frozen=True)
class BrickGeometry:
    """What makes two bricks interchangeable: a checkpoint only loads into the same one."""

    depth: int = 5  # hash rows per brick = embedding size (the authors tie them: 5)
    slots: int = 5120  # slots per row (authors: 5120, so a brick is 5 x 5120 x 4 B = 100 KB)
    basis_size: int = 80  # length of the learnable vector (authors: 16 x depth)
    hash_seed: int = 0  # seeds every hash (embedding, address, brick routing)
    embedding: str = "hash"  # "hash" (Lego) or "mlp" (meta-sketch-like MLP embedding)

    @property
    def brick_bytes(self) -> int:
        return self.depth * self.slots * 4  # float32 counters

    def validate(self) -> None:
        if self.depth < 1 or self.slots < 10 or self.basis_size < 1:
            raise ValueError(f"brick geometry needs depth >= 1, slots >= 10, basis_size >= 1: {self}")
        if self.embedding not in ("hash", "mlp"):
            raise ValueError(f"embedding must be 'hash' or 'mlp', got {self.embedding!r}")


@dataclass(frozen=True)
class Ablations:
    """Switches of seed 003 §5.5 (all True = the full Lego sketch)."""

    learnable_vector: bool = True  # False: the hashed vector is fixed (random, not trained)
    normalize: bool = True  # False: embedding values are used as read, without normalisation
    scanning: bool = True  # False: no memory scanning; decoder sees no stream features
