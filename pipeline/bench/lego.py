"""Store and Query throughput of the Lego sketch on CPU (and GPU where present), batched,
next to our CountMin at the same bytes (seed 003 §5.4).

    python -m pipeline.bench lego --json out.json [--checkpoint brick.pt --items 2000000 --bricks 12]
        [--device cuda]   (default: cuda where torch sees one, else cpu)

Rows: lego_store, lego_query (the ensemble as deployed: the neural decoder only in the
bricks whose scan selects it; `neural_share` is the share of queried items decoded),
lego_query_neural (every item through the decoder: the slowest path), lego_query_rule
(the rule-based read only), countmin_update, countmin_query; each with items_per_s
(median over repeats of one timed loop over the batches). Without --checkpoint a tiny
brick is trained first (--tiny-steps, seconds): its weights decide only which bricks the
ensemble decodes, not the cost of a decode; pass the quick training's brick.pt for the
deployed mix. On CPU Store and Query run the numba kernels (pipeline.workloads.lego.kernels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numba
import numpy as np
import torch

from pipeline.workloads.lego.model import ITEM_ESTIMATES, BrickGeometry, LegoSketch, gate_item_estimate, load_brick
from pipeline.workloads.lego.train import TrainConfig, train_brick
from pipeline.workloads.sketches import CountMin, zipf_stream


def _median_rate(fn, items: int, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return items / median, median


def _tiny_brick(steps: int, device: str) -> LegoSketch:
    """A default-geometry brick after a few training steps on small meta-tasks."""
    model = LegoSketch(BrickGeometry()).to(device)
    train_brick(model, TrainConfig(steps=steps, tasks_per_step=4, distinct_range=(1000, 50000), skew_range=(0.5, 1.5),
                                   query_per_task=512, lr=3e-3, report_every=steps), device=device)
    return model


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="pipeline.bench lego", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=2_000_000, help="stream length (unit arrivals)")
    parser.add_argument("--universe", type=int, default=100_000, help="distinct items of the Zipf stream")
    parser.add_argument("--alpha", type=float, default=1.1, help="Zipf skew of the stream")
    parser.add_argument("--bricks", type=int, default=12, help="brick count (12 x 100 KB = 1.2 MB)")
    parser.add_argument("--batch", type=int, default=1 << 20, help="items per Store/Query call")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--checkpoint", default="", help="a trained brick.pt (default: train a tiny one)")
    parser.add_argument("--tiny-steps", type=int, default=40, help="training steps of the tiny brick")
    parser.add_argument("--item-threshold", type=float, default=10000.0,
                        help="ensemble: neural estimate above this many scanned items (lego params default)")
    parser.add_argument("--skew-threshold", type=float, default=1.6,
                        help="ensemble: neural estimate below this scanned skew (lego params default)")
    parser.add_argument("--item-estimate", choices=ITEM_ESTIMATES, default=None,
                        help="ensemble gate's item count: the scanner's or linear counting (default: what the "
                             "checkpoint was trained with; the tiny brick: scan)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device}: no CUDA device visible to torch {torch.__version__}", file=sys.stderr)
        raise SystemExit(2)
    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    if args.checkpoint:
        model, brick = load_brick(args.checkpoint, device=args.device), args.checkpoint
    else:
        model, brick = _tiny_brick(args.tiny_steps, args.device), f"tiny ({args.tiny_steps} steps)"
    model.eval()
    stream = zipf_stream(args.universe, args.alpha, args.items, seed=0).astype(np.int64)
    x = torch.from_numpy(stream).to(args.device)
    batches = [x[i:i + args.batch] for i in range(0, len(x), args.batch)]
    n_bytes = args.bricks * model.geometry.brick_bytes
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def store():
        state = model.new_memory(args.bricks, device=args.device)
        with torch.no_grad():
            for batch in batches:
                state = model.store(state, batch)  # the returned state carries the counting buckets
        sync()
        return state

    state = store()
    gate = {"item_threshold": args.item_threshold, "skew_threshold": args.skew_threshold,
            "item_estimate": gate_item_estimate(model, args.item_estimate)}

    def query(mode):
        def go():
            for batch in batches:
                model.query(state, batch, mode=mode, **gate)
            sync()
        return go

    rows = []
    use_neural, _ = model.ensemble_choice(state, "auto", **gate)
    neural_share = float(use_neural[model.route(x, args.bricks)].float().mean())
    common = {"device": args.device, "bytes": n_bytes, "batch": args.batch, "threads": torch.get_num_threads(),
              "numba_threads": numba.get_num_threads(), "brick": brick,
              "item_estimate": gate["item_estimate"]}
    for method, fn in (("lego_store", store), ("lego_query", query("auto")), ("lego_query_neural", query("neural")),
                       ("lego_query_rule", query("rule"))):
        rate, seconds = _median_rate(fn, args.items, args.repeats)
        rows.append({"method": method, "items_per_s": rate, "seconds": seconds, **common})
    rows[1]["neural_share"] = neural_share
    rows[0]["stored_items"] = float(state.bucket.sum())  # every arrival counted in a bucket
    sketch = CountMin.for_bytes(n_bytes, depth=3)
    chunks = [stream[i:i + args.batch] for i in range(0, len(stream), args.batch)]

    def cm_update():
        for chunk in chunks:
            sketch.update(chunk)

    def cm_query():
        for chunk in chunks:
            sketch.query(chunk)

    for method, fn in (("countmin_update", cm_update), ("countmin_query", cm_query)):
        rate, seconds = _median_rate(fn, args.items, args.repeats)
        rows.append({"method": method, "items_per_s": rate, "seconds": seconds, **common, "device": "cpu"})
    by_name = {row["method"]: row["items_per_s"] for row in rows}
    for row in rows[:4]:
        peer = "countmin_update" if row["method"] == "lego_store" else "countmin_query"
        row["ratio_to_countmin"] = row["items_per_s"] / by_name[peer]
    return rows


if __name__ == "__main__":
    for row in main():
        print(row)
