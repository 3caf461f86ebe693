"""The compiled access of a wavelet tree (seed 002, "The Access Function"): one level
step for every rank layout, its prefetch, the truncated tree's low read, and the timing
loops (per access, and batched in lockstep).

Apart from `build` and the class in `tree`: this is the hot path, compiled with
`_nrt=False` throughout, and `index.py` inlines its `step_for` kernels into the lookups.
"""

from __future__ import annotations

import numba
import numpy as np

from pipeline.workloads.intrinsics import load_unaligned_u64, popcount64, prefetch
from pipeline.workloads.wavelet.layout import (META_BITS, META_BLOCK_BASE, META_DEPTH, META_DIGIT_OFF, META_LEVELS,
                                               META_LOW_BASE, META_LOW_BITS, META_N_BLOCKS, META_N_SUPER,
                                               META_RANK_KIND, META_SAMPLE_LOG2, META_STEPS, META_SUPER_BASE)

# Every hot-path function is compiled with `_nrt=False`: with numba's reference counting
# on, each call that passes an array increments and decrements its refcount atomically,
# which cost ~25 ns per access (7 ns without, for a one-level tree in cache).


@numba.njit(cache=True, _nrt=False, inline="always")
def _symbols_per_word_log2(bits):
    """log2(64 / bits) for bits in {1, 2, 4, 8}."""
    if bits == 1:
        return 6
    if bits == 2:
        return 5
    if bits == 4:
        return 4
    return 3


@numba.njit(cache=True, _nrt=False, inline="always")
def _meta_offsets(levels):
    """Where meta's per-level arrays start (layout.py): rank offsets, widths, strides,
    header words, symbols per block (then their reciprocals)."""
    rank_off_at = META_DIGIT_OFF + levels + 1
    width_at = rank_off_at + levels + 1
    stride_at = width_at + levels
    header_at = stride_at + levels
    return rank_off_at, width_at, stride_at, header_at, header_at + levels


@numba.njit(cache=True, _nrt=False, inline="always")
def _digit(digit_words, word_base, p, bits):
    """The digit at p of a level whose digits start at word `word_base` (block-relative
    for the interleaved layout: the caller passes the block's first digit word)."""
    shift_words = _symbols_per_word_log2(bits)
    w = digit_words[word_base + (p >> shift_words)]
    return np.int64((w >> np.uint64((p & ((1 << shift_words) - 1)) * bits)) & np.uint64((1 << bits) - 1))


@numba.njit(cache=True, _nrt=False, inline="always")
def _zero_fields(y, bits):
    """Low bit of each b-bit field of y set iff the field is non-zero."""
    if bits == 1:
        return y
    t = y | (y >> np.uint64(1))
    if bits == 2:
        return t & np.uint64(0x5555555555555555)
    t = t | (t >> np.uint64(2))
    if bits == 4:
        return t & np.uint64(0x1111111111111111)
    t = t | (t >> np.uint64(4))
    return t & np.uint64(0x0101010101010101)


@numba.njit(cache=True, _nrt=False, inline="always")
def _count_in_words(digit_words, first_word, count, c, bits):
    """Occurrences of symbol c among the `count` packed symbols from `first_word` on."""
    sym_per_word = 64 // bits
    lows = np.uint64(0xFFFFFFFFFFFFFFFF) // np.uint64((1 << bits) - 1)
    pattern = lows * np.uint64(c)
    total = 0
    w = first_word
    remaining = count
    while remaining >= sym_per_word:
        t = _zero_fields(digit_words[w] ^ pattern, bits)
        total += sym_per_word - np.int64(popcount64(t))
        w += 1
        remaining -= sym_per_word
    if remaining > 0:
        t = _zero_fields(digit_words[w] ^ pattern, bits)
        mask = (np.uint64(1) << np.uint64(remaining * bits)) - np.uint64(1)
        total += remaining - np.int64(popcount64(t & mask))
    return total


