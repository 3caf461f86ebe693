"""Sorted-table search routines of seed 001 §3.1, compiled with numba.

Every windowed routine has the signature `search(keys, lo, hi, q, k) -> int` and returns

    lo + numpy.searchsorted(keys[lo:hi], q, side="left")

i.e. the lower bound of q when the caller knows it lies in [lo, hi] (hi itself included:
the answer is hi when every key of the window is smaller). Over the whole table
(lo=0, hi=n) that is numpy's lower bound exactly, duplicates and the largest key included.
`k` is the arity of k-ary search and the guard of TIP; the other routines ignore it, so
that one compiled lookup loop takes any routine (see `measure.py`).

- BBS: branchy binary search (textbook).
- BFS: branch-free binary search (Khuong & Morin's uniform search: the loop runs
  ceil(log2 n) times whatever the keys, and the comparison becomes a conditional move).
- K-BBS / K-BFS: k-ary search (Schulz et al.), k in [3, 20]: each step compares k-1
  evenly spaced separators, sequentially with an early exit (branchy) or by summing all
  comparisons (branch-free); the last < k keys are searched with BFS.
- IBS: textbook interpolation search, adapted to return the lower bound.
- TIP: three-point interpolation search (Van Sandt, Chronis, Patel, SIGMOD 2019): a
  hyperbolic fit through the window's ends and the last probe, a sequential search once
  the window is within the guard. Ours adds a bisection step whenever interpolation fails
  to halve the window, so its worst case stays O(log n) (the paper's has none).
- BFE: branch-free search over the Eytzinger (BFS-order) layout of the table, Khuong &
  Morin. It needs its own copy of the table (`eytzinger_layout`) and searches the whole
  table only, so it has no window: `bfe(eytzinger, rank, q)`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------- binary search


@njit(cache=True)
def bbs(keys, lo, hi, q, k):
    """Branchy binary search."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < q:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def bfs(keys, lo, hi, q, k):
    """Branch-free binary search: invariant lower bound in [base, base + size]."""
    base = lo
    size = hi - lo
    while size > 1:
        half = size >> 1
        # keys[base+half-1] < q  =>  the answer is at least base+half
        base = base + half if keys[base + half - 1] < q else base
        size -= half
    if size == 1 and keys[base] < q:
        base += 1
    return base


# ---------------------------------------------------------------- k-ary search


@njit(cache=True)
def kbfs(keys, lo, hi, q, k):
    """Branch-free k-ary search: count the separators below q, jump that many segments."""
    base = lo
    size = hi - lo
    while size >= k:
        step = size // k
        below = 0
        for j in range(1, k):
            below += keys[base + j * step - 1] < q
        base += below * step
        # the last segment takes the remainder of size that k does not divide
        size = step + (below == k - 1) * (size - k * step)
    return bfs(keys, base, base + size, q, k)


@njit(cache=True)
def kbbs(keys, lo, hi, q, k):
    """Branchy k-ary search: scan the separators, stop at the first one >= q."""
    base = lo
    size = hi - lo
    while size >= k:
        step = size // k
        below = 0
        while below < k - 1 and keys[base + (below + 1) * step - 1] < q:
            below += 1
        base += below * step
        if below == k - 1:
            size = size - (k - 1) * step
        else:
            size = step
    return bbs(keys, base, base + size, q, k)


# ---------------------------------------------------------------- interpolation search


@njit(cache=True)
def ibs(keys, lo, hi, q, k):
    """Interpolation search for the lower bound: probe where q falls on the line through
    the window's first and last key. Invariant: the answer is in [lo, hi]."""
    while lo < hi:
        first = keys[lo]
        last = keys[hi - 1]
        if q <= first:
            return lo
        if q > last:
            return hi
        # first < q <= last, so the answer is in [lo+1, hi-1]
        span = hi - 1 - lo
        probe = lo + np.int64(float(q - first) / float(last - first) * span)
        if probe <= lo:
            probe = lo + 1
        elif probe > hi - 1:
            probe = hi - 1
        if keys[probe] < q:
            lo = probe + 1
        else:
            hi = probe
    return lo


@njit(cache=True)
def _three_point(q, x0, y0, x1, y1, x2, y2):
    """Position of q on the hyperbola y = y1 + b u / (1 + c u), u = x - x1, through three
    (key, position) points; linear interpolation between the ends when degenerate."""
    u0 = x0 - x1
    u2 = x2 - x1
    v0 = y0 - y1
    v2 = y2 - y1
    u = q - x1
    if u0 != 0.0 and u2 != 0.0 and v2 != v0:
        c = (u2 * v0 / u0 - v2) / (u2 * (v2 - v0))
        b = v0 / u0 + c * v0
        den = 1.0 + c * u
        if den != 0.0:
            est = y1 + b * u / den
            if est == est:  # not NaN
                return est
    if x2 == x0:
        return y0
    return y0 + (q - x0) / (x2 - x0) * (y2 - y0)


