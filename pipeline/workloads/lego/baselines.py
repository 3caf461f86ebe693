"""Peers of the Lego sketch at equal bytes (seed 003 §5.1): the learned-augmented
Count-Sketch of Aamand et al. that knows the distinct-item count, and the elastic
derivative (heavy part of filtering buckets + a light core sketch) with CountMin (D-CMS)
or Lego (D-Lego) as its light part. CountMin and Count-Sketch themselves are
`pipeline.workloads.sketches`. The meta-sketch-like MANN is a `LegoSketch` with an MLP
embedding (model.BrickGeometry.embedding = "mlp"), trained by `train.py`.

The heavy part is sequential by nature (its buckets evict by arrival order), so it runs
as one numba loop over the shuffled unit arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

from pipeline.workloads.sketches import CountSketch, hash_rows, row_seeds


def learned_count_sketch(items: np.ndarray, counts: np.ndarray, n_bytes: int, seed: int = 0,
                         sub_sketches: int = 10, depth: int = 3) -> np.ndarray:
    """Aamand et al. (2023), "without predictions", as the authors of seed 003 run it:
    half the counters form `sub_sketches` small Count-Sketches whose median flags an item
    as heavy when it reaches n / (counters / depth) (n = distinct items, the prior
    knowledge); heavy items get the estimate of a Count-Sketch on the other half, the rest
    get 0."""
    total = n_bytes // 4
    sub_width = total // (6 * sub_sketches)
    main_width = (total - sub_width * sub_sketches * depth) // depth
    if sub_width < 1 or main_width < 1:
        raise ValueError(f"{n_bytes} bytes are too few for the learned Count-Sketch")
    subs = []
    for t in range(sub_sketches):
        sketch = CountSketch(sub_width, depth, seed=seed * 1000 + 17 + t)
        sketch.update(items, counts)
        subs.append(sketch.query(items))
    main = CountSketch(main_width, depth, seed=seed * 1000 + 3)
    main.update(items, counts)
    threshold = len(items) / (total / depth)
    return np.where(np.median(np.stack(subs), axis=0) >= threshold, main.query(items), 0.0)


@numba.njit(cache=True)
def _heavy_part(arrivals, bucket_of, bucket_count, lam, item_count):
    """Elastic sketch heavy part over unit arrivals (item indices). Returns per item the
    count sent to the light part, and per bucket (key, positive votes, flag)."""
    keys = np.full(bucket_count, -1, np.int64)
    pos = np.zeros(bucket_count, np.float64)
    neg = np.zeros(bucket_count, np.float64)
    flag = np.zeros(bucket_count, np.bool_)
    light = np.zeros(item_count, np.float64)
    for i in range(arrivals.shape[0]):
        item = arrivals[i]
        b = bucket_of[item]
        if keys[b] == -1:
            keys[b] = item
            pos[b] = 1.0
        elif keys[b] == item:
            pos[b] += 1.0
        elif neg[b] / pos[b] < lam:
            neg[b] += 1.0
            light[item] += 1.0
        else:  # evict the resident to the light part, take its place (flagged)
            light[keys[b]] += pos[b]
            keys[b] = item
            pos[b] = 1.0
            neg[b] = 1.0
            flag[b] = True
    return light, keys, pos, flag


@dataclass
class ElasticSplit:
    heavy_bytes: int
    light_bytes: int


def elastic_split(n_bytes: int, heavy_fraction: float, light_unit: int = 1) -> ElasticSplit:
    """Heavy part gets `heavy_fraction` of the budget (seed 003 §5.1: a quarter); the
    light part the rest, rounded down to whole `light_unit`s (bricks for D-Lego)."""
    light = int(n_bytes * (1 - heavy_fraction)) // light_unit * light_unit
    if light < light_unit or n_bytes - light < 9:
        raise ValueError(f"{n_bytes} bytes cannot hold an elastic sketch with light unit {light_unit} B")
    return ElasticSplit(n_bytes - light, light)


def elastic_estimates(items: np.ndarray, counts: np.ndarray, n_bytes: int,
                      light_factory: Callable[[int], tuple[Callable, Callable]], heavy_fraction: float = 0.25,
                      light_unit: int = 1, lam: float = 10.0, seed: int = 0) -> np.ndarray:
    """The elastic derivative (Yang et al. 2018) over the stream (items, counts) replayed
    in random order. `light_factory(light_bytes)` returns (store(items, counts),
    query(items)) of the light core sketch. Buckets take 9 bytes (key, vote, flag), as in
    the seed-003 authors' code; lambda = 10 is theirs too."""
    split = elastic_split(n_bytes, heavy_fraction, light_unit)
    bucket_count = max(1, split.heavy_bytes // 9)
    rng = np.random.default_rng([seed, 31])
    arrivals = np.repeat(np.arange(len(items), dtype=np.int32), counts.astype(np.int64))
    rng.shuffle(arrivals)
    bucket_of = (hash_rows(items, row_seeds(1, seed + 99))[0] % np.uint64(bucket_count)).astype(np.int64)
    light_counts, keys, pos, flag = _heavy_part(arrivals, bucket_of, bucket_count, lam, len(items))
    del arrivals
    store, query = light_factory(split.light_bytes)
    sent = light_counts > 0
    store(items[sent], light_counts[sent])
    light = query(items)
    index = np.arange(len(items))
    resident = keys[bucket_of] == index
    heavy = np.where(resident, pos[bucket_of], 0.0)
    return np.where(resident & ~flag[bucket_of], heavy, heavy + light)
