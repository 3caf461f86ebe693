"""Lego sketch (seed 003): embedding, addressing, routing, Store/Query, checkpoints,
training, streams and baselines. Fast unit tests; the workload runs are in
test_lego_workload.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.workloads.lego.baselines import elastic_estimates, elastic_split, learned_count_sketch
from pipeline.workloads.lego.model import (Ablations, BrickGeometry, LegoSketch, hash_items, load_brick,
                                           save_brick)
from pipeline.workloads.lego.streams import eval_stream, read_stream_file, sample_meta_tasks, zipf_counts
from pipeline.workloads.lego.train import SelfGuidedLoss, TrainConfig, train_brick
from pipeline.workloads.sketches import CountMin

SMALL = BrickGeometry(depth=4, slots=512, basis_size=32)


def _items(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(-(1 << 62), 1 << 62, size=n, dtype=np.int64))


# -- hashing, embedding, addressing, routing (seed 003 §3.1) ---------------------------------
def test_hash_range_shape_and_determinism():
    mult = torch.tensor([3, 5, 7], dtype=torch.int64)
    add = torch.tensor([1, 2, 3], dtype=torch.int64)
    x = _items(1000)
    h = hash_items(x, mult, add, 97)
    assert h.shape == (1000, 3) and h.min() >= 0 and h.max() < 97
    assert torch.equal(h, hash_items(x, mult, add, 97))
    assert not torch.equal(h[:, 0], h[:, 1])  # independent rows


def test_embedding_normalised_positive_and_ablations():
    model = LegoSketch(SMALL)
    emb = model.embed(_items(500))
    assert emb.shape == (500, SMALL.depth)
    assert (emb > 0).all()
    torch.testing.assert_close(emb.sum(1), torch.full((500,), float(SMALL.depth)))
    raw = LegoSketch(SMALL, Ablations(normalize=False)).embed(_items(500))
    assert not torch.allclose(raw.sum(1), torch.full((500,), float(SMALL.depth)))
    fixed = LegoSketch(SMALL, Ablations(learnable_vector=False))
    assert not fixed.basis.requires_grad


def test_embedding_values_come_from_the_learnable_vector():
    model = LegoSketch(SMALL, Ablations(normalize=False))
    emb = model.embed(_items(300))
    assert set(np.round(emb.detach().numpy().ravel(), 6)) <= set(np.round(model.basis.detach().numpy(), 6))


def test_address_and_routing_ranges():
    model = LegoSketch(SMALL)
    x = _items(20000)
    address = model.address(x)
    assert address.shape == (20000, SMALL.depth) and address.min() >= 0 and address.max() < SMALL.slots
    assert torch.equal(model.route(x, 1), torch.zeros(20000, dtype=torch.int64))
    bricks = model.route(x, 7)
    assert bricks.min() >= 0 and bricks.max() < 7
    share = torch.bincount(bricks, minlength=7).float() / 20000
    assert share.min() > 0.12 and share.max() < 0.17  # uniform routing: ~1/7 each


def test_memory_grows_with_bricks_not_items():
    model = LegoSketch(SMALL)
    state = model.new_memory(3)
    state = model.store(state, _items(50000))
    assert state.memory.shape == (3, SMALL.depth, SMALL.slots)
    assert state.bucket.sum().item() == pytest.approx(50000)
    with pytest.raises(ValueError, match="brick_count"):
        model.new_memory(0)


# -- Store / Query ------------------------------------------------------------------------------
@pytest.mark.parametrize("kernels", [True, False])
def test_store_then_query_exact_with_huge_memory(kernels):
    model = LegoSketch(BrickGeometry(depth=3, slots=1 << 20, basis_size=24))
    model.use_kernels = kernels
    x = _items(40, seed=1)
    counts = torch.arange(1, 41, dtype=torch.float32) * 3
    state = model.store(model.new_memory(2), x, counts)
    estimate = model.query(state, x, mode="rule")
    torch.testing.assert_close(estimate, counts, rtol=1e-5, atol=1e-4)
    assert state.bucket.sum().item() == pytest.approx(float(counts.sum()))


def test_store_is_additive_and_overestimates():
    model = LegoSketch(SMALL)
    x = _items(3000)
    counts = torch.from_numpy(np.maximum(1, np.round(zipf_counts(3000, 1.1)))).float()
    once = model.store(model.new_memory(2), x, counts)
    twice = model.new_memory(2)
    for half in (slice(0, 1500), slice(1500, 3000)):
        twice = model.store(twice, x[half], counts[half])
    torch.testing.assert_close(once.memory, twice.memory, rtol=1e-5, atol=1e-3)
    rule = model.query(once, x, mode="rule")
    assert (rule >= counts * (1 - 1e-5)).all()  # positive embeddings: never below the truth
    final = model.query(once, x, mode="auto")
    assert (final <= rule + 1e-4).all() and (final >= 0).all()


def _model_with_random_decoder(geometry, ablations):
    """A sketch whose decoder is not the identity (random weights, estimates below the
    rule), with 20000 items and counts to store: for the kernel-against-torch tests."""
    torch.manual_seed(0)
    model = LegoSketch(geometry, ablations)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        model.decoder.head[-1].bias.fill_(0.5)
    return model, _items(20000), torch.rand(20000) * 5


@pytest.mark.parametrize("ablations", [Ablations(), Ablations(scanning=False), Ablations(normalize=False)])
def test_kernels_match_torch_reference(ablations):
    """The numba Store/Query (fused decoder, per-brick folded biases) gives the torch
    path's estimates in every query mode."""
    model, x, counts = _model_with_random_decoder(SMALL, ablations)
    outs = {}
    for flag in (True, False):
        model.use_kernels = flag
        state = model.store(model.new_memory(5), x, counts)
        outs[flag] = (state.memory.clone(), {mode: model.query(state, x, mode=mode, item_threshold=0.0, skew_threshold=9.0)
                                             for mode in ("neural", "auto", "rule")})
    torch.testing.assert_close(outs[True][0], outs[False][0], rtol=1e-5, atol=1e-3)
    for mode in ("neural", "auto", "rule"):
        torch.testing.assert_close(outs[True][1][mode], outs[False][1][mode], rtol=1e-4, atol=1e-4)
    neural, rule = outs[False][1]["neural"], outs[False][1]["rule"]
    assert (neural < rule - 0.1).float().mean() > 0.5  # the decoder was exercised, not just the min
    if not ablations.scanning:
        return  # without scanning "auto" decodes every brick
    # some bricks decoded, some read by the rule: the kernel gathers the decoded items into
    # tiles and must put each estimate back in its item's place
    with torch.no_grad():
        threshold = float(model.scan(state)[2].median()) * model.item_scale
    mixed = {}
    for flag in (True, False):
        model.use_kernels = flag
        use_neural, _ = model.ensemble_choice(state, "auto", item_threshold=threshold, skew_threshold=9.0)
        mixed[flag] = model.query(state, x, mode="auto", item_threshold=threshold, skew_threshold=9.0)
    assert 0 < int(use_neural.sum()) < len(use_neural)
    torch.testing.assert_close(mixed[True], mixed[False], rtol=1e-4, atol=1e-4)


