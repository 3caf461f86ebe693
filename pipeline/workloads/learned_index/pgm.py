"""PGM-index (Ferragina & Vinciguerra, PVLDB 2020) and its bi-criteria form (seed 001 §3.2).

Written by hand in numba so that its lookup runs in the same compiled loop as every other
model; PyPI `pygm` (the authors' C++) is the peer in the bench. Two simplifications,
stated so nobody mistakes ours for theirs:
- segments come from the greedy shrinking cone (each segment's line passes through its
  first point), not PGM's optimal convex-hull algorithm, so ours has somewhat more
  segments at the same epsilon;
- a segment stores its first key, slope and intercept as 8 bytes each (24 bytes; PGM packs
  16), and the recursion stops at one segment, as PGM's.

Recursive levels: level 0 approximates the table within `epsilon`; level l+1 approximates
the first keys of level l within `epsilon_recursive`. A lookup descends from the root
segment, searching each level's window for the last segment whose first key is <= q.

Bi-criteria (§3.2): the fastest index within a space bound, taken as the smallest epsilon
in [eps_min, n/2] whose index fits, by binary search over epsilon; eps_min = a x cls /
size (cls = 64-byte cache line, size = 8-byte key) with the seed's parameter a in
{0.5, 1, 1.5, 2} (PGM's own routine fixes a = 2). PGM's routine also weighs a time model;
ours takes "smaller epsilon is faster" as that model.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from pipeline.workloads.learned_index.models import FLOAT_BYTES, INT_BYTES, KEY, Model, finish, to_position

SEGMENT_BYTES = 3 * 8  # first key, slope, intercept
CACHE_LINE, KEY_SIZE = 64, 8  # seed 001 §3.3: cls and size


@njit(cache=True)
def _cone_segments(xs, ys, epsilon):
    """Greedy shrinking-cone segmentation of sorted, distinct xs with positions ys: every
    point lies within epsilon of its segment's line through the segment's first point.
    Returns (first index, slope) per segment."""
    m = xs.size
    starts = np.empty(m, dtype=np.int64)
    slopes = np.empty(m, dtype=np.float64)
    count = 0
    start = 0
    low, high = 0.0, np.inf
    for i in range(1, m + 1):
        if i < m:
            dx = float(xs[i] - xs[start])
            dy = ys[i] - ys[start]
            new_low = max(low, (dy - epsilon) / dx)
            new_high = min(high, (dy + epsilon) / dx)
            if new_low <= new_high:
                low, high = new_low, new_high
                continue
        starts[count] = start
        slopes[count] = 0.0 if high == np.inf else 0.5 * (low + high)
        count += 1
        start = i
        low, high = 0.0, np.inf
    return starts[:count], slopes[:count]


@njit(inline="always")
def _last_at_most(firsts, lo, hi, q):
    """Index of the last entry <= q in firsts[lo:hi] (lo - 1 if none): a branch-free count,
    as the window of a recursive level is a few entries (2 epsilon_recursive + 3)."""
    count = 0
    for i in range(lo, hi):
        count += firsts[i] <= q
    return lo + count - 1


@njit(inline="always")
def _last_at_most_anywhere(firsts, lo, hi, q):
    """As `_last_at_most`, by binary search over a whole level."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if firsts[mid] <= q:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(inline="always")
def _segment_guess(firsts, slopes, intercepts, segment, level_end, q):
    """The segment's line at q, capped by the next segment's start as PGM does, so that a
    key in the gap after a segment's last key is not extrapolated past the next one."""
    guess = intercepts[segment] + slopes[segment] * float(q - firsts[segment])
    if segment + 1 < level_end and guess > intercepts[segment + 1]:
        guess = intercepts[segment + 1]
    return guess


@njit(inline="always")
def _pgm_predict(state, q):
    firsts, slopes, intercepts, offsets, epsilon_recursive, kmin, kmax, n = state
    levels = offsets.size - 1
    clamped = min(max(q, kmin), kmax)
    segment = offsets[levels - 1]  # the root: the top level has one segment
    for level in range(levels - 1, 0, -1):
        # predict the position of q among level-1's first keys, search that window
        # no cap here (it doubled the lookup time); the window check below covers the gaps
        guess = intercepts[segment] + slopes[segment] * float(clamped - firsts[segment])
        base = offsets[level - 1]
        size = offsets[level] - base
        position = to_position(guess, size)
        lo = max(0, position - epsilon_recursive - 1)
        hi = min(size, position + epsilon_recursive + 2)
        found = _last_at_most(firsts, base + lo, base + hi, clamped) - base
        if (found == lo - 1 and lo > 0) or (found == hi - 1 and hi < size and firsts[base + hi] <= clamped):
            found = _last_at_most_anywhere(firsts, base, base + size, clamped) - base  # outside the window: rare
        segment = base + max(found, 0)
    guess = _segment_guess(firsts, slopes, intercepts, segment, offsets[1], clamped)
    return to_position(guess, n), np.int64(0)


