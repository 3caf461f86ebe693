"""numba kernels for inference-time Store and Query on CPU.

They compute what `model.LegoSketch.store` / `query` compute with torch (same hashes,
float32 arithmetic; the decoder's sums may be ordered differently, so estimates agree
to float tolerance, which tests/test_lego.py checks), fused into one pass per item
instead of a dozen full-array tensor ops; training keeps the torch path for autograd.
Store is one sequential loop (scatter-adds would race); Query runs in parallel blocks.
Hand-written because the decoder is a few tiny MLPs per item: batched torch matmuls of
width 8-32 were no faster in our timing and need n x rows x width intermediates.
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


@numba.njit(inline="always")
def _dense(x, n_in, weight_t, bias, out, leaky):
    # out = bias + x @ weight_t, then LeakyReLU(0.01); the loop over outputs is innermost
    # and contiguous, so LLVM vectorises it (the caller pads outputs to a multiple of 8,
    # AVX2's float32 width, with zero weights and bias)
    n_out = out.shape[0]
    for j in range(n_out):
        out[j] = bias[j]
    for k in range(n_in):
        xk = x[k]
        for j in range(n_out):
            out[j] += xk * weight_t[k, j]
    if leaky:
        for j in range(n_out):
            if out[j] < 0:
                out[j] *= np.float32(0.01)


@numba.njit(cache=True, parallel=True)
def query_kernel(items, basis, embed_mult, embed_add, addr_mult, addr_add, brick_mult, brick_add, normalize,
                 memory, load, use_neural,
                 e1_w, e1_b, e2_w, e2_b, e3_w, e3_b,
                 b1_w, b1_b, b2_w, b2_b,
                 h1_w, h1_b, h2_w, h2_b, h3_w, h3_b,
                 blocks, out):
    """Query in one pass per item (seed 003 Algorithm 2): route, embed, read, the
    rule-based estimate, and where `use_neural[brick]` the neural decoder of
    `model.EnsembleDecoder` with the ensemble's min/clamp. Every weight matrix is
    transposed (inputs x outputs). The decoder's per-brick inputs (log load and the
    scanned stream features) are folded into `b1_b` (bricks, hidden) and `h1_b`
    (bricks, hidden) by the caller, so per item only the item's own inputs are
    multiplied. Items are processed in `blocks` parallel blocks, one scratch set each
    (the caller passes a few per thread: numba.get_num_threads() inside a cached kernel
    would make it uncacheable)."""
    bricks, depth, slots = memory.shape
    n = items.shape[0]
    pooled_size = e3_w.shape[1]
    per_block = (n + blocks - 1) // blocks
    for block in numba.prange(blocks):
        embedding = np.empty(depth, np.float32)
        read = np.empty(depth, np.float32)
        ratio = np.empty(depth, np.float32)
        features = np.empty(3, np.float32)
        h_e1 = np.empty(e1_w.shape[1], np.float32)
        h_e2 = np.empty(e2_w.shape[1], np.float32)
        h_e3 = np.empty(e3_w.shape[1], np.float32)
        body_in = np.empty(b1_w.shape[0], np.float32)  # pooled, sorted ratios, log1p(rule / load)
        h_b1 = np.empty(b1_w.shape[1], np.float32)
        head_in = np.empty(h1_w.shape[0], np.float32)  # hidden, sorted ratios, log1p(rule / load)
        h_h1 = np.empty(h1_w.shape[1], np.float32)
        h_h2 = np.empty(h2_w.shape[1], np.float32)
        h_z = np.empty(h3_w.shape[1], np.float32)  # padded: only h_z[0] is the output
        for i in range(block * per_block, min(n, (block + 1) * per_block)):
            item = items[i]
            brick = 0 if bricks == 1 else _hash(item, brick_mult[0], brick_add[0], bricks)
            _embed_one(item, basis, embed_mult, embed_add, normalize, embedding)
            rule = np.float32(np.inf)
            for d in range(depth):
                value = memory[brick, d, _hash(item, addr_mult[d], addr_add[d], slots)]
                read[d] = value
                r = value / embedding[d]
                if r < rule:
                    rule = r
            if not use_neural[brick]:
                out[i] = rule
                continue
            brick_load = load[brick]
            # element network over the item's (read, embedding, ratio) rows, mean-pooled
            for j in range(pooled_size):
                body_in[j] = 0.0
            for d in range(depth):
                ratio[d] = np.log1p(max(read[d] / embedding[d], np.float32(0.0)) / brick_load)
                features[0] = np.log1p(max(read[d], np.float32(0.0)) / brick_load)
                features[1] = embedding[d]
                features[2] = ratio[d]
                _dense(features, 3, e1_w, e1_b, h_e1, True)
                _dense(h_e1, h_e1.shape[0], e2_w, e2_b, h_e2, True)
                _dense(h_e2, h_e2.shape[0], e3_w, e3_b, h_e3, True)
                for j in range(pooled_size):
                    body_in[j] += h_e3[j]
            for j in range(pooled_size):
                body_in[j] /= np.float32(depth)
            # sorted ratios (insertion sort of `depth` values) and the rule-based estimate
            for d in range(depth):
                value = ratio[d]
                k = d
                while k > 0 and body_in[pooled_size + k - 1] > value:
                    body_in[pooled_size + k] = body_in[pooled_size + k - 1]
                    k -= 1
                body_in[pooled_size + k] = value
            body_in[pooled_size + depth] = np.log1p(rule / brick_load)
            _dense(body_in, body_in.shape[0], b1_w, b1_b[brick], h_b1, True)
            hidden = head_in[:b2_w.shape[1]]  # the body's output is the head's first input
            _dense(h_b1, h_b1.shape[0], b2_w, b2_b, hidden, True)
            for j in range(depth + 1):
                head_in[hidden.shape[0] + j] = body_in[pooled_size + j]
            _dense(head_in, head_in.shape[0], h1_w, h1_b[brick], h_h1, True)
            _dense(h_h1, h_h1.shape[0], h2_w, h2_b, h_h2, True)
            _dense(h_h2, h_h2.shape[0], h3_w, h3_b, h_z, False)
            neural = rule - brick_load * h_z[0]
            estimate = neural if neural < rule else rule
            out[i] = estimate if estimate > 0 else np.float32(0.0)
