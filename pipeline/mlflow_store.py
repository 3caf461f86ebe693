"""The MLflow tracking store as the driver uses it: connect and check it before any
compute, sqlite in WAL mode, the experiment and its artifact folder, run metadata (git
commit, package versions), and `SafeClient`, which queues a failed call instead of stopping
the search and sends calls from a writer thread.

Apart from `tracking` (the Ray Tune callback that decides what to log per trial) because
none of it needs Ray: the driver, the benches and the tests use it alone.
"""

from __future__ import annotations

import logging
import os
import platform
import queue
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from pipeline import paths

log = logging.getLogger(__name__)


class StoreUnreachable(RuntimeError):
    """The tracking store cannot be reached at start: reported before any compute."""


def connect(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`, checked by one cheap call (fails fast on a dead server)."""
    if tracking_uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    if tracking_uri.startswith("sqlite:"):
        engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
        if engine is not None:  # another MLflow may hide it: then the store keeps sqlite's defaults
            sqlite_wal(engine)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means "cannot start"
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise StoreUnreachable(f"MLflow tracking store {tracking_uri} is unreachable: {first[:200]}") from None
    return client


def sqlite_wal(engine) -> None:
    """Every connection of this SQLAlchemy engine (a sqlite file) runs in WAL mode with
    synchronous=NORMAL. The default (rollback journal, synchronous=FULL) makes every
    commit several fsyncs, and the driver commits a few times per trial, to the MLflow
    store and to the Optuna study: about 0.1 s a trial against 0.02 s in WAL mode
    (benchmark: `python -m pipeline.bench pipeline_scaling`). A killed driver loses no
    commit either way (only a power cut can drop the last few), which is what
    `--resume` needs; readers (the MLflow UI) do not block the writer. WAL needs a local
    disk, not a network filesystem, as sqlite itself does for safe locking."""
    from sqlalchemy import event

    def pragmas(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # a connection opened before the listener is not reused


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        # beside the store, never in the (possibly temporary) working directory
        store = Path(tracking_uri[len("sqlite:///"):])
        artifact_location = (store.parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.project_root(), capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("ray", "torch", "optuna", "mlflow", "numpy", "numba", "pandas", "pydantic"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class SafeClient:
    """Wraps MLflow calls: a failure is queued instead of stopping the search.

    Queued calls keep their order: while anything is queued, a new call goes behind it,
    and the queue is retried first (at most every `retry_every_s`, so a dead server
    costs one failed attempt per interval, not one per Tune event). Whatever is still
    queued at the end is retried by `flush`, and listed if it fails again.

    `start_background()` sends the calls given to `submit` from a writer thread, one at a
    time in the order given, so that a slow store (a sqlite commit is an fsync, a server a
    round trip) does not hold up Tune's event loop; `call` and `flush` first wait for
    what was submitted, so the order of all calls is still the order they were made.
    Without it (tests, one-off calls) `submit` is `call`.
    """

    def __init__(self, client: MlflowClient, retry_every_s: float = 15.0):
        self.client = client
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        self.retry_every_s = retry_every_s
        self._next_retry = 0.0
        self._queue: queue.Queue | None = None
        self._writer: threading.Thread | None = None

    def __getstate__(self):
        # the Tuner pickles its callbacks (and so this); a thread and its queue do not pickle
        state = dict(self.__dict__)
        state["_queue"] = state["_writer"] = None
        return state

    def start_background(self) -> None:
        if self._writer is not None:
            return
        self._queue = queue.Queue()
        self._writer = threading.Thread(target=self._write, name="mlflow-writer", daemon=True)
        self._writer.start()

    def stop_background(self) -> None:
        """Send what was submitted, then end the writer thread (`submit` is `call` again)."""
        if self._writer is None:
            return
        self._queue.put(None)
        self._writer.join()
        self._queue = self._writer = None

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._call(*item)
            finally:
                self._queue.task_done()

    def _wait(self) -> None:
        if self._queue is not None and threading.current_thread() is not self._writer:
            self._queue.join()

    def submit(self, what: str, fn: Callable[[], Any]) -> None:
        """`call` without waiting for it (from the writer thread once started)."""
        if self._queue is None:
            self._call(what, fn)
        else:
            self._queue.put((what, fn))

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._wait()
        return self._call(what, fn)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        if self.pending and not self._drain():
            self.pending.append((what, fn))
            return None
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - the store may be down; keep the result
            log.warning("MLflow call %s failed (%s); queued for a retry", what, err.__class__.__name__)
            self.pending.append((what, fn))
            self._next_retry = time.monotonic() + self.retry_every_s
            return None

    def _drain(self) -> bool:
        """Retry the queue in order, stopping at the first failure; True once it is empty."""
        if time.monotonic() < self._next_retry:
            return False
        while self.pending:
            _, fn = self.pending[0]
            try:
                fn()
            except Exception:  # noqa: BLE001
                self._next_retry = time.monotonic() + self.retry_every_s
                return False
            self.pending.pop(0)
        return True

    def flush(self) -> list[str]:
        """Retry queued calls in order; return a description of each that still fails."""
        self._wait()
        still, failed = [], []
        for what, fn in self.pending:
            try:
                fn()
            except Exception as err:  # noqa: BLE001
                still.append((what, fn))
                failed.append(f"{what}: {err.__class__.__name__}: {str(err)[:120]}")
        self.pending = still
        return failed


def end_run(safe: SafeClient, run_id: str, status: str = "FINISHED") -> None:
    safe.call("end parent run", lambda: safe.client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status))))


def describe_exception() -> str:
    return "".join(traceback.format_exception(*sys.exc_info()))
