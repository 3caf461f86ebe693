"""The `learned_index` workload: one model class + parameters + search routine, built and
timed SOSD-style on one or more sorted tables (seed 001 §3-§6).

A trial builds the model on every table it names (each `level` x each `dist`, or the
user's `keys_file`), times all queries through model + last-mile search in one compiled
loop (checked against numpy), and reports per table (step = table) and in aggregate:
`ns_per_lookup` (geometric mean over tables), `space_fraction` and `bytes` (means),
`reduction_factor`, `build_ns_per_key`, and `speedup_vs_bbs` (against branchy binary search
on the same table and queries, timed in the same trial, which cancels much of a shared
machine's noise). Per-table values are also metrics named `<metric>/<level>/<dist>`, so
`trials.csv` of a pipeline run holds the front of every table (see `report.py`).

    python -m pipeline.run tasks/learned_index.yaml
    python -c "from pipeline.workloads.learned_index.workload import demo; demo()"
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.workloads.base import LocalReporter, Params, Reporter, Workload, write_rows
from pipeline.workloads.learned_index import data
from pipeline.workloads.learned_index.measure import evaluate, expected_checksum, time_lookups, time_searchsorted
from pipeline.workloads.learned_index.models import KINDS, Model, fit_model
from pipeline.workloads.learned_index.rmi import LEAF_TYPES, TOP_TYPES
from pipeline.workloads.learned_index.search import ROUTINES, search_bytes

Level = Literal["L1", "L2", "L3", "L4"]
Dist = Literal["uniform_dense", "uniform_sparse", "normal", "lognormal"]


class SynopsisSpec(BaseModel):
    """SY-RMI's synopsis of one memory level (seed 001 §3.2), as `report --mine` prints it."""

    model_config = ConfigDict(extra="forbid")
    units_per_byte: float = Field(gt=0, description="UB: median branching factor / model bytes over the fronts")
    top: Literal[TOP_TYPES] = Field(description="top model of the relative-majority fastest RMI")
    leaf: Literal[LEAF_TYPES] = Field(description="its leaf model")


class LearnedIndexParams(Params):
    # what to build and how to search
    model: Literal[KINDS] = Field("rmi", description="model class (seed 001 §3.2); 'none' = plain search")
    search: Literal[ROUTINES] = Field("bbs", description="last-mile search routine (§3.1); 'bfe' only with model 'none'")
    batch: int = Field(0, ge=0, description="0: plain loop, one query after the other; G > 0: G queries interleaved "
                                            "(staged lookup, measure.py), last mile BFS: search must be 'bfs'")
    ahead: int = Field(0, ge=0, le=64, description="0: as batch says; A > 0 (with batch = B > 0): the software-pipelined "
                                                   "lookup, windows computed B queries at a time and searched A blocks "
                                                   "later (measure.py)")
    k: int = Field(3, ge=2, le=20, description="arity of kbbs/kbfs (seed: k in [3, 20]); guard size of tip")
    ko_segments: int = Field(15, ge=1, le=20, description="KO-BFS/KO-BBS segments (seed's best: 15)")
    rmi_top: Literal[TOP_TYPES] = Field("linear_spline", description="RMI top model type (CDFShop's)")
    rmi_leaf: Literal[LEAF_TYPES] = Field("linear", description="RMI leaf model type")
    rmi_bits: int = Field(14, ge=1, le=24, description="RMI branching factor 2^bits (CDFShop: 6..24)")
    pgm_epsilon: int = Field(64, ge=1, description="PGM last-level error")
    pgm_epsilon_recursive: int = Field(4, ge=1, description="PGM error of the recursive levels")
    pgm_a: float = Field(2.0, gt=0, description="bi-criteria PGM: eps_min = a * 64 / 8 (seed: a in 0.5..2)")
    space_bound: float = Field(0.02, gt=0, le=1, description="sy_rmi / pgm_bicriteria: model bytes <= this x table bytes")
    sy_synopses: dict[Level, SynopsisSpec] = Field(
        default_factory=dict, description="SY-RMI synopsis per memory level (report --mine); a level "
                                          "without one mines it from the table")
    rs_epsilon: int = Field(32, ge=1, description="RadixSpline spline error")
    rs_radix_bits: int = Field(18, ge=1, le=30, description="RadixSpline radix table bits")
    btree_fanout: int = Field(16, ge=2, description="static B+-tree keys per node")
    # which tables
    dist: Dist | list[Dist] = Field("lognormal", description="synthetic table(s), SOSD style")
    level: Level | list[Level] = Field("L2", description="memory level(s): table sizes of seed 001 §3.4")
    n: int | None = Field(None, ge=2, description="table size; overrides the level's")
    l4_size: int = Field(10_000_000, ge=2, description="keys of an L4 table (the seed's 200M in the paper profile)")
    keys_file: str | None = Field(None, description="a user's sorted keys (SOSD binary or .npy); replaces dist")
    queries: int = Field(1_000_000, ge=1, description="lookups per table, uniform with replacement (seed: 1M)")
    repeats: int = Field(3, ge=1, description="timed passes over the queries; the median is reported")
    seed: int = Field(0, description="table, query and sampling seed")

    @field_validator("dist", "level")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("give at least one")
        return value


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


