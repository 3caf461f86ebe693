"""The m-ary wavelet-tree mapping (seed 002): access inverts the permutation exactly, the
levels and rank matrix match the slides' worked example, sizes match hand counts."""

import numpy as np
import pytest

from pipeline.workloads.wavelet.access import access_kernels_for
from pipeline.workloads.wavelet.layout import ARITIES, SUPERBLOCK, count_width, num_levels
from pipeline.workloads.wavelet.tree import WaveletMapping

# seed 002, "Proposed Solution" / "The Build Function" / "The Rank Matrix"
SLIDES_PERM = np.array([5, 12, 4, 0, 3, 11, 1, 9, 7, 10, 14, 8, 6, 13, 15, 2])
SLIDES_L0 = [1, 3, 1, 0, 0, 2, 0, 2, 1, 2, 3, 2, 1, 3, 3, 0]
SLIDES_L1 = [0, 3, 1, 2, 1, 0, 3, 2, 3, 1, 2, 0, 0, 2, 1, 3]
SLIDES_R0 = [0, 0, 1, 0, 1, 0, 2, 1, 2, 2, 1, 3, 3, 2, 3, 3]


def test_slides_example_levels_rank_and_access():
    tree = WaveletMapping.build(SLIDES_PERM, arity=4, rank="full")
    assert tree.levels == 2
    assert tree.level_digits(0).tolist() == SLIDES_L0
    assert tree.level_digits(1).tolist() == SLIDES_L1
    assert tree.rank_row(0).tolist() == SLIDES_R0
    assert tree.access(1) == 12  # "RTP: access(1) = 12"
    assert tree.access_batch(np.arange(16)).tolist() == SLIDES_PERM.tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 255, 257, 1000, 4097, 70_001])
@pytest.mark.parametrize("arity", ARITIES)
@pytest.mark.parametrize("rank,sample_rate", [("full", 512), ("sampled", 64), ("sampled", 256), ("sampled", 4096),
                                              ("interleaved", 64), ("interleaved", 1024)])
def test_access_inverts_permutation(n, arity, rank, sample_rate):
    perm = np.random.default_rng(n * 7 + arity).permutation(n)
    tree = WaveletMapping.build(perm, arity=arity, rank=rank, sample_rate=sample_rate)
    assert tree.levels == num_levels(n, arity)
    np.testing.assert_array_equal(tree.access_batch(np.arange(n)), perm)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 255, 257, 1000, 4097, 70_001])
@pytest.mark.parametrize("arity", ARITIES)
@pytest.mark.parametrize("block_lines", [1, 2, 4, 32])
def test_blocked_access_inverts_permutation(n, arity, block_lines):
    perm = np.random.default_rng(n * 11 + arity).permutation(n)
    try:
        tree = WaveletMapping.build(perm, arity=arity, rank="blocked", block_lines=block_lines)
    except ValueError as error:  # 256 counts need several lines
        assert arity == 256 and "no room for digits" in str(error)
        return
    assert tree.buf.ctypes.data % 64 == 0  # blocks are whole cache lines
    np.testing.assert_array_equal(tree.access_batch(np.arange(n)), perm)
    np.testing.assert_array_equal(tree.level_digits(tree.levels - 1),
                                  WaveletMapping.build(perm, arity=arity).level_digits(tree.levels - 1))


@pytest.mark.parametrize("arity,rank,options", [(2, "sampled", {"sample_rate": 64}), (4, "blocked", {"block_lines": 1}),
                                                (16, "interleaved", {"sample_rate": 256}), (16, "blocked", {"block_lines": 4}),
                                                (256, "full", {}), (256, "blocked", {"block_lines": 32})])
def test_timing_loops_compute_the_accesses(arity, rank, options):
    """The per-access and the batched (lockstep, prefetching) loops visit the same values."""
    n = 70_001
    perm = np.random.default_rng(3).permutation(n)
    tree = WaveletMapping.build(perm, arity=arity, rank=rank, **options)
    positions = np.random.default_rng(4).integers(0, n, 5000)
    per_access, batched = access_kernels_for(tree.rank_code, tree.bits)
    assert per_access(positions, *tree.kernel_args) == perm[positions].sum()
    for group in (1, 7, 16):
        assert batched(positions, np.empty(group, np.int64), *tree.kernel_args) == perm[positions].sum()


