"""The command line: `python -m pipeline.run TASK.yaml [--profile NAME] [key=value ...]`.

    python -m pipeline.run tasks/lego.yaml                 # quick profile, local Ray + sqlite MLflow
    python -m pipeline.run tasks/cms.yaml --dry-run        # validate and print, start nothing
    python -m pipeline.run tasks/cms.yaml search.num_samples=4 --summary s.json
    python -m pipeline.run tasks/cms.yaml --resume         # finish a killed run
    python -m pipeline.run tasks/lego.yaml --local --out /tmp/one  # one trial here, no Ray/MLflow
    python -m pipeline.run --list-workloads

Exit codes: 0 done; 2 bad input (task file, field, value, unreachable store), with one
line per problem naming the file and field, before anything starts; 1 the run failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from pipeline.config import load_task
from pipeline.errors import TaskError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", help="a task file, e.g. tasks/cms.yaml")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the resolved task (YAML values)")
    p.add_argument("--profile", default=None, help="a profile of the task file (default: quick)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved task; start nothing")
    p.add_argument("--resume", action="store_true", help="resume the newest unfinished run of this task")
    p.add_argument("--summary", type=Path, default=None, help="write a JSON summary (run ids, front) here")
    p.add_argument("--local", action="store_true",
                   help="run one trial of the task's params in this process, without Ray or MLflow (pipeline.local)")
    p.add_argument("--out", type=Path, default=None, help="with --local: the artifact folder (default: a temporary one)")
    p.add_argument("--list-workloads", action="store_true", help="print the registered workloads and exit")
    return p


def _list_workloads() -> None:
    from pipeline import workloads

    for name in workloads.names(available_only=False):
        try:
            w = workloads.get(name)
            print(f"{name:<18} {'torch' if w.uses_torch else 'plain':<6} {w.description}")
        except ModuleNotFoundError as err:
            print(f"{name:<18} {'-':<6} (not available: {err})")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    if args.list_workloads:
        _list_workloads()
        return 0
    if not args.task:
        print("error: a task file is required (or --list-workloads)", file=sys.stderr)
        return 2
    try:
        resolved = load_task(args.task, args.profile, args.overrides)
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None and not args.local:
        print("error: --out: goes with --local (a search's artifacts go to MLflow)", file=sys.stderr)
        return 2
    if args.summary is not None and not args.summary.parent.exists():
        print(f"error: --summary: folder {args.summary.parent} does not exist", file=sys.stderr)
        return 2

    if args.dry_run:
        print(f"# {resolved.path} [profile {resolved.profile}] workload {resolved.task.workload}")
        shown = {k: v for k, v in resolved.raw.items() if k != "profiles"}
        shown["params"] = resolved.params.model_dump(mode="json")
        shown["search_space"] = resolved.space.model_dump(mode="json")
        print(yaml.safe_dump(shown, sort_keys=False), end="")
        return 0

    if args.local:
        from pipeline.local import run_local

        run_local(resolved, args.out)
        return 0

    from pipeline.driver import NothingToResume, execute
    from pipeline.mlflow_store import StoreUnreachable

    try:
        summary = execute(resolved, resume=args.resume)
    except StoreUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NothingToResume, TaskError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_front(summary)
    if args.summary is not None:
        args.summary.write_text(json.dumps(summary, indent=2, default=str))
        print(f"summary written to {args.summary}")
    return 0 if summary["pareto"] or summary["trial_count"] == 0 else 1


def _print_front(summary: dict) -> None:
    metrics = [o["metric"] for o in summary["objectives"]]
    print(f"\nPareto front ({len(summary['pareto'])} of {summary['trial_count']} trials; "
          f"{', '.join(f'{k} {v}' for k, v in summary['trials'].items())}):")
    if summary["pareto"]:
        keys = sorted({k for row in summary["pareto"] for k in row["params"]})
        header = metrics + keys
        rows = [[f"{row['objectives'][m]:.5g}" for m in metrics] + [str(row["params"].get(k)) for k in keys]
                for row in summary["pareto"]]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if summary.get("hypervolume") is not None:
        print(f"hypervolume {summary['hypervolume']:.6g} against {summary['reference_point']}")
    print(f"MLflow: {summary['tracking_uri']} experiment {summary['experiment']!r} "
          f"parent run {summary['parent_run_id']}")
    print(f"  browse: bash mlflow/serve.sh   then http://127.0.0.1:5000/#/experiments/"
          f"{summary['experiment_id']}/runs/{summary['parent_run_id']}")
    if summary.get("not_logged"):
        print(f"NOT logged to MLflow ({len(summary['not_logged'])} calls; results kept in {summary['ray_results']}):")
        for line in summary["not_logged"]:
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
