"""Tests of the learned frequency sketch (seed 000 §3.1): budgets, exact counts, the delta
read-out, streams, a short training, bad inputs, task files and the smoke run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.workloads.base import LocalReporter
from pipeline.workloads.e2e.freq_data import (
    digit_pools, load_stream_file, render_numbers, sample_streams, true_counts, zipf_probabilities)
from pipeline.workloads.e2e.freq_model import FreqModelConfig, Predictor, build_model, hashing_model
from pipeline.workloads.e2e.freq_readout import (
    apply_readout, delta_sweep, fit_delta, sketch_estimates)
from pipeline.workloads.e2e.freq_train import FreqSetting, train
from pipeline.workloads.e2e.freq_workload import WORKLOAD, FreqParams, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: a second intra-op thread only adds contention (10x slower on a
    loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(M: int = 2, k: int = 8, universe: int = 30, images: bool = False):
    torch.manual_seed(0)
    config = FreqModelConfig(k=k, M=M, hidden=16, embed_dim=8, predictor_hidden=8)
    return build_model(config, universe=universe, images=images)


# --- budgets -------------------------------------------------------------------------


@pytest.mark.parametrize("M", [1, 2, 4])
def test_inference_writes_at_most_M_counters_per_item(M):
    model = small_model(M=M).eval()
    items = torch.randint(0, 30, (5, 40))
    positions, values = model.updates(items)
    # each of the M writes is an exact one-hot: one counter each
    assert torch.all((positions != 0).sum(-1) == 1)
    # replaying the stream one item at a time changes at most M counters per arrival
    memory = torch.zeros(5, 8)
    for t in range(items.shape[1]):
        step = model.memory(positions[:, t:t + 1], values[:, t:t + 1])
        assert int((step != 0).sum(-1).max()) <= M
        memory = memory + step
    torch.testing.assert_close(memory, model.build(items))


@pytest.mark.parametrize("M", [1, 2, 4])
def test_inference_reads_M_counters_per_query(M):
    model = small_model(M=M).eval()
    memory = torch.randn(4, 8)
    queries = torch.randint(0, 30, (4, 6))
    estimate, lookups, reads = model.read(memory, queries)
    assert lookups.shape == (4, 6, M, 8)
    assert torch.all((lookups != 0).sum(-1) == 1)  # M one-hot lookups per query
    # counters that were not looked up do not influence the answer
    untouched = lookups.sum(-2).amax(1) == 0  # (B, k): read by no query of the stream
    poisoned = memory.masked_fill(untouched, 1e6)
    torch.testing.assert_close(model.read(poisoned, queries)[0], estimate)
    torch.testing.assert_close(reads, (lookups * memory[:, None, None]).sum(-1))


def test_training_mode_is_soft_and_differentiable():
    model = small_model(M=2).train()
    positions, _ = model.updates(torch.randint(0, 30, (2, 10)))
    torch.testing.assert_close(positions.sum(-1), torch.ones(2, 10, 2))
    assert (positions > 0).sum() > positions.shape[0] * 10 * 2  # not one-hot
    loss = model(torch.randint(0, 30, (2, 10)), torch.randint(0, 30, (2, 3))).sum()
    loss.backward()
    assert model.writer.net[0].weight.grad.abs().sum() > 0
    assert model.readers[0].net[0].weight.grad.abs().sum() > 0


def test_M_above_k_is_rejected_by_the_model():
    with pytest.raises(ValueError, match="must not exceed k"):
        build_model(FreqModelConfig(k=2, M=3, hidden=4, embed_dim=2), universe=5)


# --- exact counts and the delta read-out ------------------------------------------------


def test_exact_counts_without_collisions_hand_set_model():
    universe = 40
    model = hashing_model(universe, k=64, M=1).eval()  # k >= universe: a counter per item
    rng = np.random.default_rng(0)
    streams = sample_streams(rng, 6, 50, 10, universe, 1.2)
    est = model(torch.as_tensor(streams.items), torch.as_tensor(streams.queries))
    np.testing.assert_allclose(est.detach().numpy(), streams.counts, atol=1e-5)


def test_exact_counts_without_collisions_countmin():
    rng = np.random.default_rng(1)
    streams = sample_streams(rng, 4, 100, 20, 50, 1.2)
    # depth 1 over 2^20 counters: 50 ids collide with probability < 1e-3
    est = sketch_estimates(streams, "countmin", width=1 << 20, depth=1)
    np.testing.assert_array_equal(est, streams.counts)
    half = sketch_estimates(streams, "countmin", width=1 << 20, depth=2, delta=0.5)
    np.testing.assert_allclose(half, 0.5 * streams.counts)


@pytest.mark.parametrize("M,delta,scale", [(1, 0.87, 1.0), (2, 0.4, 2.0), (1, 1.0, 0.5)])
def test_delta_readout_recovers_known_delta(M, delta, scale):
    model = hashing_model(30, k=32, M=M, delta=delta, predictor_scale=scale)
    fit = fit_delta(model, torch.arange(10), max_count=15)
    assert fit.delta == pytest.approx(delta * scale, abs=1e-5)
    assert fit.intercept == pytest.approx(0.0, abs=1e-4)
    assert fit.delta_written == pytest.approx(delta, abs=1e-5)
    np.testing.assert_allclose(fit.estimates, delta * scale * np.arange(1, 16), atol=1e-4)


def _scramble(module: torch.nn.Module, seed: int = 0) -> None:
    """Random non-zero weights everywhere, so the predictor is far from the mean."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("M", [1, 2, 4])
