"""Benchmark `nn_layouts`: hand-made sort layouts against LSH on the hypersphere (seed
000 §2.4): what a model that only permutes the points can reach with a simple rule.

    python -m pipeline.bench nn_layouts --json out.json

On the test instances of a hypersphere task's quick profile (`tasks/nn_hypersphere_30d.yaml`
by default; N, rho and the instances as a trial sees them), for each lookup budget M:

- `projection_sort`: the points sorted by their projection on one direction (a fixed
  unit vector; the distribution is isotropic, so any direction is as good), the layout
  the cross-entropy models learned (`layout_pc1_spearman` near 1);
- `angle_sort`: the points sorted by their angle in the plane of two directions, the
  layout of appendix C.3's Figure 19 ("projecting onto a pair of vectors");
- `lsh_k*`: the LSH baseline of appendix D, as every trial reports it.

The two sorts are non-adaptive: the query's own projection (angle) is cut into `--bins`
quantile bins and each bin reads the M positions that most often hold the nearest
neighbour on `--fit` separate training instances (fitted, then scored on the test
instances). Figures: accuracy after each lookup (best-so-far rule of §2.2) and the final one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.workloads.e2e.nn_reverse import ranks


def _layout_reads(key_queries: np.ndarray, nn_position: np.ndarray, fit: slice, test: slice,
                  n: int, lookups: int, bins: int) -> np.ndarray:
    """Per test query, the `lookups` positions most often holding the nearest neighbour
    among fit queries of the same key bin, best first. [B_test, M]."""
    edges = np.quantile(key_queries[fit], np.linspace(0, 1, bins + 1)[1:-1])
    binned = np.searchsorted(edges, key_queries)
    counts = np.zeros((bins, n))
    np.add.at(counts, (binned[fit], nn_position[fit]), 1)
    best = np.argsort(-counts, axis=1, kind="stable")[:, :lookups]  # [bins, M]
    return best[binned[test]]


def layout_curve(points: np.ndarray, queries: np.ndarray, nn_index: np.ndarray, fit_count: int,
                 lookups: int, bins: int, kind: str, direction: np.ndarray) -> np.ndarray:
    """Accuracy per lookup of a sort layout; the first `fit_count` instances fit the reads,
    the rest are scored. points [B, N, d], queries [B, d], direction [2, d] (unit rows)."""
    if kind == "projection_sort":
        key_points, key_queries = points @ direction[0], queries @ direction[0]
    elif kind == "angle_sort":
        key_points = np.arctan2(points @ direction[1], points @ direction[0])
        key_queries = np.arctan2(queries @ direction[1], queries @ direction[0])
    else:
        raise ValueError(f"unknown layout {kind!r}; valid: projection_sort, angle_sort")
    b, n = key_points.shape
    position = ranks(key_points)  # position of each point in the sorted layout
    nn_position = position[np.arange(b), nn_index]
    fit, test = slice(0, fit_count), slice(fit_count, b)
    reads = _layout_reads(key_queries, nn_position, fit, test, n, lookups, bins)
    hit = reads == nn_position[test, None]  # the NN is read at that lookup
    return np.logical_or.accumulate(hit, axis=1).mean(0)


def main(argv: list[str]) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench nn_layouts", description=__doc__.split("\n")[0])
    default_task = Path(__file__).resolve().parents[2] / "tasks" / "nn_hypersphere_30d.yaml"
    parser.add_argument("--task", default=str(default_task))
    parser.add_argument("--lookups", default="2,4", help="comma-separated lookup budgets M")
    parser.add_argument("--fit", type=int, default=20000, help="training instances that fit the reads of each bin")
    parser.add_argument("--bins", type=int, default=40, help="quantile bins of the query's key")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pipeline.config import load_task
    from pipeline.workloads.e2e import nn_train
    from pipeline.workloads.e2e.nn_workload import _Resolved, validate

    task = load_task(args.task, "quick")
    if task.params.distribution != "hypersphere":
        raise SystemExit(f"{args.task}: params.distribution is {task.params.distribution!r}; "
                         "nn_layouts needs 'hypersphere'")
    try:
        budgets = [int(m) for m in args.lookups.split(",")]
    except ValueError:
        raise SystemExit(f"--lookups {args.lookups!r}: expected comma-separated integers") from None
    rows = []
    for m in budgets:
        params = task.params.model_copy(update={"lookups": m, "seed": args.seed})
        validate(params)
        resolved = _Resolved(params)
        test = nn_train.test_instances(resolved)
        fitting = nn_train.sample(resolved, np.random.default_rng([args.seed, 10**9 + 2]), args.fit)
        points = np.concatenate([fitting.points, test.points])
        queries = np.concatenate([fitting.query_points, test.query_points])
        nearest = np.concatenate([fitting.nn_index, test.nn_index])
        direction = np.linalg.qr(np.random.default_rng(args.seed).standard_normal((points.shape[-1], 2)))[0].T
        curves = {kind: layout_curve(points, queries, nearest, args.fit, m, args.bins, kind, direction)
                  for kind in ("projection_sort", "angle_sort")}
        for name, row in nn_train.baseline_curves(resolved, test).items():
            curves[name] = row["curve"]
        for name, curve in curves.items():
            rows.append({"method": name, "n": params.n, "lookups": m, "accuracy": float(curve[-1]),
                         "curve": " ".join(f"{v:.4f}" for v in curve)})
    return rows