def test_linear_counting_gate_counts_distinct_items_from_empty_slots():
    """The gate's item count by linear counting: within a few percent of the true
    distinct count per brick (counts and repeats do not matter), inf on a full brick,
    and the gate follows it: rule read below the threshold, neural above."""
    model = LegoSketch(BrickGeometry(depth=4, slots=4096, basis_size=32))
    x = _items(12000)
    counts = torch.from_numpy(np.random.default_rng(1).zipf(1.3, size=12000).astype(np.float32))
    state = model.store(model.new_memory(3), torch.cat([x, x[:5000]]), torch.cat([counts, counts[:5000]]))
    truth = torch.bincount(model.route(x, 3), minlength=3).float()
    estimate = model.linear_counting(state)
    assert ((estimate / truth - 1).abs() < 0.05).all(), (estimate, truth)
    full = model.store(model.new_memory(1), _items(200000, seed=2))
    assert torch.isinf(model.linear_counting(full)).all()
    for threshold, expect in ((float(truth.min()) * 0.8, True), (float(truth.max()) * 1.2, False)):
        use_neural, _ = model.ensemble_choice(state, "auto", item_threshold=threshold, skew_threshold=9.0,
                                              item_estimate="linear_counting")
        assert bool(use_neural.all()) is expect and bool(use_neural.any()) is expect
    with pytest.raises(ValueError, match="item_estimate"):
        model.ensemble_choice(state, "auto", item_estimate="hll")
    # the no-scanning ablation keeps the linear-counting gate (the scanner's gate needs a scanner)
    blind = LegoSketch(BrickGeometry(depth=4, slots=4096, basis_size=32), Ablations(scanning=False))
    state = blind.store(blind.new_memory(3), x, counts)
    high = float(truth.max()) * 1.2
    assert not blind.ensemble_choice(state, "auto", item_threshold=high, item_estimate="linear_counting")[0].any()
    assert blind.ensemble_choice(state, "auto", item_threshold=high, item_estimate="scan")[0].all()


