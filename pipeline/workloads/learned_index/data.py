"""Sorted tables and query sets for learned sorted-table search (seed 001 §3.4).

- a user's table: SOSD's binary format (an 8-byte little-endian count, then the keys as
  little-endian uint32 or uint64), `.npy` or text, read by `pipeline.workloads.data_files`;
- SOSD-style synthetic tables (uniform dense, uniform sparse, normal, lognormal);
- tables sized to each memory level (§3.4: L1 3.7K, L2 31.5K, L3 750K, L4 200M keys) and the
  seed's down-sampling of a large table: of 100 uniform samples, the one that passes the
  Kolmogorov-Smirnov test against the table and has the smallest KL divergence;
- query sets drawn uniformly with replacement from the table (1M in the seed), optionally
  with a share of absent keys.

Keys are held as uint64 internally, whatever their width on disk; `key_bytes` keeps the
width on disk so that space fractions are relative to the table the user has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from pipeline.workloads.data_files import sorted_keys
from pipeline.workloads.data_files import read_sosd, write_sosd  # noqa: F401  (this module's API before data_files)

#: Table sizes per memory level, seed 001 §3.4 (i7-8700: 64KB L1, 256KB L2, 12MB L3, 32GB RAM).
LEVEL_SIZES: dict[str, int] = {"L1": 3_700, "L2": 31_500, "L3": 750_000, "L4": 200_000_000}
DISTRIBUTIONS = ("uniform_dense", "uniform_sparse", "normal", "lognormal")


@dataclass(frozen=True)
class Table:
    """A sorted table: `keys` (uint64, non-decreasing) and where it came from."""

    keys: np.ndarray
    name: str
    key_bytes: int = 8  # width of a key in the user's table (4 or 8): the denominator of space_fraction

    @property
    def table_bytes(self) -> int:
        return int(self.keys.size) * self.key_bytes


# ---------------------------------------------------------------- a user's file


def load_keys(path: str | Path, width: int | None = None) -> Table:
    """A user's table (SOSD binary, `.npy` or one integer per line: `data_files.sorted_keys`),
    checked: integers, non-negative, at least two, sorted. The keys stay memory-mapped
    where the file allows."""
    keys = sorted_keys(path, "keys_file", width)
    return Table(keys=keys.keys, name=keys.name, key_bytes=keys.key_bytes)


# ---------------------------------------------------------------- synthetic tables


def synthetic_keys(dist: str, n: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """n sorted uint64 keys in SOSD's style.

    uniform_dense: the integers 0..n-1 (SOSD's dense table; a line fits it exactly);
    uniform_sparse: n uniform draws from the whole 64-bit range;
    normal, lognormal: computed deterministically from n evenly spaced quantiles, as SOSD
    does, scaled to integers (normal: 1e15 per standard deviation around 2^62; lognormal
    with sigma 2 (configurable), times 1e9). The scales are ours: the extracted text gives none.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if dist == "uniform_dense":
        return np.arange(n, dtype=np.uint64)
    if dist == "uniform_sparse":
        rng = np.random.default_rng(seed)
        return np.sort(rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True))
    quantiles = (np.arange(n, dtype=np.float64) + 0.5) / n
    if dist == "normal":
        return np.round(2.0**62 + stats.norm.ppf(quantiles) * 1e15).astype(np.uint64)
    if dist == "lognormal":
        return np.round(stats.lognorm.ppf(quantiles, s=sigma) * 1e9).astype(np.uint64)
    raise ValueError(f"unknown dist {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")


def level_size(level: str, l4_size: int | None = None) -> int:
    """Number of keys of a table that fits memory `level` (§3.4); L4 may be overridden."""
    if level not in LEVEL_SIZES:
        raise ValueError(f"unknown level {level!r}; valid: {', '.join(LEVEL_SIZES)}")
    return l4_size if (level == "L4" and l4_size) else LEVEL_SIZES[level]


# ---------------------------------------------------------------- down-sampling (§3.4)


@dataclass(frozen=True)
class Sample:
    keys: np.ndarray
    ks_pvalue: float
    kl_divergence: float
    trial: int


