"""Streams and queries for seed 000 §3.1 (frequency estimation), numpy-vectorised.

Three settings:

- Zipf: items are ids 0..universe-1 (the seed's {1..1000}, shifted to 0-based); rank r
  (1-based) has probability proportional to r^-alpha. The rank order (which id has which
  rank) is re-drawn for every stream, so the model only learns the shape of the skew,
  not which ids are heavy (seed 000 §3.1, "Zipfian Distribution").
- Heavy hitters from images: labels 0..K-1 with a FIXED rank order (label i has rank
  i+1, so small numbers are heavy), each arrival rendered as a 3-digit number image.
  The seed builds these from MNIST; we use scikit-learn's `load_digits` (8x8 digits,
  1797 images, shipped inside the package, so nothing is downloaded), split per digit
  class into training and held-out images: training streams draw training images,
  evaluation streams draw held-out images (seed 000 §3.1, "Learning Heavy Hitter
  Features"). An image is three 8x8 digits side by side: 8 x 24 pixels in [0, 1].

- A user's stream file (`file_stream_ids`): streams are windows of consecutive arrivals
  cut from it at random offsets, items ranked by their frequency in the file.

A batch is `Streams(items, queries, counts)`: `items` (B, T) ids or labels, `queries`
(B, Q) query ids drawn from the same distribution as the stream (the seed's queries are
Zipfian too), `counts` (B, Q) the true number of times each query occurs in its stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.workloads.data_files import stream


@dataclass
class Streams:
    items: np.ndarray  # (B, T) int64
    queries: np.ndarray  # (B, Q) int64
    counts: np.ndarray  # (B, Q) float64, true count of each query in its stream


def zipf_probabilities(universe: int, alpha: float) -> np.ndarray:
    """p[r-1] proportional to r^-alpha for ranks r = 1..universe."""
    if universe < 1:
        raise ValueError(f"universe must be at least 1, got {universe}")
    weights = np.arange(1, universe + 1, dtype=np.float64) ** -alpha
    return weights / weights.sum()


def true_counts(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(B, Q) number of occurrences of queries[b, j] in items[b]; vectorised."""
    return (items[:, None, :] == queries[:, :, None]).sum(axis=2).astype(np.float64)


def sample_streams(rng: np.random.Generator, batch: int, length: int, num_queries: int,
                   universe: int, alpha: float, fixed_rank_order: bool = False) -> Streams:
    """Zipfian streams and queries. With `fixed_rank_order` id i has rank i+1 in every
    stream (the heavy-hitter setting); otherwise each stream gets its own random order."""
    cdf = np.cumsum(zipf_probabilities(universe, alpha))
    cdf[-1] = 1.0
    ranks = np.searchsorted(cdf, rng.random((batch, length + num_queries)), side="right")
    ranks = np.minimum(ranks, universe - 1)  # 0-based rank
    if fixed_rank_order:
        ids = ranks
    else:
        # one random permutation rank -> id per stream: argsort of uniform noise
        order = np.argsort(rng.random((batch, universe)), axis=1)
        ids = np.take_along_axis(order, ranks, axis=1)
    items, queries = ids[:, :length].astype(np.int64), ids[:, length:].astype(np.int64)
    return Streams(items, queries, true_counts(items, queries))


def streams_from_items(items: np.ndarray) -> Streams:
    """Evaluation on given streams (e.g. a stream file): every arrival is also a query,
    so queries follow the stream's own distribution, as in the seed."""
    return Streams(items, items.copy(), true_counts(items, items))


