"""Workload `wavelet_mapping` (seed 002): smoke run, determinism, params, task file, bench."""

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.workloads import get
from pipeline.workloads.base import LocalReporter

TIMED = {"ns_per_access", "ns_per_lookup", "btree_ns_per_lookup", "permutation_ns_per_lookup",
         "bound_ratio", "lookup_vs_btree", "build_s"}


def test_smoke_run_is_finite_and_repeatable(tmp_path):
    workload = get("wavelet_mapping")
    params = workload.make_params(workload.smoke_params)
    reporter = LocalReporter(artifact_dir=tmp_path)
    first = workload.run(params, reporter)
    assert set(first) == set(workload.metrics)
    assert all(math.isfinite(v) for v in first.values())
    assert reporter.history and (tmp_path / "wavelet_trial.json").exists()
    second = workload.run(params, LocalReporter(artifact_dir=tmp_path))
    assert {k: v for k, v in first.items() if k not in TIMED} == {k: v for k, v in second.items() if k not in TIMED}
    assert first["bits_per_element"] < 32  # sampled m=16 on 20K keys: 4 levels x 4 bits + counts


def test_full_rank_and_baselines():
    workload = get("wavelet_mapping")
    params = workload.make_params({**workload.smoke_params, "rank": "full", "arity": 256, "model": "pgm"})
    interleaved = workload.run(workload.make_params({**workload.smoke_params, "rank": "interleaved"}), LocalReporter())
    assert interleaved["levels"] == 4 and 16 < interleaved["bits_per_element"] < 32
    batched = workload.make_params({**workload.smoke_params, "rank": "blocked", "block_lines": 1, "arity": 4,
                                    "group": 16})
    metrics = workload.run(batched, LocalReporter())
    assert metrics["levels"] == 8 and all(math.isfinite(v) for v in metrics.values())
    kary = workload.run(workload.make_params({**workload.smoke_params, "candidates": 5}), LocalReporter())
    assert kary["probes_per_lookup"] > metrics["probes_per_lookup"]  # more keys read, fewer rounds
    metrics = workload.run(params, LocalReporter())
    assert metrics["levels"] == 2 and metrics["bits_per_element"] > 16
    methods = [row["method"] for row in workload.baselines(params)]
    assert methods[0].startswith("btree") and "permutation+pgm" in methods


def test_truncated_trial_and_packed_peer():
    workload = get("wavelet_mapping")
    params = workload.make_params({**workload.smoke_params, "rank": "blocked", "block_lines": 4, "depth": 1})
    metrics = workload.run(params, LocalReporter())
    assert metrics["depth"] == 1 and metrics["levels"] == 4 and all(math.isfinite(v) for v in metrics.values())
    assert 15 < metrics["bits_per_element"] < 32  # 16 symbol bits + one level's block counts
    rows = {row["method"]: row for row in workload.baselines(params)}
    # 2^15 > 20K: 15 bits each, 300000 bits -> 4688 words, + 1 pad word
    assert rows["packed_permutation+linear"]["bits_per_element"] == pytest.approx(4689 * 64 / 20_000)


@pytest.mark.parametrize("depth", [-1, 5, "deep"])
def test_bad_depth(depth):
    """20K values in a 16-ary tree: 4 levels, so depth lies in [0, 4]; one line naming the field."""
    with pytest.raises(ValidationError, match="depth") as error:
        get("wavelet_mapping").make_params({"n": 20_000, "arity": 16, "depth": depth})
    assert len(error.value.errors()) == 1


@pytest.mark.parametrize("field,value", [("arity", 8), ("sample_rate", 100), ("sample_rate", 32), ("sample_rate", 0),
                                         ("rank", "dense"), ("block_lines", 3), ("group", 0),
                                         ("model", "lstm"), ("n", 0), ("unknown", 1)])
def test_bad_params(field, value):
    with pytest.raises(ValidationError, match=field if field != "unknown" else "Extra"):
        get("wavelet_mapping").make_params({field: value})


def test_kary_needs_per_query_mode():
    workload = get("wavelet_mapping")
    params = workload.make_params({**workload.smoke_params, "group": 16, "candidates": 5})
    with pytest.raises(ValueError, match="per-query"):
        workload.run(params, LocalReporter())
    from pipeline.config import load_task
    from pipeline.space import violated

    task = load_task(Path(__file__).resolve().parents[1] / "tasks" / "wavelet_mapping.yaml", profile="quick")
    assert "per-query" in violated(task.space, params)


def test_task_file_validates():
    from pipeline.config import load_task

    root = Path(__file__).resolve().parents[1]
    for profile in ("quick", "paper"):
        task = load_task(root / "tasks" / "wavelet_mapping.yaml", profile=profile)
        assert task.task.workload == "wavelet_mapping"
        assert task.params.n == (200_000 if profile == "quick" else 10_000_000)


def test_bench_rows_tiny():
    from pipeline.bench.wavelet import main

    rows = main(["--n", "3000", "--queries", "300", "--repeats", "1", "--arities", "4", "256",
                 "--sample-rates", "64", "--block-lines", "1", "32", "--btree-fanouts", "16", "--binary-arity", "4",
                 "--model", "pgm:epsilon=8"])
    methods = [row["method"] for row in rows]
    assert methods[0] == "btree_f16"
    assert {"permutation+pgm", "sorted_copy+pgm", "wavelet_m4_s64+pgm", "wavelet_m256_full+pgm",
            "wavelet_m4_s64+binary", "wavelet_m4_i64+pgm", "wavelet_m4_b1+pgm", "wavelet_m256_b32+pgm"} <= set(methods)
    assert "wavelet_m256_b1+pgm" not in methods  # 256 counts do not fit one line: skipped
    for row in rows:
        if row["method"] != "btree_reference":
            assert {"method", "bits_per_element", "ns_per_access", "ns_per_lookup"} <= set(row)
        if row["method"].startswith("wavelet"):
            assert {"ns_per_lookup_batched", "lookup_vs_btree_batched", "bound_ratio_batched",
                    "meets_target", "meets_target_batched"} <= set(row)
