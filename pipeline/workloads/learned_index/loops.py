"""The compiled loops a learned index is timed with (seed 001 §2, §3), apart from the
timing harness of `measure` that calls them, checks their checksums and turns them into
ns per lookup: the loops are numba and LLVM code that must stay as they are for the
figures to stay, the harness is plain Python.

- `_lookup_sum`: the plain loop, one query after the other (the seed's and SOSD's
  measurement): window, last-mile search, edge check (`_edges`).
- `_lookup_sum_batched`: the staged loop, G queries interleaved so their reads overlap.
- `_lookup_sum_pipelined` / `_lookup_sum_fused`: the software-pipelined loops, queries
  issued ahead with L2 prefetches, narrow windows finished by `count_below` (the keys
  below the query in the one or two cache lines that hold them).
- `_bfe_sum`: the Eytzinger baseline; `_gather_sum`, `_gather_sum_scalar`, `_chase_sum`:
  the random-read floors; `_windows_sum`, `_block_windows_sum`: the model alone.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from pipeline.workloads.intrinsics import LINE, count_below, prefetch, prefetch_l2  # noqa: F401
from pipeline.workloads.learned_index.search import bfe, bfs


@njit(inline="always")
def _edges(keys, q, position, lo, hi, k):
    """(the lower bound, 1 if it lies outside the window [lo, hi] else 0), from `position`,
    the bound found inside the window: where that is a window end and the key beyond it
    says the bound lies further out, BFS over the rest of the table finds it."""
    n = keys.size
    if position == hi and hi < n and keys[hi] < q:
        return bfs(keys, hi + 1, n, q, k), 1
    if position == lo and lo > 0 and keys[lo - 1] >= q:
        return bfs(keys, 0, lo - 1, q, k), 1
    return position, 0


@njit
def _lookup_sum(window, state, keys, queries, search, k):
    """(sum of lower bounds, sum of window sizes, lookups finished outside the window).
    The two counters cost an add and an increment on a rare branch: they ride along so
    that one compilation per (model, routine) serves timing and statistics."""
    total = 0
    windows = 0
    fallbacks = 0
    for i in range(queries.size):
        q = queries[i]
        lo, hi = window(state, q)
        windows += hi - lo
        position, moved = _edges(keys, q, search(keys, lo, hi, q, k), lo, hi, k)
        fallbacks += moved
        total += position
    return total, windows, fallbacks


@njit
def _lookup_sum_batched(window, state, keys, queries, group):
    """The staged ("group prefetch", Chen et al. 2004; interleaved search, Psaropoulos et
    al. 2017) form of `_lookup_sum` with BFS as last mile: the same three sums.

    Queries go in groups of `group`. Stage 1 runs every model prediction of the group and
    prefetches each window's first probe; stage 2 runs the branch-free binary searches of
    all windows in lockstep, one step each per round, prefetching each window's next probe
    for the next round; stage 3 finishes each search and checks the window's edges as
    `_lookup_sum` does. No query waits on another's memory read, so the misses of a group
    overlap as the independent reads of `time_random_read_floor` do."""
    n = keys.size
    last = n - 1
    window_lo = np.empty(group, dtype=np.int64)
    window_hi = np.empty(group, dtype=np.int64)
    base = np.empty(group, dtype=np.int64)
    size = np.empty(group, dtype=np.int64)
    total = 0
    windows = 0
    fallbacks = 0
    for start in range(0, queries.size, group):
        count = min(group, queries.size - start)
        widest = 0
        for j in range(count):  # stage 1: predictions; first probes prefetched
            lo, hi = window(state, queries[start + j])
            window_lo[j] = lo
            window_hi[j] = hi
            base[j] = lo
            size[j] = hi - lo
            windows += hi - lo
            widest = max(widest, hi - lo)
            prefetch(keys, min(max(lo + ((hi - lo) >> 1) - 1, 0), last))
        while widest > 1:  # stage 2: one BFS step of every window per round
            widest = 0
            for j in range(count):
                half = size[j] >> 1  # 0 once a window is down to one key: the step is a no-op
                probe = max(base[j] + half - 1, 0)
                at = base[j] + half if keys[probe] < queries[start + j] else base[j]
                rest = size[j] - half
                base[j] = at
                size[j] = rest
                widest = max(widest, rest)
                prefetch(keys, min(max(at + (rest >> 1) - 1, 0), last))
        for j in range(count):  # stage 3: last comparison, window edges
            q = queries[start + j]
            position = base[j]
            if size[j] == 1 and keys[position] < q:
                position += 1
            position, moved = _edges(keys, q, position, window_lo[j], window_hi[j], 3)
            fallbacks += moved
            total += position
    return total, windows, fallbacks


def line_offset(keys: np.ndarray) -> int:
    """The index of the first key that starts a 64-byte cache line (0..7): numpy's large
    arrays start 16 bytes into a page, so key 0 is not on a line boundary."""
    return int((-keys.ctypes.data) % 64) // keys.itemsize


@functools.cache
def _lookup_sum_pipelined(windows):
    """The pipelined loop compiled for one block function (`Model.windows`), cached: the
    block function is a global of the loop, so numba inlines it (passed as an argument,
    it was a call per block: `time_predictions` of the lognormal/cubic RMI, 512 leaves,
    blocks of 16, 10M lognormal keys: 9.7-10.8 ns per query that way, 7.5-7.6 inlined)."""

    @njit(error_model="numpy")
    def lookup(state, keys, queries, block, ahead, align):
        """The software-pipelined form of `_lookup_sum`: the same three sums.

        Queries go in blocks of `block`. Each step computes the windows of one block with the
        model's block function (`Model.windows`: an RMI routes the whole block, then runs its
        leaves, so that the routes vectorise); then, query by query, it prefetches the keys
        the new block's j-th window will read and searches the j-th query of the block
        computed `ahead` steps earlier, whose keys have had that long to arrive (prefetches
        and searches interleaved, so that the misses in flight stay even; measured faster
        than a block of prefetches then a block of searches).

        The last mile reads whole cache lines (`align`: `line_offset(keys)`). Where the window
        [lo, hi] and the key before it, keys[lo - 1 .. hi], lie in one line, or in two
        neighbouring lines, it counts the keys below the query in those lines (`count_below`,
        one vector compare per line): no branch on the data, no loop whose length varies, one
        line read for most narrow windows. The count c certifies itself: 0 < c < the keys
        counted means keys[base + c - 1] < q <= keys[base + c], so the lower bound is base + c
        whatever the window said; c = 0 or all counted falls back to BFS over the rest of the
        table, as `_lookup_sum` does. Wider windows, and windows at the table's ends, take BFS
        and `_lookup_sum`'s edge checks. Where `_lookup_sum_batched` overlaps the misses of
        one group's binary-search steps, this overlaps a block's table reads with the next
        blocks' predictions: for a model whose windows are a few keys, a lookup then costs
        about its prediction plus one line's share of the memory's throughput. Compiled with
        numpy's error model (no zero-division branch), which lets the model's arithmetic
        vectorise. Returns the sum of the lower bounds only: the window statistics come from
        an untimed plain loop (`time_lookups`; they cost ~1 ns per lookup inside this one)."""
        n = keys.size
        last = n - 1
        ring = ahead + 1
        lo = np.empty(ring * block, dtype=np.int64)
        hi = np.empty(ring * block, dtype=np.int64)
        scratch = np.empty(block, dtype=np.int64)
        blocks = (queries.size + block - 1) // block
        total = 0
        for step in range(blocks + ahead):
            at = (step % ring) * block
            count = 0
            if step < blocks:  # predict this block
                count = min(block, queries.size - step * block)
                windows(state, queries, step * block, count, lo, hi, at, scratch)
            searched = step - ahead
            searched_count = 0
            if searched >= 0:
                searched_count = min(block, queries.size - searched * block)
            searched_at = (searched % ring) * block
            for j in range(max(count, searched_count)):
                if j < count:  # start the reads of this block's j-th window: its two end lines
                    prefetch_l2(keys, min(max(lo[at + j] - 1, 0), last))
                    prefetch_l2(keys, min(hi[at + j], last))
                if j >= searched_count:
                    continue
                q = queries[searched * block + j]  # search the j-th query of the earlier block
                window_lo = lo[searched_at + j]
                window_hi = hi[searched_at + j]
                base = ((window_lo - 1 - align) & -LINE) + align  # the line holding keys[lo - 1]
                if base >= 0 and window_hi < base + 2 * LINE and base + 2 * LINE <= n:
                    two = window_hi >= base + LINE  # keys[hi] in the next line
                    # both counts always run (the second re-reads the first line when one will
                    # do) and a select keeps the second's: no branch that a crossing mispredicts
                    second = count_below(keys, base + LINE if two else base, q)
                    below = count_below(keys, base, q) + (second if two else 0)
                    if below == 0:  # keys[base] >= q: the bound is left of the lines
                        position = bfs(keys, 0, base, q, 3)
                    elif below == (2 * LINE if two else LINE):  # every counted key < q: right of them
                        position = bfs(keys, base + below, n, q, 3)
                    else:
                        position = base + below
                    total += position
                    continue
                total += _edges(keys, q, bfs(keys, window_lo, window_hi, q, 3), window_lo, window_hi, 3)[0]
        return total

    return lookup


@functools.cache
def _lookup_sum_fused(window):
    """The pipelined loop for blocks of one query (`time_lookups(batch=1, ahead=D)`),
    written as one tight loop over the queries, compiled per window function (`Model.window`,
    inlined): step i computes the window of query i + D, stores the two lines it will read
    in a small ring and prefetches them, then counts the lines of query i, stored D steps
    earlier. Where the block form routes a block of queries in one vectorised loop (worth
    it for a normal or lognormal top, whose route is a logarithm and a logistic), this
    keeps every value of a query in registers and the ring in L1: for a model whose window
    is a few instructions (a log_radix or radix top) it is the faster form (rmi.py).

    The lines: the one holding keys[lo - 1] and, where keys[hi] lies in the next line, that
    one too (else the first again), both clamped into the table, counted by `count_below`.
    The count certifies itself (0 < count < keys counted: keys[base + c - 1] < q <= keys[base
    + c]); anything else (the bound left or right of the lines, a window wider than two
    lines, a table of fewer than 16 keys) is BFS over the window and `_edges`, as in the
    plain loop, on the window recomputed (rare, so not kept in the ring). Returns the sum of
    the lower bounds; the statistics come from an untimed plain loop (`time_lookups`)."""

    @njit(error_model="numpy")
    def lookup(state, keys, queries, distance, align):
        n = keys.size
        size = queries.size
        top = n - 2 * LINE  # the highest start of two whole lines
        slots = 1
        while slots <= distance:
            slots *= 2
        mask = slots - 1
        first = np.empty(slots, dtype=np.int64)
        second = np.empty(slots, dtype=np.int64)
        total = 0
        for i in range(-distance, size):
            ahead = i + distance
            if ahead < size:  # start the reads of query i + distance
                lo, hi = window(state, queries[ahead])
                base = min(max(((lo - 1 - align) & -LINE) + align, 0), top)
                other = base + LINE * (hi >= base + LINE)
                first[ahead & mask] = base
                second[ahead & mask] = other
                if top >= 0:
                    prefetch_l2(keys, base)
                    prefetch_l2(keys, other)
            if i < 0:
                continue
            q = queries[i]
            if top >= 0:
                base = first[i & mask]
                other = second[i & mask]
                two = (other - base) >> 3  # 0 or 1: arithmetic, so that no branch depends on it
                below = count_below(keys, base, q) + count_below(keys, other, q) * two
                if below > 0 and below < LINE + LINE * two:
                    total += base + below
                    continue
            lo, hi = window(state, q)
            total += _edges(keys, q, bfs(keys, lo, hi, q, 3), lo, hi, 3)[0]
        return total

    return lookup


@njit(cache=True)
def _bfe_sum(eytzinger, rank, queries):
    total = 0
    for i in range(queries.size):
        total += bfe(eytzinger, rank, queries[i])
    return total


@njit(cache=True)
def _gather_sum(table, positions):
    total = np.uint64(0)
    for i in range(positions.size):
        total += table[positions[i]]
    return total


@njit(cache=True)
def _gather_sum_scalar(table, positions):
    """The same reads summed as floats: without fastmath LLVM keeps a float sum in order,
    so this loop is not vectorised and issues one scalar load per iteration, like a
    lookup loop (the uint64 sum above compiles to AVX-512 gathers on this machine)."""
    total = 0.0
    for i in range(positions.size):
        total += float(table[positions[i]])
    return total


@njit(cache=True)
def _chase_sum(table, positions, zero):
    """Dependent random reads: each read's position waits for the previous value (masked
    by a zero the compiler cannot see), so this is one memory latency per read."""
    total = np.uint64(0)
    previous = np.uint64(0)
    for i in range(positions.size):
        previous = table[positions[i] ^ np.int64(previous & zero)]
        total += previous
    return total


@njit
def _windows_sum(window, state, queries):
    total = 0
    for i in range(queries.size):
        lo, hi = window(state, queries[i])
        total += lo + hi
    return total


@functools.cache
def _block_windows_sum(windows):
    """The block form's loop for `time_predictions`, compiled per block function as the
    pipelined loop is (`_lookup_sum_pipelined`), so that both inline it alike."""

    @njit(error_model="numpy")
    def block_sum(state, queries, block):
        lo = np.empty(block, dtype=np.int64)
        hi = np.empty(block, dtype=np.int64)
        scratch = np.empty(block, dtype=np.int64)
        total = 0
        for start in range(0, queries.size, block):
            count = min(block, queries.size - start)
            windows(state, queries, start, count, lo, hi, 0, scratch)
            for j in range(count):
                total += lo[j] + hi[j]
        return total

    return block_sum
