"""The driver at many trials: the whole pipeline (Tune + Optuna + MLflow + the front)
against Optuna alone, on the same trivial workload and the same sampler.

    python -m pipeline.bench pipeline_scaling --trials 100,1000,3000 --json out.json
        [--concurrency 2] [--sampler random]

The workload is `zdt1` (tasks/zdt1.yaml): an analytic function that costs microseconds,
so what is measured is the pipeline itself. Every count runs in a fresh driver process
(so each peak RSS is its own, not the largest count's so far) with a fresh sqlite MLflow
store and Optuna study in a temporary folder; Ray's start-up is timed apart.

Rows, one per method and count:
- `pipeline`: `execute()` of the task with `search.num_samples=N`. `s_per_trial` is the
  search's wall time (Tuner.fit, every MLflow write made during it and the progress
  lines) over N; `overhead_s_per_trial` subtracts the workload's own time per trial
  (timed in a plain loop in the same process); `ratio_vs_first` divides that by the
  first count's. `steady_s_per_trial` is the time per trial from the first trial's end
  to the last's (start-up excluded). `front_s` is the time to compute the front and
  hypervolume and log them, with the plots and tables, to the parent run.
  `peak_rss_mb` is the driver's peak resident memory (getrusage), `rss_growth_mb` that
  minus its resident memory once Ray was up and the modules loaded;
  `search_rss_kb_per_trial` its growth per trial during the search, `rss_last_trial_mb`
  its resident memory when the last trial ended. `store_mb`: the MLflow sqlite file
  plus its artifact folder; `optuna_db_mb` the Optuna study's sqlite file.
- `optuna_memory`: `optuna.create_study(...).optimize` in-process, in-memory storage.
- `optuna_sqlite`: the same with the study in a sqlite file in WAL mode, as the
  pipeline keeps it (so that a run can be resumed).
The Optuna rows run one trial at a time; the pipeline runs `--concurrency` at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "tasks" / "zdt1.yaml"
SAMPLERS = ("random", "tpe", "nsga2")


class _LineLog:
    """The run's printer: progress lines go to a file, as they would to a terminal, so
    their cost is measured, each stamped with the time and the driver's resident memory
    (one read of /proc). Picklable (the Tuner pickles callbacks holding it)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self._handle = None

    def __getstate__(self):
        return {"path": self.path, "_handle": None}

    def __call__(self, line: str) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", buffering=1)
        self._handle.write(f"{time.monotonic():.3f} {_rss_now_mb():.1f} {line}\n")


def _parse_counts(text: str) -> list[int]:
    """`--trials 100,1000,3000`: positive integers, comma separated. A bad value is one
    line on stderr and exit status 2."""
    counts = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            print(f"error: --trials: {part!r} in {text!r} is not a positive integer "
                  f"(give counts like 100,1000,3000)", file=sys.stderr)
            raise SystemExit(2)
        counts.append(value)
    return counts


def _rss_now_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _size_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _progress_times(path: Path) -> dict:
    """From the run's progress lines (each stamped by `_LineLog`): the seconds from the
    search's first line to the first trial's end; the steady time per trial from the
    first trial's end to the last's (the marginal cost of one more trial); the driver's
    memory growth per trial over the same span, and its resident memory at the last
    trial's end (before Tune reads every trial's results back and the front is made)."""
    stamps, rss, first = [], [], None
    for line in path.read_text().splitlines():
        stamp, mb, text = line.split(" ", 2)
        if first is None:
            first = float(stamp)  # "<task> [<profile>]: N trials of ..." just before Tuner.fit
        elif text.startswith("["):
            stamps.append(float(stamp))
            rss.append(float(mb))
    if first is None or len(stamps) < 2:
        return {"first_trial_s": None, "steady_s_per_trial": None, "search_rss_kb_per_trial": None,
                "rss_last_trial_mb": None}
    span = len(stamps) - 1
    return {"first_trial_s": stamps[0] - first, "steady_s_per_trial": (stamps[-1] - stamps[0]) / span,
            "search_rss_kb_per_trial": (rss[-1] - rss[0]) * 1024 / span, "rss_last_trial_mb": rss[-1]}


