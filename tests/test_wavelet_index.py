"""The learned index over unsorted data (seed 002): end-to-end lookups through the mapping
and every peer agree with a brute-force scan of the unsorted table; bad inputs."""

import numpy as np
import pytest

from pipeline.workloads.wavelet.btree import StaticBPlusTree
from pipeline.workloads.wavelet.index import MAPPINGS, UnsortedIndex, fit_model


def brute_force(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Scan the unsorted table: the smallest key >= q, the first original position among equals."""
    out = np.full(queries.size, -1)
    for k, q in enumerate(queries):
        at_least = np.nonzero(keys >= q)[0]
        if at_least.size:
            smallest = keys[at_least].min()
            out[k] = at_least[keys[at_least] == smallest].min()
    return out


def table(n: int, duplicates: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    high = 40 if duplicates else 10**12
    keys = rng.integers(0, high, n).astype(np.uint64)
    queries = np.concatenate([keys[rng.integers(0, n, 150)], rng.integers(0, high + 10, 150).astype(np.uint64),
                              np.array([0, 2**64 - 1], dtype=np.uint64)])
    return keys, queries


@pytest.mark.parametrize("n", [1, 2, 9, 1500])
@pytest.mark.parametrize("duplicates", [False, True])
def test_lookups_agree_with_brute_force(n, duplicates):
    keys, queries = table(n, duplicates, seed=n)
    expected = brute_force(keys, queries)
    order = np.argsort(keys, kind="stable")
    for kind, params in [("none", {}), ("linear", {}), ("pgm", {"epsilon": 8})]:
        model = fit_model(kind, keys[order], **params)
        for mapping in MAPPINGS:
            index = UnsortedIndex.build(keys, mapping, model, order=order)
            np.testing.assert_array_equal(index.lookup(queries), expected, err_msg=f"{kind} {mapping}")
    for fanout, leaf_size in [(2, 1), (16, 16), (256, 64)]:
        btree = StaticBPlusTree.build(keys, fanout, leaf_size)
        np.testing.assert_array_equal(btree.lookup(queries), expected, err_msg=f"btree {fanout}/{leaf_size}")


@pytest.mark.parametrize("arity", [2, 4, 16, 256])
@pytest.mark.parametrize("rank,sample_rate,block_lines", [("full", 512, 0), ("sampled", 64, 0), ("sampled", 2048, 0),
                                                          ("interleaved", 256, 0), ("blocked", 0, 2), ("blocked", 0, 32)])
def test_every_tree_configuration_looks_up_exactly(arity, rank, sample_rate, block_lines):
    keys, queries = table(3000, duplicates=False, seed=arity)
    expected = brute_force(keys, queries)
    order = np.argsort(keys, kind="stable")
    model = fit_model("linear", keys[order])
    if rank == "blocked" and arity == 256 and block_lines < 16:
        return  # 256 counts do not fit: see test_wavelet_tree's bad inputs
    index = UnsortedIndex.build(keys, "wavelet", model, order=order, arity=arity, rank=rank,
                                sample_rate=sample_rate or 512, block_lines=block_lines or 2)
    found, probes = index.lookup_counted(queries)
    np.testing.assert_array_equal(found, expected)
    assert probes > 0
    for group in (2, 16):  # batched: same answers, same probes
        assert index.lookup_counted(queries, group=group)[1] == probes
        np.testing.assert_array_equal(index.lookup_counted(queries, group=group)[0], expected)
    for candidates in (2, 5):  # k-ary: same answers
        np.testing.assert_array_equal(index.lookup(queries, candidates=candidates), expected)


@pytest.mark.parametrize("n", [1, 2, 9, 1500])
@pytest.mark.parametrize("duplicates", [False, True])
def test_batched_and_kary_lookups_agree_with_brute_force(n, duplicates):
    """Every mapping and the B+-tree, batched (lockstep groups, a group larger than the
    table included) and k-ary: windows that miss the answer are widened exactly."""
    keys, queries = table(n, duplicates, seed=n + 1)
    expected = brute_force(keys, queries)
    order = np.argsort(keys, kind="stable")
    for kind, params in [("none", {}), ("linear", {}), ("pgm", {"epsilon": 2})]:
        model = fit_model(kind, keys[order], **params)
        for mapping in MAPPINGS:
            index = UnsortedIndex.build(keys, mapping, model, order=order, arity=4, rank="blocked", block_lines=1)
            for group in (3, 16, 4096):
                np.testing.assert_array_equal(index.lookup(queries, group=group), expected, err_msg=f"{mapping} {group}")
            for candidates in (2, 3, 7):
                np.testing.assert_array_equal(index.lookup(queries, candidates=candidates), expected)
    for fanout, leaf_size in [(2, 1), (16, 16), (256, 64)]:
        btree = StaticBPlusTree.build(keys, fanout, leaf_size)
        for group in (5, 32):
            np.testing.assert_array_equal(btree.lookup(queries, group=group), expected)


def test_kary_search_takes_fewer_rounds_more_probes():
    keys, queries = table(20000, duplicates=False)
    order = np.argsort(keys, kind="stable")
    index = UnsortedIndex.build(keys, "wavelet", fit_model("pgm", keys[order], epsilon=16), order=order)
    binary = index.lookup_counted(queries)[1]
    assert index.lookup_counted(queries, candidates=5)[1] > binary  # reads more keys, in 2 rounds not 5


def test_model_window_shrinks_probes():
    keys, queries = table(20000, duplicates=False)
    order = np.argsort(keys, kind="stable")
    plain = UnsortedIndex.build(keys, "wavelet", None, order=order)
    learned = UnsortedIndex.build(keys, "wavelet", fit_model("pgm", keys[order], epsilon=16), order=order)
    assert learned.lookup_counted(queries)[1] < plain.lookup_counted(queries)[1]


def test_mapping_sizes():
    keys, _ = table(1000, duplicates=False)
    assert UnsortedIndex.build(keys, "permutation").mapping_bits() == 32 * 1000
    assert UnsortedIndex.build(keys, "sorted_copy").mapping_bits() == 96 * 1000
    btree = StaticBPlusTree.build(keys, fanout=16, leaf_size=16)
    # 63 leaves -> 4 padded nodes of 16 separators (64 keys), then a root node of 16
    assert btree.size_bits() == 1000 * 96 + (64 + 16) * 64


@pytest.mark.parametrize(
    "keys,match",
    [
        (np.array([], dtype=np.uint64), "empty"),
        (np.array([3, -1, 2]), "negative"),
        (np.array([1.5, 2.0]), "uint64"),
        (np.array([2**70, 1], dtype=object), "uint64"),
        (np.zeros((2, 2), dtype=np.uint64), "1-D"),
    ],
)
def test_bad_keys(keys, match):
    with pytest.raises(ValueError, match=match):
        UnsortedIndex.build(keys)


def test_bad_mapping_and_queries():
    with pytest.raises(ValueError, match="mapping"):
        UnsortedIndex.build(np.arange(5), mapping="hash")
    index = UnsortedIndex.build(np.arange(5))
    with pytest.raises(ValueError, match="queries"):
        index.lookup(np.array([-3]))
    with pytest.raises(ValueError, match="empty"):
        StaticBPlusTree.build(np.array([], dtype=np.uint64))
    with pytest.raises(ValueError, match="group"):
        index.lookup(np.array([3]), group=0)
    with pytest.raises(ValueError, match="per-query"):
        index.lookup(np.array([3]), group=4, candidates=3)
    with pytest.raises(ValueError, match="group"):
        StaticBPlusTree.build(np.arange(5)).lookup(np.array([3]), group=0)


@pytest.mark.parametrize("arity", [2, 4, 16, 256])
@pytest.mark.parametrize("rank,block_lines", [("full", 0), ("interleaved", 0), ("blocked", 32)])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_truncated_tree_looks_up_exactly(arity, rank, block_lines, depth):
    """Lookups through a truncated tree (`depth` levels, then the low bits), per query,
    batched and k-ary, agree with a brute-force scan; duplicates included."""
    keys, queries = table(3000, duplicates=arity == 4, seed=arity + depth)
    expected = brute_force(keys, queries)
    order = np.argsort(keys, kind="stable")
    model = fit_model("pgm", keys[order], epsilon=8)
    index = UnsortedIndex.build(keys, "wavelet", model, order=order, arity=arity, rank=rank, sample_rate=256,
                                block_lines=block_lines or 2, depth=depth)
    assert index.tree.depth == depth
    for group, candidates in [(1, 1), (16, 1), (1, 5)]:
        np.testing.assert_array_equal(index.lookup(queries, group, candidates), expected,
                                      err_msg=f"group {group} candidates {candidates}")
