"""scripts/gpu_check.sh: without CUDA it stops at once with one line; its CPU dry mode
runs every step (three quick tasks, shrunk, and the Lego benchmark) and writes the JSON
of wall times, accuracies and throughputs that the GPU mode writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_mode_without_cuda_stops_in_one_line(tmp_path):
    done = _run("--out", str(tmp_path / "gpu.json"), env={"GPU_CHECK_WORK": str(tmp_path / "work")}, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU: "), done.stderr
    assert "--cpu" in lines[0]
    assert not (tmp_path / "gpu.json").exists() and not (tmp_path / "work").exists()  # nothing started


@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--cpu", "--out", "/no/such/folder/x.json"], "--out: folder /no/such/folder does not exist"),
    (["--out"], "--out needs a path"),
])
def test_bad_usage_is_one_line_and_exit_2(args, needle):
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and needle in done.stderr


def test_bad_device_variable_is_one_line_and_exit_2():
    done = _run(env={"GPU_CHECK_DEVICE": "tpu"})
    assert done.returncode == 2 and done.stderr.strip() == "gpu_check: GPU_CHECK_DEVICE='tpu' is not cpu or cuda"


@pytest.mark.slow
def test_cpu_dry_mode_writes_the_report(tmp_path):
    out = tmp_path / "cpu.json"
    done = _run("--cpu", "--out", str(out), env={"GPU_CHECK_WORK": str(tmp_path / "work")}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["device"]["mode"] == "cpu" and report["device"]["gpu"] is None
    assert report["total_wall_s"] > 0 and isinstance(report["within_10_min"], bool)
    assert set(report["tasks"]) == {"lego", "nn_uniform_1d", "freq_zipf"}
    for name, task in report["tasks"].items():
        assert task["rc"] == 0 and task["wall_s"] > 0, name
        assert task["trials"] >= 1 and task["trials_per_min"] > 0, name
        assert task["front"], f"{name}: empty front"
        # the best value of every objective, taken from the run's own front
        assert set(task["best"]) == {o["metric"] for o in task["objectives"]}, name
        for o in task["objectives"]:
            pick = min if o["mode"] == "min" else max
            assert task["best"][o["metric"]] == pick(f[o["metric"]] for f in task["front"])
        assert "scaling.use_gpu=false" in task["command"]  # dry mode: Ray has no GPU to give
    bench = report["lego_bench"]
    assert bench["rc"] == 0 and "--device cpu" in bench["command"]
    assert {"lego_store", "lego_query", "countmin_update", "countmin_query"} <= set(bench["throughput"])
    assert all(row["items_per_s"] > 0 for row in bench["throughput"].values())
    assert bench["throughput"]["lego_store"]["device"] == "cpu"
