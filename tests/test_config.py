"""Task-file schema, search-space mapping, constraints, and the CLI's bad-input table.

Every bad input gives exit code 2 and one message naming the file and the field,
before anything starts (no Ray, no MLflow store written)."""

from pathlib import Path

import optuna
import pytest
import yaml

from pipeline.config import deep_merge, load_task, parse_override
from pipeline.errors import TaskError
from pipeline.run import main
from pipeline.space import make_sampler, to_optuna, violated

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted((ROOT / "tasks").glob("*.yaml"))

BASE = {
    "workload": "cms",
    "params": {"stream": {"universe": 100, "length": 1000}},
    "search_space": {"parameters": {"width": {"type": "choice", "values": [8, 16]}}},
    "objectives": [{"metric": "aae", "mode": "min"}, {"metric": "bytes", "mode": "min"}],
    "profiles": {"quick": {}, "paper": {"params": {"stream": {"length": 5000}}}},
}


def write(tmp_path: Path, task: dict, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(task))
    return path


@pytest.mark.parametrize("task_path", TASKS, ids=[p.name for p in TASKS])
def test_every_task_file_validates(task_path):
    raw = yaml.safe_load(task_path.read_text())
    for profile in raw.get("profiles") or {"quick": {}}:
        resolved = load_task(task_path, profile)
        assert resolved.task.objectives
        assert resolved.space.parameters, f"{task_path.name} [{profile}] searches nothing"


def test_every_task_has_quick_and_paper():
    for path in TASKS:
        profiles = yaml.safe_load(path.read_text()).get("profiles") or {}
        assert {"quick", "paper"} <= set(profiles), path.name


def test_profile_and_overrides_merge(tmp_path):
    path = write(tmp_path, BASE)
    assert load_task(path).params.stream.length == 1000
    assert load_task(path, "paper").params.stream.length == 5000
    resolved = load_task(path, "paper", ["params.stream.length=7", "search.num_samples=3", "params.delta=1e-1"])
    assert resolved.params.stream.length == 7 and resolved.task.search.num_samples == 3
    assert resolved.params.delta == pytest.approx(0.1)  # YAML 1.1 reads 1e-1 as a string: coerced


def test_deep_merge_replaces_lists():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_parse_override():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(TaskError, match="dotted.key=value"):
        parse_override("nokey")


# --- bad inputs: (what to change, text the one message must contain) -----------------------

def _set(task, dotted, value):
    task = deep_merge(task, {})
    node = task
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = value
    return task


_DELETE = object()
BAD = [
    ("workload", "nope", "workload: unknown workload 'nope'; valid:"),
    ("colour", "red", "colour: unknown key; valid:"),
    ("search.samplr", "tpe", "search.samplr: unknown key; valid: max_concurrent"),
    ("params.widht", 3, "params.widht: unknown key; valid:"),
    ("params.width", "wide", "params.width"),
    ("params.depth", 0, "params.depth"),
    ("search.sampler", "tpee", "search.sampler"),
    ("search.num_samples", 0, "search.num_samples"),
    ("objectives", [], "objectives"),
    ("objectives", [{"metric": "speed", "mode": "min"}], "objectives.0.metric: 'speed' is never reported"),
    ("objectives", [{"metric": "aae", "mode": "down"}], "objectives.0.mode"),
    ("search_space", "missing.yaml", "search_space: file 'missing.yaml' not found"),
    ("search_space", {"parameters": {"delta": {"type": "uniform", "low": 1.0, "high": 0.5}}}, "inverted range"),
    ("search_space", {"parameters": {"delta": {"type": "uniform", "low": 1.0, "high": 1.0}}}, "empty or inverted"),
    ("search_space", {"parameters": {"delta": {"type": "loguniform", "low": 0.0, "high": 1.0}}}, "low > 0"),
    ("search_space", {"parameters": {"depth": {"type": "randint", "low": 5, "high": 1}}}, "inverted range"),
    ("search_space", {"parameters": {"delta": {"type": "normal", "low": 0, "high": 1}}}, "delta.type: must be one of"),
    ("search_space", {"parameters": {"colour": {"type": "choice", "values": [1]}}},
     "parameters.colour: not a parameter of workload 'cms'"),
    ("search_space", {"parameters": {"width": {"type": "choice", "values": [8, -1]}}}, "value -1 is invalid"),
    ("search_space", {"parameters": {"width": {"type": "choice", "values": []}}}, "parameters.width"),
    ("search_space", {"parameters": {"width": {"type": "choice", "values": [8]}},
                      "constraints": [{"expr": "width <= M"}]}, "unknown name 'M'"),
    ("search_space", {"parameters": {"width": {"type": "choice", "values": [8]}},
                      "constraints": [{"expr": "__import__('os')"}]}, "constraints.0.expr"),
    ("search", {"sampler": "grid"},
     None),  # valid: the only parameter is a choice
    ("search_space", {"parameters": {"delta": {"type": "uniform", "low": 0.1, "high": 1}}}, None),
    ("params.stream", {"source": "file", "path": "/nonexistent/stream.txt"}, "params: stream file /nonexistent"),
    ("params.stream", {"source": "file"}, "stream.path is required"),
    ("reference_point", {"aae": 1.0}, "reference_point"),
    ("search.scheduler", {"metric": "speed", "mode": "min"}, "search.scheduler.metric"),
    ("mlflow.tracking_uri", "./mlruns", "mlflow.tracking_uri: MLflow 3 needs"),
    ("mlflow.tracking_uri", "sqlite:///relative.db", "absolute path"),
    # a task file may not make the pipeline write outside the project or its own folder
    ("mlflow.tracking_uri", "sqlite:////etc/pipeline/mlflow.db", "a task file may only name a store inside"),
    ("mlflow.tracking_uri", "sqlite:////tmp/../root/mlflow.db", "a task file may only name a store inside"),
    ("profiles", {"quick": {"profiles": {}}}, "a profile cannot define profiles"),
]