def test_kernels_match_torch_with_the_linear_counting_gate_and_no_scanner():
    """No scanner, linear-counting gate: some bricks decoded, some read by rule, and the
    numba Query puts each estimate back in its item's place like the torch path."""
    model, x, counts = _model_with_random_decoder(BrickGeometry(depth=4, slots=4096, basis_size=32),
                                                  Ablations(scanning=False))
    outs = {}
    for flag in (True, False):
        model.use_kernels = flag
        state = model.store(model.new_memory(5), x, counts)
        gate = dict(item_threshold=float(model.linear_counting(state).median()), skew_threshold=9.0,
                    item_estimate="linear_counting")
        use_neural, _ = model.ensemble_choice(state, "auto", **gate)
        outs[flag] = model.query(state, x, mode="auto", **gate)
    assert 0 < int(use_neural.sum()) < len(use_neural)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-4, atol=1e-4)


def test_a_loaded_brick_keeps_its_gate(tmp_path):
    """A brick trained with the linear-counting gate is evaluated with it unless asked
    otherwise; a brick saved without params falls back to the authors' scanner."""
    from pipeline.workloads.lego.model import gate_item_estimate

    model = LegoSketch(SMALL)
    save_brick(model, tmp_path / "lc.pt", extra={"params": {"item_estimate": "linear_counting"}})
    save_brick(model, tmp_path / "bare.pt")
    loaded = load_brick(tmp_path / "lc.pt")
    assert gate_item_estimate(loaded) == "linear_counting"
    assert gate_item_estimate(loaded, "scan") == "scan"
    assert gate_item_estimate(load_brick(tmp_path / "bare.pt")) == "scan"


