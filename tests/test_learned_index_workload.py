"""The learned_index workload, its task files and the report (seed 001 Table 2 shape)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.workloads.base import LocalReporter
from pipeline.workloads.learned_index import data, report
from pipeline.workloads.learned_index import workload as workload_module
from pipeline.workloads.learned_index.workload import WORKLOAD, LearnedIndexParams, tables_for

ROOT = Path(__file__).resolve().parents[1]
DETERMINISTIC = ("bytes", "space_fraction", "reduction_factor", "reduction_factor_train", "avg_log2_error")


def _run(smoke: bool = True, **values):
    reporter = LocalReporter()
    params = WORKLOAD.make_params({**(WORKLOAD.smoke_params if smoke else {}), "queries": 5000, **values})
    WORKLOAD.validate(params)
    return WORKLOAD.run(params, reporter), reporter


def test_smoke_run_reports_finite_metrics_and_repeats():
    first, reporter = _run()
    assert reporter.history and all(math.isfinite(v) for v in first.values())
    assert set(first) <= set(WORKLOAD.metrics)
    assert first["ns_per_lookup"] > 0 and 0 < first["space_fraction"]
    assert (reporter.artifact_dir / "tables.csv").exists()
    second, _ = _run()
    assert all(first[k] == second[k] for k in DETERMINISTIC)


def test_several_tables_each_reported():
    metrics, reporter = _run(model="pgm", level=["L1"], dist=["normal", "lognormal"], queries=5000)
    assert metrics["tables"] == 2 and len(reporter.history) == 3  # one per table, one final
    assert "ns_per_lookup/L1/lognormal" in metrics and "space_fraction/L1/normal" in metrics


def test_users_keys_file(tmp_path):
    keys = np.sort(np.random.default_rng(0).integers(0, 2**40, 5000)).astype(np.uint64)
    path = tmp_path / "mine_uint64"
    data.write_sosd(path, keys)
    metrics, _ = _run(False, keys_file=str(path), model="radix_spline", rs_radix_bits=8)
    assert metrics["tables"] == 1 and "ns_per_lookup/custom/user" in metrics
    assert metrics["space_fraction"] == metrics["bytes"] / (5000 * 8)  # the whole file
    down, _ = _run(False, keys_file=str(path), model="linear", level="L1")  # down-sampled to 3.7K keys (§3.4)
    assert down["space_fraction"] == down["bytes"] / (3700 * 8) and "ns_per_lookup/L1/user" in down


@pytest.mark.parametrize("payload,message", [(np.array([5, 3, 9], dtype=np.uint64), "not sorted"),
                                             (np.array([1.5, np.nan]), "NaN"),
                                             (np.array([4], dtype=np.uint64), "at least 2 keys")])
def test_bad_keys_file_is_a_one_line_error(tmp_path, payload, message):
    path = tmp_path / "keys.npy"
    np.save(path, payload)
    params = WORKLOAD.make_params({"keys_file": str(path)})
    with pytest.raises(ValueError, match=message) as info:
        WORKLOAD.validate(params)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_params():
    with pytest.raises(ValueError, match="bfe"):
        WORKLOAD.validate(WORKLOAD.make_params({"model": "pgm", "search": "bfe"}))
    with pytest.raises(ValueError):
        WORKLOAD.make_params({"model": "spline9"})
    with pytest.raises(ValueError):
        WORKLOAD.make_params({"level": []})
    with pytest.raises(ValueError):
        WORKLOAD.make_params({"rmi_bits": 30})


def test_sy_rmi_takes_its_levels_synopsis():
    """Each table's SY-RMI is built from its memory level's synopsis (seed §3.2: one per
    level): branching = UB x bound x table bytes, the level's pair."""
    synopses = {"L1": {"units_per_byte": 0.04, "top": "linear", "leaf": "linear"},
                "L2": {"units_per_byte": 0.01, "top": "cubic", "leaf": "linear_spline"}}
    params = WORKLOAD.make_params({"model": "sy_rmi", "space_bound": 0.02, "level": ["L1", "L2"], "dist": "normal",
                                   "sy_synopses": synopses, "queries": 2000, "repeats": 1})
    for level, _, table, _ in workload_module.tables_for(params):
        model = workload_module.build(params, table, level)
        spec = synopses[level]
        assert model.params["branching"] == int(spec["units_per_byte"] * 0.02 * table.keys.size * table.key_bytes)
        assert (model.params["top"], model.params["leaf"]) == (spec["top"], spec["leaf"])
    with pytest.raises(ValueError):
        WORKLOAD.make_params({"sy_synopses": {"L1": {"units_per_byte": 0.04, "top": "spline9", "leaf": "linear"}}})


