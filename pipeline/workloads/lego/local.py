"""The ARE table of one Lego trial run in this process: ARE per (skew or stream, bricks)
and method, with the ratio Lego / CountMin, read from the trial's `lego_eval.csv`.

    python -m pipeline.run tasks/lego.yaml --local --out /tmp/lego_full
    python -m pipeline.workloads.lego.local /tmp/lego_full

It is how the accuracy, ablation and baseline tables in docs/benchmarks.md were made
(one trial of a grid point instead of the whole grid: on a 2-core box the ablations run
one at a time). Running the trial is the pipeline's job (`pipeline.local`); this module
only reads what it left, so the workload imports nothing of the pipeline above it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def are_table(csv: Path) -> str:
    """ARE per (skew or stream, bricks) and method, with Lego / CountMin."""
    import pandas as pd

    frame = pd.read_csv(csv)
    table = frame.pivot_table(index=["stream", "bricks"], columns="method", values="are", sort=False)
    if "lego" in table and "countmin" in table:
        table["lego/countmin"] = table["lego"] / table["countmin"]
    return table.round(3).to_string()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m pipeline.workloads.lego.local", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the --out folder of `python -m pipeline.run tasks/lego*.yaml --local`")
    args = parser.parse_args(argv)
    csv = args.out / "lego_eval.csv"
    if not csv.is_file():
        print(f"error: {csv}: not found (run `python -m pipeline.run tasks/lego.yaml --local --out {args.out}` first)",
              file=sys.stderr)
        raise SystemExit(2)
    table = are_table(csv)
    print(table)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