@pytest.mark.parametrize("arity", ARITIES)
@pytest.mark.parametrize("rank", ["sampled", "interleaved"])
def test_access_spans_superblocks(arity, rank):
    n = 2 * SUPERBLOCK + 123  # block counts are relative to 65536-position superblocks
    perm = np.random.default_rng(1).permutation(n)
    tree = WaveletMapping.build(perm, arity=arity, rank=rank, sample_rate=1024)
    positions = np.random.default_rng(2).integers(0, n, 5000)
    np.testing.assert_array_equal(tree.access_batch(positions), perm[positions])


def test_identity_and_reverse_permutations():
    for perm in (np.arange(1000), np.arange(1000)[::-1].copy()):
        for arity in ARITIES:
            for rank in ("sampled", "interleaved"):
                tree = WaveletMapping.build(perm, arity=arity, rank=rank, sample_rate=64)
                np.testing.assert_array_equal(tree.access_batch(np.arange(1000)), perm)


def test_sizes_match_hand_counts():
    # n=16, m=4, full: 2 levels x 16 digits x 2 bits = 32 bits -> one word each (128 bits);
    # rank row 0 holds ranks < 4 -> 2 bits, 32 per word -> one word (64 bits); no row 1.
    tree = WaveletMapping.build(SLIDES_PERM, arity=4, rank="full")
    assert tree.size_bits() == {"digits": 128, "rank": 64, "low": 0, "total": 192}
    assert tree.bits_per_element() == 12.0
    # n=1000, m=16, full: 3 levels (16^3 = 4096 >= 1000); 4 bits -> 16 per word -> 63 words/level.
    # rank rows: level 0 ranks < 256 -> 8 bits, 8 per word -> 125 words; level 1 < 16 -> 4 bits, 16 per word -> 63 words.
    perm = np.random.default_rng(0).permutation(1000)
    tree = WaveletMapping.build(perm, arity=16, rank="full")
    assert tree.size_bits() == {"digits": 3 * 63 * 64, "rank": (125 + 63) * 64, "low": 0,
                                "total": (3 * 63 + 125 + 63) * 64}
    # same, sampled every 256: 2 ranked levels x (ceil(1000/256)=4 blocks x 16 x 16 bits + 1 superblock x 16 x 32 bits)
    tree = WaveletMapping.build(perm, arity=16, rank="sampled", sample_rate=256)
    assert tree.size_bits()["rank"] == 2 * (4 * 16 * 16 + 1 * 16 * 32)
    # interleaved, every 256: levels 0-1 hold 4 blocks of (4 header words for 16 x 16-bit counts
    # + 256 x 4 bits = 16 digit words) = 80 words each; the last level is plain (63 words)
    tree = WaveletMapping.build(perm, arity=16, rank="interleaved", sample_rate=256)
    assert tree.size_bits() == {"digits": 64 * (2 * 4 * 16 + 63), "rank": 64 * 2 * 4 * 4 + 2 * 16 * 32, "low": 0,
                                "total": 64 * (2 * 4 * 16 + 63) + 64 * 2 * 4 * 4 + 2 * 16 * 32}
    assert tree.level_digits(1).tolist() == WaveletMapping.build(perm, arity=16).level_digits(1).tolist()
    # m=2 over 1000 values: 10 levels of 1 bit -> 16 words each
    tree = WaveletMapping.build(perm, arity=2, rank="sampled", sample_rate=512)
    assert tree.size_bits()["digits"] == 10 * 16 * 64
    assert tree.size_bits()["rank"] == 9 * (2 * 2 * 16 + 1 * 2 * 32)


