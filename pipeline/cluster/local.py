"""A Ray cluster of several nodes on this one machine, for tests and benchmarks.

    with local_cluster([{"num_cpus": 1}, {"num_cpus": 1, "num_gpus": 1}]) as cluster:
        execute(resolved)          # pipeline.driver joins the connected Ray

Each node is a full set of Ray processes (raylet, object store, agents) started by Ray's
own test-cluster utilities (`ray.cluster_utils.Cluster`), all on loopback with token
authentication off: tests only, never reachable from outside. A node given `num_gpus`
advertises GPUs it does not have (a "fake GPU"): Ray schedules on the resource count
alone, so GPU placement can be shown on a CPU machine. Workers then see no CUDA device,
so `worker_setup` makes Ray Train use the gloo backend where it picks NCCL for a GPU
worker group (NCCL needs a real GPU) and the CPU device where it hands out `cuda:0`;
with CUDA present nothing is changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

#: Runs in every Ray worker process of the job (runtime_env worker_process_setup_hook).
SETUP_HOOK = "pipeline.cluster.local.worker_setup"
NODE_OBJECT_STORE_MB = 100  # per node; the trials here pass tiny objects


def worker_setup() -> None:
    """Per-worker setup for local clusters: gloo for Train when CUDA is absent (fake
    GPUs) and the fault-injection workloads in the registry."""
    _gloo_without_cuda()
    from pipeline.cluster import faults

    faults.register()


def _gloo_without_cuda() -> None:
    import torch
    from ray.train.torch import config as torch_config

    if torch.cuda.is_available() or getattr(torch_config._TorchBackend, "_pipeline_patched", False):
        return
    on_start = torch_config._TorchBackend.on_start

    def on_start_gloo(self, worker_group, backend_config):
        # Train V2 has already resolved the default to "nccl" for a GPU worker group
        if backend_config.backend in (None, "nccl"):
            backend_config = dataclasses.replace(backend_config, backend="gloo")
        return on_start(self, worker_group, backend_config)

    torch_config._TorchBackend.on_start = on_start_gloo
    torch_config._TorchBackend._pipeline_patched = True

    # A worker given a fake GPU gets CUDA_VISIBLE_DEVICES and would be handed "cuda:0".
    import ray.train.torch
    from ray.train.v2.torch import train_loop_utils

    def cpu_devices():
        return [torch.device("cpu")]

    train_loop_utils.get_devices = cpu_devices
    ray.train.torch.get_devices = cpu_devices


def job_env() -> dict[str, str]:
    """Environment of every worker: what pipeline.driver.init_ray would have set, plus
    loopback without token auth."""
    from pipeline import paths

    return {
        "PIPELINE_HOME": str(paths.project_root()),
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
        "RAY_AUTH_MODE": "disabled",
    }


@contextlib.contextmanager
def local_cluster(nodes: list[dict[str, Any]], connect: bool = True) -> Iterator[Any]:
    """Start one Ray node per entry of `nodes` (keyword arguments of
    `Cluster.add_node`: num_cpus, num_gpus, resources), the first being the head;
    connect this process as the driver; shut everything down on exit."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"  # loopback tests only (module docstring)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray's tqdm support swaps builtins.print on the driver, after which the Tuner can
    # no longer pickle the pipeline's callback (it holds `print`).
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    defaults = {"object_store_memory": NODE_OBJECT_STORE_MB * 1024 * 1024, "include_dashboard": False}
    cluster = Cluster(initialize_head=False, shutdown_at_exit=True)
    try:
        for i, node in enumerate(nodes):
            args = {**defaults, **node}
            if i > 0:
                args.pop("include_dashboard", None)
            cluster.add_node(**args)
        cluster.wait_for_nodes()
        if connect:
            ray.init(address=cluster.address, log_to_driver=True, logging_level="WARNING",
                     runtime_env={"env_vars": job_env(), "worker_process_setup_hook": SETUP_HOOK})
            from pipeline.cluster import faults

            faults.register()  # the driver validates task files against the registry too
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def node_ids(cluster) -> list[str]:
    """Node ids in the order the nodes were added (head first)."""
    return [cluster.head_node.node_id] + [node.node_id for node in cluster.worker_nodes]


def actor_nodes(class_name: str) -> list[str]:
    """Node ids of every actor of `class_name` this job started, dead ones included
    (read from the GCS actor table: works without the dashboard)."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    return [info["Address"]["NodeID"] for info in ray._private.state.actors().values()
            if info.get("ActorClassName", "").endswith(class_name) and info.get("JobID") == job]


def results_root(tmp: Path) -> dict[str, str]:
    """Overrides that keep a run's MLflow store, Optuna study and Ray results in `tmp`."""
    return {"mlflow.tracking_uri": f"sqlite:///{Path(tmp).resolve() / 'mlflow.db'}"}


def kill_ray_under(temp_dir: str | Path, pid: int = -1) -> None:
    """SIGKILL process group `pid` (if > 0), then every process whose command line names
    `temp_dir`: the Ray session a test started with `--temp-dir`/RAY_TMPDIR, and nobody
    else's. (`ray stop --force` would kill every Ray on the machine, a user's too.)"""
    import signal

    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        if str(temp_dir) in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGKILL)



def ray_start_command(temp_dir: str | Path, *, num_cpus: int, resources: dict[str, float] | None = None,
                      head_address: str | None = None, gcs_port: int = 0, dashboard_port: int = 0,
                      object_store_bytes: int = 200_000_000) -> list[str]:
    """`ray start` for one node of a loopback cluster on this machine: the head (no
    `head_address`; GCS on `gcs_port`, dashboard and job API on 127.0.0.1:`dashboard_port`)
    or a node joining `head_address` ("127.0.0.1:PORT"). Every node gets its own
    `temp_dir` (nodes sharing one delete each other's copy of a job's working directory)
    and free ports for its agents: the defaults (52365, ...) are taken by the first node
    or by another Ray here, and a node whose job agent cannot bind never runs a job.
    Authentication is whatever RAY_AUTH_MODE / RAY_AUTH_TOKEN in the caller's env say."""
    import json
    import sys

    from pipeline.cluster.mlflow_server import free_port

    ray_bin = str(Path(sys.executable).parent / "ray")
    if head_address is None:
        role = ["--head", f"--port={gcs_port or free_port()}", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port or free_port()}", f"--ray-client-server-port={free_port()}"]
    else:
        role = [f"--address={head_address}"]
    return [ray_bin, "start", *role, "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources or {})}", f"--object-store-memory={object_store_bytes}",
            f"--temp-dir={temp_dir}", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
