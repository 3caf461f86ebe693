"""Where things live: the project folder, the MLflow store, the Optuna study, Ray results.

Under `ray job submit` the working directory is a temporary copy of the project, so
nothing here defaults to a path relative to it. The project folder is, in order:
`$PIPELINE_HOME`; the folder this package was loaded from, unless that is inside a
Ray runtime-environment copy; the source folder of an editable install; else
`~/.learned-ds`.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

_RAY_COPY_MARKERS = ("runtime_resources", "working_dir_files", "/tmp/ray/")


def _editable_source() -> Path | None:
    try:
        dist = metadata.distribution("pipeline")
    except metadata.PackageNotFoundError:
        return None
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    url = json.loads(text).get("url", "")
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return None


def project_root() -> Path:
    if os.environ.get("PIPELINE_HOME"):
        return Path(os.environ["PIPELINE_HOME"]).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if not any(marker in str(here) for marker in _RAY_COPY_MARKERS):
        return here
    source = _editable_source()
    if source is not None and source.is_dir():
        return source
    return Path.home() / ".learned-ds"


def mlflow_dir() -> Path:
    return project_root() / "mlflow"


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a sqlite store at an absolute path in mlflow/."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    return (mlflow_dir() / "artifacts").as_uri()


def optuna_storage_url(tracking_uri: str) -> str:
    """The Optuna study lives next to a sqlite MLflow store; with a remote tracking
    server it lives in mlflow/optuna.db (or $OPTUNA_STORAGE)."""
    if os.environ.get("OPTUNA_STORAGE"):
        return os.environ["OPTUNA_STORAGE"]
    if tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri[len("sqlite:///"):])
        return f"sqlite:///{store.with_name('optuna.db')}"
    return f"sqlite:///{mlflow_dir() / 'optuna.db'}"


def results_dir(tracking_uri: str) -> Path:
    """Ray Tune's storage_path (trial state, checkpoints, resume): beside the store."""
    if os.environ.get("PIPELINE_RESULTS"):
        return Path(os.environ["PIPELINE_RESULTS"]).expanduser().resolve()
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).parent / "ray_results"
    return mlflow_dir() / "ray_results"


def check_tracking_uri(uri: str, where: str) -> None:
    """Reject store URIs that would land in a temporary working copy."""
    from pipeline.config import TaskError

    if uri.startswith("sqlite:///"):
        if not Path(uri[len("sqlite:///"):]).is_absolute():
            raise TaskError(f"{where}: sqlite store must be an absolute path (sqlite:////abs/path.db), got {uri!r}")
    elif uri.startswith(("file:", "./", "mlruns")) or "://" not in uri:
        raise TaskError(f"{where}: MLflow 3 needs a database or server URI (sqlite:///<absolute path> "
                        f"or http://host:port), got {uri!r}")
