"""Workload `wavelet_mapping`: a learned index over an unsorted table through an m-ary
wavelet-tree mapping (seed 002), timed against a static B+-tree secondary index.

One trial = one (arity, rank layout, depth, model, lookup mode) point: build the mapping from
sorted rank to original position, fit the model on the sorted keys, time `access` and
whole lookups (model window + last-mile search reading `data[access(mid)]`), and the
B+-tree on the same queries in the same mode. The mode: per query (`group` 1, binary
search or a k-ary search reading `candidates` keys per round) or batched (`group` > 1
lookups in lockstep with prefetches; the B+-tree is batched the same way), so every
time and ratio of a trial compares like with like. Objectives of
tasks/wavelet_mapping.yaml: ns_per_lookup and bits_per_element (of the mapping), both
minimised; `group` is a parameter of the trial, so read a front together with it.

    python -m pipeline.run tasks/wavelet_mapping.yaml
"""

from __future__ import annotations

import json
import time

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from pipeline.workloads.base import Params, Reporter, Workload, finite_metrics
from pipeline.workloads.data_files import unsorted_array
from pipeline.workloads.wavelet.btree import StaticBPlusTree
from pipeline.workloads.wavelet.index import UnsortedIndex, fit_model
from pipeline.workloads.wavelet.measure import (present_queries, reference_lookup, time_access, time_btree,
                                                time_gather, time_index, uniform_table)
from pipeline.workloads.wavelet.layout import ARITIES, RANK_KINDS, check_depth
from pipeline.workloads.wavelet.tree import WaveletMapping, entropy_bits_per_element

MODELS = ("none", "linear", "cubic", "rmi", "pgm", "radix_spline")


