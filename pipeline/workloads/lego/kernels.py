"""numba kernels for inference-time Store and Query on CPU.

They compute what `model.LegoSketch.store` / `query` compute with torch (same hashes,
float32 arithmetic; the decoder's sums may be ordered differently, so estimates agree
to float tolerance, which tests/test_lego.py checks), fused into one pass per item
instead of a dozen full-array tensor ops; training keeps the torch path for autograd.
Store is one sequential loop (scatter-adds would race); Query runs in parallel blocks.
Hand-written because the decoder is a few tiny MLPs per item: batched torch matmuls of
width 8-32 were no faster in our timing and need n x rows x width intermediates. The
decoder runs on tiles of TILE items with the tile innermost (outputs x items), so every
layer vectorises however narrow it is; per item, one layer after the other with the
outputs innermost ran at about half the rate (docs/benchmarks.md, Lego throughput).
"""

from __future__ import annotations

import numba
import numpy as np

_MASK32 = np.int64(0xFFFFFFFF)


@numba.njit(inline="always")
def _hash(x, mult, add, table):
    # identical to model.hash_items (int64 wraps; only the low 32 bits are kept)
    x = (x ^ (x >> 32)) & _MASK32
    h = (x * mult + add) & _MASK32
    h = h ^ (h >> 16)
    h = (h * np.int64(0x85EBCA6B)) & _MASK32
    h = h ^ (h >> 13)
    h = (h * np.int64(0xC2B2AE35)) & _MASK32
    h = h ^ (h >> 16)
    return h % table


@numba.njit(inline="always")
def _embed_one(item, basis, embed_mult, embed_add, normalize, out):
    depth = out.shape[0]
    total = np.float32(0.0)
    for d in range(depth):
        value = basis[_hash(item, embed_mult[d], embed_add[d], basis.shape[0])]
        out[d] = value
        total += value
    if normalize:
        for d in range(depth):
            out[d] = out[d] / total * np.float32(depth)


@numba.njit(cache=True)
def store_kernel(items, counts, basis, embed_mult, embed_add, addr_mult, addr_add, brick_mult, brick_add,
                 normalize, memory, bucket):
    """memory: (bricks, depth, slots) float32, bucket: (bricks,) float32; in place."""
    bricks, depth, slots = memory.shape
    embedding = np.empty(depth, np.float32)
    for i in range(items.shape[0]):
        item = items[i]
        brick = 0 if bricks == 1 else _hash(item, brick_mult[0], brick_add[0], bricks)
        _embed_one(item, basis, embed_mult, embed_add, normalize, embedding)
        count = counts[i]
        for d in range(depth):
            memory[brick, d, _hash(item, addr_mult[d], addr_add[d], slots)] += embedding[d] * count
        bucket[brick] += count


#: items decoded together: the decoder's layers run on a tile of this many items, the
#: innermost loop over the tile (contiguous, so LLVM vectorises it at any layer width)
TILE = 64


@numba.njit(inline="always")
def _bias_tile(bias, out, columns):
    for j in range(out.shape[0]):
        b = bias[j]
        for t in range(columns):
            out[j, t] = b


