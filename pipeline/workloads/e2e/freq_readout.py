"""What the learned frequency sketch learned, read out (seed 000 §3.1, Figures 22 and 24),
and the classic sketches run on the same streams.

- `fit_delta`: the update delta, fitted from the model's behaviour. For sample items x
  and n = 1..max_count we give the model a stream of x repeated n times (no collisions:
  the writer is stateless, so that memory is exactly n times x's single update) and
  query x; the least-squares slope of the estimate against n is the learned delta (what
  one more arrival adds to the answer), the intercept is reported beside it. The mean
  value the writer stores per arrival (`delta_written`, the seed's "update delta",
  §3.1 and Figure 22) is logged too. With the default predictor (homogeneous and
  normalised to psi(1..1) = 1, see freq_model) the two agree for M = 1 and the
  intercept is 0; with a free predictor (`predictor_bias=True`) the written value is
  arbitrary up to psi's scale and only the slope and intercept describe the model.
- `delta_sweep`: CountMin's MAE over a grid of deltas on the same streams: which delta
  is best for CountMin in the first place (is "delta below 1 helps" true here?).
- `decision_boundary`: for each label of the image setting, the counter its held-out
  images are written to and read from (majority over images), and whether that counter
  is its own (no other label's majority position) - Figure 24's "reserved positions".
- `apply_readout`: carries the model's whole answer curve (estimate against number of
  arrivals) back into CountMin: a CountMin count C is answered with the model's estimate
  for C arrivals (interpolated; linear with the fitted delta beyond the read-out range).
  In our quick runs the model learned "subtract the expected collisions" (slope ~1, a
  negative intercept) more than "delta < 1", so this carries over what it did learn.
- `sketch_estimates`: CountMin / Count-Sketch from `pipeline.workloads.sketches`, one
  fresh sketch (own hash seed) per stream, queried for the stream's queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.workloads import sketches
from pipeline.workloads.e2e.freq_data import Streams, render_numbers
from pipeline.workloads.e2e.freq_model import FreqSketch


@dataclass
class DeltaFit:
    delta: float  # slope of the estimate per arrival
    intercept: float
    delta_written: float  # mean update value the writer stores (hard inference)
    counts: np.ndarray  # (n,) arrivals 1..max_count
    estimates: np.ndarray  # (n,) mean estimate over the sample items


@torch.no_grad()
def fit_delta(model: FreqSketch, items: torch.Tensor, max_count: int = 20) -> DeltaFit:
    """Learned delta from single-item streams (see the module docstring). `items` are
    model inputs (ids (X,) or images (X, 8, 24))."""
    was_training = model.training
    model.eval()
    positions, values = model.updates(items)  # (X, M, k), (X, M)
    single = model.memory(positions.unsqueeze(1), values.unsqueeze(1))  # (X, k)
    counts = torch.arange(1, max_count + 1, dtype=single.dtype, device=single.device)
    memory = counts[:, None, None] * single[None]  # (N, X, k)
    n_counts, n_items = memory.shape[:2]
    queries = items.unsqueeze(0).expand(n_counts, *items.shape).reshape(n_counts * n_items, 1, *items.shape[1:])
    estimates = model.read(memory.reshape(n_counts * n_items, -1), queries)[0].reshape(n_counts, n_items)
    model.train(was_training)
    x = counts.cpu().numpy().astype(np.float64)
    y = estimates.cpu().numpy().astype(np.float64)
    slope, intercept = np.polyfit(np.repeat(x, n_items), y.reshape(-1), 1)
    return DeltaFit(float(slope), float(intercept), float(values.mean()), x, y.mean(axis=1))


@torch.no_grad()
def decision_boundary(model: FreqSketch, labels: int, pool, images_per_label: int = 20,
                      seed: int = 0, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Per label 0..labels-1: majority write position (first of the M writes), its
    agreement over `images_per_label` held-out images, majority first read position,
    and `own_counter` (no other label's majority write position is the same)."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    label_ids = np.repeat(np.arange(labels), images_per_label)
    images = torch.as_tensor(render_numbers(rng, label_ids, pool), device=device)
    positions, _ = model.updates(images)
    _, lookups, _ = model.read(torch.zeros(images.shape[0], model.config.k, device=device),
                               images.unsqueeze(1))
    model.train(was_training)
    k = model.config.k
    write = positions[:, 0].argmax(-1).cpu().numpy().reshape(labels, images_per_label)
    read = lookups[:, 0, 0].argmax(-1).cpu().numpy().reshape(labels, images_per_label)

    def majority(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hist = np.zeros((labels, k), dtype=np.int64)
        np.add.at(hist, (np.repeat(np.arange(labels), images_per_label), pos.reshape(-1)), 1)
        return hist.argmax(1), hist.max(1) / images_per_label

    write_pos, write_agree = majority(write)
    read_pos, read_agree = majority(read)
    users = np.bincount(write_pos, minlength=k)
    return {"label": np.arange(labels), "write_position": write_pos,
            "write_agreement": write_agree, "read_position": read_pos,
            "read_agreement": read_agree, "own_counter": users[write_pos] == 1}


def apply_readout(counts: np.ndarray, fit: DeltaFit) -> np.ndarray:
    """The model's read-out curve applied to classic CountMin counts (delta 1)."""
    top = fit.counts[-1]
    inside = np.interp(counts, fit.counts, fit.estimates)
    beyond = fit.estimates[-1] + fit.delta * (counts - top)
    return np.where(counts > top, beyond, inside)


def sketch_estimates(streams: Streams, kind: str, width: int, depth: int,
                     delta: float = 1.0, seed: int = 0) -> np.ndarray:
    """(B, Q) estimates of a fresh `kind` ("countmin" or "countsketch") sketch per stream,
    hash seed `seed + b` for stream b. One vectorised update and query per stream."""
    out = np.empty(streams.queries.shape, dtype=np.float64)
    for b in range(streams.items.shape[0]):  # per stream; items within a stream are vectorised
        if kind == "countmin":
            sketch = sketches.CountMin(width, depth, seed=seed + b, delta=delta)
        elif kind == "countsketch":
            sketch = sketches.CountSketch(width, depth, seed=seed + b)
        else:
            raise ValueError(f"unknown sketch {kind!r}; valid: countmin, countsketch")
        sketch.update(streams.items[b])
        out[b] = sketch.query(streams.queries[b])
    return out


def delta_sweep(streams: Streams, width: int, depth: int, deltas: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """CountMin's MAE for each delta in `deltas` on `streams` (same hash seeds as
    `sketch_estimates`). A CountMin with delta d answers exactly d x the answer with
    delta 1 (every counter is d x a count; the row minimum commutes with d > 0), so one
    sketch pass per stream serves the whole grid."""
    unit = sketch_estimates(streams, "countmin", width, depth, 1.0, seed)
    deltas = np.asarray(deltas, dtype=np.float64)
    return np.abs(deltas[:, None, None] * unit[None] - streams.counts[None]).mean(axis=(1, 2))


def sketch_mae(streams: Streams, kind: str, width: int, depth: int, delta: float = 1.0,
               seed: int = 0) -> float:
    return sketches.mae(sketch_estimates(streams, kind, width, depth, delta, seed),
                        streams.counts)
