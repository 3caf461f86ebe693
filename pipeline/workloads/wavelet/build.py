"""Building a wavelet tree: the compiled stable m-way partitions that fill the packed
digits and the rank structures level by level (seed 002, "The Build Function"), the
packing of a truncated tree's low bits, and the word-aligned buffers they go into.

Apart from `access` because building runs once per table and access millions of times:
the two share only the layout (`layout`), and reading either alone is easier.
"""

from __future__ import annotations

import numba
import numpy as np

from pipeline.workloads.wavelet.layout import LINE_WORDS, SUPERBLOCK, low_bits_for


@numba.njit(cache=True)
def build_levels(perm, levels, depth, bits, rank_kind, sample_log2, digit_words, digit_off,
                  rank_words, rank_off, rank_width, block_counts, super_counts, stride, header):
    """One stable m-way partition per level (seed 002, "Repartition L0 into 4 children"),
    filling the packed digits and the chosen rank structure as it goes, for the top
    `depth` levels; returns the values in the level-`depth` order (for the low bits)."""
    n = perm.shape[0]
    m = 1 << bits
    sym_per_word = 64 // bits
    seq = perm.astype(np.int64)
    nxt = np.empty(n, dtype=np.int64)
    n_blocks = ((n - 1) >> sample_log2) + 1
    n_super = ((n - 1) >> 16) + 1
    running = np.zeros(m, dtype=np.int64)
    super_base = np.zeros(m, dtype=np.int64)
    for level in range(depth):
        shift = bits * (levels - 1 - level)  # weight of this level's digit = child node size
        base = digit_off[level]
        in_block = (1 << sample_log2) - 1
        for p in range(n):
            c = (seq[p] >> shift) & (m - 1)
            word = base + (p >> sample_log2) * stride[level] + header[level] + (p & in_block) // sym_per_word
            digit_words[word] |= np.uint64(c) << np.uint64((p % sym_per_word) * bits)
        if level == levels - 1:
            break  # the last level needs neither a rank nor a next sequence
        # stable partition into children; counter[child] = rank of c inside its node
        n_children = ((n - 1) >> shift) + 1
        counter = np.zeros(n_children, dtype=np.int64)
        width = rank_width[level]
        per_word = 64 // width if width > 0 else 1
        rbase = rank_off[level]
        running[:] = 0
        blk_base = level * n_blocks * m
        sup_base = level * n_super * m
        for p in range(n):
            v = seq[p]
            child = v >> shift
            r = counter[child]
            counter[child] = r + 1
            nxt[(child << shift) + r] = v
            c = child & (m - 1)
            if rank_kind == 0:
                rank_words[rbase + p // per_word] |= np.uint64(r) << np.uint64((p % per_word) * width)
            else:
                if (p & (SUPERBLOCK - 1)) == 0:
                    sb = p >> 16
                    for s in range(m):
                        super_counts[sup_base + sb * m + s] = running[s]
                        super_base[s] = running[s]
                if (p & ((1 << sample_log2) - 1)) == 0:
                    blk = p >> sample_log2
                    for s in range(m):
                        if rank_kind == 1:
                            block_counts[blk_base + blk * m + s] = running[s] - super_base[s]
                        else:  # interleaved: 16-bit counts in the block's header words
                            digit_words[base + blk * stride[level] + (s >> 2)] |= (
                                np.uint64(running[s] - super_base[s]) << np.uint64((s & 3) * 16))
                running[c] += 1
        seq, nxt = nxt, seq
    return seq


@numba.njit(cache=True)
def build_blocked(perm, levels, depth, bits, words, level_off, block_words, header_words, per_block,
                   count_width):
    """The same stable m-way partitions as `build_levels`, written into the cache-line
    blocks of rank="blocked": block header = every symbol's count before the block
    (modulo 2^count_width), then the block's digits. Returns the level-`depth` order."""
    n = perm.shape[0]
    m = 1 << bits
    sym_per_word = 64 // bits
    seq = perm.astype(np.int64)
    nxt = np.empty(n, dtype=np.int64)
    running = np.zeros(m, dtype=np.int64)
    for level in range(depth):
        shift = bits * (levels - 1 - level)
        per = per_block[level]
        header = header_words[level]
        width = count_width[level]
        running[:] = 0
        for p in range(n):
            c = (seq[p] >> shift) & (m - 1)
            blk = p // per
            offset = p - blk * per
            first = level_off[level] + blk * block_words
            if offset == 0 and header > 0:
                for s in range(m):
                    count = np.uint64(running[s] & ((np.int64(1) << width) - 1))
                    words[first + ((s * width) >> 6)] |= count << np.uint64((s * width) & 63)
            words[first + header + offset // sym_per_word] |= np.uint64(c) << np.uint64((offset % sym_per_word) * bits)
            running[c] += 1
        if level == levels - 1:
            break
        n_children = ((n - 1) >> shift) + 1
        counter = np.zeros(n_children, dtype=np.int64)
        for p in range(n):
            v = seq[p]
            child = v >> shift
            nxt[(child << shift) + counter[child]] = v
            counter[child] += 1
        seq, nxt = nxt, seq
    return seq


@numba.njit(cache=True)
def pack_low(values, width, words):
    """values[p] & (2^width - 1) into `words` at bit p * width, straddling words freely."""
    mask = (np.int64(1) << width) - 1
    for p in range(values.shape[0]):
        bit = p * width
        v = np.uint64(values[p] & mask)
        s = bit & 63
        words[bit >> 6] |= v << np.uint64(s)
        if s + width > 64:
            words[(bit >> 6) + 1] |= v >> np.uint64(64 - s)


def low_part(order: np.ndarray, n: int, levels: int, bits: int, depth: int) -> tuple[int, np.ndarray]:
    """(R, the R-bit low parts of `order` (the level-depth order) packed back to back, plus
    one pad word so that the 8-byte load of the last entry stays inside the buffer)."""
    width = low_bits_for(n, levels, bits, depth)
    if width == 0:
        return 0, np.zeros(0, dtype=np.uint64)
    words = np.zeros(-(-n * width // 64) + 1, dtype=np.uint64)
    pack_low(order, width, words)
    return width, words


def depth_meta(levels: int, depth: int, low_base: int, low_bits: int) -> list[int]:
    """META_DEPTH, META_STEPS, META_LOW_BASE, META_LOW_BITS."""
    return [depth, depth if depth == levels else depth + 1, low_base, low_bits]



def reciprocals(per_block: np.ndarray) -> np.ndarray:
    return np.array([-(-(1 << 32) // int(per)) for per in per_block], dtype=np.int64)


def aligned_words(count: int) -> np.ndarray:
    """An uninitialised uint64 array of `count` words starting on a 64-byte boundary, so
    that blocks of whole lines are whole cache lines."""
    raw = np.empty(count + LINE_WORDS, dtype=np.uint64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + count]


def as_words(array: np.ndarray, per_word: int) -> np.ndarray:
    """`array` (uint16 or uint32) zero-padded to whole uint64 words, viewed as uint64."""
    padded = np.zeros(-(-array.size // per_word) * per_word, dtype=array.dtype)
    padded[: array.size] = array
    return padded.view(np.uint64)