@njit(cache=True)
def tip(keys, lo, hi, q, k):
    """Three-point interpolation search; `k` is the guard (window size for the final
    sequential search)."""
    guard = max(k, 2)
    mid = (lo + hi) >> 1
    while hi - lo > guard:
        first = keys[lo]
        last = keys[hi - 1]
        if q <= first:
            return lo
        if q > last:
            return hi
        old = hi - lo
        if mid <= lo or mid >= hi - 1:
            mid = (lo + hi) >> 1
        est = _three_point(float(q), float(first), float(lo), float(keys[mid]), float(mid),
                           float(last), float(hi - 1))
        if est < lo + 1:
            probe = lo + 1
        elif est > hi - 1:
            probe = hi - 1
        else:
            probe = np.int64(est)
        if keys[probe] < q:
            lo = probe + 1
        else:
            hi = probe
        mid = probe
        if (hi - lo) * 2 > old and hi - lo > guard:
            # interpolation did not halve the window: one bisection step keeps O(log n)
            half = (lo + hi) >> 1
            if keys[half] < q:
                lo = half + 1
            else:
                hi = half
    while lo < hi and keys[lo] < q:
        lo += 1
    return lo


# ---------------------------------------------------------------- Eytzinger layout


@njit(cache=True)
def _fill_eytzinger(keys, eytzinger, rank, i, j):
    """Iterative in-order walk of the implicit tree, writing keys[j], keys[j+1], ... so
    that node i holds the i-th key in BFS order; rank[i] is that key's sorted position."""
    n = keys.size
    stack = np.empty(64, dtype=np.int64)
    top = 0
    node = i
    pos = j
    while top > 0 or node <= n:
        while node <= n:
            stack[top] = node
            top += 1
            node = 2 * node
        top -= 1
        node = stack[top]
        eytzinger[node] = keys[pos]
        rank[node] = pos
        pos += 1
        node = 2 * node + 1
    return pos


def eytzinger_layout(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table in Eytzinger order (1-based, slot 0 unused) and each slot's sorted rank;
    rank[0] = n stands for "past the end"."""
    n = keys.size
    eytzinger = np.zeros(n + 1, dtype=keys.dtype)
    rank = np.empty(n + 1, dtype=np.int64)
    rank[0] = n
    _fill_eytzinger(keys, eytzinger, rank, 1, 0)
    return eytzinger, rank


def search_bytes(search: str, n: int, key_bytes: int) -> int:
    """Bytes a routine holds beside the sorted table: 0 for the windowed routines; for
    "bfe" what `eytzinger_layout` builds, a second copy of the keys in Eytzinger order
    and an int64 sorted rank per slot ((n + 1) x (key_bytes + 8): 3x a uint32 table)."""
    return (n + 1) * (key_bytes + 8) if search == "bfe" else 0


@njit(cache=True)
def bfe(eytzinger, rank, q):
    """Branch-free search of the Eytzinger layout (Khuong & Morin, Listing 4): descend
    without branches, then drop the trailing right-turns (and one more) to reach the first
    slot >= q; slot 0 means none is."""
    n = eytzinger.size - 1
    i = 1
    while i <= n:
        i = 2 * i + (eytzinger[i] < q)
    # i >>= ffs(~i): strip the trailing 1-bits and the 0-bit above them
    while i & 1:
        i >>= 1
    i >>= 1
    return rank[i]


# ---------------------------------------------------------------- registry and helpers

#: Windowed routines by their short name (the `search` field of the workload).
WINDOWED = {"bbs": bbs, "bfs": bfs, "kbbs": kbbs, "kbfs": kbfs, "ibs": ibs, "tip": tip}
#: Every routine the workload knows; `bfe` searches the whole table in its own layout.
ROUTINES = tuple(WINDOWED) + ("bfe",)


@njit
def _lower_bounds(search, keys, queries, k):
    out = np.empty(queries.size, dtype=np.int64)
    n = keys.size
    for i in range(queries.size):
        out[i] = search(keys, 0, n, queries[i], k)
    return out


@njit(cache=True)
def _lower_bounds_bfe(eytzinger, rank, queries):
    out = np.empty(queries.size, dtype=np.int64)
    for i in range(queries.size):
        out[i] = bfe(eytzinger, rank, queries[i])
    return out


def lower_bounds(keys: np.ndarray, queries: np.ndarray, routine: str = "bfs", k: int = 3) -> np.ndarray:
    """Lower bound of every query over the whole table with a named routine (for tests and
    for callers without a model); equals `np.searchsorted(keys, queries, "left")`."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    if routine == "bfe":
        return _lower_bounds_bfe(*eytzinger_layout(keys), queries)
    if routine not in WINDOWED:
        raise ValueError(f"unknown search routine {routine!r}; valid: {', '.join(ROUTINES)}")
    return _lower_bounds(WINDOWED[routine], keys, queries, np.int64(k))