def load_stream_file(path: str | Path, universe: int, length: int, column: str | None = None) -> np.ndarray:
    """Item ids from a stream file (`data_files.stream`: one item per line, `.npy` or a
    CSV column), cut into streams of `length` (a short tail is dropped unless it is the
    only stream). ValueError naming the file when it is missing, empty or has ids outside
    [0, universe)."""
    ids = stream(path, "stream_file", column)  # raises "...: no items" on an empty file
    if ids.min() < 0 or ids.max() >= universe:
        raise ValueError(f"stream_file {str(path)!r} has ids outside [0, {universe}): "
                         f"min {ids.min()}, max {ids.max()}")
    if ids.size < length:
        return ids[None, :]
    usable = (ids.size // length) * length
    return ids[:usable].reshape(-1, length)


def file_stream_ids(path: str | Path, universe: int, length: int, column: str | None = None) -> np.ndarray:
    """The `file` setting's source: a user's stream (any items, `data_files.stream`) as ids
    by frequency rank (0 = the most frequent item; ties by first id), in arrival order.
    Ranked ids keep the model's embedding table at the file's distinct count whatever the
    raw ids are. ValueError naming the file when it has more distinct items than
    `universe` or fewer arrivals than one stream of `length`."""
    raw = stream(path, "stream_file", column)
    distinct, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    if distinct.size > universe:
        raise ValueError(f"stream_file {path}: {distinct.size} distinct items, more than params.universe={universe}; "
                         f"set params.universe={distinct.size} or more")
    if raw.size < length:
        raise ValueError(f"stream_file {path}: {raw.size} items, fewer than one stream of "
                         f"params.stream_length={length}")
    rank = np.empty(distinct.size, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(distinct.size)
    return rank[inverse.reshape(-1)]


def sample_file_streams(rng: np.random.Generator, ids: np.ndarray, batch: int, length: int,
                        num_queries: int) -> Streams:
    """Streams cut from a user's stream: `batch` windows of `length` consecutive arrivals
    at random offsets (the file's own order and bursts kept), queries drawn from each
    window's arrivals, so they follow the stream's distribution as in the seed (§3.1)."""
    starts = rng.integers(0, ids.size - length + 1, size=batch)
    items = ids[starts[:, None] + np.arange(length)]
    queries = np.take_along_axis(items, rng.integers(0, length, size=(batch, num_queries)), axis=1)
    return Streams(items, queries, true_counts(items, queries))


# --- 3-digit number images from scikit-learn's digits -----------------------------------


@dataclass(frozen=True)
class DigitPools:
    """Digit images of one split grouped by class: images[start[c]:start[c]+size[c]]
    are the images of digit c."""

    images: np.ndarray  # (n, 8, 8) float32 in [0, 1]
    start: np.ndarray  # (10,) int64
    size: np.ndarray  # (10,) int64


@lru_cache(maxsize=4)
def digit_pools(held_out_fraction: float = 0.3, split_seed: int = 0) -> tuple[DigitPools, DigitPools]:
    """(train, held_out) pools: every digit class is split at random with the same
    fraction, so both splits have all ten digits. Fixed by `split_seed`, not the trial
    seed, so that held-out images never leak into training across trials."""
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for digit in range(10):  # 10 classes: a loop over classes, not over data
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test = max(1, int(round(held_out_fraction * idx.size)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])

    def pool(parts: list[np.ndarray]) -> DigitPools:
        sizes = np.array([p.size for p in parts], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return DigitPools(images[np.concatenate(parts)], start, sizes)

    return pool(train_idx), pool(test_idx)


def render_numbers(rng: np.random.Generator, labels: np.ndarray, pools: DigitPools) -> np.ndarray:
    """Images (…, 8, 24) of the 3-digit numbers `labels` (0..999), each digit an image
    drawn at random from its class in `pools`, so the same label gets a different
    image at every arrival."""
    flat = labels.reshape(-1)
    digits = np.stack([flat // 100 % 10, flat // 10 % 10, flat % 10], axis=1)  # (n, 3)
    pick = pools.start[digits] + (rng.random(digits.shape) * pools.size[digits]).astype(np.int64)
    tiles = pools.images[pick]  # (n, 3, 8, 8)
    images = tiles.transpose(0, 2, 1, 3).reshape(flat.size, 8, 24)
    return images.reshape(*labels.shape, 8, 24)
