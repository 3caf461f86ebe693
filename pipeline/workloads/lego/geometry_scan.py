"""The rule-based read of untrained bricks over brick geometries, without training.

At 1.2 MB and above the Lego ensemble answers with the rule-based read (min over rows of
read / embedding value, seed 003 §3.1), whose error is set by the hashed vector and the
brick's rows x slots, not by the networks. This scans geometries at equal brick bytes
(rows x slots x 4 B), vector lengths, starts (`basis_init`) and value floors, each with
several hash seeds (the seed also draws the vector), and prints the rule read's ARE over
CountMin's (3 rows, same bytes, measured here on the same streams) per skew and budget:
mean over seeds and the worst seed. It is how the quick profile's geometry was chosen
(docs/benchmarks.md, Lego section):

    python -m pipeline.workloads.lego.geometry_scan --depths 5 8 --basis-sizes 80 640 \\
        --inits power6 power12 --floors 1e-3 1e-5 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import torch

from pipeline.workloads.lego.evaluate import lego_estimates
from pipeline.workloads.lego.model import BrickGeometry, LegoSketch
from pipeline.workloads.lego.streams import eval_stream
from pipeline.workloads.sketches import CountMin, are


def scan(depths, basis_sizes, inits, floors, seeds, skews, brick_counts, brick_bytes=102400, distinct=100000,
         stream_seed=0):
    """Rows {depth, slots, basis_size, basis_init, value_floor, skew, bricks, ratio_mean, ratio_worst}."""
    streams = {alpha: eval_stream(distinct, alpha, stream_seed) for alpha in skews}
    countmin = {}
    for alpha, bricks in itertools.product(skews, brick_counts):
        items, counts = streams[alpha]
        sketch = CountMin.for_bytes(bricks * brick_bytes, depth=3, seed=stream_seed)
        sketch.update(items, counts)
        countmin[alpha, bricks] = are(sketch.query(items), counts)
    rows = []
    for depth, basis_size, init, floor in itertools.product(depths, basis_sizes, inits, floors):
        slots = brick_bytes // (4 * depth)
        ratios = {key: [] for key in countmin}
        for seed in seeds:
            model = LegoSketch(BrickGeometry(depth, slots, basis_size, seed), value_range=(floor, 1.0),
                               basis_init=init)
            for (alpha, bricks), cm in countmin.items():
                items, counts = streams[alpha]
                ratios[alpha, bricks].append(are(lego_estimates(model, items, counts, bricks, "rule"), counts) / cm)
        for (alpha, bricks), values in ratios.items():
            rows.append({"depth": depth, "slots": slots, "basis_size": basis_size, "basis_init": init,
                         "value_floor": floor, "skew": alpha, "bricks": bricks,
                         "ratio_mean": float(np.mean(values)), "ratio_worst": float(np.max(values))})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.workloads.lego.geometry_scan",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 8], help="rows (= hashes = embedding size)")
    parser.add_argument("--basis-sizes", type=int, nargs="+", default=[80, 640], help="learnable vector lengths")
    parser.add_argument("--inits", nargs="+", default=["power6", "power12"], help="basis_init values")
    parser.add_argument("--floors", type=float, nargs="+", default=[1e-3, 1e-5], help="value floors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="hash (and vector) seeds")
    parser.add_argument("--skews", type=float, nargs="+", default=[0.9, 1.1, 1.5])
    parser.add_argument("--bricks", type=int, nargs="+", default=[12, 21], help="brick counts (100 KB each)")
    parser.add_argument("--brick-bytes", type=int, default=102400, help="bytes per brick; slots = this / (4 x rows)")
    parser.add_argument("--distinct", type=int, default=100000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = scan(args.depths, args.basis_sizes, args.inits, args.floors, args.seeds, args.skews, args.bricks,
                args.brick_bytes, args.distinct)
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["cell"] = frame.apply(lambda r: f"{r['skew']:g}@{r['bricks']}", axis=1)
    table = frame.pivot_table(index=["depth", "slots", "basis_size", "basis_init", "value_floor"], columns="cell",
                              values=["ratio_mean", "ratio_worst"], sort=False)
    print("rule-based read ARE / CountMin ARE (skew@bricks), mean and worst over seeds", args.seeds)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(table.round(3).to_string())
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
