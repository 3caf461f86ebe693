"""Two-level recursive model indexes (RMI) with the model types of the RMI optimizer that
CDFShop uses: their fit and their compiled routes. The two-phase Pareto search over them
and the synoptic RMI of seed 001 §3.2 are in `rmi_search`.

Written by hand: CDFShop's optimizer is a Rust code generator (learned-systems/RMI) that
emits C++, not a library one can call from Python. We follow its structure:

- top model (routes a key to one of B leaves): linear, robust_linear (least squares without
  the 0.01% extreme keys at each end), linear_spline (the line through the first and last
  key), cubic, loglinear (linear in log(1 + key - min)), radix (the key's leading bits
  below the common prefix, log2 B of them), and the optimizer's "specialty" top layers
  normal and lognormal (the CDF of a normal fitted to the keys, or to their logarithms,
  times the table size; the library's logistic approximation of that CDF, `_phi`); and
  one of ours, log_radix: the leading bits of the float64 of key - min + 1 (exponent and
  the top mantissa bits), a radix over a piecewise-linear log2 of the key, so every
  octave of the key range gets the same number of leaves. It routes skewed keys (lognormal)
  about as evenly as a lognormal top, at the cost of a radix top (a convert and a shift,
  no logarithm), which the fused pipelined lookup turns into time (measure.py);
- leaf models: linear, linear_spline, cubic, loglinear; each leaf keeps its own maximum
  error, so the window is [p - err, p + err] (one error per leaf, as CDFShop's RMIs store);
- `rmi_search.optimize_rmi`: phase 1 fits every top/leaf pair at a few branching factors; phase 2
  fits the pairs on the phase-1 front (size against average log2 error) at every other
  branching factor 2^6..2^24 the table allows; the result is up to 10 models of the final
  front, spread by size. The optimizer measures no time (neither does CDFShop's);
  callers time the returned models (bench, workload artifacts).
- `rmi_search.fit_sy_rmi`, SY-RMI (§3.2): from the optimizer's fronts on a set of tables, UB = median of branching
  factor / model bytes, and the top/leaf pair that wins most tables on query time; then for
  a space bound s the RMI with that pair and B = UB x s x table bytes.

Bytes: the top model's parameters, the key range and scale (3 x 8), then per leaf its
parameters and its error, 8 bytes each (linear leaf: 24 bytes, as in CDFShop).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from numba import njit

from pipeline.workloads.intrinsics import bits_float, float_bits
from pipeline.workloads.learned_index.models import FLOAT_BYTES, KEY, Model, finish, horner, to_position

TOP_TYPES = ("linear", "robust_linear", "linear_spline", "cubic", "loglinear", "radix", "normal", "lognormal",
             "log_radix")
LEAF_TYPES = ("linear", "linear_spline", "cubic", "loglinear")
_TOP_CODE = {name: code for code, name in enumerate(TOP_TYPES)}
_LEAF_CODE = {name: code for code, name in enumerate(LEAF_TYPES)}
#: parameters stored per model type (top: its coefficients; leaf: + the error)
_TOP_PARAMS = {"linear": 2, "robust_linear": 2, "linear_spline": 2, "cubic": 4, "loglinear": 2, "radix": 1,
               "normal": 4, "lognormal": 4, "log_radix": 1}
_LEAF_PARAMS = {"linear": 2, "linear_spline": 2, "cubic": 6, "loglinear": 2}
#: the column of a leaf's row that holds its constant term (`fit_rmi` folds err_lo into it)
_CONSTANT_COLUMN = {"linear": 1, "linear_spline": 1, "cubic": 5, "loglinear": 1}
MIN_BITS, MAX_BITS = 6, 24  # branching factors 2^6 .. 2^24, as the RMI optimizer


_ONE_BITS = 0x3FF0000000000000  # the IEEE-754 bits of 1.0


@njit(inline="always")
def fast_ln(x):
    """ln x for a normal float x > 0, to ~2e-11 absolute: the exponent read from the bits,
    the mantissa m taken to [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m - 1) / (m + 1)) by six
    terms of its series. Our choice, not the RMI library's (which calls the C library's
    log): it is what lets a loop of lognormal-top routes be vectorised (numba calls libm's
    log one value at a time); the fit routes keys with this same function, so the leaf
    errors hold exactly."""
    bits = float_bits(x)
    mantissa = bits_float((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # [1, 2)
    exponent = (bits >> 52) - 1023
    high = mantissa > 1.4142135623730951
    mantissa = mantissa * 0.5 if high else mantissa
    exponent = exponent + 1 if high else exponent
    t = (mantissa - 1.0) / (mantissa + 1.0)
    t2 = t * t
    series = t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0 + t2 * (2.0 / 11.0))))))
    return exponent * 0.6931471805599453 + series


@njit(inline="always")
def _phi(x):
    """The RMI library's normal CDF: a logistic, 1 / (1 + e^(-1.65451 x)), with e^y taken
    as (1 + y/64)^64 (six squarings), as its generated code computes it."""
    y = 1.0 - 1.65451 * x / 64.0
    y = max(y, 0.0)  # (1 + y/64)^64 is a poor e^y below y = -64; the logistic is ~1 there
    y *= y  # six squarings, written out: a loop here would keep a loop over queries from vectorising
    y *= y
    y *= y
    y *= y
    y *= y
    y *= y
    return 1.0 / (1.0 + y)


@njit(inline="always")
def _route(top_code, top, shift, branching, n, diff, u, xs):
    """Leaf of a key: diff = key - min (uint64), u = float(diff), xs = u x scale in [0, 1]."""
    if top_code == 5:  # radix: leading bits of key - min
        return np.int64(min(diff >> shift, np.uint64(branching - 1)))
    if top_code == 3:
        position = horner(top, xs)
    elif top_code == 4:
        position = top[0] * np.log1p(u) + top[1]
    else:
        position = top[0] * xs + top[1]
    return to_position(position * branching / n, branching - 1)


@njit(inline="always")
def _route_log_radix(shift, branching, u):
    """Leaf of a key under a log_radix top: the leading bits of the float64 of
    key - min + 1 above those of 1.0 (u = float(key - min))."""
    s = np.int64(shift)
    return min((float_bits(u + 1.0) >> s) - (_ONE_BITS >> s), branching - 1)


def _cdf_params(top: str, top_params: np.ndarray, branching: int, n: int) -> tuple:
    """The scalars a normal or lognormal top routes with, kept in the model's state:
    top_params = (mean, 1 / stdev, scale, min key) of the keys, or of ln(key). Scalars in
    a tuple, not the array: a loop that reads the array's entries per query is not
    vectorised (numba cannot prove the stores do not alias them; ~14 ns per lognormal
    route against ~2, measured), and computed once, not per query. Other tops: unused."""
    if top not in ("normal", "lognormal"):
        return 0.0, 0.0, 0.0, 0.0, np.int64(0)
    mean, inv_stdev, scale, offset = (float(v) for v in top_params[:4])
    return mean, inv_stdev, scale * branching / n, offset, np.int64(branching - 1)


@njit(inline="always")
def _route_cdf(lognormal, cdf, u):
    """Leaf of a key under a normal or lognormal top (cdf: `_cdf_params`). Branch-free,
    so that a loop of them vectorises."""
    mean, inv_stdev, leaf_scale, offset, last = cdf
    x = fast_ln(max(u + offset, 1.0)) if lognormal else u + offset
    return to_position(_phi((x - mean) * inv_stdev) * leaf_scale, last)


@njit(inline="always")
def _leaf_position(leaf_code, rows, leaf, xs, u, n):
    """A leaf's prediction (rows indexed element by element: a row view would cost a
    reference count per query)."""
    if leaf_code == 2:  # cubic, in t = (xs - centre) x inverse spread
        t = (xs - rows[leaf, 0]) * rows[leaf, 1]
        position = ((rows[leaf, 2] * t + rows[leaf, 3]) * t + rows[leaf, 4]) * t + rows[leaf, 5]
    elif leaf_code == 3:
        position = rows[leaf, 0] * np.log1p(u) + rows[leaf, 1]
    else:
        position = rows[leaf, 0] * xs + rows[leaf, 1]
    return to_position(position, n)


def _rmi_functions(top: str, leaf: str) -> tuple:
    """(predict, window, route_all, windows) for a top/leaf pair, compiled once and cached.

    The top types of CDFShop's default profile share one set, with the types read from the
    state at run time (one compilation for all of them). Normal and lognormal get a set
    each, with the types as compile-time constants: compiled into the shared set, their
    CDF branches made every RMI's prediction ~3x slower (measured), and with them
    specialised, the shared set was faster as it was. log_radix is specialised too: its
    route is a few instructions, and the fused pipelined loop inlines it whole.

    `windows` (the block form, `Model.windows`) unpacks the state once per block and runs
    the two levels as two loops over the block: every query's route first, then every
    leaf's prediction. Fused, each query is one long chain of dependent arithmetic and the
    CPU overlaps few of them; split, the routes of a normal or lognormal top vectorise
    (lognormal/cubic, 512 leaves, 10M lognormal keys: 7-9 ns per query in blocks of 16 to
    256 against ~24 one query at a time, measured; the leaf loop stays scalar)."""
    specialised = top in ("normal", "lognormal", "log_radix")
    key = (top, leaf) if specialised else ("shared", "shared")
    if key not in _FUNCTIONS:
        fixed_leaf, lognormal, log_radix = _LEAF_CODE[leaf], top == "lognormal", top == "log_radix"

        @njit(inline="always")
        def route(top_code, top_params, shift, kmin, kmax, scale, branching, n, q, cdf):
            diff = min(max(q, kmin), kmax) - kmin
            u = float(diff)
            if log_radix:
                return _route_log_radix(shift, branching, u)
            if specialised:
                return _route_cdf(lognormal, cdf, u)
            return _route(top_code, top_params, shift, branching, n, diff, u, u * scale)

        @njit(inline="always")
        def leaf_position(leaf_code, rows, leaf, kmin, kmax, scale, n, q):
            u = float(min(max(q, kmin), kmax) - kmin)
            return _leaf_position(fixed_leaf if specialised else leaf_code, rows, leaf, u * scale, u, n)

        @njit(inline="always")
        def predict(state, q):
            top_code, top_params, shift, kmin, kmax, scale, branching, n, leaf_code, rows, cdf, limit = state
            leaf = route(top_code, top_params, shift, kmin, kmax, scale, branching, n, q, cdf)
            return leaf_position(leaf_code, rows, leaf, kmin, kmax, scale, limit, q), leaf

        @njit(inline="always")
        def window(state, q):
            lo, leaf = predict(state, q)  # the leaf's constant term holds its err_lo (`fit_rmi`)
            return lo, min(state[7], lo + np.int64(state[9][leaf, -1]))

        @njit(inline="always")
        def windows(state, queries, start, count, lo, hi, at, leaves):
            top_code, top_params, shift, kmin, kmax, scale, branching, n, leaf_code, rows, cdf, limit = state
            last = rows.shape[1] - 1
            whole = count - count % ROUTE_CHUNK
            for group in range(0, whole, ROUTE_CHUNK):  # loops of a constant trip count: vectorised
                for j in range(group, group + ROUTE_CHUNK):
                    leaves[j] = route(top_code, top_params, shift, kmin, kmax, scale, branching, n,
                                      queries[start + j], cdf)
            for j in range(whole, count):
                leaves[j] = route(top_code, top_params, shift, kmin, kmax, scale, branching, n, queries[start + j], cdf)
            for j in range(count):
                leaf = leaves[j]
                low = leaf_position(leaf_code, rows, leaf, kmin, kmax, scale, limit, queries[start + j])
                lo[at + j] = low
                hi[at + j] = min(n, low + np.int64(rows[leaf, last]))

        @njit
        def route_all(top_code, top_params, shift, kmin, scale, branching, n, keys, cdf):
            kmax = keys[-1]
            leaves = np.empty(keys.size, dtype=np.int64)
            for i in range(keys.size):
                leaves[i] = route(top_code, top_params, shift, kmin, kmax, scale, branching, n, keys[i], cdf)
            return leaves

        _FUNCTIONS[key] = (predict, window, route_all, windows)
    return _FUNCTIONS[key]


_FUNCTIONS: dict[tuple[str, str], tuple] = {}
#: queries routed per vectorised loop in the block form: LLVM leaves a loop of unknown
#: trip count below 16 scalar, and one of a constant 16 (or 32) vectorised (lognormal top,
#: measured: ~14 ns per query for a block of 8 against ~5 for 16 as one constant loop)
ROUTE_CHUNK = 16


# ---------------------------------------------------------------- fitting


def _line(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares line (slope, intercept), centred for stability."""
    xm, ym = x.mean(), y.mean()
    sxx = np.dot(x - xm, x - xm)
    slope = np.dot(x - xm, y - ym) / sxx if sxx > 0 else 0.0
    return np.array([slope, ym - slope * xm])


