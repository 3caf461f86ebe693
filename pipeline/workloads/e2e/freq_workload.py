"""Workload `e2e_freq`: the end-to-end learned frequency sketch (seed 000 §3.1, appendix
A.2) against CountMin / Count-Sketch on the same streams and memory.

One trial trains a model with k counters and M writes / M lookups, evaluates its MAE on
fixed held-out streams, runs the classic sketches on exactly those streams and queries
(CountMin with M rows of k/M counters; the single-hash CountMin over all k counters the
seed discusses; Count-Sketch with M rows), reads out the learned update delta and reruns
both CountMins with it (Figure 22), and sweeps CountMin's delta on the same streams to
show which delta is best for CountMin itself. In the image setting it also writes the decision
boundary (which labels own a counter, Figure 24); there "CountMin given the true
labels" is `countmin_1hash_mae` (the seed's 1-query CountMin: 0.15 vs 2.81).

Artifacts: `front.csv` / `front.png` (learned point and the classic sketches' MAE over
k at this M), `delta_readout.csv` / `delta_readout.json`, `delta_sweep.csv` (CountMin's
MAE per delta), `train_curve.csv`, and for
images `decision_boundary.csv` / `decision_boundary.png`.

Run: `python -m pipeline.run tasks/freq_zipf.yaml` (quick profile), or directly:
`python -c "from pipeline.workloads.e2e.freq_workload import *; print(run(FreqParams(**WORKLOAD.smoke_params), LocalReporter()))"`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from pipeline.workloads.base import LocalReporter, Params, Reporter, Workload, write_rows  # noqa: F401
from pipeline.workloads.e2e.freq_data import (Streams, file_stream_ids, load_stream_file, render_numbers,
                                               streams_from_items)
from pipeline.workloads.e2e.freq_model import FreqModelConfig, build_model
from pipeline.workloads.e2e.freq_readout import (
    apply_readout, decision_boundary, delta_sweep, fit_delta, sketch_estimates, sketch_mae)
from pipeline.workloads.sketches import mae as mean_abs_error
from pipeline.workloads.e2e.freq_train import FreqSetting, predict, train


class FreqParams(Params):
    setting: Literal["zipf", "images", "file"] = Field(
        "zipf", description="zipf: ids, rank order re-drawn per stream; images: fixed rank order, 3-digit images; "
                "file: windows of the user's stream_file, items ranked by frequency")
    universe: int = Field(1000, ge=1, description="distinct items (ids 0..universe-1; labels in the image setting, <= 1000)")
    alpha: float = Field(1.2, gt=0, description="Zipf skew of stream and queries (seed: 1.2)")
    stream_length: int = Field(100, ge=1, description="items per stream (seed: 100)")
    queries_per_stream: int = Field(16, ge=1, description="queries drawn per stream, same distribution as the stream")
    k: int = Field(32, ge=1, description="counters in the data structure (seed: 32)")
    M: int = Field(1, ge=1, description="counters written per item and read per query (seed: 1, 2, 4)")
    hidden: int = Field(1024, ge=2, description="hidden width of data-processing and query MLPs (A.2: 1024)")
    layers: int = Field(3, ge=2, description="layers of those MLPs (A.2: 3)")
    embed_dim: int = Field(64, ge=1, description="id embedding / CNN feature size (not stated in the seed)")
    predictor_hidden: int = Field(64, ge=1, description="hidden width of the predictor psi (not stated)")
    cnn_channels: int = Field(16, ge=1, description="channels of the image feature CNN (not stated)")
    temperature: float = Field(2.0, gt=0, description="Gumbel-softmax temperature in training (A.1: 2)")
    logit_gain: float = Field(5.0, gt=0, description="scale of the initial position logits (1: PyTorch default)")
    predictor_bias: bool = Field(False, description="biases in the predictor psi; false: psi(c r) = c psi(r), so the model can only undercount collisions by a smaller delta (freq_model docstring)")
    positive_values: bool = Field(True, description="softplus on the update values: every arrival adds to its counters, as in CountMin (false: free sign)")
    predictor_unit: bool = Field(True, description="answer psi(r) / psi(1..1), so the value written per arrival is the delta (freq_model docstring)")
    balance: float = Field(0.3, ge=0, description="weight of the load-balancing loss on write/read positions (0: seed's loss)")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate (A.2 grid: 1e-4, 5e-5, 1e-5)")
    weight_decay: float = Field(1e-3, ge=0, description="Adam weight decay (A.1: 1e-3)")
    loss: Literal["l1", "mse"] = Field("l1", description="training loss; l1 matches the MAE metric "
                                       "(seed footnote 4: squared error works as well)")
    steps: int = Field(200_000, ge=1, description="gradient steps (A.2: 200k with early stopping)")
    batch_size: int = Field(1024, ge=1, description="streams per step (A.1: 1024)")
    eval_every: int = Field(1000, ge=1, description="steps between validation MAE measurements")
    patience: int = Field(10, ge=0, description="evaluations without improvement before stopping (0: never)")
    val_streams: int = Field(500, ge=1, description="validation streams for early stopping")
    eval_streams: int = Field(2000, ge=1, description="test streams for the reported MAEs (model and sketches)")
    delta_max_count: int = Field(20, ge=2, description="delta read-out: streams of 1..this many copies of one item")
    delta_items: int = Field(64, ge=1, description="delta read-out: sample items")
    sweep_deltas: list[float] = Field([0.5, 1.2, 0.01], description="CountMin delta sweep: [first, last, step]")
    front_ks: list[int] = Field([8, 16, 32, 64, 128], description="k values of the classic sketches in front.csv")
    held_out_fraction: float = Field(0.3, gt=0, lt=1, description="images: share of each digit's images held out for evaluation")
    stream_file: str | None = Field(None, description="setting file: the user's stream that training and test streams "
                                    "are cut from; zipf: ids in [0, universe) also evaluated. One item per line, "
                                    ".npy of ints, or a CSV with stream_column")
    stream_column: str | None = Field(None, description="stream_file is a CSV: the column whose values are the items")
    threads: int = Field(0, ge=0, description="torch CPU threads (0: leave torch's default)")
    seed: int = Field(0, description="seeds weights, training and evaluation streams")


def _validate(p: FreqParams) -> None:
    first, last, step = (p.sweep_deltas + [0.0, 0.0, 0.0])[:3]
    if len(p.sweep_deltas) != 3 or not 0 < first <= last or step <= 0:
        raise ValueError(f"params.sweep_deltas={p.sweep_deltas}: expected [first, last, step] with 0 < first <= last, step > 0")
    if p.M > p.k:
        raise ValueError(f"params.M={p.M} exceeds params.k={p.k}: at most k counters exist to write and read")
    if p.setting == "images" and p.universe > 1000:
        raise ValueError(f"params.universe={p.universe}: the image setting renders 3-digit numbers, at most 1000 labels")
    if p.setting == "file":
        if p.stream_file is None:
            raise ValueError("params.setting=file needs params.stream_file")
        file_stream_ids(p.stream_file, p.universe, p.stream_length, p.stream_column)
    elif p.stream_file is not None:
        load_stream_file(p.stream_file, p.universe, p.stream_length, p.stream_column)


def _setting(p: FreqParams) -> FreqSetting:
    return FreqSetting(universe=p.universe, alpha=p.alpha, length=p.stream_length,
                       queries=p.queries_per_stream, fixed_rank_order=p.setting == "images",
                       images=p.setting == "images", held_out_fraction=p.held_out_fraction,
                       file_ids=(file_stream_ids(p.stream_file, p.universe, p.stream_length, p.stream_column)
                                 if p.setting == "file" else None))


def _eval_streams(p: FreqParams, setting: FreqSetting) -> tuple[Streams, Streams]:
    """(validation, test) streams: their own seeds, disjoint from the training stream."""
    rng = np.random.default_rng([p.seed, 1])
    return setting.sample(rng, p.val_streams), setting.sample(rng, p.eval_streams)


def _readout_mae(test: Streams, width: int, depth: int, fit) -> float:
    """CountMin (delta 1) answering with the model's read-out curve."""
    counts = sketch_estimates(test, "countmin", width, depth)
    return mean_abs_error(apply_readout(counts, fit), test.counts)