def downsample(keys: np.ndarray, n: int, trials: int = 100, seed: int = 0, alpha: float = 0.05,
               bins: int = 100) -> Sample:
    """Seed 001 §3.4: draw `trials` uniform samples of n keys without replacement; keep those
    the Kolmogorov-Smirnov test cannot tell from the table (p >= alpha), and of these the one
    whose histogram ("PDF") has the smallest KL divergence from the table's. If none passes,
    the smallest KL divergence of all wins (the seed does not say; this keeps it total).

    The KS statistic of a sample against its own table is computed exactly from the sorted
    ranks (O(n) per trial) and its p-value from scipy's one-sample KS distribution, which is
    the two-sample one in the limit of a table much larger than the sample. Bins are equal
    width over the table's range.
    """
    big = keys.size
    if not 2 <= n <= big:
        raise ValueError(f"sample size must be in [2, {big}], got {n}")
    rng = np.random.default_rng(seed)
    edges = np.linspace(float(keys[0]), float(keys[-1]), bins + 1)
    cuts = np.searchsorted(keys.astype(np.float64), edges, side="left")
    cuts[-1] = big  # np.histogram's last bin is closed
    table_hist = np.diff(cuts).astype(np.float64)
    table_pdf = (table_hist + 1e-12) / (table_hist.sum() + bins * 1e-12)
    best: Sample | None = None
    for trial in range(trials):
        idx = np.sort(rng.choice(big, size=n, replace=False))
        sample = keys[idx]
        table_cdf = np.searchsorted(keys, sample, side="right") / big
        table_cdf_left = np.searchsorted(keys, sample, side="left") / big
        sample_cdf = np.searchsorted(sample, sample, side="right") / n
        sample_cdf_left = np.searchsorted(sample, sample, side="left") / n
        statistic = max(np.abs(sample_cdf - table_cdf).max(), np.abs(sample_cdf_left - table_cdf_left).max())
        pvalue = float(stats.kstwo.sf(statistic, n))
        hist = np.histogram(sample.astype(np.float64), bins=edges)[0].astype(np.float64)
        pdf = (hist + 1e-12) / (hist.sum() + bins * 1e-12)
        kl = float(np.sum(pdf * np.log(pdf / table_pdf)))
        candidate = Sample(keys=sample, ks_pvalue=pvalue, kl_divergence=kl, trial=trial)
        if best is None or _better(candidate, best, alpha):
            best = candidate
    assert best is not None
    return best


def _better(a: Sample, b: Sample, alpha: float) -> bool:
    a_pass, b_pass = a.ks_pvalue >= alpha, b.ks_pvalue >= alpha
    if a_pass != b_pass:
        return a_pass
    return a.kl_divergence < b.kl_divergence


# ---------------------------------------------------------------- queries


def make_queries(keys: np.ndarray, count: int = 1_000_000, seed: int = 0, absent_fraction: float = 0.0) -> np.ndarray:
    """`count` queries in random order: drawn uniformly with replacement from the table
    (§3.4), and a share `absent_fraction` drawn uniformly from the key range (mostly keys
    absent from a sparse table, so they exercise the lower bound between keys)."""
    if not 0.0 <= absent_fraction <= 1.0:
        raise ValueError(f"absent_fraction must be in [0, 1], got {absent_fraction}")
    rng = np.random.default_rng(seed)
    queries = keys[rng.integers(0, keys.size, size=count)]
    absent = int(round(count * absent_fraction))
    if absent:
        where = rng.choice(count, size=absent, replace=False)
        queries[where] = rng.integers(keys[0], keys[-1], size=absent, dtype=np.uint64, endpoint=True)
    return queries


def make_table(dist: str = "lognormal", n: int | None = None, level: str | None = "L2", seed: int = 0,
               keys_file: str | None = None, l4_size: int | None = None, key_width: int | None = None) -> Table:
    """The table a run searches: the user's `keys_file` if given (down-sampled, §3.4, to n
    keys or the level's size when one is given and smaller than the file), else a synthetic
    `dist` table of n keys (or the level's size)."""
    size = n if n else (level_size(level, l4_size) if level else None)
    if keys_file:
        table = load_keys(keys_file, key_width)
        if size is None or size >= table.keys.size:
            return table
        sample = downsample(table.keys, size, seed=seed)
        return Table(keys=sample.keys, name=f"{table.name}_{size}", key_bytes=table.key_bytes)
    if size is None:
        raise ValueError("a synthetic table needs n or a memory level")
    return Table(keys=synthetic_keys(dist, size, seed), name=f"{dist}_{size}")