class WaveletParams(Params):
    n: int = Field(1_000_000, ge=1, le=(1 << 32) - 1, description="table size: uniform uint64 keys in random arrival order")
    array_file: str | None = Field(None, description="a user's unsorted integer keys (.npy, SOSD binary, or one per "
                                   "line) indexed instead of the uniform table; n is then the file's size")
    queries: int = Field(50_000, ge=1, description="lookups (keys of the table) per timed loop")
    repeats: int = Field(3, ge=1, description="timed runs; medians are reported")
    seed: int = Field(0, description="seed of the table, the queries and the access positions")
    arity: int = Field(16, description="m of the m-ary wavelet tree: 2, 4, 16 or 256 (seed 002)")
    rank: str = Field("sampled", description="rank layout: full (the slides' rank matrix), sampled (counts every sample_rate positions in their own array), interleaved (the same counts ahead of each block's digits) or blocked (cache-line blocks of block_lines lines, modular counts then digits)")
    sample_rate: int = Field(512, description="sampled / interleaved: counts every s positions (power of two in [64, 65536])")
    block_lines: int = Field(2, description="blocked: 64-byte lines per block (power of two; m=256 needs >= 16)")
    depth: int | None = Field(None, ge=0, description="levels walked before the remaining low bits are read in one go (ours, not the slides'): None = all, the slides' tree; 0 = a bit-packed permutation array; at most ceil(log_m n)")
    group: int = Field(1, ge=1, le=1024, description="lookups in lockstep: 1 = per query (latency), > 1 = batched (throughput), for the mapping and the B+-tree alike")
    candidates: int = Field(1, ge=1, le=64, description="per query only: keys read at once per round of a k-ary window search (1 = binary search)")
    model: str = Field("pgm", description="learned model (seed 001): none, linear, cubic, rmi, pgm or radix_spline")
    model_epsilon: int = Field(16, ge=1, description="error bound of pgm / radix_spline (16: the slides' 32-wide window)")
    rmi_bits: int = Field(14, ge=1, le=24, description="log2 of the RMI's leaf count")
    btree_fanout: int = Field(64, ge=2, le=1024, description="fanout (and leaf size) of the B+-tree secondary index peer")

    @field_validator("arity", "rank")
    @classmethod
    def _one_of(cls, value: int | str, info: ValidationInfo) -> int | str:
        allowed = {"arity": ARITIES, "rank": RANK_KINDS}[info.field_name]
        if value not in allowed:
            raise ValueError(f"{info.field_name} must be one of {allowed}, got {value!r}")
        return value

    @field_validator("sample_rate", "block_lines")
    @classmethod
    def _power_of_two(cls, value: int, info: ValidationInfo) -> int:
        low, high = {"sample_rate": (64, 65536), "block_lines": (1, 1024)}[info.field_name]
        if value < low or value > high or value & (value - 1):
            raise ValueError(f"{info.field_name} must be a power of two in [{low}, {high}], got {value}")
        return value

    @field_validator("depth")
    @classmethod
    def _depth(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and "n" in info.data and "arity" in info.data:
            check_depth(value, info.data["n"], info.data["arity"])  # one line: "depth must be ... got 7"
        return value

    # group > 1 with candidates > 1 is refused by `UnsortedIndex.search` (a one-line error)
    # and by a constraint of search_spaces/wavelet.yaml; not here, so that the search
    # rejects such a point before the trial instead of failing it.

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {value!r}")
        return value


METRICS = (
    "bits_per_element", "model_bits_per_element", "total_bits_per_element", "ns_per_access", "ns_per_lookup", "probes_per_lookup",
    "btree_ns_per_lookup", "btree_bits_per_element", "permutation_ns_per_lookup", "bound_ratio",
    "lookup_vs_btree", "build_s", "entropy_bits_per_element", "levels", "depth",
)


def _model_params(params: WaveletParams) -> dict:
    if params.model in ("pgm", "radix_spline"):
        return {"epsilon": params.model_epsilon}
    if params.model == "rmi":
        return {"bits": params.rmi_bits}
    return {}


def _keys(params: WaveletParams) -> np.ndarray:
    if params.array_file:
        # positions in the mapping are uint32: at most 2^32 - 1 keys
        return unsorted_array(params.array_file, "array_file", max_size=(1 << 32) - 1)
    return uniform_table(params.n, params.seed)


def _data(params: WaveletParams):
    keys = np.ascontiguousarray(_keys(params))
    queries = present_queries(keys, params.queries, params.seed)
    order = np.argsort(keys, kind="stable")
    return keys, queries, order, reference_lookup(keys, order, queries)


def _validate(params: WaveletParams) -> None:
    if params.array_file:
        keys = _keys(params)  # one line naming the file: missing, empty, wrong SOSD length, not integers
        if params.depth is not None:
            check_depth(params.depth, keys.size, params.arity)


def run(params: WaveletParams, report: Reporter) -> dict[str, float]:
    keys, queries, order, expected = _data(params)
    n = keys.size  # params.n, or the user's array's length
    positions = np.random.default_rng(params.seed + 2).integers(0, n, params.queries)
    t0 = time.perf_counter()
    tree = WaveletMapping.build(order, arity=params.arity, rank=params.rank, sample_rate=params.sample_rate,
                                block_lines=params.block_lines, depth=params.depth)
    build_s = time.perf_counter() - t0
    model = fit_model(params.model, keys[order], **_model_params(params))
    index = UnsortedIndex(keys, "wavelet", model, tree=tree)
    sizes = {"bits_per_element": index.mapping_bits() / n, "model_bits_per_element": index.model_bits() / n,
             "total_bits_per_element": (index.mapping_bits() + index.model_bits()) / n,
             "entropy_bits_per_element": entropy_bits_per_element(n), "levels": float(tree.levels),
             "depth": float(tree.depth), "build_s": build_s}
    report(sizes, step=0)

    group, candidates = params.group, params.candidates
    ns_access = time_access(tree, positions, params.repeats, group)
    timing = time_index(index, queries, expected, params.repeats, group, candidates)
    btree = StaticBPlusTree.build(keys, fanout=params.btree_fanout, leaf_size=params.btree_fanout, order=order)
    btree_ns = time_btree(btree, queries, expected, params.repeats, group)
    perm_index = UnsortedIndex.build(keys, "permutation", model, order=order)
    perm_ns = time_index(perm_index, queries, expected, params.repeats, group, candidates).ns_per_lookup
    metrics = finite_metrics({
        **sizes,
        "ns_per_access": ns_access,
        "ns_per_lookup": timing.ns_per_lookup,
        "probes_per_lookup": timing.probes_per_lookup,
        "btree_ns_per_lookup": btree_ns,
        "btree_bits_per_element": btree.size_bits() / n,
        "permutation_ns_per_lookup": perm_ns,
        # seed 002's constraint: (mapping accesses per lookup) x access cost <= B+-tree cost
        # (with candidates > 1 the probes overlap within a round: the ratio then overstates)
        "bound_ratio": timing.probes_per_lookup * ns_access / btree_ns,
        "lookup_vs_btree": timing.ns_per_lookup / btree_ns,
    })
    report(metrics, step=1)
    (report.artifact_dir / "wavelet_trial.json").write_text(
        json.dumps({"params": params.model_dump(), "model": model.label, "metrics": metrics}, indent=1))
    return metrics


def baselines(params: WaveletParams) -> list[dict]:
    """Peers on the same table: B+-tree secondary index, permutation array (uint32 and
    bit-packed: the depth-0 tree), sorted copy."""
    keys, queries, order, expected = _data(params)
    n = keys.size
    positions = np.random.default_rng(params.seed + 2).integers(0, n, params.queries)
    model = fit_model(params.model, keys[order], **_model_params(params))
    btree = StaticBPlusTree.build(keys, fanout=params.btree_fanout, leaf_size=params.btree_fanout, order=order)
    rows = [{"method": f"btree_f{params.btree_fanout}", "bits_per_element": btree.size_bits() / n,
             "ns_per_lookup": time_btree(btree, queries, expected, params.repeats, params.group), "group": params.group}]
    peers = {"permutation": ("permutation", {}), "sorted_copy": ("sorted_copy", {}),
             "packed_permutation": ("wavelet", {"rank": "full", "depth": 0})}  # the depth-0 tree
    for name, (mapping, options) in peers.items():  # built one at a time: each is a copy of the order or more
        index = UnsortedIndex.build(keys, mapping, model, order=order, **options)
        row = {"method": f"{name}+{params.model}", "bits_per_element": index.mapping_bits() / n,
               "ns_per_lookup": time_index(index, queries, expected, params.repeats, params.group,
                                           params.candidates).ns_per_lookup, "group": params.group}
        if name == "permutation":
            row["ns_per_access"] = time_gather(index.perm, positions, params.repeats)
        elif mapping == "wavelet":
            row["ns_per_access"] = time_access(index.tree, positions, params.repeats)
        rows.append(row)
        del index
    return rows


WORKLOAD = Workload(
    name="wavelet_mapping",
    params=WaveletParams,
    run=run,
    metrics=METRICS,
    description="seed 002: learned index over an unsorted table through an m-ary wavelet-tree mapping vs a B+-tree",
    smoke_params={"n": 20_000, "queries": 2_000, "repeats": 1, "arity": 16, "rank": "sampled", "sample_rate": 256,
                  "model": "linear"},
    baselines=baselines,
    validate=_validate,
)
