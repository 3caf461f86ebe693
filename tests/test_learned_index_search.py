"""Search routines (seed 001 §3.1) and table I/O against numpy.searchsorted and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.workloads.learned_index import data, search


def _tables():
    rng = np.random.default_rng(7)
    yield "duplicates", np.sort(rng.integers(0, 40, 2000)).astype(np.uint64)
    yield "all_equal", np.full(257, 9, dtype=np.uint64)
    yield "two", np.array([5, 5], dtype=np.uint64)
    yield "small", np.array([1, 3, 3, 7, 9], dtype=np.uint64)
    yield "max_key", np.array([0, 1, 2**63, 2**64 - 2, 2**64 - 1, 2**64 - 1], dtype=np.uint64)
    for dist in data.DISTRIBUTIONS:
        yield dist, data.synthetic_keys(dist, 4097, seed=1)


def _queries(keys, rng):
    top = int(keys[-1])
    present = keys[rng.integers(0, keys.size, 600)]
    absent = rng.integers(0, top, 600, dtype=np.uint64, endpoint=True)
    edges = np.array([0, keys[0], keys[-1], min(top + 1, 2**64 - 1)], dtype=np.uint64)
    return np.concatenate([present, absent, edges])


@pytest.mark.parametrize("routine,k", [("bbs", 3), ("bfs", 3), ("bfe", 3), ("kbbs", 3), ("kbbs", 6),
                                       ("kbbs", 20), ("kbfs", 3), ("kbfs", 7), ("kbfs", 20), ("ibs", 3),
                                       ("tip", 8), ("tip", 3)])
def test_whole_table_matches_numpy(routine, k):
    rng = np.random.default_rng(0)
    for name, keys in _tables():
        queries = _queries(keys, rng)
        expected = np.searchsorted(keys, queries, side="left")
        got = search.lower_bounds(keys, queries, routine, k)
        assert np.array_equal(got, expected), (name, routine, k)


@pytest.mark.parametrize("routine", sorted(search.WINDOWED))
def test_window_is_a_slice_search(routine):
    """search(keys, lo, hi, q) == lo + searchsorted(keys[lo:hi], q) for any window."""
    rng = np.random.default_rng(3)
    keys = np.sort(rng.integers(0, 500, 1000)).astype(np.uint64)
    fn = search.WINDOWED[routine]
    for _ in range(300):
        lo, hi = np.sort(rng.integers(0, keys.size + 1, 2))
        q = np.uint64(rng.integers(0, 520))
        expected = lo + np.searchsorted(keys[lo:hi], q, side="left")
        assert fn(keys, np.int64(lo), np.int64(hi), q, np.int64(5)) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=60),
       st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20))
def test_property_every_routine(raw_keys, raw_queries):
    keys = np.sort(np.array(raw_keys, dtype=np.uint64))
    queries = np.array(raw_queries + raw_keys[:5], dtype=np.uint64)
    expected = np.searchsorted(keys, queries, side="left")
    for routine in search.ROUTINES:
        assert np.array_equal(search.lower_bounds(keys, queries, routine, 4), expected), routine


def test_eytzinger_layout_small():
    keys = np.arange(10, 17, dtype=np.uint64)  # 7 keys: a complete tree
    eytzinger, rank = search.eytzinger_layout(keys)
    assert eytzinger[1:].tolist() == [13, 11, 15, 10, 12, 14, 16]
    assert rank[1:].tolist() == [3, 1, 5, 0, 2, 4, 6] and rank[0] == 7


# ---------------------------------------------------------------- data


def test_sosd_round_trip(tmp_path):
    for dtype in (np.uint32, np.uint64):
        keys = np.arange(0, 3000, 3, dtype=dtype)
        path = tmp_path / f"keys_{np.dtype(dtype).name}"
        data.write_sosd(path, keys)
        assert path.stat().st_size == 8 + keys.size * keys.itemsize
        table = data.load_keys(path)
        assert table.key_bytes == keys.itemsize and np.array_equal(table.keys, keys.astype(np.uint64))


def test_sosd_width_inferred_from_size(tmp_path):
    path = tmp_path / "plain.bin"
    data.write_sosd(path, np.arange(5, dtype=np.uint32))
    assert data.read_sosd(path).dtype == np.dtype("<u4")


@pytest.mark.parametrize("payload,message", [
    (np.array([3, 1, 2], dtype=np.uint64), "not sorted"),
    (np.array([1.0, np.nan, 3.0]), "NaN"),
    (np.array([1.0, 2.0]), "32- or 64-bit integers"),
    (np.array([1, 2], dtype=np.uint16), "wrong key width"),
    (np.array([], dtype=np.uint64), "at least 2 keys"),
    (np.array([7], dtype=np.uint64), "at least 2 keys"),
    (np.array([-1, 2], dtype=np.int64), "non-negative"),
])
def test_bad_npy_keys(tmp_path, payload, message):
    path = tmp_path / "bad.npy"
    np.save(path, payload)
    with pytest.raises(ValueError, match=message) as info:
        data.load_keys(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_sosd_width(tmp_path):
    path = tmp_path / "broken_uint64"
    with open(path, "wb") as f:
        np.array([4], dtype="<u8").tofile(f)
        np.arange(4, dtype="<u4").tofile(f)  # 4-byte keys under a uint64 name
    with pytest.raises(ValueError, match="wrong key width"):
        data.load_keys(path)


def test_missing_file():
    with pytest.raises(ValueError, match="no such file"):
        data.load_keys("/nonexistent/keys.npy")


def test_npy_signed_keys_accepted(tmp_path):
    path = tmp_path / "ok.npy"
    np.save(path, np.array([1, 1, 5], dtype=np.int32))
    table = data.load_keys(path)
    assert table.key_bytes == 4 and table.keys.dtype == np.uint64


def test_synthetic_tables_sorted_and_deterministic():
    for dist in data.DISTRIBUTIONS:
        keys = data.synthetic_keys(dist, 1000, seed=3)
        assert keys.dtype == np.uint64 and keys.size == 1000 and np.all(keys[1:] >= keys[:-1])
        assert np.array_equal(keys, data.synthetic_keys(dist, 1000, seed=3))
    with pytest.raises(ValueError, match="unknown dist"):
        data.synthetic_keys("zipf", 10)


def test_level_sizes_follow_the_seed():
    assert [data.level_size(level) for level in ("L1", "L2", "L3")] == [3_700, 31_500, 750_000]
    assert data.level_size("L4") == 200_000_000 and data.level_size("L4", 10**6) == 10**6


def test_downsample_passes_ks_and_picks_smallest_kl():
    keys = data.synthetic_keys("lognormal", 50_000)
    sample = data.downsample(keys, 2_000, trials=20, seed=1)
    assert sample.keys.size == 2_000 and np.all(np.diff(sample.keys.astype(np.float64)) >= 0)
    assert sample.ks_pvalue >= 0.05
    assert np.isin(sample.keys, keys).all()


def test_queries_from_table_and_absent():
    keys = data.synthetic_keys("uniform_sparse", 1000)
    present = data.make_queries(keys, 5000, seed=0)
    assert np.isin(present, keys).all()
    mixed = data.make_queries(keys, 5000, seed=0, absent_fraction=0.5)
    assert 2000 < np.count_nonzero(~np.isin(mixed, keys)) <= 2500
    assert mixed.min() >= keys[0] and mixed.max() <= keys[-1]
