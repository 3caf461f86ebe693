"""Every model's window against numpy.searchsorted, and exact sizes for small models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numba import njit

from pipeline.workloads.learned_index import data, rmi
from pipeline.workloads.learned_index.models import fit_model

#: (kind, params) small enough to fit in milliseconds on a few thousand keys
MODELS = [
    ("none", {}),
    ("linear", {}),
    ("quadratic", {}),
    ("cubic", {}),
    ("ko", {"segments": 15}),
    ("ko", {"segments": 1}),
    ("rmi", {"top": "linear", "leaf": "linear", "bits": 8}),
    ("rmi", {"top": "robust_linear", "leaf": "cubic", "bits": 6}),
    ("rmi", {"top": "linear_spline", "leaf": "linear_spline", "bits": 10}),
    ("rmi", {"top": "cubic", "leaf": "loglinear", "bits": 7}),
    ("rmi", {"top": "loglinear", "leaf": "linear", "bits": 9}),
    ("rmi", {"top": "radix", "leaf": "cubic", "bits": 12}),
    ("rmi", {"top": "normal", "leaf": "linear", "bits": 8}),
    ("rmi", {"top": "lognormal", "leaf": "cubic", "bits": 6}),
    ("rmi", {"top": "lognormal", "leaf": "loglinear", "bits": 9}),
    ("rmi", {"top": "log_radix", "leaf": "linear", "bits": 10}),
    ("rmi", {"top": "log_radix", "leaf": "cubic", "bits": 6}),
    ("pgm", {"epsilon": 8}),
    ("pgm", {"epsilon": 64, "epsilon_recursive": 2}),
    ("pgm_bicriteria", {"space_bound": 0.01, "a": 1.0}),
    ("radix_spline", {"epsilon": 8, "radix_bits": 10}),
    ("btree", {"fanout": 4}),
    ("btree", {"fanout": 33}),
    ("sy_rmi", {"space_bound": 0.02, "units_per_byte": 0.04, "top": "linear_spline", "leaf": "linear"}),
]


def _tables():
    rng = np.random.default_rng(11)
    yield "duplicates", np.sort(rng.integers(0, 300, 5000)).astype(np.uint64)
    yield "max_key", np.concatenate([np.arange(100, dtype=np.uint64),
                                     np.full(3, 2**64 - 1, dtype=np.uint64)])
    yield "two", np.array([4, 9], dtype=np.uint64)
    for dist in data.DISTRIBUTIONS:
        yield dist, data.synthetic_keys(dist, 6000, seed=2)


def _check_bounds(model, keys, queries):
    lo, hi = model.search_bounds(queries)
    expected = np.searchsorted(keys, queries, side="left")
    assert lo.dtype == np.int64 and hi.dtype == np.int64
    assert np.all((0 <= lo) & (lo <= expected) & (expected <= hi) & (hi <= keys.size)), model.label


@pytest.mark.parametrize("kind,params", MODELS, ids=[f"{k}{p}" for k, p in MODELS])
def test_bounds_contain_lower_bound_of_every_key(kind, params):
    for _, keys in _tables():
        model = fit_model(kind, keys, **params)
        _check_bounds(model, keys, keys)
        assert model.size_bytes >= 0 and isinstance(model.size_bytes, int)


def test_linear_size_is_a_hand_count():
    keys = np.arange(100, dtype=np.uint64)
    # 2 coefficients + min key + max key + scale + 2 errors, 8 bytes each
    assert fit_model("linear", keys).size_bytes == 7 * 8
    assert fit_model("quadratic", keys).size_bytes == 8 * 8
    assert fit_model("cubic", keys).size_bytes == 9 * 8
    assert fit_model("none", keys).size_bytes == 0


def test_linear_is_exact_on_a_line():
    keys = np.arange(0, 3000, 3, dtype=np.uint64)
    model = fit_model("linear", keys)
    lo, hi = model.search_bounds(keys)
    assert np.all(hi - lo <= 2)


def test_ko_size_is_a_hand_count():
    keys = data.synthetic_keys("lognormal", 1000)
    model = fit_model("ko", keys, segments=4)
    assert len(model.degrees) == 4 and set(model.degrees) <= {1, 2, 3}
    # count + per segment (first, last, scale, degree+1 coefficients, 2 errors)
    assert model.size_bytes == 8 + sum(3 * 8 + (d + 1) * 8 + 2 * 8 for d in model.degrees)


def test_unknown_kind_and_tiny_table():
    keys = np.arange(10, dtype=np.uint64)
    with pytest.raises(ValueError, match="unknown model kind"):
        fit_model("spline9", keys)
    with pytest.raises(ValueError, match="at least 2 keys"):
        fit_model("linear", keys[:1])
    with pytest.raises(ValueError, match="KO segments"):
        fit_model("ko", keys, segments=21)


@pytest.mark.slow  # one numba compilation per (model, routine): ~10 s
def test_every_kind_through_measure_with_absent_keys():
    """The compiled loop's checksum equals numpy's for present and absent keys."""
    from pipeline.workloads.learned_index.measure import evaluate

    keys = data.synthetic_keys("lognormal", 3000, seed=5)
    queries = data.make_queries(keys, 4000, seed=1, absent_fraction=0.5)
    # every kind with one routine, every routine with one kind: each pair is a compilation
    pairs = [(kind, params, "bfs") for kind, params in MODELS]
    pairs += [("pgm", {"epsilon": 8}, routine) for routine in ("bbs", "kbbs", "kbfs", "ibs", "tip")]
    for kind, params, routine in pairs:
        metrics = evaluate(keys, queries, fit_model(kind, keys, **params), routine, k=4, repeats=1)
        assert metrics["ns_per_lookup"] > 0 and 0 <= metrics["reduction_factor"] <= 100
    for kind, params in MODELS:  # and every kind through the interleaved loop (raises on a wrong sum)
        assert evaluate(keys, queries, fit_model(kind, keys, **params), "bfs", repeats=1, batch=16)["ns_per_lookup"] > 0


@pytest.mark.parametrize("group", [1, 3, 64])
def test_batched_lookup_matches_the_plain_loop(group):
    """The staged, interleaved loop finds the same positions (checked against numpy inside
    time_lookups, which raises otherwise) over the same windows, groups not dividing the
    query count included; duplicate-heavy tables and absent keys exercise the edge checks."""
    from pipeline.workloads.learned_index.measure import time_lookups

    tables = dict(_tables())
    for name in ("duplicates", "max_key", "two", "lognormal"):
        keys = tables[name]
        queries = data.make_queries(keys, 1001, seed=3, absent_fraction=0.3)
        for kind, params in [("none", {}), ("rmi", {"top": "linear", "leaf": "linear", "bits": 8}),
                             ("ko", {"segments": 15})]:
            model = fit_model(kind, keys, **params)
            plain = time_lookups(keys, queries, model, "bfs", repeats=1)
            batched = time_lookups(keys, queries, model, "bfs", repeats=1, batch=group)
            assert batched.checksum == plain.checksum == int(np.searchsorted(keys, queries).sum())
            assert batched.mean_window == plain.mean_window and batched.fallbacks == plain.fallbacks


PIPELINE_MODELS = [("none", {}), ("rmi", {"top": "linear", "leaf": "linear", "bits": 8}),
                   ("rmi", {"top": "lognormal", "leaf": "cubic", "bits": 6}),
                   ("rmi", {"top": "normal", "leaf": "linear", "bits": 7}),
                   ("rmi", {"top": "log_radix", "leaf": "linear", "bits": 8}), ("ko", {"segments": 15}),
                   ("pgm", {"epsilon": 2}), ("pgm", {"epsilon": 64})]


@pytest.mark.slow  # a compilation per model's block function: ~15 s
@pytest.mark.parametrize("block,ahead", [(1, 1), (1, 32), (4, 3), (16, 1), (64, 2)])  # block 1: the fused form
def test_pipelined_lookup_matches_the_plain_loop(block, ahead):
    """The software-pipelined loop finds numpy's positions (time_lookups raises otherwise)
    over the same windows, with the same fallbacks: narrow windows through its count of
    one or two cache lines, wide ones through BFS, at the table's ends, on
    duplicate-heavy tables and absent keys; blocks not dividing the query count."""
    from pipeline.workloads.learned_index.measure import time_lookups

    tables = dict(_tables())
    for name in ("duplicates", "max_key", "two", "lognormal"):
        keys = tables[name]
        queries = data.make_queries(keys, 1001, seed=3, absent_fraction=0.3)
        queries = np.concatenate([queries, keys[:3], keys[-3:], np.array([0, np.iinfo(np.uint64).max], dtype=np.uint64)])
        for kind, params in PIPELINE_MODELS:
            model = fit_model(kind, keys, **params)
            plain = time_lookups(keys, queries, model, "bfs", repeats=1)
            piped = time_lookups(keys, queries, model, "bfs", repeats=1, batch=block, ahead=ahead)
            assert piped.checksum == plain.checksum == int(np.searchsorted(keys, queries).sum())
            assert piped.mean_window == plain.mean_window and piped.fallbacks == plain.fallbacks


@njit
def _shifted_window(state, q):
    """Keys 0, 2, 4, ...: the bound of q is q // 2; a 2-wide window `offset` keys off it."""
    offset, n = state
    lo = min(max(np.int64(q // 2) + offset, 0), n)
    return lo, min(lo + 2, n)


@pytest.mark.parametrize("offset", [-30, -3, 1, 3, 30])
def test_pipelined_lookup_counts_positions_outside_the_window(offset):
    """Windows that miss the bound: the line count notices (count 0 or every key counted)
    and falls back to BFS, or finds the bound just beside the window; the misses counted are
    the plain loop's and the hand count's."""
    from pipeline.workloads.learned_index.measure import time_lookups

    n = 5000
    keys = np.arange(0, 2 * n, 2, dtype=np.uint64)
    model = dataclasses.replace(fit_model("linear", keys), window=_shifted_window, windows=None,
                                window_state=(np.int64(offset), np.int64(n)))
    bound = np.arange(n)
    lo = np.clip(bound + offset, 0, n)
    misses = int(((bound < lo) | (bound > np.minimum(lo + 2, n))).sum())
    assert misses > 0
    plain = time_lookups(keys, keys, model, "bfs", repeats=1)
    for block, ahead in ((8, 2), (1, 16)):  # the block form and the fused one
        piped = time_lookups(keys, keys, model, "bfs", repeats=1, batch=block, ahead=ahead)
        assert piped.checksum == plain.checksum == int(bound.sum())
        assert piped.fallbacks == plain.fallbacks == misses


@pytest.mark.parametrize("offset", range(8))
def test_pipelined_lookup_at_every_line_offset(offset):
    """The line count takes its lines from where the table's data starts in memory: tables
    starting at each of the 8 key offsets within a 64-byte line (views into one buffer)
    give numpy's positions, with windows of 1 to 20 keys crossing lines at every point."""
    from pipeline.workloads.learned_index.measure import line_offset, time_lookups

    n = 3000
    buffer = np.empty(n + 16, dtype=np.uint64)
    start = (line_offset(buffer) + offset) % 8
    keys = buffer[start:start + n]
    keys[:] = np.arange(0, 3 * n, 3, dtype=np.uint64)
    assert line_offset(keys) == (8 - offset) % 8
    queries = np.arange(0, 3 * n + 3, dtype=np.uint64)  # every key, every gap, past the end
    bound = np.searchsorted(keys, queries)
    for width in (1, 2, 7, 15, 20):
        model = dataclasses.replace(fit_model("linear", keys), window=_sized_window, windows=None,
                                    window_state=(np.int64(width), np.int64(n)))
        for block, ahead in ((8, 2), (1, 16)):
            piped = time_lookups(keys, queries, model, "bfs", repeats=1, batch=block, ahead=ahead)
            assert piped.checksum == int(bound.sum()) and piped.fallbacks == 0


@njit
def _sized_window(state, q):
    """Keys 0, 3, 6, ...: a window of `width` keys around the bound of q, ending at it
    for some queries and starting at it for others."""
    width, n = state
    bound = np.int64((q + np.uint64(2)) // np.uint64(3))
    lo = min(max(bound - np.int64(q % np.uint64(width + 1)), 0), n)
    return lo, min(lo + width, n)


def test_count_below_counts_a_line():
    from pipeline.workloads.learned_index.measure import count_below

    count = njit(lambda keys, i, q: count_below(keys, i, q))
    keys = np.array([0, 5, 5, 9, 2**63, 2**64 - 2, 2**64 - 1, 2**64 - 1, 7], dtype=np.uint64)
    for q in [0, 1, 5, 6, 9, 10, 2**63, 2**63 + 1, 2**64 - 1]:
        assert count(keys, 0, np.uint64(q)) == int((keys[:8] < np.uint64(q)).sum())  # unsigned, not signed
    assert count(keys, 1, np.uint64(8)) == int((keys[1:9] < 8).sum())
    with pytest.raises(Exception, match="count_below"):  # only uint64 tables: no silent reinterpretation
        count(keys.astype(np.int64), 0, np.uint64(1))


def test_rmi_windows_centred_and_asymmetric():
    """A leaf stores err_lo in its constant term and err_lo + err_hi as its width, so the
    window is [p - err_lo, p + err_hi]: on smooth keys with many leaves, a centred fit's
    window is about one key plus the bound (err_lo 0, err_hi 1), the library's fit
    (truncated, not centred) about two; both hold every bound, absent keys included."""
    keys = data.synthetic_keys("lognormal", 200_000)
    queries = data.make_queries(keys, 20_000, seed=1, absent_fraction=0.5)
    centred = fit_model("rmi", keys, top="lognormal", leaf="linear", bits=12)
    truncated = fit_model("rmi", keys, top="lognormal", leaf="linear", bits=12, centred=False)
    assert truncated.params["centred"] is False and "centred" not in centred.params
    assert centred.train_window < 1.1 < 1.9 < truncated.train_window
    assert centred.size_bytes == truncated.size_bytes
    for model in (centred, truncated):
        lo, hi = model.search_bounds(keys)
        assert np.all(hi - lo <= (model.err_lo + model.err_hi).max())
        _check_bounds(model, keys, queries)


def test_pipelined_lookup_needs_a_block():
    from pipeline.workloads.learned_index.measure import time_lookups

    keys = np.arange(100, dtype=np.uint64)
    model = fit_model("linear", keys)
    for batch, ahead in [(0, 2), (8, -1)]:
        with pytest.raises(ValueError, match="ahead must be"):
            time_lookups(keys, keys, model, "bfs", batch=batch, ahead=ahead)
    with pytest.raises(ValueError, match="search must be 'bfs'"):
        time_lookups(keys, keys, model, "bbs", batch=8, ahead=1)


def test_fast_ln_and_to_position():
    from pipeline.workloads.learned_index.models import to_position
    from pipeline.workloads.learned_index.rmi import fast_ln

    ln = njit(lambda x: fast_ln(x))
    values = np.concatenate([np.geomspace(1.0, 2.0**64, 20_001), [np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 3.0),
                                                                    np.nextafter(2.0, 0.0), 2.0**-1000, 1e300]])
    errors = np.abs(np.array([ln(v) for v in values]) - np.log(values))
    assert errors.max() < 1e-10
    position = njit(lambda v, n: to_position(v, n))
    assert [position(v, 10) for v in (np.nan, -1.0, -0.5, 0.0, 3.7, 9.99, 10.0, 1e300, np.inf, -np.inf)] == \
        [0, 0, 0, 0, 3, 9, 10, 10, 10, 0]


def test_batched_lookup_needs_bfs_and_a_group():
    from pipeline.workloads.learned_index.measure import time_lookups

    keys = np.arange(100, dtype=np.uint64)
    model = fit_model("linear", keys)
    with pytest.raises(ValueError, match="search must be 'bfs'"):
        time_lookups(keys, keys, model, "bbs", batch=8)
    with pytest.raises(ValueError, match="batch must be"):
        time_lookups(keys, keys, model, "bfs", batch=-1)


def test_floors_read_the_table():
    """Both gathers sum the same values, so neither skips reads."""
    from pipeline.workloads.learned_index import measure

    keys = np.arange(0, 3000, 3, dtype=np.uint64)
    positions = np.random.default_rng(0).integers(0, keys.size, size=500)
    assert int(measure._gather_sum(keys, positions)) == int(keys[positions].sum())
    assert measure._gather_sum_scalar(keys, positions) == float(keys[positions].sum())
    assert measure.time_random_read_floor(keys, 500, repeats=1, vectorised=False) > 0


def test_monotone_models_cover_absent_keys():
    keys = data.synthetic_keys("uniform_sparse", 5000, seed=4)
    queries = data.make_queries(keys, 5000, seed=2, absent_fraction=1.0)
    for kind, params in [("linear", {}), ("pgm", {"epsilon": 16}), ("radix_spline", {"epsilon": 16}),
                         ("btree", {"fanout": 8})]:
        _check_bounds(fit_model(kind, keys, **params), keys, queries)


def test_parametric_sizes_are_hand_counts():
    keys = np.arange(100, dtype=np.uint64)
    # RMI: top (2 params) + key range and scale (3), then per leaf 2 params + 1 error
    assert fit_model("rmi", keys, top="linear", leaf="linear", bits=4).size_bytes == 5 * 8 + 16 * 3 * 8
    assert fit_model("rmi", keys, top="radix", leaf="cubic", bits=3).size_bytes == 4 * 8 + 8 * 7 * 8
    assert fit_model("rmi", keys, top="log_radix", leaf="linear", bits=4).size_bytes == 4 * 8 + 16 * 3 * 8
    # normal / lognormal top: mean, 1 / stdev, scale and the smallest key (4), + 3
    assert fit_model("rmi", keys, top="lognormal", leaf="linear", bits=4).size_bytes == 7 * 8 + 16 * 3 * 8
    # B+-tree, fanout 4: inner levels of 25, 7 and 2 keys, 4 level offsets, 2 errors
    assert fit_model("btree", keys, fanout=4).size_bytes == (25 + 7 + 2) * 8 + 4 * 8 + 2 * 8
    # PGM on a line: one segment (3 x 8), 2 offsets, key range + epsilon, 2 errors
    assert fit_model("pgm", keys, epsilon=4).size_bytes == 3 * 8 + 2 * 8 + 3 * 8 + 2 * 8
    # RadixSpline on a line: 2 spline points (16 each), 2^4 + 1 table entries of 4, 3 x 8, 2 errors
    assert fit_model("radix_spline", keys, epsilon=4, radix_bits=4).size_bytes == 2 * 16 + 17 * 4 + 3 * 8 + 2 * 8


def test_log_radix_routes_by_the_leading_bits_of_the_float():
    """log_radix (ours, rmi.py): the leaf is the leading bits of float64(key - min + 1) above
    those of 1.0, so every octave of key - min + 1 gets the same number of leaves, the
    mantissa's leading bits splitting it evenly; routes are monotone and stay in range."""
    shift, branching = np.uint64(52 - 3), np.int64(2**10)  # 8 leaves per octave
    for j in range(0, 60):
        start = float(2**j)  # u + 1 = 2^j: the first leaf of octave j
        assert rmi._route_log_radix(shift, branching, start - 1.0) == min(8 * j, branching - 1)
        assert rmi._route_log_radix(shift, branching, 1.5 * start - 1.0) == min(8 * j + 4, branching - 1)
    assert rmi._route_log_radix(np.uint64(52 - 3), np.int64(16), 2.0**40) == 15  # clamped to the last leaf
    keys = data.synthetic_keys("lognormal", 50_000)
    model = fit_model("rmi", keys, top="log_radix", leaf="linear", bits=10)
    # fit_rmi sizes the shift so that the span min..max key uses the leaves: none past the last
    u = (keys - keys[0]).astype(np.float64)
    routes = np.array([rmi._route_log_radix(model.window_state[2], model.window_state[6], x) for x in u[::97]])
    assert np.all(np.diff(routes) >= 0) and 0 <= routes[0] and routes[-1] < 2**10
    assert routes[-1] >= 2**9  # the top octave reaches the upper half of the leaves


def test_cdf_tops_follow_the_rmi_library():
    """The normal / lognormal top is the RMI library's ncdf / lncdf: mean and population
    stdev of the key (of ln key), scale = the last position, phi = its logistic."""
    from pipeline.workloads.learned_index import rmi

    keys = data.synthetic_keys("lognormal", 20000, seed=1)
    model = fit_model("rmi", keys, top="lognormal", leaf="linear", bits=8)
    top = model.window_state[1]
    logs = np.log(keys.astype(np.float64))
    assert np.allclose(top, [logs.mean(), 1 / logs.std(), keys.size - 1, float(keys[0])])
    assert abs(rmi._phi(0.0) - 0.5) < 1e-12 and abs(rmi._phi(1.0) - 1 / (1 + (1 - 1.65451 / 64) ** 64)) < 1e-12
    assert rmi._phi(1e6) == 1.0 and rmi._phi(-1e6) < 1e-200
    # on keys drawn from their own family the CDF top routes evenly: tiny windows, unlike
    # a linear top on the same table
    linear = fit_model("rmi", keys, top="linear", leaf="linear", bits=8)
    assert model.train_window < 8 < linear.train_window


def test_rmi_two_phase_search_structure():
    from pipeline.workloads.learned_index import rmi_search

    keys = data.synthetic_keys("lognormal", 4000, seed=1)
    search = rmi_search.optimize_rmi(keys, phase1_bits=(6, 9), top_types=("linear", "radix", "cubic"),
                                     leaf_types=("linear", "linear_spline"), bits=[6, 7, 8, 9, 10])
    front, tried = search.front, search.tried
    phase1 = [c for c in tried if c.phase == 1]
    phase2 = [c for c in tried if c.phase == 2]
    assert len(phase1) == 3 * 2 * 2  # every pair at each phase-1 branching factor
    costs = np.array([[c.size_bytes, c.avg_log2_error] for c in phase1])
    front1_pairs = {(phase1[i].top, phase1[i].leaf) for i in rmi_search.pareto_indices(costs)}
    assert {(c.top, c.leaf) for c in phase2} <= front1_pairs
    assert len(phase2) == len(front1_pairs) * 3  # the other branching factors: 7, 8, 10
    assert 1 <= len(front) <= 10
    assert [c.size_bytes for c in front] == sorted(c.size_bytes for c in front)
    for c in front:  # no tried candidate dominates a kept one
        assert not any(o.size_bytes <= c.size_bytes and o.avg_log2_error < c.avg_log2_error for o in tried)


def test_bicriteria_pgm_respects_the_bound():
    keys = data.synthetic_keys("lognormal", 20000, seed=1)
    table_bytes = keys.size * 8
    for bound in (0.0005, 0.007, 0.02):
        model = fit_model("pgm_bicriteria", keys, space_bound=bound, a=1.0)
        smallest_eps = model.params["epsilon"] == 8
        assert model.size_bytes <= bound * table_bytes or model.params["epsilon"] == keys.size // 2
        assert smallest_eps or fit_model("pgm", keys, epsilon=model.params["epsilon"] - 1).size_bytes > bound * table_bytes


def test_sy_rmi_branching_follows_the_space_bound():
    keys = data.synthetic_keys("normal", 50000, seed=1)
    small = fit_model("sy_rmi", keys, space_bound=0.0005, units_per_byte=1 / 24, top="linear_spline", leaf="linear")
    large = fit_model("sy_rmi", keys, space_bound=0.02, units_per_byte=1 / 24, top="linear_spline", leaf="linear")
    assert small.params["branching"] == int(0.0005 * keys.size * 8 / 24)
    assert large.params["branching"] > small.params["branching"]
    assert large.size_bytes <= 0.021 * keys.size * 8


def test_sy_rmi_synopsis_from_fronts():
    """UB is the median of branching / bytes over every returned RMI; the pair is the
    relative majority of the fastest RMI per table (seed §3.2)."""
    from pipeline.workloads.learned_index import rmi_search

    tables = [data.synthetic_keys(d, 3000, seed=1) for d in ("normal", "lognormal")]
    fronts = [rmi_search.optimize_rmi(k, phase1_bits=(6,), top_types=("linear",),
                                      leaf_types=("linear", "linear_spline"), bits=[6, 7]).front for k in tables]
    synopsis = rmi_search.mine_synopsis(tables, query_fraction=0.001, fronts=fronts)
    ratios = [c.branching / c.size_bytes for front in fronts for c in front]
    assert synopsis.units_per_byte == pytest.approx(float(np.median(ratios)))
    assert synopsis.top == "linear" and synopsis.leaf in ("linear", "linear_spline")
    assert sum(synopsis.votes.values()) == 2
    model = fit_model("sy_rmi", tables[0], space_bound=0.02, synopsis=synopsis)
    assert model.params["branching"] == max(1, int(synopsis.units_per_byte * 0.02 * 3000 * 8))
    paired = rmi_search.mine_synopsis(tables, query_fraction=0.001, fronts=fronts, ub="pair")
    pair_ratios = [c.branching / c.size_bytes for front in fronts for c in front
                   if (c.top, c.leaf) == (paired.top, paired.leaf)]
    assert paired.units_per_byte == pytest.approx(float(np.median(pair_ratios)))


def test_sy_rmi_tie_break_takes_the_pair_fastest_across_tables(monkeypatch):
    """Two tables, two winners (one vote each): "time" takes the pair whose slowdown over
    the tables is smaller; "first" keeps the first table's winner."""
    from pipeline.workloads.learned_index import measure, rmi_search

    tables = [data.synthetic_keys("normal", 2000, seed=1), data.synthetic_keys("lognormal", 2000, seed=1)]
    cand = lambda top, bits: rmi_search.RmiCandidate(top, "linear", 2**bits, 100 * bits, 1.0, 1)  # noqa: E731
    fronts = [[cand("linear", 6), cand("cubic", 7)], [cand("linear", 6), cand("cubic", 7)]]
    # table 0: linear 10 ns, cubic 11 ns; table 1: cubic 10 ns, linear 30 ns
    made = {(0, "linear"): 10.0, (0, "cubic"): 11.0, (1, "linear"): 30.0, (1, "cubic"): 10.0}
    table_of = {id(t): i for i, t in enumerate(tables)}

    def fake_time(keys, queries, model, search, repeats=1):
        return measure.Timing(made[(table_of[id(keys)], model.params["top"])], 0.0, (), 0, 1.0, 0)

    monkeypatch.setattr(measure, "time_lookups", fake_time)
    timed = rmi_search.mine_synopsis(tables, query_fraction=0.001, fronts=fronts)
    assert timed.votes == {"linear/linear": 1, "cubic/linear": 1}
    assert (timed.top, timed.leaf) == ("cubic", "linear")  # slowdowns: cubic 1.05, linear 2.0
    first = rmi_search.mine_synopsis(tables, query_fraction=0.001, fronts=fronts, tie_break="first")
    assert (first.top, first.leaf) == ("linear", "linear")
    with pytest.raises(ValueError, match="tie_break"):
        rmi_search.mine_synopsis(tables, fronts=fronts, tie_break="coin")
