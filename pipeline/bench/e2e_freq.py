"""Learned frequency sketch vs CountMin: MAE on the same held-out streams (seed 000 §3.1).

For each M (and seed) it trains the workload `e2e_freq` with the quick profile's
settings of tasks/freq_zipf.yaml (or the heavy-hitter images with `--setting images`)
and returns one row per method: the learned model, CountMin (M rows of k/M), the
single-hash CountMin, Count-Sketch, CountMin with the learned delta, CountMin with
the learned read-out curve and CountMin with its own MAE-optimal delta (a sweep on the
same streams), plus the read-out itself (`learned_delta`: the answer's slope per
arrival; `delta_written`: the value the writer stores per arrival).

Run: `python -m pipeline.bench e2e_freq --json freq.json` (minutes on 2 cores), or
`python -m pipeline.bench e2e_freq --M 1 --steps 100` for a short look; `--set key=value`
overrides any other workload parameter (e.g. `--set predictor_bias=true`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pipeline.workloads.base import LocalReporter
from pipeline.workloads.e2e.freq_workload import FreqParams, run

ROOT = Path(__file__).resolve().parents[2]
METHODS = {
    "learned": "mae",
    "countmin": "countmin_mae",
    "countmin_1hash": "countmin_1hash_mae",
    "countsketch": "countsketch_mae",
    "countmin_learned_delta": "countmin_learned_delta_mae",
    "countmin_learned_readout": "countmin_learned_readout_mae",
    "countmin_best_delta": "countmin_best_delta_mae",
}


def quick_params(setting: str) -> dict:
    """The task file's params merged with its quick profile."""
    name = "freq_zipf.yaml" if setting == "zipf" else "freq_heavy_hitters.yaml"
    task = yaml.safe_load((ROOT / "tasks" / name).read_text())
    return {**task["params"], **task["profiles"]["quick"]["params"]}


def main(argv: list[str]) -> list[dict]:
    parser = argparse.ArgumentParser(prog="e2e_freq", description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["zipf", "images"], default="zipf")
    parser.add_argument("--M", type=int, nargs="+", default=[1], help="lookup budgets to train")
    parser.add_argument("--k", type=int, default=32, help="counters")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override the quick profile's steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a workload parameter (YAML value), repeatable")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    rows = []
    for M in args.M:
        for seed in args.seeds:
            values = {**quick_params(args.setting), **overrides, "M": M, "k": args.k, "seed": seed}
            if args.steps is not None:
                values["steps"] = args.steps
                values["eval_every"] = min(values.get("eval_every", args.steps), args.steps)
            metrics = run(FreqParams(**values), LocalReporter())
            for method, key in METHODS.items():
                rows.append({"method": method, "setting": args.setting, "k": args.k, "M": M,
                             "seed": seed, "mae": metrics[key],
                             "ratio_vs_countmin": metrics[key] / metrics["countmin_mae"],
                             "learned_delta": metrics["learned_delta"],
                             "delta_intercept": metrics["delta_intercept"],
                             "delta_written": metrics["delta_written"],
                             "countmin_best_delta": metrics["countmin_best_delta"],
                             "train_seconds": metrics["train_seconds"]})
    return rows
