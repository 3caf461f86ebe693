"""SOSD-style measurement of a learned index (seed 001 §2, §3; Marcus et al.'s benchmark).

Times are the timing thread's CPU time (and wall time beside it, `wall_ns_per_lookup`):
the machine this runs on is shared. One compiled loop runs every query through the model's window and the last-mile search
and sums the positions found; the sum must equal numpy's (`np.searchsorted`, lower bound)
or the run raises, so a wrong index can never report a time. The loop also checks the
window's edges: an answer on the edge whose neighbour says the lower bound lies outside
(possible for an absent key at the seam of two leaves, see models.py) is finished by a
branch-free search of the rest of the table, counted in `fallbacks`.

Two lookup loops (`time_lookups(..., batch=G)`): the plain one, one query after the other
(the seed's and SOSD's measurement), and a staged one that interleaves G queries so that
their memory reads overlap (`_lookup_sum_batched`); the floors (`time_random_read_*`) are
what one random read per query costs on the same table.

Reduction factor, both of the seed's definitions, in percent of the table thrown out:
`reduction_factor` is the mean over the queries of 1 - window / n (§2, the empirical one),
`reduction_factor_train` the same over the table's keys from the errors measured at build.

The compiled loops themselves are in `loops` (plain, staged, pipelined, fused, floors);
this module is the harness that calls them, checks their checksums and reports times.

    python -c "from pipeline.workloads.learned_index.measure import demo; demo()"
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.workloads.learned_index.loops import (  # noqa: F401  (count_below, line_offset, LINE: public here too)
    LINE, _bfe_sum, _block_windows_sum, _chase_sum, _gather_sum, _gather_sum_scalar, _lookup_sum, _lookup_sum_batched,
    _lookup_sum_fused, _lookup_sum_pipelined, _windows_sum, count_below, line_offset)
from pipeline.workloads.learned_index.models import KEY, Model
from pipeline.workloads.learned_index.search import WINDOWED, bfs, eytzinger_layout, search_bytes


@dataclass(frozen=True)
class Timing:
    ns_per_lookup: float  # median over repeats of (loop CPU time / queries)
    wall_ns_per_lookup: float  # the same in wall-clock time
    ns_per_lookup_all: tuple[float, ...]
    checksum: int
    mean_window: float  # mean (hi - lo) over the queries
    fallbacks: int  # lookups whose lower bound was outside the window


def expected_checksum(keys: np.ndarray, queries: np.ndarray) -> int:
    return int(np.searchsorted(keys, queries, side="left").sum())


def _timed(call, count: int, repeats: int) -> tuple[float, float, tuple[float, ...], int]:
    """Median ns per item over `repeats` calls, in the thread's CPU time and in wall time.
    CPU time is the headline: on a shared machine, wall time also counts the time other
    processes hold the core (with a load of 6 on 2 cores, about 3x)."""
    samples, walls, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        result = call()
        samples.append((time.thread_time_ns() - cpu) / count)
        walls.append((time.perf_counter_ns() - wall) / count)
    return float(np.median(samples)), float(np.median(walls)), tuple(samples), result


def time_lookups(keys: np.ndarray, queries: np.ndarray, model: Model | None, search: str = "bbs", k: int = 3,
                 repeats: int = 3, expected: int | None = None, batch: int = 0, ahead: int = 0) -> Timing:
    """Mean ns per lookup (model + last-mile search) over all queries, in one compiled
    loop; median of `repeats` runs after a warm-up that compiles. `model=None` with
    search "bfe" times the Eytzinger layout (it has no window).

    batch = 0: the plain loop, one query after the other. batch = G > 0: the staged loop
    of `_lookup_sum_batched`, G queries interleaved, last mile BFS (search must be "bfs");
    with ahead = A > 0 as well, the pipelined loop of `_lookup_sum_pipelined`, blocks of G
    queries searched A blocks after their windows were computed (search "bfs": it counts
    narrow windows a cache line at a time and runs BFS over wide ones); G = 1 is its fused
    form (`_lookup_sum_fused`), query i searched A queries after its window. The pipelined
    loops time the lookups alone: their mean window and fallbacks come from an untimed
    pass of the plain loop (BFS last mile) over the same queries."""
    keys = np.ascontiguousarray(keys, dtype=KEY)
    queries = np.ascontiguousarray(queries, dtype=KEY)
    expected = expected_checksum(keys, queries) if expected is None else expected
    if batch < 0:
        raise ValueError(f"batch must be 0 (plain loop) or a group size > 0, got {batch}")
    if ahead < 0 or (ahead and not batch):
        raise ValueError(f"ahead must be 0 or, with a block size batch > 0, the blocks a search trails its "
                         f"prediction by; got ahead = {ahead}, batch = {batch}")
    if batch and search != "bfs":
        raise ValueError(f"batch = {batch}: the interleaved lookup's last mile is branch-free binary search; "
                         f"search must be 'bfs', got {search!r}")
    if search == "bfe":  # batch > 0 has search "bfs" (checked above)
        if model is not None and model.kind != "none":
            raise ValueError("search 'bfe' has no window: it runs over its own Eytzinger layout, model 'none' only")
        eytzinger, rank = eytzinger_layout(keys)
        _bfe_sum(eytzinger, rank, queries[:64])
        median, wall, samples, checksum = _timed(lambda: _bfe_sum(eytzinger, rank, queries), queries.size, repeats)
        windows, fallbacks = float(keys.size) * queries.size, 0
    else:  # a windowed loop: (sum of positions, sum of windows, fallbacks)
        if ahead:
            align = np.int64(line_offset(keys))
            if batch == 1:
                fused = _lookup_sum_fused(model.window)
                piped = lambda qs: fused(model.window_state, keys, qs, np.int64(ahead), align)  # noqa: E731
            else:
                blocked = _lookup_sum_pipelined(model.windows)
                piped = lambda qs: blocked(  # noqa: E731
                    model.window_state, keys, qs, np.int64(batch), np.int64(ahead), align)
            stats = _lookup_sum(model.window, model.window_state, keys, queries, bfs, np.int64(3))[1:]  # untimed
            lookup = lambda qs: (piped(qs), *stats)  # noqa: E731
        elif batch:
            lookup = lambda qs: _lookup_sum_batched(  # noqa: E731
                model.window, model.window_state, keys, qs, np.int64(batch))
        else:
            if search not in WINDOWED:
                raise ValueError(f"unknown search routine {search!r}; valid: {', '.join(WINDOWED)}, bfe")
            routine, arity = WINDOWED[search], np.int64(k)
            lookup = lambda qs: _lookup_sum(model.window, model.window_state, keys, qs, routine, arity)  # noqa: E731
        lookup(queries[:64])  # compiles
        median, wall, samples, (checksum, windows, fallbacks) = _timed(lambda: lookup(queries), queries.size,
                                                                       repeats)
    if int(checksum) != expected:
        raise RuntimeError(f"wrong lookups: sum of positions {int(checksum)} != numpy's {expected} "
                           f"({model.label if model else search}, {search}); no time is reported")
    return Timing(median, wall, samples, int(checksum), float(windows) / queries.size, int(fallbacks))

def time_predictions(model: Model, queries: np.ndarray, repeats: int = 3, block: int = 0) -> float:
    """ns per query of the model alone: its window over every query in one compiled loop,
    no read of the table. What a lookup costs before its first table read. block = B > 0:
    the block form the pipelined lookup calls (`Model.windows`), B queries per call."""
    queries = np.ascontiguousarray(queries, dtype=KEY)
    if block:
        block_sum = _block_windows_sum(model.windows)
        predict = lambda qs: block_sum(model.window_state, qs, np.int64(block))  # noqa: E731
    else:
        predict = lambda qs: _windows_sum(model.window, model.window_state, qs)  # noqa: E731
    predict(queries[:64])  # compiles
    return _timed(lambda: predict(queries), queries.size, repeats)[0]


def time_searchsorted(keys: np.ndarray, queries: np.ndarray, repeats: int = 3) -> float:
    """ns per lookup of numpy.searchsorted, vectorised over the same random-order queries."""
    return _timed(lambda: np.searchsorted(keys, queries, side="left"), queries.size, repeats)[0]


def time_random_read_floor(keys: np.ndarray, count: int, seed: int = 0, repeats: int = 3,
                           vectorised: bool = True) -> float:
    """The physical floor: one random read per query from the table itself (a compiled
    gather of `count` uniformly random positions), timed as the lookups are: CPU time of
    the same thread, median of `repeats` passes, after a warm-up pass over the same
    positions (so that neither side pays first-touch page faults in its timed passes).

    The reads are independent, so the CPU overlaps them: this is the memory system's
    throughput for one random cache line per query, not one memory latency.
    `vectorised=True` is the plain uint64 sum, which LLVM compiles to vector gathers;
    `vectorised=False` issues one scalar load per read, as a lookup loop does."""
    positions = np.random.default_rng(seed).integers(0, keys.size, size=count)
    gather = _gather_sum if vectorised else _gather_sum_scalar
    gather(keys, positions)
    return _timed(lambda: gather(keys, positions), count, repeats)[0]


def time_random_read_latency(keys: np.ndarray, count: int, seed: int = 0, repeats: int = 3) -> float:
    """One dependent random read per query from an array of the table's size: a lookup's
    first cache miss cannot overlap the previous lookup's in this form."""
    positions = np.random.default_rng(seed).integers(0, keys.size, size=count)
    zero = np.uint64(0)
    _chase_sum(keys, positions[:64], zero)
    return _timed(lambda: _chase_sum(keys, positions, zero), count, repeats)[0]


