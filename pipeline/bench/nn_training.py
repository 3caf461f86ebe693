"""Benchmark `nn_training`: CPU training speed of the quick 1D end-to-end NN model
(seed 000 §2.2) and the time it takes to pass binary search.

    python -m pipeline.bench nn_training --json out.json

Trains the quick profile of `tasks/nn_uniform_1d.yaml` (N=16, M=4 unless overridden)
with progress evaluations every `--eval-every` steps on fixed instances. Figures:

- `steps_per_second`: median over evaluation windows of steps / seconds spent in
  training steps (evaluation excluded),
- `seconds_to_pass_binary` / `steps_to_pass_binary`: training time (evaluation
  excluded) until the model's best-so-far accuracy beats binary search's on the same
  instances at every lookup 2 .. log2(N)-1 (the issue's 1D criterion); -1 if never,
- the final accuracy per lookup of both and the fraction of points in sorted position.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench nn_training", description=__doc__.split("\n")[0])
    parser.add_argument("--task", default=str(Path(__file__).resolve().parents[2] / "tasks" / "nn_uniform_1d.yaml"))
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between checks against binary search")
    parser.add_argument("--lookups", type=int, default=4, help="lookup budget M")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from pipeline.config import load_task
    from pipeline.workloads.e2e import nn_baselines, nn_train
    from pipeline.workloads.e2e.nn_workload import _Resolved, validate

    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_task(args.task, "quick")
    params = task.params.model_copy(update={"steps": args.steps, "eval_every": args.eval_every,
                                            "lookups": args.lookups, "seed": args.seed})
    validate(params)
    resolved = _Resolved(params)
    monitor = nn_train.monitor_instances(resolved)
    binary = nn_baselines.accuracy_curve(monitor, nn_baselines.binary_search(monitor, params.lookups))
    last_checked = max(2, int(math.log2(params.n)) - 1)  # lookups 2 .. log2(N)-1, 1-based
    window = slice(1, min(last_checked, params.lookups))

    rates: list[float] = []
    state = {"prev_step": 0, "prev_seconds": 0.0, "passed_step": -1, "passed_seconds": -1.0}

    def on_eval(step: int, metrics: dict, _checkpoint: dict) -> bool:
        spent = metrics["train_seconds"] - state["prev_seconds"]
        if spent > 0:
            rates.append((step - state["prev_step"]) / spent)
        state["prev_step"], state["prev_seconds"] = step, metrics["train_seconds"]
        if state["passed_step"] < 0 and np.all(metrics["curve"][window] > binary[window]):
            state["passed_step"], state["passed_seconds"] = step, metrics["train_seconds"]
        return False

    _, last = nn_train.train(resolved, "cpu", on_eval)
    row = {
        "method": f"e2e_nn quick 1D (N={params.n}, M={params.lookups}, width {params.width}, "
                  f"{params.layers} layers, batch {params.batch_size})",
        "threads": torch.get_num_threads(),
        "steps": params.steps,
        "steps_per_second": float(np.median(rates)) if rates else float("nan"),
        "seconds_to_pass_binary": state["passed_seconds"],
        "steps_to_pass_binary": state["passed_step"],
        "sorted_fraction": last.get("sorted_fraction", float("nan")),
        "model_accuracy_per_lookup": " ".join(f"{a:.3f}" for a in last["curve"]),
        "binary_accuracy_per_lookup": " ".join(f"{a:.3f}" for a in binary),
    }
    return [row]


if __name__ == "__main__":
    for result in main(__import__("sys").argv[1:]):
        print(result)
