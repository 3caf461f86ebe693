"""The m-ary wavelet tree that maps sorted rank -> original index (seed 002, "Wavelet Tree"
to "Optimized 256-Way Tree").

The mapped array `perm[i]` = original position of the i-th smallest key is a permutation
of 0..n-1. The tree stores it as L = ceil(log_m n) levels of m-ary digits (seed 002,
"The Build Function"): level 0 holds the top digit of every value in sorted-rank order;
each later level is the previous one stably repartitioned into m buckets per node (one
bucket per digit) and holds the next digit. Because the values are exactly 0..n-1, the
node holding the values with prefix P starts at P * m^(L-l) on level l ("Every bucket has
equal elements"), so node boundaries are arithmetic and never stored.

`access(i)` walks down (seed 002, "The Access Function"): at level l read the digit c at
position p, then jump to p' = node_start + c * m^(L-l-1) + rank_c(p) with rank_c counted
inside the node. On the last level each node holds distinct digits, so p' = node_start + c
is the value itself ("Return the left-to-right ordering") and needs no rank ("Rank matrix
has 1 row less").

Storage, all word-aligned in uint64 words (seed 002, "Optimize Further?": bit packing,
data types, rank optimisation, word alignment):
- digits: b = log2(m) bits per symbol (1, 2, 4 or 8), 64/b symbols per word, never straddling;
- rank = "full": the slides' rank matrix R_l[p] = rank of the symbol at p within its node,
  bit-packed with the fewest bits that hold the largest such rank, floor(64/w) per word;
- rank = "sampled": per level, uint32 counts of every symbol before each superblock of
  65536 positions and uint16 counts since the superblock before each block of
  `sample_rate` positions; the rest is a popcount over the packed digits of the block
  (the slides' "Can we store less for it?"; the exact sampled layout is not in the
  extracted text, this is the classic two-tier one);
- rank = "blocked": the cache-line layout. Every level is cut into aligned blocks of
  `block_lines` 64-byte lines; a block starts with the counts of all m symbols before it
  and packs as many digits as fit behind them (positions per block need not be a power of
  two), so one rank is one block read plus a popcount of its words, with no separate
  superblock array (as in cache-efficient rank designs that interleave counts and bits).
  Counts are stored modulo 2^w with w in {8, 16, 32} the smallest width >= log2(child
  node size): the rank inside a node is < the child size (a power of two that divides
  2^w) and equals the global count modulo it, since every earlier node holds exactly
  child-size copies of each symbol. Deep levels therefore need only 8-bit counts.
Truncated tree (`depth` k < L; our choice, configurable, not in the slides): `access`
walks only the top k levels; on reaching position p of the level-k order it knows the
top k digits of the value, which fix the node start (p >> R) << R, and reads the
remaining R = b (L - k) low bits from a plain bit-packed array kept in the level-k order
(one unaligned 64-bit load). Only the k walked levels need ranks; the symbol bits are
the same. k = L (the default) is the slides' tree, unchanged; k = 0 is a bit-packed
permutation array of R = ceil(log2 n) bits per element.
Within-node rank from a global one: every node before the current one on level l is
full and holds m^(L-l-1) copies of each digit, so rank_in_node = rank_global - start / m.

The code is in four modules: `layout` (the constants and `meta` slots above), `build`
(the compiled partitions and the packing), `access` (the compiled walk and its timing
loops) and this one, the `WaveletMapping` class that checks its input and ties them.

Written by hand: no maintained Python library offers an m-ary wavelet tree with numba
access (pysdsl / sdsl-lite are C++ and not callable from numba).
"""


from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.workloads.wavelet.access import access_many
from pipeline.workloads.wavelet.build import (aligned_words, as_words, build_blocked, build_levels, depth_meta,
                                              low_part, reciprocals)
from pipeline.workloads.wavelet.layout import (ARITIES, LINE_WORDS, MAX_N, META_STEPS, RANK_BLOCKED, RANK_CODE,
                                               RANK_KINDS, SUPERBLOCK, check_depth, count_width, num_levels)