@numba.njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _step(p, level, buf, meta, kind, bits):
    """One level of `access` (seed 002, "The Access Function"): the position on level + 1
    of the entry at position p of `level`; on the last level, the original index itself.
    `kind` and `bits` are meta's; `step_for` compiles them in as constants. Step `depth`
    of a truncated tree is the read of the low bits (`_low_value`)."""
    if level == meta[META_DEPTH]:
        return _low_value(p, buf, meta)
    levels = meta[META_LEVELS]
    rank_off_at, width_at, stride_at, header_at, per_block_at = _meta_offsets(levels)
    node_shift = bits * (levels - level)  # log2 of this level's node size
    node_start = (p >> node_shift) << node_shift
    child_shift = node_shift - bits
    if kind == 3:  # blocked: one block holds the counts and the digits
        per = meta[per_block_at + level]
        blk = _block_of(p, per, meta[per_block_at + levels + level])
        offset = p - blk * per
        first = meta[META_DIGIT_OFF + level] + blk * meta[stride_at + level]
        digits_at = first + meta[header_at + level]
        c = _digit(buf, digits_at, offset, bits)
        if level == levels - 1:
            return node_start + c
        width = meta[width_at + level]
        word = buf[first + ((c * width) >> 6)]
        count = np.int64((word >> np.uint64((c * width) & 63)) & np.uint64((np.int64(1) << width) - 1))
        r = (count + _count_in_words(buf, digits_at, offset, c, bits)) & ((np.int64(1) << child_shift) - 1)
        return node_start + (c << child_shift) + r
    sample_log2 = meta[META_SAMPLE_LOG2]
    in_block = (np.int64(1) << sample_log2) - 1
    m = np.int64(1) << bits
    blk = p >> sample_log2
    block_word = meta[META_DIGIT_OFF + level] + blk * meta[stride_at + level]  # header, then digits
    digits_at = block_word + meta[header_at + level]
    c = _digit(buf, digits_at, p & in_block, bits)
    if level == levels - 1:
        return node_start + c  # last level: distinct digits per node, no rank
    if kind == 0:
        width = meta[width_at + level]
        per_word = 64 // width
        w = buf[meta[rank_off_at + level] + p // per_word]
        r = np.int64((w >> np.uint64((p % per_word) * width)) & np.uint64((1 << width) - 1))
    else:
        sup = (level * meta[META_N_SUPER] + (p >> 16)) * m + c  # uint32 entries
        sw = buf[meta[META_SUPER_BASE] + (sup >> 1)]
        if kind == 1:
            blo = (level * meta[META_N_BLOCKS] + blk) * m + c  # uint16 entries
            bw = buf[meta[META_BLOCK_BASE] + (blo >> 2)]
        else:
            blo = c
            bw = buf[block_word + (c >> 2)]
        r = (np.int64((sw >> np.uint64((sup & 1) * 32)) & np.uint64(0xFFFFFFFF))
             + np.int64((bw >> np.uint64((blo & 3) * 16)) & np.uint64(0xFFFF)))
        r += _count_in_words(buf, digits_at, p & in_block, c, bits)
        r -= node_start >> bits  # earlier full nodes hold start/m copies of c
    return node_start + (c << child_shift) + r


@numba.njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _prefetch_step(p, level, buf, meta, kind, bits):
    """Prefetch what `_step(p, level)` will read: every line from the block's counts (or
    the sampled block's first digit) to the word holding p's digit (the popcount scans them
    all), and the full rank matrix's word; for the low read, the word(s) of its bits."""
    if level == meta[META_DEPTH]:
        width = meta[META_LOW_BITS]
        bit = p * width
        prefetch(buf, meta[META_LOW_BASE] + (bit >> 6))
        prefetch(buf, meta[META_LOW_BASE] + ((bit + width - 1) >> 6))
        return
    levels = meta[META_LEVELS]
    rank_off_at, width_at, stride_at, header_at, per_block_at = _meta_offsets(levels)
    per_word_log2 = _symbols_per_word_log2(bits)
    if kind == 3:
        per = meta[per_block_at + level]
        blk = _block_of(p, per, meta[per_block_at + levels + level])
        first = meta[META_DIGIT_OFF + level] + blk * meta[stride_at + level]
        last = first + meta[header_at + level] + ((p - blk * per) >> per_word_log2)
    else:
        sample_log2 = meta[META_SAMPLE_LOG2]
        first = meta[META_DIGIT_OFF + level] + (p >> sample_log2) * meta[stride_at + level]
        last = first + meta[header_at + level] + ((p & ((np.int64(1) << sample_log2) - 1)) >> per_word_log2)
        if kind == 0:  # no scan: the digit and the rank matrix's entry
            first = last
            if level < levels - 1:
                prefetch(buf, meta[rank_off_at + level] + p // (64 // meta[width_at + level]))
    line = first & ~np.int64(7)  # 8 words per line; buf starts on a line boundary
    while line <= last:
        prefetch(buf, line)
        line += 8


@numba.njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _low_value(p, buf, meta):
    """The last step of a truncated tree: p is a position in the level-depth order, whose
    node (values with the same top digits) starts at (p >> R) << R; the value is that start
    plus the R low bits stored at p. Departs from seed 002's "The Access Function", which
    walks every level down to "Return the left-to-right ordering": ours, to spend the rank
    structures on the top levels only; the slides' own "Wavelet Tree Optimizations" split
    a 32-bit value into a 16-bit bucket and a 16-bit value within it in the same spirit."""
    width = meta[META_LOW_BITS]
    bit = p * width
    word = load_unaligned_u64(buf, (meta[META_LOW_BASE] << 3) + (bit >> 3))
    low = np.int64((word >> np.uint64(bit & 7)) & np.uint64((np.int64(1) << width) - 1))
    return ((p >> width) << width) + low


@numba.njit(cache=True, _nrt=False, inline="always")
def _block_of(p, per, reciprocal):
    """p // per without a division: reciprocal = ceil(2^32 / per) overshoots the quotient
    by less than one for p < 2^32, so one correction makes it exact (a 64-bit divide costs
    up to ~45 cycles on every level of every access)."""
    blk = (p * reciprocal) >> 32
    if blk * per > p:
        blk -= 1
    return blk


@numba.njit(cache=True, _nrt=False)
def level_step(p, level, buf, meta):
    """One level of `access` for any tree (kind and arity read from meta)."""
    return _step(p, level, buf, meta, meta[META_RANK_KIND], meta[META_BITS])


@numba.njit(cache=True, _nrt=False)
def prefetch_level(p, level, buf, meta):
    """`_prefetch_step` for any tree."""
    _prefetch_step(p, level, buf, meta, meta[META_RANK_KIND], meta[META_BITS])


_SPECIALISED: dict = {}


def step_for(rank_kind: int, bits: int) -> tuple:
    """(step, prefetch) compiled for one rank kind and digit width, with both as constants:
    the branches on the kind and the field masks of the popcount fold away. Kernels that
    use them must refer to them as globals or closure variables (see
    `access_kernels_for`, `index.kernels_for`): passed as arguments, numba calls them
    through a function pointer with an error check, never inlined (~2x slower in cache)."""
    key = (rank_kind, bits)
    if key not in _SPECIALISED:
        def step(p, level, buf, meta):
            return _step(p, level, buf, meta, rank_kind, bits)

        def prefetch_next(p, level, buf, meta):
            _prefetch_step(p, level, buf, meta, rank_kind, bits)

        jit = numba.njit(_nrt=False, error_model="numpy", inline="always")
        _SPECIALISED[key] = (jit(step), jit(prefetch_next))
    return _SPECIALISED[key]


@numba.njit(cache=True, _nrt=False)
def access_one(i, buf, meta):
    """Original index of the i-th smallest key (seed 002, "The Access Function")."""
    p = i
    for level in range(meta[META_STEPS]):
        p = level_step(p, level, buf, meta)
    return p


@numba.njit(cache=True, _nrt=False)
def access_many(positions, out, buf, meta):
    for k in range(positions.shape[0]):
        out[k] = access_one(positions[k], buf, meta)


_ACCESS_KERNELS: dict = {}


def access_kernels_for(rank_kind: int, bits: int) -> tuple:
    """(per-access, batched) timing loops for one rank kind and arity (see `step_for`)."""
    key = (rank_kind, bits)
    if key in _ACCESS_KERNELS:
        return _ACCESS_KERNELS[key]
    step, prefetch_next = step_for(rank_kind, bits)

    @numba.njit(_nrt=False)
    def access_checksum(positions, buf, meta):
        """Per access: every access in one compiled loop, each waiting for the one before;
        the checksum keeps the loop alive."""
        steps = meta[META_STEPS]
        total = 0
        for k in range(positions.shape[0]):
            p = positions[k]
            for level in range(steps):
                p = step(p, level, buf, meta)
            total += p
        return total

    @numba.njit(_nrt=False)
    def access_group_checksum(positions, current, buf, meta):
        """Batched: len(current) accesses advanced level by level in lockstep, each
        prefetching its next level, so the misses of different accesses overlap.
        `current` is scratch (no allocation in an `_nrt=False` function)."""
        steps = meta[META_STEPS]
        group = current.shape[0]
        total = 0
        for start in range(0, positions.shape[0], group):
            size = min(group, positions.shape[0] - start)
            for g in range(size):
                current[g] = positions[start + g]
                prefetch_next(current[g], 0, buf, meta)
            for level in range(steps):
                for g in range(size):
                    current[g] = step(current[g], level, buf, meta)
                    if level + 1 < steps:
                        prefetch_next(current[g], level + 1, buf, meta)
            for g in range(size):
                total += current[g]
        return total

    _ACCESS_KERNELS[key] = (access_checksum, access_group_checksum)
    return _ACCESS_KERNELS[key]
