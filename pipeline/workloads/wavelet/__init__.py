"""Seed 002: a learned index over an unsorted table through an m-ary wavelet-tree mapping.

- `tree.py`: the mapping sorted rank -> original position (m in {2, 4, 16, 256}; full rank
  matrix or sampled counts), numba `access_one` and batched access.
- `btree.py`: the static B+-tree secondary index, the peer of the slides' bound.
- `index.py`: lookups through a mapping (wavelet, permutation array, sorted copy) guided
  by a model of issue 3 (`pipeline.workloads.learned_index.models`), or none.
- `measure.py`: compiled timing loops; `workload.py`: the `wavelet_mapping` workload.
"""
