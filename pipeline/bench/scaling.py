"""The same quick task on one Ray node and on a two-node Ray cluster on this machine.

    python -m pipeline.bench scaling --json out.json [--trials 8 --repeats 1]

Both clusters have the same 2 CPUs in total (one node with 2, or two nodes with 1
each, started by pipeline.cluster.local on loopback), and the task (tasks/cms.yaml,
quick profile shrunk to a small stream) runs 2 trials at a time on both. On one machine
this measures the OVERHEAD of a second node (its raylet, object store and agents
competing for the same cores, and cross-node scheduling), not a speed-up: a real
second machine would add cores.

Rows: one per cluster shape: `startup_s` (start the nodes and connect), `wall_s` (the
search: Tuner.fit, from the pipeline's summary), `trials_per_min` (trials / wall_s),
`nodes_used` (nodes that ran at least one trial), median over `--repeats`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHAPES = {
    "one_node": [{"num_cpus": 2}],
    "two_nodes": [{"num_cpus": 1}, {"num_cpus": 1}],
}


def _quiet(line: str) -> None:
    """The run's printer: silent (module-level so that the Tuner can pickle it)."""


def _one_run(nodes: list[dict], trials: int, folder: Path) -> dict:
    from pipeline.cluster.local import actor_nodes, local_cluster
    from pipeline.config import load_task
    from pipeline.driver import execute

    resolved = load_task(ROOT / "tasks" / "cms.yaml", "quick", [
        f"mlflow.tracking_uri=sqlite:///{folder / 'mlflow.db'}", "mlflow.experiment=scaling",
        f"search.num_samples={trials}", "search.max_concurrent=2", "search.sampler=random",
        "params.stream.universe=5000", "params.stream.length=50000", "params.stream.queries=1000",
    ])
    started = time.perf_counter()
    with local_cluster(nodes):
        startup = time.perf_counter() - started
        summary = execute(resolved, printer=_quiet)
        used = len(set(actor_nodes("ImplicitFunc")))
    return {"startup_s": startup, "wall_s": summary["wall_s"], "trial_count": summary["trial_count"],
            "nodes_used": used}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="pipeline.bench scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials of the quick cms task per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cluster shape; medians are reported")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args(argv)

    rows = []
    for shape in args.shapes:
        runs = []
        for _ in range(args.repeats):
            folder = Path(tempfile.mkdtemp(prefix=f"scaling-{shape}-"))
            try:
                runs.append(_one_run(SHAPES[shape], args.trials, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        wall = statistics.median(r["wall_s"] for r in runs)
        rows.append({
            "method": shape,
            "nodes": len(SHAPES[shape]),
            "cpus": sum(n["num_cpus"] for n in SHAPES[shape]),
            "trials": runs[0]["trial_count"],
            "startup_s": round(statistics.median(r["startup_s"] for r in runs), 2),
            "wall_s": round(wall, 2),
            "trials_per_min": round(runs[0]["trial_count"] / wall * 60, 2),
            "nodes_used": min(r["nodes_used"] for r in runs),
            "repeats": args.repeats,
        })
    base = rows[0]["wall_s"] if rows and rows[0]["method"] == "one_node" else None
    for row in rows:
        row["wall_vs_one_node"] = round(row["wall_s"] / base, 3) if base else None
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
