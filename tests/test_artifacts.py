"""MLflow artifact URIs as trial params (pipeline/artifacts.py and its hook in
pipeline/trial.py), against a sqlite MLflow store in a temporary folder: a trained Lego
brick logged as a run's artifact is found by run id and by run name, and a bad URI is a
one-line error naming the param and its value."""

from __future__ import annotations

import time

import pytest
import torch

from pipeline.artifacts import ArtifactError, has_artifact_uri, resolve, resolve_params
from pipeline.workloads.base import LocalReporter
from pipeline.workloads.lego.model import BrickGeometry, LegoSketch, save_brick
from pipeline.workloads.lego.workload import EVAL_WORKLOAD

GEOMETRY = BrickGeometry(depth=3, slots=512, basis_size=24)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store holding two runs named `trial_a` (an older and a newer brick) and one
    named `trial_b`; returns (tracking_uri, {label: run_id})."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("lego", artifact_location=(root / "artifacts").as_uri())
    runs = {}
    for label, name, scale in (("old", "trial_a", 0.5), ("new", "trial_a", 0.25), ("b", "trial_b", 1.0)):
        model = LegoSketch(GEOMETRY)
        with torch.no_grad():
            model.basis.mul_(scale)  # tells the bricks apart
        folder = root / label
        folder.mkdir()
        save_brick(model, folder / "brick.pt")
        run = client.create_run(experiment, run_name=name)
        client.log_artifacts(run.info.run_id, str(folder))
        client.set_terminated(run.info.run_id)
        runs[label] = run.info.run_id
        time.sleep(0.01)  # distinct start times: "newest" is well defined
    return uri, runs


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_ARTIFACT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _basis(path: str) -> torch.Tensor:
    return torch.load(path, weights_only=True)["state_dict"]["basis"]


def test_run_id_uri_downloads_into_the_cache(store, cache):
    uri, runs = store
    local = resolve(f"runs:/{runs['b']}/brick.pt", uri)
    assert local.startswith(str(cache / runs["b"]))
    torch.testing.assert_close(_basis(local), LegoSketch(GEOMETRY).basis.detach())
    assert resolve(f"runs:/{runs['b']}/brick.pt", "sqlite:///nowhere/else.db") == local  # cached: no store needed


def test_run_name_uri_takes_the_newest_run_of_that_name(store):
    uri, runs = store
    local = resolve("mlflow-run:trial_a/brick.pt", uri)
    assert runs["new"] in local
    torch.testing.assert_close(_basis(local), LegoSketch(GEOMETRY).basis.detach() * 0.25)


@pytest.mark.parametrize("value, message", [
    ("runs:/0123456789abcdef0123456789abcdef/brick.pt", "no MLflow run with id"),
    ("mlflow-run:no_such_trial/brick.pt", "no MLflow run named"),
    ("runs:/RUN/missing.pt", "has no artifact 'missing.pt'"),
    ("runs:/only_a_run_id", "expected runs:/<run_id>/<artifact path>"),
])
def test_bad_uris_are_one_line_errors_naming_param_and_value(store, value, message):
    uri, runs = store
    value = value.replace("RUN", runs["b"])
    with pytest.raises(ArtifactError) as caught:
        resolve_params({"checkpoint": value, "budgets_kb": [100]}, uri)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"params.checkpoint: {value!r}: ") and message in text


def test_resolve_params_walks_nested_values_and_leaves_the_rest(store):
    uri, runs = store
    params = {"checkpoint": f"runs:/{runs['b']}/brick.pt", "nested": {"files": ["plain.txt", "mlflow-run:trial_b/brick.pt"]},
              "seed": 3}
    assert has_artifact_uri(params) and not has_artifact_uri({"checkpoint": "runs/brick.pt", "seed": 3})
    resolved = resolve_params(params, uri)
    assert resolved["seed"] == 3 and resolved["nested"]["files"][0] == "plain.txt"
    assert resolved["checkpoint"] == resolved["nested"]["files"][1]  # same run, same cached file
    assert params["checkpoint"].startswith("runs:/")  # the input is not modified


def test_trial_hook_gives_the_workload_a_local_brick(store):
    """pipeline.trial resolves the URI before make_params: lego_eval then loads the brick."""
    from pipeline.trial import _params_for

    uri, runs = store
    payload = {"workload": "lego_eval", "tracking_uri": uri,
               "params": {"checkpoint": "mlflow-run:trial_a/brick.pt", "budgets_kb": [6, 12], "eval_skews": [1.1],
                          "eval_distinct": 2000}}
    workload, params = _params_for(payload, {})
    assert runs["new"] in params.checkpoint
    metrics = workload.run(params, LocalReporter())
    assert metrics["bytes"] == 2 * GEOMETRY.brick_bytes and metrics["are"] >= 0
    with pytest.raises(ArtifactError, match="params.checkpoint: 'runs:/feedbeef/brick.pt': no MLflow run"):
        _params_for({**payload, "params": {**payload["params"], "checkpoint": "runs:/feedbeef/brick.pt"}}, {})


def test_lego_eval_validation_defers_artifact_uris():
    """Task loading (no MLflow there) accepts the URI; a plain missing file still fails."""
    EVAL_WORKLOAD.validate(EVAL_WORKLOAD.make_params({"checkpoint": "runs:/abc/brick.pt"}))
    with pytest.raises(ValueError, match="no such file"):
        EVAL_WORKLOAD.validate(EVAL_WORKLOAD.make_params({"checkpoint": "/no/such/brick.pt"}))
