"""A static B+-tree (seed 001 §3.1; SOSD benchmarks STX's B+-tree), laid out implicitly:
the table's blocks of `fanout` keys are the leaves, and each inner level holds the first
key of every node of the level below, so no pointers are stored (a CSS-tree layout, Rao
& Ross). A lookup finds, per level, the separators < q in one node by branch-free binary search,
and ends with the window of one leaf block, searched by the chosen routine.

Bytes: the inner levels' keys (8 each) and their sizes; SOSD's STX tree also stores child
pointers and slack, so ours is the smaller of the two.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from pipeline.workloads.learned_index.models import INT_BYTES, KEY, Model, finish


@njit(inline="always")
def _count_below(separators, lo, hi, q):
    """How many of separators[lo:hi] are < q: branch-free binary search (as search.bfs)."""
    base = lo
    size = hi - lo
    while size > 1:
        half = size >> 1
        base = base + half if separators[base + half - 1] < q else base
        size -= half
    if size == 1 and separators[base] < q:
        base += 1
    return base - lo


@njit(inline="always")
def _btree_predict(state, q):
    separators, offsets, fanout, n = state
    levels = offsets.size - 1
    child = 0
    for level in range(levels - 1, -1, -1):  # offsets[levels-1] is the root
        base = offsets[level]
        size = offsets[level + 1] - base
        start = child * fanout
        stop = min(start + fanout, size)
        # separators < q in this node: a branch-free binary search of its keys
        below = _count_below(separators, base + start, base + stop, q)
        # the last node whose first key is < q (the first node if none)
        child = start + max(below - 1, 0)
    return child * fanout, np.int64(0)


def fit_btree(keys: np.ndarray, fanout: int = 16) -> Model:
    """Static B+-tree with `fanout` keys per node."""
    started = time.perf_counter()
    if fanout < 2:
        raise ValueError(f"B+-tree fanout must be >= 2, got {fanout}")
    keys = np.ascontiguousarray(keys, dtype=KEY)
    levels = [keys[::fanout].copy()]  # first key of each leaf block
    while levels[-1].size > fanout:
        levels.append(levels[-1][::fanout].copy())
    offsets = np.cumsum([0] + [level.size for level in levels]).astype(np.int64)
    state = (np.concatenate(levels), offsets, np.int64(fanout), np.int64(keys.size))
    param_bytes = int(offsets[-1]) * 8 + offsets.size * INT_BYTES
    return finish("btree", keys, _btree_predict, state, 1, param_bytes,
                  {"fanout": int(fanout), "levels": len(levels)}, started)
