"""Pareto fronts and hypervolume over a task's objectives.

Written here rather than taken from Optuna because the front must be computed over
finished Tune trials (early-stopped ones excluded), not over a study, and Optuna's
hypervolume lives in a private module. Both are exact: the front by one sweep in
lexicographic order against the front so far, the hypervolume by slicing along the
last objective (Hypervolume by Slicing Objectives), fine for the few hundred points a
front has.
"""

from __future__ import annotations

import numpy as np


def to_minimisation(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Negate the columns to maximise, so that smaller is better everywhere."""
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    return np.asarray(values, dtype=np.float64) * signs


def non_dominated(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (ties: both kept).

    One sweep in lexicographic order: a row can only be dominated by a row before it
    (a dominating row is no worse everywhere and better somewhere, so it sorts first),
    and only the non-dominated rows seen so far need checking (whatever dominates a
    dominated row dominates what it dominates). Time O(n log n + n f), memory O(n),
    with f the front's size: thousands of trials in milliseconds, where the pairwise
    n x n comparison took seconds and n^2 memory."""
    points = to_minimisation(values, modes)
    n = len(points)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort(points.T[::-1])  # by the first column, then the second, ...
    front = np.empty_like(points)
    size = 0
    for i in order:
        p = points[i]
        if size:
            kept = front[:size]
            if ((kept <= p).all(axis=1) & (kept < p).any(axis=1)).any():
                continue
        front[size] = p
        size += 1
        mask[i] = True
    return mask


def hypervolume(values: np.ndarray, modes: list[str], reference: np.ndarray) -> float:
    """Volume dominated by `values` and bounded by `reference` (in the objectives' own
    directions: the reference is the worst corner). Points not better than the
    reference in every objective add nothing."""
    points = to_minimisation(values, modes)
    ref = to_minimisation(np.asarray(reference, dtype=np.float64)[None, :], modes)[0]
    points = points[(points < ref).all(axis=1)]
    if len(points) == 0:
        return 0.0
    points = points[non_dominated(points, ["min"] * points.shape[1])]
    return float(_hso(points, ref))


def _hso(points: np.ndarray, ref: np.ndarray) -> float:
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    order = np.argsort(points[:, -1])
    points = points[order]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else ref[-1]
        depth = upper - points[i, -1]
        if depth <= 0:
            continue
        slab = points[: i + 1, :-1]
        slab = slab[non_dominated(slab, ["min"] * slab.shape[1])]
        volume += depth * _hso(slab, ref[:-1])
    return volume


def default_reference(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Worst value seen in each objective, pushed 10% further out."""
    points = to_minimisation(values, modes)
    worst = points.max(axis=0)
    span = np.where(np.abs(worst) > 0, np.abs(worst) * 0.1, 1.0)
    return to_minimisation((worst + span)[None, :], modes)[0]
