"""Runs a resolved task: Ray, the Optuna search, the MLflow runs, the Pareto front.

`execute(resolved)` starts (or joins) Ray, opens the MLflow parent run, runs Ray Tune
with Optuna over the trial function of `pipeline.trial`, then computes the front over
the trials that ran their full budget, logs it to the parent run and returns the
summary. `execute(..., resume=True)` restores the newest unfinished run of the same
task (Tune's experiment state plus the Optuna study in RDB storage) and the same
MLflow parent run, so no trial is lost or repeated.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from pipeline import paths
from pipeline.config import ResolvedTask
from pipeline.errors import TaskError
from pipeline.pareto import default_reference, hypervolume, non_dominated
from pipeline.workloads import get as get_workload

STATE_FILE = "pipeline_state.json"


class NothingToResume(FileNotFoundError):
    """--resume found no unfinished run of the task: reported in one line, exit 2."""


def init_ray(printer: Callable[[str], None] = print, min_cpus: float = 0) -> None:
    """Join the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a
    local Ray sized to this machine with a capped object store. min_cpus: what one trial
    holds at once (`trial.trial_cpu_demand`); a local Ray gets at least that many logical
    CPUs, so 2 Train workers of 1 CPU each and their trial's waiting function (2.01 CPUs)
    start on a 2-core laptop instead of queueing for ever (the cores are shared)."""
    import ray

    if ray.is_initialized():
        return
    # Tune checks every result for every objective; trial functions report progress
    # rows without them (and rejected points NaN), so the check is done by the schema.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray's tqdm support replaces print on the driver, after which the Tuner cannot
    # pickle a callback holding print
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    env_vars = {"PIPELINE_HOME": str(paths.project_root()), "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"}
    if os.environ.get("RAY_ADDRESS"):
        printer(f"joining Ray cluster at {os.environ['RAY_ADDRESS']}")
        ray.init(runtime_env={"env_vars": env_vars} if "RAY_JOB_ID" not in os.environ else None,
                 log_to_driver=True)
        return
    store_mb = int(os.environ.get("PIPELINE_OBJECT_STORE_MB", "512"))
    cores = os.cpu_count() or 1
    num_cpus = max(cores, math.ceil(min_cpus))
    if num_cpus > cores:
        printer(f"local Ray: {num_cpus} logical CPUs on {cores} cores, so that one trial's "
                f"{min_cpus:g} CPUs (scaling) can start")
    # address="local": a new Ray for this run, even if a `ray start` head is up here
    ray.init(address="local", num_cpus=num_cpus, object_store_memory=store_mb * 1024 * 1024, include_dashboard=False,
             runtime_env={"env_vars": env_vars}, log_to_driver=True, configure_logging=True,
             logging_level="WARNING")


def _check_trial_fits(need: float) -> None:
    """A local Ray that cannot hold one trial would queue it for ever: say so instead. A
    cluster (RAY_ADDRESS) may autoscale to it, so it is not checked there."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return
    have = ray.cluster_resources().get("CPU", 0)
    if have < need:
        raise TaskError(f"scaling: one trial needs {need:g} CPUs (num_workers x resources_per_worker.CPU, plus "
                        f"its function's), this local Ray has {have:g}: lower scaling.num_workers or "
                        f"scaling.resources_per_worker.CPU")


def _optuna_storage(url: str):
    """The Optuna study's RDB storage; a sqlite file in WAL mode (`tracking.sqlite_wal`:
    Optuna commits several times per trial: ask, each parameter, tell)."""
    from optuna.storages import RDBStorage

    from pipeline.mlflow_store import sqlite_wal

    storage = RDBStorage(url)
    if url.startswith("sqlite:"):
        sqlite_wal(storage.engine)
    return storage


def _experiment_dirs(store: paths.ResultsStore, task_name: str) -> list[str]:
    """This task's run folders that hold a state file, oldest first (their names end in
    a UTC stamp, so name order is time order)."""
    return [name for name in store.subfolders(f"{task_name}-") if store.exists(name, STATE_FILE)]


