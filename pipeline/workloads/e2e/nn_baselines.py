"""Classic nearest-neighbour baselines with a budget of M lookups (seed 000 §2.2-2.5, C.4.1, D).

Every baseline reads the same `nn_data.Instances` the model is evaluated on and returns
the original index of the point read at each lookup, [B, M] (-1 when a lookup reads no
data point), so that `accuracy_curve` applies the same best-so-far rule of §2.2 to all
methods. Search loops are numba-compiled over the whole batch (STYLE rule 6):

- `binary_search` / `interpolation_search`: on the sorted data (1D). Interpolation
  search starts from the distribution's known value range instead of spending lookups on
  the endpoints (assumed; the paper does not say).
- `treap_search`: the learning-augmented treap of Lin, Luo & Woodruff (2022): a BST on the
  keys that is a max-heap on predicted query frequency (here the exact Zipf mass of each
  point's 1D Voronoi cell, i.e. a perfect frequency oracle); the query walks down from the root.
- `kd_tree_search`: a balanced k-d tree (median split, axes cycling from the first),
  one lookup per node on the root-to-leaf descent, no backtracking.
- `lsh_search`: appendix D: K Gaussian hyperplanes, 2^K buckets of N/2^K slots, overflow to
  random vacant slots; the first M slots of the query's bucket, then random other slots.
- `bucketing`: appendix C.4.1: T equal buckets over the value range, each storing the point
  nearest its midpoint; one lookup into the extra space.
"""

from __future__ import annotations

import numba
import numpy as np

from pipeline.workloads.e2e.nn_data import Instances


def accuracy_curve(instances: Instances, retrieved: np.ndarray) -> np.ndarray:
    """§2.2 best-so-far rule: after lookup i the answer is the retrieved point closest to q;
    accuracy_i = share of instances where that point is a nearest neighbour. [M]."""
    dist = instances.distances()
    nearest = dist.min(axis=1)
    got = np.where(retrieved >= 0, np.take_along_axis(dist, np.maximum(retrieved, 0), 1), np.inf)
    best = np.minimum.accumulate(got, axis=1)
    return (best <= nearest[:, None] + 1e-12).mean(axis=0)


def brute_force(instances: Instances) -> np.ndarray:
    """Index of the nearest neighbour by exhaustive scan (the reference for tests)."""
    return instances.distances().argmin(axis=1)


@numba.njit(cache=True)
def _binary(sorted_values, queries, lookups):
    b, n = sorted_values.shape
    out = np.full((b, lookups), -1, np.int64)
    for row in range(b):
        lo, hi, last = 0, n - 1, -1
        for step in range(lookups):
            if lo <= hi:
                last = (lo + hi) // 2
                if queries[row] < sorted_values[row, last]:
                    hi = last - 1
                else:
                    lo = last + 1
            out[row, step] = last  # an exhausted search repeats its last read
    return out


@numba.njit(cache=True)
def _interpolation(sorted_values, queries, lookups, low, high):
    b, n = sorted_values.shape
    out = np.full((b, lookups), -1, np.int64)
    for row in range(b):
        lo, hi, left, right, last = 0, n - 1, low, high, -1
        q = queries[row]
        for step in range(lookups):
            if lo <= hi:
                span = right - left
                frac = 0.5 if span <= 0 else (q - left) / span
                pos = int(np.floor(lo + frac * (hi - lo + 1)))
                last = min(max(pos, lo), hi)
                value = sorted_values[row, last]
                if q < value:
                    hi, right = last - 1, value
                else:
                    lo, left = last + 1, value
            out[row, step] = last
    return out


def _sorted_1d(instances: Instances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if instances.points.shape[-1] != 1:
        raise ValueError(f"sorted-array search needs 1D points, got dimension {instances.points.shape[-1]}")
    values = instances.points[..., 0]
    order = np.argsort(values, axis=1, kind="stable")
    return np.take_along_axis(values, order, 1), order, instances.query_points[:, 0]


def _to_original(order: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.where(positions >= 0, np.take_along_axis(order, np.maximum(positions, 0), 1), -1)


def binary_search(instances: Instances, lookups: int) -> np.ndarray:
    ordered, order, queries = _sorted_1d(instances)
    return _to_original(order, _binary(ordered, queries, lookups))


def interpolation_search(instances: Instances, lookups: int, low: float, high: float) -> np.ndarray:
    ordered, order, queries = _sorted_1d(instances)
    return _to_original(order, _interpolation(ordered, queries, lookups, float(low), float(high)))


@numba.njit(cache=True)
def _treap(sorted_values, priorities, queries, lookups):
    b, n = sorted_values.shape
    out = np.full((b, lookups), -1, np.int64)
    left = np.empty(n, np.int64)
    right = np.empty(n, np.int64)
    stack = np.empty(n, np.int64)
    for row in range(b):
        # Cartesian tree (BST on position, max-heap on priority) with a stack, O(n)
        left[:] = -1
        right[:] = -1
        top = 0
        for i in range(n):
            last = -1
            while top > 0 and priorities[row, stack[top - 1]] < priorities[row, i]:
                last = stack[top - 1]
                top -= 1
            left[i] = last
            if top > 0:
                right[stack[top - 1]] = i
            stack[top] = i
            top += 1
        node, prev = stack[0], -1
        for step in range(lookups):
            if node >= 0:
                prev = node
                node = left[node] if queries[row] < sorted_values[row, node] else right[node]
            out[row, step] = prev
    return out


def zipf_cell_mass(sorted_values: np.ndarray, support: int, alpha: float) -> np.ndarray:
    """Query probability that each sorted point is the answer: Zipf mass of its Voronoi
    cell over the integer query values {1..support} (values scaled by 1/support)."""
    grid = np.arange(1, support + 1) / support
    weights = 1.0 / np.arange(1, support + 1) ** alpha
    cumulative = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])
    mids = (sorted_values[:, 1:] + sorted_values[:, :-1]) / 2
    # cell i holds the grid points in [mid_{i-1}, mid_i); ties go to the left point as in argmin
    edges = np.searchsorted(grid, mids, side="right")
    edges = np.concatenate([np.zeros((len(mids), 1), int), edges, np.full((len(mids), 1), support)], 1)
    return np.diff(cumulative[edges], axis=1)


