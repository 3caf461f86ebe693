"""Instance generators for end-to-end nearest-neighbour search (seed 000 §2.2-2.5, B.1).

Each distribution draws a batch of problem instances `(D, q)` with numpy (seeded
`Generator`, so a seed gives the same instances) and returns an `Instances` record:

- `data`: [B, N, d] the points as the networks see them (raw pixels for digits),
- `points`: [B, N, d_metric] the points in the space the nearest neighbour is defined in
  (equal to `data` except for digits, where it is the label),
- `queries` / `query_points`: the same for the query,
- `nn_index`: [B] position in `D` of the nearest neighbour (ties: lowest index).

Distributions (names are the `distribution` field of the workload):

- `uniform1d`, `uniform2d`: coordinates i.i.d. uniform on (-1, 1), queries likewise (§2.2, §2.3).
- `zipf1d`: data uniform on {1..200}, queries Zipf(alpha) on {1..200} (§2.2).
- `hard1d`, `hard2d`: the anti-concentrated "hard" distribution of appendix B.1 (per
  coordinate in 2D), query = a random data point plus standard Gaussian noise.
- `hypersphere`: points uniform on the unit sphere in R^d, query at inner product rho
  with a random data point (§2.4).
- `digits`: images of 3-digit numbers 0..199 built from scikit-learn's `load_digits`
  (1797 8x8 handwritten digits that ship with scikit-learn; MNIST cannot be downloaded
  here), nearest by label (§2.4 "learning useful representations").
- `file`: a user's points (`PointPool`): each instance is N points drawn from the file,
  its query one of the held-out points (or of a second file of queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.workloads.data_files import DataFileError, points as read_points

DISTRIBUTIONS = ("uniform1d", "zipf1d", "hard1d", "uniform2d", "hard2d", "hypersphere", "digits", "file")
DIGIT_IMAGE_SHAPE = (8, 24)  # three 8x8 scikit-learn digits side by side
DIGIT_LABELS = 200  # labels 0..199 as in §2.4


@dataclass
class Instances:
    data: np.ndarray  # [B, N, *feature_shape] float32, what the networks read
    queries: np.ndarray  # [B, *feature_shape]
    points: np.ndarray  # [B, N, d_metric] float64, where "nearest" is measured
    query_points: np.ndarray  # [B, d_metric]
    nn_index: np.ndarray  # [B] int64

    def distances(self) -> np.ndarray:
        """[B, N] Euclidean distance of each point to the query in the metric space."""
        return np.linalg.norm(self.points - self.query_points[:, None, :], axis=-1)


def dimension_of(distribution: str, dim: int) -> int:
    """The dimension of the points the query networks read (before any feature model)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")
    return {"uniform2d": 2, "hard2d": 2, "hypersphere": dim, "digits": 0, "file": dim}.get(distribution, 1)


def _finish(data, queries, points=None, query_points=None) -> Instances:
    points = data if points is None else points
    query_points = queries if query_points is None else query_points
    points = points.astype(np.float64)
    query_points = query_points.astype(np.float64)
    dist = np.linalg.norm(points - query_points[:, None, :], axis=-1)
    return Instances(data.astype(np.float32), queries.astype(np.float32), points, query_points,
                     dist.argmin(axis=1).astype(np.int64))


