"""The workload registry: one short stable name per workload (STYLE.md, rule 3).

The name in `tasks/*.yaml`, on the command line (`--list-workloads`) and in MLflow is
the key here. Entries are "module:attribute" strings, imported on first use, so that
listing or validating does not import torch.
"""

from __future__ import annotations

import importlib

from pipeline.workloads.base import Workload

_REGISTRY: dict[str, str] = {
    # classic sketches (baselines for seed 000 §3 and seed 003) and the Train smoke test
    "cms": "pipeline.workloads.sketches:WORKLOAD",
    "smoke": "pipeline.workloads.smoke:WORKLOAD",
    # learned sorted-table search (seed 001)
    "learned_index": "pipeline.workloads.learned_index.workload:WORKLOAD",
    # the Lego sketch (seed 003)
    "lego": "pipeline.workloads.lego.workload:WORKLOAD",
    "lego_eval": "pipeline.workloads.lego.workload:EVAL_WORKLOAD",
    # end-to-end nearest-neighbour discovery (seed 000 §2)
    "e2e_nn": "pipeline.workloads.e2e.nn_workload:WORKLOAD",
    # end-to-end frequency estimation (seed 000 §3)
    "e2e_freq": "pipeline.workloads.e2e.freq_workload:WORKLOAD",
    # learned index over an unsorted array via a wavelet-tree mapping (seed 002)
    "wavelet_mapping": "pipeline.workloads.wavelet.workload:WORKLOAD",
    # an analytic two-objective function: trials cost microseconds, so runs measure the pipeline
    "zdt1": "pipeline.workloads.zdt1:WORKLOAD",
}


def names(available_only: bool = True) -> list[str]:
    """Registered names; with `available_only`, only those whose module imports."""
    if not available_only:
        return sorted(_REGISTRY)
    out = []
    for name in sorted(_REGISTRY):
        try:
            get(name)
        except ModuleNotFoundError:
            continue
        out.append(name)
    return out


def get(name: str) -> Workload:
    """The workload registered under `name`; KeyError lists the valid names."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown workload {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    module_name, attr = _REGISTRY[name].split(":")
    workload = getattr(importlib.import_module(module_name), attr)
    if not isinstance(workload, Workload):
        raise TypeError(f"{_REGISTRY[name]} is not a Workload")
    return workload