def _fit_top(top_type: str, u: np.ndarray, xs: np.ndarray, positions: np.ndarray, bits: int, kmax_u: float,
             kmin: float = 0.0):
    n = positions.size
    if top_type == "linear":
        return _line(xs, positions), 0
    if top_type == "robust_linear":
        cut = max(1, int(n * 1e-4))
        inner = slice(cut, n - cut) if n > 2 * cut + 1 else slice(None)
        return _line(xs[inner], positions[inner]), 0
    if top_type == "linear_spline":
        return np.array([float(n - 1), 0.0]), 0
    if top_type == "cubic":
        t = 2 * xs - 1  # fit in [-1, 1], then expand to xs
        with warnings.catch_warnings():  # a tiny table is poorly conditioned; the errors say how well it fits
            warnings.simplefilter("ignore", np.exceptions.RankWarning)
            c = np.polynomial.polynomial.polyfit(t, positions, 3)
        # p(t) with t = 2 xs - 1  ->  coefficients in xs (highest first, for horner)
        in_xs = np.polynomial.polynomial.Polynomial(c)(np.polynomial.polynomial.Polynomial([-1.0, 2.0]))
        coef = np.zeros(4)
        low_first = in_xs.coef
        coef[4 - low_first.size:] = low_first[::-1]
        return coef, 0
    if top_type == "loglinear":
        return _line(np.log1p(u), positions), 0
    if top_type in ("normal", "lognormal"):
        # the RMI library's ncdf / lncdf fit: mean and (population) stdev of the key, or of
        # ln(key) (ln taken as 0 where it is not finite), and scale = the largest position
        x = u + kmin
        if top_type == "lognormal":
            x = np.log(np.maximum(x, 1.0))
        mean, stdev = float(x.mean()), float(x.std())
        return np.array([mean, 1.0 / stdev if stdev > 0 else 0.0, float(n - 1), kmin]), 0
    if top_type == "log_radix":
        span = int(np.float64(kmax_u + 1.0).view(np.int64)) - _ONE_BITS
        return np.zeros(1), max(0, span.bit_length() - bits)
    if top_type == "radix":
        span_bits = int(kmax_u).bit_length() if kmax_u > 0 else 1
        return np.zeros(1), max(0, span_bits - bits)
    raise ValueError(f"unknown RMI top model {top_type!r}; valid: {', '.join(TOP_TYPES)}")


