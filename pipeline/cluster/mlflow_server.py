"""Start and stop an MLflow tracking server on loopback, for tests and benchmarks that
need a server (not a sqlite file): the failure tests stop it mid-run, the browser test
opens its UI.

    with mlflow_server(store_dir) as url:   # http://127.0.0.1:<free port>
        ...

Lean settings, because the server is slow to start on a small machine otherwise: one
uvicorn worker and no job execution (MLflow's background job runner). It binds to
127.0.0.1 only. `command` lets a caller start it through the project's
mlflow/serve.sh instead (see tests/test_browser.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

STARTUP_TIMEOUT_S = 180  # a loaded 2-core machine can take a minute to import MLflow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def default_command(store_dir: Path, port: int) -> list[str]:
    store_dir = Path(store_dir).resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{store_dir / 'mlflow.db'}",
        "--artifacts-destination", (store_dir / "artifacts").as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]


def wait_healthy(url: str, process: subprocess.Popen | None = None, timeout_s: float = STARTUP_TIMEOUT_S,
                 path: str = "/health") -> None:
    """Wait until `url + path` answers 200 (the server's process must stay alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server at {url} did not answer {path} within {timeout_s:.0f} s")


def start(store_dir: Path, port: int, command: list[str] | None = None, log: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the server in its own process group and wait until it answers."""
    log_file = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(command or default_command(store_dir, port), stdout=log_file,
                               stderr=subprocess.STDOUT, env=env or server_env(), start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen) -> None:
    """Stop the server and every process it started (uvicorn workers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def mlflow_server(store_dir: Path, port: int | None = None, command: list[str] | None = None,
                  log: Path | None = None) -> Iterator[str]:
    port = port or free_port()
    process = start(store_dir, port, command, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
