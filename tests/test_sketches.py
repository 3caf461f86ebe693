"""The classic sketch family: exactness without collisions, error bounds, streams, bad input."""

import numpy as np
import pytest

from pipeline.workloads.sketches import (CMSParams, CountMin, CountSketch, are, exact_counts, load_stream,
                                         run_cms, zipf_stream)
from pipeline.workloads.base import LocalReporter


@pytest.fixture(scope="module")
def stream():
    return zipf_stream(2000, 1.1, 50_000, seed=3)


@pytest.mark.parametrize("cls", [CountMin, CountSketch])
def test_exact_when_memory_is_huge(cls, stream):
    sketch = cls(1 << 22, 3, seed=1)
    sketch.update(stream)
    items, counts = exact_counts(stream)
    np.testing.assert_array_equal(sketch.query(items), counts)


def test_countmin_never_underestimates_and_delta_scales(stream):
    items, counts = exact_counts(stream)
    sketch = CountMin(128, 3, seed=0)
    sketch.update(stream)
    assert (sketch.query(items) >= counts).all()
    half = CountMin(128, 3, seed=0, delta=0.5)
    half.update(stream)
    np.testing.assert_allclose(half.query(items), 0.5 * sketch.query(items))


def test_conservative_update_is_between_truth_and_countmin(stream):
    items, counts = exact_counts(stream)
    plain, cu = CountMin(128, 3, seed=0), CountMin(128, 3, seed=0, conservative=True)
    plain.update(stream)
    cu.update(stream)
    assert (cu.query(items) >= counts).all()
    assert (cu.query(items) <= plain.query(items)).all()
    assert are(cu.query(items), counts) < are(plain.query(items), counts)


def test_batches_equal_one_update(stream):
    a, b = CountMin(256, 2, seed=5), CountMin(256, 2, seed=5)
    a.update(stream)
    for start in range(0, len(stream), 999):
        b.update(stream[start:start + 999])
    np.testing.assert_array_equal(a.table, b.table)


def test_for_bytes_and_size():
    sketch = CountMin.for_bytes(12_000, depth=3)
    assert sketch.size_bytes <= 12_000 and sketch.width == 1000
    with pytest.raises(ValueError, match="cannot hold"):
        CountMin.for_bytes(4, depth=3)


def test_rows_hash_independently():
    sketch = CountMin(1024, 4, seed=0)
    cols = sketch._columns(np.arange(10_000))
    # different rows send the same items to different columns
    assert (cols[0] != cols[1]).mean() > 0.99


def test_zipf_stream_is_seeded_and_skewed():
    a, b = zipf_stream(1000, 1.2, 20_000, seed=1), zipf_stream(1000, 1.2, 20_000, seed=1)
    np.testing.assert_array_equal(a, b)
    _, counts = exact_counts(a)
    assert counts.max() > 20 * np.median(counts)


def test_load_stream_formats(tmp_path):
    (tmp_path / "ints.txt").write_text("3\n1\n3\n\n2\n")
    np.testing.assert_array_equal(load_stream(tmp_path / "ints.txt"), [3, 1, 3, 2])
    (tmp_path / "words.txt").write_text("b\na\nb\n")
    assert load_stream(tmp_path / "words.txt").tolist() == [1, 0, 1]
    np.save(tmp_path / "s.npy", np.array([5, 6, 5]))
    assert load_stream(tmp_path / "s.npy").tolist() == [5, 6, 5]


@pytest.mark.parametrize("content, match", [
    ("", "no items"),
    ("\n\n", "no items"),
])
def test_load_stream_bad(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_stream(path)


def test_load_stream_unreadable(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_stream(tmp_path / "missing.txt")
    np.save(tmp_path / "f.npy", np.array([0.5]))
    with pytest.raises(ValueError, match="integers"):
        load_stream(tmp_path / "f.npy")


def test_bad_sketch_arguments():
    with pytest.raises(ValueError, match="width"):
        CountMin(0, 3)
    with pytest.raises(ValueError, match="float counter_dtype"):
        CountMin(8, 2, delta=0.5, counter_dtype="int32")


def test_cms_workload_metrics_and_determinism():
    params = CMSParams.model_validate({"width": 64, "stream": {"universe": 300, "length": 3000, "queries": 50}})
    first, second = run_cms(params, LocalReporter()), run_cms(params, LocalReporter())
    assert first == second
    assert first["bytes"] == 64 * 3 * 4
    assert first["aae"] > 0 and first["are"] > 0
