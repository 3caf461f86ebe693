"""Every task's `paper` profile validates, and runs end to end here once shrunk.

A paper profile names the source document's settings: hours on a GPU or a cluster, so no
one runs it by hand before it matters. This file keeps it runnable. Each task with a
`paper` profile (found by reading tasks/*.yaml, so a new one is picked up) must

- load: `load_task(path, "paper", [])`, as `python -m pipeline.run TASK --profile paper`;
- have an entry in `SHRINK` below: dotted overrides that only make sizes, steps and counts
  smaller (checked: each names a number the paper-resolved task already has and lowers
  it, or a list it keeps a part of), never a model class, loss, sampler, scheduler or
  `scaling.num_workers`, so the run goes down the paper's code path;
- run once so shrunk through the in-process runner (`pipeline.local.run_local`, what
  `python -m pipeline.run TASK --profile paper --local ... KEY=VALUE` does), returning
  finite metrics that include the task's objectives and leaving the workload's artifacts.

The local runner runs the task's `params` once: a search-space parameter takes the task's
(or the workload's) default, and there is no Ray Tune, Optuna or Ray Train around it. No
paper profile sets `scaling.num_workers >= 2` today (checked below against the resolved
task), so the Train wrapper adds nothing these runs miss beyond what tests/test_ddp.py
covers; `scaling.use_gpu: true` profiles run here on the CPU.

    .venv/bin/python -m pytest -q tests/test_paper_profiles.py --durations=0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import load_task, parse_override
from pipeline.errors import TaskError
from pipeline.local import run_local
from pipeline.workloads import get as get_workload
from pipeline.workloads.base import finite_metrics

ROOT = Path(__file__).resolve().parents[1]
PAPER_TASKS = sorted(path.stem for path in (ROOT / "tasks").glob("*.yaml")
                     if "paper" in ((yaml.safe_load(path.read_text()) or {}).get("profiles") or {}))

# The seed 000 §2 transformer as the paper sizes it (8 layers x 8 heads x width 64, query
# MLPs of 1024) is kept: at batch 8 its cost is the evaluation's, not the width's.
_NN = ["params.batch_size=8", "params.steps=4", "params.eval_every=2",  # two progress reports
       "params.monitor_instances=16", "params.eval_instances=64"]
_NN_N16 = ["params.n=16", *_NN]  # N=100 (or 50) doubles the run; 16 still holds the paper's M <= 7 lookups
# The seed 000 §3.1 MLPs at hidden 1024 double the run even at batch 8 (7.7 s against 3 s):
# narrower, same depth (layers 3) and everything else the paper's.
_FREQ = ["params.hidden=32", "params.embed_dim=8", "params.predictor_hidden=8", "params.batch_size=8",
         "params.steps=4", "params.eval_every=2", "params.val_streams=20", "params.eval_streams=50",
         "params.delta_items=8", "params.delta_max_count=4"]
_LEARNED_INDEX = ["params.l4_size=1000000", "params.queries=2000", "params.repeats=1"]  # L1-L3 at their seed sizes

SHRINK: dict[str, list[str]] = {
    "cms": ["params.stream.universe=2000", "params.stream.length=20000", "params.stream.queries=500"],
    "freq_heavy_hitters": [*_FREQ, "params.cnn_channels=4"],
    "freq_zipf": _FREQ,
    "learned_index": _LEARNED_INDEX,
    "learned_index_constant_space": _LEARNED_INDEX,
    # both sides of the ensemble's skew gate (paper: 1.0), at 2 of the 7 budgets, the
    # objective's 12 bricks among them; every item still queried (query_per_task 0)
    "lego": ["params.steps=4", "params.report_every=2", "params.distinct_min=100", "params.distinct_max=500",
             "params.eval_distinct=2000", "params.eval_brick_counts=[3, 12]", "params.eval_skews=[0.7, 1.3]"],
    "lego_eval": ["params.eval_distinct=2000", "params.budgets_kb=[300, 2100]"],
    "nn_digits": _NN_N16,
    "nn_extra_space": _NN_N16,
    "nn_hard_1d": _NN,  # N=15 already (B.1)
    "nn_hard_2d": _NN_N16,
    "nn_hypersphere_30d": _NN_N16,
    "nn_uniform_1d": _NN_N16,
    "nn_uniform_2d": _NN_N16,
    "nn_zipf_1d": _NN_N16,
    "smoke": [],  # the paper profile only searches longer; one run is already tiny
    # numba specialises the mapping's access and lookup loops per trial (not cached): ~7 s at any size
    "wavelet_mapping": ["params.n=20000", "params.queries=2000", "params.repeats=1"],
    "zdt1": [],  # the paper profile only searches longer
}

# Files each workload leaves in its artifact dir (run_local adds summary.json): what the
# pipeline logs to MLflow and the docs point readers to.
ARTIFACTS: dict[str, set[str]] = {
    "cms": set(),
    "e2e_freq": {"front.csv", "front.png", "delta_readout.csv", "delta_readout.json", "delta_sweep.csv",
                 "train_curve.csv"},
    "e2e_nn": {"model.pt", "accuracy_per_lookup.csv", "accuracy_per_lookup.png"},
    "learned_index": {"tables.csv"},
    "lego": {"brick.pt", "lego_eval.csv", "are_vs_bytes.png", "are_vs_bytes.html"},
    "lego_eval": {"lego_eval.csv", "are_vs_bytes.png", "are_vs_bytes.html"},
    "smoke": {"model.txt"},
    "wavelet_mapping": {"wavelet_trial.json"},
    "zdt1": set(),
}
EXTRA_ARTIFACTS = {"freq_heavy_hitters": {"decision_boundary.csv", "decision_boundary.png"}}  # seed 000 Figure 24

# What a shrink may not touch: the search and the scaling decide the code path around the
# workload (sampler, scheduler, Train workers), and the rest names what is studied.
NOT_SHRINKABLE = ("workload", "objectives", "reference_point", "search_space", "search", "scaling", "failure", "mlflow")


def _task_path(name: str) -> Path:
    return ROOT / "tasks" / f"{name}.yaml"


def _resolved_tree(resolved) -> dict[str, Any]:
    """The paper-resolved task as one tree: the task file's fields, with `params` as the
    workload sees them (every field, defaults included)."""
    tree = resolved.task.model_dump()
    tree["params"] = resolved.params.model_dump()
    return tree


def _lookup(tree: dict, parts: list[str]) -> Any:
    node: Any = tree
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(parts[:depth + 1]))
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_every_paper_profile_has_a_shrink_entry():
    assert PAPER_TASKS, "no task file with a paper profile found"
    missing = sorted(set(PAPER_TASKS) - set(SHRINK))
    stale = sorted(set(SHRINK) - set(PAPER_TASKS))
    assert not missing, f"paper profiles without a SHRINK entry in {__file__}: {missing}"
    assert not stale, f"SHRINK entries for tasks without a paper profile: {stale}"


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_paper_profile_validates(task):
    resolved = load_task(_task_path(task), "paper", [])
    assert resolved.profile == "paper"
    assert resolved.space.parameters, f"{task}: the paper profile searches nothing"


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_shrink_only_lowers_sizes_the_paper_profile_has(task):
    """Each override names a key of the paper-resolved task (a typo fails here, whether or
    not the schema would catch it), outside the search and scaling, and makes a number
    smaller or a list a part of the paper's; nothing else of the task changes."""
    paper = load_task(_task_path(task), "paper", [])
    tree = _resolved_tree(paper)
    for text in SHRINK.get(task, []):
        parts, value = parse_override(text)
        assert parts[0] not in NOT_SHRINKABLE, f"{task}: {text}: a shrink keeps {parts[0]} as the paper has it"
        try:
            before = _lookup(tree, parts)
        except KeyError as missing:
            pytest.fail(f"{task}: {text}: {missing.args[0]} is not a key of the paper-resolved task")
        if isinstance(before, list):
            assert isinstance(value, list) and value and all(v in before for v in value), \
                f"{task}: {text}: a list may only be shortened to some of the paper's {before}"
        else:
            assert _is_number(before) and _is_number(value), \
                f"{task}: {text}: only numbers (sizes, steps, counts) are shrunk; the paper has {before!r}"
            assert value <= before, f"{task}: {text}: larger than the paper's {before}"

    shrunk = load_task(_task_path(task), "paper", SHRINK.get(task, []))
    for field in ("workload", "objectives", "search", "scaling", "failure"):
        assert getattr(shrunk.task, field) == getattr(paper.task, field), f"{task}: {field} changed"
    assert shrunk.space == paper.space
    overridden = {text.split("=", 1)[0].split(".")[1] for text in SHRINK.get(task, []) if text.startswith("params.")}
    before, after = paper.params.model_dump(), shrunk.params.model_dump()
    changed = {key for key in before if before[key] != after[key]}
    assert changed <= overridden, f"{task}: params changed that no override names: {changed - overridden}"


