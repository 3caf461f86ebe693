"""Classic frequency sketches: CountMin (with an update delta), conservative-update
CountMin and Count-Sketch, vectorised over item batches.

They are the workload `cms` and the baselines of seed 000 §3 (CountMin with M hash
functions, and with the learned update delta of appendix E / Figure 22) and of seed
003 §5 (CM and C sketches at equal memory).

Hashing: each row hashes the 64-bit item id with its own seeded 64-bit finaliser
(MurmurHash3's fmix64 over `item ^ row_seed`), then takes the result modulo the row
width; Count-Sketch takes its ±1 sign from another bit of the same mixed value. numpy
uint64 arithmetic wraps, which is what fmix64 needs.

Run: `python -m pipeline.run tasks/cms.yaml`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numba
import numpy as np
from pydantic import Field, field_validator, model_validator

from pipeline.workloads.base import LocalReporter, Params, Reporter, Workload
from pipeline.workloads import data_files

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = 0x9E3779B97F4A7C15


def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * _C1
    x = x ^ (x >> np.uint64(33))
    x = x * _C2
    return x ^ (x >> np.uint64(33))


def row_seeds(depth: int, seed: int) -> np.ndarray:
    """One independent 64-bit seed per row, drawn from `seed`."""
    return np.random.default_rng(seed).integers(0, 2**63, size=depth, dtype=np.uint64) | np.uint64(1)


def hash_rows(items: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """uint64 hashes, shape (depth, n): row r is fmix64(item ^ seeds[r])."""
    keys = np.asarray(items).astype(np.uint64, copy=False)
    with np.errstate(over="ignore"):
        return _fmix64(keys[None, :] ^ seeds[:, None])


_DTYPES = {"int32": np.int32, "int64": np.int64, "float32": np.float32, "float64": np.float64}
CounterDtype = Literal["int32", "int64", "float32", "float64"]


class _Sketch:
    """Shared layout: a (depth, width) counter table and one hash seed per row."""

    def __init__(self, width: int, depth: int, seed: int = 0, counter_dtype: str = "float32"):
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if counter_dtype not in _DTYPES:
            raise ValueError(f"counter_dtype must be one of {sorted(_DTYPES)}, got {counter_dtype!r}")
        self.width, self.depth = int(width), int(depth)
        self.table = np.zeros((self.depth, self.width), dtype=_DTYPES[counter_dtype])
        self.seeds = row_seeds(self.depth, seed)

    @property
    def size_bytes(self) -> int:
        """Counter memory: width x depth x bytes per counter (hash seeds not counted,
        as in seed 003's budgets)."""
        return int(self.table.nbytes)

    @classmethod
    def for_bytes(cls, n_bytes: int, depth: int = 3, seed: int = 0, counter_dtype: str = "float32", **kw):
        """The widest sketch of `depth` rows whose counters fit in `n_bytes`."""
        width = int(n_bytes) // (depth * np.dtype(_DTYPES[counter_dtype]).itemsize)
        if width < 1:
            raise ValueError(f"{n_bytes} bytes cannot hold {depth} rows of {counter_dtype} counters")
        return cls(width, depth, seed=seed, counter_dtype=counter_dtype, **kw)

    def _columns(self, items: np.ndarray) -> np.ndarray:
        return (hash_rows(items, self.seeds) % np.uint64(self.width)).astype(np.int64)

    @staticmethod
    def _weights(items: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
        if counts is None:
            return np.ones(len(items), dtype=np.float64)
        return np.asarray(counts, dtype=np.float64)


class CountMin(_Sketch):
    """CountMin (Cormode & Muthukrishnan): `depth` rows of `width` counters; an arrival
    adds `delta` (1 classically; seed 000 appendix E shows the learned sketch discovers
    delta < 1) to one counter per row; a query returns the row minimum. With
    `conservative=True`, an update raises only the counters that hold the current
    minimum (conservative update), which needs arrival order and runs compiled."""

    def __init__(self, width: int, depth: int, seed: int = 0, delta: float = 1.0,
                 conservative: bool = False, counter_dtype: str = "float32"):
        super().__init__(width, depth, seed, counter_dtype)
        if not delta > 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        if delta != int(delta) and self.table.dtype.kind == "i":
            raise ValueError(f"delta {delta} needs a float counter_dtype, not {self.table.dtype}")
        self.delta = float(delta)
        self.conservative = bool(conservative)

    def update(self, items: np.ndarray, counts: np.ndarray | None = None) -> None:
        items = np.asarray(items)
        cols = self._columns(items)
        weights = self._weights(items, counts) * self.delta
        if self.conservative:
            _conservative_update(self.table, cols, weights)
            return
        for row in range(self.depth):
            # bincount sums the batch per column in one pass: far faster than np.add.at
            self.table[row] += np.bincount(cols[row], weights, minlength=self.width).astype(self.table.dtype)

    def query(self, items: np.ndarray) -> np.ndarray:
        cols = self._columns(np.asarray(items))
        return self.table[np.arange(self.depth)[:, None], cols].min(axis=0).astype(np.float64)


@numba.njit(cache=True)
def _conservative_update(table, cols, weights):
    depth = cols.shape[0]
    for i in range(cols.shape[1]):
        low = table[0, cols[0, i]]
        for r in range(1, depth):
            low = min(low, table[r, cols[r, i]])
        target = low + weights[i]
        for r in range(depth):
            if table[r, cols[r, i]] < target:
                table[r, cols[r, i]] = target


class CountSketch(_Sketch):
    """Count-Sketch (Charikar, Chen & Farach-Colton): each row adds ±count to one
    counter; a query returns the median over rows of sign x counter."""

    def __init__(self, width: int, depth: int, seed: int = 0, counter_dtype: str = "float32"):
        super().__init__(width, depth, seed, counter_dtype)

    def _columns_signs(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hashed = hash_rows(items, self.seeds)
        cols = (hashed % np.uint64(self.width)).astype(np.int64)
        signs = 1.0 - 2.0 * ((hashed >> np.uint64(63)) & np.uint64(1)).astype(np.float64)
        return cols, signs

    def update(self, items: np.ndarray, counts: np.ndarray | None = None) -> None:
        items = np.asarray(items)
        cols, signs = self._columns_signs(items)
        weights = self._weights(items, counts)
        for row in range(self.depth):
            self.table[row] += np.bincount(cols[row], weights * signs[row], minlength=self.width).astype(self.table.dtype)

    def query(self, items: np.ndarray) -> np.ndarray:
        cols, signs = self._columns_signs(np.asarray(items))
        values = self.table[np.arange(self.depth)[:, None], cols] * signs
        return np.median(values, axis=0).astype(np.float64)


# --- error metrics ----------------------------------------------------------------

def aae(estimates: np.ndarray, truth: np.ndarray) -> float:
    """Average absolute error over the given (distinct) items (seed 003 §5.1)."""
    return float(np.mean(np.abs(np.asarray(estimates, float) - truth)))


def are(estimates: np.ndarray, truth: np.ndarray) -> float:
    """Average relative error |est - f| / f over the given items, f > 0 (seed 003 §5.1)."""
    truth = np.asarray(truth, float)
    return float(np.mean(np.abs(np.asarray(estimates, float) - truth) / truth))


def mae(estimates: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over queried items, repeats included (seed 000 §3.1)."""
    return aae(estimates, truth)


# --- streams ------------------------------------------------------------------------

def zipf_stream(universe: int, alpha: float, length: int, seed: int = 0) -> np.ndarray:
    """`length` i.i.d. draws from a Zipf law over item ids 0..universe-1: rank r (from
    1) has probability proportional to r^-alpha, ranks assigned to ids by a random
    permutation drawn from `seed` (seed 000 §3.1 re-draws this order per instance)."""
    if universe < 1:
        raise ValueError(f"universe must be >= 1, got {universe}")
    if length < 1:
        raise ValueError(f"stream length must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    weights = np.arange(1, universe + 1, dtype=np.float64) ** -float(alpha)
    ranks = rng.choice(universe, size=length, p=weights / weights.sum())
    return rng.permutation(universe)[ranks].astype(np.int64)


def load_stream(path: str | Path, column: str | None = None) -> np.ndarray:
    """A user's stream as int64 ids (`data_files.stream`): a `.npy` of integers, a text
    file with one item per line (integers are used as ids; any other tokens get the ids
    of their sorted order), or a CSV file's `column`. Raises ValueError naming the file
    when it is missing, unreadable or empty."""
    return data_files.stream(path, "stream file", column)


def exact_counts(stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items and their true frequencies."""
    return np.unique(stream, return_counts=True)


# --- the `cms` workload ---------------------------------------------------------------

class StreamParams(Params):
    source: Literal["zipf", "file"] = Field("zipf", description="synthetic Zipf stream or a user's file")
    universe: int = Field(100_000, ge=1, description="distinct ids a Zipf stream draws from")
    alpha: float = Field(1.1, gt=0, description="Zipf skew")
    length: int = Field(1_000_000, ge=1, description="items in a Zipf stream")
    path: str | None = Field(None, description="stream file when source=file: one item per line, a .npy of ints, "
                                               "or a CSV (with column)")
    column: str | None = Field(None, description="source=file, a CSV: the column whose values are the items")
    queries: int = Field(10_000, ge=1, description="query draws from the stream's distribution, for MAE")

    @model_validator(mode="after")
    def _path_for_file(self):
        if self.source == "file" and not self.path:
            raise ValueError("stream.path is required when stream.source is 'file'")
        return self


class CMSParams(Params):
    variant: Literal["countmin", "cu_countmin", "count_sketch"] = Field("countmin", description="which sketch")
    width: int = Field(1024, ge=1, description="counters per row")
    depth: int = Field(3, ge=1, le=64, description="rows (independent hash functions)")
    delta: float = Field(1.0, gt=0, description="CountMin update value (seed 000 appendix E); 1 is classic")
    counter_dtype: CounterDtype = Field("float32", description="counter type; bytes = width*depth*itemsize")
    batch: int = Field(1 << 16, ge=1, description="items per vectorised update")
    seed: int = Field(0, description="hash and stream seed")
    stream: StreamParams = Field(default_factory=StreamParams)

    @field_validator("delta")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"delta must be finite, got {value}")
        return value


def build_sketch(params: CMSParams):
    if params.variant == "count_sketch":
        return CountSketch(params.width, params.depth, seed=params.seed, counter_dtype=params.counter_dtype)
    return CountMin(params.width, params.depth, seed=params.seed, delta=params.delta,
                    conservative=params.variant == "cu_countmin", counter_dtype=params.counter_dtype)


def make_stream(stream: StreamParams, seed: int) -> np.ndarray:
    if stream.source == "file":
        return load_stream(stream.path, stream.column)
    return zipf_stream(stream.universe, stream.alpha, stream.length, seed)


def run_cms(params: CMSParams, report: Reporter) -> dict[str, float]:
    stream = make_stream(params.stream, params.seed)
    sketch = build_sketch(params)
    distinct, truth = exact_counts(stream)
    metrics: dict[str, float] = {}
    for step, start in enumerate(range(0, len(stream), params.batch * 4)):
        chunk = stream[start:start + params.batch * 4]
        for sub in range(0, len(chunk), params.batch):
            sketch.update(chunk[sub:sub + params.batch])
        if start + len(chunk) >= len(stream) or step % 4 == 3:
            # progress: error so far on the items seen so far
            seen, seen_truth = exact_counts(stream[: start + len(chunk)])
            report({"aae": aae(sketch.query(seen), seen_truth), "items": float(start + len(chunk))}, step=step)
    estimates = sketch.query(distinct)
    rng = np.random.default_rng(params.seed + 1)
    queried = stream[rng.integers(0, len(stream), size=params.stream.queries)]
    queried_truth = truth[np.searchsorted(distinct, queried)].astype(np.float64)
    metrics = {
        "aae": aae(estimates, truth),
        "are": are(estimates, truth),
        "mae": mae(sketch.query(queried), queried_truth),
        "bytes": float(sketch.size_bytes),
        "distinct": float(len(distinct)),
        "stream_length": float(len(stream)),
    }
    report(metrics, step=None)
    return metrics


def _validate(params: CMSParams) -> None:
    if params.stream.source == "file":
        load_stream(params.stream.path, params.stream.column)  # raises ValueError naming the file
    if params.delta != int(params.delta) and params.counter_dtype.startswith("int"):
        raise ValueError(f"params.delta={params.delta} needs a float counter_dtype, not {params.counter_dtype}")


def cms_baselines(params: CMSParams) -> list[dict]:
    """Classic CountMin and Count-Sketch (3 rows) at a few widths on the task's stream:
    the reference fronts drawn beside the searched one."""
    rows = []
    stream = make_stream(params.stream, params.seed)
    distinct, truth = exact_counts(stream)
    for variant in ("countmin", "count_sketch"):
        for width in (256, 1024, 4096, 16384):
            sketch = build_sketch(params.model_copy(update={"variant": variant, "width": width, "depth": 3, "delta": 1.0}))
            sketch.update(stream)
            est = sketch.query(distinct)
            rows.append({"method": f"{variant}_d3", "width": width, "aae": aae(est, truth),
                         "are": are(est, truth), "bytes": float(sketch.size_bytes)})
    return rows


WORKLOAD = Workload(
    name="cms",
    params=CMSParams,
    run=run_cms,
    metrics=("aae", "are", "mae", "bytes", "distinct", "stream_length", "items"),
    description="CountMin / conservative CountMin / Count-Sketch on a Zipf or user stream (numpy)",
    smoke_params={"width": 64, "depth": 2, "stream": {"universe": 500, "length": 5000, "queries": 100}},
    baselines=cms_baselines,
    validate=_validate,
)


if __name__ == "__main__":  # a quick look without the pipeline
    print(run_cms(CMSParams(), LocalReporter()))
