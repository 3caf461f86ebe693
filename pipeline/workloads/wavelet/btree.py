"""A static B+-tree secondary index over an unsorted table: the peer that seed 002's
bound is stated against ("5 times (Mapping Scheme) <= B+ Tree Cost"; "B+ Tree usually
has 256 branches").

Bulk-loaded bottom up, CSS-tree style: the leaves are the keys in sorted order with
their original positions (`leaf_size` entries per leaf, as flat arrays); each inner
level holds the largest key of every node below it, `fanout` keys per node, the last
node padded with the key type's maximum. A lookup descends from the root with a
branch-free binary search in each node and returns the original position of the first
key >= the query (the first in sorted order among equal keys: equal keys are ordered by
original position). `lookup(queries, group=G)` is the batched version: G lookups descend
in lockstep with prefetches, as the wavelet index's batched lookups do. Written by hand: no maintained Python B+-tree compiles with numba.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from pipeline.workloads.intrinsics import prefetch


@numba.njit(cache=True, _nrt=False)
def node_lower_bound(keys, start, size, q):
    """First offset in keys[start:start+size] whose key >= q (size if none); branch free."""
    base = start
    length = size
    while length > 1:
        half = length >> 1
        if keys[base + half - 1] < q:
            base += half
        length -= half
    if length == 1 and keys[base] < q:
        base += 1
    return base - start


@numba.njit(cache=True, _nrt=False)
def _btree_lookup(queries, out, inner, level_off, n_levels, fanout, leaf_size,
                  sorted_keys, positions, max_key):
    """Original position of each query's lower bound, -1 past the end, all in one loop."""
    n = sorted_keys.shape[0]
    for k in range(queries.shape[0]):
        q = queries[k]
        if q > max_key:
            out[k] = -1
            continue
        node = 0
        for level in range(n_levels - 1, -1, -1):  # root level is stored last
            start = level_off[level] + node * fanout
            node = node * fanout + node_lower_bound(inner, start, fanout, q)
        start = node * leaf_size
        size = min(leaf_size, n - start)
        out[k] = positions[start + node_lower_bound(sorted_keys, start, size, q)]


@numba.njit(cache=True, _nrt=False)
def _prefetch_node(keys, start, size):
    """Prefetch every cache line of keys[start:start+size] (a node the search will read)."""
    for offset in range(0, size, 8):  # 8 uint64 keys per 64-byte line
        prefetch(keys, start + offset)
    prefetch(keys, start + size - 1)


@numba.njit(cache=True, _nrt=False)
def _btree_lookup_group(queries, out, scratch, inner, level_off, n_levels, fanout, leaf_size,
                        sorted_keys, positions, max_key):
    """The batched lookup, the same treatment as the wavelet index's batched kernel: G =
    scratch.shape[0] lookups descend in lockstep, one level at a time; each prefetches the
    whole child node (or leaf, then the position) it will search next."""
    n = sorted_keys.shape[0]
    group = scratch.shape[0]
    count = queries.shape[0]
    for start in range(0, count, group):
        size = min(group, count - start)
        for g in range(size):
            scratch[g] = 0
        for level in range(n_levels - 1, -1, -1):  # root level is stored last
            for g in range(size):
                q = min(queries[start + g], max_key)  # larger: answered -1 below
                node_start = level_off[level] + scratch[g] * fanout
                child = scratch[g] * fanout + node_lower_bound(inner, node_start, fanout, q)
                scratch[g] = child
                if level > 0:
                    _prefetch_node(inner, level_off[level - 1] + child * fanout, fanout)
                else:
                    _prefetch_node(sorted_keys, child * leaf_size, min(leaf_size, n - child * leaf_size))
        for g in range(size):
            q = min(queries[start + g], max_key)
            leaf_start = scratch[g] * leaf_size
            at = leaf_start + node_lower_bound(sorted_keys, leaf_start, min(leaf_size, n - leaf_start), q)
            scratch[g] = at
            prefetch(positions, at)
        for g in range(size):
            out[start + g] = -1 if queries[start + g] > max_key else np.int64(positions[scratch[g]])


@dataclass(frozen=True)
class StaticBPlusTree:
    """Secondary index: sorted keys + original positions in leaves, max-key separators above."""

    fanout: int
    leaf_size: int
    sorted_keys: np.ndarray
    positions: np.ndarray  # uint32 original positions, in sorted-key order
    inner: np.ndarray  # all inner levels, bottom level first, each a multiple of fanout
    level_off: np.ndarray  # int64 [levels + 1]

    @staticmethod
    def build(keys: np.ndarray, fanout: int = 16, leaf_size: int = 16,
              order: np.ndarray | None = None) -> StaticBPlusTree:
        """`order`: a stable argsort of keys, if the caller has one already."""
        if fanout < 2 or leaf_size < 1:
            raise ValueError(f"fanout must be >= 2 and leaf_size >= 1, got {fanout}, {leaf_size}")
        keys = np.asarray(keys)
        if keys.size == 0:
            raise ValueError("cannot index an empty table")
        if order is None:
            order = np.argsort(keys, kind="stable")
        sorted_keys = np.ascontiguousarray(keys[order])
        pad = _max_of(sorted_keys.dtype)
        # the largest key of every leaf, then of every node, up to a single root node
        separators = sorted_keys[np.minimum(np.arange(leaf_size - 1, sorted_keys.size + leaf_size - 1, leaf_size), sorted_keys.size - 1)]
        levels = []
        while True:
            padded = np.full(-(-separators.size // fanout) * fanout, pad, dtype=sorted_keys.dtype)
            padded[: separators.size] = separators
            levels.append(padded)
            if padded.size == fanout:
                break
            separators = padded.reshape(-1, fanout).max(axis=1)
        level_off = np.cumsum([0] + [lv.size for lv in levels]).astype(np.int64)
        return StaticBPlusTree(fanout, leaf_size, sorted_keys, order.astype(np.uint32),
                               np.concatenate(levels), level_off)

    @property
    def n_levels(self) -> int:
        return self.level_off.size - 1

    def lookup(self, queries: np.ndarray, group: int = 1) -> np.ndarray:
        """Original position of the lower bound of each query (-1 if every key is smaller);
        group > 1: batched, `group` lookups in lockstep (`_btree_lookup_group`)."""
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        queries = np.ascontiguousarray(queries, dtype=self.sorted_keys.dtype)
        out = np.empty(queries.size, dtype=np.int64)
        args = (self.inner, self.level_off, self.n_levels, self.fanout, self.leaf_size, self.sorted_keys,
                self.positions, self.sorted_keys[-1])
        if group == 1:
            _btree_lookup(queries, out, *args)
        else:
            _btree_lookup_group(queries, out, np.empty(group, dtype=np.int64), *args)
        return out

    def size_bits(self) -> int:
        """Leaves (keys + 32-bit positions) and inner levels, padding included."""
        key_bits = 8 * self.sorted_keys.itemsize
        return self.sorted_keys.size * (key_bits + 32) + self.inner.size * key_bits


def _max_of(dtype: np.dtype):
    return np.finfo(dtype).max if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max
