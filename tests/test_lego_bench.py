"""The lego bench runs with tiny arguments and returns the documented rows."""

import pytest

from pipeline.bench import lego


@pytest.mark.slow
def test_bench_rows():
    rows = lego.main(["--items", "20000", "--universe", "2000", "--bricks", "2", "--batch", "8192", "--repeats", "1", "--tiny-steps", "2"])
    names = [row["method"] for row in rows]
    assert names == ["lego_store", "lego_query", "lego_query_neural", "lego_query_rule", "countmin_update",
                     "countmin_query"]
    assert all(row["items_per_s"] > 0 for row in rows)
    assert rows[0]["stored_items"] == 20000  # Query sees the buckets of the whole stream
    assert 0.0 <= rows[1]["neural_share"] <= 1.0