@numba.njit(inline="always")
def _dense_tile(x, weight_t, out, columns, leaky):
    # out[:, :columns] += weight_t.T @ x[:, :columns] (out holds the bias), then
    # LeakyReLU(0.01); x: (inputs, >= columns), weight_t: (inputs, outputs)
    n_in, n_out = weight_t.shape
    for j in range(n_out):
        for k in range(n_in):
            w = weight_t[k, j]
            for t in range(columns):
                out[j, t] += w * x[k, t]
        if leaky:
            for t in range(columns):
                if out[j, t] < 0:
                    out[j, t] *= np.float32(0.01)


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds; nothing else relaxed
def _decode_tile(count, depth, index, tile_brick, tile_load, tile_rule, tile_read, tile_embedding,
                 e1_w, e1_b, e2_w, e2_b, e3_w, e3_b, b1_w, b1_b, b2_w, b2_b, h1_w, h1_b, h2_w, h2_b, h3_w, h3_b,
                 elements, h_e1, h_e2, h_e3, body_in, h_b1, head_in, h_h1, h_h2, h_z, out):
    """The neural decoder of `model.EnsembleDecoder` on `count` items gathered in a tile
    (their read values, embeddings, rule-based estimates, bricks and loads), with the
    ensemble's min/clamp; writes out[index[t]]."""
    pooled_size = e3_w.shape[1]
    # element network over every (row, item) pair: column d * count + t
    for d in range(depth):
        for t in range(count):
            c = d * count + t
            load = tile_load[t]
            read = tile_read[d, t]
            embedding = tile_embedding[d, t]
            ratio = np.log1p(max(read / embedding, np.float32(0.0)) / load)
            elements[0, c] = np.log1p(max(read, np.float32(0.0)) / load)
            elements[1, c] = embedding
            elements[2, c] = ratio
            # sorted ratios (insertion sort over the rows seen so far) go to body and head
            k = d
            while k > 0 and body_in[pooled_size + k - 1, t] > ratio:
                body_in[pooled_size + k, t] = body_in[pooled_size + k - 1, t]
                k -= 1
            body_in[pooled_size + k, t] = ratio
    columns = depth * count
    _bias_tile(e1_b, h_e1, columns)
    _dense_tile(elements, e1_w, h_e1, columns, True)
    _bias_tile(e2_b, h_e2, columns)
    _dense_tile(h_e1, e2_w, h_e2, columns, True)
    _bias_tile(e3_b, h_e3, columns)
    _dense_tile(h_e2, e3_w, h_e3, columns, True)
    for j in range(pooled_size):  # mean over the rows
        for t in range(count):
            body_in[j, t] = 0.0
        for d in range(depth):
            for t in range(count):
                body_in[j, t] += h_e3[j, d * count + t]
        for t in range(count):
            body_in[j, t] /= np.float32(depth)
    for t in range(count):
        body_in[pooled_size + depth, t] = np.log1p(tile_rule[t] / tile_load[t])
    for j in range(b1_w.shape[1]):  # per-brick biases (log load, stream features folded in)
        for t in range(count):
            h_b1[j, t] = b1_b[tile_brick[t], j]
    _dense_tile(body_in, b1_w, h_b1, count, True)
    hidden = b2_w.shape[1]  # the body's output is the head's first input
    _bias_tile(b2_b, head_in[:hidden], count)
    _dense_tile(h_b1, b2_w, head_in[:hidden], count, True)
    for j in range(depth + 1):
        for t in range(count):
            head_in[hidden + j, t] = body_in[pooled_size + j, t]
    for j in range(h1_w.shape[1]):
        for t in range(count):
            h_h1[j, t] = h1_b[tile_brick[t], j]
    _dense_tile(head_in, h1_w, h_h1, count, True)
    _bias_tile(h2_b, h_h2, count)
    _dense_tile(h_h1, h2_w, h_h2, count, True)
    _bias_tile(h3_b, h_z, count)
    _dense_tile(h_h2, h3_w, h_z, count, False)
    for t in range(count):
        rule = tile_rule[t]
        neural = rule - tile_load[t] * h_z[0, t]
        estimate = neural if neural < rule else rule
        out[index[t]] = estimate if estimate > 0 else np.float32(0.0)