def test_blocked_sizes_match_hand_counts():
    # n=1000, m=16: 3 levels; child sizes 256 and 16 -> 8-bit counts on both ranked levels:
    # 16 x 8 = 128 bits = 2 header words. 1 line = 8 words: 6 digit words = 96 digits per block,
    # ceil(1000/96) = 11 blocks x 8 words on levels 0-1; last level 128 digits per block, 8 blocks.
    perm = np.random.default_rng(0).permutation(1000)
    tree = WaveletMapping.build(perm, arity=16, rank="blocked", block_lines=1)
    assert tree.per_block.tolist() == [96, 96, 128]
    assert tree.size_bits() == {"rank": 2 * 11 * 2 * 64, "digits": (2 * 11 + 8) * 8 * 64 - 2 * 11 * 2 * 64, "low": 0,
                                "total": (2 * 11 + 8) * 8 * 64}
    # m=4 over 70,001 values: 9 levels; child 4^8 = 65536 .. 4^5 -> 16-bit counts (4 x 16 = one
    # word), 4^4 = 256 .. 4 -> 8 bits (half a word, rounded up to one): 7 words = 224 digits per line
    assert [count_width(4 ** k) for k in (8, 5, 4, 1)] == [16, 16, 8, 8]
    tree = WaveletMapping.build(np.random.default_rng(1).permutation(70_001), arity=4, rank="blocked", block_lines=1)
    assert tree.header.tolist() == [1] * 8 + [0]
    blocks = -(-70_001 // 224)
    assert tree.size_bits()["total"] == (8 * blocks + -(-70_001 // 256)) * 512
    assert tree.size_bits()["rank"] == 8 * blocks * 64


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"perm": np.array([0, 0, 1])}, "permutation"),
        ({"perm": np.array([0, 3, 1])}, "permutation"),
        ({"perm": np.array([], dtype=np.int64)}, "non-empty"),
        ({"perm": np.array([0.0, 1.0])}, "integers"),
        ({"perm": np.arange(4), "arity": 8}, "arity"),
        ({"perm": np.arange(4), "rank": "dense"}, "rank"),
        ({"perm": np.arange(4), "rank": "sampled", "sample_rate": 100}, "sample_rate"),
        ({"perm": np.arange(4), "rank": "blocked", "block_lines": 3}, "block_lines"),
        ({"perm": np.arange(70_000), "arity": 256, "rank": "blocked", "block_lines": 4}, "no room for digits"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WaveletMapping.build(**kwargs)


def test_access_out_of_range():
    tree = WaveletMapping.build(np.arange(10), arity=4)
    with pytest.raises(ValueError, match="outside"):
        tree.access(10)
    with pytest.raises(ValueError, match="positions"):
        tree.access_batch(np.array([-1]))


# --- the truncated tree: `depth` levels walked, then the low bits read in one go

TRUNCATED_LAYOUTS = [("full", {}), ("sampled", {"sample_rate": 64}), ("interleaved", {"sample_rate": 256}),
                     ("blocked", {"block_lines": 2}), ("blocked", {"block_lines": 32})]


def _depths(n: int, arity: int) -> list[int]:
    levels = num_levels(n, arity)
    return sorted({0, 1, 2, levels - 1, levels} & set(range(levels + 1)))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 15, 17, 255, 257, 1000, 4097, 70_001])
@pytest.mark.parametrize("arity", ARITIES)
@pytest.mark.parametrize("rank,options", TRUNCATED_LAYOUTS)
def test_truncated_access_inverts_permutation(n, arity, rank, options):
    """Every depth from 0 (packed permutation) to L (the slides' tree), n = 1, 2, m - 1, m + 1, ..."""
    perm = np.random.default_rng(n * 13 + arity).permutation(n)
    for depth in _depths(n, arity) + ([arity - 1, arity + 1] if arity + 1 <= n else []):
        if depth > num_levels(n, arity):
            continue
        try:
            tree = WaveletMapping.build(perm, arity=arity, rank=rank, depth=depth, **options)
        except ValueError as error:  # 256 counts need several lines
            assert arity == 256 and "no room for digits" in str(error)
            continue
        assert tree.depth == depth and tree.steps == min(depth + 1, tree.levels)
        np.testing.assert_array_equal(tree.access_batch(np.arange(n)), perm, err_msg=f"depth {depth}")


@pytest.mark.parametrize("arity,rank,options", [(2, "sampled", {"sample_rate": 64}), (4, "blocked", {"block_lines": 1}),
                                                (16, "interleaved", {"sample_rate": 256}),
                                                (16, "blocked", {"block_lines": 4}), (256, "full", {}),
                                                (256, "blocked", {"block_lines": 32})])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_truncated_batched_equals_per_query(arity, rank, options, depth):
    """The per-access, the batched (lockstep, prefetching) loops and access_batch agree."""
    n = 70_001
    perm = np.random.default_rng(5).permutation(n)
    tree = WaveletMapping.build(perm, arity=arity, rank=rank, depth=depth, **options)
    positions = np.random.default_rng(6).integers(0, n, 5000)
    per_access, batched = access_kernels_for(tree.rank_code, tree.bits)
    assert per_access(positions, *tree.kernel_args) == perm[positions].sum()
    for group in (1, 7, 16):
        assert batched(positions, np.empty(group, np.int64), *tree.kernel_args) == perm[positions].sum()
    np.testing.assert_array_equal(tree.access_batch(positions), perm[positions])