def test_mined_synopses_print_as_task_yaml():
    import yaml

    from pipeline.workloads.learned_index.rmi_search import Synopsis

    text = report.synopses_yaml({"L1": Synopsis(0.0416, "linear_spline", "linear", {"linear_spline/linear": 2}),
                                 "L3": Synopsis(0.0178, "cubic", "cubic", {"cubic/cubic": 1})})
    params = WORKLOAD.make_params(yaml.safe_load(text))
    assert params.sy_synopses["L3"].top == "cubic" and params.sy_synopses["L1"].units_per_byte == 0.0416


def test_batch_needs_bfs():
    with pytest.raises(ValueError, match="search must be 'bfs'"):
        WORKLOAD.validate(WORKLOAD.make_params({"batch": 32, "search": "bbs"}))
    metrics, reporter = _run(model="pgm", search="bfs", batch=16)
    assert metrics["ns_per_lookup"] > 0


def test_pipelined_trial_needs_a_block():
    with pytest.raises(ValueError, match="ahead = 2: the pipelined lookup needs a block size"):
        WORKLOAD.validate(WORKLOAD.make_params({"ahead": 2, "search": "bfs"}))
    with pytest.raises(ValueError, match="ahead"):
        WORKLOAD.make_params({"ahead": -1})
    metrics, _ = _run(model="rmi", rmi_top="lognormal", rmi_leaf="cubic", rmi_bits=6, search="bfs", batch=8, ahead=2)
    assert metrics["ns_per_lookup"] > 0 and metrics["fallbacks"] >= 0


def test_baselines_rows():
    params = WORKLOAD.make_params({"level": "L1", "queries": 3000, "repeats": 1})
    rows = WORKLOAD.baselines(params)
    assert {r["method"] for r in rows} == {"bbs", "bfs", "kbfs_k6", "bfe", "bfs batched G=64", "numpy.searchsorted"}
    assert all(r["ns_per_lookup"] > 0 for r in rows)
    # only the Eytzinger search holds space beside the table: its copy of the keys plus an
    # int64 rank per slot, (n + 1) x (key_bytes + 8) bytes (an L1 table has uint64 keys)
    by_method = {r["method"]: r for r in rows}
    table = tables_for(params)[0][2]
    assert by_method["bfe"]["bytes"] == (table.keys.size + 1) * (table.key_bytes + 8)
    assert by_method["bfe"]["space_fraction"] == pytest.approx((table.key_bytes + 8) / table.key_bytes, rel=1e-3)
    assert all(r["bytes"] == 0 and r["space_fraction"] == 0 for m, r in by_method.items() if m != "bfe")


def test_eytzinger_trial_reports_the_space_of_its_layout():
    metrics, _ = _run(model="none", search="bfe", level="L1", queries=3000)
    assert metrics["space_fraction"] == pytest.approx(2.0, rel=1e-3)  # uint64 keys: copy 8 + rank 8 bytes a key
    assert _run(model="none", search="bbs", level="L1", queries=3000)[0]["space_fraction"] == 0


@pytest.mark.parametrize("task", ["learned_index.yaml", "learned_index_constant_space.yaml"])
def test_task_files_name_real_params(task):
    import yaml

    spec = yaml.safe_load((ROOT / "tasks" / task).read_text())
    space = yaml.safe_load((ROOT / "search_spaces" / spec["search_space"]).read_text())
    fields = set(LearnedIndexParams.model_fields)
    assert set(space["parameters"]) <= fields
    for profile in spec["profiles"].values():
        WORKLOAD.make_params({**spec["params"], **profile.get("params", {})})
    assert {o["metric"] for o in spec["objectives"]} <= set(WORKLOAD.metrics)


def test_report_fronts_and_synoptic_table():
    rows = pd.DataFrame([
        {"model": "rmi", "search": "bbs", "space_bound": None, "level": "L2", "dist": "normal",
         "ns_per_lookup": 50.0, "space_fraction": 0.5, "reduction_factor": 99.9},
        {"model": "rmi", "search": "bbs", "space_bound": None, "level": "L2", "dist": "normal",
         "ns_per_lookup": 80.0, "space_fraction": 0.05, "reduction_factor": 99.0},
        {"model": "pgm", "search": "bbs", "space_bound": None, "level": "L2", "dist": "normal",
         "ns_per_lookup": 90.0, "space_fraction": 0.08, "reduction_factor": 99.5},
        {"model": "sy_rmi", "search": "bbs", "space_bound": 0.02, "level": "L2", "dist": "normal",
         "ns_per_lookup": 100.0, "space_fraction": 0.02, "reduction_factor": 98.0},
    ])
    front = report.fronts(rows)
    assert front["pareto"].tolist() == [True, True, False, True]
    table = report.synoptic_table(rows).set_index("model")
    assert table.loc["Best RMI", "time_s"] == pytest.approx(50e-9)  # the best row: absolute
    assert table.loc["RMI <= 10", "time_s"] == pytest.approx(80 / 50)  # the others: ratios
    assert table.loc["SY-RMI 2", "space"] == pytest.approx(0.02 / 0.5)
    assert table.loc["Best PGM", "rf"] == pytest.approx(99.5 / 99.9)


