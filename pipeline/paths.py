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

from pipeline.errors import TaskError

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


def results_dir(tracking_uri: str) -> str:
    """Ray Tune's storage_path (trial state, checkpoints, resume): $PIPELINE_RESULTS,
    else beside the store. $PIPELINE_RESULTS may be a local folder or a filesystem URI
    that Ray Tune and pyarrow understand (s3://bucket/prefix, gs://bucket/prefix): a
    multi-node cluster needs storage every node can reach, and a URI is passed through
    untouched."""
    if os.environ.get("PIPELINE_RESULTS"):
        location = os.environ["PIPELINE_RESULTS"]
        if is_uri(location):
            return location.rstrip("/")
        return str(Path(location).expanduser().resolve())
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).parent / "ray_results")
    return str(mlflow_dir() / "ray_results")


def is_uri(location: str) -> bool:
    return "://" in location


class ResultsStore:
    """The pipeline's own files in Ray Tune's storage (`pipeline_state.json` per run),
    local or remote, through pyarrow's filesystems (the ones Ray Tune itself uses)."""

    def __init__(self, location: str):
        import pyarrow.fs

        self.location = location
        self.fs, self.root = pyarrow.fs.FileSystem.from_uri(location)

    def join(self, *parts: str) -> str:
        """A location under the store, in the form Ray Tune is given (path or URI)."""
        return "/".join([self.location.rstrip("/"), *parts])

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def makedirs(self, *parts: str) -> None:
        self.fs.create_dir(self._path(*parts), recursive=True)

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self._path(*parts)).type != pyarrow.fs.FileType.NotFound

    def read_text(self, *parts: str) -> str:
        with self.fs.open_input_stream(self._path(*parts)) as stream:
            return stream.read().decode()

    def write_text(self, text: str, *parts: str) -> None:
        with self.fs.open_output_stream(self._path(*parts)) as stream:
            stream.write(text.encode())

    def subfolders(self, prefix: str) -> list[str]:
        """Names of the folders directly under the store that start with `prefix`."""
        import pyarrow.fs

        if not self.exists():
            return []
        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True))
        return sorted(info.base_name for info in infos
                      if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(prefix))


def check_tracking_uri(uri: str, where: str) -> None:
    """Reject store URIs that would land in a temporary working copy."""
    if uri.startswith("sqlite:///"):
        if not Path(uri[len("sqlite:///"):]).is_absolute():
            raise TaskError(f"{where}: sqlite store must be an absolute path (sqlite:////abs/path.db), got {uri!r}")
    elif uri.startswith(("file:", "./", "mlruns")) or "://" not in uri:
        raise TaskError(f"{where}: MLflow 3 needs a database or server URI (sqlite:///<absolute path> "
                        f"or http://host:port), got {uri!r}")