@pytest.mark.parametrize("override", ["params.stepz=3", "search.num_sample=3", "params.stream.lenght=10",
                                      "scaling.num_worker=2"])
def test_a_misspelt_override_is_an_error(override):
    """The schema forbids unknown keys at every level the shrinks use (cms has the nested
    `stream` block): a misspelt key fails loading, it is not silently ignored."""
    with pytest.raises(TaskError, match="unknown key"):
        load_task(_task_path("cms"), "paper", [override])


@pytest.fixture
def one_torch_thread():
    """The paper profiles leave torch's thread count to the process (`threads: 0`); at
    these tiny batches a second thread only waits, and on 2 cores shared with other jobs
    it made a 1-2 s run take 10-20 s. The test process picks one thread, and puts the
    count back after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("task", PAPER_TASKS)
def test_shrunk_paper_profile_runs(task, tmp_path, one_torch_thread):
    paper = load_task(_task_path(task), "paper", [])
    resolved = load_task(_task_path(task), "paper", SHRINK[task])
    # the paper's Train workers are kept; the local runner runs the workload in this
    # process whatever their number (no paper profile asks for >= 2 today)
    assert resolved.task.scaling.num_workers == paper.task.scaling.num_workers

    summary = run_local(resolved, tmp_path)

    metrics = finite_metrics(summary["metrics"])  # raises on NaN/inf, as the pipeline does
    objectives = [objective.metric for objective in resolved.task.objectives]
    assert set(objectives) <= set(metrics), f"{task}: objectives {objectives}, returned {sorted(metrics)}"
    assert summary["reports"], f"{task}: the workload never called report"
    for row in summary["reports"]:
        finite_metrics(row)

    workload = get_workload(resolved.task.workload)
    expected = {"summary.json"} | ARTIFACTS[workload.name] | EXTRA_ARTIFACTS.get(task, set())
    present = {path.name for path in tmp_path.iterdir() if path.stat().st_size > 0}
    assert expected <= present, f"{task}: missing artifacts {sorted(expected - present)}"
