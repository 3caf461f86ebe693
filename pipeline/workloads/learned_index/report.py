"""Fronts per table and the synoptic table of seed 001 Table 2, from per-table results.

Input is a "long" table, one row per (configuration, table): columns `model` (class),
`search`, `level`, `dist`, `ns_per_lookup`, `space_fraction`, `reduction_factor`, and for
the space-bounded classes `space_bound`. `from_trials` makes it from a pipeline run's
`trials.csv` (the workload reports every table's metrics as `<metric>/<level>/<dist>`).

- `fronts`: the Pareto front of (ns_per_lookup, space_fraction) for each table.
- `synoptic_table`: Table 2's shape. For each memory level and each row kind (the best
  query time of a class; the best within 10% space; SY-RMI and PGM_M at each space bound),
  the configuration picked on each table, then averaged over the level's tables; the first
  row is the fastest and carries absolute values (time in seconds, space as a fraction of
  the table, reduction factor in %), every other row is the ratio row / first row, as in
  the seed.

    python -m pipeline.workloads.learned_index.report TRIALS.csv --out DIR
    python -m pipeline.workloads.learned_index.report --mine L1 L2 L3   # SY-RMI synopses, as task YAML
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.pareto import non_dominated

#: the seed's names for the classes (Table 2 and §5)
CLASS_NAMES = {"rmi": "RMI", "sy_rmi": "SY-RMI", "pgm": "PGM", "pgm_bicriteria": "PGM_M", "radix_spline": "RS",
               "btree": "BTree", "linear": "L", "quadratic": "Q", "cubic": "C", "ko": "KO", "none": "no model"}
METRICS = ("ns_per_lookup", "space_fraction", "reduction_factor")


def from_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The long table from a pipeline `trials.csv` (finished trials only)."""
    if "final" in trials:
        trials = trials[trials["final"] == 1]
    if "status" in trials:
        trials = trials[trials["status"] == "DONE"]
    rows = []
    tables = sorted({tuple(c.split("/")[1:]) for c in trials.columns if c.startswith("ns_per_lookup/")})
    for _, trial in trials.iterrows():
        for level, dist in tables:
            values = {m: trial.get(f"{m}/{level}/{dist}") for m in METRICS}
            if values["ns_per_lookup"] is None or not np.isfinite(values["ns_per_lookup"]):
                continue
            batch = trial.get("config/batch", 0)
            batch = int(batch) if batch is not None and np.isfinite(batch) else 0
            rows.append({"trial_id": trial.get("trial_id"), "model": trial.get("config/model"),
                         "search": trial.get("config/search"), "batch": batch,
                         "space_bound": trial.get("config/space_bound"),
                         "level": level, "dist": dist, **values})
    return pd.DataFrame(rows)