def _front_rows(p: FreqParams, test: Streams, learned_mae: float, delta: float, fit) -> list[dict]:
    rows = [{"method": "learned", "k": p.k, "M": p.M, "mae": learned_mae}]
    for k in sorted(set(p.front_ks) | {p.k}):
        if k < p.M:
            continue
        width = k // p.M
        rows += [
            {"method": "countmin", "k": k, "M": p.M, "mae": sketch_mae(test, "countmin", width, p.M)},
            {"method": "countmin_learned_delta", "k": k, "M": p.M,
             "mae": sketch_mae(test, "countmin", width, p.M, delta=delta)},
            {"method": "countmin_learned_readout", "k": k, "M": p.M,
             "mae": _readout_mae(test, width, p.M, fit)},
            {"method": "countmin_1hash", "k": k, "M": 1, "mae": sketch_mae(test, "countmin", k, 1)},
            {"method": "countsketch", "k": k, "M": p.M, "mae": sketch_mae(test, "countsketch", width, p.M)},
        ]
    return rows


def _plot_front(path: Path, rows: list[dict], title: str) -> None:
    import pandas as pd

    from pipeline.plots import line_panels
    from pipeline.plots.lines import save

    fig = line_panels(pd.DataFrame(rows), "k", "mae", x_scale="log", x_base=2, title=title,
                      highlight={"learned": {"marker": "*", "markersize": 14, "zorder": 3}})
    save(fig, path, dpi=120)