def _level(xs: np.ndarray, ys: np.ndarray, epsilon: float):
    starts, slopes = _cone_segments(xs, ys, float(epsilon))
    return xs[starts], slopes, ys[starts].astype(np.float64)


def _levels(distinct: np.ndarray, lower: np.ndarray, epsilon: int, epsilon_recursive: int) -> list:
    levels = [_level(distinct, lower.astype(np.float64), epsilon)]
    while levels[-1][0].size > 1:
        firsts = levels[-1][0]
        levels.append(_level(firsts, np.arange(firsts.size, dtype=np.float64), epsilon_recursive))
    return levels


def _size_bytes(levels: list) -> int:
    segments = sum(level[0].size for level in levels)
    return segments * SEGMENT_BYTES + (len(levels) + 1) * INT_BYTES + 3 * FLOAT_BYTES + 2 * INT_BYTES


def fit_pgm(keys: np.ndarray, epsilon: int = 64, epsilon_recursive: int = 4) -> Model:
    """PGM-index with last-level error `epsilon` and internal error `epsilon_recursive`."""
    started = time.perf_counter()
    if epsilon < 1 or epsilon_recursive < 1:
        raise ValueError(f"PGM epsilons must be >= 1, got {epsilon}, {epsilon_recursive}")
    keys = np.ascontiguousarray(keys, dtype=KEY)
    distinct, lower = np.unique(keys, return_index=True)  # duplicates: approximate the lower bound
    levels = _levels(distinct, lower, epsilon, epsilon_recursive)
    offsets = np.cumsum([0] + [level[0].size for level in levels]).astype(np.int64)
    state = (np.concatenate([level[0] for level in levels]), np.concatenate([level[1] for level in levels]),
             np.concatenate([level[2] for level in levels]), offsets, np.int64(epsilon_recursive),
             keys[0], keys[-1], np.int64(keys.size))
    segments = int(offsets[-1])
    param_bytes = _size_bytes(levels) - 2 * INT_BYTES  # finish() adds the two errors
    params = {"epsilon": int(epsilon), "epsilon_recursive": int(epsilon_recursive), "segments": segments,
              "levels": len(levels)}
    return finish("pgm", keys, _pgm_predict, state, 1, param_bytes, params, started)


def fit_pgm_bicriteria(keys: np.ndarray, space_bound: float = 0.02, a: float = 2.0, epsilon_recursive: int = 4,
                       key_bytes: int = 8) -> Model:
    """PGM_M.a (seed 001 §3.2): the smallest epsilon in [a x cls / size, n/2] whose index
    takes at most `space_bound` x table bytes. The search sizes candidate indexes from
    their segments alone and builds only the chosen one."""
    started = time.perf_counter()
    if not 0 < space_bound <= 1:
        raise ValueError(f"space_bound must be in (0, 1], got {space_bound}")
    if a <= 0:
        raise ValueError(f"a must be > 0, got {a}")
    keys = np.ascontiguousarray(keys, dtype=KEY)
    distinct, lower = np.unique(keys, return_index=True)
    budget = space_bound * keys.size * key_bytes

    def size(epsilon: int) -> int:
        return _size_bytes(_levels(distinct, lower, epsilon, epsilon_recursive))

    low = max(1, int(round(a * CACHE_LINE / KEY_SIZE)))
    high = max(low, keys.size // 2)
    if size(low) <= budget:
        chosen = low
    elif size(high) > budget:
        chosen = high  # nothing fits: the smallest index there is
    else:
        while high - low > 1:  # size(low) > budget >= size(high)
            mid = (low + high) // 2
            if size(mid) <= budget:
                high = mid
            else:
                low = mid
        chosen = high
    model = fit_pgm(keys, chosen, epsilon_recursive)
    model.kind = "pgm_bicriteria"
    model.params = {"space_bound": space_bound, "a": a, **model.params}
    model.build_seconds = time.perf_counter() - started
    return model
