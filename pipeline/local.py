"""One trial of a task in this process, without Ray or MLflow: the params that
`python -m pipeline.run` resolves (task file, profile, dotted overrides) run once with a
`LocalReporter`. Prints the metrics, wall time and peak memory; leaves the trial's
artifacts and `summary.json` (metrics, every report) in `--out`.

    python -m pipeline.run tasks/lego.yaml --local --out /tmp/lego_full
    python -m pipeline.run tasks/lego.yaml --local --out /tmp/abl params.scanning=false
    python -m pipeline.run tasks/nn_uniform_1d.yaml --local params.lookups=4 params.threads=1

A search-space parameter left unset takes the task's (or the workload's) default: this
runs one point, not the search. Apart from `run.py` so that the command line stays a
page and this path imports neither Ray nor MLflow.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

from pipeline import workloads
from pipeline.config import ResolvedTask
from pipeline.workloads.base import LocalReporter


def run_local(resolved: ResolvedTask, out: Path | None = None) -> dict:
    """Run the resolved task's params once here; return (and write) the summary."""
    workload = workloads.get(resolved.task.workload)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"{resolved.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    report = LocalReporter(artifact_dir=out)
    started = time.perf_counter()
    metrics = workload.run(resolved.params, report)
    wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB
    summary = {"task": str(resolved.path), "profile": resolved.profile, "workload": workload.name,
               "metrics": metrics, "wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2),
               "reports": report.history}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "reports"}, indent=1, default=str))
    print(f"artifacts in {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return summary