def _grouped_line(leaves, x, y, branching):
    """Per-leaf least-squares lines by two-pass centred sums."""
    count = np.bincount(leaves, minlength=branching).astype(np.float64)
    safe = np.maximum(count, 1)
    xm = np.bincount(leaves, x, branching) / safe
    ym = np.bincount(leaves, y, branching) / safe
    dx = x - xm[leaves]
    sxx = np.bincount(leaves, dx * dx, branching)
    sxy = np.bincount(leaves, dx * (y - ym[leaves]), branching)
    slope = np.divide(sxy, sxx, out=np.zeros(branching), where=sxx > 0)
    return slope, ym - slope * xm, count


@njit(cache=True)
def _cubic_sums(leaves, t, positions, branching):
    """Per leaf: sums of t^0..t^6 and of t^0..t^3 x position, in one pass (the normal
    equations of a cubic least-squares fit)."""
    powers = np.zeros((branching, 7))
    moments = np.zeros((branching, 4))
    for i in range(leaves.size):
        leaf = leaves[i]
        power = 1.0
        for j in range(7):
            powers[leaf, j] += power
            if j < 4:
                moments[leaf, j] += power * positions[i]
            power *= t[i]
    return powers, moments


def _fit_leaves(leaf_type, leaves, u, xs, positions, branching, n):
    """(branching, params + 1) rows: each leaf's parameters and a slot for its error."""
    width = _LEAF_PARAMS[leaf_type] + 1
    rows = np.zeros((branching, width))
    if leaf_type in ("linear", "loglinear"):
        x = xs if leaf_type == "linear" else np.log1p(u)
        rows[:, 0], rows[:, 1], count = _grouped_line(leaves, x, positions, branching)
    elif leaf_type == "linear_spline":
        count = np.bincount(leaves, minlength=branching).astype(np.float64)
        first = np.full(branching, n, dtype=np.int64)
        last = np.full(branching, -1, dtype=np.int64)
        index = np.arange(n)
        np.minimum.at(first, leaves, index)
        np.maximum.at(last, leaves, index)
        filled = count > 0
        x0, x1 = xs[first[filled]], xs[last[filled]]
        y0, y1 = positions[first[filled]], positions[last[filled]]
        dx = x1 - x0
        slope = np.divide(y1 - y0, dx, out=np.zeros(dx.size), where=dx > 0)
        rows[filled, 0] = slope
        rows[filled, 1] = y0 - slope * x0
    else:  # cubic in t = (xs - mean) / spread, per leaf
        count = np.bincount(leaves, minlength=branching).astype(np.float64)
        safe = np.maximum(count, 1)
        centre = np.bincount(leaves, xs, branching) / safe
        dx = xs - centre[leaves]
        spread = np.sqrt(np.bincount(leaves, dx * dx, branching) / safe)
        inverse = np.divide(1.0, spread, out=np.zeros(branching), where=spread > 0)
        t = dx * inverse[leaves]
        powers, moments = _cubic_sums(leaves, t, positions, branching)
        normal = np.stack([powers[:, i:i + 4] for i in range(4)], axis=1)  # (B, 4, 4) Hankel
        normal = normal + np.eye(4) * 1e-9 * np.maximum(powers[:, :1, None], 1)  # ridge: leaves of < 4 keys
        low_first = np.linalg.solve(normal, moments[..., None])[..., 0]
        rows[:, 0], rows[:, 1] = centre, inverse
        rows[:, 2:6] = low_first[:, ::-1]
    # an empty leaf predicts where the next filled leaf starts: right for monotone routing
    empty = count == 0
    if empty.any():
        first = np.full(branching, n, dtype=np.int64)
        np.minimum.at(first, leaves, np.arange(n))
        next_start = np.minimum.accumulate(first[::-1])[::-1]
        rows[empty] = 0.0
        if leaf_type == "cubic":
            rows[empty, 5] = next_start[empty]
        else:
            rows[empty, 1] = next_start[empty]
    return rows


