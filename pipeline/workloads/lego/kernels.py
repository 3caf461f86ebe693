"""numba kernels for inference-time Store and rule-based reads on CPU.

They compute exactly what `model.LegoSketch.store` / `read` compute with torch (same
hashes, same float32 arithmetic order per item), fused into one pass per item instead of
a dozen full-array tensor ops; training keeps the torch path for autograd. Store is one
sequential loop (scatter-adds would race); reads run in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

_MASK32 = np.int64(0xFFFFFFFF)


@numba.njit(inline="always")
def _hash(x, mult, add, table):
    # identical to model.hash_items (int64 wraps; only the low 32 bits are kept)
    x = (x ^ (x >> 32)) & _MASK32
    h = (x * mult + add) & _MASK32
    h = h ^ (h >> 16)
    h = (h * np.int64(0x85EBCA6B)) & _MASK32
    h = h ^ (h >> 13)
    h = (h * np.int64(0xC2B2AE35)) & _MASK32
    h = h ^ (h >> 16)
    return h % table


@numba.njit(inline="always")
def _embed_one(item, basis, embed_mult, embed_add, normalize, out):
    depth = out.shape[0]
    total = np.float32(0.0)
    for d in range(depth):
        value = basis[_hash(item, embed_mult[d], embed_add[d], basis.shape[0])]
        out[d] = value
        total += value
    if normalize:
        for d in range(depth):
            out[d] = out[d] / total * np.float32(depth)


@numba.njit(cache=True)
def store_kernel(items, counts, basis, embed_mult, embed_add, addr_mult, addr_add, brick_mult, brick_add,
                 normalize, memory, bucket):
    """memory: (bricks, depth, slots) float32, bucket: (bricks,) float32; in place."""
    bricks, depth, slots = memory.shape
    embedding = np.empty(depth, np.float32)
    for i in range(items.shape[0]):
        item = items[i]
        brick = 0 if bricks == 1 else _hash(item, brick_mult[0], brick_add[0], bricks)
        _embed_one(item, basis, embed_mult, embed_add, normalize, embedding)
        count = counts[i]
        for d in range(depth):
            memory[brick, d, _hash(item, addr_mult[d], addr_add[d], slots)] += embedding[d] * count
        bucket[brick] += count


@numba.njit(cache=True, parallel=True)
def read_kernel(items, basis, embed_mult, embed_add, addr_mult, addr_add, brick_mult, brick_add, normalize,
                memory, read, embedding, bricks_out, rule):
    """Fills read (n, depth), embedding (n, depth), bricks_out (n,), rule (n,)."""
    bricks, depth, slots = memory.shape
    for i in numba.prange(items.shape[0]):
        item = items[i]
        brick = 0 if bricks == 1 else _hash(item, brick_mult[0], brick_add[0], bricks)
        bricks_out[i] = brick
        _embed_one(item, basis, embed_mult, embed_add, normalize, embedding[i])
        best = np.float32(np.inf)
        for d in range(depth):
            value = memory[brick, d, _hash(item, addr_mult[d], addr_add[d], slots)]
            read[i, d] = value
            ratio = value / embedding[i, d]
            if ratio < best:
                best = ratio
        rule[i] = best
