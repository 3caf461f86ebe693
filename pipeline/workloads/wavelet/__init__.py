"""Seed 002: a learned index over an unsorted table through an m-ary wavelet-tree mapping.

- `tree.py`: the mapping sorted rank -> original position (m in {2, 4, 16, 256}; full rank
  matrix, sampled counts apart or interleaved, or cache-line blocks), numba `access_one`,
  one `level_step` at a time for lockstep kernels, per-access and batched timing loops.
- `btree.py`: the static B+-tree secondary index, the peer of the slides' bound, with a
  per-query and a batched (lockstep, prefetching) lookup.
- `index.py`: lookups through a mapping (wavelet, permutation array, sorted copy) guided
  by a model of the learned-index package (`pipeline.workloads.learned_index.models`), or none: per query,
  batched, or with a k-ary window search.
- `measure.py`: compiled timing loops; `workload.py`: the `wavelet_mapping` workload.
"""