@functools.lru_cache(maxsize=16)
def _table(dist: str, level: str | None, n: int | None, l4_size: int, keys_file: str | None, seed: int) -> data.Table:
    return data.make_table(dist, n, level, seed, keys_file, l4_size)


@functools.lru_cache(maxsize=16)
def _queries(dist: str, level: str | None, n: int | None, l4_size: int, keys_file: str | None, seed: int,
             count: int) -> np.ndarray:
    table = _table(dist, level, n, l4_size, keys_file, seed)
    return data.make_queries(table.keys, count, seed + 1)


def tables_for(params: LearnedIndexParams) -> list[tuple[str, str, data.Table, np.ndarray]]:
    """(level, dist, table, queries) for every table the params name; cached per process,
    so the trials a worker runs share their tables."""
    if params.keys_file:
        # the user's file whole, unless a size or a level was asked for: then down-sampled (§3.4)
        level = params.level if isinstance(params.level, str) and "level" in params.model_fields_set else None
        specs = [(level or "custom", "user", ("user", level))]
    else:
        specs = [(level, dist, (dist, level)) for level in _as_list(params.level) for dist in _as_list(params.dist)]
    out = []
    for level, dist, (table_dist, table_level) in specs:
        args = (table_dist, table_level, params.n, params.l4_size, params.keys_file, params.seed)
        out.append((level, dist, _table(*args), _queries(*args, params.queries)))
    return out


def _sy_kwargs(params: LearnedIndexParams, level: str | None) -> dict:
    """SY-RMI's synopsis: the level's from `sy_synopses`, else None (then fit_sy_rmi mines
    it from the one table, see rmi_search.py)."""
    if level in params.sy_synopses:
        spec = params.sy_synopses[level]
        return {"units_per_byte": spec.units_per_byte, "top": spec.top, "leaf": spec.leaf}
    return {"units_per_byte": None, "top": None, "leaf": None}


def model_kwargs(params: LearnedIndexParams, key_bytes: int, level: str | None = None) -> dict:
    """The model's own parameters, from the flat params (`level`: the table's memory
    level, which picks SY-RMI's synopsis)."""
    p = params
    return {
        "none": {}, "linear": {}, "quadratic": {}, "cubic": {},
        "ko": {"segments": p.ko_segments},
        "rmi": {"top": p.rmi_top, "leaf": p.rmi_leaf, "bits": p.rmi_bits},
        "sy_rmi": {"space_bound": p.space_bound, **_sy_kwargs(p, level), "key_bytes": key_bytes},
        "pgm": {"epsilon": p.pgm_epsilon, "epsilon_recursive": p.pgm_epsilon_recursive},
        "pgm_bicriteria": {"space_bound": p.space_bound, "a": p.pgm_a, "epsilon_recursive": p.pgm_epsilon_recursive,
                           "key_bytes": key_bytes},
        "radix_spline": {"epsilon": p.rs_epsilon, "radix_bits": p.rs_radix_bits},
        "btree": {"fanout": p.btree_fanout},
    }[p.model]


def build(params: LearnedIndexParams, table: data.Table, level: str | None = None) -> Model:
    return fit_model(params.model, table.keys, **model_kwargs(params, table.key_bytes, level))


#: metrics reported per table and in aggregate
PER_TABLE = ("ns_per_lookup", "space_fraction", "reduction_factor", "speedup_vs_bbs")
AGGREGATE = ("ns_per_lookup", "wall_ns_per_lookup", "bytes", "space_fraction", "reduction_factor", "reduction_factor_train",
             "build_ns_per_key", "avg_log2_error", "mean_window", "fallbacks", "bbs_ns_per_lookup",
             "speedup_vs_bbs", "tables")


def _geomean(values: list[float]) -> float:
    return float(math.exp(np.mean(np.log(np.maximum(values, 1e-12)))))


