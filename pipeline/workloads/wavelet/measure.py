"""Timing of the mapping, the index over unsorted data and its peers (seed 002's bound).

Every figure is the median over `repeats` runs of one compiled loop over all queries (or
positions), divided by their number, after a warm-up run that compiles; CPU time of the
timing thread, not wall time (the machine is shared). A lookup path
whose answers differ from the reference (numpy's lower bound on a sorted copy, mapped
back to original positions) raises instead of reporting a time.

The slides' bound ("5 times (Mapping Scheme) <= B+ Tree Cost"), measured:
    bound_ratio = probes per lookup x ns per access / B+-tree ns per lookup  (<= 1 meets it)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from pipeline.workloads.wavelet.btree import StaticBPlusTree
from pipeline.workloads.wavelet.index import KEY, UnsortedIndex
from pipeline.workloads.wavelet.access import access_kernels_for
from pipeline.workloads.wavelet.tree import WaveletMapping


def uniform_table(n: int, seed: int) -> np.ndarray:
    """n uniform uint64 keys in random arrival order (the issue's target data)."""
    return np.random.default_rng(seed).integers(0, 2**64 - 1, size=n, dtype=KEY, endpoint=True)


def present_queries(keys: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Keys of the table drawn uniformly at random (SOSD's positive lookups)."""
    return np.ascontiguousarray(keys[np.random.default_rng(seed + 1).integers(0, keys.size, count)])


def reference_lookup(keys: np.ndarray, order: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Lower bound in the stable sorted order, as an original position (-1 past the end)."""
    rank = np.searchsorted(keys[order], queries, side="left")
    return np.where(rank < keys.size, order[np.minimum(rank, keys.size - 1)], -1)


def _median_ns(call, count: int, repeats: int) -> tuple[float, object]:
    """Median ns per item of `call`, in CPU time of this thread (time.thread_time_ns): on
    the shared 2-core machine, wall time would also count the time spent waiting for a
    core. Cache misses caused by the neighbours still count; see docs/benchmarks.md."""
    samples, result = [], None
    for _ in range(repeats):
        start = time.thread_time_ns()
        result = call()
        samples.append((time.thread_time_ns() - start) / count)
    return float(np.median(samples)), result


def time_access(tree: WaveletMapping, positions: np.ndarray, repeats: int = 3, group: int = 1) -> float:
    """ns per `access` at random sorted positions, all in one compiled loop: one after the
    other (group 1) or batched, `group` accesses level by level in lockstep."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    per_access, batched = access_kernels_for(tree.rank_code, tree.bits)
    if group == 1:
        call = lambda: per_access(positions, *tree.kernel_args)  # noqa: E731
    else:
        current = np.empty(group, dtype=np.int64)
        call = lambda: batched(positions, current, *tree.kernel_args)  # noqa: E731
    call()  # compiles
    return _median_ns(call, positions.size, repeats)[0]


@numba.njit(cache=True, _nrt=False)
def _gather_checksum(array, positions):
    total = 0
    for k in range(positions.shape[0]):
        total += array[positions[k]]
    return total


def time_gather(array: np.ndarray, positions: np.ndarray, repeats: int = 3) -> float:
    """ns per random read of `array` (the permutation array's `access`), one compiled loop."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    _gather_checksum(array, positions[:16])
    return _median_ns(lambda: _gather_checksum(array, positions), positions.size, repeats)[0]


@dataclass(frozen=True)
class LookupTiming:
    ns_per_lookup: float  # model window loop + last-mile loop, per query
    probes_per_lookup: float  # keys read in the last mile (= mapping accesses for a mapping)


def time_index(index: UnsortedIndex, queries: np.ndarray, expected: np.ndarray, repeats: int = 3,
               group: int = 1, candidates: int = 1) -> LookupTiming:
    """Whole lookups through `index` (the model's compiled window loop, then the compiled
    search loop: per query, batched in groups of `group`, or per query with `candidates`
    keys read per round), checked against `expected`."""
    index.lookup_counted(queries[:16], group, candidates)

    def run():
        lo, hi = index.model.search_bounds(queries)
        return index.search(queries, lo, hi, group, candidates)

    ns, (found, probes) = _median_ns(run, queries.size, repeats)
    if not np.array_equal(found, expected):
        raise RuntimeError(f"wrong lookups through {index.mapping}; no time is reported")
    return LookupTiming(ns, probes / queries.size)


def time_btree(btree: StaticBPlusTree, queries: np.ndarray, expected: np.ndarray, repeats: int = 3,
               group: int = 1) -> float:
    """ns per B+-tree lookup (per query, or batched in groups of `group`), checked against `expected`."""
    btree.lookup(queries[:16], group)
    ns, found = _median_ns(lambda: btree.lookup(queries, group), queries.size, repeats)
    if not np.array_equal(found, expected):
        raise RuntimeError(f"wrong B+-tree lookups (fanout {btree.fanout}); no time is reported")
    return ns
