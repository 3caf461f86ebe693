"""Each classic NN baseline (seed 000 §2, C.4.1, D) against brute force or a plain Python
reference on small instances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.workloads.e2e import nn_baselines as base
from pipeline.workloads.e2e import nn_data


def instances(distribution="uniform1d", batch=300, n=13, seed=0, **kw):
    return nn_data.sample(distribution, np.random.default_rng(seed), batch, n, **kw)


def test_accuracy_curve_applies_best_so_far_rule():
    inst = instances(batch=4, n=5)
    truth = base.brute_force(inst)
    far = inst.distances().argmax(1)
    retrieved = np.stack([far, truth, far], axis=1)
    assert np.array_equal(base.accuracy_curve(inst, retrieved), [0.0, 1.0, 1.0])
    assert base.accuracy_curve(inst, np.full((4, 1), -1))[0] == 0.0  # extra-slot reads never answer


@pytest.mark.parametrize("n", [2, 7, 16, 33])
def test_binary_search_finds_the_nearest_neighbour_with_log_lookups(n):
    inst = instances(n=n)
    lookups = math.ceil(math.log2(n + 1)) + 1
    curve = base.accuracy_curve(inst, base.binary_search(inst, lookups))
    assert curve[-1] == 1.0
    assert np.all(np.diff(curve) >= 0)


def test_binary_search_first_lookup_is_the_middle():
    inst = instances(n=15)
    first = base.binary_search(inst, 1)[:, 0]
    ranks = np.argsort(np.argsort(inst.points[..., 0], 1), 1)
    assert np.all(ranks[np.arange(len(first)), first] == 7)


@pytest.mark.parametrize("distribution", ["uniform1d", "zipf1d", "hard1d"])
def test_interpolation_search_finds_the_nearest_neighbour_with_n_lookups(distribution):
    inst = instances(distribution, n=12)
    low, high = nn_data.support(distribution)
    assert base.accuracy_curve(inst, base.interpolation_search(inst, 12, low, high))[-1] == 1.0


def test_interpolation_beats_binary_search_on_uniform_data():
    inst = instances(n=64, batch=2000)
    binary = base.accuracy_curve(inst, base.binary_search(inst, 3))
    interpolation = base.accuracy_curve(inst, base.interpolation_search(inst, 3, -1.0, 1.0))
    assert interpolation[-1] > binary[-1]


def _python_treap_path(keys, priorities, query, lookups):
    """Reference: recursive treap over sorted keys, root = max priority in a range."""
    path, lo, hi = [], 0, len(keys)
    while lo < hi and len(path) < lookups:
        root = lo + int(np.argmax(priorities[lo:hi]))
        path.append(root)
        lo, hi = (lo, root) if query < keys[root] else (root + 1, hi)
    return path + [path[-1]] * (lookups - len(path))


def test_treap_matches_a_python_reference_and_finds_the_neighbour():
    inst = instances("zipf1d", batch=50, n=20)
    ordered = np.sort(inst.points[..., 0], 1)
    order = np.argsort(inst.points[..., 0], 1, kind="stable")
    rng = np.random.default_rng(3)
    priorities = rng.random(ordered.shape)
    got = base.treap_search(inst, 6, priorities_sorted=priorities)
    for row in range(50):
        want = order[row, _python_treap_path(ordered[row], priorities[row], inst.query_points[row, 0], 6)]
        assert np.array_equal(got[row], want)
    assert base.accuracy_curve(inst, base.treap_search(inst, 20))[-1] == 1.0


def test_treap_root_is_the_most_frequently_answered_point():
    inst = instances("zipf1d", batch=100, n=30)
    ordered = np.sort(inst.points[..., 0], 1)
    mass = base.zipf_cell_mass(ordered, 200, 1.2)
    assert np.allclose(mass.sum(1), 1.0)
    first = base.treap_search(inst, 1)[:, 0]
    values = inst.points[np.arange(100), first, 0]
    assert np.allclose(values, ordered[np.arange(100), mass.argmax(1)])
    binary = base.accuracy_curve(inst, base.binary_search(inst, 3))[-1]
    assert base.accuracy_curve(inst, base.treap_search(inst, 3))[-1] > binary  # the point of the treap


def _python_kd_path(points, query, lookups):
    """Reference k-d tree descent: median (upper middle) on axis depth % d, no backtracking."""
    idx, depth, path = list(range(len(points))), 0, []
    while idx and len(path) < lookups:
        axis = depth % points.shape[1]
        idx = sorted(idx, key=lambda i: points[i, axis])
        mid = len(idx) // 2
        path.append(idx[mid])
        idx = idx[:mid] if query[axis] < points[idx[mid], axis] else idx[mid + 1:]
        depth += 1
    return path + [path[-1]] * (lookups - len(path))


@pytest.mark.parametrize("distribution", ["uniform2d", "hard2d"])
def test_kd_tree_matches_a_python_reference(distribution):
    inst = instances(distribution, batch=40, n=21)
    got = base.kd_tree_search(inst, 6)
    for row in range(40):
        assert list(got[row]) == _python_kd_path(inst.points[row], inst.query_points[row], 6)


def test_kd_tree_in_1d_is_binary_search():
    inst = instances(n=31)
    assert np.array_equal(base.kd_tree_search(inst, 5), base.binary_search(inst, 5))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_lsh_reads_the_query_bucket_first_and_everything_with_n_lookups(k):
    inst = instances("hypersphere", batch=60, n=16, dim=8)
    assert base.accuracy_curve(inst, base.lsh_search(inst, 16, k))[-1] == 1.0
    got = base.lsh_search(inst, 16, k, seed=5)
    assert np.all(np.sort(got, 1) == np.arange(16))  # a permutation: every slot holds one point
    # reference hashing with the same random draws: points sharing the query's code come first
    rng = np.random.default_rng(5)
    planes = rng.standard_normal((60, k, 8))
    codes = (np.einsum("bnd,bkd->bnk", inst.points, planes) > 0) @ (1 << np.arange(k))
    qcodes = (np.einsum("bd,bkd->bk", inst.query_points, planes) > 0) @ (1 << np.arange(k))
    size = 16 // 2**k
    for row in range(60):
        same = np.flatnonzero(codes[row] == qcodes[row])
        head = got[row, :size]
        expected = same[:size]  # in input order, up to the bucket's capacity
        assert np.array_equal(head[:len(expected)], expected)


def test_bucketing_stores_the_point_nearest_each_midpoint():
    inst = instances(batch=100, n=10)
    t = 8
    got = base.bucketing(inst, t, -1.0, 1.0)[:, 0]
    mids = -1 + (np.arange(t) + 0.5) * 2 / t
    bucket = np.clip(((inst.query_points[:, 0] + 1) / 2 * t).astype(int), 0, t - 1)
    for row in range(100):
        assert got[row] == np.abs(inst.points[row, :, 0] - mids[bucket[row]]).argmin()


def test_bucketing_approaches_brute_force_with_many_buckets():
    inst = instances(batch=500, n=20)
    small = base.accuracy_curve(inst, base.bucketing(inst, 4, -1.0, 1.0))[0]
    large = base.accuracy_curve(inst, base.bucketing(inst, 1024, -1.0, 1.0))[0]
    assert small < large and large > 0.95
    assert base.accuracy_curve(inst, base.bucketing(inst, 0, -1.0, 1.0))[0] == 0.0


def test_sorted_search_rejects_multidimensional_points():
    with pytest.raises(ValueError, match="1D"):
        base.binary_search(instances("uniform2d"), 3)
