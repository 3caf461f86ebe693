"""Models that predict where a key lies in a sorted table, behind one call:

    model = fit_model(kind, keys, **params)
    lo, hi = model.search_bounds(queries)     # int64 arrays
    model.size_bytes                          # exact bytes the lookup reads

**The window is half-open, searched as a slice:** for every query that is a key of the
table, its lower bound is `lo + np.searchsorted(keys[lo:hi], q, "left")`, i.e. it lies in
[lo, hi] and a search of keys[lo:hi) finds it (returning hi when every key of the slice
is smaller). The same holds for absent queries wherever the model is monotone between the
two table keys around the query, which is every model here except a polynomial with a
turning point there and the seam between two RMI leaves or KO segments; `measure.lookup`
checks the window's edges and widens it when needed, so lookups are always exact.

Kinds (seed 001 §3.2; the module of each says more):
- "none": the whole table, [0, n): plain search routines.
- "linear", "quadratic", "cubic": least-squares regression of position on key (L, Q, C).
- "ko": k equal segments of the table, each with the best of degree 1 to 3 (KO-BFS/KO-BBS).
- "rmi": two-level recursive model index with CDFShop's model types (`rmi.py`).
- "sy_rmi": synoptic RMI with a space bound (`rmi_search.py`).
- "pgm": PGM-index with recursive levels; "pgm_bicriteria": the fastest PGM within a
  space bound (`pgm.py`).
- "radix_spline": RadixSpline (`radix_spline.py`).
- "btree": static B+-tree (`btree.py`).

Every model is the same shape underneath, so that one compiled loop times them all: a
numba `predict(state, q) -> (position, slot)` and per-slot errors `err_lo`, `err_hi`
measured on the table; the window is [position - err_lo[slot], position + err_hi[slot]],
clipped to [0, n]. Errors are measured against the lower bound of each key (lo side) and
its upper bound (hi side), so that a query between two keys is covered too.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from numba import njit

KEY = np.uint64  # internal key type: every table is held as uint64 (data.py)
FLOAT_BYTES = 8
INT_BYTES = 8


@dataclass
class Model:
    """A fitted model. `state` is the tuple `predict` reads; `size_bytes` counts what a
    lookup needs (parameters and errors), never the table."""

    kind: str
    n: int
    window: Callable  # numba dispatcher: (window_state, q) -> (lo, hi), what lookups call
    window_state: tuple
    err_lo: np.ndarray  # int64, one per slot: how far below / above the prediction keys fell
    err_hi: np.ndarray
    size_bytes: int
    params: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    #: mean window (hi - lo) over the table's keys, from the errors of training
    train_window: float = 0.0
    #: mean over keys of log2(|prediction - position| + 1): the RMI optimizer's error measure
    avg_log2_error: float = 0.0
    #: KO only: the degree chosen for each segment
    degrees: list[int] = field(default_factory=list)
    #: numba dispatcher (window_state, queries, start, count, lo, hi, at, scratch): the
    #: windows of queries[start:start + count] into lo[at:], hi[at:] (scratch: int64, >=
    #: count), what the pipelined lookup calls once per block; None: `window` in a loop
    windows: Callable | None = None

    def __post_init__(self) -> None:
        if self.windows is None:
            self.windows = default_windows(self.window)

    def search_bounds(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), int64: search keys[lo:hi) for the lower bound (module docstring)."""
        queries = np.ascontiguousarray(queries, dtype=KEY)
        return _bounds_batch(self.window, self.window_state, queries)

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. `rmi[linear_spline/linear, 2^14]`."""
        detail = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}[{detail}]" if detail else self.kind


@njit
def _bounds_batch(window, state, queries):
    lo = np.empty(queries.size, dtype=np.int64)
    hi = np.empty(queries.size, dtype=np.int64)
    for i in range(queries.size):
        lo[i], hi[i] = window(state, queries[i])
    return lo, hi


def make_window(predict: Callable) -> Callable:
    """The window function of a `predict` with per-slot errors: its state is
    (predict_state, err_lo, err_hi, n)."""

    @njit(inline="always")
    def window(state, q):
        predict_state, err_lo, err_hi, n = state
        position, slot = predict(predict_state, q)
        return max(np.int64(0), position - err_lo[slot]), min(n, position + err_hi[slot])

    return window


@njit
def _measure_errors(predict, state, keys, slots):
    """Per-slot errors of `predict` on the table: err_lo = max(position - lower bound),
    err_hi = max(upper bound - position), over every key (at least 0); and the mean window."""
    n = keys.size
    err_lo = np.zeros(slots, dtype=np.int64)
    err_hi = np.zeros(slots, dtype=np.int64)
    positions = np.empty(n, dtype=np.int64)
    slot_of = np.empty(n, dtype=np.int64)
    lower = 0
    log2_error = 0.0
    for i in range(n):
        if i > 0 and keys[i] != keys[i - 1]:
            lower = i
        position, slot = predict(state, keys[i])
        positions[i] = position
        slot_of[i] = slot
        log2_error += np.log2(abs(position - lower) + 1.0)
        if position - lower > err_lo[slot]:
            err_lo[slot] = position - lower
    # upper bound of keys[i]: one past its last duplicate
    upper = n
    for i in range(n - 1, -1, -1):
        if i < n - 1 and keys[i] != keys[i + 1]:
            upper = i + 1
        slot = slot_of[i]
        if upper - positions[i] > err_hi[slot]:
            err_hi[slot] = upper - positions[i]
    total = 0.0
    for i in range(n):
        slot = slot_of[i]
        lo = max(0, positions[i] - err_lo[slot])
        hi = min(n, positions[i] + err_hi[slot])
        total += hi - lo
    return err_lo, err_hi, total / n, log2_error / n


def finish(kind: str, keys: np.ndarray, predict: Callable, state: tuple, slots: int, param_bytes: int,
           params: dict, started: float, window: Callable | None = None,
           pack: Callable[[np.ndarray, np.ndarray], tuple] | None = None, windows: Callable | None = None) -> Model:
    """Measure the errors of a built predictor and wrap it as a Model.

    By default the window is `make_window(predict)` over per-slot errors, which add
    2 x 8 bytes per slot to `param_bytes`. A model that lays its errors out itself (the RMI
    keeps each leaf's error beside its parameters) passes its own `window` and `pack`
    (err_lo, err_hi) -> window_state, and counts them in `param_bytes`, and may pass the
    block form of its window (`Model.windows`).
    """
    n = int(keys.size)
    err_lo, err_hi, mean_window, log2_error = _measure_errors(predict, state, keys, np.int64(slots))
    if window is None:
        window, window_state = _default_window(predict), (state, err_lo, err_hi, np.int64(n))
        param_bytes += 2 * INT_BYTES * slots
    else:
        window_state = pack(err_lo, err_hi)
    return Model(kind=kind, n=n, window=window, window_state=window_state, err_lo=err_lo, err_hi=err_hi,
                 size_bytes=int(param_bytes), params=params, build_seconds=time.perf_counter() - started,
                 train_window=float(mean_window), avg_log2_error=float(log2_error), windows=windows)


_WINDOWS: dict[Callable, Callable] = {}


def _default_window(predict: Callable) -> Callable:
    """One compiled window function per predict function."""
    if predict not in _WINDOWS:
        _WINDOWS[predict] = make_window(predict)
    return _WINDOWS[predict]


_BLOCK_WINDOWS: dict[Callable, Callable] = {}


def default_windows(window: Callable) -> Callable:
    """The block form of a window function (`Model.windows`): one query after the other."""
    if window not in _BLOCK_WINDOWS:

        @njit(inline="always")
        def windows(state, queries, start, count, lo, hi, at, scratch):
            for j in range(count):
                lo[at + j], hi[at + j] = window(state, queries[start + j])

        _BLOCK_WINDOWS[window] = windows
    return _BLOCK_WINDOWS[window]


@njit(inline="always")
def to_position(value, n):
    """floor(value) clipped to [0, n]; NaN goes to 0. Written as selects, not branches, so
    that a loop over queries that calls it can be vectorised."""
    clipped = value if value >= 0.0 else 0.0
    clipped = clipped if clipped < n else float(n)
    return np.int64(clipped)


# ---------------------------------------------------------------- no model


@njit(inline="always")
def _predict_none(state, q):
    return np.int64(0), np.int64(0)


def fit_none(keys: np.ndarray) -> Model:
    """No model: the window is the whole table (0 bytes)."""
    n = int(keys.size)
    err_lo, err_hi = np.zeros(1, dtype=np.int64), np.full(1, n, dtype=np.int64)
    return Model(kind="none", n=n, window=_default_window(_predict_none),
                 window_state=((np.int64(n),), err_lo, err_hi, np.int64(n)), err_lo=err_lo, err_hi=err_hi,
                 size_bytes=0, train_window=float(n), avg_log2_error=float(np.log2(n)))


# ---------------------------------------------------------------- polynomial regression (L, Q, C)


@njit(cache=True)
def _power_sums(keys, lo, hi, kmin, scale, degree):
    """Sums of x^j (j <= 2 degree) and x^j * position (j <= degree) over keys[lo:hi], with
    x = 2 (key - kmin) scale - 1 in [-1, 1] for a well-conditioned normal matrix."""
    xs = np.zeros(2 * degree + 1)
    xy = np.zeros(degree + 1)
    for i in range(lo, hi):
        x = 2.0 * float(keys[i] - kmin) * scale - 1.0
        power = 1.0
        for j in range(2 * degree + 1):
            xs[j] += power
            if j <= degree:
                xy[j] += power * i
            power *= x
    return xs, xy


def fit_polynomial(keys: np.ndarray, lo: int, hi: int, degree: int) -> tuple[np.ndarray, float, float]:
    """Least-squares polynomial of position on the normalised key over keys[lo:hi]:
    coefficients (highest degree first, padded to 4), kmin and scale."""
    kmin, kmax = keys[lo], keys[hi - 1]
    scale = 1.0 / float(kmax - kmin) if kmax > kmin else 0.0
    degree = min(degree, max(hi - lo - 1, 0))
    xs, xy = _power_sums(keys, lo, hi, kmin, scale, degree)
    normal = np.array([[xs[i + j] for j in range(degree + 1)] for i in range(degree + 1)])
    coef_low_first = np.linalg.lstsq(normal, xy, rcond=None)[0]
    coefficients = np.zeros(4)
    coefficients[4 - (degree + 1):] = coef_low_first[::-1]
    return coefficients, float(kmin), scale


@njit(inline="always")
def horner(coefficients, x):
    return ((coefficients[0] * x + coefficients[1]) * x + coefficients[2]) * x + coefficients[3]


@njit(inline="always")
def _predict_polynomial(state, q):
    coefficients, kmin, kmax, scale, n = state
    clamped = min(max(q, kmin), kmax)
    x = 2.0 * float(clamped - kmin) * scale - 1.0
    return to_position(horner(coefficients, x), n), np.int64(0)


POLYNOMIAL_DEGREES = {"linear": 1, "quadratic": 2, "cubic": 3}


def fit_regression(keys: np.ndarray, degree: int = 1, kind: str | None = None) -> Model:
    """Seed 001 §3.2, RMIs with no branching factor: one polynomial over the whole table.
    Bytes: degree+1 coefficients, the key range (min, max) and the scale (x = 2 (q - min) x
    scale - 1), two errors: 8 each."""
    started = time.perf_counter()
    if degree not in (1, 2, 3):
        raise ValueError(f"degree must be 1, 2 or 3, got {degree}")
    coefficients, _, scale = fit_polynomial(keys, 0, keys.size, degree)
    state = (coefficients, keys[0], keys[-1], scale, np.int64(keys.size))
    param_bytes = (degree + 1) * FLOAT_BYTES + 3 * FLOAT_BYTES
    kind = kind or {1: "linear", 2: "quadratic", 3: "cubic"}[degree]
    return finish(kind, keys, _predict_polynomial, state, 1, param_bytes, {}, started)


# ---------------------------------------------------------------- KO: k segments, best of degree 1..3


@njit(inline="always")
def _predict_ko(state, q):
    """Sequential scan of the segments' first keys (§3.2: "a sequential search for the
    second level segment"), then that segment's polynomial."""
    firsts, lasts, scales, coefficients, n = state
    segment = 0
    while segment + 1 < firsts.size and q >= firsts[segment + 1]:
        segment += 1
    clamped = min(max(q, firsts[segment]), lasts[segment])
    x = 2.0 * float(clamped - firsts[segment]) * scales[segment] - 1.0
    return to_position(horner(coefficients[segment], x), n), np.int64(segment)


@njit
def _segment_window(keys, lo, hi, coefficients, kmin, kmax, scale, n):
    """Window (err_lo + err_hi) of one polynomial over keys[lo:hi], against global bounds."""
    err_lo = 0
    err_hi = 0
    lower = lo
    while lower > 0 and keys[lower - 1] == keys[lo]:
        lower -= 1
    for i in range(lo, hi):
        if i > lo and keys[i] != keys[i - 1]:
            lower = i
        clamped = min(max(keys[i], kmin), kmax)
        x = 2.0 * float(clamped - kmin) * scale - 1.0
        position = to_position(horner(coefficients, x), n)
        err_lo = max(err_lo, position - lower)
        err_hi = max(err_hi, lower + 1 - position)
    return err_lo + err_hi


def fit_ko(keys: np.ndarray, segments: int = 15) -> Model:
    """KO-BFS / KO-BBS (seed 001 §3.2): the table cut into `segments` equal parts; each
    gets the regression of degree 1, 2 or 3 with the best reduction factor (smallest
    window) on its keys. Bytes per segment: first and last key, scale, degree+1
    coefficients, two errors (the degree itself is implied by the zero padding)."""
    started = time.perf_counter()
    n = keys.size
    if not 1 <= segments <= 20:
        raise ValueError(f"KO segments must be in [1, 20] (seed 001 §3.2), got {segments}")
    segments = min(segments, n)
    cuts = np.linspace(0, n, segments + 1).astype(np.int64)
    firsts = keys[cuts[:-1]].copy()
    lasts = keys[cuts[1:] - 1].copy()
    scales = np.empty(segments)
    coefficients = np.zeros((segments, 4))
    param_bytes = INT_BYTES  # the number of segments
    degrees = []
    for s in range(segments):
        lo, hi = int(cuts[s]), int(cuts[s + 1])
        best = None
        for degree in (1, 2, 3):
            coef, _, scale = fit_polynomial(keys, lo, hi, degree)
            window = _segment_window(keys, lo, hi, coef, keys[lo], keys[hi - 1], scale, np.int64(n))
            if best is None or window < best[0]:
                best = (window, degree, coef, scale)
        _, degree, coefficients[s], scales[s] = best
        degrees.append(degree)
        param_bytes += 3 * FLOAT_BYTES + (degree + 1) * FLOAT_BYTES
    state = (firsts, lasts, scales, coefficients, np.int64(n))
    model = finish("ko", keys, _predict_ko, state, segments, param_bytes, {"segments": segments}, started)
    model.degrees = degrees  # per segment, for reports and the hand count in the tests
    return model


# ---------------------------------------------------------------- the one entry point

#: kind -> "module:function" for the parametric models, imported on first use.
_PARAMETRIC = {
    "rmi": "rmi:fit_rmi",
    "sy_rmi": "rmi_search:fit_sy_rmi",
    "pgm": "pgm:fit_pgm",
    "pgm_bicriteria": "pgm:fit_pgm_bicriteria",
    "radix_spline": "radix_spline:fit_radix_spline",
    "btree": "btree:fit_btree",
}
KINDS = ("none", "linear", "quadratic", "cubic", "ko") + tuple(_PARAMETRIC)


def fit_model(kind: str, keys: np.ndarray, **params: Any) -> Model:
    """Fit a model of `kind` (see the module docstring) on sorted `keys`.

    keys: sorted, non-decreasing unsigned integers (converted to uint64).
    params: the kind's own (e.g. `segments` for "ko", `epsilon` for "pgm").
    """
    keys = np.ascontiguousarray(keys, dtype=KEY)
    if keys.size < 2:
        raise ValueError(f"a table needs at least 2 keys, got {keys.size}")
    if kind not in _WARMED and kind in KINDS:
        # compile on a small table first, so that build_seconds never counts numba's compilation
        _fit(kind, _WARM_KEYS, **params)
        _WARMED.add(kind)
    return _fit(kind, keys, **params)


_WARMED: set[str] = set()
_WARM_KEYS = np.arange(1024, dtype=KEY) * np.uint64(3)


def _fit(kind: str, keys: np.ndarray, **params: Any) -> Model:
    if kind == "none":
        return fit_none(keys, **params)
    if kind in POLYNOMIAL_DEGREES:
        return fit_regression(keys, POLYNOMIAL_DEGREES[kind], **params)
    if kind == "ko":
        return fit_ko(keys, **params)
    if kind in _PARAMETRIC:
        module, function = _PARAMETRIC[kind].split(":")
        fit = getattr(importlib.import_module(f"pipeline.workloads.learned_index.{module}"), function)
        return fit(keys, **params)
    raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(KINDS)}")
