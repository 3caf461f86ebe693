"""MLflow artifacts as trial params: a param whose value is an MLflow artifact URI is
downloaded to a local cache before the workload runs, and the workload sees the local
path (workloads never import MLflow).

Two forms are accepted anywhere in a trial's params (nested values included):

    runs:/<run_id>/<artifact path>          e.g. runs:/0b6f.../brick.pt
    mlflow-run:<run name>/<artifact path>   e.g. mlflow-run:run_trial_3c2a1_00001/brick.pt

`runs:/` is MLflow's own form. `mlflow-run:` finds the run by its name (the name the
MLflow UI shows; a trial's child run is named after its Ray Tune trial) in any
experiment of the store; when several runs carry the name, the most recently started
one is used. Both are looked up in the task's tracking store (`mlflow.tracking_uri`,
else MLFLOW_TRACKING_URI, else the project's sqlite store).

    python -m pipeline.run tasks/lego_eval.yaml params.checkpoint=runs:/<run_id>/brick.pt

Downloads go to `$PIPELINE_ARTIFACT_CACHE` (default `~/.cache/learned-ds/mlflow-artifacts`),
one folder per run id; an artifact already there is reused (a finished run's artifacts
do not change). A bad URI, an unknown run or a missing artifact raises ArtifactError,
one line naming the param and its value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCHEMES = ("runs:/", "mlflow-run:")


class ArtifactError(ValueError):
    """An artifact URI in params that cannot be resolved (one line, names param and value)."""


def is_artifact_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SCHEMES)


def cache_dir() -> Path:
    if os.environ.get("PIPELINE_ARTIFACT_CACHE"):
        return Path(os.environ["PIPELINE_ARTIFACT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "learned-ds" / "mlflow-artifacts"


def _split(uri: str, scheme: str) -> tuple[str, str]:
    """`<scheme><run>/<path>` -> (run, path); both must be non-empty."""
    rest = uri[len(scheme):]
    run, _, path = (rest.lstrip("/") if scheme == "runs:/" else rest).partition("/")
    if not run or not path.strip("/"):
        raise ValueError(f"expected {scheme}<{'run_id' if scheme == 'runs:/' else 'run name'}>/<artifact path>")
    return run, path.strip("/")


def _run_id_by_name(client, name: str) -> str:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`mlflow.runName` = '{name}'",
                              order_by=["attributes.start_time DESC"], max_results=1) if experiments else []
    if not runs:
        raise ValueError(f"no MLflow run named {name!r}")
    return runs[0].info.run_id


def resolve(uri: str, tracking_uri: str, where: str = "value") -> str:
    """The local path of the artifact `uri` (downloaded once into `cache_dir()`)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    scheme = next(s for s in SCHEMES if uri.startswith(s))
    try:
        run, path = _split(uri, scheme)
        if scheme == "runs:/" and (cache_dir() / run / path).exists():
            return str(cache_dir() / run / path)  # a run id names one run: its artifact never changes
        client = MlflowClient(tracking_uri=tracking_uri)
        if scheme == "mlflow-run:":  # a name may be reused: look it up every time
            run = _run_id_by_name(client, run)
        else:
            try:
                client.get_run(run)
            except MlflowException:
                raise ValueError(f"no MLflow run with id {run!r}") from None
        target = cache_dir() / run
        local = target / path
        if local.exists():
            return str(local)
        target.mkdir(parents=True, exist_ok=True)
        try:
            return download_artifacts(run_id=run, artifact_path=path, dst_path=str(target), tracking_uri=tracking_uri)
        except (MlflowException, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"run {run} has no artifact {path!r} ({first[:160]})") from None
    except ValueError as err:
        raise ArtifactError(f"{where}: {uri!r}: {err} (MLflow store {tracking_uri})") from None


def resolve_params(params: dict[str, Any], tracking_uri: str, prefix: str = "params") -> dict[str, Any]:
    """A copy of `params` with every artifact URI (at any depth) replaced by its local path."""
    def walk(value: Any, where: str) -> Any:
        if is_artifact_uri(value):
            return resolve(value, tracking_uri, where)
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(value)]
        return value

    return walk(params, prefix)


def has_artifact_uri(params: Any) -> bool:
    if is_artifact_uri(params):
        return True
    if isinstance(params, dict):
        return any(has_artifact_uri(v) for v in params.values())
    if isinstance(params, list):
        return any(has_artifact_uri(v) for v in params)
    return False