@dataclass(frozen=True)
class WaveletMapping:
    """The built tree. Build with `WaveletMapping.build(perm, arity, rank, sample_rate, depth=...)`."""

    n: int
    arity: int
    rank: str
    sample_rate: int
    levels: int
    digit_words: np.ndarray  # uint64, the walked levels back to back
    digit_off: np.ndarray  # int64 [levels + 1]: first word of each level (levels >= depth: empty)
    rank_words: np.ndarray  # uint64, packed full rank matrix (rank="full")
    rank_off: np.ndarray  # int64 [levels]: first word of each level's rank row
    rank_width: np.ndarray  # int64 [levels]: bits per rank entry (0 on the last level)
    block_counts: np.ndarray  # uint16 [ranked levels * n_blocks * m] (rank="sampled")
    super_counts: np.ndarray  # uint32 [ranked levels * n_super * m] (rank="sampled")
    buf: np.ndarray  # uint64: the arrays above and low_words are views into it (what access reads)
    meta: np.ndarray  # int64: scalars and offsets into buf (see META_*)
    stride: np.ndarray  # int64 [levels]: words per block of sample_rate digits (+ header)
    header: np.ndarray  # int64 [levels]: count words ahead of each block (interleaved, blocked)
    per_block: np.ndarray  # int64 [levels]: positions per block (sample_rate unless blocked)
    block_lines: int = 0  # rank="blocked": 64-byte lines per block
    depth: int = 0  # levels walked with ranks; == levels for the slides' full tree
    low_bits: int = 0  # R: low bits per element read in one go after `depth` levels (0 if depth == levels)
    low_words: np.ndarray | None = None  # uint64, R-bit entries in the level-depth order, + 1 pad word

    @property
    def bits(self) -> int:
        return self.arity.bit_length() - 1

    @property
    def n_blocks(self) -> int:
        return (self.n - 1) // self.sample_rate + 1

    @property
    def n_super(self) -> int:
        return (self.n - 1) // SUPERBLOCK + 1

    @property
    def ranked_levels(self) -> int:
        """Levels with a rank structure: the walked ones, but never the last level."""
        return min(self.depth, self.levels - 1)

    @property
    def steps(self) -> int:
        """Dependent steps of one access: the walked levels, plus the low read if truncated."""
        return int(self.meta[META_STEPS])

    @staticmethod
    def build(perm: np.ndarray, arity: int = 4, rank: str = "full",
              sample_rate: int = 512, block_lines: int = 2, depth: int | None = None) -> WaveletMapping:
        """perm[i] = original index of the i-th smallest key; must be a permutation of 0..n-1.
        `sample_rate` sets the sampled / interleaved blocks, `block_lines` the blocked ones;
        `depth` the levels walked before the low bits are read in one go (None: all of them,
        the slides' tree; 0: a bit-packed permutation array; see the module docstring)."""
        if arity not in ARITIES:
            raise ValueError(f"arity must be one of {ARITIES}, got {arity}")
        if rank not in RANK_KINDS:
            raise ValueError(f"rank must be one of {RANK_KINDS}, got {rank!r}")
        if rank == "blocked" and (block_lines < 1 or block_lines > 1024 or block_lines & (block_lines - 1)):
            raise ValueError(f"block_lines must be a power of two in [1, 1024], got {block_lines}")
        if sample_rate < 64 or sample_rate > SUPERBLOCK or sample_rate & (sample_rate - 1):
            raise ValueError(f"sample_rate must be a power of two in [64, {SUPERBLOCK}], got {sample_rate}")
        perm = np.asarray(perm)
        if perm.ndim != 1 or perm.size == 0:
            raise ValueError(f"perm must be a non-empty 1-D array, got shape {perm.shape}")
        if perm.size > MAX_N:
            raise ValueError(f"perm has {perm.size} entries; at most {MAX_N} fit 32-bit positions")
        if not np.issubdtype(perm.dtype, np.integer):
            raise ValueError(f"perm must hold integers, got dtype {perm.dtype}")
        n = int(perm.size)
        bits = arity.bit_length() - 1
        levels = num_levels(n, arity)
        depth = check_depth(depth, n, arity)
        perm = perm.astype(np.int64, copy=False)
        if perm.min() < 0 or perm.max() >= n or np.bincount(perm, minlength=n).max() != 1:
            raise ValueError("perm is not a permutation of 0..n-1")
        if rank == "blocked":
            return _build_blocked_mapping(perm, arity, levels, block_lines, depth)
        ranked = min(depth, levels - 1)
        sample_log2 = sample_rate.bit_length() - 1
        n_blocks = (n - 1) // sample_rate + 1
        n_super = (n - 1) // SUPERBLOCK + 1
        words_per_level = (n * bits + 63) // 64
        stride = np.full(levels, sample_rate * bits // 64, dtype=np.int64)
        header = np.zeros(levels, dtype=np.int64)
        level_words = np.full(levels, words_per_level, dtype=np.int64)
        level_words[depth:] = 0  # truncated: the levels below `depth` are in the low bits
        if rank == "interleaved":  # m 16-bit counts ahead of every block of a ranked level
            header[:ranked] = -(-arity * 16 // 64)
            stride[:ranked] += header[:ranked]
            level_words[:ranked] = n_blocks * stride[:ranked]
        digit_off = np.concatenate([[0], np.cumsum(level_words)]).astype(np.int64)
        digit_words = np.zeros(int(digit_off[-1]), dtype=np.uint64)
        rank_width = np.zeros(levels, dtype=np.int64)
        rank_off = np.zeros(levels + 1, dtype=np.int64)
        if rank == "full":
            for level in range(ranked):
                largest = min(arity ** (levels - 1 - level), n) - 1  # child node size - 1
                rank_width[level] = max(1, int(largest).bit_length())
                per_word = 64 // int(rank_width[level])
                rank_off[level + 1] = rank_off[level] + (n + per_word - 1) // per_word
            rank_off[ranked + 1:] = rank_off[ranked]
            block_counts = np.zeros(0, dtype=np.uint16)
            super_counts = np.zeros(0, dtype=np.uint32)
        else:
            separate = ranked * n_blocks * arity if rank == "sampled" else 0
            block_counts = np.zeros(separate, dtype=np.uint16)
            super_counts = np.zeros(ranked * n_super * arity, dtype=np.uint32)
        rank_words = np.zeros(int(rank_off[levels]), dtype=np.uint64)
        order = build_levels(perm, levels, depth, bits, RANK_CODE[rank], sample_log2, digit_words, digit_off,
                              rank_words, rank_off, rank_width, block_counts, super_counts, stride, header)
        low_bits, low_words = low_part(order, n, levels, bits, depth)
        # one buffer: digits | rank words | block counts (4 per word) | super counts (2 per word) | low bits
        parts = [digit_words, rank_words, as_words(block_counts, 4), as_words(super_counts, 2), low_words]
        bases = np.cumsum([0] + [part.size for part in parts])
        buf = aligned_words(int(bases[-1]))
        np.concatenate(parts, out=buf)
        per_block = np.full(levels, sample_rate, dtype=np.int64)
        meta = np.concatenate([
            [levels, bits, RANK_CODE[rank], sample_log2, n_blocks, n_super, bases[2], bases[3]],
            depth_meta(levels, depth, bases[4], low_bits), digit_off, rank_off + bases[1], rank_width, stride,
            header, per_block, reciprocals(per_block)]).astype(np.int64)
        views = [buf[bases[k]:bases[k + 1]] for k in range(5)]
        return WaveletMapping(n, arity, rank, sample_rate, levels, views[0], digit_off, views[1], rank_off,
                              rank_width, views[2].view(np.uint16)[: block_counts.size],
                              views[3].view(np.uint32)[: super_counts.size], buf, meta, stride, header, per_block,
                              depth=depth, low_bits=low_bits, low_words=views[4])

    # --- what the compiled kernels take (see `access_one`)
    @property
    def kernel_args(self) -> tuple:
        return (self.buf, self.meta)

    @property
    def rank_code(self) -> int:
        return RANK_CODE[self.rank]

    def access(self, i: int) -> int:
        """Original index of the i-th smallest key."""
        if not 0 <= i < self.n:
            raise ValueError(f"position {i} outside [0, {self.n})")
        return int(self.access_batch(np.array([i], dtype=np.int64))[0])

    def access_batch(self, positions: np.ndarray) -> np.ndarray:
        """Compiled batched access: original indices of the given sorted positions."""
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.n):
            raise ValueError(f"positions must lie in [0, {self.n})")
        out = np.empty(positions.size, dtype=np.int64)
        access_many(positions, out, *self.kernel_args)
        return out

    # --- sizes (hand-countable: see tests/test_wavelet_tree.py)
    def size_bits(self) -> dict[str, int]:
        """Bits of each part; metadata (a few scalars and per-level offsets) not counted.
        Blocked: every block header is rank, the rest of the blocks (padding too) digits.
        `low`: the truncated tree's bit-packed low bits, whole words with the pad word."""
        low = 64 * int(self.low_words.size)
        if self.rank == "blocked":
            n_blocks = -(-self.n // self.per_block)
            rank = 64 * int((n_blocks * self.header).sum())
            digits = 64 * int(self.digit_off[-1]) - rank
            return {"digits": digits, "rank": rank, "low": low, "total": digits + rank + low}
        headers = 64 * self.n_blocks * int(self.header.sum())  # interleaved block counts
        digits = 64 * int(self.digit_words.size) - headers
        rank = (64 * int(self.rank_words.size) + headers + 16 * int(self.block_counts.size)
                + 32 * int(self.super_counts.size))
        return {"digits": digits, "rank": rank, "low": low, "total": digits + rank + low}

    def bits_per_element(self) -> float:
        return self.size_bits()["total"] / self.n

    # --- unpacked views, for tests and the docs
    def level_digits(self, level: int) -> np.ndarray:
        if not 0 <= level < self.depth:
            raise ValueError(f"level {level}: digits are stored for levels 0..{self.depth - 1} only")
        bits = self.bits
        per_word = 64 // bits
        p = np.arange(self.n)
        per = int(self.per_block[level])
        word = self.digit_off[level] + (p // per) * self.stride[level] + self.header[level] + (p % per) // per_word
        return ((self.digit_words[word] >> ((p % per_word) * bits).astype(np.uint64)) & np.uint64(self.arity - 1)).astype(np.int64)

    def low_values(self) -> np.ndarray:
        """The truncated tree's low bits, unpacked, in the level-depth order."""
        if self.depth == self.levels:
            raise ValueError("a full-depth tree stores no low bits")
        bit = np.arange(self.n, dtype=np.uint64) * np.uint64(self.low_bits)
        pairs = self.low_words.view(np.uint32)  # little-endian halves: read 64 bits at any 32-bit boundary
        word = (bit >> np.uint64(5)).astype(np.int64)
        joined = pairs[word].astype(np.uint64) | (pairs[word + 1].astype(np.uint64) << np.uint64(32))
        return ((joined >> (bit & np.uint64(31))) & np.uint64((1 << self.low_bits) - 1)).astype(np.int64)

    def rank_row(self, level: int) -> np.ndarray:
        """The slides' rank matrix row R_l (rank of each symbol inside its node)."""
        if self.rank != "full" or level >= self.ranked_levels:
            raise ValueError("rank rows exist only for rank='full' and the ranked levels (walked, not the last)")
        width = int(self.rank_width[level])
        per_word = 64 // width
        words = self.rank_words[self.rank_off[level]:self.rank_off[level + 1]]
        p = np.arange(self.n)
        return ((words[p // per_word] >> ((p % per_word) * width).astype(np.uint64)) & np.uint64((1 << width) - 1)).astype(np.int64)


def _build_blocked_mapping(perm: np.ndarray, arity: int, levels: int, block_lines: int, depth: int) -> WaveletMapping:
    """rank="blocked": aligned blocks of `block_lines` cache lines, each with the modular
    counts of all symbols before it, then as many digits as fit; then the low bits."""
    n = int(perm.size)
    bits = arity.bit_length() - 1
    block_words = LINE_WORDS * block_lines
    header = np.zeros(levels, dtype=np.int64)
    width = np.zeros(levels, dtype=np.int64)
    for level in range(min(depth, levels - 1)):
        width[level] = count_width(arity ** (levels - 1 - level))
        header[level] = -(-arity * int(width[level]) // 64)
        if header[level] >= block_words:
            raise ValueError(f"block_lines={block_lines}: the counts of {arity} symbols at level {level} "
                             f"({arity} x {width[level]} bits) leave no room for digits; use more lines per block")
    per_block = (block_words - header) * (64 // bits)
    n_blocks = -(-n // per_block)
    n_blocks[depth:] = 0  # truncated: no blocks below `depth`
    digit_off = np.concatenate([[0], np.cumsum(n_blocks * block_words)]).astype(np.int64)
    tree_words = np.zeros(int(digit_off[-1]), dtype=np.uint64)
    stride = np.full(levels, block_words, dtype=np.int64)
    order = build_blocked(perm, levels, depth, bits, tree_words, digit_off, block_words, header, per_block, width)
    low_bits, low_words = low_part(order, n, levels, bits, depth)
    buf = aligned_words(tree_words.size + low_words.size)
    np.concatenate([tree_words, low_words], out=buf)
    rank_off = np.zeros(levels + 1, dtype=np.int64)
    meta = np.concatenate([[levels, bits, RANK_BLOCKED, 0, 0, 0, 0, 0],
                           depth_meta(levels, depth, tree_words.size, low_bits), digit_off, rank_off, width,
                           stride, header, per_block, reciprocals(per_block)]).astype(np.int64)
    empty = np.zeros(0, dtype=np.uint64)
    return WaveletMapping(n, arity, "blocked", 0, levels, buf[: tree_words.size], digit_off, empty, rank_off, width,
                          np.zeros(0, np.uint16), np.zeros(0, np.uint32), buf, meta, stride, header, per_block,
                          block_lines, depth=depth, low_bits=low_bits, low_words=buf[tree_words.size:])


def entropy_bits_per_element(n: int) -> float:
    """log2(n!) / n: the fewest bits per element any encoding of a random permutation needs."""
    return math.lgamma(n + 1) / math.log(2) / n if n > 0 else 0.0
