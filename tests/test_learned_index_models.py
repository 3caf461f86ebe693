"""Every model's window against numpy.searchsorted, and exact sizes for small models."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.workloads.learned_index import data
from pipeline.workloads.learned_index.models import fit_model

#: (kind, params) small enough to fit in milliseconds on a few thousand keys
MODELS = [
    ("none", {}),
    ("linear", {}),
    ("quadratic", {}),
    ("cubic", {}),
    ("ko", {"segments": 15}),
    ("ko", {"segments": 1}),
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
