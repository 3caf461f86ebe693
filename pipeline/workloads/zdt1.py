"""A trivial analytic two-objective workload: ZDT1 over two decision variables.

It costs microseconds, so a run of it measures the pipeline itself (Tune, Optuna,
MLflow, the front) and not any science: `python -m pipeline.bench pipeline_scaling`
drives thousands of its trials. Its true front is known (f2 = 1 - sqrt(f1) at x2 = 0),
so a run's front can be checked by eye.

ZDT1 is from Zitzler, Deb and Thiele, "Comparison of Multiobjective Evolutionary
Algorithms: Empirical Results" (Evolutionary Computation 8(2), 2000), with n = 2.

Run: `python -m pipeline.run tasks/zdt1.yaml`.
"""

from __future__ import annotations

import math

from pydantic import Field

from pipeline.workloads.base import LocalReporter, Params, Reporter, Workload


class ZDT1Params(Params):
    x1: float = Field(0.5, ge=0.0, le=1.0, description="first decision variable (f1 = x1)")
    x2: float = Field(0.5, ge=0.0, le=1.0, description="second decision variable (g = 1 + 9 x2)")


def run(params: ZDT1Params, report: Reporter) -> dict[str, float]:
    f1 = params.x1
    g = 1.0 + 9.0 * params.x2
    f2 = g * (1.0 - math.sqrt(f1 / g))
    out = {"f1": f1, "f2": f2}
    report(out, step=0)
    return out


WORKLOAD = Workload(
    name="zdt1",
    params=ZDT1Params,
    run=run,
    metrics=("f1", "f2"),
    description="ZDT1 with two variables: an analytic front, microseconds a trial (pipeline scaling bench)",
    smoke_params={},
)

if __name__ == "__main__":
    print(run(ZDT1Params(), LocalReporter()))
