"""Offline validation of clusters/: the launcher configs, the KubeRay manifest and the
job runtime environments. Nothing here needs cloud credentials, a network or Ray running.

- clusters/aws.yaml, clusters/gcp.yaml: the JSON schema shipped in the Ray wheel
  (ray/autoscaler/ray-schema.json), then Ray's own offline preparation
  (`prepare_config`: merge with the provider's defaults.yaml, merge setup commands,
  check docker, fill per-type worker bounds) and `validate_config` (schema again plus the
  cross-field checks: head type exists, min workers fit max_workers). `ray up` runs the
  same two steps before it calls the provider; what comes after (`bootstrap_config`,
  resource auto-detection) talks to the cloud and is not run here. Ray's schema leaves
  `node_config` free-form (it is the provider's API body), so the keys we use there are
  checked against a short hand-written list from the EC2 RunInstances and GCE
  instances.insert API references.
- clusters/kuberay.yaml: the RayCluster CRD schema is not in the Ray wheel and no PyPI
  package ships it, so `RAYCLUSTER_SCHEMA` below is a hand-written minimal structural
  schema of the fields this manifest uses, written from KubeRay's CRD
  (ray-operator/config/crd/bases/ray.io_rayclusters.yaml, ray.io/v1). It adds
  `additionalProperties: false` to every object the CRD describes by its properties:
  the API server rejects such unknown fields (kubectl's default --validate=strict),
  while maps the CRD leaves open (labels, rayStartParams, limits) stay open. Using a
  new field in the manifest means adding it here from the CRD.
- A misspelt key fails each of these validations: tested by renaming keys.
- The job runtime environments: Ray's own packaging code with our excludes leaves the
  virtual environment, the MLflow store and checkpoints out of the upload.
- Safe by default: the pipeline's own `ray.init` opens no dashboard and uploads nothing;
  mlflow/serve.sh binds to 127.0.0.1; no credentials in clusters/.

Run: .venv/bin/python -m pytest tests/test_clusters.py
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from ray._private.runtime_env.packaging import create_package
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
LAUNCHER_CONFIGS = ["aws.yaml", "gcp.yaml"]
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
#: The GPU image of our Ray version for our Python (tag form {version}-{python}-{platform}).
RAY_GPU_IMAGE = f"rayproject/ray:{ray.__version__}-{PY_TAG}-gpu"

RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())

#: node_config keys we allow, from the provider APIs (EC2 RunInstances; GCE instances.insert).
NODE_CONFIG_KEYS = {
    "aws": {
        "InstanceType", "ImageId", "BlockDeviceMappings", "InstanceMarketOptions", "KeyName",
        "SubnetIds", "SecurityGroupIds", "IamInstanceProfile", "TagSpecifications",
        "Placement", "NetworkInterfaces", "MetadataOptions", "UserData",
    },
    "gcp": {
        "machineType", "disks", "guestAccelerators", "metadata", "scheduling",
        "serviceAccounts", "networkInterfaces", "labels", "tags", "minCpuPlatform",
        "reservationAffinity", "shieldedInstanceConfig",
    },
}


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def validate_launcher_config(config: dict) -> dict:
    """What `ray up` checks before it talks to the cloud, plus our node_config key list.
    Returns the prepared config; raises on any error."""
    jsonschema.validate(config, RAY_SCHEMA)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    allowed = NODE_CONFIG_KEYS[config["provider"]["type"]]
    for type_name, node_type in config["available_node_types"].items():
        unknown = set(node_type["node_config"]) - allowed
        if unknown:
            raise ValueError(f"available_node_types.{type_name}.node_config: unknown {sorted(unknown)}")
    return prepared


def rename_key(tree: dict, path: str, new_name: str) -> dict:
    """A copy of `tree` with the key at dotted `path` renamed (list items by index).
    Fails if the key is not there, so that a mutation test cannot pass vacuously."""
    tree = copy.deepcopy(tree)
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert last in node, f"{path} is not in the file: fix the test"
    node[new_name] = node.pop(last)
    return tree


# --- launcher configs -------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_validates_offline(name):
    prepared = validate_launcher_config(load(name))
    # prepare_config gave every node type bounds: the head none, the GPU groups from 0.
    head = prepared["head_node_type"]
    assert prepared["available_node_types"][head]["max_workers"] == 0
    assert "pip install" in " ".join(prepared["worker_setup_commands"])


WORKER_TYPE = {"aws.yaml": "gpu_1x_t4", "gcp.yaml": "gpu_1x_t4"}
MACHINE_KEY = {"aws.yaml": "InstanceType", "gcp.yaml": "machineType"}


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
@pytest.mark.parametrize(
    "path, misspelt",
    [
        ("max_workers", "max_worker"),
        ("idle_timeout_minutes", "idle_timeout_minute"),
        ("docker.image", "imgae"),
        ("available_node_types.{worker}.min_workers", "min_worker"),
        ("available_node_types.{worker}.resources", "resource"),
        ("available_node_types.{worker}.node_config.{machine}", "{machine}s"),
        ("head_start_ray_commands", "head_start_commands"),
    ],
)
def test_launcher_config_misspelt_key_fails(name, path, misspelt):
    fill = {"worker": WORKER_TYPE[name], "machine": MACHINE_KEY[name]}
    config = rename_key(load(name), path.format(**fill), misspelt.format(**fill))
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_launcher_config(config)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_policy(name):
    """CPU head, GPU groups from zero on spot, our image, the project installed, token
    auth on, the dashboard left on the head's loopback, nothing big uploaded."""
    config = load(name)
    assert config["docker"]["image"] == RAY_GPU_IMAGE
    head = config["head_node_type"]
    assert config["available_node_types"][head]["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in config["available_node_types"].items() if k != head}
    assert workers
    for type_name, node_type in workers.items():
        assert node_type["min_workers"] == 0, type_name
        assert node_type["resources"]["GPU"] >= 1, type_name
        node_config = node_type["node_config"]
        if config["provider"]["type"] == "aws":
            assert node_config["InstanceMarketOptions"]["MarketType"] == "spot", type_name
        else:
            assert node_config["scheduling"]["provisioningModel"] == "SPOT", type_name
            assert node_config["scheduling"]["onHostMaintenance"] == "TERMINATE", type_name
    assert any("pip install" in cmd and "-e ." in cmd for cmd in config["setup_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token ray start" in cmd
            assert "0.0.0.0" not in cmd
    assert {".venv", "mlflow/*.db", "mlflow/artifacts", "mlflow/ray_results", "runs"} <= set(config["rsync_exclude"])


# --- KubeRay ----------------------------------------------------------------------


def obj(required: tuple[str, ...] = (), **properties) -> dict:
    """An object the CRD describes by its properties: unknown keys are errors."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def map_of(values: dict) -> dict:
    """A map the CRD leaves open (`additionalProperties: <schema>`)."""
    return {"type": "object", "additionalProperties": values}


def array_of(items: dict) -> dict:
    return {"type": "array", "items": items}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
# CRD: x-kubernetes-int-or-string with the resource.Quantity pattern.
QUANTITY = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}
RESOURCES = obj(limits=map_of(QUANTITY), requests=map_of(QUANTITY))
CONTAINER = obj(
    ("name",),
    name=STRING,
    image=STRING,
    imagePullPolicy=STRING,
    command=array_of(STRING),
    args=array_of(STRING),
    env=array_of(obj(("name",), name=STRING, value=STRING, valueFrom={"type": "object"})),
    ports=array_of(obj(("containerPort",), containerPort=INTEGER, name=STRING, protocol=STRING)),
    resources=RESOURCES,
    volumeMounts=array_of(obj(("mountPath", "name"), mountPath=STRING, name=STRING, readOnly=BOOLEAN)),
)
POD_TEMPLATE = obj(
    metadata=obj(labels=map_of(STRING), annotations=map_of(STRING)),
    spec=obj(
        ("containers",),
        containers=array_of(CONTAINER),
        tolerations=array_of(
            obj(key=STRING, operator=STRING, value=STRING, effect=STRING, tolerationSeconds=INTEGER)
        ),
        nodeSelector=map_of(STRING),
        serviceAccountName=STRING,
        volumes=array_of({"type": "object"}),
    ),
)
RAYCLUSTER_SCHEMA = obj(
    ("apiVersion", "kind", "metadata", "spec"),
    apiVersion={"const": "ray.io/v1"},
    kind={"const": "RayCluster"},
    metadata=obj(("name",), name=STRING, namespace=STRING, labels=map_of(STRING), annotations=map_of(STRING)),
    spec=obj(
        ("headGroupSpec",),
        rayVersion=STRING,
        suspend=BOOLEAN,
        authOptions=obj(mode={"enum": ["disabled", "token"]}, secretName=STRING, enableK8sTokenAuth=BOOLEAN),
        enableInTreeAutoscaling=BOOLEAN,
        autoscalerOptions=obj(
            upscalingMode={"enum": ["Default", "Aggressive", "Conservative"]},
            idleTimeoutSeconds=INTEGER,
            image=STRING,
            imagePullPolicy=STRING,
            resources=RESOURCES,
        ),
        headGroupSpec=obj(
            ("template",),
            serviceType=STRING,
            enableIngress=BOOLEAN,
            rayStartParams=map_of(STRING),
            template=POD_TEMPLATE,
        ),
        workerGroupSpecs=array_of(
            obj(
                ("groupName", "maxReplicas", "minReplicas", "template"),
                groupName=STRING,
                replicas=INTEGER,
                minReplicas=INTEGER,
                maxReplicas=INTEGER,
                idleTimeoutSeconds=INTEGER,
                numOfHosts=INTEGER,
                suspend=BOOLEAN,
                rayStartParams=map_of(STRING),
                template=POD_TEMPLATE,
            )
        ),
    ),
)


def test_kuberay_manifest_validates():
    jsonschema.validate(load("kuberay.yaml"), RAYCLUSTER_SCHEMA)


@pytest.mark.parametrize(
    "path, misspelt",
    [
        ("spec.enableInTreeAutoscaling", "enableInTreeAutoscalling"),
        ("spec.authOptions.mode", "mod"),
        ("spec.headGroupSpec.rayStartParams", "rayStartParam"),
        ("spec.headGroupSpec.template.spec.containers.0.image", "imgae"),
        ("spec.workerGroupSpecs.0.minReplicas", "minReplica"),
        ("spec.workerGroupSpecs.0.template.spec.containers.0.resources", "resource"),
        ("spec.workerGroupSpecs.0.template.spec.tolerations.0.effect", "efect"),
    ],
)
def test_kuberay_manifest_misspelt_key_fails(path, misspelt):
    manifest = rename_key(load("kuberay.yaml"), path, misspelt)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, RAYCLUSTER_SCHEMA)


def test_kuberay_manifest_bad_value_fails():
    manifest = load("kuberay.yaml")
    manifest["spec"]["authOptions"]["mode"] = "tokn"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, RAYCLUSTER_SCHEMA)
    manifest = load("kuberay.yaml")
    manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"
    ] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, RAYCLUSTER_SCHEMA)


def test_kuberay_manifest_policy():
    spec = load("kuberay.yaml")["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == RAY_GPU_IMAGE
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        container = group["template"]["spec"]["containers"][0]
        assert container["image"] == RAY_GPU_IMAGE
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


# --- runtime environments, README, secrets ----------------------------------------------

RUNTIME_ENVS = ["runtime_env.yaml", "runtime_env.kuberay.yaml"]


@pytest.mark.parametrize("name", RUNTIME_ENVS)
@pytest.mark.parametrize("include_gitignore", [False, True])
def test_runtime_env_excludes_store_venv_checkpoints(tmp_path, name, include_gitignore):
    """Zip a fake project with Ray's own packaging code and these excludes: the code goes
    up, the virtual environment, MLflow store and checkpoints do not. Without a
    .gitignore too, so that the excludes alone suffice."""
    project = tmp_path / "project"
    files = {
        "pipeline/run.py": "kept",
        "tasks/cms.yaml": "kept",
        "mlflow/serve.sh": "kept",
        ".venv/lib/python3.11/site-packages/torch/__init__.py": "dropped",
        "mlflow/mlflow.db": "dropped",
        "mlflow/optuna.db": "dropped",
        "mlflow/artifacts/1/abc/artifacts/front.png": "dropped",
        "runs/cms/trial_0/checkpoint_000001/state.pkl": "dropped",
        # pipeline.paths.results_dir: Tune's trial state and checkpoints beside the store
        "mlflow/ray_results/cms-1/run_trial_1/checkpoint_000000/trial_state.pt": "dropped",
        "mlflow/ray_results/train/train-1/checkpoint_2026/trial_state.pt": "dropped",
        "pipeline/__pycache__/run.cpython-311.pyc": "dropped",
    }
    for rel, content in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(content)
    if include_gitignore:
        (project / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    package = tmp_path / "package.zip"
    create_package(str(project), package, include_gitignore=include_gitignore, excludes=load(name)["excludes"])
    uploaded = set(zipfile.ZipFile(package).namelist())
    kept = {rel for rel, what in files.items() if what == "kept"}
    assert kept <= uploaded
    assert not any(name.startswith((".venv/", "mlflow/artifacts/", "mlflow/ray_results/", "runs/"))
                   for name in uploaded)
    assert not any(name.endswith((".db", ".pyc")) for name in uploaded)


def test_runtime_envs_share_excludes_and_kuberay_pip_mirrors_pyproject():
    assert load("runtime_env.yaml")["excludes"] == load("runtime_env.kuberay.yaml")["excludes"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {Requirement(dep).name for dep in pyproject["project"]["dependencies"]} - {"ray"}
    listed = {Requirement(dep).name for dep in load("runtime_env.kuberay.yaml")["pip"]}
    assert wanted <= listed
    assert listed - wanted <= {"psycopg2-binary"}  # the cluster's Optuna study in PostgreSQL


def test_readme_names_existing_files():
    readme = (CLUSTERS / "README.md").read_text()
    named = set(re.findall(r"clusters/[\w.]+\.(?:yaml|md)", readme))
    assert {f"clusters/{name}" for name in LAUNCHER_CONFIGS + RUNTIME_ENVS + ["kuberay.yaml"]} <= named
    for path in named:
        assert (ROOT / path).is_file(), path
    for section in ("AWS", "GCP", "Kubernetes", "MLflow"):
        assert re.search(rf"^#+ .*{section}", readme, re.MULTILINE), section


SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"(?i)aws_secret_access_key\s*[:=]",
    r"(?i)\"private_key\"\s*:",
    r"(?i)password\s*[:=]\s*\S",
    r"(?i)RAY_AUTH_TOKEN\s*[:=]\s*[\"']?[A-Za-z0-9]{16,}",  # a literal token, not $(kubectl ...)
    r"postgresql://[^:@\s/]+:[^@\s<]+@",  # a DSN with a literal password
]


@pytest.mark.parametrize("path", sorted(p.name for p in CLUSTERS.iterdir() if p.is_file()))
def test_no_credentials_in_cluster_files(path):
    text = (CLUSTERS / path).read_text()
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text), (path, pattern)


# --- safe by default: what the pipeline itself opens and uploads ----------------------------


@pytest.mark.parametrize("ray_address", [None, "127.0.0.1:6379"])
def test_pipeline_ray_init_opens_no_dashboard_and_uploads_nothing(monkeypatch, ray_address):
    """Locally the pipeline starts Ray without a dashboard (or on loopback); joining a
    cluster it uploads no working directory of its own (`ray job submit` does, with
    clusters/runtime_env.yaml's excludes)."""
    import ray as ray_module

    from pipeline import driver

    calls = []
    monkeypatch.setattr(ray_module, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_module, "init", lambda *args, **kwargs: calls.append(kwargs))
    for name in ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "RAY_AIR_NEW_OUTPUT", "RAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    if ray_address:
        monkeypatch.setenv("RAY_ADDRESS", ray_address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    driver.init_ray(printer=lambda line: None)
    [kwargs] = calls
    if ray_address is None:
        assert kwargs.get("include_dashboard") is False or kwargs.get("dashboard_host") in ("127.0.0.1", "localhost")
    runtime_env = kwargs.get("runtime_env") or {}
    assert not {"working_dir", "py_modules"} & set(runtime_env)


def test_mlflow_serve_script_binds_loopback():
    script = ROOT / "mlflow" / "serve.sh"
    if not script.is_file():
        pytest.skip("mlflow/serve.sh is not in the tree yet")
    text = script.read_text()
    assert "127.0.0.1" in text
    assert not re.search(r"(?m)^[^#]*--host[ =]+0\.0\.0\.0", text)