def execute(resolved: ResolvedTask, *, resume: bool = False, printer: Callable[[str], None] = print,
            tracking_uri: str | None = None) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from pipeline import tracking
    from pipeline.space import grid_size, make_sampler, to_optuna
    from pipeline.trial import run_trial, trial_cpu_demand, trial_payload, trial_resources

    task = resolved.task
    workload = get_workload(task.workload)
    tracking_uri = tracking_uri or task.mlflow.tracking_uri or paths.default_tracking_uri()
    client = tracking.connect(tracking_uri)  # StoreUnreachable before any compute
    safe = tracking.SafeClient(client)
    experiment_id = tracking.ensure_experiment(client, resolved.experiment, tracking_uri)
    storage = paths.results_dir(tracking_uri)  # a folder, or a URI such as s3://... on a cluster
    store = paths.ResultsStore(storage)
    store.makedirs()
    if resume:
        candidates = [name for name in _experiment_dirs(store, resolved.name)
                      if not json.loads(store.read_text(name, STATE_FILE)).get("complete")]
        if not candidates:
            raise NothingToResume(f"--resume: no unfinished run of {resolved.name} under {storage}")
    # Ray before any run is written or reopened: a trial that cannot start writes nothing
    need = trial_cpu_demand(task.scaling.model_dump())
    init_ray(printer, min_cpus=need)
    _check_trial_fits(need)

    if resume:
        exp_name = candidates[-1]
        state = json.loads(store.read_text(exp_name, STATE_FILE))
        parent_run_id = state["parent_run_id"]
        printer(f"resuming {exp_name} (MLflow parent run {parent_run_id})")
        safe.call("reopen parent run", lambda: client.update_run(parent_run_id, status="RUNNING"))
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        exp_name = f"{resolved.name}-{stamp}"
        parent = client.create_run(experiment_id, run_name=f"{resolved.name}-{resolved.profile}-{stamp}", tags={
            "pipeline.task": str(resolved.path), "pipeline.profile": resolved.profile,
            "pipeline.workload": task.workload, "pipeline.git_commit": tracking.git_commit(),
            "pipeline.role": "parent", "mlflow.note.content": task.description or task.workload,
        })
        parent_run_id = parent.info.run_id
        _log_parent_inputs(client, parent_run_id, resolved, tracking)
        state = {"parent_run_id": parent_run_id, "experiment_id": experiment_id, "study": exp_name,
                 "task": str(resolved.path), "profile": resolved.profile, "complete": False}
        store.makedirs(exp_name)
        store.write_text(json.dumps(state, indent=2), exp_name, STATE_FILE)

    objectives = [o.model_dump() for o in task.objectives]
    num_samples = task.search.num_samples or (grid_size(resolved.space) if task.search.sampler == "grid" else 8)
    callback = tracking.MLflowTrials(safe, experiment_id, parent_run_id, workload.metrics, printer, num_samples,
                                     fresh=not resume)

    payload = trial_payload(resolved, store.join("train"))
    trainable = tune.with_parameters(run_trial, payload=payload)
    trainable = tune.with_resources(trainable, trial_resources(task.scaling.model_dump()))
    run_config = tune.RunConfig(
        name=exp_name, storage_path=storage, callbacks=[callback, tracking.NoTensorBoard()], verbose=0,
        failure_config=tune.FailureConfig(max_failures=task.failure.max_retries),
    )
    started = time.time()
    if resume:
        tuner = tune.Tuner.restore(store.join(exp_name), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
        # callbacks are not part of the saved state: hand ours back in
        tuner._local_tuner._run_config.callbacks = [callback, tracking.NoTensorBoard()]
    else:
        storage_url = paths.optuna_storage_url(tracking_uri)
        searcher = OptunaSearch(
            space=to_optuna(resolved.space, str(resolved.path)),
            metric=[o["metric"] for o in objectives], mode=[o["mode"] for o in objectives],
            sampler=make_sampler(task.search.sampler, resolved.space, task.search.seed),
            study_name=exp_name, storage=_optuna_storage(storage_url),
        )
        searcher = ConcurrencyLimiter(searcher, max_concurrent=task.search.max_concurrent)
        scheduler = None
        if task.search.scheduler is not None:
            s = task.search.scheduler
            # max_t counts progress reports; one more is allowed for the trial's final
            # report, or a trial that ran its whole budget would be cut before it
            scheduler = ASHAScheduler(metric=s.metric, mode=s.mode, max_t=s.max_t + 1, grace_period=s.grace_period,
                                      reduction_factor=s.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                       reuse_actors=True),
            run_config=run_config,
        )
        if not resolved.space.parameters:
            raise ValueError(f"{resolved.path}: search_space: no parameters to search")
    printer(f"{resolved.name} [{resolved.profile}]: {num_samples} trials of {task.workload}, "
            f"sampler {task.search.sampler}, MLflow {tracking_uri}, experiment {resolved.experiment}")
    # the trials' MLflow writes go from a writer thread, so Tune's loop never waits on the store
    safe.start_background()
    try:
        results = tuner.fit()
    finally:
        fitted = time.time()
        safe.stop_background()
    wall = time.time() - started
    drain_s = time.time() - fitted  # MLflow writes still queued when the last trial ended

    frame = _results_frame(results, objectives)
    safe.flush()  # what the store missed during the search, before the front refers to it
    lost = callback.close_lost_runs(_ended_trials(frame, workload.metrics) if resume else None)
    if lost:
        printer(f"closed {len(lost)} child run(s) of trials lost when the earlier driver died "
                f"(KILLED, pipeline.status=LOST_ON_RESTART): {', '.join(lost)}")
    front_started = time.time()
    summary = _log_front(safe, client, parent_run_id, resolved, frame, objectives, workload, callback, lost)
    summary.update({
        "tracking_uri": tracking_uri, "experiment": resolved.experiment, "experiment_id": experiment_id,
        "parent_run_id": parent_run_id, "ray_results": store.join(exp_name), "wall_s": wall,
        "front_s": time.time() - front_started,
        "tracking_drain_s": drain_s,
        "optuna_storage": paths.optuna_storage_url(tracking_uri), "optuna_study": exp_name,
    })
    not_logged = safe.flush()
    summary["not_logged"] = not_logged
    tracking.end_run(safe, parent_run_id, "FINISHED")
    not_logged += safe.flush()
    summary["not_logged"] = not_logged
    state["complete"] = True
    store.write_text(json.dumps(state, indent=2), exp_name, STATE_FILE)
    return summary