def _workload_s_per_trial(n: int) -> float:
    """The workload's own cost: n calls in a plain loop, as the sampler would draw them."""
    import numpy as np

    from pipeline.workloads import get
    from pipeline.workloads.base import LocalReporter

    workload = get("zdt1")
    points = np.random.default_rng(0).random((n, 2))
    reporter = LocalReporter(artifact_dir=Path(tempfile.mkdtemp(prefix="zdt1-")))
    start = time.perf_counter()
    for x1, x2 in points:
        workload.run(workload.make_params({"x1": float(x1), "x2": float(x2)}), reporter)
    return (time.perf_counter() - start) / n


def _run_pipeline(n: int, concurrency: int, sampler: str, folder: Path) -> dict:
    from pipeline.config import load_task
    from pipeline.driver import execute, init_ray

    work_s = _workload_s_per_trial(n)
    start = time.perf_counter()
    init_ray(printer=lambda _: None)
    ray_start_s = time.perf_counter() - start
    db = folder / "mlflow.db"
    os.environ["PIPELINE_RESULTS"] = str(folder / "ray_results")
    os.environ.pop("OPTUNA_STORAGE", None)
    resolved = load_task(TASK, overrides=[
        f"search.num_samples={n}", f"search.max_concurrent={concurrency}", f"search.sampler={sampler}",
        f"mlflow.tracking_uri=sqlite:///{db}", "mlflow.experiment=pipeline-scaling"])
    # what execute() imports, imported before the baseline, so that the growth is the run's
    import matplotlib.pyplot  # noqa: F401
    import ray.tune.search.optuna  # noqa: F401

    import pipeline.plots  # noqa: F401
    import pipeline.tracking  # noqa: F401
    import pipeline.trial  # noqa: F401

    rss_before = _rss_now_mb()
    cpu_before = _cpu_s()
    start = time.perf_counter()
    summary = execute(resolved, printer=_LineLog(folder / "progress.log"))
    total_s = time.perf_counter() - start
    cpu_s = _cpu_s() - cpu_before
    search_s = float(summary["wall_s"])
    trials = int(summary["trial_count"])
    return {
        "method": "pipeline", "trials": trials, "concurrency": concurrency, "sampler": sampler,
        "s_per_trial": search_s / trials, "overhead_s_per_trial": search_s / trials - work_s,
        "search_s": search_s, "front_s": float(summary["front_s"]), "execute_s": total_s,
        "driver_cpu_s_per_trial": cpu_s / trials, **_progress_times(folder / "progress.log"),
        "tracking_drain_s": float(summary["tracking_drain_s"]),
        "ray_start_s": ray_start_s, "peak_rss_mb": _peak_rss_mb(), "rss_growth_mb": _peak_rss_mb() - rss_before,
        "store_mb": _size_mb(db) + _size_mb(folder / "artifacts"), "optuna_db_mb": _size_mb(folder / "optuna.db"),
        "front_size": len(summary["pareto"]), "finished": int(summary["trials"].get("finished", 0)),
        "not_logged": len(summary["not_logged"]), "workload_s_per_trial": work_s,
    }