def fronts(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with a boolean `pareto` column: on the (time, space) front of its table."""
    out = []
    for _, group in rows.groupby(["level", "dist"], sort=True):
        group = group.copy()
        group["pareto"] = non_dominated(group[["ns_per_lookup", "space_fraction"]].to_numpy(float), ["min", "min"])
        out.append(group)
    return pd.concat(out, ignore_index=True) if out else rows.assign(pareto=[])


def _pick(group: pd.DataFrame, kind: str, model: str, bound: float | None) -> pd.Series | None:
    rows = group[group["model"] == model]
    if kind == "bound":
        rows = rows[np.isclose(rows["space_bound"].astype(float), bound)]
    elif kind == "within10":
        rows = rows[rows["space_fraction"] <= 0.10]
    if rows.empty:
        return None
    return rows.loc[rows["ns_per_lookup"].idxmin()]


#: the classes "coming out of SOSD" in seed 001 §6: Table 2 is normalised to the fastest of them
SOSD_CLASSES = ("rmi", "pgm", "radix_spline", "btree")


def synoptic_table(rows: pd.DataFrame, bounds: tuple[float, ...] = (0.0005, 0.007, 0.02)) -> pd.DataFrame:
    """Seed 001 Table 2 from the long table. Per memory level, one row per kind: "Best X"
    (the fastest X on each table) and "X <= 10" (the fastest within 10% space) for the
    SOSD classes, "SY-RMI b" and "PGM_M b" (bi-criteria PGM, the seed's "PGM b") at each
    space bound b in percent, then our constant-space rows (KO, L, C, no model), which the
    seed's Table 2 does not have. Each row averages its pick over the level's tables.

    The reference row, first and in absolute units (time in seconds, space as a fraction
    of the table, reduction factor in %), is the fastest of the SOSD classes' "Best" rows,
    as the seed normalises "with respect to the best query time model coming out of SOSD";
    every other row is the ratio row / reference (below 1 where a row beats it). A kind
    with no pick on the level is a row of NaN (the seed's "-")."""
    kinds = []
    for model in SOSD_CLASSES:
        kinds += [(f"Best {CLASS_NAMES[model]}", "best", model, None),
                  (f"{CLASS_NAMES[model]} <= 10", "within10", model, None)]
    for model in ("sy_rmi", "pgm_bicriteria"):
        kinds += [(f"{CLASS_NAMES[model]} {100 * b:g}", "bound", model, b) for b in bounds]
    for model in ("ko", "linear", "cubic", "none"):
        kinds.append((f"Best {CLASS_NAMES[model]}", "best", model, None))
    reference_names = {f"Best {CLASS_NAMES[m]}" for m in SOSD_CLASSES}
    out = []
    for level, by_level in rows.groupby("level", sort=True):
        averaged = []
        for name, kind, model, bound in kinds:
            picks = [_pick(g, kind, model, bound) for _, g in by_level.groupby("dist")]
            picks = [p for p in picks if p is not None]
            averaged.append({"level": level, "model": name, "tables": len(picks),
                             "time_s": float(np.mean([p["ns_per_lookup"] for p in picks])) * 1e-9 if picks else np.nan,
                             "space": float(np.mean([p["space_fraction"] for p in picks])) if picks else np.nan,
                             "rf": float(np.mean([p["reduction_factor"] for p in picks])) if picks else np.nan})
        table = pd.DataFrame(averaged)
        candidates = table[table["model"].isin(reference_names) & table["time_s"].notna()]
        if candidates.empty:
            candidates = table[table["time_s"].notna()]
        if candidates.empty:
            continue
        reference = table.loc[candidates["time_s"].idxmin()].copy()
        rest = table.drop(index=reference.name)
        for column in ("time_s", "space", "rf"):
            rest[column] = rest[column] / reference[column] if reference[column] else np.nan
        rest = rest.sort_values("time_s", kind="stable", na_position="last")
        table = pd.concat([reference.to_frame().T, rest], ignore_index=True)
        table["reference"] = [True] + [False] * (len(table) - 1)
        out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


QUICK_DISTS = ("uniform_sparse", "normal", "lognormal")  # the tables of tasks/learned_index.yaml's quick profile


def mine(level: str, dists: tuple[str, ...] = QUICK_DISTS, seed: int = 0, l4_size: int = 10_000_000,
         ub: str = "all", tie_break: str = "time"):
    """SY-RMI synopsis of a memory level (seed §3.2, §4): CDFShop's full two-phase fronts
    of the level's synthetic tables (one table per dist, at the level's size), UB and the
    relative-majority pair (timed on 1% of 1M queries per table)."""
    from pipeline.workloads.learned_index import data, rmi_search

    tables = [data.synthetic_keys(d, data.level_size(level, l4_size), seed) for d in dists]
    return rmi_search.mine_synopsis(tables, seed=seed, ub=ub, tie_break=tie_break)


def synopses_yaml(synopses: dict) -> str:
    """`sy_synopses:` of a task file, one level a line."""
    lines = ["sy_synopses:"]
    for level, s in synopses.items():
        votes = ", ".join(f"{pair} {count}" for pair, count in s.votes.items())
        lines.append(f"  {level}: {{units_per_byte: {s.units_per_byte:.5f}, top: {s.top}, leaf: {s.leaf}}}"
                     f"   # votes: {votes}")
    return "\n".join(lines)


def write(trials: pd.DataFrame, out: Path) -> None:
    """The per-table fronts and the synoptic table of a run's trials, as CSV files in `out`
    (the workload's `report` hook: the pipeline logs them with the run's front)."""
    rows = from_trials(trials)
    if rows.empty:
        return
    per_table = fronts(rows)
    per_table.to_csv(out / "fronts.csv", index=False)
    synoptic_table(rows).to_csv(out / "synoptic.csv", index=False)
    plot_fronts(per_table, out / "fronts.png")


def plot_fronts(per_table: pd.DataFrame, path: Path) -> Path:
    """fronts.png: one panel per table, every configuration in its class's colour, the
    table's front of query time against space as a staircase."""
    from pipeline.plots import figures

    frame = per_table.assign(table=per_table["level"].astype(str) + " " + per_table["dist"].astype(str))
    fig = figures.panel_fronts(frame, "space_fraction", "ns_per_lookup", method="model", panel="table",
                               title="query time against space, per table")
    return figures.save(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", nargs="?", help="a pipeline run's trials.csv")
    parser.add_argument("--out", default="learned_index_report", help="folder for fronts.csv and synoptic.csv")
    parser.add_argument("--mine", metavar="LEVEL", nargs="+", help="mine the SY-RMI synopsis of memory levels; "
                                                                      "prints the task file's sy_synopses")
    parser.add_argument("--dists", default=",".join(QUICK_DISTS), help="tables to mine from, comma-separated")
    parser.add_argument("--ub", default="all", choices=("all", "pair"), help="UB over all front RMIs (the seed) "
                                                                             "or the winning pair's (rmi_search.py)")
    parser.add_argument("--tie-break", default="time", choices=("time", "first"),
                        help="a tie of votes: the pair fastest across the tables (ours), or the first table's")
    args = parser.parse_args(argv)
    if args.mine:
        dists = tuple(args.dists.split(","))
        print(synopses_yaml({level: mine(level, dists, ub=args.ub, tie_break=args.tie_break) for level in args.mine}))
        return
    if not args.trials:
        parser.error("give a trials.csv or --mine LEVEL")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(pd.read_csv(args.trials), out)
    if not (out / "synoptic.csv").exists():
        raise SystemExit(f"error: {args.trials}: no finished trial with per-table metrics")
    table = pd.read_csv(out / "synoptic.csv")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3g}"))


if __name__ == "__main__":
    main()