def test_truncated_levels_are_the_full_trees_top_levels():
    perm = np.random.default_rng(7).permutation(5000)
    full = WaveletMapping.build(perm, arity=4, rank="sampled", sample_rate=64)
    for depth in (1, 3):
        tree = WaveletMapping.build(perm, arity=4, rank="sampled", sample_rate=64, depth=depth)
        for level in range(depth):
            np.testing.assert_array_equal(tree.level_digits(level), full.level_digits(level))
        # the low bits, in the level-depth order, are the values below the walked digits
        low = tree.low_values()
        assert tree.low_bits == 2 * (full.levels - depth)
        assert low.max() < 1 << tree.low_bits
        with pytest.raises(ValueError, match="levels 0"):
            tree.level_digits(depth)
    with pytest.raises(ValueError, match="no low bits"):
        full.low_values()


def test_depth_zero_is_a_packed_permutation():
    perm = np.random.default_rng(8).permutation(1000)
    for arity in ARITIES:
        tree = WaveletMapping.build(perm, arity=arity, depth=0)
        assert tree.low_bits == 10  # ceil(log2 1000)
        np.testing.assert_array_equal(tree.low_values(), perm)
        # 1000 x 10 bits = 10000 bits -> 157 words, + 1 pad word; no digits, no rank
        assert tree.size_bits() == {"digits": 0, "rank": 0, "low": 158 * 64, "total": 158 * 64}
    tree = WaveletMapping.build(np.array([0]), arity=4, depth=0)
    assert tree.low_bits == 1 and tree.access(0) == 0


def test_truncated_sizes_match_hand_counts():
    perm = np.random.default_rng(0).permutation(1000)
    # m=16, 3 levels, depth 1: level 0's digits (63 words), its full rank row (ranks < 256: 8 bits,
    # 8 per word -> 125 words), low bits 4 x 2 = 8 per element: 8000 bits = 125 words + 1 pad
    tree = WaveletMapping.build(perm, arity=16, rank="full", depth=1)
    assert tree.low_bits == 8
    assert tree.size_bits() == {"digits": 63 * 64, "rank": 125 * 64, "low": 126 * 64, "total": (63 + 125 + 126) * 64}
    # depth 2 = L - 1: both rank rows (as the full tree), the last level as 4-bit low entries:
    # 4000 bits = 63 words (62.5 rounded up) + 1 pad
    tree = WaveletMapping.build(perm, arity=16, rank="full", depth=2)
    assert tree.size_bits() == {"digits": 2 * 63 * 64, "rank": (125 + 63) * 64, "low": 64 * 64,
                                "total": (2 * 63 + 125 + 63 + 64) * 64}
    # sampled every 256, depth 1: one ranked level: 4 blocks x 16 x 16 bits + 1 superblock x 16 x 32 bits
    tree = WaveletMapping.build(perm, arity=16, rank="sampled", sample_rate=256, depth=1)
    assert tree.size_bits() == {"digits": 63 * 64, "rank": 4 * 16 * 16 + 16 * 32, "low": 126 * 64,
                                "total": 63 * 64 + 4 * 16 * 16 + 16 * 32 + 126 * 64}
    # blocked, 1 line, depth 1: level 0 has 8-bit counts (child 256) = 2 header words, 96 digits per
    # block, 11 blocks of 8 words; then the 8-bit low entries (126 words)
    tree = WaveletMapping.build(perm, arity=16, rank="blocked", block_lines=1, depth=1)
    assert tree.size_bits() == {"digits": 11 * 8 * 64 - 11 * 2 * 64, "rank": 11 * 2 * 64, "low": 126 * 64,
                                "total": 11 * 8 * 64 + 126 * 64}
    # m=2 over 1000 values: 10 levels; depth 2 leaves 8 low bits; 2 ranked levels sampled every 512:
    # 2 x (2 blocks x 2 x 16 + 1 superblock x 2 x 32)
    tree = WaveletMapping.build(perm, arity=2, rank="sampled", sample_rate=512, depth=2)
    assert tree.size_bits() == {"digits": 2 * 16 * 64, "rank": 2 * (2 * 2 * 16 + 2 * 32), "low": 126 * 64,
                                "total": 2 * 16 * 64 + 2 * (2 * 2 * 16 + 2 * 32) + 126 * 64}


@pytest.mark.parametrize("depth", [-1, 4, 2.0, "1", True])
def test_bad_depth(depth):
    # 1000 values, m=16: 3 levels, so depth lies in [0, 3]
    with pytest.raises(ValueError, match=rf"^depth must be an integer in \[0, 3\].*got {depth!r}$"):
        WaveletMapping.build(np.arange(1000), arity=16, depth=depth)
