"""Evaluation of a trained brick at many budgets without retraining (seed 003 §5.2-5.3):
for each stream (distinct items, skew) and each brick count, Lego's AAE and ARE beside
CountMin and Count-Sketch (3 rows) and the optional peers at the same bytes; the table
is a CSV and the ARE-vs-bytes plot a PNG and an HTML page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pipeline.workloads.lego.baselines import elastic_estimates, learned_count_sketch
from pipeline.workloads.lego.model import LegoSketch
from pipeline.workloads.sketches import CountMin, CountSketch, aae, are

METHODS = ("lego", "lego_rule", "lego_neural", "countmin", "countsketch", "lcs", "dcms", "dlego", "ms")


def lego_estimates(model: LegoSketch, items: np.ndarray, counts: np.ndarray, brick_count: int,
                   mode: str = "auto", item_threshold: float = 10000.0, skew_threshold: float = 1.0,
                   item_estimate: str = "scan", device: str = "cpu", batch: int = 1 << 20) -> np.ndarray:
    """Store the stream into `brick_count` bricks (batched), then Query every item."""
    state = model.new_memory(brick_count, device=device)
    x = torch.from_numpy(np.ascontiguousarray(items, dtype=np.int64)).to(device)
    c = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32)).to(device)
    with torch.no_grad():
        for start in range(0, len(x), batch):
            state = model.store(state, x[start:start + batch], c[start:start + batch])
        estimate = model.query(state, x, mode=mode, item_threshold=item_threshold, skew_threshold=skew_threshold,
                               item_estimate=item_estimate)
    return estimate.double().cpu().numpy()


def _lego_light(model: LegoSketch, device: str, **query_kw):
    def factory(light_bytes: int):
        sketch = {"state": model.new_memory(light_bytes // model.geometry.brick_bytes, device=device)}

        def store(items, counts):
            with torch.no_grad():  # keep the returned state: it carries the counting buckets
                sketch["state"] = model.store(sketch["state"], torch.from_numpy(items).to(device),
                                              torch.from_numpy(counts).float().to(device))

        def query(items):
            return model.query(sketch["state"], torch.from_numpy(items).to(device), **query_kw).double().cpu().numpy()

        return store, query
    return factory


def _countmin_light(seed: int):
    def factory(light_bytes: int):
        sketch = CountMin.for_bytes(light_bytes, depth=3, seed=seed)
        return sketch.update, sketch.query
    return factory


def evaluate(model: LegoSketch, skews: Sequence[float], brick_counts: Sequence[int], distinct: int,
             methods: Sequence[str] = ("lego", "countmin", "countsketch"), seed: int = 0, device: str = "cpu",
             item_threshold: float = 10000.0, skew_threshold: float = 1.0, item_estimate: str = "scan",
             heavy_fraction: float = 0.25,
             ms_model: LegoSketch | None = None, streams: dict | None = None) -> list[dict]:
    """Rows {stream, skew, distinct, bricks, bytes, method, aae, are}. `streams` maps a
    name to (items, counts) to evaluate instead of synthetic Zipf streams (skew = nan)."""
    from pipeline.workloads.lego.streams import eval_stream

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown evaluation methods {unknown}; valid: {', '.join(METHODS)}")
    if "ms" in methods and ms_model is None:
        raise ValueError("method 'ms' needs a trained meta-sketch-like model")
    if streams is None:
        streams = {f"zipf_{alpha:g}": eval_stream(distinct, alpha, seed) for alpha in skews}
        skew_of = {f"zipf_{alpha:g}": float(alpha) for alpha in skews}
    else:
        skew_of = {name: float("nan") for name in streams}
    brick_bytes = model.geometry.brick_bytes
    query_kw = dict(item_threshold=item_threshold, skew_threshold=skew_threshold, item_estimate=item_estimate)
    rows = []
    for name, (items, counts) in streams.items():
        for bricks in brick_counts:
            n_bytes = int(bricks) * brick_bytes
            for method in methods:
                if method == "lego":
                    est = lego_estimates(model, items, counts, bricks, "auto", device=device, **query_kw)
                elif method in ("lego_rule", "lego_neural"):  # one half of the ensemble alone
                    est = lego_estimates(model, items, counts, bricks, method[5:], device=device)
                elif method == "ms":
                    est = lego_estimates(ms_model, items, counts, max(1, n_bytes // ms_model.geometry.brick_bytes),
                                         "neural", device=device)
                elif method in ("countmin", "countsketch"):
                    sketch = (CountMin if method == "countmin" else CountSketch).for_bytes(n_bytes, depth=3, seed=seed)
                    sketch.update(items, counts)
                    est = sketch.query(items)
                elif method == "lcs":
                    est = learned_count_sketch(items, counts, n_bytes, seed=seed)
                elif method == "dcms":
                    est = elastic_estimates(items, counts, n_bytes, _countmin_light(seed), heavy_fraction,
                                            light_unit=brick_bytes, seed=seed)
                else:  # dlego
                    if bricks < 2:
                        continue  # the light part needs a whole brick and the heavy part some bytes
                    est = elastic_estimates(items, counts, n_bytes, _lego_light(model, device, **query_kw),
                                            heavy_fraction, light_unit=brick_bytes, seed=seed)
                rows.append({"stream": name, "skew": skew_of[name], "distinct": len(items), "bricks": int(bricks),
                             "bytes": n_bytes, "method": method, "aae": aae(est, counts), "are": are(est, counts)})
    return rows




def plot_are_vs_bytes(rows: list[dict], directory: Path, stem: str = "are_vs_bytes") -> list[Path]:
    """ARE against bytes, one panel per stream in order of skew, one line per method, each
    method in its fixed style in every panel (PNG and a self-contained HTML page)."""
    import pandas as pd

    from pipeline.plots import write_line_panels

    frame = pd.DataFrame(rows)
    # panels by skew when each stream has its own; otherwise by stream name
    by_skew = "skew" in frame and frame.groupby("skew")["stream"].nunique().max() == 1
    return write_line_panels(frame, "bytes", "are", directory, stem, panel="skew" if by_skew else "stream",
                             panel_title="{name} {value}", y_scale="log",
                             title="ARE against memory: learned sketches (solid) and classic peers (dashed)")
