"""Task files and search spaces: load, merge a profile and overrides, validate.

The pydantic models below are the schema of a task file (docs/task_files.md describes
it for users; a search space's models live in `pipeline.space`). Every error becomes a
`TaskError` (`pipeline.errors`) whose lines each name the file and the field path,
e.g. `tasks/cms.yaml: search.sampler: Input should be 'tpe', 'nsga2', 'grid' or
'random' (got 'tpee')`, and the CLI exits with code 2 before anything starts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import paths
from pipeline import workloads as registry
from pipeline.errors import TaskError
from pipeline.space import DIMENSION_TYPES, SearchSpace, check_constraint_names
from pipeline.workloads.base import Params


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- task files -------------------------------------------------------------------------

class Objective(_Strict):
    metric: str
    mode: Literal["min", "max"]


class Scheduler(_Strict):
    type: Literal["asha"] = "asha"
    metric: str
    mode: Literal["min", "max"]
    max_t: int = Field(10, ge=1, description="in reports (training_iteration)")
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


class Search(_Strict):
    sampler: Literal["tpe", "nsga2", "grid", "random"] = "tpe"
    num_samples: int | None = Field(None, ge=1, description="trials; default: the grid's size for sampler=grid, else 8")
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
    scheduler: Scheduler | None = None


class Scaling(_Strict):
    num_workers: int = Field(0, ge=0, description="Ray Train workers; 0 = Train's local mode")
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    trial_cpus: float = Field(1, gt=0, description="CPUs reserved for a trial's driver function")


class Failure(_Strict):
    max_retries: int = Field(1, ge=0, description="retries of a trial that raises")


class MLflowConfig(_Strict):
    experiment: str | None = None
    tracking_uri: str | None = None


class Task(_Strict):
    workload: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    search_space: str | dict[str, Any] = Field(default_factory=dict, description="file under search_spaces/ or inline")
    objectives: list[Objective] = Field(min_length=1)
    reference_point: dict[str, float] | None = None
    search: Search = Field(default_factory=Search)
    scaling: Scaling = Field(default_factory=Scaling)
    failure: Failure = Field(default_factory=Failure)
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ResolvedTask(BaseModel):
    """A task after profile, overrides and search-space file are applied and checked."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    profile: str
    task: Task
    space: SearchSpace
    params: Params  # the workload's validated defaults
    raw: dict[str, Any]  # the merged YAML, as logged to MLflow

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def experiment(self) -> str:
        return self.task.mlflow.experiment or self.name


# --- loading ------------------------------------------------------------------------------

