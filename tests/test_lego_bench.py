"""The lego bench runs with tiny arguments and returns the documented rows."""

import pytest

from pipeline.bench import lego


@pytest.mark.slow
def test_bench_rows():
    rows = lego.main(["--items", "20000", "--universe", "2000", "--bricks", "2", "--batch", "8192", "--repeats", "1"])
    names = [row["method"] for row in rows]
    assert names == ["lego_store", "lego_query", "lego_query_neural", "lego_query_rule", "countmin_update",
                     "countmin_query"]
    assert all(row["items_per_s"] > 0 for row in rows)
