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
    assert rows[1]["item_estimate"] == "scan"  # the tiny brick has no training params: the authors' gate


@pytest.mark.slow
def test_bench_takes_the_gate_of_the_checkpoint(tmp_path):
    from pipeline.workloads.lego.model import BrickGeometry, LegoSketch, save_brick

    path = save_brick(LegoSketch(BrickGeometry(depth=4, slots=256, basis_size=16)), tmp_path / "brick.pt",
                      extra={"params": {"item_estimate": "linear_counting"}})
    args = ["--items", "20000", "--universe", "2000", "--bricks", "2", "--batch", "8192", "--repeats", "1",
            "--checkpoint", str(path)]
    assert lego.main(args)[1]["item_estimate"] == "linear_counting"
    assert lego.main(args + ["--item-estimate", "scan"])[1]["item_estimate"] == "scan"
