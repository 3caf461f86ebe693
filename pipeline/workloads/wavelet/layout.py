"""The numbers that fix the wavelet tree's stored layout (the module docstring of `tree`
describes it): arities, rank kinds and their codes, line and superblock sizes, the slots
of the `meta` array the compiled access reads, and the level arithmetic.

Apart because the builders (`build`), the compiled access (`access`) and the class
(`tree`) all read them, and none of those three should import another just for a
constant.
"""

from __future__ import annotations

import numpy as np

ARITIES = (2, 4, 16, 256)
RANK_KINDS = ("full", "sampled", "interleaved", "blocked")
LINE_WORDS = 8  # uint64 words per 64-byte cache line
SUPERBLOCK = 1 << 16  # positions per superblock: block counts relative to it fit in uint16
MAX_N = (1 << 32) - 1  # positions are stored as (at most) 32-bit numbers

RANK_FULL = 0
RANK_SAMPLED = 1
RANK_INTERLEAVED = 2  # sampled, with each block's counts in a header before its digits
RANK_BLOCKED = 3  # cache-line blocks: modular counts of every symbol, then digits
RANK_CODE = {"full": RANK_FULL, "sampled": RANK_SAMPLED, "interleaved": RANK_INTERLEAVED, "blocked": RANK_BLOCKED}

# The compiled access reads ONE uint64 buffer (digits, rank words, block and superblock
# counts back to back) and one int64 `meta` array of scalars and offsets: a numba call
# passes every array as ~7 machine words, and with the dozen separate arrays of the first
# version the argument passing alone cost ~70 ns per access.
META_LEVELS, META_BITS, META_RANK_KIND, META_SAMPLE_LOG2 = 0, 1, 2, 3
META_N_BLOCKS, META_N_SUPER, META_BLOCK_BASE, META_SUPER_BASE = 4, 5, 6, 7
META_DEPTH, META_STEPS, META_LOW_BASE, META_LOW_BITS = 8, 9, 10, 11  # truncated tree: levels walked,
# steps of an access (levels walked + 1 low read if depth < levels), first word of the low
# bits in buf, bits per low entry (R)
META_DIGIT_OFF = 12  # then digit_off[levels + 1], rank_off[levels + 1], rank_width[levels],
# stride[levels], header[levels], per_block[levels]: for full / sampled / interleaved the
# digit of p on level l sits in word
#   digit_off[l] + (p >> sample_log2) * stride[l] + header[l] + (p mod s) / (64 / b)
# (header = 0 and stride = s b / 64 unless interleaved, which reduces to p / (64 / b));
# for blocked, with per_block[l] positions per block of stride[l] words,
#   digit_off[l] + (p / per_block) * stride[l] + header[l] + (p mod per_block) / (64 / b)
# and rank_width[l] is the count width w; then reciprocal[levels] = ceil(2^32 / per_block[l]).


def num_levels(n: int, arity: int) -> int:
    """L = ceil(log_arity n), at least 1: the number of m-ary digits of n-1."""
    levels, capacity = 1, arity
    while capacity < n:
        capacity *= arity
        levels += 1
    return levels


def check_depth(depth, n: int, arity: int) -> int:
    """`depth` as the levels to walk (None: all L of them), or a one-line ValueError."""
    levels = num_levels(n, arity)
    if depth is None:
        return levels
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, (int, np.integer)) or not 0 <= depth <= levels:
        raise ValueError(f"depth must be an integer in [0, {levels}] (the levels of a {arity}-ary tree over "
                         f"{n} values) or None for all of them, got {depth!r}")
    return int(depth)



def low_bits_for(n: int, levels: int, bits: int, depth: int) -> int:
    """R, the low bits a truncated tree reads in one go: the b (L - depth) bits below the
    walked digits (every node but the last is full, so all of them occur), and for depth 0
    the whole value, ceil(log2 n) bits (at least 1); 0 for a full-depth tree."""
    if depth == levels:
        return 0
    if depth == 0:
        return max(1, (n - 1).bit_length())
    return bits * (levels - depth)



def count_width(child_size: int) -> int:
    """Bits of a blocked count: the smallest of 8, 16, 32 with 2^w >= the child node size
    (counts are kept modulo 2^w; see the module docstring)."""
    need = max(1, (child_size - 1).bit_length())
    return next(w for w in (8, 16, 32) if w >= need)