def test_synoptic_table_is_normalised_to_the_fastest_sosd_class():
    """Seed Table 2: the reference is the best SOSD model (here PGM), not the faster KO;
    rows below it in time get ratios < 1; a kind with no pick (RMI <= 10) is NaN."""
    rows = pd.DataFrame([
        {"model": "pgm", "search": "bbs", "space_bound": None, "level": "L1", "dist": d,
         "ns_per_lookup": t, "space_fraction": 0.01, "reduction_factor": 99.0} for d, t in (("a", 40.0), ("b", 60.0))
    ] + [
        {"model": "ko", "search": "bbs", "space_bound": None, "level": "L1", "dist": d,
         "ns_per_lookup": 25.0, "space_fraction": 0.001, "reduction_factor": 98.0} for d in ("a", "b")
    ] + [{"model": "rmi", "search": "bbs", "space_bound": None, "level": "L1", "dist": "a",
          "ns_per_lookup": 70.0, "space_fraction": 0.5, "reduction_factor": 99.5}])
    table = report.synoptic_table(rows).set_index("model")
    assert table.iloc[0].name == "Best PGM" and bool(table.iloc[0]["reference"])
    assert table.loc["Best PGM", "time_s"] == pytest.approx(50e-9)  # mean over the two tables
    assert table.loc["Best KO", "time_s"] == pytest.approx(25 / 50)
    assert table.loc["Best RMI", "time_s"] == pytest.approx(70 / 50) and table.loc["Best RMI", "tables"] == 1
    assert math.isnan(table.loc["RMI <= 10", "time_s"])


def test_report_from_trials_csv_columns():
    trials = pd.DataFrame([{"trial_id": "a", "final": 1, "status": "DONE", "config/model": "pgm",
                            "config/search": "bfs", "config/space_bound": 0.02,
                            "ns_per_lookup/L1/normal": 40.0, "space_fraction/L1/normal": 0.01,
                            "reduction_factor/L1/normal": 99.0}])
    rows = report.from_trials(trials)
    assert rows.iloc[0][["model", "level", "dist", "ns_per_lookup"]].tolist() == ["pgm", "L1", "normal", 40.0]


@pytest.mark.slow  # compiles every model class: ~20 s
def test_bench_rows_tiny():
    from pipeline.bench import learned_index as bench

    rows = bench.main(["--n", "20000", "--queries", "3000", "--quick", "--repeats", "1", "--pygm-queries", "500",
                       "--batches", "8", "--pipelines", "4x2,1x4", "--sy-n", "3000", "--rounds", "2"])
    methods = {r["method"] for r in rows}
    assert {"numpy.searchsorted", "random_read_floor", "random_read_floor_scalar", "random_read_latency", "bbs",
            "bfs batched G=8"} <= methods
    assert {"rmi <=2%", "pgm <=2%", "btree <=2%", "ko <=2%", "pgm <=0.2%", "sy_rmi <=2%"} <= methods
    assert {"rmi <=2% batched", "sy_rmi <=2% batched", "pgm <=0.2% batched"} <= methods
    assert all(r["batch"] == 8 for r in rows if r["method"].endswith(" batched"))
    assert all(r["predict_ns"] > 0 for r in rows if r["method"].endswith("<=2% batched"))
    assert {"rmi <=2% pipelined", "pgm <=0.2% pipelined"} <= methods
    assert all((r["batch"], r["ahead"]) in ((4, 2), (1, 4)) and r["predict_ns"] > 0
               for r in rows if r["method"].endswith("<=2% pipelined"))
    side = [r for r in rows if r["method"] == "side_by_side"]
    assert [r["budget"] for r in side] == [0.02, 0.002]
    for row in side:  # the fastest of its budget, and the floor, alternated twice
        fastest = min(r["ns_per_lookup"] for r in rows if r.get("budget") == row["budget"] and "config" in r
                      and r["method"] != "side_by_side" and not r["method"].startswith("pygm"))
        assert row["config"] in {r["config"] for r in rows if r.get("ns_per_lookup") == fastest}
        assert len(row["lookup_ns_all"]) == len(row["floor_ns_all"]) == row["rounds"] == 2
        assert row["times_floor"] == pytest.approx(row["ns_per_lookup"] / row["floor_ns"])
    for row in rows:
        assert row["ns_per_lookup"] > 0
        if "budget" in row:
            assert row["space_fraction"] <= row["budget"]


@pytest.mark.parametrize("spec", ["8", "8x0", "0x2", "ax2", "8x2x1"])
def test_bench_rejects_bad_pipelines(spec, capsys):
    from pipeline.bench import learned_index as bench

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--n", "1000", "--pipelines", spec])
    assert exit_info.value.code == 2 and "--pipelines" in capsys.readouterr().err
