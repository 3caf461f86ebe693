"""A learned index over an unsorted table through the wavelet-tree mapping (seed 002,
"Proposed Solution"), and its peers on the same data.

The table stays in arrival order. A model fitted on the sorted keys predicts the sorted
position of a query with an error window (seed 002, "Are Learned Indexes Precise?": a
window of about 32, hence log2(32) = 5 extra probes); the last-mile binary search in the
window reads key i as `data[access(i)]`, each probe one mapping access. A lookup returns
the original position of the query's lower bound, -1 if every key is smaller.

Duplicate keys: the sorted order is the stable one, so equal keys are ordered by original
position and a lookup returns the smallest original position among the keys equal to the
lower bound. Bad input (empty table, keys of a type the index cannot hold: not integer
or float, NaN/inf, more than 2^32 - 1 rows) raises a one-line ValueError.

Every lookup path is one compiled loop over the whole query batch, which also counts
mapping accesses: per query (`_lookup_kernel`: each lookup, and each probe in it, waits
for the one before) or batched (`_lookup_group_kernel`: G lookups advanced level by level
in lockstep with prefetches, so their misses overlap); `mapping` selects how key i is read:
  - "wavelet": data[tree.access(i)]              (seed 002's mapping scheme)
  - "permutation": data[perm[i]], perm uint32    (the space-hungry upper bound)
  - "sorted_copy": sorted_keys[i], positions[i]  (what users do today; 2 arrays)
Window check: the search trusts the model's [lo, hi] only as a first guess; if the answer
lands on a window end it checks the neighbour and falls back to a binary search of the
rest, so a lookup is exact whatever the model (an extra probe only at window ends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numpy as np

from pipeline.workloads.intrinsics import prefetch
from pipeline.workloads.learned_index import models as li_models
from pipeline.workloads.wavelet.access import step_for
from pipeline.workloads.wavelet.layout import MAX_N, META_STEPS
from pipeline.workloads.wavelet.tree import WaveletMapping

MAPPINGS = ("wavelet", "permutation", "sorted_copy")
_KIND = {name: code for code, name in enumerate(MAPPINGS)}


KEY = li_models.KEY  # uint64: the key type of the learned-index models (seed 001)


def as_key_array(values, what: str = "keys") -> np.ndarray:
    """`values` as a contiguous uint64 array, or a one-line ValueError: the index type holds
    unsigned integers below 2^64 only (no floats, negatives or Python ints beyond 64 bits)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {values.shape}")
    if values.dtype.kind not in "iu" and not (values.dtype.kind == "b" and values.size == 0):
        raise ValueError(f"{what}: dtype {values.dtype} cannot be held by the index type uint64 "
                         "(need unsigned integers below 2^64)")
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        raise ValueError(f"{what}: negative value {values.min()} cannot be held by the index type uint64")
    return np.ascontiguousarray(values, dtype=KEY)


def validate_keys(keys) -> np.ndarray:
    """The table as uint64, or a one-line ValueError naming what is wrong."""
    keys = as_key_array(keys, "keys")
    if keys.size == 0:
        raise ValueError("keys: the table is empty; nothing to index")
    if keys.size > MAX_N:
        raise ValueError(f"keys: {keys.size} rows; positions are 32-bit, at most {MAX_N}")
    return keys


# ----------------------------------------------------------------------------- the kernel

# _NO_CACHE_WHY: numba's disk cache is invalidated only by changes to the function's own
# file; these kernels inline tree._step, so a cached copy would outlive an edit of
# tree.py (its buffer layout) and read out of bounds. They compile once per process.


_KERNELS: dict = {}