def _plot_boundary(path: Path, table: dict[str, np.ndarray]) -> None:
    from pipeline.plots import figures

    own = table["own_counter"]
    figures.save(figures.decision_boundary(table["label"], table["write_position"], own), path)


def run(params: FreqParams, report: Reporter) -> dict[str, float]:
    p = params
    _validate(p)
    if p.threads:
        torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    device = report.device
    setting = _setting(p)
    val, test = _eval_streams(p, setting)
    config = FreqModelConfig(k=p.k, M=p.M, hidden=p.hidden, layers=p.layers, embed_dim=p.embed_dim,
                             predictor_hidden=p.predictor_hidden, temperature=p.temperature,
                             logit_gain=p.logit_gain, predictor_bias=p.predictor_bias,
                             predictor_unit=p.predictor_unit,
                             positive_values=p.positive_values)
    model = build_model(config, universe=p.universe, images=setting.images,
                        cnn_channels=p.cnn_channels).to(device)
    curve: list[dict] = []

    def on_eval(step: int, train_loss: float, val_mae: float) -> None:
        curve.append({"step": step, "train_loss": train_loss, "val_mae": val_mae})
        report({"train_loss": train_loss, "val_mae": val_mae}, step=step)

    start = time.perf_counter()
    result = train(model, setting, steps=p.steps, batch_size=p.batch_size, lr=p.lr,
                   weight_decay=p.weight_decay, loss=p.loss, balance=p.balance,
                   eval_every=min(p.eval_every, p.steps), patience=p.patience,
                   val_streams=val, seed=p.seed, device=device, on_eval=on_eval, report=report)
    train_seconds = time.perf_counter() - start
    if report.world_rank > 0:
        # data-parallel: rank 0 evaluates the (identical) model and writes the files; the
        # others make the same number of reports (a collective under Ray Train) and stop
        report({"val_mae": result.best_val_mae}, step=result.best_step)
        return {"val_mae": result.best_val_mae}

    estimates = predict(model, setting, test, seed=p.seed + 2, device=device)
    learned_mae = float(np.abs(estimates - test.counts).mean())

    # learned delta from single-item streams (Figure 22)
    rng = np.random.default_rng([p.seed, 3])
    sample = rng.choice(p.universe, size=min(p.delta_items, p.universe), replace=False)
    if setting.images:
        delta_inputs = torch.as_tensor(render_numbers(rng, sample, setting.pools[1]), device=device)
    else:
        delta_inputs = torch.as_tensor(sample, device=device)
    fit = fit_delta(model, delta_inputs, p.delta_max_count)
    # CountMin needs delta > 0; an untrained or collapsed model can fit ~0: then rerun with 1
    delta = fit.delta if fit.delta > 1e-3 else 1.0

    metrics = {
        "mae": learned_mae,
        "memory_k": float(p.k),
        "lookups_m": float(p.M),
        "countmin_mae": sketch_mae(test, "countmin", p.k // p.M, p.M),
        "countmin_1hash_mae": sketch_mae(test, "countmin", p.k, 1),
        "countsketch_mae": sketch_mae(test, "countsketch", p.k // p.M, p.M),
        "learned_delta": fit.delta,
        "delta_intercept": fit.intercept,
        "delta_written": fit.delta_written,
        "countmin_delta_used": delta,
        "countmin_learned_delta_mae": sketch_mae(test, "countmin", p.k // p.M, p.M, delta=delta),
        "countmin_1hash_learned_delta_mae": sketch_mae(test, "countmin", p.k, 1, delta=delta),
        "countmin_learned_readout_mae": _readout_mae(test, p.k // p.M, p.M, fit),
        "val_mae": result.best_val_mae,
        "best_step": float(result.best_step),
        "train_seconds": train_seconds,
    }
    metrics["mae_ratio_vs_countmin"] = learned_mae / max(metrics["countmin_mae"], 1e-12)
    # is a delta below 1 good for CountMin here at all? (its MAE over a grid of deltas)
    first, last, step = p.sweep_deltas
    deltas = np.round(np.arange(first, last + step / 2, step), 6)
    sweep = {"countmin": delta_sweep(test, p.k // p.M, p.M, deltas),
             "countmin_1hash": delta_sweep(test, p.k, 1, deltas)}
    for name, maes in sweep.items():
        metrics[f"{name}_best_delta"] = float(deltas[int(np.argmin(maes))])
        metrics[f"{name}_best_delta_mae"] = float(maes.min())

    out = Path(report.artifact_dir)
    out.mkdir(parents=True, exist_ok=True)
    if curve:
        write_rows(out / "train_curve.csv", curve)
    write_rows(out / "delta_sweep.csv", [{"delta": float(d), "countmin_mae": float(a),
                                          "countmin_1hash_mae": float(b)}
                                         for d, a, b in zip(deltas, *sweep.values())])
    write_rows(out / "delta_readout.csv", [{"count": int(c), "mean_estimate": float(e)}
                                           for c, e in zip(fit.counts, fit.estimates)])
    (out / "delta_readout.json").write_text(json.dumps(
        {"learned_delta": fit.delta, "intercept": fit.intercept, "delta_written": fit.delta_written,
         "countmin_mae": metrics["countmin_mae"],
         "countmin_learned_delta_mae": metrics["countmin_learned_delta_mae"],
         "countmin_learned_readout_mae": metrics["countmin_learned_readout_mae"]}, indent=2))
    front = _front_rows(p, test, learned_mae, delta, fit)
    write_rows(out / "front.csv", front)
    _plot_front(out / "front.png", front, f"{p.setting}: learned (k={p.k}, M={p.M}) vs classic sketches")

    if setting.images:
        table = decision_boundary(model, p.universe, setting.pools[1], seed=p.seed, device=device)
        write_rows(out / "decision_boundary.csv",
                   [{key: (bool(v[i]) if key == "own_counter" else float(v[i])) for key, v in table.items()}
                    for i in range(p.universe)])
        _plot_boundary(out / "decision_boundary.png", table)
        top = min(10, p.universe)
        metrics["own_counters_top10"] = float(table["own_counter"][:top].sum())
        metrics["write_agreement"] = float(table["write_agreement"].mean())

    if p.stream_file is not None and p.setting != "file":  # the file setting trains and tests on it already
        file_streams = streams_from_items(load_stream_file(p.stream_file, p.universe, p.stream_length,
                                                           p.stream_column))
        if setting.images:
            raise ValueError("params.stream_file is for the zipf (id) setting")
        est = predict(model, setting, file_streams, seed=p.seed, device=device)
        metrics["file_mae"] = float(np.abs(est - file_streams.counts).mean())
        metrics["file_countmin_mae"] = sketch_mae(file_streams, "countmin", p.k // p.M, p.M)

    report(metrics, step=result.best_step)
    return metrics


def baselines(params: FreqParams) -> list[dict]:
    """Classic CountMin (M rows of k/M counters) for k in `front_ks` and M in {1, 2, 4}
    on the trial's test streams: the reference front beside the learned one."""
    p = params
    setting = _setting(p)
    _, test = _eval_streams(p, setting)
    rows = []
    for M in (1, 2, 4):
        for k in p.front_ks:
            if k >= M:
                rows.append({"method": f"countmin M={M}", "mae": sketch_mae(test, "countmin", k // M, M),
                             "memory_k": float(k), "lookups_m": float(M)})
    return rows


WORKLOAD = Workload(
    name="e2e_freq",
    params=FreqParams,
    run=run,
    metrics=("mae", "memory_k", "lookups_m", "countmin_mae", "countmin_1hash_mae", "countsketch_mae",
             "learned_delta", "delta_intercept", "delta_written", "countmin_delta_used",
             "countmin_learned_delta_mae",
             "countmin_1hash_learned_delta_mae", "countmin_learned_readout_mae",
             "countmin_best_delta", "countmin_best_delta_mae", "countmin_1hash_best_delta",
             "countmin_1hash_best_delta_mae", "val_mae", "best_step", "train_seconds",
             "mae_ratio_vs_countmin", "own_counters_top10", "write_agreement", "file_mae",
             "file_countmin_mae", "train_loss"),
    description="End-to-end learned frequency sketch vs CountMin (seed 000 §3), Zipf ids or digit images",
    uses_torch=True,
    smoke_params={"hidden": 16, "embed_dim": 8, "predictor_hidden": 8, "universe": 50, "steps": 6,
                  "batch_size": 8, "eval_every": 3, "val_streams": 8, "eval_streams": 16,
                  "stream_length": 20, "queries_per_stream": 4, "k": 8, "delta_items": 8,
                  "delta_max_count": 4, "front_ks": [8], "lr": 1e-3},
    baselines=baselines,
    validate=_validate,
)