@numba.njit(cache=True, parallel=True)
def query_kernel(items, basis, embed_mult, embed_add, addr_mult, addr_add, brick_mult, brick_add, normalize,
                 memory, load, use_neural,
                 e1_w, e1_b, e2_w, e2_b, e3_w, e3_b,
                 b1_w, b1_b, b2_w, b2_b,
                 h1_w, h1_b, h2_w, h2_b, h3_w, h3_b,
                 blocks, out):
    """Query (seed 003 Algorithm 2): route, embed, read and the rule-based estimate in one
    pass per item; the items whose brick uses the neural estimate (`use_neural[brick]`)
    are gathered into tiles of TILE and decoded together by `_decode_tile`. Every weight
    matrix is transposed (inputs x outputs). The decoder's per-brick inputs (log load and
    the scanned stream features) are folded into `b1_b` (bricks, hidden) and `h1_b`
    (bricks, hidden) by the caller, so per item only the item's own inputs are
    multiplied. Items are processed in `blocks` parallel blocks, one scratch set each
    (the caller passes a few per thread: numba.get_num_threads() inside a cached kernel
    would make it uncacheable)."""
    bricks, depth, slots = memory.shape
    n = items.shape[0]
    per_block = (n + blocks - 1) // blocks
    for block in numba.prange(blocks):
        embedding = np.empty(depth, np.float32)
        index = np.empty(TILE, np.int64)
        tile_brick = np.empty(TILE, np.int64)
        tile_load = np.empty(TILE, np.float32)
        tile_rule = np.empty(TILE, np.float32)
        tile_read = np.empty((depth, TILE), np.float32)
        tile_embedding = np.empty((depth, TILE), np.float32)
        elements = np.empty((3, depth * TILE), np.float32)
        h_e1 = np.empty((e1_w.shape[1], depth * TILE), np.float32)
        h_e2 = np.empty((e2_w.shape[1], depth * TILE), np.float32)
        h_e3 = np.empty((e3_w.shape[1], depth * TILE), np.float32)
        body_in = np.empty((b1_w.shape[0], TILE), np.float32)  # pooled, sorted ratios, log1p(rule / load)
        h_b1 = np.empty((b1_w.shape[1], TILE), np.float32)
        head_in = np.empty((h1_w.shape[0], TILE), np.float32)  # hidden, sorted ratios, log1p(rule / load)
        h_h1 = np.empty((h1_w.shape[1], TILE), np.float32)
        h_h2 = np.empty((h2_w.shape[1], TILE), np.float32)
        h_z = np.empty((h3_w.shape[1], TILE), np.float32)  # padded: only row 0 is the output
        count = 0
        for i in range(block * per_block, min(n, (block + 1) * per_block)):
            item = items[i]
            brick = 0 if bricks == 1 else _hash(item, brick_mult[0], brick_add[0], bricks)
            _embed_one(item, basis, embed_mult, embed_add, normalize, embedding)
            rule = np.float32(np.inf)
            for d in range(depth):
                value = memory[brick, d, _hash(item, addr_mult[d], addr_add[d], slots)]
                tile_read[d, count] = value
                tile_embedding[d, count] = embedding[d]
                r = value / embedding[d]
                if r < rule:
                    rule = r
            if not use_neural[brick]:
                out[i] = rule
                continue
            index[count] = i
            tile_brick[count] = brick
            tile_load[count] = load[brick]
            tile_rule[count] = rule
            count += 1
            if count == TILE:
                _decode_tile(count, depth, index, tile_brick, tile_load, tile_rule, tile_read, tile_embedding,
                             e1_w, e1_b, e2_w, e2_b, e3_w, e3_b, b1_w, b1_b, b2_w, b2_b,
                             h1_w, h1_b, h2_w, h2_b, h3_w, h3_b, elements, h_e1, h_e2, h_e3, body_in,
                             h_b1, head_in, h_h1, h_h2, h_z, out)
                count = 0
        if count:
            _decode_tile(count, depth, index, tile_brick, tile_load, tile_rule, tile_read, tile_embedding,
                         e1_w, e1_b, e2_w, e2_b, e3_w, e3_b, b1_w, b1_b, b2_w, b2_b,
                         h1_w, h1_b, h2_w, h2_b, h3_w, h3_b, elements, h_e1, h_e2, h_e3, body_in,
                         h_b1, head_in, h_h1, h_h2, h_z, out)
