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

Every lookup path is one compiled loop over the whole query batch (`_lookup_kernel`),
which also counts mapping accesses; `mapping` selects how key i is read:
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

from pipeline.workloads.wavelet.tree import MAX_N, WaveletMapping, access_one

MAPPINGS = ("wavelet", "permutation", "sorted_copy")
_KIND = {name: code for code, name in enumerate(MAPPINGS)}


def validate_keys(keys) -> np.ndarray:
    """The table as a 1-D numeric array, or a one-line ValueError naming what is wrong."""
    keys = np.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys: expected a 1-D array, got shape {keys.shape}")
    if keys.size == 0:
        raise ValueError("keys: the table is empty; nothing to index")
    if keys.size > MAX_N:
        raise ValueError(f"keys: {keys.size} rows; positions are 32-bit, at most {MAX_N}")
    if keys.dtype.kind not in "iuf":
        raise ValueError(f"keys: dtype {keys.dtype} cannot be indexed; need integer or float keys (up to 64 bits)")
    if keys.dtype.kind == "f" and not np.isfinite(keys).all():
        raise ValueError("keys: NaN or infinite keys cannot be ordered")
    return np.ascontiguousarray(keys)


def cast_queries(queries, dtype: np.dtype) -> np.ndarray:
    """Queries in the key type; a ValueError if a value does not survive the cast."""
    queries = np.asarray(queries)
    if queries.dtype.kind not in "iuf":
        raise ValueError(f"queries: dtype {queries.dtype} cannot be compared with {dtype} keys")
    cast = np.ascontiguousarray(queries, dtype=dtype)
    if queries.size and not np.array_equal(cast.astype(queries.dtype), queries):
        raise ValueError(f"queries: some values do not fit the key type {dtype}")
    return cast


# ----------------------------------------------------------------------------- the kernel


@numba.njit(inline="always")
def _probe(kind, i, data, perm, positions, levels, bits, rank_kind, sample_log2, digit_words,
           digit_off, rank_words, rank_off, rank_width, block_counts, super_counts, n_blocks, n_super):
    """(key of sorted rank i, token): token = original position (wavelet, permutation) or i."""
    if kind == 0:
        o = access_one(i, levels, bits, rank_kind, sample_log2, digit_words, digit_off, rank_words,
                       rank_off, rank_width, block_counts, super_counts, n_blocks, n_super)
        return data[o], o
    if kind == 1:
        o = np.int64(perm[i])
        return data[o], o
    return data[i], i


@numba.njit(inline="always")
def _lower_bound(q, a, b, token_b, kind, data, perm, positions, levels, bits, rank_kind, sample_log2,
                 digit_words, digit_off, rank_words, rank_off, rank_width, block_counts,
                 super_counts, n_blocks, n_super):
    """First rank in [a, b) whose key >= q, else b; with its token (token_b if b) and probes."""
    token = token_b
    probes = 0
    while a < b:
        mid = (a + b) >> 1
        key, t = _probe(kind, mid, data, perm, positions, levels, bits, rank_kind, sample_log2,
                        digit_words, digit_off, rank_words, rank_off, rank_width, block_counts,
                        super_counts, n_blocks, n_super)
        probes += 1
        if key < q:
            a = mid + 1
        else:
            b = mid
            token = t
    return a, token, probes


