"""Pareto sets and hypervolume against fronts computed by hand."""

import numpy as np
import pytest

from pipeline.pareto import default_reference, hypervolume, non_dominated


@pytest.mark.parametrize("points, modes, expected", [
    # (error, bytes), both minimised: (3,3) is dominated by (2,2); (1,5) and (5,1) are not
    ([[1, 5], [2, 2], [3, 3], [5, 1]], ["min", "min"], [True, True, False, True]),
    # accuracy maximised, lookups minimised
    ([[0.9, 7], [0.8, 7], [0.5, 2], [0.5, 3]], ["max", "min"], [True, False, True, False]),
    # ties are all kept
    ([[1, 1], [1, 1]], ["min", "min"], [True, True]),
    # three objectives
    ([[1, 2, 3], [2, 1, 3], [2, 2, 4], [0, 5, 5]], ["min", "min", "min"], [True, True, False, True]),
])
def test_non_dominated(points, modes, expected):
    assert non_dominated(np.array(points, float), modes).tolist() == expected


def test_hypervolume_two_objectives_by_hand():
    # staircase under ref (4,4): boxes [1,4]x[3,4] + [2,4]x[2,3] + [3,4]x[1,2] = 3 + 2 + 1
    pts = np.array([[1, 3], [2, 2], [3, 1]], float)
    assert hypervolume(pts, ["min", "min"], np.array([4, 4.0])) == pytest.approx(6.0)
    # a dominated point and a point outside the reference add nothing
    more = np.vstack([pts, [[3, 3], [5, 0.5]]])
    assert hypervolume(more, ["min", "min"], np.array([4, 4.0])) == pytest.approx(6.0)


def test_hypervolume_with_max_objective():
    # accuracy (max) vs lookups (min), reference accuracy 0, lookups 10
    pts = np.array([[0.5, 2], [0.9, 6]], float)
    # union of [0,0.5]x[2,10] (area 4) and [0,0.9]x[6,10] (area 3.6) minus overlap [0,0.5]x[6,10] (2)
    assert hypervolume(pts, ["max", "min"], np.array([0.0, 10.0])) == pytest.approx(5.6)


def test_hypervolume_three_objectives_by_hand():
    # one point: a box; two disjoint-corner points: inclusion-exclusion
    ref = np.array([2, 2, 2.0])
    assert hypervolume(np.array([[0, 0, 0.0]]), ["min"] * 3, ref) == pytest.approx(8.0)
    pts = np.array([[0, 1, 1], [1, 0, 1.0]])
    # each box 2*1*1 = 2, overlap [1,2]x[1,2]x[1,2] = 1
    assert hypervolume(pts, ["min"] * 3, ref) == pytest.approx(3.0)


def test_default_reference_is_beyond_the_worst():
    pts = np.array([[1, 10], [2, 5]], float)
    ref = default_reference(pts, ["min", "max"])
    assert ref[0] > 2 and ref[1] < 5


def test_non_dominated_matches_the_pairwise_definition():
    # small integer grids make many ties and duplicates; max columns included
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, d = int(rng.integers(1, 40)), int(rng.integers(1, 4))
        points = rng.integers(0, 4, size=(n, d)).astype(float)
        modes = [str(m) for m in rng.choice(["min", "max"], d)]
        signed = points * np.array([1.0 if m == "min" else -1.0 for m in modes])
        le = (signed[:, None, :] <= signed[None, :, :]).all(axis=2)
        lt = (signed[:, None, :] < signed[None, :, :]).any(axis=2)
        assert non_dominated(points, modes).tolist() == (~(le & lt).any(axis=0)).tolist()