def kernels_for(rank_kind: int, bits: int) -> tuple:
    """(per-query, batched, k-ary) lookup kernels for a tree of one rank kind and arity:
    `step` and `prefetch_next` (`tree.step_for`) are closure variables, so numba inlines
    them with the kind and arity as constants. Not cached on disk: see _NO_CACHE_WHY."""
    key = (rank_kind, bits)
    if key in _KERNELS:
        return _KERNELS[key]
    step, prefetch_next = step_for(rank_kind, bits)

    @numba.njit(_nrt=False)
    def _probe(kind, i, data, aux, buf, meta):
        """(key of sorted rank i, token): token = original position (wavelet, permutation) or i.
        aux is the uint32 permutation (kind 1) or the sorted copy's positions (kind 2)."""
        if kind == 0:
            o = i
            for level in range(meta[META_STEPS]):  # levels walked (+ the low read if truncated)
                o = step(o, level, buf, meta)
            return data[o], o
        if kind == 1:
            o = np.int64(aux[i])
            return data[o], o
        return data[i], i


    @numba.njit(_nrt=False)
    def _lower_bound(q, a, b, token_b, kind, data, aux, buf, meta):
        """First rank in [a, b) whose key >= q, else b; with its token (token_b if b) and probes."""
        token = token_b
        probes = 0
        while a < b:
            mid = (a + b) >> 1
            key, t = _probe(kind, mid, data, aux, buf, meta)
            probes += 1
            if key < q:
                a = mid + 1
            else:
                b = mid
                token = t
        return a, token, probes


    @numba.njit(_nrt=False)
    def _finish(q, lo_k, hi_k, r, token, kind, n, data, aux, buf, meta):
        """After the search of the window [lo, hi): (answer, extra probes). The window is the
        model's first guess only; if the answer lands on a window end, check the neighbour and
        fall back to a binary search of the rest, so every lookup is exact."""
        lo = min(max(lo_k, 0), n)
        hi = min(max(hi_k, lo), n)
        total = 0
        if r == lo and lo > 0:  # the window may start too late: check the key before it
            key, t = _probe(kind, lo - 1, data, aux, buf, meta)
            total += 1
            if key >= q:
                r, token, probes = _lower_bound(q, 0, lo - 1, t, kind, data, aux, buf, meta)
                total += probes
        if r == hi and token == -1 and hi < n:  # ... or end too early: check the key at hi
            key, t = _probe(kind, hi, data, aux, buf, meta)
            total += 1
            if key >= q:
                token = t
            else:
                r, token, probes = _lower_bound(q, hi + 1, n, -1, kind, data, aux, buf, meta)
                total += probes
        if r >= n:
            return -1, total
        if kind == 2:
            return np.int64(aux[token]), total
        return token, total


    @numba.njit(_nrt=False)
    def _lookup_kernel(queries, lo_arr, hi_arr, out, kind, n, data, aux, buf, meta):
        """All last-mile searches in one loop, one lookup after the other (per query: every
        probe waits for the one before); returns the total number of probes (mapping
        accesses). The windows come from the model's own compiled batch loop
        (`Model.search_bounds`): taking the model's window function here instead would
        recompile this kernel for every model kind and defeat numba's disk cache."""
        total = 0
        for k in range(queries.shape[0]):
            q = queries[k]
            lo = min(max(lo_arr[k], 0), n)
            hi = min(max(hi_arr[k], lo), n)
            r, token, probes = _lower_bound(q, lo, hi, -1, kind, data, aux, buf, meta)
            out[k], extra = _finish(q, lo_arr[k], hi_arr[k], r, token, kind, n, data, aux, buf, meta)
            total += probes + extra
        return total


    @numba.njit(_nrt=False)
    def _lookup_group_kernel(queries, lo_arr, hi_arr, out, scratch, kind, n, data, aux, buf, meta):
        """The same searches, batched: groups of G = scratch.shape[1] lookups advance in
        lockstep, one binary-search step at a time, and inside a step one mapping level at a
        time; each lookup prefetches what its next level (or the table) will read, so the G
        cache misses of a level overlap instead of forming G dependent chains. Same answers
        and probe count as `_lookup_kernel`; the window-end checks run per lookup after."""
        a_s, b_s, token_s, mid_s, p_s = scratch[0], scratch[1], scratch[2], scratch[3], scratch[4]
        group = scratch.shape[1]
        steps = meta[META_STEPS]
        total = 0
        count = queries.shape[0]
        for start in range(0, count, group):
            size = min(group, count - start)
            for g in range(size):
                lo = min(max(lo_arr[start + g], 0), n)
                a_s[g] = lo
                b_s[g] = min(max(hi_arr[start + g], lo), n)
                token_s[g] = -1
            while True:
                active = 0
                for g in range(size):
                    if a_s[g] < b_s[g]:
                        mid = (a_s[g] + b_s[g]) >> 1
                        mid_s[g] = mid
                        active += 1
                        if kind == 0:
                            prefetch_next(mid, 0, buf, meta)
                        elif kind == 1:
                            prefetch(aux, mid)
                        else:
                            prefetch(data, mid)
                    else:
                        mid_s[g] = -1
                if active == 0:
                    break
                total += active
                if kind == 0:  # the wavelet tree: every level of every active lookup, in lockstep
                    for g in range(size):
                        p_s[g] = mid_s[g]
                    for level in range(steps):
                        for g in range(size):
                            if mid_s[g] >= 0:
                                p = step(p_s[g], level, buf, meta)
                                p_s[g] = p
                                if level + 1 < steps:
                                    prefetch_next(p, level + 1, buf, meta)
                                else:
                                    prefetch(data, p)
                elif kind == 1:
                    for g in range(size):
                        if mid_s[g] >= 0:
                            p = np.int64(aux[mid_s[g]])
                            p_s[g] = p
                            prefetch(data, p)
                else:
                    for g in range(size):
                        p_s[g] = mid_s[g]
                for g in range(size):
                    if mid_s[g] >= 0:
                        if data[p_s[g]] < queries[start + g]:
                            a_s[g] = mid_s[g] + 1
                        else:
                            b_s[g] = mid_s[g]
                            token_s[g] = p_s[g]
            for g in range(size):
                k = start + g
                out[k], extra = _finish(queries[k], lo_arr[k], hi_arr[k], a_s[g], token_s[g], kind, n, data, aux, buf, meta)
                total += extra
        return total


    @numba.njit(_nrt=False)
    def _lookup_kary_kernel(queries, lo_arr, hi_arr, out, scratch, kind, n, data, aux, buf, meta):
        """Per query, a k-ary search of the window: each round reads the keys of up to
        C = scratch.shape[1] evenly spaced candidates at once (their mapping accesses advance
        level by level in lockstep, so their misses overlap) and keeps the gap where q falls.
        A 33-wide window takes 2 rounds at C = 5 instead of 5-6 dependent binary-search
        probes, for more accesses in all: it trades work for latency."""
        candidates, positions = scratch[0], scratch[1]
        most = scratch.shape[1]
        steps = meta[META_STEPS]
        total = 0
        for k in range(queries.shape[0]):
            q = queries[k]
            a = min(max(lo_arr[k], 0), n)
            b = min(max(hi_arr[k], a), n)
            token = -1
            while a < b:
                length = b - a
                count = min(most, length)
                for j in range(count):
                    mid = a + ((j + 1) * length) // (count + 1)
                    candidates[j] = mid
                    positions[j] = mid
                    if kind == 0:
                        prefetch_next(mid, 0, buf, meta)
                    elif kind == 1:
                        prefetch(aux, mid)
                total += count
                if kind == 0:
                    for level in range(steps):
                        for j in range(count):
                            p = step(positions[j], level, buf, meta)
                            positions[j] = p
                            if level + 1 < steps:
                                prefetch_next(p, level + 1, buf, meta)
                            else:
                                prefetch(data, p)
                elif kind == 1:
                    for j in range(count):
                        positions[j] = np.int64(aux[candidates[j]])
                        prefetch(data, positions[j])
                first_above = count  # the first candidate whose key is >= q
                for j in range(count):
                    if data[positions[j]] >= q:
                        first_above = j
                        break
                if first_above < count:
                    b = candidates[first_above]
                    token = positions[first_above]
                if first_above > 0:
                    a = candidates[first_above - 1] + 1
            out[k], extra = _finish(q, lo_arr[k], hi_arr[k], a, token, kind, n, data, aux, buf, meta)
            total += extra
        return total

    _KERNELS[key] = (_lookup_kernel, _lookup_group_kernel, _lookup_kary_kernel)
    return _KERNELS[key]