@numba.njit(cache=True)
def _lookup_kernel(queries, lo_arr, hi_arr, out, kind, n, data, perm, positions, levels, bits,
                   rank_kind, sample_log2, digit_words, digit_off, rank_words, rank_off,
                   rank_width, block_counts, super_counts, n_blocks, n_super):
    """All lookups in one loop; returns the total number of probes (mapping accesses)."""
    total = 0
    for k in range(queries.shape[0]):
        q = queries[k]
        lo = min(max(lo_arr[k], 0), n)
        hi = min(max(hi_arr[k], lo), n)
        r, token, probes = _lower_bound(q, lo, hi, -1, kind, data, perm, positions, levels, bits,
                                        rank_kind, sample_log2, digit_words, digit_off, rank_words,
                                        rank_off, rank_width, block_counts, super_counts, n_blocks, n_super)
        total += probes
        if r == lo and lo > 0:  # the window may start too late: check the key before it
            key, t = _probe(kind, lo - 1, data, perm, positions, levels, bits, rank_kind, sample_log2,
                            digit_words, digit_off, rank_words, rank_off, rank_width, block_counts,
                            super_counts, n_blocks, n_super)
            total += 1
            if key >= q:
                r, token, probes = _lower_bound(q, 0, lo - 1, t, kind, data, perm, positions, levels,
                                                bits, rank_kind, sample_log2, digit_words, digit_off,
                                                rank_words, rank_off, rank_width, block_counts,
                                                super_counts, n_blocks, n_super)
                total += probes
        if r == hi and token == -1 and hi < n:  # ... or end too early: check the key at hi
            key, t = _probe(kind, hi, data, perm, positions, levels, bits, rank_kind, sample_log2,
                            digit_words, digit_off, rank_words, rank_off, rank_width, block_counts,
                            super_counts, n_blocks, n_super)
            total += 1
            if key >= q:
                token = t
            else:
                r, token, probes = _lower_bound(q, hi + 1, n, -1, kind, data, perm, positions, levels,
                                                bits, rank_kind, sample_log2, digit_words, digit_off,
                                                rank_words, rank_off, rank_width, block_counts,
                                                super_counts, n_blocks, n_super)
                total += probes
        if r >= n:
            out[k] = -1
        elif kind == 2:
            out[k] = positions[token]
        else:
            out[k] = token
    return total


# ----------------------------------------------------------------------------- the index


