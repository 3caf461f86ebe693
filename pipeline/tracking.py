"""MLflow logging from the driver: one parent run per pipeline run, one child run per trial.

Everything is logged from the driver process through a Ray Tune callback, so only the
driver needs to reach the tracking store (a sqlite file on a laptop, a server on a
cluster). A call that fails (the server went away) is queued and retried at the end;
whatever still fails is listed in the run summary, never silently lost: the results
stay in Ray Tune's experiment folder. The store itself (connect, WAL, the retrying
client) is `mlflow_store`; this module is the Tune callback that decides what to log.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback

# the store side (no Ray), public here too: the driver reaches both through `tracking`
from pipeline.mlflow_store import (  # noqa: F401
    SafeClient, StoreUnreachable, connect, describe_exception, end_run, ensure_experiment, git_commit,
    package_versions, sqlite_wal)

TRIAL_TAG = "pipeline.trial_id"
STATUS_TAG = "pipeline.status"
PARETO_TAG = "pipeline.pareto"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


class MLflowTrials(Callback):
    """A Tune callback that mirrors every trial into an MLflow child run.

    A trial's reported metrics are sent in one batch at most every `metrics_every_s`
    (and at its end), not one round trip per report: a trial reporting every few
    seconds or slower is still seen live, a fast one costs the store a write or two.
    `fresh=True` says the parent run is new, so no child run can exist before this
    driver makes it and `ensure_run` need not search the store first (a search per
    trial costs more the more runs the store holds).
    """

    def __init__(self, safe: SafeClient, experiment_id: str, parent_run_id: str, workload_metrics: tuple[str, ...],
                 printer: Callable[[str], None] = print, total: int | None = None, *, fresh: bool = False,
                 metrics_every_s: float = 5.0):
        self.safe = safe
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.workload_metrics = set(workload_metrics) | {"rejected", "final"}
        self.runs: dict[str, str] = {}
        self.names: dict[str, str] = {}  # trial id -> trial name, the child run's name
        self.printer = printer
        self.total = total
        self.done = 0
        self.fresh = fresh
        self.metrics_every_s = metrics_every_s
        self._attempted: set[str] = set()  # trial ids whose run creation was tried
        self._unsent: dict[str, list[Metric]] = {}  # trial id -> metrics not sent yet
        self._sent_at: dict[str, float] = {}

    # Child runs are keyed by Tune's trial id, so a resumed run reuses them. Every call
    # about a trial resolves its run inside the call itself (`ensure_run`), so a call
    # queued while the store was down creates the run once, when it is finally sent,
    # and nothing is logged twice.
    def ensure_run(self, trial_id: str) -> str:
        """The child run of `trial_id`: cached, else found by its tag, else created.
        Raises when the store cannot be reached (the caller's call is then queued)."""
        if trial_id in self.runs:
            return self.runs[trial_id]
        client = self.safe.client
        found = None
        # a creation that raised may still have reached the store (a server that timed
        # out after committing): search before creating again
        if not self.fresh or trial_id in self._attempted:
            found = client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
                max_results=1)
        self._attempted.add(trial_id)
        if found:
            run_id = found[0].info.run_id
        else:
            name = self.names.get(trial_id, trial_id)
            run_id = client.create_run(self.experiment_id, run_name=name, tags={
                "mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: trial_id}).info.run_id
        self.runs[trial_id] = run_id
        return run_id

    def _remember(self, trial) -> str:
        self.names.setdefault(trial.trial_id, str(trial))
        return trial.trial_id

    def _send(self, what: str, trial_id: str, action: Callable[[MlflowClient, str], Any]) -> None:
        """Queue-safe call of `action(client, run_id)` on the child run of `trial_id`."""
        self.safe.submit(what, lambda: action(self.safe.client, self.ensure_run(trial_id)))

    def _send_metrics(self, trial, trial_id: str) -> None:
        metrics = self._unsent.pop(trial_id, None)
        self._sent_at[trial_id] = time.monotonic()
        if metrics:
            self._send(f"metrics of {trial}", trial_id, lambda client, run_id: client.log_batch(run_id, metrics=metrics))

    def on_trial_start(self, iteration, trials, trial, **info):
        trial_id = self._remember(trial)
        self._sent_at.setdefault(trial_id, time.monotonic())
        params = [Param(k, _short(v)) for k, v in sorted(trial.config.items())]
        if params:  # logging the same values again (a resumed trial) is allowed by MLflow
            self._send(f"params of {trial}", trial_id, lambda client, run_id: client.log_batch(run_id, params=params))
        else:
            self._send(f"child run of {trial}", trial_id, lambda client, run_id: None)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id = self._remember(trial)
        step = int(result.get("training_iteration", 0))
        stamp = int(result.get("timestamp", 0) * 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, v in result.items()
                   if k in self.workload_metrics and isinstance(v, (int, float)) and not isinstance(v, bool)
                   and v == v]
        if metrics:
            self._unsent.setdefault(trial_id, []).extend(metrics)
            if time.monotonic() - self._sent_at.setdefault(trial_id, 0.0) >= self.metrics_every_s:
                self._send_metrics(trial, trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        trial_id = self._remember(trial)
        self._send_metrics(trial, trial_id)
        self._sent_at.pop(trial_id, None)
        result = dict(trial.last_result or {})
        if result.get("rejected"):
            status, label = "KILLED", "REJECTED"
        elif result.get("final"):
            status, label = "FINISHED", "FINISHED"
        else:
            status, label = "KILLED", "STOPPED_EARLY"
        self.done += 1
        self._print(trial, label, result)
        self._send(f"status of {trial}", trial_id, lambda client, run_id: client.set_tag(run_id, STATUS_TAG, label))
        if result.get("reject_reason"):
            reason = _short(result["reject_reason"])
            self._send(f"reason of {trial}", trial_id,
                       lambda client, run_id: client.set_tag(run_id, "pipeline.reject_reason", reason))
        checkpoint = trial.checkpoint
        if checkpoint is not None and result.get("final"):
            def upload(client, run_id):
                with checkpoint.as_directory() as folder:
                    client.log_artifacts(run_id, folder)
            self._send(f"artifacts of {trial}", trial_id, upload)
        self._send(f"end of {trial}", trial_id, lambda client, run_id: client.set_terminated(run_id, status))

    def on_trial_error(self, iteration, trials, trial, **info):
        trial_id = self._remember(trial)
        self._send_metrics(trial, trial_id)
        self._sent_at.pop(trial_id, None)
        self.done += 1
        text = _error_text(trial)
        self._print(trial, "FAILED", {}, text.strip().splitlines()[-1] if text.strip() else "")

        def upload(client, run_id):
            folder = Path(tempfile.mkdtemp(prefix="trial-error-"))
            (folder / "traceback.txt").write_text(text)
            client.log_artifact(run_id, str(folder / "traceback.txt"))
        self._send(f"traceback of {trial}", trial_id, upload)
        self._send(f"status of {trial}", trial_id, lambda client, run_id: client.set_tag(run_id, STATUS_TAG, "FAILED"))
        self._send(f"end of {trial}", trial_id, lambda client, run_id: client.set_terminated(run_id, "FAILED"))

    def close_lost_runs(self, ended: dict[str, dict] | None = None) -> list[str]:
        """Close child runs of the parent left RUNNING by an earlier driver for trials
        this run never saw (a trial whose end Tune had not saved when the driver died is
        forgotten on --resume, and the searcher samples a new one in its place): KILLED,
        tagged LOST_ON_RESTART. Returns their trial ids.

        `ended` (on --resume: trial id -> {"label", "metrics"} of every trial the restored
        Tuner knows as ended) also settles the two races of a driver killed between Tune
        saving its state and the store receiving a trial's writes: a RUNNING run of a
        trial Tune knows as ended is finished from Tune's result, and a FINISHED run of a
        trial Tune forgot is lost like a RUNNING one."""
        client = self.safe.client
        found = self.safe.call("search lost child runs", lambda: client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"))
        found = list(found or [])
        if ended is not None:
            finished = self.safe.call("search finished child runs", lambda: client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'FINISHED'",
                max_results=50000))
            found += [run for run in finished or [] if run.data.tags.get(TRIAL_TAG) not in ended]
        known = set(self.runs.values())
        lost = []
        for run in found:
            if run.info.run_id in known:
                continue
            run_id = run.info.run_id
            trial_id = run.data.tags.get(TRIAL_TAG, run_id)
            if ended is not None and trial_id in ended and run.info.status == "RUNNING":
                self._finish_from(run_id, trial_id, ended[trial_id])
                continue
            lost.append(trial_id)
            self.safe.call(f"status of lost run {run_id}",
                           lambda run_id=run_id: client.set_tag(run_id, STATUS_TAG, "LOST_ON_RESTART"))
            self.safe.call(f"end of lost run {run_id}", lambda run_id=run_id: client.set_terminated(run_id, "KILLED"))
        return lost

    def _finish_from(self, run_id: str, trial_id: str, end: dict) -> None:
        """End a child run from Tune's saved result of its trial (its last metrics)."""
        client = self.safe.client
        self.runs[trial_id] = run_id
        label = end["label"]
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(v), stamp, 0) for k, v in end.get("metrics", {}).items()
                   if k in self.workload_metrics]
        if metrics:
            self.safe.call(f"metrics of trial {trial_id}", lambda: client.log_batch(run_id, metrics=metrics))
        self.safe.call(f"status of trial {trial_id}", lambda: client.set_tag(run_id, STATUS_TAG, label))
        status = "FINISHED" if label == "FINISHED" else "FAILED" if label == "FAILED" else "KILLED"
        self.safe.call(f"end of trial {trial_id}", lambda: client.set_terminated(run_id, status))

    def _print(self, trial, label: str, result: dict, extra: str = "") -> None:
        config = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(trial.config.items()))
        shown = " ".join(f"{k}={_fmt(result[k])}" for k in sorted(self.workload_metrics - {"rejected", "final"})
                         if k in result and isinstance(result[k], (int, float)))
        total = f"/{self.total}" if self.total else ""
        reason = f" ({result['reject_reason']})" if result.get("reject_reason") else ""
        self.printer(f"[{self.done}{total}] {trial.trial_id} {label:<13} {config} -> {shown}{reason}{(' ' + extra) if extra else ''}")


class NoTensorBoard(TBXLoggerCallback):
    """Given to the Tuner in place of its default TensorBoard logger, which writes event
    files for every trial from a thread of the driver: the runs are in MLflow, and Tune's
    own JSON and CSV results (which its restore reads) are kept."""

    def __init__(self):  # no writer class to import
        self._trial_writer, self._trial_result = {}, {}

    def log_trial_start(self, trial):
        pass

    def log_trial_result(self, iteration, trial, result):
        pass

    def log_trial_end(self, trial, failed=False):
        pass


def _error_text(trial) -> str:
    """The traceback Tune wrote for the trial (its local error file, written before this
    callback runs; the synced copy may not exist yet)."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        return Path(path).read_text()
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - storage may not have it yet
        error = None
    return str(error) if error is not None else "the trial raised (no traceback stored)"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