def test_brick_count_change_needs_no_retraining():
    model = LegoSketch(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    items, counts = eval_stream(4000, 1.1)
    errors = []
    for bricks in (1, 4, 16):
        state = model.store(model.new_memory(bricks), torch.from_numpy(items), torch.from_numpy(counts).float())
        estimate = model.query(state, torch.from_numpy(items), mode="rule").double().numpy()
        errors.append(np.mean(np.abs(estimate - counts) / counts))
    assert errors[0] > errors[1] > errors[2]  # more bricks, less error, same weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_query_mode_is_checked():
    model = LegoSketch(SMALL)
    with pytest.raises(ValueError, match="query mode"):
        model.query(model.new_memory(1), _items(3), mode="best")


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    model = LegoSketch(SMALL)
    with torch.no_grad():
        model.basis.mul_(0.5)
        model.decoder.head[-1].bias.fill_(0.3)
    path = save_brick(model, tmp_path / "brick.pt")
    loaded = load_brick(path, expected=SMALL)
    x = _items(2000)
    states = [m.store(m.new_memory(3), x) for m in (model, loaded)]
    torch.testing.assert_close(model.query(states[0], x, mode="neural"), loaded.query(states[1], x, mode="neural"))


def test_checkpoint_bad_inputs(tmp_path):
    path = save_brick(LegoSketch(SMALL), tmp_path / "brick.pt")
    with pytest.raises(ValueError, match="geometry"):
        load_brick(path, expected=BrickGeometry(depth=4, slots=1024, basis_size=32))
    with pytest.raises(ValueError, match="no such file"):
        load_brick(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        load_brick(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Lego brick"):
        load_brick(tmp_path / "other.pt")


def test_bad_geometry():
    with pytest.raises(ValueError):
        LegoSketch(BrickGeometry(depth=0))
    with pytest.raises(ValueError, match="embedding"):
        LegoSketch(BrickGeometry(embedding="cnn"))
    with pytest.raises(ValueError, match="basis_init"):
        LegoSketch(SMALL, basis_init="zeros")


# -- training (seed 003 §3.2) -------------------------------------------------------------------
def test_self_guided_loss_weights_by_guide():
    loss = SelfGuidedLoss(self_guided=True, aux_weight=0.0)
    truth = torch.tensor([1.0, 2.0, 10.0, 20.0])
    tasks = torch.tensor([0, 0, 1, 1])
    rule = truth + torch.tensor([1.0, 1.0, 5.0, 5.0])
    same = loss(rule, rule, truth, tasks, 2)
    better = loss(truth + 0.5 * (rule - truth), rule, truth, tasks, 2)
    assert better < same
    conventional = SelfGuidedLoss(self_guided=False)(rule, rule, truth, tasks, 2)
    assert not torch.isclose(conventional, same)


@pytest.mark.slow
def test_tiny_training_lowers_the_loss():
    torch.manual_seed(0)
    model = LegoSketch(BrickGeometry(depth=4, slots=256, basis_size=32))
    config = TrainConfig(steps=24, tasks_per_step=2, distinct_range=(300, 1500), query_per_task=128,
                         report_every=8, lr=3e-3)
    reports = []
    history = train_brick(model, config, on_report=lambda metrics, step: reports.append(metrics))
    assert len(history) == 3 and all(np.isfinite(history))
    assert history[-1] < history[0]
    assert reports[-1]["val_are_neural"] < reports[0]["val_are_neural"]


def test_meta_tasks_shapes():
    batch = sample_meta_tasks(np.random.default_rng(0), 3, (100, 200), (0.5, 1.0), (1.0, 2.0), 50)
    sizes = np.bincount(batch.tasks)
    assert len(sizes) == 3 and sizes.min() >= 100 and sizes.max() <= 200
    assert batch.query.shape == (150,) and batch.items.shape == batch.counts.shape
    assert ((batch.skew >= 0.5) & (batch.skew <= 1.0)).all()


# -- streams ----------------------------------------------------------------------------------
def test_zipf_counts_formula():
    counts = zipf_counts(9, 1.0)
    np.testing.assert_allclose(counts, 10 / np.arange(2, 11))
    items, rounded = eval_stream(1000, 1.5)
    assert len(np.unique(items)) == 1000 and rounded.min() == 1


def test_read_stream_file(tmp_path):
    (tmp_path / "ints.txt").write_text("5\n7\n5\n\n")
    items, counts = read_stream_file(tmp_path / "ints.txt")
    assert items.tolist() == [5, 7] and counts.tolist() == [2, 1]
    (tmp_path / "words.txt").write_text("a\nb\na\n")
    assert sorted(read_stream_file(tmp_path / "words.txt")[1].tolist()) == [1, 2]
    np.save(tmp_path / "s.npy", np.array([3, 3, 3, 1]))
    assert read_stream_file(tmp_path / "s.npy")[1].tolist() == [1, 3]


def test_read_stream_file_bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt: no items"):
        read_stream_file(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="nope.txt: cannot read"):
        read_stream_file(tmp_path / "nope.txt")
    np.save(tmp_path / "f.npy", np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="integers"):
        read_stream_file(tmp_path / "f.npy")
    np.save(tmp_path / "e.npy", np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="e.npy: no items"):
        read_stream_file(tmp_path / "e.npy")


# -- baselines ----------------------------------------------------------------------------------
def test_learned_count_sketch_shapes_and_zeroes_light_items():
    items, counts = eval_stream(5000, 1.1)
    estimate = learned_count_sketch(items, counts, 20000)
    assert estimate.shape == counts.shape
    assert (estimate == 0).mean() > 0.3  # light items are cut to zero
    with pytest.raises(ValueError):
        learned_count_sketch(items, counts, 100)


def test_elastic_derivative_with_huge_memory_is_exact():
    items, counts = eval_stream(2000, 1.2)

    def factory(light_bytes):
        sketch = CountMin.for_bytes(light_bytes, depth=3)
        return sketch.update, sketch.query

    estimate = elastic_estimates(items, counts, 64 << 20, factory)
    np.testing.assert_allclose(estimate, counts)
    small = elastic_estimates(items, counts, 4000, factory)
    assert (small >= counts - 1e-6).all()  # heavy votes + CountMin: never below the truth


def test_elastic_split():
    split = elastic_split(1_000_000, 0.25, light_unit=102400)
    assert split.light_bytes == 7 * 102400 and split.heavy_bytes == 1_000_000 - 7 * 102400
    with pytest.raises(ValueError):
        elastic_split(102400, 0.25, light_unit=102400)


def test_power_basis_init_is_spread_within_range():
    basis = LegoSketch(SMALL, basis_init="power").basis.detach()
    assert basis.min() >= 0.001 and basis.max() <= 1.0
    assert (basis < 0.01).float().mean() > 0.3 and basis.max() > 0.3  # most values near the floor, a few large
    assert not torch.equal(basis, LegoSketch(SMALL, basis_init="power2").basis.detach())
    for bad in ("power0", "powerx"):
        with pytest.raises(ValueError, match="power"):
            LegoSketch(SMALL, basis_init=bad)


def test_dlego_light_part_matches_a_plain_lego_sketch():
    """D-Lego's light part (evaluate._lego_light) keeps Store's returned state: its
    estimates equal a plain store-then-query of the same items (buckets included)."""
    from pipeline.workloads.lego.evaluate import _lego_light, lego_estimates

    torch.manual_seed(0)
    model = LegoSketch(SMALL)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        model.decoder.head[-1].bias.fill_(0.5)
    items, counts = eval_stream(3000, 1.1)
    gate = {"item_threshold": 0.0, "skew_threshold": 9.0}  # the decoder everywhere
    store, query = _lego_light(model, "cpu", **gate)(3 * SMALL.brick_bytes)
    store(items, counts)
    expected = lego_estimates(model, items, counts, 3, "auto", **gate)
    np.testing.assert_allclose(query(items), expected, rtol=1e-6)
