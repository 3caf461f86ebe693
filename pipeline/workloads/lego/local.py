"""One trial of a Lego task in this process, without Ray or MLflow: the same params as
`python -m pipeline.run` resolves (task file, profile, dotted overrides), run with a
`LocalReporter`; prints the metrics, wall time, peak memory and the ARE table of Lego
against CountMin, and leaves brick.pt, lego_eval.csv and the plots in `--out`.

    python -m pipeline.workloads.lego.local tasks/lego.yaml --out /tmp/lego_full
    python -m pipeline.workloads.lego.local tasks/lego.yaml --out /tmp/abl params.scanning=false

It is how the accuracy, ablation and baseline tables in docs/benchmarks.md were made
(one trial of a grid point instead of the whole grid: on a 2-core box the ablations run
one at a time). A search-space parameter left unset takes the workload default.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from pipeline.config import load_task
from pipeline.workloads.base import LocalReporter
from pipeline.workloads.lego.workload import EVAL_WORKLOAD, WORKLOAD


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m pipeline.workloads.lego.local", description=__doc__.split("\n")[0])
    parser.add_argument("task", help="tasks/lego.yaml or tasks/lego_eval.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. params.lr=3e-3")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", required=True, help="artifact folder (created)")
    args = parser.parse_intermixed_args(argv)
    resolved = load_task(args.task, profile=args.profile, overrides=args.overrides)
    workload = {WORKLOAD.name: WORKLOAD, EVAL_WORKLOAD.name: EVAL_WORKLOAD}.get(resolved.task.workload)
    if workload is None:
        parser.error(f"{args.task}: workload {resolved.task.workload!r} is not a Lego workload")
    params = workload.make_params(resolved.params.model_dump())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = LocalReporter(artifact_dir=out)
    started = time.perf_counter()
    metrics = workload.run(params, report)
    wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB
    summary = {"metrics": metrics, "wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2),
               "reports": report.history}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "reports"}, indent=1))
    print(are_table(out / "lego_eval.csv"))
    return summary


def are_table(csv: Path) -> str:
    """ARE per (skew or stream, bricks) and method, with Lego / CountMin."""
    import pandas as pd

    frame = pd.read_csv(csv)
    table = frame.pivot_table(index=["stream", "bricks"], columns="method", values="are", sort=False)
    if "lego" in table and "countmin" in table:
        table["lego/countmin"] = table["lego"] / table["countmin"]
    return table.round(3).to_string()


if __name__ == "__main__":
    main(sys.argv[1:])
