"""Tests of the end-to-end NN workload (seed 000 §2): model pieces, data, ablations,
bad inputs. Baselines are in test_e2e_nn_baselines.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pipeline.workloads.base import LocalReporter
from pipeline.workloads.e2e import nn_data, nn_train
from pipeline.workloads.e2e.nn_model import NNModel, hard_permutation, neural_sort, nn_loss
from pipeline.workloads.e2e.nn_workload import WORKLOAD, _Resolved

TINY = dict(width=16, layers=1, heads=2, query_hidden=32)


def tiny_model(**overrides) -> NNModel:
    kwargs = dict(n=8, lookups=3, point_dim=1, **TINY) | overrides
    return NNModel(**kwargs)


def params(**overrides):
    return WORKLOAD.make_params(WORKLOAD.smoke_params | overrides)


def test_differentiable_sort_matches_argsort_at_low_temperature():
    scores = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    perm = neural_sort(scores, 1e-4)
    assert torch.allclose(perm.sum(-1), torch.ones(16, 12))
    assert torch.equal(perm.argmax(-1), scores.argsort(-1))
    assert torch.allclose(perm, hard_permutation(scores), atol=1e-3)
    # sorted values come out ascending
    values = (perm @ scores.unsqueeze(-1)).squeeze(-1)
    assert torch.all(values[:, 1:] >= values[:, :-1] - 1e-4)


def test_differentiable_sort_is_soft_at_high_temperature():
    perm = neural_sort(torch.randn(4, 6), 100.0)
    assert perm.max() < 0.5


def test_forward_shapes_and_hard_lookups_are_one_hot():
    model = tiny_model(extra=2)
    out = model(torch.rand(5, 8, 1), torch.rand(5, 1), training=False)
    assert out["lookups"].shape == (5, 3, 10)  # M lookups over N+T positions
    assert out["values"].shape == (5, 3, 1)
    assert out["structure"].shape == (5, 10, 1)
    lookups = out["lookups"]
    assert torch.all((lookups == 0) | (lookups == 1))
    assert torch.all(lookups.sum(-1) == 1)
    # the values are exactly the stored entries at the chosen positions
    picked = torch.gather(out["structure"][..., 0], 1, lookups.argmax(-1))
    assert torch.equal(picked, out["values"][..., 0])


def test_training_lookups_are_soft_and_normalised():
    out = tiny_model()(torch.rand(5, 8, 1), torch.rand(5, 1), training=True)
    assert torch.allclose(out["lookups"].sum(-1), torch.ones(5, 3))
    assert ((out["lookups"] > 0) & (out["lookups"] < 1)).any()


def test_hard_structure_is_a_sorted_permutation_of_the_data_under_monotone_scores():
    model = tiny_model()
    points = torch.rand(4, 8, 1)
    with torch.no_grad():
        model.data_net.rank_head.weight.zero_()
    # with constant scores the permutation is still a permutation of the inputs
    laid_out, perm, _ = model.structure(points, training=False)
    assert torch.equal(perm.sum(1), torch.ones(4, 8))
    assert torch.allclose(laid_out.sort(1).values, points.sort(1).values)


def test_coefficients_extra_space_is_a_combination_of_the_data():
    model = tiny_model(extra=3, extra_mode="coefficients")
    points = torch.zeros(2, 8, 1)
    laid_out, _, _ = model.structure(points, training=True)
    assert torch.all(laid_out[:, 8:] == 0)  # linear in the (zero) data


def test_copy_extra_space_holds_exact_points_and_reads_map_to_them():
    model = tiny_model(extra=3, extra_mode="copy", lookups=2)
    points = torch.rand(5, 8, 1)
    laid_out, placement, _ = model.structure(points, training=False)
    assert placement.shape == (5, 11, 8)
    copies = placement[:, 8:].argmax(-1)  # [B, T]: which input each extra slot copies
    assert torch.equal(laid_out[:, 8:], torch.gather(points, 1, copies.unsqueeze(-1)))
    out = model(points, torch.rand(5, 1), training=False)
    out["lookups"] = F.one_hot(torch.tensor([[9, 0]] * 5), 11).float()  # read extra slot 1, then position 0
    got = nn_train.retrieved_indices(out, 8, permute=True)
    assert np.array_equal(got[:, 0], copies[:, 1].numpy())
    assert np.array_equal(got[:, 1], placement[:, 0].argmax(-1).numpy())
    # in training the copies are soft, but each is still a convex combination of the points
    soft, soft_placement, _ = model.structure(points, training=True)
    assert torch.allclose(soft_placement[:, 8:].sum(-1), torch.ones(5, 3))
    assert torch.all((soft[:, 8:] >= points.min(1, keepdim=True).values - 1e-6)
                     & (soft[:, 8:] <= points.max(1, keepdim=True).values + 1e-6))


def test_ce_credits_a_read_of_a_copy_of_the_nearest_neighbour():
    model = tiny_model(extra=2, extra_mode="copy", lookups=1)
    points = torch.rand(3, 8, 1)
    out = model(points, torch.rand(3, 1), training=False)
    copied = out["perm"][:, 8].argmax(-1)  # the input extra slot 0 copies
    out["lookups"] = F.one_hot(torch.full((3, 1), 8), 10).float()
    assert float(nn_loss(out, copied, "ce", False, adaptive=True)) == pytest.approx(0.0, abs=1e-6)
    assert float(nn_loss(out, (copied + 1) % 8, "ce", False, adaptive=True)) > 5


def test_no_permute_ablation_outputs_transformed_points():
    model = tiny_model(permute=False)
    points = torch.rand(3, 8, 1)
    laid_out, perm, _ = model.structure(points, training=True)
    assert torch.equal(perm, torch.eye(8).expand(3, 8, 8))
    assert not torch.allclose(laid_out.sort(1).values, points.sort(1).values)


def test_non_adaptive_query_models_see_only_the_query():
    model = tiny_model(adaptive=False, point_dim=2)
    assert all(q.net[0].in_features == 2 for q in model.query_models)
    adaptive = tiny_model(point_dim=2)
    assert [q.net[0].in_features for q in adaptive.query_models] == [2, 2 + 10, 2 + 20]


def test_shared_query_model_is_one_model_used_m_times():
    model = tiny_model(shared_query=True)
    assert len(model.query_models) == 1
    out = model(torch.rand(4, 8, 1), torch.rand(4, 1), training=False)
    assert out["lookups"].shape == (4, 3, 8)


def test_frozen_data_network_keeps_its_weights():
    p = _Resolved(params(freeze_data_network=True, steps=5))
    torch.manual_seed(p.seed)
    initial = {k: v.clone() for k, v in nn_train.build_model(p).data_net.state_dict().items()}
    model, _ = nn_train.train(p)
    for key, value in model.data_net.state_dict().items():
        assert torch.equal(value, initial[key]), key
    moved = nn_train.train(_Resolved(params(steps=5)))[0].data_net.state_dict()
    assert any(not torch.equal(moved[k], initial[k]) for k in initial)


def test_losses_point_at_the_nearest_neighbour():
    model = tiny_model()
    points = torch.rand(6, 8, 1)
    out = model(points, torch.rand(6, 1), training=True)
    nn_index = torch.zeros(6, dtype=torch.long)
    for loss in ("mse", "ce"):
        for every in (False, True):
            value = nn_loss(out, nn_index, loss, every, adaptive=True)
            assert value.ndim == 0 and torch.isfinite(value)
    assert nn_loss(out, nn_index, "mse", False, adaptive=False) <= nn_loss(out, nn_index, "mse", True, True) * 10


def _hand_out(lookups: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """A forward output with identity permutation, points 0..n-1, query 0, given lookups."""
    b = lookups.shape[0]
    points = torch.arange(n, dtype=torch.float32).view(1, n, 1).expand(b, n, 1)
    structure = torch.cat([points, torch.full((b, lookups.shape[-1] - n, 1), 50.0)], dim=1)
    return {"lookups": lookups, "values": lookups @ structure, "perm": torch.eye(n).expand(b, n, n),
            "points": points, "query": torch.zeros(b, 1)}


def test_every_lookup_ce_does_not_penalise_an_earlier_read_of_extra_space():
    n, extra = 4, 2
    hit_y, read_extra, miss = (F.one_hot(torch.tensor([i]), n + extra).float() for i in (0, 5, 2))
    nn_index = torch.zeros(1, dtype=torch.long)
    # lookup 1 reads an extra slot, lookup 2 reads y: no loss at all
    free = _hand_out(torch.stack([read_extra, hit_y], 1), n)
    assert float(nn_loss(free, nn_index, "ce", True, adaptive=True)) == pytest.approx(0.0, abs=1e-6)
    # lookup 1 reads a wrong point: penalised; the last lookup must read y itself
    wrong = _hand_out(torch.stack([miss, hit_y], 1), n)
    last_extra = _hand_out(torch.stack([hit_y, read_extra], 1), n)
    assert float(nn_loss(wrong, nn_index, "ce", True, adaptive=True)) > 5
    assert float(nn_loss(last_extra, nn_index, "ce", True, adaptive=True)) > 5


def test_non_adaptive_loss_scores_the_read_closest_to_the_query_even_with_every_lookup():
    n = 4
    hit_y, miss = (F.one_hot(torch.tensor([i]), n).float() for i in (0, 3))
    out = _hand_out(torch.stack([miss, hit_y], 1), n)  # y = 0 is the read closest to q = 0
    nn_index = torch.zeros(1, dtype=torch.long)
    assert float(nn_loss(out, nn_index, "ce", True, adaptive=False)) == pytest.approx(0.0, abs=1e-6)
    assert float(nn_loss(out, nn_index, "ce", True, adaptive=True)) > 5
    # closest_read: an adaptive model trained on the same answer
    assert float(nn_loss(out, nn_index, "ce", True, adaptive=True, closest_read=True)) == pytest.approx(0.0, abs=1e-6)
    first_hit = _hand_out(torch.stack([hit_y, miss], 1), n)  # y read first, a miss last
    closest = nn_loss(first_hit, nn_index, "mse", False, adaptive=True, closest_read=True)
    assert float(closest) == pytest.approx(0.0, abs=1e-6)
    assert float(nn_loss(first_hit, nn_index, "mse", False, adaptive=True)) == pytest.approx(9.0)  # last read: 3 vs 0


@pytest.mark.slow
def test_short_training_lowers_the_loss():
    p = _Resolved(params(steps=60, eval_every=60, batch_size=64, lr=3e-3, loss="ce", loss_every_lookup=True))
    instances = nn_train.test_instances(p)
    torch.manual_seed(0)
    before = nn_train.evaluate(nn_train.build_model(p), p, instances, "cpu")["loss"]
    model, _ = nn_train.train(p)
    after = nn_train.evaluate(model, p, instances, "cpu")["loss"]
    assert after < before


@pytest.mark.parametrize("distribution", nn_data.DISTRIBUTIONS)
def test_every_distribution_samples_valid_instances(distribution):
    # "file" draws from a user's points: a pool of 40 random 5D points and 10 queries
    rng = np.random.default_rng(3)
    pool = nn_data.PointPool(rng.uniform(-1, 1, (40, 5)), rng.uniform(-1, 1, (5, 5)), rng.uniform(-1, 1, (5, 5)))
    kwargs = {"dim": 5, "pool": pool if distribution == "file" else None}
    inst = nn_data.sample(distribution, np.random.default_rng(0), 7, 12, **kwargs)
    assert inst.data.shape[:2] == (7, 12) and inst.data.dtype == np.float32
    assert inst.points.shape[:2] == (7, 12)
    assert np.array_equal(inst.nn_index, inst.distances().argmin(1))
    again = nn_data.sample(distribution, np.random.default_rng(0), 7, 12, **kwargs)
    assert np.array_equal(inst.data, again.data)


def test_hypersphere_query_has_inner_product_rho_with_a_point():
    inst = nn_data.sample("hypersphere", np.random.default_rng(1), 50, 10, dim=30, rho=0.8)
    assert np.allclose(np.linalg.norm(inst.points, axis=-1), 1.0)
    assert np.allclose(np.linalg.norm(inst.query_points, axis=-1), 1.0)
    inner = np.einsum("bnd,bd->bn", inst.points, inst.query_points)
    assert np.allclose(np.isclose(inner, 0.8).sum(1), 1)


def test_hard_distribution_spreads_levels_by_the_base():
    values = nn_data.sample_hard(np.random.default_rng(0), 2000, 15, 7.0)
    parent, sign, depth, levels = nn_data._hard_tree(15)
    assert levels == 4 and sorted(np.bincount(depth)) == [1, 2, 4, 8]
    gaps = np.abs(values[:, 1:] - values[:, parent[1:]])
    assert gaps[:, depth[1:] == 1].mean() > 5 * gaps[:, depth[1:] == 3].mean()


def test_digit_images_encode_their_label():
    inst = nn_data.sample("digits", np.random.default_rng(0), 3, 10)
    assert inst.data.shape == (3, 10, *nn_data.DIGIT_IMAGE_SHAPE)
    labels = np.round(inst.points[..., 0] * nn_data.DIGIT_LABELS).astype(int)
    assert all(len(set(row)) == 10 for row in labels)  # distinct labels per dataset
    assert labels.min() >= 0 and labels.max() < nn_data.DIGIT_LABELS


@pytest.mark.parametrize("overrides, field", [
    ({"lookups": 9, "n": 8}, "lookups"),
    ({"n": 1}, "n"),
    ({"distribution": "gaussian"}, "distribution"),
    ({"distribution": "uniform1d", "dim": 2}, "dim"),
    ({"width": 10, "heads": 4}, "width"),
    ({"extra_space": 2, "extra_mode": "copy", "permute": False}, "extra_mode"),
])
def test_bad_input_is_a_value_error_before_training(overrides, field):
    with pytest.raises(ValueError, match=field):
        p = params(**overrides)
        WORKLOAD.validate(p)
    # M <= N + T is fine once extra space makes room
    WORKLOAD.validate(params(lookups=9, n=8, extra_space=1))


@pytest.mark.slow
def test_run_is_deterministic_reports_and_writes_artifacts():
    reporter = LocalReporter()
    first = WORKLOAD.run(params(plots=True), reporter)
    assert reporter.history and set(first) <= set(WORKLOAD.metrics)
    assert all(np.isfinite(v) for v in first.values())
    assert {"accuracy", "lookups", "extra_space", "binary_search_accuracy"} <= set(first)
    names = {p.name for p in reporter.artifact_dir.iterdir()}
    assert {"accuracy_per_lookup.png", "first_lookup_positions.png", "accuracy_per_lookup.csv", "model.pt"} <= names
    assert WORKLOAD.run(params(plots=True), LocalReporter()) == first


@pytest.mark.parametrize("distribution", ["zipf1d", "hard2d", "hypersphere", "digits"])
def test_every_setting_runs_with_its_baselines(distribution):
    extra = {"dim": 6} if distribution == "hypersphere" else {}
    metrics = WORKLOAD.run(params(distribution=distribution, steps=4, eval_every=4, loss="ce", **extra),
                           LocalReporter())
    expected = {"zipf1d": "treap_accuracy", "hard2d": "kd_tree_accuracy", "hypersphere": "lsh_best_accuracy",
                "digits": "binary_search_accuracy"}[distribution]
    assert expected in metrics and 0.0 <= metrics["accuracy"] <= 1.0


def test_baselines_hook_gives_rows_with_workload_metrics():
    rows = WORKLOAD.baselines(params(extra_space=4))
    methods = {row["method"] for row in rows}
    assert {"binary_search", "interpolation_search", "bucketing"} <= methods
    assert all(set(row) - {"method"} <= set(WORKLOAD.metrics) for row in rows)
    assert any(row["method"] == "bucketing" and row["extra_space"] == 128 for row in rows)


TASKS = sorted((Path(__file__).resolve().parents[1] / "tasks").glob("nn_*.yaml"))


@pytest.mark.parametrize("profile", ["quick", "paper"])
@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.stem)
def test_task_files_validate(task, profile):
    from pipeline.config import load_task

    resolved = load_task(task, profile)
    assert resolved.task.workload == "e2e_nn"
    assert {o.metric for o in resolved.task.objectives} >= {"accuracy"}
    if profile == "paper":
        lr = resolved.space.parameters["lr"]
        assert sorted(lr.values) == [1e-5, 5e-5, 1e-4]  # appendix A.1's grid


def test_all_settings_have_a_task_file():
    stems = {p.stem for p in TASKS}
    assert {"nn_uniform_1d", "nn_zipf_1d", "nn_hard_1d", "nn_uniform_2d", "nn_hard_2d", "nn_hypersphere_30d",
            "nn_digits", "nn_extra_space"} <= stems


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sorted_fraction_counts_ascending_or_descending_layouts(sign, monkeypatch):
    p = _Resolved(params())
    model = nn_train.build_model(p)
    monkeypatch.setattr(model.data_net, "forward",
                        lambda pts: (sign * pts[..., 0], pts, pts.new_zeros(pts.shape[0], 0, 1)))
    result = nn_train.evaluate(model, p, nn_train.test_instances(p), "cpu")
    assert result["sorted_fraction"] == 1.0
    monkeypatch.setattr(model.data_net, "forward",
                        lambda pts: (torch.zeros_like(pts[..., 0]), pts, pts.new_zeros(pts.shape[0], 0, 1)))
    assert nn_train.evaluate(model, p, nn_train.test_instances(p), "cpu")["sorted_fraction"] < 0.5


def test_command_line_runs_one_task_point_and_rejects_unknown_keys(capsys, tmp_path):
    import json

    from pipeline.run import main

    task = str(Path(__file__).resolve().parents[1] / "tasks" / "nn_uniform_1d.yaml")
    tiny = ["n=8", "lookups=2", "width=16", "layers=1", "heads=2", "query_hidden=32", "batch_size=16",
            "steps=4", "eval_every=4", "monitor_instances=32", "eval_instances=64", "plots=false"]
    assert main([task, "--local", *[f"params.{t}" for t in tiny], "--out", str(tmp_path)]) == 0
    assert '"accuracy_lookup_2"' in capsys.readouterr().out
    assert "binary_search,2," in (tmp_path / "accuracy_per_lookup.csv").read_text()
    metrics = json.loads((tmp_path / "summary.json").read_text())["metrics"]
    assert metrics["lookups"] == 2 and (tmp_path / "model.pt").exists()
    assert main([task, "--local", "params.lookupz=3"]) == 2
    assert "params.lookupz" in capsys.readouterr().err