def _run_optuna(n: int, sampler: str, storage: str, folder: Path) -> dict:
    import optuna

    from pipeline.config import load_task
    from pipeline.space import make_sampler, to_optuna
    from pipeline.workloads import get
    from pipeline.workloads.base import LocalReporter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    resolved = load_task(TASK, overrides=[f"search.sampler={sampler}"])
    workload = get("zdt1")
    distributions = to_optuna(resolved.space, str(TASK))
    reporter = LocalReporter(artifact_dir=folder)
    work_s = _workload_s_per_trial(n)

    def suggest(trial, name, dist):
        if isinstance(dist, optuna.distributions.FloatDistribution):
            return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        if isinstance(dist, optuna.distributions.IntDistribution):
            return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        return trial.suggest_categorical(name, dist.choices)

    def objective(trial):
        values = {name: suggest(trial, name, dist) for name, dist in distributions.items()}
        out = workload.run(workload.make_params(values), reporter)
        reporter.history.clear()
        return [out[o.metric] for o in resolved.task.objectives]

    url = None
    if storage == "sqlite":
        from optuna.storages import RDBStorage

        from pipeline.mlflow_store import sqlite_wal

        url = RDBStorage(f"sqlite:///{folder / 'optuna.db'}")
        sqlite_wal(url.engine)  # as the pipeline keeps its study
    rss_before = _rss_now_mb()
    cpu_before = _cpu_s()
    start = time.perf_counter()
    study = optuna.create_study(
        storage=url, study_name="pipeline-scaling",
        directions=["minimize" if o.mode == "min" else "maximize" for o in resolved.task.objectives],
        sampler=make_sampler(sampler, resolved.space, resolved.task.search.seed))
    study.optimize(objective, n_trials=n)
    search_s = time.perf_counter() - start
    cpu_s = _cpu_s() - cpu_before
    start = time.perf_counter()
    front = study.best_trials
    front_s = time.perf_counter() - start
    return {
        "method": f"optuna_{storage}", "trials": len(study.trials), "concurrency": 1, "sampler": sampler,
        "s_per_trial": search_s / n, "overhead_s_per_trial": search_s / n - work_s, "search_s": search_s,
        "driver_cpu_s_per_trial": cpu_s / n, "front_s": front_s, "peak_rss_mb": _peak_rss_mb(), "rss_growth_mb": _peak_rss_mb() - rss_before,
        "optuna_db_mb": _size_mb(folder / "optuna.db"), "front_size": len(front), "workload_s_per_trial": work_s,
    }


def _child(argv: list[str]) -> None:
    """One measurement in this (fresh) process: `method n concurrency sampler folder out`."""
    method, n, concurrency, sampler, folder, out = argv
    folder_path = Path(folder)
    if method == "pipeline":
        row = _run_pipeline(int(n), int(concurrency), sampler, folder_path)
    else:
        row = _run_optuna(int(n), sampler, method.split("_", 1)[1], folder_path)
    Path(out).write_text(json.dumps(row))


def _measure(method: str, n: int, concurrency: int, sampler: str, keep: Path | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"scaling-{method}-{n}-", dir=keep))
    out = folder / "row.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipeline.bench.pipeline_scaling", "--child", method, str(n),
                           str(concurrency), sampler, str(folder), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-20:]
        raise RuntimeError(f"pipeline_scaling: {method} at {n} trials failed (exit {done.returncode}):\n"
                           + "\n".join(tail))
    row = json.loads(out.read_text())
    if keep is None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench pipeline_scaling")
    p.add_argument("--trials", default="100,1000,3000", help="trial counts, comma separated")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time in the pipeline")
    p.add_argument("--sampler", choices=SAMPLERS, default="random")
    p.add_argument("--methods", default="pipeline,optuna_memory,optuna_sqlite",
                   help="which of pipeline, optuna_memory, optuna_sqlite to run")
    p.add_argument("--keep", type=Path, default=None, help="keep each run's folder under this one")
    args = p.parse_args(argv)
    counts = _parse_counts(args.trials)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    valid = ("pipeline", "optuna_memory", "optuna_sqlite")
    bad = [m for m in methods if m not in valid]
    if bad or not methods:
        print(f"error: --methods: {','.join(bad) if bad else repr(args.methods)} not among {', '.join(valid)}", file=sys.stderr)
        raise SystemExit(2)
    if args.concurrency < 1:
        print(f"error: --concurrency: {args.concurrency} is not a positive integer", file=sys.stderr)
        raise SystemExit(2)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = []
    first: dict[str, float] = {}
    for n in counts:
        for method in methods:
            row = _measure(method, n, args.concurrency, args.sampler, args.keep)
            first.setdefault(method, row["overhead_s_per_trial"])
            row["ratio_vs_first"] = row["overhead_s_per_trial"] / first[method] if first[method] > 0 else None
            rows.append(row)
            print(f"{method} {n}: {row['s_per_trial']:.4g} s/trial, peak RSS {row['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        print(json.dumps(main(sys.argv[1:]), indent=2))
