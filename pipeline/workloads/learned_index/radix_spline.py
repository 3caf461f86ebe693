"""RadixSpline (Kipf et al., aiDM 2020), as SOSD benchmarks it: a spline through some of
the (key, position) points that stays within `epsilon` of every point (GreedySplineCorridor,
one pass), and a radix table over the leading `radix_bits` bits of key - min that narrows
the search for the spline segment to the points sharing the query's prefix.

Written by hand in numba (the original is header-only C++) so that its lookup runs in the
same compiled loop as the other models. Bytes: spline points (key and position, 8 each),
the radix table (2^radix_bits + 1 entries of 4 bytes, as the original's uint32), and the
key range, shift and scale.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from pipeline.workloads.learned_index.models import FLOAT_BYTES, KEY, Model, finish, to_position


@njit(cache=True)
def _spline_corridor(xs, ys, epsilon):
    """Indices of the spline points: GreedySplineCorridor over distinct sorted xs."""
    m = xs.size
    chosen = np.empty(m, dtype=np.int64)
    chosen[0] = 0
    count = 1
    if m == 1:
        return chosen[:1]
    base = 0
    upper = np.inf   # slope limits of the corridor seen from the base point
    lower = -np.inf
    prev = 0
    for i in range(1, m):
        dx = float(xs[i] - xs[base])
        slope = (ys[i] - ys[base]) / dx
        if slope > upper or slope < lower:
            # the point leaves the corridor: the previous point becomes a spline point
            chosen[count] = prev
            count += 1
            base = prev
            dx = float(xs[i] - xs[base])
            upper = (ys[i] + epsilon - ys[base]) / dx
            lower = (ys[i] - epsilon - ys[base]) / dx
        else:
            upper = min(upper, (ys[i] + epsilon - ys[base]) / dx)
            lower = max(lower, (ys[i] - epsilon - ys[base]) / dx)
        prev = i
    if chosen[count - 1] != m - 1:
        chosen[count] = m - 1
        count += 1
    return chosen[:count]


@njit(inline="always")
def _rs_predict(state, q):
    spline_keys, spline_positions, table, shift, kmin, kmax, n = state
    clamped = min(max(q, kmin), kmax)
    prefix = np.int64((clamped - kmin) >> shift)
    lo = np.int64(table[prefix])
    hi = np.int64(table[prefix + 1])
    # first spline key > q among those sharing q's prefix (all earlier ones are smaller),
    # by a branch-free binary search: on a skewed table (lognormal) one radix bucket can
    # hold hundreds of spline points, and a branchy search there mispredicts at every step
    size = hi - lo
    while size > 1:
        half = size >> 1
        lo = lo + half if spline_keys[lo + half - 1] <= clamped else lo
        size -= half
    if size == 1 and spline_keys[lo] <= clamped:
        lo += 1
    right = lo
    if right >= spline_keys.size:
        return to_position(spline_positions[spline_keys.size - 1], n), np.int64(0)
    left = right - 1
    dx = float(spline_keys[right] - spline_keys[left])
    offset = float(clamped - spline_keys[left])
    guess = spline_positions[left] + (spline_positions[right] - spline_positions[left]) * offset / dx
    return to_position(guess, n), np.int64(0)


def fit_radix_spline(keys: np.ndarray, epsilon: int = 32, radix_bits: int = 18) -> Model:
    """RadixSpline with spline error `epsilon` and a radix table of 2^radix_bits entries."""
    started = time.perf_counter()
    if epsilon < 1:
        raise ValueError(f"RadixSpline epsilon must be >= 1, got {epsilon}")
    if not 1 <= radix_bits <= 30:
        raise ValueError(f"radix_bits must be in [1, 30], got {radix_bits}")
    keys = np.ascontiguousarray(keys, dtype=KEY)
    distinct, lower = np.unique(keys, return_index=True)
    chosen = _spline_corridor(distinct, lower.astype(np.float64), float(epsilon))
    spline_keys = distinct[chosen]
    spline_positions = lower[chosen].astype(np.float64)
    span_bits = int(keys[-1] - keys[0]).bit_length()
    shift = max(0, span_bits - radix_bits)
    prefixes = ((spline_keys - keys[0]) >> np.uint64(shift)).astype(np.int64)
    table = np.searchsorted(prefixes, np.arange(2**radix_bits + 1), side="left").astype(np.uint32)
    state = (spline_keys, spline_positions, table, np.uint64(shift), keys[0], keys[-1], np.int64(keys.size))
    param_bytes = spline_keys.size * 2 * 8 + table.size * 4 + 3 * FLOAT_BYTES
    params = {"epsilon": int(epsilon), "radix_bits": int(radix_bits), "spline_points": int(spline_keys.size)}
    return finish("radix_spline", keys, _rs_predict, state, 1, param_bytes, params, started)