def _ended_trials(frame: pd.DataFrame, metrics: tuple[str, ...]) -> dict[str, dict]:
    """Trial id -> {"label", "metrics"} of each trial in the Tuner's results, the way
    `tracking.MLflowTrials` labels a trial's end."""
    out = {}
    for row in frame.to_dict("records"):
        if row.get("trial_id") is None:
            continue
        if row.get("rejected") == 1:
            label = "REJECTED"
        elif row.get("status") == "FAILED":
            label = "FAILED"
        elif row.get("final") == 1:
            label = "FINISHED"
        else:
            label = "STOPPED_EARLY"
        values = {k: row[k] for k in (*metrics, "final", "rejected") if k in row
                  and isinstance(row[k], (int, float)) and not isinstance(row[k], bool) and math.isfinite(row[k])}
        out[str(row["trial_id"])] = {"label": label, "metrics": values}
    return out


def _log_parent_inputs(client, run_id: str, resolved: ResolvedTask, tracking) -> None:
    folder = Path(tempfile.mkdtemp(prefix="task-"))
    (folder / "task.yaml").write_text(yaml.safe_dump(resolved.raw, sort_keys=False))
    (folder / "search_space.yaml").write_text(yaml.safe_dump(resolved.space.model_dump(), sort_keys=False))
    (folder / "versions.json").write_text(json.dumps(tracking.package_versions(), indent=2))
    client.log_artifacts(run_id, str(folder), "task")
    versions = tracking.package_versions()
    client.log_batch(run_id, params=[
        tracking.Param("task", str(resolved.path)), tracking.Param("profile", resolved.profile),
        tracking.Param("workload", resolved.task.workload), tracking.Param("sampler", resolved.task.search.sampler),
        *[tracking.Param(f"version.{k}", v) for k, v in versions.items()],
    ])


def _results_frame(results, objectives: list[dict]) -> pd.DataFrame:
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        config = dict(result.config or {})
        row = {"trial_id": metrics.get("trial_id"), "status": "FAILED" if result.error else "DONE"}
        row.update({f"config/{k}": v for k, v in config.items()})
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = value
        row["reject_reason"] = metrics.get("reject_reason")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("final", "rejected"):
        if column not in frame:
            frame[column] = 0.0
    for o in objectives:
        if o["metric"] not in frame:
            frame[o["metric"]] = np.nan
    return frame


