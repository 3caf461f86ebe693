"""Our numpy CountMin against Apache DataSketches' `count_min_sketch` on one Zipf stream.

    python -m pipeline.bench sketches --json out.json [--items 1000000 --universe 100000
        --alpha 1.1 --depth 3 --buckets 16384 --repeats 5]

Same stream, same counter memory: DataSketches keeps 8-byte counters, so at `buckets`
columns x `depth` rows it holds depth*buckets*8 bytes; our float32 CountMin gets the
same bytes (twice the columns), and a float64 row at the same columns is shown too.
Updates/s and queries/s are medians over `repeats` runs (DataSketches' Python binding
updates one item per call; ours updates in vectorised batches). ARE is over the
stream's distinct items.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline.workloads.sketches import CountMin, are, exact_counts, zipf_stream


def _median_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / float(np.median(times))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench sketches")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--universe", type=int, default=100_000)
    p.add_argument("--alpha", type=float, default=1.1)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--buckets", type=int, default=16384, help="DataSketches columns")
    p.add_argument("--batch", type=int, default=1 << 16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    stream = zipf_stream(args.universe, args.alpha, args.items, args.seed)
    distinct, truth = exact_counts(stream)
    rows = []

    def ours(label: str, width: int, dtype: str) -> None:
        def build():
            sketch = CountMin(width, args.depth, seed=args.seed, counter_dtype=dtype)
            for start in range(0, len(stream), args.batch):
                sketch.update(stream[start:start + args.batch])
            return sketch

        update_rate = _median_rate(build, len(stream), args.repeats)
        sketch = build()
        query_rate = _median_rate(lambda: sketch.query(distinct), len(distinct), args.repeats)
        rows.append({"method": label, "updates_per_s": update_rate, "queries_per_s": query_rate,
                     "are": are(sketch.query(distinct), truth), "bytes": sketch.size_bytes,
                     "width": width, "depth": args.depth})

    ours("countmin_numpy_float32", 2 * args.buckets, "float32")  # same bytes as DataSketches
    ours("countmin_numpy_float64", args.buckets, "float64")  # same counters and bytes

    try:
        import datasketches
    except ImportError:
        rows.append({"method": "datasketches_count_min_sketch", "note": "not installed (pip install datasketches)"})
        return rows
    items = [str(i) for i in stream.tolist()]  # the binding hashes strings or ints; strings are its documented key
    keys = [str(i) for i in distinct.tolist()]

    def ds_build():
        sketch = datasketches.count_min_sketch(args.depth, args.buckets, args.seed + 9001)
        update = sketch.update
        for item in items:
            update(item)
        return sketch

    update_rate = _median_rate(ds_build, len(stream), args.repeats)
    sketch = ds_build()
    estimate = sketch.get_estimate
    query_rate = _median_rate(lambda: [estimate(k) for k in keys], len(keys), args.repeats)
    est = np.array([estimate(k) for k in keys], dtype=np.float64)
    rows.append({"method": "datasketches_count_min_sketch", "updates_per_s": update_rate, "queries_per_s": query_rate,
                 "are": are(est, truth), "bytes": args.depth * args.buckets * 8, "width": args.buckets,
                 "depth": args.depth})
    return rows