@dataclass
class UnsortedIndex:
    """Lookups over an unsorted table through a mapping, guided by an optional model.

    Build with `UnsortedIndex.build(keys, mapping=..., model=...)`. `model` is any object
    with `search_bounds(queries) -> (lo, hi)` (answer in [lo, hi]) and `size_bytes`, or
    None for a binary search over the whole table.
    """

    keys: np.ndarray  # the table, in arrival order (sorted copy for mapping="sorted_copy")
    mapping: str
    model: object | None
    tree: WaveletMapping | None = None
    perm: np.ndarray | None = None  # uint32 sorted rank -> original position
    positions: np.ndarray | None = None  # uint32, for "sorted_copy"
    build_seconds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def build(keys, mapping: str = "wavelet", model=None, order: np.ndarray | None = None,
              arity: int = 16, rank: str = "sampled", sample_rate: int = 512) -> UnsortedIndex:
        """`order`: the stable argsort of keys if already known; `model`: fitted on keys[order]."""
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
        keys = validate_keys(keys)
        t0 = time.perf_counter()
        if order is None:
            order = np.argsort(keys, kind="stable")  # equal keys keep arrival order
        t_sort = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = UnsortedIndex(keys, mapping, model)
        if mapping == "wavelet":
            index.tree = WaveletMapping.build(order, arity=arity, rank=rank, sample_rate=sample_rate)
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
        return 0 if self.model is None else 8 * int(self.model.size_bytes)

    def bounds(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.model is None:
            return np.zeros(queries.size, np.int64), np.full(queries.size, self.n, np.int64)
        lo, hi = self.model.search_bounds(queries)
        return np.ascontiguousarray(lo, dtype=np.int64), np.ascontiguousarray(hi, dtype=np.int64)

    def _kernel_args(self) -> tuple:
        empty32 = np.zeros(1, np.uint32)
        if self.tree is not None:
            tree_args = self.tree.kernel_args
        else:
            dummy = WaveletMapping.build(np.zeros(1, np.int64), arity=2)
            tree_args = dummy.kernel_args
        perm = self.perm if self.perm is not None else empty32
        positions = self.positions if self.positions is not None else empty32
        return (_KIND[self.mapping], self.n, self.keys, perm, positions) + tree_args

    def lookup_with_bounds(self, queries: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, int]:
        """(original positions, total probes): the compiled loop alone, bounds given."""
        out = np.empty(queries.size, dtype=np.int64)
        probes = _lookup_kernel(queries, lo, hi, out, *self._kernel_args())
        return out, int(probes)

    def lookup(self, queries) -> np.ndarray:
        """Original position of each query's lower bound (-1: every key is smaller)."""
        queries = cast_queries(queries, self.keys.dtype)
        lo, hi = self.bounds(queries)
        return self.lookup_with_bounds(queries, lo, hi)[0]


# ----------------------------------------------------------------------------- fallback model


@dataclass
class SegmentedLinearModel:
    """Fallback model if pipeline.workloads.learned_index.models is missing: the sorted
    keys cut into `segments` equal runs, a least-squares line per run, its max error.
    search_bounds returns [lo, hi] holding the lower bound of any query (lines with a
    negative slope are clamped to flat, so each segment's prediction is monotone)."""

    first_keys: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    err_lo: np.ndarray
    err_hi: np.ndarray
    n: int

    @staticmethod
    def fit(sorted_keys: np.ndarray, segments: int = 1) -> SegmentedLinearModel:
        n = sorted_keys.size
        segments = max(1, min(segments, n))
        x = sorted_keys.astype(np.float64)
        y = np.arange(n, dtype=np.float64)
        seg = (np.arange(n) * segments) // n
        first = np.searchsorted(seg, np.arange(segments))
        count = np.bincount(seg, minlength=segments).astype(np.float64)
        xm = np.bincount(seg, x, segments) / count
        ym = np.bincount(seg, y, segments) / count
        dx = x - xm[seg]
        sxx = np.bincount(seg, dx * dx, segments)
        sxy = np.bincount(seg, dx * (y - ym[seg]), segments)
        slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0).clip(min=0.0)
        intercept = ym - slope * xm
        # lower-bound rank of each key = first position of its run of equal keys
        lb = np.searchsorted(sorted_keys, sorted_keys, side="left").astype(np.float64)
        resid = slope[seg] * x + intercept[seg] - lb
        err_lo = np.zeros(segments)
        err_hi = np.zeros(segments)
        np.maximum.at(err_lo, seg, resid)
        np.maximum.at(err_hi, seg, -resid)
        return SegmentedLinearModel(sorted_keys[first].copy(), slope, intercept,
                                    np.ceil(err_lo) + 1, np.ceil(err_hi) + 1, n)

    @property
    def size_bytes(self) -> int:
        return 8 * (self.first_keys.size + self.slope.size + self.intercept.size + self.err_lo.size + self.err_hi.size)

    def search_bounds(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seg = np.clip(np.searchsorted(self.first_keys, queries, side="right") - 1, 0, None)
        pred = self.slope[seg] * queries.astype(np.float64) + self.intercept[seg]
        lo = np.clip(np.floor(pred - self.err_lo[seg]), 0, self.n).astype(np.int64)
        hi = np.clip(np.ceil(pred + self.err_hi[seg]) + 1, 0, self.n).astype(np.int64)
        return lo, hi


def fit_model(kind: str, sorted_keys: np.ndarray, **params):
    """A model from the learned-index package (issue 3) if present, else the fallback line."""
    try:
        from pipeline.workloads.learned_index import models as li_models
    except ImportError:
        li_models = None
    if li_models is not None and hasattr(li_models, "fit_model"):
        return li_models.fit_model(kind, sorted_keys, **params)
    if kind != "linear":
        raise ValueError(f"model {kind!r} needs pipeline.workloads.learned_index.models; only 'linear' is built in")
    return SegmentedLinearModel.fit(sorted_keys, segments=int(params.get("segments", 1)))