def _log_front(safe, client, parent_run_id: str, resolved: ResolvedTask, frame: pd.DataFrame,
               objectives: list[dict], workload, callback, lost: list[str]) -> dict[str, Any]:
    from pipeline import tracking
    from pipeline.plots import interactive_front, static_front

    metrics = [o["metric"] for o in objectives]
    modes = [o["mode"] for o in objectives]
    # only trials that ran their full budget (a scheduler may have stopped others) and
    # reported finite objectives can be on the front
    complete = frame[(frame["final"] == 1) & (frame["rejected"] != 1) & (frame["status"] == "DONE")].copy()
    complete = complete[np.isfinite(complete[metrics].to_numpy(dtype=float)).all(axis=1)]
    complete["pareto"] = non_dominated(complete[metrics].to_numpy(dtype=float), modes).astype(bool)
    front = complete[complete["pareto"]].sort_values(metrics)
    reference = None
    volume = None
    if len(complete):
        if resolved.task.reference_point:
            reference = np.array([resolved.task.reference_point[m] for m in metrics], dtype=float)
        else:
            reference = default_reference(complete[metrics].to_numpy(dtype=float), modes)
        volume = hypervolume(front[metrics].to_numpy(dtype=float), modes, reference)

    baselines = None
    if workload.baselines is not None:
        try:
            baselines = pd.DataFrame(workload.baselines(resolved.params))
        except Exception as err:  # noqa: BLE001 - a baseline failing must not lose the front
            callback.printer(f"baselines of {workload.name} failed: {err}")

    folder = Path(tempfile.mkdtemp(prefix="front-"))
    frame.to_csv(folder / "trials.csv", index=False)
    front.to_csv(folder / "pareto.csv", index=False)
    if baselines is not None:
        baselines.to_csv(folder / "baselines.csv", index=False)
    title = f"{resolved.name} [{resolved.profile}]: {len(front)} on the front of {len(complete)} trials"
    if len(complete):
        static_front(complete, objectives, folder / "front.png", title, baselines)
        interactive_front(complete, objectives, folder / "front.html", title, baselines)
    if workload.report is not None and len(complete):
        try:
            (folder / "report").mkdir()
            workload.report(frame, folder / "report")
        except Exception as err:  # noqa: BLE001 - a failing summary must not lose the front
            callback.printer(f"report of {workload.name} failed: {err}")
    safe.call("front artifacts", lambda: client.log_artifacts(parent_run_id, str(folder)))
    counts = frame.assign(kind=np.where(frame["rejected"] == 1, "rejected",
                                        np.where(frame["status"] == "FAILED", "failed",
                                                 np.where(frame["final"] == 1, "finished", "stopped"))))
    counts = counts["kind"].value_counts().to_dict()
    summary_metrics = [tracking.Metric(f"trials_{k}", float(v), int(time.time() * 1000), 0) for k, v in counts.items()]
    summary_metrics.append(tracking.Metric("front_size", float(len(front)), int(time.time() * 1000), 0))
    if volume is not None:
        summary_metrics.append(tracking.Metric("hypervolume", float(volume), int(time.time() * 1000), 0))
    safe.call("front metrics", lambda: client.log_batch(parent_run_id, metrics=summary_metrics))
    for trial_id in front["trial_id"]:
        # ensure_run also finds the runs of trials that finished before a --resume
        safe.call(f"pareto tag {trial_id}", lambda trial_id=trial_id: client.set_tag(
            callback.ensure_run(trial_id), tracking.PARETO_TAG, "true"))

    pareto_rows = []
    for _, row in front.iterrows():
        pareto_rows.append({
            "trial_id": row["trial_id"], "run_id": callback.runs.get(row["trial_id"]),
            "params": {k[len("config/"):]: _plain(v) for k, v in row.items() if k.startswith("config/")},
            "objectives": {m: float(row[m]) for m in metrics},
        })
    return {
        "task": str(resolved.path), "profile": resolved.profile, "workload": resolved.task.workload,
        "objectives": objectives, "trial_count": int(len(frame)), "trials": counts,
        "pareto": pareto_rows, "hypervolume": volume,
        "reference_point": None if reference is None else {m: float(v) for m, v in zip(metrics, reference)},
        "child_run_ids": sorted(v for v in callback.runs.values() if v),
        "lost_on_restart": lost,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