def run(params: LearnedIndexParams, report: Reporter) -> dict[str, float]:
    rows = []
    for step, (level, dist, table, queries) in enumerate(tables_for(params)):
        keys = table.keys
        expected = expected_checksum(keys, queries)
        model = build(params, table, level)
        metrics = evaluate(keys, queries, model, params.search, params.k, params.repeats, table.key_bytes, expected,
                           params.batch, params.ahead)
        plain = fit_model("none", keys)
        metrics["bbs_ns_per_lookup"] = time_lookups(keys, queries, plain, "bbs", 3, params.repeats, expected).ns_per_lookup
        metrics["speedup_vs_bbs"] = metrics["bbs_ns_per_lookup"] / metrics["ns_per_lookup"]
        rows.append({"level": level, "dist": dist, "table": table.name, "model": model.label, "search": params.search,
                     "batch": params.batch, "ahead": params.ahead, **metrics})
        report({f"{name}/{level}/{dist}": metrics[name] for name in PER_TABLE if name in metrics}
               | {"ns_per_lookup": metrics["ns_per_lookup"]}, step=step)
    write_rows(report.artifact_dir / "tables.csv", rows)
    final = {
        "ns_per_lookup": _geomean([r["ns_per_lookup"] for r in rows]),
        "tables": float(len(rows)),
    }
    final["wall_ns_per_lookup"] = _geomean([r["wall_ns_per_lookup"] for r in rows])
    for name in ("bytes", "space_fraction", "reduction_factor", "reduction_factor_train", "build_ns_per_key",
                 "avg_log2_error", "mean_window", "fallbacks"):
        final[name] = float(np.mean([r[name] for r in rows]))
    final["bbs_ns_per_lookup"] = _geomean([r["bbs_ns_per_lookup"] for r in rows])
    final["speedup_vs_bbs"] = _geomean([r["speedup_vs_bbs"] for r in rows])
    for r in rows:
        final.update({f"{name}/{r['level']}/{r['dist']}": float(r[name]) for name in PER_TABLE if name in r})
    report(final)
    return final


def validate(params: LearnedIndexParams) -> None:
    if params.search == "bfe" and params.model != "none":
        raise ValueError(f"search 'bfe' runs over its own Eytzinger layout and takes no model; got model {params.model!r}")
    if params.keys_file:
        data.load_keys(params.keys_file)  # ValueError naming the file
    if params.batch and params.search != "bfs":
        raise ValueError(f"batch = {params.batch}: the interleaved lookup's last mile is branch-free binary search; "
                         f"search must be 'bfs', got {params.search!r}")
    if params.ahead and not params.batch:
        raise ValueError(f"ahead = {params.ahead}: the pipelined lookup needs a block size, batch > 0; got batch = 0")
    if params.search in ("kbbs", "kbfs") and params.k < 3:
        raise ValueError(f"k-ary search needs k >= 3 (seed: k in [3, 20]), got {params.k}")


def baselines(params: LearnedIndexParams) -> list[dict]:
    """Plain search routines and numpy.searchsorted on the task's tables and queries:
    the reference points beside the front (no model, no extra space)."""
    rows = []
    routines = [("bbs", 3, 0), ("bfs", 3, 0), ("kbfs", 6, 0), ("bfe", 3, 0), ("bfs", 3, 64)]
    per_method: dict[str, list[tuple[float, float, float]]] = {}  # (ns, bytes, space fraction) per table
    for _, _, table, queries in tables_for(params):
        expected = expected_checksum(table.keys, queries)
        plain = fit_model("none", table.keys)
        extra = {routine: search_bytes(routine, table.keys.size, table.key_bytes) for routine, _, _ in routines}
        for routine, k, batch in routines:
            timing = time_lookups(table.keys, queries, plain, routine, k, params.repeats, expected, batch)
            name = (routine if routine != "kbfs" else f"kbfs_k{k}") + (f" batched G={batch}" if batch else "")
            per_method.setdefault(name, []).append(
                (timing.ns_per_lookup, extra[routine], extra[routine] / table.table_bytes))
        per_method.setdefault("numpy.searchsorted", []).append(
            (time_searchsorted(table.keys, queries, params.repeats), 0.0, 0.0))
    for method, values in per_method.items():
        ns, size, fraction = zip(*values)
        rows.append({"method": method, "ns_per_lookup": _geomean(list(ns)), "space_fraction": float(np.mean(fraction)),
                     "bytes": float(np.mean(size))})
    return rows


def _report(trials, out) -> None:
    # seed 001 Table 2 and the per-table fronts, logged with the run's front
    from pipeline.workloads.learned_index import report

    report.write(trials, out)


def _metric_names() -> tuple[str, ...]:
    levels = ("L1", "L2", "L3", "L4", "custom")
    dists = ("uniform_dense", "uniform_sparse", "normal", "lognormal", "user")
    return AGGREGATE + tuple(f"{m}/{lv}/{d}" for m in PER_TABLE for lv in levels for d in dists)


WORKLOAD = Workload(
    name="learned_index",
    params=LearnedIndexParams,
    run=run,
    metrics=_metric_names(),
    description="learned sorted-table search (seed 001): model class x parameters x search routine, SOSD-style timing",
    smoke_params={"model": "rmi", "rmi_bits": 8, "level": "L1", "queries": 20_000, "repeats": 1},
    baselines=baselines,
    validate=validate,
    report=_report,
)


def demo() -> None:
    for model in ("none", "linear", "ko", "rmi", "pgm", "radix_spline", "btree", "pgm_bicriteria"):
        params = LearnedIndexParams(model=model, level="L3", queries=200_000)
        print(model, {k: round(v, 3) for k, v in run(params, LocalReporter()).items() if "/" not in k})