def deep_merge(base: dict, override: dict) -> dict:
    """Dicts merge key by key; anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a","b","c"], YAML-parsed value)."""
    if "=" not in text:
        raise TaskError(f"override {text!r}: expected dotted.key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise TaskError(f"override {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise TaskError(f"override {text!r}: value is not valid YAML ({err.__class__.__name__})") from None
    return parts, parsed


def _set_dotted(tree: dict, parts: list[str], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TaskError(f"override {'.'.join(parts)}: {part} is not a mapping")
    node[parts[-1]] = value


def _read_yaml(path: Path, what: str) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TaskError(f"{path}: {what} file not found") from None
    except OSError as err:
        raise TaskError(f"{path}: cannot read {what} file ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TaskError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise TaskError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _format_errors(source: str, err: ValidationError, prefix: str = "") -> TaskError:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *item["loc"]))
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], dict):
            msg = f"{msg} (got {item['input']!r})"
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return TaskError("\n".join(lines))


def _unknown_key_hint(model: type[BaseModel], data: dict, source: str, prefix: str) -> list[str]:
    """For unknown keys, list the valid ones (recursing into nested models)."""
    hints = []
    if not isinstance(data, dict):
        return hints
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            hints.append(f"{source}: {prefix}{key}: unknown key; valid: {', '.join(sorted(fields))}")
            continue
        annotation = fields[key].annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(value, dict):
                hints += _unknown_key_hint(candidate, value, source, f"{prefix}{key}.")
    return hints


def _validate_model(model: type[BaseModel], data: dict, source: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        formatted = _format_errors(source, err, prefix)
        hints = _unknown_key_hint(model, data, source, f"{prefix}." if prefix else "")
        lines = [ln for ln in str(formatted).splitlines() if not ln.endswith(": unknown key")]
        raise TaskError("\n".join(hints + lines)) from None


def parse_space(data: dict, source: str, prefix: str = "") -> SearchSpace:
    """Validate a search space, each parameter against the class its `type` names, so
    that an error names one parameter and one type."""
    if not isinstance(data, dict):
        raise TaskError(f"{source}: {prefix}must be a mapping")
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        raise TaskError(f"{source}: {prefix}parameters: must be a mapping of name -> dimension")
    dims = {}
    for name, dim in parameters.items():
        where = f"{prefix}parameters.{name}"
        if not isinstance(dim, dict) or dim.get("type") not in DIMENSION_TYPES:
            got = dim.get("type") if isinstance(dim, dict) else dim
            raise TaskError(f"{source}: {where}.type: must be one of {', '.join(DIMENSION_TYPES)}, got {got!r}")
        dims[name] = _validate_model(DIMENSION_TYPES[dim["type"]], dim, source, where)
    rest = {k: v for k, v in data.items() if k != "parameters"}
    space = _validate_model(SearchSpace, rest, source, prefix.rstrip("."))
    space.parameters = dims
    return space


def load_space(ref: str | dict, task_path: Path) -> tuple[SearchSpace, Path | None]:
    if isinstance(ref, dict):
        return parse_space(ref, str(task_path), "search_space."), None
    candidates = [paths.project_root() / "search_spaces" / ref, task_path.parent.parent / "search_spaces" / ref]
    for candidate in candidates:
        if candidate.is_file():
            data = _read_yaml(candidate, "search space")
            return parse_space(data, str(candidate)), candidate
    raise TaskError(f"{task_path}: search_space: file {ref!r} not found under search_spaces/")


def load_task(path: str | Path, profile: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ResolvedTask:
    """Read a task file, apply `profile` (default `quick`) and dotted overrides,
    load its search space and check everything against the workload."""
    path = Path(path)
    source = str(path)
    raw = _read_yaml(path, "task")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise TaskError(f"{source}: profiles: must be a mapping of name -> overrides")
    name = profile or "quick"
    if profile is not None or profiles:
        if name not in profiles:
            raise TaskError(f"{source}: profiles: no profile {name!r}; valid: {', '.join(sorted(profiles)) or '(none)'}")
        if not isinstance(profiles[name], dict):
            raise TaskError(f"{source}: profiles.{name}: must be a mapping")
        if "profiles" in profiles[name]:
            raise TaskError(f"{source}: profiles.{name}.profiles: a profile cannot define profiles")
        merged = deep_merge(raw, profiles[name])
    else:
        merged = copy.deepcopy(raw)
    from_file = copy.deepcopy(merged)  # what the task file itself names, before the user's overrides
    for text in overrides:
        parts, value = parse_override(text)
        _set_dotted(merged, parts, value)

    task = _validate_model(Task, merged, source)
    try:
        workload = registry.get(task.workload)
    except KeyError as err:
        raise TaskError(f"{source}: workload: {err.args[0]}") from None
    space, space_path = load_space(task.search_space, path)
    space_source = str(space_path) if space_path else f"{source}: search_space"

    # the params block must validate on its own (defaults for every trial)
    params = _validate_model(workload.params, task.params, source, "params")
    # every searched parameter must be a field of the workload's params
    fields = workload.params.model_fields
    for pname, dim in space.parameters.items():
        head = pname.split(".")[0]
        if head not in fields:
            raise TaskError(f"{space_source}: parameters.{pname}: not a parameter of workload "
                            f"{task.workload!r}; valid: {', '.join(sorted(fields))}")
        # each value the space can produce must be a valid value of that field
        for probe in _probe_values(dim):
            trial = deep_merge(task.params, nest({pname: probe}))
            try:
                workload.params.model_validate(trial)
            except ValidationError as err:
                first = err.errors()[0]
                raise TaskError(f"{space_source}: parameters.{pname}: value {probe!r} is invalid for "
                                f"the workload: {first['msg']}") from None
    check_constraint_names(space, params, space_source)
    if task.search.sampler == "grid":
        bad = [n for n, d in space.parameters.items() if d.type not in ("grid", "choice")]
        if bad:
            raise TaskError(f"{source}: search.sampler: grid needs every parameter to be grid or choice; "
                            f"not: {', '.join(bad)}")
        if not space.parameters:
            raise TaskError(f"{source}: search.sampler: grid needs at least one parameter")
    for i, objective in enumerate(task.objectives):
        if objective.metric not in workload.metrics:
            raise TaskError(f"{source}: objectives.{i}.metric: {objective.metric!r} is never reported by "
                            f"workload {task.workload!r}; it reports: {', '.join(workload.metrics)}")
    names = [o.metric for o in task.objectives]
    if len(set(names)) != len(names):
        raise TaskError(f"{source}: objectives: a metric is listed twice")
    if task.search.scheduler and task.search.scheduler.metric not in workload.metrics:
        raise TaskError(f"{source}: search.scheduler.metric: {task.search.scheduler.metric!r} is never reported "
                        f"by workload {task.workload!r}")
    if task.reference_point is not None:
        missing = set(names) - set(task.reference_point)
        extra = set(task.reference_point) - set(names)
        if missing or extra:
            raise TaskError(f"{source}: reference_point: needs exactly the objective metrics {names}")
    if task.mlflow.tracking_uri:
        paths.check_tracking_uri(task.mlflow.tracking_uri, f"{source}: mlflow.tracking_uri")
        named = (from_file.get("mlflow") or {}).get("tracking_uri") if isinstance(from_file.get("mlflow"), dict) else None
        if named == task.mlflow.tracking_uri:
            _check_write_path(task.mlflow.tracking_uri, path, f"{source}: mlflow.tracking_uri")
    if workload.validate is not None:
        try:
            workload.validate(params)
        except ValueError as err:
            raise TaskError(f"{source}: params: {err}") from None
    return ResolvedTask(path=path, profile=name, task=task, space=space, params=params, raw=merged)


def _check_write_path(uri: str, task_path: Path, where: str) -> None:
    """A task file may name a place for the pipeline to write (a sqlite store) only in
    the project or beside the task file itself: a task file shared or downloaded must
    not make a run write elsewhere. The user's own arguments (command-line overrides,
    MLFLOW_TRACKING_URI, PIPELINE_RESULTS) may point anywhere."""
    if not uri.startswith("sqlite:///"):
        return  # a server: it decides where its data goes
    target = Path(uri[len("sqlite:///"):]).resolve()
    allowed = [paths.project_root().resolve(), task_path.resolve().parent]
    if not any(target.is_relative_to(root) for root in allowed):
        raise TaskError(f"{where}: a task file may only name a store inside the project ({allowed[0]}) or beside "
                        f"the task file ({allowed[1]}), got {uri!r}; give other places on the command line "
                        f"(mlflow.tracking_uri=...) or in MLFLOW_TRACKING_URI")


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`: a trial's sampled (dotted) names as a params tree."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        _set_dotted(out, key.split("."), value)
    return out


def _probe_values(dim) -> list[Any]:
    if dim.type in ("grid", "choice"):
        return list(dim.values)
    if dim.type == "randint":
        return [dim.low, dim.high]
    return [dim.low, dim.high]


def trial_params(resolved: ResolvedTask, sampled: dict[str, Any]) -> Params:
    """The workload's params for one trial: the task's `params` with the sampled values."""
    from pipeline.workloads import get

    return get(resolved.task.workload).make_params(deep_merge(resolved.task.params, nest(sampled)))
