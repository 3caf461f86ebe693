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

Written by hand: no maintained Python library offers an m-ary wavelet tree with numba
access (pysdsl / sdsl-lite are C++ and not callable from numba).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

ARITIES = (2, 4, 16, 256)
RANK_KINDS = ("full", "sampled", "interleaved", "blocked")
LINE_WORDS = 8  # uint64 words per 64-byte cache line
SUPERBLOCK = 1 << 16  # positions per superblock: block counts relative to it fit in uint16
MAX_N = (1 << 32) - 1  # positions are stored as (at most) 32-bit numbers

RANK_FULL = 0
RANK_SAMPLED = 1
RANK_INTERLEAVED = 2  # sampled, with each block's counts in a header before its digits
RANK_BLOCKED = 3  # cache-line blocks: modular counts of every symbol, then digits
_RANK_CODE = {"full": RANK_FULL, "sampled": RANK_SAMPLED, "interleaved": RANK_INTERLEAVED, "blocked": RANK_BLOCKED}


@intrinsic
def popcount64(typingctx, x):
    """Population count of a uint64 as one `popcnt` instruction (llvm.ctpop)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the line holding array[index] into cache (llvm.prefetch, read, keep): lets a
    group of lookups issue their next misses together (`index.py`, batched kernels)."""
    sig = types.void(array, types.int64)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array_struct = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array_struct, [args[1]], wraparound=False)
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])  # read, high locality, data
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def load_unaligned_u64(typingctx, array, byte_offset):
    """The 8 bytes of `array`'s buffer from `byte_offset` on, as one little-endian uint64
    (an unaligned load: x86 takes it in one instruction, two lines at worst)."""
    sig = types.uint64(array, types.int64)

    def codegen(context, builder, signature, args):
        array_struct = context.make_array(signature.args[0])(context, builder, args[0])
        base = builder.bitcast(array_struct.data, ir.IntType(8).as_pointer())
        pointer = builder.bitcast(builder.gep(base, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)

    return sig, codegen


def num_levels(n: int, arity: int) -> int:
    """L = ceil(log_arity n), at least 1: the number of m-ary digits of n-1."""
    levels, capacity = 1, arity
    while capacity < n:
        capacity *= arity
        levels += 1
    return levels


# ----------------------------------------------------------------------------- build


@numba.njit(cache=True)
def _build_levels(perm, levels, depth, bits, rank_kind, sample_log2, digit_words, digit_off,
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
def _build_blocked(perm, levels, depth, bits, words, level_off, block_words, header_words, per_block,
                   count_width):
    """The same stable m-way partitions as `_build_levels`, written into the cache-line
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
def _pack_low(values, width, words):
    """values[p] & (2^width - 1) into `words` at bit p * width, straddling words freely."""
    mask = (np.int64(1) << width) - 1
    for p in range(values.shape[0]):
        bit = p * width
        v = np.uint64(values[p] & mask)
        s = bit & 63
        words[bit >> 6] |= v << np.uint64(s)
        if s + width > 64:
            words[(bit >> 6) + 1] |= v >> np.uint64(64 - s)


# ----------------------------------------------------------------------------- access


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


# Every hot-path function is compiled with `_nrt=False`: with numba's reference counting
# on, each call that passes an array increments and decrements its refcount atomically,
# which cost ~25 ns per access (7 ns without, for a one-level tree in cache).
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


@numba.njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _step(p, level, buf, meta, kind, bits):
    """One level of `access` (seed 002, "The Access Function"): the position on level + 1
    of the entry at position p of `level`; on the last level, the original index itself.
    `kind` and `bits` are meta's; `step_for` compiles them in as constants. Step `depth`
    of a truncated tree is the read of the low bits (`_low_value`)."""
    if level == meta[META_DEPTH]:
        return _low_value(p, buf, meta)
    levels = meta[META_LEVELS]
    rank_off_at = META_DIGIT_OFF + levels + 1
    width_at = rank_off_at + levels + 1
    stride_at = width_at + levels
    header_at = stride_at + levels
    per_block_at = header_at + levels
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
    rank_off_at = META_DIGIT_OFF + levels + 1
    width_at = rank_off_at + levels + 1
    stride_at = width_at + levels
    header_at = stride_at + levels
    per_block_at = header_at + levels
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
def _access_batch(positions, out, buf, meta):
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


# ----------------------------------------------------------------------------- the structure


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
        order = _build_levels(perm, levels, depth, bits, _RANK_CODE[rank], sample_log2, digit_words, digit_off,
                              rank_words, rank_off, rank_width, block_counts, super_counts, stride, header)
        low_bits, low_words = _low_part(order, n, levels, bits, depth)
        # one buffer: digits | rank words | block counts (4 per word) | super counts (2 per word) | low bits
        parts = [digit_words, rank_words, _as_words(block_counts, 4), _as_words(super_counts, 2), low_words]
        bases = np.cumsum([0] + [part.size for part in parts])
        buf = aligned_words(int(bases[-1]))
        np.concatenate(parts, out=buf)
        per_block = np.full(levels, sample_rate, dtype=np.int64)
        meta = np.concatenate([
            [levels, bits, _RANK_CODE[rank], sample_log2, n_blocks, n_super, bases[2], bases[3]],
            _depth_meta(levels, depth, bases[4], low_bits), digit_off, rank_off + bases[1], rank_width, stride,
            header, per_block, _reciprocals(per_block)]).astype(np.int64)
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
        return _RANK_CODE[self.rank]

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
        _access_batch(positions, out, *self.kernel_args)
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


def _low_part(order: np.ndarray, n: int, levels: int, bits: int, depth: int) -> tuple[int, np.ndarray]:
    """(R, the R-bit low parts of `order` (the level-depth order) packed back to back, plus
    one pad word so that the 8-byte load of the last entry stays inside the buffer)."""
    width = low_bits_for(n, levels, bits, depth)
    if width == 0:
        return 0, np.zeros(0, dtype=np.uint64)
    words = np.zeros(-(-n * width // 64) + 1, dtype=np.uint64)
    _pack_low(order, width, words)
    return width, words


def _depth_meta(levels: int, depth: int, low_base: int, low_bits: int) -> list[int]:
    """META_DEPTH, META_STEPS, META_LOW_BASE, META_LOW_BITS."""
    return [depth, depth if depth == levels else depth + 1, low_base, low_bits]


def count_width(child_size: int) -> int:
    """Bits of a blocked count: the smallest of 8, 16, 32 with 2^w >= the child node size
    (counts are kept modulo 2^w; see the module docstring)."""
    need = max(1, (child_size - 1).bit_length())
    return next(w for w in (8, 16, 32) if w >= need)


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
    order = _build_blocked(perm, levels, depth, bits, tree_words, digit_off, block_words, header, per_block, width)
    low_bits, low_words = _low_part(order, n, levels, bits, depth)
    buf = aligned_words(tree_words.size + low_words.size)
    np.concatenate([tree_words, low_words], out=buf)
    rank_off = np.zeros(levels + 1, dtype=np.int64)
    meta = np.concatenate([[levels, bits, RANK_BLOCKED, 0, 0, 0, 0, 0],
                           _depth_meta(levels, depth, tree_words.size, low_bits), digit_off, rank_off, width,
                           stride, header, per_block, _reciprocals(per_block)]).astype(np.int64)
    empty = np.zeros(0, dtype=np.uint64)
    return WaveletMapping(n, arity, "blocked", 0, levels, buf[: tree_words.size], digit_off, empty, rank_off, width,
                          np.zeros(0, np.uint16), np.zeros(0, np.uint32), buf, meta, stride, header, per_block,
                          block_lines, depth=depth, low_bits=low_bits, low_words=buf[tree_words.size:])

def _reciprocals(per_block: np.ndarray) -> np.ndarray:
    return np.array([-(-(1 << 32) // int(per)) for per in per_block], dtype=np.int64)


def aligned_words(count: int) -> np.ndarray:
    """An uninitialised uint64 array of `count` words starting on a 64-byte boundary, so
    that blocks of whole lines are whole cache lines."""
    raw = np.empty(count + LINE_WORDS, dtype=np.uint64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + count]


def _as_words(array: np.ndarray, per_word: int) -> np.ndarray:
    """`array` (uint16 or uint32) zero-padded to whole uint64 words, viewed as uint64."""
    padded = np.zeros(-(-array.size // per_word) * per_word, dtype=array.dtype)
    padded[: array.size] = array
    return padded.view(np.uint64)


def entropy_bits_per_element(n: int) -> float:
    """log2(n!) / n: the fewest bits per element any encoding of a random permutation needs."""
    return math.lgamma(n + 1) / math.log(2) / n if n > 0 else 0.0
