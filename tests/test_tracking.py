"""MLflowTrials and SafeClient without Ray or MLflow: a fake client that can go down.

The store going away mid-run must neither stop the search nor lose or duplicate what is
logged: calls made while it is down are queued in order, and each trial's child run is
created once, by whichever queued call reaches the store first.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from pipeline.tracking import PARETO_TAG, STATUS_TAG, TRIAL_TAG, MLflowTrials, SafeClient


class FakeStore:
    """Just enough of MlflowClient; `down` makes every call raise, as a dead server does."""

    def __init__(self):
        self.down = False
        self.runs: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.ids = itertools.count()

    def _check(self):
        if self.down:
            raise ConnectionError("connection refused")

    def search_runs(self, experiment_ids, filter_string, max_results=1000):
        self._check()
        found = []
        for run_id, run in self.runs.items():
            tags = run["tags"]
            if f"'{tags.get(TRIAL_TAG)}'" in filter_string or (
                    "attributes.status = 'RUNNING'" in filter_string and run["status"] == "RUNNING"
                    and f"'{tags['mlflow.parentRunId']}'" in filter_string):
                found.append(SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(tags=dict(tags))))
        return found[:max_results]

    def create_run(self, experiment_id, run_name, tags):
        self._check()
        run_id = f"run{next(self.ids)}"
        self.runs[run_id] = {"name": run_name, "tags": dict(tags), "status": "RUNNING", "metrics": {}, "params": {}}
        self.calls.append(("create", run_id))
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id, metrics=(), params=()):
        self._check()
        for m in metrics:
            self.runs[run_id]["metrics"][m.key] = m.value
        for p in params:
            self.runs[run_id]["params"][p.key] = p.value
        self.calls.append(("log", run_id))

    def set_tag(self, run_id, key, value):
        self._check()
        self.runs[run_id]["tags"][key] = value
        self.calls.append(("tag", run_id))

    def set_terminated(self, run_id, status):
        self._check()
        self.runs[run_id]["status"] = status
        self.calls.append(("end", run_id))


class FakeTrial:
    def __init__(self, trial_id, **config):
        self.trial_id = trial_id
        self.config = config
        self.last_result = {}
        self.checkpoint = None

    def __str__(self):
        return f"run_trial_{self.trial_id}"


def lifecycle(callback: MLflowTrials, trial: FakeTrial, aae: float) -> None:
    callback.on_trial_start(0, [], trial)
    trial.last_result = {"aae": aae, "training_iteration": 1, "timestamp": 1.0}
    callback.on_trial_result(0, [], trial, trial.last_result)
    trial.last_result = {"aae": aae, "final": 1, "training_iteration": 2, "timestamp": 2.0}
    callback.on_trial_result(0, [], trial, trial.last_result)
    callback.on_trial_complete(0, [], trial)


@pytest.fixture
def setup():
    store = FakeStore()
    safe = SafeClient(store, retry_every_s=0)
    callback = MLflowTrials(safe, "1", "parent", ("aae",), printer=lambda line: None)
    return store, safe, callback


def test_outage_mid_run_logs_every_trial_once_in_order(setup):
    store, safe, callback = setup
    lifecycle(callback, FakeTrial("t1", width=8), 1.0)
    store.down = True
    lifecycle(callback, FakeTrial("t2", width=16), 2.0)  # every call of t2 fails and is queued
    lifecycle(callback, FakeTrial("t3", width=32), 3.0)
    assert len(store.runs) == 1 and safe.pending
    store.down = False
    lifecycle(callback, FakeTrial("t4", width=64), 4.0)  # the queue goes first, then t4
    assert safe.flush() == []
    by_trial = {run["tags"][TRIAL_TAG]: run for run in store.runs.values()}
    assert sorted(by_trial) == ["t1", "t2", "t3", "t4"] and len(store.runs) == 4  # no duplicate
    for trial_id, aae in zip(["t1", "t2", "t3", "t4"], [1.0, 2.0, 3.0, 4.0]):
        run = by_trial[trial_id]
        assert run["status"] == "FINISHED" and run["tags"][STATUS_TAG] == "FINISHED"
        assert run["metrics"] == {"aae": aae, "final": 1.0}
        assert run["params"] == {"width": str({"t1": 8, "t2": 16, "t3": 32, "t4": 64}[trial_id])}
    # the queue kept its order: each run was created, logged and only then ended
    created = [run_id for kind, run_id in store.calls if kind == "create"]
    assert created == sorted(created, key=lambda r: int(r[3:]))
    for run_id in store.runs:
        kinds = [kind for kind, rid in store.calls if rid == run_id]
        assert kinds[0] == "create" and kinds[-1] == "end"


def test_store_down_until_the_end_lists_what_was_not_logged(setup):
    store, safe, callback = setup
    store.down = True
    lifecycle(callback, FakeTrial("t1", width=8), 1.0)
    failed = safe.flush()
    assert failed and all("ConnectionError" in line for line in failed)
    assert any(line.startswith("metrics of run_trial_t1") for line in failed)
    assert store.runs == {}
    store.down = False  # a later flush still sends it, once
    assert safe.flush() == []
    assert len(store.runs) == 1


def test_queue_is_not_retried_before_its_interval():
    store = FakeStore()
    safe = SafeClient(store, retry_every_s=3600)
    store.down = True
    safe.call("first", lambda: store.set_tag("x", "a", "b"))
    store.down = False
    sent = []
    safe.call("second", lambda: sent.append(1))  # queued behind "first": order is kept
    assert sent == [] and [what for what, _ in safe.pending] == ["first", "second"]


def test_resumed_run_closes_child_runs_it_never_saw(setup):
    store, safe, callback = setup
    lifecycle(callback, FakeTrial("t1", width=8), 1.0)
    # an earlier driver died after creating t0's run, before Tune saved the trial
    orphan = store.create_run("1", "run_trial_t0", {"mlflow.parentRunId": "parent", TRIAL_TAG: "t0"}).info.run_id
    callback.on_trial_start(0, [], FakeTrial("t5", width=8))  # running in this driver: not lost
    assert callback.close_lost_runs() == ["t0"]
    assert store.runs[orphan]["status"] == "KILLED"
    assert store.runs[orphan]["tags"][STATUS_TAG] == "LOST_ON_RESTART"
    assert store.runs[callback.runs["t5"]]["status"] == "RUNNING"


def test_ensure_run_finds_a_run_made_before_a_resume(setup):
    store, safe, callback = setup
    made = store.create_run("1", "run_trial_t9", {"mlflow.parentRunId": "parent", TRIAL_TAG: "t9"}).info.run_id
    safe.call("pareto", lambda: store.set_tag(callback.ensure_run("t9"), PARETO_TAG, "true"))
    assert callback.runs["t9"] == made and len(store.runs) == 1
    assert store.runs[made]["tags"][PARETO_TAG] == "true"