@lru_cache(maxsize=32)
def _hard_tree(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A balanced binary tree over n sorted slots (node = middle of its range).
    Returns parent (-1 for root), sign (-1 left child, +1 right), depth, and the depth
    count, all indexed by node in breadth-first order so parents come first. Built once
    per n, O(n) in Python: structure only, never per instance."""
    parent, sign, depth = [], [], []
    frontier = [(0, n, -1, 0, 0)]  # lo, hi, parent node id, sign, depth
    while frontier:
        nxt = []
        for lo, hi, par, sgn, dep in frontier:
            if lo >= hi:
                continue
            node = len(parent)
            parent.append(par), sign.append(sgn), depth.append(dep)
            mid = (lo + hi) // 2
            nxt += [(lo, mid, node, -1, dep + 1), (mid + 1, hi, node, 1, dep + 1)]
        frontier = nxt
    depth_arr = np.array(depth)
    return np.array(parent), np.array(sign), depth_arr, int(depth_arr.max()) + 1


def sample_hard(rng: np.random.Generator, batch: int, n: int, base: float) -> np.ndarray:
    """Appendix B.1: node d_i ~ Uniform(0, a^(levels - k)) at depth k; a left child is its
    parent minus d_i, a right child its parent plus d_i, the root is d_0. The text says
    a^(log n - k); we use the number of levels for log n so leaves get range a (assumed).
    Values are divided by a^levels so the root lies in (0, 1): nearest neighbours are
    scale-invariant and the networks get inputs of order one."""
    parent, sign, depth, levels = _hard_tree(n)
    spread = base ** (levels - depth).astype(np.float64)
    step = rng.uniform(0.0, 1.0, size=(batch, n)) * spread
    values = np.zeros((batch, n))
    values[:, 0] = step[:, 0]
    for level in range(1, levels):  # log n vectorised steps over the batch
        nodes = np.flatnonzero(depth == level)
        values[:, nodes] = values[:, parent[nodes]] + sign[nodes] * step[:, nodes]
    return values / base**levels


@lru_cache(maxsize=1)
def digit_pools(test_fraction: float = 0.25, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-learn's bundled 8x8 digits, split per class into train and test pools."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == cls))
        cut = int(len(idx) * test_fraction)
        test.append(images[idx[:cut]])
        train.append(images[idx[cut:]])
    return train, test


def digit_images(rng: np.random.Generator, labels: np.ndarray, split: str) -> np.ndarray:
    """[*labels.shape, 8, 24]: each label's three decimal digits, each a random image of
    that digit from the chosen pool, side by side (3-digit MNIST of §2.4, Fig. 13)."""
    train, test = digit_pools()
    pools = train if split == "train" else test
    out = np.empty(labels.shape + DIGIT_IMAGE_SHAPE, dtype=np.float32)
    for place, divisor in enumerate((100, 10, 1)):
        digit = (labels // divisor) % 10
        for cls in range(10):  # 10 vectorised gathers, not a loop over items
            mask = digit == cls
            pick = rng.integers(0, len(pools[cls]), size=int(mask.sum()))
            out[mask, :, place * 8:(place + 1) * 8] = pools[cls][pick]
    return out


@dataclass(frozen=True)
class PointPool:
    """A user's points, scaled into [-1, 1] by one factor for every axis (a translation and
    a uniform scale keep every nearest neighbour; the networks get inputs of order one):
    `data` the points instances are drawn from, `train_queries` / `test_queries` the
    queries of training and of the final evaluation (disjoint halves of the held-out
    points or of the queries file)."""

    data: np.ndarray  # (m, d) float64
    train_queries: np.ndarray
    test_queries: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])


@lru_cache(maxsize=4)
def point_pool(points_file: str, queries_file: str | None = None, query_fraction: float = 0.2,
               columns: tuple[str, ...] | None = None, dim: int | None = None, n: int = 2,
               seed: int = 0) -> PointPool:
    """The pool of `file` instances (module docstring). Without `queries_file` a share
    `query_fraction` of the points (at random, fixed by `seed`) is held out as queries and
    never stored in an instance. DataFileError naming the file when it cannot be read
    (data_files.points: NaN / inf, wrong dimension), has fewer than n data points or
    fewer than two queries."""
    cols = list(columns) if columns else None
    pts = read_points(points_file, "points_file", dim=dim, columns=cols)
    rng = np.random.default_rng([seed, 17])
    if queries_file:
        queries = read_points(queries_file, "queries_file", dim=pts.shape[1], columns=cols)
        data = pts
    else:
        order = rng.permutation(pts.shape[0])
        held = int(round(query_fraction * pts.shape[0]))
        queries, data = pts[order[:held]], pts[order[held:]]
    if data.shape[0] < n:
        raise DataFileError(f"points_file {points_file}: {data.shape[0]} points to draw instances from "
                            f"(after holding out queries), fewer than params.n={n}")
    if queries.shape[0] < 2:
        raise DataFileError(f"{'queries_file ' + queries_file if queries_file else 'points_file ' + points_file}: "
                            f"{queries.shape[0]} query points, need at least 2 (raise params.query_fraction)")
    both = np.concatenate([data, queries])
    low, high = both.min(axis=0), both.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1e-300)
    queries = queries[rng.permutation(queries.shape[0])]
    cut = queries.shape[0] // 2
    scale = lambda x: np.ascontiguousarray((x - centre) / half)  # noqa: E731
    return PointPool(scale(data), scale(queries[:cut]), scale(queries[cut:]))


def sample_pool(pool: PointPool, rng: np.random.Generator, batch: int, n: int, split: str = "train") -> Instances:
    """`batch` instances: n distinct points of the pool each, and a query from the split's
    queries. Distinct points by sorting random keys while the pool is small; from a large
    pool (over 4096 points, >= 20 n) with replacement, where a repeat is rare and harmless
    (a tie goes to the lowest index)."""
    m = pool.data.shape[0]
    if m <= 4096 or m < 20 * n:
        idx = np.argpartition(rng.random((batch, m)), n - 1, axis=1)[:, :n] if n < m else \
            np.tile(np.arange(m), (batch, 1))
        idx = np.take_along_axis(idx, np.argsort(rng.random(idx.shape), axis=1), axis=1)
    else:
        idx = rng.integers(0, m, size=(batch, n))
    queries = pool.train_queries if split == "train" else pool.test_queries
    return _finish(pool.data[idx], queries[rng.integers(0, queries.shape[0], size=batch)])


def sample(distribution: str, rng: np.random.Generator, batch: int, n: int, *, dim: int = 30,
           rho: float = 0.8, zipf_alpha: float = 1.2, zipf_support: int = 200,
           hard_base: float = 7.0, split: str = "train", pool: PointPool | None = None) -> Instances:
    """Draw `batch` instances of `n` points from `distribution` (module docstring)."""
    if distribution == "file":
        if pool is None:
            raise ValueError("distribution 'file' needs a PointPool (params.points_file)")
        return sample_pool(pool, rng, batch, n, split)
    if distribution == "uniform1d":
        data = rng.uniform(-1, 1, size=(batch, n, 1))
        return _finish(data, rng.uniform(-1, 1, size=(batch, 1)))
    if distribution == "uniform2d":
        data = rng.uniform(-1, 1, size=(batch, n, 2))
        return _finish(data, rng.uniform(-1, 1, size=(batch, 2)))
    if distribution == "zipf1d":
        # §2.2: data uniform over {1..200}, queries Zipfian towards small numbers
        data = rng.integers(1, zipf_support + 1, size=(batch, n, 1)).astype(np.float64)
        weights = 1.0 / np.arange(1, zipf_support + 1) ** zipf_alpha
        queries = rng.choice(np.arange(1, zipf_support + 1), size=(batch, 1), p=weights / weights.sum())
        # the networks see values scaled to (0, 1]; the metric is scale-free
        return _finish(data / zipf_support, queries.astype(np.float64) / zipf_support)
    if distribution in ("hard1d", "hard2d"):
        d = 1 if distribution == "hard1d" else 2
        data = np.stack([sample_hard(rng, batch, n, hard_base) for _ in range(d)], axis=-1)
        data = np.take_along_axis(data, rng.permuted(np.tile(np.arange(n), (batch, 1)), axis=1)[..., None], 1)
        anchor = data[np.arange(batch), rng.integers(0, n, size=batch)]
        _, _, _, levels = _hard_tree(n)
        noise = rng.standard_normal((batch, d)) / hard_base**levels  # N(0,1) in unscaled units
        return _finish(data, anchor + noise)
    if distribution == "hypersphere":
        data = rng.standard_normal((batch, n, dim))
        data /= np.linalg.norm(data, axis=-1, keepdims=True)
        anchor = data[np.arange(batch), rng.integers(0, n, size=batch)]
        # §2.4: q = rho * x + sqrt(1 - rho^2) * u, u a unit vector orthogonal to x
        ortho = rng.standard_normal((batch, dim))
        ortho -= (ortho * anchor).sum(-1, keepdims=True) * anchor
        ortho /= np.linalg.norm(ortho, axis=-1, keepdims=True)
        return _finish(data, rho * anchor + np.sqrt(1 - rho**2) * ortho)
    if distribution == "digits":
        # §2.4: N distinct labels uniform in 0..199, query label uniform, nearest by label
        labels = np.argsort(rng.random((batch, DIGIT_LABELS)), axis=1)[:, :n]
        query_labels = rng.integers(0, DIGIT_LABELS, size=batch)
        images = digit_images(rng, labels, split)
        query_images = digit_images(rng, query_labels, split)
        return _finish(images, query_images, labels[..., None].astype(np.float64) / DIGIT_LABELS,
                       query_labels[:, None].astype(np.float64) / DIGIT_LABELS)
    raise ValueError(f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")


def support(distribution: str, zipf_support: int = 200) -> tuple[float, float]:
    """The value range a distribution-aware 1D search (interpolation, bucketing) assumes."""
    # hard1d: the root lies in (0, 1) and descendants add at most sum_k a^-k = 1/6 for a = 7
    return {"uniform1d": (-1.0, 1.0), "zipf1d": (1.0 / zipf_support, 1.0), "hard1d": (-1.0 / 6, 7.0 / 6)}.get(
        distribution, (-1.0, 1.0))