def test_default_predictor_is_homogeneous_with_unit_scale(M):
    model = small_model(M=M)
    _scramble(model.predictor, seed=M)
    reads = torch.rand(50, M) * 10
    for c in (0.0, 0.5, 3.0):
        torch.testing.assert_close(model.predictor(c * reads), c * model.predictor(reads))
    torch.testing.assert_close(model.predictor(torch.full((3, M), 2.5)), torch.full((3,), 2.5))
    free = build_model(FreqModelConfig(k=8, M=M, hidden=16, embed_dim=8, predictor_hidden=8,
                                       predictor_bias=True, predictor_unit=False), universe=30)
    _scramble(free.predictor)
    assert abs(float(free.predictor(torch.zeros(1, M)).detach())) > 1e-3  # a bias can shift answers


@pytest.mark.parametrize("M,delta", [(1, 0.87), (2, 0.93), (4, 1.3)])
def test_written_value_is_the_fitted_delta_with_the_default_predictor(M, delta):
    # CountMin-like hashes that store `delta` per arrival, read by a scrambled default psi
    model = hashing_model(30, k=32, M=M, delta=delta)
    model.predictor = Predictor(M, 8, bias=False, unit=True)
    _scramble(model.predictor, seed=M)
    fit = fit_delta(model, torch.arange(30), max_count=12)
    assert fit.delta_written == pytest.approx(delta, rel=1e-5)
    assert fit.delta == pytest.approx(delta, rel=1e-4)
    assert fit.intercept == pytest.approx(0.0, abs=1e-4)


def test_positive_values_start_at_value_init_and_stay_positive():
    torch.manual_seed(0)
    config = FreqModelConfig(k=8, M=2, hidden=16, embed_dim=8, predictor_hidden=8,
                             positive_values=True, value_init=0.9)
    model = build_model(config, universe=30)
    with torch.no_grad():  # a zero value head: the stored value is softplus(shift) alone
        model.writer.net[-1].weight[-2:] = 0.0
        model.writer.net[-1].bias[-2:] = 0.0
    _, values = model.updates(torch.arange(30))
    torch.testing.assert_close(values, torch.full((30, 2), 0.9))
    with torch.no_grad():
        model.writer.net[-1].bias[-2:] = -50.0  # a writer pushed far negative
    _, values = model.updates(torch.arange(30))
    assert torch.all(values >= 0)


def test_delta_sweep_matches_countmin_with_that_delta():
    rng = np.random.default_rng(2)
    streams = sample_streams(rng, 40, 100, 8, 1000, 1.2)
    deltas = np.array([0.6, 0.87, 1.0])
    maes = delta_sweep(streams, width=16, depth=2, deltas=deltas)
    for d, value in zip(deltas, maes):
        direct = np.abs(sketch_estimates(streams, "countmin", 16, 2, delta=d) - streams.counts).mean()
        assert value == pytest.approx(direct, rel=1e-5)
    # with 32 counters for ~50 distinct ids, collisions make a delta below 1 better
    assert maes[1] < maes[2]


def test_readout_curve_applied_to_countmin_counts():
    model = hashing_model(30, k=32, M=1, delta=1.0, predictor_scale=0.5)
    fit = fit_delta(model, torch.arange(5), max_count=10)
    counts = np.array([1.0, 2.5, 10.0, 14.0])
    np.testing.assert_allclose(apply_readout(counts, fit), 0.5 * counts, atol=1e-5)


# --- streams ---------------------------------------------------------------------------


def test_zipf_streams_counts_and_rank_order():
    rng = np.random.default_rng(0)
    s = sample_streams(rng, 300, 100, 8, 1000, 1.2)
    assert s.items.shape == (300, 100) and s.queries.shape == (300, 8)
    assert s.items.min() >= 0 and s.items.max() < 1000
    np.testing.assert_array_equal(s.counts, true_counts(s.items, s.queries))
    top = np.array([np.bincount(row, minlength=1000).argmax() for row in s.items[:50]])
    assert len(set(top.tolist())) > 20  # the heaviest id differs between streams
    fixed = sample_streams(rng, 300, 100, 8, 1000, 1.2, fixed_rank_order=True)
    p1 = zipf_probabilities(1000, 1.2)[0]
    assert (fixed.items == 0).mean() == pytest.approx(p1, rel=0.05)  # id 0 is the heavy hitter