# ----------------------------------------------------------------------------- the index


@dataclass
class UnsortedIndex:
    """Lookups over an unsorted table through a mapping, guided by an optional model.

    Build with `UnsortedIndex.build(keys, mapping=..., model=...)`. `model` is a fitted
    `pipeline.workloads.learned_index.models.Model` (its compiled window runs inside the
    lookup loop; answer in [lo, hi]) or None for a binary search over the whole table.
    """

    keys: np.ndarray  # the table (uint64), in arrival order (sorted copy for mapping="sorted_copy")
    mapping: str
    model: li_models.Model
    tree: WaveletMapping | None = None
    perm: np.ndarray | None = None  # uint32 sorted rank -> original position
    positions: np.ndarray | None = None  # uint32, for "sorted_copy"
    build_seconds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def build(keys, mapping: str = "wavelet", model=None, order: np.ndarray | None = None,
              arity: int = 16, rank: str = "sampled", sample_rate: int = 512, block_lines: int = 2,
              depth: int | None = None) -> UnsortedIndex:
        """`order`: the stable argsort of keys if already known; `model`: fitted on
        keys[order] (None: the whole table is the window, i.e. plain binary search)."""
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
        keys = validate_keys(keys)
        t0 = time.perf_counter()
        if order is None:
            order = np.argsort(keys, kind="stable")  # equal keys keep arrival order
        t_sort = time.perf_counter() - t0
        t0 = time.perf_counter()
        if model is None:
            model = li_models.fit_none(keys)
        index = UnsortedIndex(keys, mapping, model)
        if mapping == "wavelet":
            index.tree = WaveletMapping.build(order, arity=arity, rank=rank, sample_rate=sample_rate,
                                              block_lines=block_lines, depth=depth)
        elif mapping == "permutation":
            index.perm = order.astype(np.uint32)
        else:
            index.keys = np.ascontiguousarray(keys[order])
            index.positions = order.astype(np.uint32)
        index.build_seconds = {"sort": t_sort, "mapping": time.perf_counter() - t0}
        return index

    @property
    def n(self) -> int:
        return int(self.keys.size)

    def mapping_bits(self) -> int:
        """Bits beyond the table itself (the model excluded: see `model_bits`)."""
        if self.mapping == "wavelet":
            return self.tree.size_bits()["total"]
        if self.mapping == "permutation":
            return 32 * self.n
        return self.n * (8 * self.keys.itemsize + 32)  # a second copy of the keys + positions

    def model_bits(self) -> int:
        return 8 * int(self.model.size_bytes)

    def _kernel_args(self) -> tuple:
        tree = self.tree if self.tree is not None else _DUMMY_TREE
        aux = self.perm if self.mapping == "permutation" else self.positions
        aux = aux if aux is not None else np.zeros(1, np.uint32)
        return (_KIND[self.mapping], self.n, self.keys, aux) + tree.kernel_args

    def search(self, queries: np.ndarray, lo: np.ndarray, hi: np.ndarray, group: int = 1,
               candidates: int = 1) -> tuple[np.ndarray, int]:
        """(original positions, total probes) of uint64 queries with their model windows;
        group > 1: batched, `group` lookups in lockstep (`_lookup_group_kernel`);
        candidates > 1 (per query only): k-ary search reading that many keys per round."""
        if group < 1 or candidates < 1:
            raise ValueError(f"group and candidates must be >= 1, got {group}, {candidates}")
        if group > 1 and candidates > 1:
            raise ValueError("candidates > 1 is a per-query search; use it with group=1")
        out = np.empty(queries.size, dtype=np.int64)
        tree = self.tree if self.tree is not None else _DUMMY_TREE
        _lookup_kernel, _lookup_group_kernel, _lookup_kary_kernel = kernels_for(tree.rank_code, tree.bits)
        if candidates > 1:
            scratch = np.empty((2, candidates), dtype=np.int64)
            probes = _lookup_kary_kernel(queries, lo, hi, out, scratch, *self._kernel_args())
        elif group == 1:
            probes = _lookup_kernel(queries, lo, hi, out, *self._kernel_args())
        else:
            scratch = np.empty((5, group), dtype=np.int64)
            probes = _lookup_group_kernel(queries, lo, hi, out, scratch, *self._kernel_args())
        return out, int(probes)

    def lookup_counted(self, queries: np.ndarray, group: int = 1, candidates: int = 1) -> tuple[np.ndarray, int]:
        """(original positions, total probes): the model's window loop, then the search loop."""
        lo, hi = self.model.search_bounds(queries)
        return self.search(queries, lo, hi, group, candidates)

    def lookup(self, queries, group: int = 1, candidates: int = 1) -> np.ndarray:
        """Original position of each query's lower bound (-1: every key is smaller)."""
        return self.lookup_counted(as_key_array(queries, "queries"), group, candidates)[0]


_DUMMY_TREE = WaveletMapping.build(np.zeros(1, np.int64), arity=2)  # fills the kernel's tree slots




def fit_model(kind: str, sorted_keys: np.ndarray, **params) -> li_models.Model:
    """A model of the learned-index package (seed 001) on the sorted keys; "none" (or a
    one-key table, which those models refuse) gives the whole-table window."""
    if kind == "none" or sorted_keys.size < 2:
        return li_models.fit_none(np.ascontiguousarray(sorted_keys, dtype=KEY))
    return li_models.fit_model(kind, sorted_keys, **params)