@pytest.mark.parametrize("dotted, value, message", BAD, ids=[f"{d}={v!r}"[:60] for d, v, _ in BAD])
def test_bad_task_is_one_clear_error(tmp_path, capsys, dotted, value, message):
    path = write(tmp_path, _set(BASE, dotted, value))
    code = main([str(path), "--dry-run"])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
        return
    assert code == 2
    assert str(path) in err and message in err, err


def test_grid_sampler_needs_enumerable_parameters(tmp_path, capsys):
    task = _set(BASE, "search_space", {"parameters": {"delta": {"type": "uniform", "low": 0.1, "high": 1}}})
    path = write(tmp_path, _set(task, "search", {"sampler": "grid"}))
    assert main([str(path), "--dry-run"]) == 2
    assert "grid needs every parameter to be grid or choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/task.yaml"], "task file not found"),
    (["{task}", "--profile", "huge"], "no profile 'huge'; valid: paper, quick"),
    (["{task}", "params.width"], "expected dotted.key=value"),
    (["{task}", "params.width=[oops"], "not valid YAML"),
])
def test_cli_bad_arguments(tmp_path, capsys, argv, message):
    path = write(tmp_path, BASE)
    argv = [a.replace("{task}", str(path)) for a in argv]
    assert main(argv + ["--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_not_yaml_and_not_a_mapping(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("workload: [unclosed\n")
    assert main([str(tmp_path / "bad.yaml"), "--dry-run"]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- 1\n")
    assert main([str(tmp_path / "list.yaml"), "--dry-run"]) == 2
    assert "top level must be a mapping" in capsys.readouterr().err


def test_bad_input_starts_nothing(tmp_path, capsys, monkeypatch):
    """A bad task neither starts Ray nor creates an MLflow store."""
    store = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    path = write(tmp_path, _set(BASE, "objectives", [{"metric": "speed", "mode": "min"}]))
    assert main([str(path)]) == 2
    assert not store.exists()
    import ray

    assert not ray.is_initialized()


def test_dry_run_prints_resolved_task(tmp_path, capsys):
    assert main([str(write(tmp_path, BASE)), "--profile", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["params"]["stream"]["length"] == 5000 and printed["params"]["width"] == 1024
    assert printed["search_space"]["parameters"]["width"]["values"] == [8, 16]


def test_list_workloads(capsys):
    assert main(["--list-workloads"]) == 0
    out = capsys.readouterr().out
    assert "cms" in out and "smoke" in out


# --- search-space mapping and constraints ----------------------------------------------------

@pytest.mark.parametrize("dim, dist_type, check", [
    ({"type": "choice", "values": [1, "a"]}, optuna.distributions.CategoricalDistribution,
     lambda d: d.choices == (1, "a")),
    ({"type": "grid", "values": [1e-4, 5e-5]}, optuna.distributions.CategoricalDistribution,
     lambda d: len(d.choices) == 2),
    ({"type": "uniform", "low": 0.5, "high": 1.0}, optuna.distributions.FloatDistribution,
     lambda d: (d.low, d.high, d.log) == (0.5, 1.0, False)),
    ({"type": "loguniform", "low": 1e-5, "high": 1e-2}, optuna.distributions.FloatDistribution,
     lambda d: d.log),
    ({"type": "randint", "low": 1, "high": 5}, optuna.distributions.IntDistribution,
     lambda d: (d.low, d.high) == (1, 5)),  # both ends inclusive
])
def test_space_maps_to_optuna(dim, dist_type, check):
    from pipeline.space import SearchSpace

    dist = to_optuna(SearchSpace.model_validate({"parameters": {"x": dim}}))["x"]
    assert isinstance(dist, dist_type) and check(dist)


def test_grid_sampler_enumerates_the_grid():
    from pipeline.space import SearchSpace

    space = SearchSpace.model_validate({"parameters": {"a": {"type": "grid", "values": [1, 2, 3]},
                                                       "b": {"type": "choice", "values": ["x", "y"]}}})
    study = optuna.create_study(sampler=make_sampler("grid", space, 0))
    seen = []

    def objective(trial):
        seen.append((trial.suggest_categorical("a", [1, 2, 3]), trial.suggest_categorical("b", ["x", "y"])))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops the study once the grid is done
    assert len(seen) == 6 and len(set(seen)) == 6


def test_constraints_reject_with_reason(tmp_path):
    task = _set(BASE, "search_space", {
        "parameters": {"width": {"type": "choice", "values": [8, 16]}, "depth": {"type": "randint", "low": 1, "high": 4}},
        "constraints": [{"expr": "width * depth <= 32 and stream.length >= 10", "reason": "too many counters"}]})
    resolved = load_task(write(tmp_path, task))
    from pipeline.config import trial_params

    assert violated(resolved.space, trial_params(resolved, {"width": 8, "depth": 4})) is None
    assert violated(resolved.space, trial_params(resolved, {"width": 16, "depth": 3})) == "too many counters"


def test_task_file_store_beside_it_or_in_project_is_allowed(tmp_path, capsys):
    beside = write(tmp_path, _set(BASE, "mlflow.tracking_uri", f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}"))
    assert main([str(beside), "--dry-run"]) == 0, capsys.readouterr().err
    from pipeline import paths
    inside = write(tmp_path, _set(BASE, "mlflow.tracking_uri", f"sqlite:///{paths.project_root() / 'mlflow' / 'x.db'}"))
    assert main([str(inside), "--dry-run"]) == 0, capsys.readouterr().err


def test_user_override_may_name_any_store(tmp_path, capsys):
    """The rule is for what a task file names; the user's own command line is trusted."""
    path = write(tmp_path, BASE)
    code = main([str(path), "mlflow.tracking_uri=sqlite:////var/tmp/elsewhere/mlflow.db", "--dry-run"])
    assert code == 0, capsys.readouterr().err
    # but a task file naming that same place is refused, even when an override repeats it
    named = write(tmp_path, _set(BASE, "mlflow.tracking_uri", "sqlite:////var/tmp/elsewhere/mlflow.db"))
    assert main([str(named), "--dry-run"]) == 2
    assert "a task file may only name a store inside" in capsys.readouterr().err


@pytest.mark.parametrize("location", ["s3://bucket/prefix/", "gs://bucket/ray", "file:///tmp/results"])
def test_results_location_uri_passes_through(monkeypatch, location):
    from pipeline import paths
    monkeypatch.setenv("PIPELINE_RESULTS", location)
    assert paths.results_dir("sqlite:////tmp/x/mlflow.db") == location.rstrip("/")


def test_results_location_local_is_absolute(monkeypatch, tmp_path):
    from pipeline import paths
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_RESULTS", "rel/results")
    assert paths.results_dir("sqlite:////tmp/x/mlflow.db") == str(tmp_path / "rel" / "results")
    monkeypatch.delenv("PIPELINE_RESULTS")
    assert paths.results_dir("sqlite:////tmp/x/mlflow.db") == "/tmp/x/ray_results"


def test_results_store_reads_and_writes_through_pyarrow(tmp_path):
    from pipeline import paths
    store = paths.ResultsStore((tmp_path / "results").as_uri())  # file://, as s3:// would be
    assert store.subfolders("cms-") == []
    store.makedirs("cms-20260101-000000-000001")
    store.makedirs("cms-20260101-000000-000000")
    store.makedirs("other-1")
    store.write_text('{"complete": false}', "cms-20260101-000000-000000", "pipeline_state.json")
    assert store.subfolders("cms-") == ["cms-20260101-000000-000000", "cms-20260101-000000-000001"]
    assert store.exists("cms-20260101-000000-000000", "pipeline_state.json")
    assert not store.exists("cms-20260101-000000-000001", "pipeline_state.json")
    assert store.read_text("cms-20260101-000000-000000", "pipeline_state.json") == '{"complete": false}'
    assert store.join("train") == (tmp_path / "results").as_uri() + "/train"


def test_resume_with_nothing_to_resume_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIPELINE_RESULTS", str(tmp_path / "results"))
    path = write(tmp_path, BASE)
    code = main([str(path), f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: --resume: no unfinished run of task under {tmp_path / 'results'}"]
    import ray

    assert not ray.is_initialized()  # found out before Ray starts
