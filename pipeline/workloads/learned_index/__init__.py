"""Learned sorted-table search (seed 001: Amato, Lo Bosco, Giancarlo).

- `data`: SOSD binary and `.npy` keys, SOSD-style synthetic tables sized to each memory
  level (§3.4), KS/KL down-sampling, query sets.
- `search`: the sorted-table search routines of §3.1 (BBS, BFS, BFE, K-BBS, K-BFS, IBS, TIP),
  compiled with numba; each returns the lower bound, like `numpy.searchsorted(side="left")`.
- `models`: every model of §3.2 behind one call, `fit_model(kind, keys, **params)`; each model
  has `size_bytes` and `search_bounds(queries) -> (lo, hi)`.
- `rmi`: two-level RMIs with CDFShop's model types; `rmi_search`: CDFShop's two-phase
  Pareto search over them and the synoptic SY-RMI; `pgm`, `radix_spline`, `btree`: the peers.
- `loops`: the compiled lookup loops (plain, staged, pipelined, fused; the read floors);
  `measure`: the SOSD-style timing harness around them, checked against numpy.
- `workload`: the pipeline workload `learned_index`.
"""
