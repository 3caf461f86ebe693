"""Zipf streams for the Lego sketch: meta-tasks for training (seed 003 §3.2) and the
evaluation streams of §5.3, plus a user's stream file (read by the sketches' loader).

Counts follow Appendix D as the authors build them: the item of rank r (1..n) has
frequency ((n+1)/(r+1))^alpha, so the rarest item has frequency ~1, times a stream-length
scale. Streams are stored aggregated, (distinct items, counts): Store is additive, so
writing an item's total count equals writing its occurrences one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.workloads.data_files import stream


def zipf_counts(distinct: int, alpha: float, scale: float = 1.0) -> np.ndarray:
    """Frequencies of ranks 1..n: scale * ((n+1)/(r+1))^alpha (float64, decreasing)."""
    ranks = np.arange(1, distinct + 1, dtype=np.float64)
    return scale * ((distinct + 1) / (ranks + 1)) ** alpha


def eval_stream(distinct: int, alpha: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The authors' synthetic evaluation stream: n distinct random int64 ids with rounded
    Zipf counts (each >= 1). Returns (items, counts)."""
    rng = np.random.default_rng([seed, 7, int(round(alpha * 1000))])
    items = _distinct_ids(rng, distinct)
    counts = np.maximum(np.round(zipf_counts(distinct, alpha)), 1.0)
    return items, counts


def _distinct_ids(rng: np.random.Generator, distinct: int) -> np.ndarray:
    # Random 62-bit ids: collisions have probability ~ n^2 / 2^63, removed anyway.
    ids = np.unique(rng.integers(0, 1 << 62, size=distinct, dtype=np.int64))
    while ids.size < distinct:
        ids = np.unique(np.concatenate([ids, rng.integers(0, 1 << 62, size=distinct - ids.size, dtype=np.int64)]))
    return rng.permutation(ids)


@dataclass
class MetaTaskBatch:
    """A batch of meta-tasks, concatenated: task `t` is stored in brick `t`."""

    items: np.ndarray  # (sum n_t,) int64
    counts: np.ndarray  # (sum n_t,) float32
    tasks: np.ndarray  # (sum n_t,) task/brick index of each item
    query: np.ndarray  # indices into items of the queried ones
    skew: np.ndarray  # (T,) alpha of each task
    distinct: np.ndarray  # (T,) n of each task


def sample_meta_tasks(rng: np.random.Generator, task_count: int, distinct_range: tuple[int, int],
                      skew_range: tuple[float, float], scale_range: tuple[float, float],
                      query_per_task: int) -> MetaTaskBatch:
    """seed 003 §3.2 meta-tasks, as the authors' generator draws them: n uniform in
    `distinct_range`, alpha uniform in `skew_range`, the counts times a stream-length
    scale uniform in `scale_range` (authors: 0.5..10, unrounded). Only `query_per_task`
    random items per task are queried for the loss (all of them if 0): a CPU economy,
    the authors query every item."""
    items, counts, tasks, query = [], [], [], []
    skews = rng.uniform(*skew_range, size=task_count)
    distincts = rng.integers(distinct_range[0], distinct_range[1] + 1, size=task_count)
    offset = 0
    for t in range(task_count):  # one vectorised draw per task (a handful per step)
        n = int(distincts[t])
        items.append(rng.integers(0, 1 << 62, size=n, dtype=np.int64))
        counts.append(rng.permutation(zipf_counts(n, skews[t], rng.uniform(*scale_range))).astype(np.float32))
        tasks.append(np.full(n, t, dtype=np.int64))
        chosen = np.arange(n) if query_per_task <= 0 or query_per_task >= n else rng.choice(n, query_per_task, replace=False)
        query.append(chosen + offset)
        offset += n
    return MetaTaskBatch(np.concatenate(items), np.concatenate(counts), np.concatenate(tasks),
                         np.concatenate(query), skews.astype(np.float32), distincts.astype(np.float32))


def read_stream_file(path: str | Path, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A user's stream (one item per line, a `.npy` of integers, or a CSV `column`), read
    by `pipeline.workloads.data_files.stream`, aggregated to (distinct items, counts):
    Store is additive, so writing each item's total equals writing its arrivals.
    ValueError naming the file if it is missing, unreadable or empty."""
    items, counts = np.unique(stream(path, "stream_file", column), return_counts=True)
    return items, counts.astype(np.float64)
