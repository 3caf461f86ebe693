"""Wall time of N trivial trials through the whole pipeline (Tune + Optuna + MLflow)
against the same N workload calls in a plain Python loop; Ray start-up timed apart.

    python -m pipeline.bench pipeline_overhead --json out.json [--trials 16 --concurrency 2]

The trivial trial is the `cms` workload at its smoke size (a 5,000-item stream). The
MLflow store is a fresh sqlite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.workloads.base import LocalReporter


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench pipeline_overhead")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)

    from pipeline.config import load_task
    from pipeline.driver import execute, init_ray
    from pipeline.workloads import get

    workload = get("cms")
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    task = {
        "workload": "cms", "params": workload.smoke_params,
        "search_space": {"parameters": {"width": {"type": "randint", "low": 16, "high": 4096}}},
        "objectives": [{"metric": "aae", "mode": "min"}, {"metric": "bytes", "mode": "min"}],
        "search": {"sampler": "random", "num_samples": args.trials, "max_concurrent": args.concurrency},
        "mlflow": {"experiment": "bench-overhead", "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}"},
    }
    (folder / "overhead.yaml").write_text(yaml.safe_dump(task))
    resolved = load_task(folder / "overhead.yaml")

    # the same N calls in a plain loop
    start = time.perf_counter()
    for i in range(args.trials):
        workload.run(workload.make_params({**workload.smoke_params, "width": 16 + 37 * i}), LocalReporter())
    loop_s = time.perf_counter() - start

    start = time.perf_counter()
    init_ray(printer=lambda _: None)
    ray_start_s = time.perf_counter() - start

    os.environ["PIPELINE_RESULTS"] = str(folder / "ray_results")
    start = time.perf_counter()
    summary = execute(resolved, printer=lambda _: None)
    pipeline_s = time.perf_counter() - start
    os.environ.pop("PIPELINE_RESULTS")
    n = summary["trial_count"]
    return [
        {"method": "plain_loop", "trials": args.trials, "wall_s": loop_s, "s_per_trial": loop_s / args.trials},
        {"method": "ray_start", "wall_s": ray_start_s},
        {"method": "pipeline", "trials": n, "concurrency": args.concurrency, "wall_s": pipeline_s,
         "s_per_trial": pipeline_s / n, "overhead_s_per_trial": (pipeline_s - loop_s) / n},
    ]