def test_digit_images_split_and_render():
    train_pool, held_out = digit_pools(0.3)
    assert len(train_pool.images) + len(held_out.images) == 1797
    assert np.all(held_out.size >= 1) and np.all(train_pool.size >= 1)
    rng = np.random.default_rng(0)
    images = render_numbers(rng, np.array([[7, 42], [99, 0]]), held_out)
    assert images.shape == (2, 2, 8, 24) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    # the last digit of 7 is a 7 from the held-out pool
    sevens = held_out.images[held_out.start[7]:held_out.start[7] + held_out.size[7]]
    assert any(np.array_equal(images[0, 0, :, 16:], s) for s in sevens)


# --- training ------------------------------------------------------------------------


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    config = FreqModelConfig(k=16, M=1, hidden=32, embed_dim=16, predictor_hidden=16,
                             temperature=1.0, logit_gain=5.0)
    model = build_model(config, universe=100)
    setting = FreqSetting(universe=100, length=50, queries=8)
    result = train(model, setting, steps=120, batch_size=32, lr=3e-3, balance=0.3, seed=0)
    assert np.mean(result.losses[-20:]) < 0.8 * np.mean(result.losses[:20])


def test_image_model_forward_shapes():
    model = small_model(M=1, universe=100, images=True).eval()
    images = torch.rand(2, 5, 8, 24)
    est = model(images, torch.rand(2, 3, 8, 24))
    assert est.shape == (2, 3)


# --- bad inputs ------------------------------------------------------------------------


def test_bad_inputs_raise_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError, match="exceeds params.k"):
        WORKLOAD.validate(FreqParams(k=4, M=8))
    with pytest.raises(ValueError, match="universe"):
        FreqParams(universe=0)  # empty universe
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no items") as err:
        WORKLOAD.validate(FreqParams(stream_file=str(empty)))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="does not exist"):
        WORKLOAD.validate(FreqParams(stream_file=str(tmp_path / "missing.txt")))
    out_of_range = tmp_path / "big.txt"
    out_of_range.write_text("1\n2\n5000\n")
    with pytest.raises(ValueError, match="outside"):
        WORKLOAD.validate(FreqParams(stream_file=str(out_of_range)))
    with pytest.raises(ValueError, match="at most 1000 labels"):
        WORKLOAD.validate(FreqParams(setting="images", universe=2000))
    with pytest.raises(ValueError, match="sweep_deltas"):
        WORKLOAD.validate(FreqParams(sweep_deltas=[1.2, 0.5, 0.01]))
    with pytest.raises(ValueError):
        FreqParams(nonsense=1)


def test_bad_input_fails_before_training(tmp_path):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.array([], dtype=np.int64))
    report = LocalReporter(artifact_dir=tmp_path / "art")
    with pytest.raises(ValueError, match="no items"):
        run(FreqParams(**{**WORKLOAD.smoke_params, "stream_file": str(empty)}), report)
    assert report.history == []  # nothing trained or reported


def test_stream_file_is_cut_into_streams(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("\n".join(str(i % 7) for i in range(25)))
    streams = load_stream_file(path, universe=10, length=10)
    assert streams.shape == (2, 10)


# --- task files and the smoke run ---------------------------------------------------------


@pytest.mark.parametrize("task", sorted((ROOT / "tasks").glob("freq_*.yaml")))
def test_task_files_validate(task):
    from pipeline.config import load_task

    for profile in ("quick", "paper"):
        resolved = load_task(task, profile=profile)
        assert resolved.task.workload == "e2e_freq"


def test_task_files_exist():
    names = {p.name for p in (ROOT / "tasks").glob("freq_*.yaml")}
    assert {"freq_zipf.yaml", "freq_heavy_hitters.yaml"} <= names
    for name in names:
        doc = yaml.safe_load((ROOT / "tasks" / name).read_text())
        assert {"quick", "paper"} <= set(doc["profiles"])


@pytest.mark.slow
def test_smoke_run_is_finite_and_repeatable(tmp_path):
    first = run(FreqParams(**WORKLOAD.smoke_params), LocalReporter(artifact_dir=tmp_path / "a"))
    second = run(FreqParams(**WORKLOAD.smoke_params), LocalReporter(artifact_dir=tmp_path / "b"))
    assert set(first) <= set(WORKLOAD.metrics)
    assert all(np.isfinite(v) for v in first.values())
    for key in first:
        if key != "train_seconds":
            assert first[key] == pytest.approx(second[key]), key
    for name in ("front.csv", "front.png", "delta_readout.csv", "delta_readout.json",
                 "delta_sweep.csv"):
        assert (tmp_path / "a" / name).is_file()


@pytest.mark.slow
def test_smoke_run_images_writes_decision_boundary(tmp_path):
    params = FreqParams(**{**WORKLOAD.smoke_params, "setting": "images", "universe": 20})
    metrics = run(params, LocalReporter(artifact_dir=tmp_path))
    assert 0 <= metrics["own_counters_top10"] <= 10
    rows = (tmp_path / "decision_boundary.csv").read_text().splitlines()
    assert len(rows) == 21