def treap_search(instances: Instances, lookups: int, priorities_sorted: np.ndarray | None = None,
                 zipf_support: int = 200, zipf_alpha: float = 1.2, seed: int = 0) -> np.ndarray:
    """Learning-augmented treap (module docstring); ties in priority broken at random."""
    ordered, order, queries = _sorted_1d(instances)
    if priorities_sorted is None:
        priorities_sorted = zipf_cell_mass(ordered, zipf_support, zipf_alpha)
    jitter = np.random.default_rng(seed).random(ordered.shape) * 1e-12
    return _to_original(order, _treap(ordered, priorities_sorted + jitter, queries, lookups))


@numba.njit(cache=True)
def _kd(points, queries, lookups):
    b, n, d = points.shape
    out = np.full((b, lookups), -1, np.int64)
    order = np.empty(n, np.int64)
    stack = np.empty((2 * n + 2, 3), np.int64)
    for row in range(b):
        for i in range(n):
            order[i] = i
        top = 1
        stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 0
        while top > 0:  # lay the tree out in order: node = middle of its range
            top -= 1
            lo, hi, depth = stack[top, 0], stack[top, 1], stack[top, 2]
            if hi - lo <= 1:
                continue
            axis = depth % d
            keys = np.empty(hi - lo)
            for i in range(lo, hi):
                keys[i - lo] = points[row, order[i], axis]
            order[lo:hi] = order[lo:hi][np.argsort(keys, kind="mergesort")]
            mid = (lo + hi) // 2
            stack[top, 0], stack[top, 1], stack[top, 2] = lo, mid, depth + 1
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = mid + 1, hi, depth + 1
            top += 2
        lo, hi, depth, last = 0, n, 0, -1
        for step in range(lookups):
            if lo < hi:
                mid = (lo + hi) // 2
                last = order[mid]
                axis = depth % d
                if queries[row, axis] < points[row, last, axis]:
                    hi = mid
                else:
                    lo = mid + 1
                depth += 1
            out[row, step] = last
    return out


def kd_tree_search(instances: Instances, lookups: int) -> np.ndarray:
    return _kd(np.ascontiguousarray(instances.points), np.ascontiguousarray(instances.query_points), lookups)


@numba.njit(cache=True)
def _lsh(codes, query_codes, buckets, lookups, vacancy_keys, fallback_keys):
    b, n = codes.shape
    out = np.full((b, lookups), -1, np.int64)
    start = np.empty(buckets + 1, np.int64)
    for k in range(buckets + 1):
        start[k] = (k * n) // buckets
    layout = np.empty(n, np.int64)
    fill = np.empty(buckets, np.int64)
    for row in range(b):
        layout[:] = -1
        fill[:] = 0
        overflow = np.empty(n, np.int64)
        n_over = 0
        for i in range(n):
            c = codes[row, i]
            if fill[c] < start[c + 1] - start[c]:
                layout[start[c] + fill[c]] = i
                fill[c] += 1
            else:
                overflow[n_over] = i
                n_over += 1
        vacant = np.flatnonzero(layout < 0)
        vacant = vacant[np.argsort(vacancy_keys[row, :len(vacant)])]  # a random vacant slot each
        for j in range(n_over):
            layout[vacant[j]] = overflow[j]
        c = query_codes[row]
        step = 0
        for pos in range(start[c], start[c + 1]):
            if step < lookups:
                out[row, step] = layout[pos]
                step += 1
        for pos in np.argsort(fallback_keys[row]):  # random slots of the other buckets
            if step >= lookups:
                break
            if pos < start[c] or pos >= start[c + 1]:
                out[row, step] = layout[pos]
                step += 1
    return out


def lsh_search(instances: Instances, lookups: int, hyperplanes: int, seed: int = 0) -> np.ndarray:
    """Appendix D with K = `hyperplanes` random Gaussian vectors per instance."""
    rng = np.random.default_rng(seed)
    b, n, d = instances.points.shape
    planes = rng.standard_normal((b, hyperplanes, d))
    bits = 1 << np.arange(hyperplanes)
    codes = ((np.einsum("bnd,bkd->bnk", instances.points, planes) > 0) * bits).sum(-1)
    query_codes = ((np.einsum("bd,bkd->bk", instances.query_points, planes) > 0) * bits).sum(-1)
    return _lsh(codes.astype(np.int64), query_codes.astype(np.int64), 1 << hyperplanes, lookups,
                rng.random((b, n)), rng.random((b, n)))


def bucketing(instances: Instances, buckets: int, low: float, high: float) -> np.ndarray:
    """Appendix C.4.1; returns [B, 1] (one lookup into the extra space)."""
    values, queries = instances.points[..., 0], instances.query_points[:, 0]
    if buckets < 1:
        return np.full((len(values), 1), -1, np.int64)
    mids = low + (np.arange(buckets) + 0.5) * (high - low) / buckets  # [T]
    stored = np.abs(values[:, None, :] - mids[None, :, None]).argmin(-1)  # [B, T]
    which = np.clip(((queries - low) / (high - low) * buckets).astype(np.int64), 0, buckets - 1)
    return stored[np.arange(len(values)), which][:, None]
