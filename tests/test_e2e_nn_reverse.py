"""Appendix C.3 reverse-engineering (nn_reverse): one or two directions behind a lookup
rule, and how closely a layout follows a direction."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.workloads.e2e import nn_data, nn_reverse
from pipeline.workloads.e2e.nn_workload import WORKLOAD, _plot_components, _reverse_engineer

D = 12


def sphere(rng, shape):
    x = rng.standard_normal((*shape, D))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def quantile_buckets(values, buckets):
    return np.searchsorted(np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1]), values)


def test_a_rule_on_one_projection_is_explained_by_one_component():
    q = sphere(np.random.default_rng(0), (3000,))
    found = nn_reverse.lookup_components(q, quantile_buckets(q[:, 3], 6))
    assert found.explained[0] > 0.9
    assert abs(found.axes[0, 3]) > 0.95  # the component is the projection's direction
    assert np.isclose(found.explained.sum(), 1.0)


def test_sectors_of_a_plane_need_two_components():
    q = sphere(np.random.default_rng(1), (3000,))
    angle = np.arctan2(q[:, 1], q[:, 0])
    found = nn_reverse.lookup_components(q, quantile_buckets(angle, 8))
    assert found.explained[0] < 0.8
    assert found.explained[:2].sum() > 0.9
    assert np.abs(found.axes[:2, :2]).sum() > 1.5  # both in the plane of e1, e2


def test_too_few_positions_or_mismatched_inputs():
    q = sphere(np.random.default_rng(2), (100,))
    assert nn_reverse.lookup_components(q, (q[:, 0] > 0).astype(int)) is None
    with pytest.raises(ValueError, match="do not match"):
        nn_reverse.lookup_components(q, np.zeros(99, int))


def test_layout_agreement_is_one_for_a_sort_on_the_axis_either_way_and_low_for_random():
    rng = np.random.default_rng(3)
    points = sphere(rng, (400, 16))
    axis = np.eye(D)[5]
    by_axis = (points @ axis).argsort(1).argsort(1)  # position of point i = its rank on the axis
    assert nn_reverse.layout_agreement(points, by_axis, axis) == pytest.approx(1.0)
    assert nn_reverse.layout_agreement(points, 15 - by_axis, axis) == pytest.approx(1.0)
    shuffled = np.argsort(rng.random((400, 16)), 1)
    assert nn_reverse.layout_agreement(points, shuffled, axis) < 0.3
    other = (points @ np.eye(D)[6]).argsort(1).argsort(1)
    assert nn_reverse.layout_agreement(points, other, axis) < 0.3


def test_workload_sets_the_metrics_and_draws_figure_19_on_the_hypersphere(tmp_path):
    rng = np.random.default_rng(4)
    instances = nn_data.sample("hypersphere", rng, 600, 8, dim=D, rho=0.8)
    params = WORKLOAD.make_params(WORKLOAD.smoke_params | {"distribution": "hypersphere", "dim": D, "n": 8})
    evaluation = {"first_positions": quantile_buckets(instances.query_points[:, 0], 8),
                  "placed_positions": instances.points[..., 0].argsort(1).argsort(1)}
    metrics: dict[str, float] = {}
    components = _reverse_engineer(params, evaluation, instances, metrics)
    assert metrics["query_pca_top1"] > 0.9 and metrics["query_pca_top2"] >= metrics["query_pca_top1"]
    assert metrics["layout_pc1_spearman"] > 0.95  # PC 1 is close to, not exactly, e1
    assert set(metrics) <= set(WORKLOAD.metrics)
    _plot_components(tmp_path, components, evaluation, instances)
    assert (tmp_path / "lookup_components.png").stat().st_size > 0
    # not on other distributions, nor without a permutation
    other = WORKLOAD.make_params(WORKLOAD.smoke_params | {"distribution": "uniform2d"})
    assert _reverse_engineer(other, evaluation, instances, {}) is None
    assert _reverse_engineer(params, {"first_positions": evaluation["first_positions"]}, instances, {}) is None