def evaluate(keys: np.ndarray, queries: np.ndarray, model: Model, search: str = "bbs", k: int = 3,
             repeats: int = 3, key_bytes: int = 8, expected: int | None = None, batch: int = 0,
             ahead: int = 0) -> dict[str, float]:
    """Every metric of one model + routine on one table and query set (`batch`, `ahead`:
    see `time_lookups`)."""
    timing = time_lookups(keys, queries, model, search, k, repeats, expected, batch, ahead)
    n = keys.size
    mean_window = timing.mean_window
    size = model.size_bytes + search_bytes(search, n, key_bytes)  # bfe: its own layout
    return {
        "ns_per_lookup": timing.ns_per_lookup,
        "wall_ns_per_lookup": timing.wall_ns_per_lookup,
        "bytes": float(size),
        "space_fraction": size / (n * key_bytes),
        "reduction_factor": 100.0 * (1.0 - mean_window / n),
        "reduction_factor_train": 100.0 * (1.0 - model.train_window / n),
        "mean_window": float(mean_window),
        "avg_log2_error": model.avg_log2_error,
        "build_ns_per_key": model.build_seconds * 1e9 / n,
        "fallbacks": float(timing.fallbacks),
        "n_keys": float(n),
    }


def demo() -> None:
    from pipeline.workloads.learned_index.data import make_queries, synthetic_keys
    from pipeline.workloads.learned_index.models import fit_model

    keys = synthetic_keys("lognormal", 750_000)
    queries = make_queries(keys, 1_000_000)
    for kind, params in [("none", {}), ("linear", {}), ("ko", {"segments": 15}), ("rmi", {"bits": 14}),
                         ("pgm", {"epsilon": 64}), ("radix_spline", {}), ("btree", {})]:
        model = fit_model(kind, keys, **params)
        print(model.label, evaluate(keys, queries, model, "bbs"))