def fit_rmi(keys: np.ndarray, top: str = "linear_spline", leaf: str = "linear", bits: int | None = 14,
            branching: int | None = None, centred: bool = True) -> Model:
    """A two-level RMI with `branching` leaves (default 2^bits; capped at the table size).

    A leaf's window (models.py's (lo, hi)) is lo = floor(prediction - err_lo), hi = lo +
    err_lo + err_hi, both errors measured on the table (`models.finish`). The
    leaf stores err_lo folded into its constant term and the width in its error slot, so
    the window costs what the RMI library's symmetric error does (one parameter per leaf)
    and is as tight as the two errors allow: the RMI library keeps one error per leaf
    and searches prediction +- error, wider by |err_lo - err_hi| (ours).

    centred: the leaves are fitted to position + 1/2, the middle of a key's slot [i, i + 1),
    so that the floor of the prediction is the nearest position rather than the one below
    (the RMI library truncates a fit to the position): a leaf whose fit is within half a
    key then has err_lo = 0, err_hi = 1, a window of one key plus its edges (ours; False is
    the library's fit)."""
    started = time.perf_counter()
    if top not in _TOP_CODE:
        raise ValueError(f"unknown RMI top model {top!r}; valid: {', '.join(TOP_TYPES)}")
    if leaf not in _LEAF_CODE:
        raise ValueError(f"unknown RMI leaf model {leaf!r}; valid: {', '.join(LEAF_TYPES)}")
    keys = np.ascontiguousarray(keys, dtype=KEY)
    n = keys.size
    branching = int(branching if branching else 2 ** int(bits))
    if branching < 1:
        raise ValueError(f"branching factor must be >= 1, got {branching}")
    branching = min(branching, n)
    kmin, kmax = keys[0], keys[-1]
    u = (keys - kmin).astype(np.float64)
    kmax_u = float(kmax - kmin)
    scale = 1.0 / kmax_u if kmax_u > 0 else 0.0
    xs = u * scale
    positions = np.arange(n, dtype=np.float64)
    route_bits = max(1, int(np.ceil(np.log2(branching)))) if branching > 1 else 1
    top_params, shift = _fit_top(top, u, xs, positions, route_bits, kmax_u, float(kmin))
    top_params = np.ascontiguousarray(top_params, dtype=np.float64)
    predict, window, route_all, windows = _rmi_functions(top, leaf)
    cdf = _cdf_params(top, top_params, branching, n)
    leaves = route_all(np.int64(_TOP_CODE[top]), top_params, np.uint64(shift), kmin, scale, np.int64(branching),
                       np.int64(n), keys, cdf)
    rows = _fit_leaves(leaf, leaves, u, xs, positions + 0.5 if centred else positions, branching, n)
    # the last element clamps a leaf's prediction: unclamped above (2^53) while the errors
    # are measured, so that folding err_lo into the constant term gives the same window
    # low end (floor(p) - err_lo) near the table's top; n once folded
    state = (np.int64(_TOP_CODE[top]), top_params, np.uint64(shift), kmin, kmax, scale, np.int64(branching),
             np.int64(n), np.int64(_LEAF_CODE[leaf]), rows, cdf, np.int64(2**53))

    def pack(err_lo, err_hi):
        rows[:, _CONSTANT_COLUMN[leaf]] -= err_lo  # the leaf now predicts the window's low end
        rows[:, -1] = err_lo + err_hi  # and its width
        return state[:-1] + (np.int64(n),)

    param_bytes = (_TOP_PARAMS[top] + 3) * FLOAT_BYTES + branching * (_LEAF_PARAMS[leaf] + 1) * FLOAT_BYTES
    params = {"top": top, "leaf": leaf, "branching": branching}
    if not centred:
        params["centred"] = False
    return finish("rmi", keys, predict, state, branching, param_bytes, params, started, window=window, pack=pack,
                  windows=windows)
