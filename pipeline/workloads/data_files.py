"""A user's data files, read the same way by every workload, with the checks a file
nobody here wrote needs.

Four kinds of data, each in the formats researchers bring:

- sorted keys (`learned_index`): SOSD's binary format (an 8-byte little-endian count,
  then the keys as little-endian uint32 or uint64; the width from `uint32` / `uint64` in
  the file name as SOSD names its files, e.g. `books_200M_uint32`, else from the size),
  a `.npy` of integers, or a text file with one integer per line;
- unsorted arrays (`wavelet_mapping`): the same formats, in arrival order;
- streams (`cms`, `lego_eval`, `e2e_freq`): a text file with one item per line (any
  string), a `.npy` of integers, or one column, by name, of a CSV file;
- points (`e2e_nn`): a `.npy` of shape (n, d) or the numeric columns of a CSV file.

SOSD files and `.npy` are memory-mapped, so a 200M-key uint64 table is read without a
second copy of it in RAM (keys wider on disk than uint64 do not exist; uint32 keys are
widened to uint64, which the size check below counts).

Every problem is a `DataFileError` (a ValueError) whose message is one line naming the
file: the pipeline reports it and exits 2 before Ray starts (`Workload.validate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Elements checked at a time when scanning a memory-mapped file (sortedness, NaN): a
#: bounded temporary instead of a full-size boolean array.
CHUNK = 1 << 22
TEXT_SUFFIXES = (".txt", ".tsv", ".dat", ".lst")
CSV_SUFFIXES = (".csv", ".csv.gz")


class DataFileError(ValueError):
    """A user's data file cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Keys:
    """Integer keys as uint64 (memory-mapped where the file allows) and their width on disk."""

    keys: np.ndarray
    key_bytes: int  # 4 or 8: the width in the user's file (the denominator of space fractions)
    name: str


# ---------------------------------------------------------------- shared checks


def _label(what: str, path: Path) -> str:
    return f"{what} {path}"


def check_file(path: str | Path, what: str = "data file") -> Path:
    """The path, if it is a readable, non-empty file; DataFileError otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataFileError(f"{_label(what, path)}: cannot read: no such file (does not exist)")
    if not path.is_file():
        raise DataFileError(f"{_label(what, path)}: not a file")
    if not os.access(path, os.R_OK):
        raise DataFileError(f"{_label(what, path)}: not readable (permissions)")
    if path.stat().st_size == 0:
        raise DataFileError(f"{_label(what, path)}: no items (the file is empty, 0 bytes)")
    return path


def available_memory() -> int:
    """Bytes of memory a process can still take without swapping (MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_memory(path: Path, need: int, what: str) -> None:
    """DataFileError when reading `path` would need more memory than is available."""
    free = available_memory()
    if need > free:
        raise DataFileError(f"{_label(what, path)}: needs about {_human(need)} of memory to load, "
                            f"only {_human(free)} is available")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def _is_text(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a corrupt header or a pickle is the user's error, not ours
        raise DataFileError(f"{_label(what, path)}: not a readable .npy file ({_one_line(exc)})") from None
    return array  # an empty array is refused by the caller, in its own terms


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


# ---------------------------------------------------------------- integer arrays (keys, unsorted arrays)


def sosd_width(path: Path, width: int | None = None) -> int:
    """Key width in bytes of a SOSD file: `width` if given, else `uint32` / `uint64` in the
    file name (SOSD's naming), else the one of 4 or 8 the file's size agrees with."""
    what = "SOSD file"
    size = path.stat().st_size
    if size < 8:
        raise DataFileError(f"{_label(what, path)}: {size} bytes, shorter than SOSD's 8-byte count")
    count = int(np.fromfile(path, dtype="<u8", count=1)[0])
    if count == 0:
        raise DataFileError(f"{_label(what, path)}: the count is 0: no keys")
    if width is None:
        width = 4 if "uint32" in path.name else 8 if "uint64" in path.name else None
    if width is None:
        width = (size - 8) // count if (size - 8) % count == 0 else 0
    if width not in (4, 8) or size != 8 + count * width:
        hint = f" (uint{8 * width} from the name)" if width in (4, 8) else ""
        raise DataFileError(f"{_label(what, path)}: wrong length (or wrong key width): a count of {count} keys{hint} needs "
                            f"{8 + count * (width if width in (4, 8) else 8)} bytes, the file has {size}; "
                            f"SOSD is an 8-byte count then 4- or 8-byte keys")
    return width


def read_sosd(path: str | Path, width: int | None = None) -> np.ndarray:
    """The keys of a SOSD file, memory-mapped (little-endian uint32 or uint64)."""
    path = check_file(path, "SOSD file")
    width = sosd_width(path, width)
    count = (path.stat().st_size - 8) // width
    return np.memmap(path, dtype="<u4" if width == 4 else "<u8", mode="r", offset=8, shape=(count,))


def write_sosd(path: str | Path, keys: np.ndarray) -> None:
    """Write keys in SOSD's format; the width is the dtype's (uint32 or uint64)."""
    keys = np.asarray(keys)
    if keys.dtype not in (np.uint32, np.uint64):
        raise ValueError(f"SOSD keys are uint32 or uint64, got {keys.dtype}")
    with open(path, "wb") as f:
        np.array([keys.size], dtype="<u8").tofile(f)
        keys.astype(keys.dtype.newbyteorder("<"), copy=False).tofile(f)


def _read_text_integers(path: Path, what: str) -> np.ndarray:
    # A text table is parsed whole: about 3x its size while parsing (the ints and pandas' buffers).
    check_memory(path, 3 * path.stat().st_size, what)
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=True, comment=None,
                            names=["value"], usecols=[0], engine="c")
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{_label(what, path)}: no values (only blank lines)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataFileError(f"{_label(what, path)}: not one integer per line ({_one_line(exc)})") from None
    text = frame["value"].str.strip()
    try:
        return text.astype(np.uint64).to_numpy()
    except (ValueError, OverflowError):
        pass
    bad = int(np.flatnonzero(~text.str.fullmatch(r"\d+").to_numpy(dtype=bool))[0]) if len(text) else 0
    raise DataFileError(f"{_label(what, path)}: line {bad + 1} is not a non-negative integer: {text.iloc[bad]!r}"
                        if len(text) else f"{_label(what, path)}: no values")


def read_integers(path: str | Path, what: str = "keys file", width: int | None = None) -> tuple[np.ndarray, int]:
    """(values, width on disk) of an integer file in any accepted format: `.npy`, text
    (one integer per line: .txt, .tsv, .dat, .lst, .csv with one column), else SOSD binary."""
    path = check_file(path, what)
    if path.suffix.lower() == ".npy":
        raw = _load_npy(path, what)
    elif _is_text(path) or _is_csv(path):
        raw = _read_text_integers(path, what)
        # a text table has no width: 4 bytes if every key fits, as SOSD would store it
        return raw, 4 if raw.size and int(raw.max()) < 2**32 else 8
    else:
        try:
            raw = read_sosd(path, width)
        except DataFileError as err:  # name the file as the task does
            raise DataFileError(str(err).replace("SOSD file", what, 1)) from None
    return raw, raw.dtype.itemsize


def _as_uint64(raw: np.ndarray, path: Path, what: str) -> tuple[np.ndarray, int]:
    if raw.ndim != 1:
        raise DataFileError(f"{_label(what, path)}: wrong dimension: integers must be a 1-D array, got shape {raw.shape}")
    if raw.dtype.kind == "f":
        nan = _first(raw, np.isnan)
        if nan is not None:
            raise DataFileError(f"{_label(what, path)}: NaN at position {nan}")
        raise DataFileError(f"{_label(what, path)}: keys must be 32- or 64-bit integers, got {raw.dtype}")
    if raw.dtype.kind not in "iu" or raw.dtype.itemsize not in (4, 8):
        raise DataFileError(f"{_label(what, path)}: wrong key width: keys must be 32- or 64-bit integers, got {raw.dtype}")
    if raw.dtype.kind == "i":
        neg = _first(raw, lambda c: c < 0)
        if neg is not None:
            raise DataFileError(f"{_label(what, path)}: keys must be non-negative, position {neg} is {int(raw[neg])}")
    width = raw.dtype.itemsize
    if width == 8 and raw.dtype.isnative:  # no copy: a memory map stays one
        return raw.view(np.uint64), width
    check_memory(path, raw.size * 8, what)  # widening uint32 makes a uint64 copy
    return raw.astype(np.uint64), width


def _first(raw: np.ndarray, predicate) -> int | None:
    """Position of the first element where `predicate` holds, scanning in chunks."""
    for start in range(0, raw.size, CHUNK):
        hit = np.flatnonzero(predicate(np.asarray(raw[start:start + CHUNK])))
        if hit.size:
            return start + int(hit[0])
    return None


def first_descent(keys: np.ndarray) -> int | None:
    """The first i with keys[i] < keys[i - 1], or None when sorted (chunked scan)."""
    for start in range(1, keys.size, CHUNK):
        stop = min(keys.size, start + CHUNK)
        hit = np.flatnonzero(np.asarray(keys[start:stop]) < np.asarray(keys[start - 1:stop - 1]))
        if hit.size:
            return start + int(hit[0])
    return None


def sorted_keys(path: str | Path, what: str = "keys_file", width: int | None = None, min_keys: int = 2) -> Keys:
    """A user's sorted table: uint64 keys (a memory map for uint64 SOSD / `.npy`), checked:
    integers, non-negative, at least `min_keys`, non-decreasing (the message names the
    first position out of order). Duplicates are fine: searches return the lower bound."""
    path = Path(path).expanduser()
    raw, _ = read_integers(path, what, width)
    keys, width = _as_uint64(raw, path, what)
    if keys.size < min_keys:
        raise DataFileError(f"{_label(what, path)}: a table needs at least {min_keys} keys, got {keys.size}")
    i = first_descent(keys)
    if i is not None:
        raise DataFileError(f"{_label(what, path)}: keys are not sorted: position {i} ({int(keys[i])}) < "
                            f"position {i - 1} ({int(keys[i - 1])})")
    return Keys(keys=keys, key_bytes=width, name=path.stem)


def unsorted_array(path: str | Path, what: str = "array_file", width: int | None = None,
                   max_size: int | None = None) -> np.ndarray:
    """A user's array of integer keys in arrival order, as uint64 (formats of `sorted_keys`)."""
    path = Path(path).expanduser()
    raw, _ = read_integers(path, what, width)
    keys, _ = _as_uint64(raw, path, what)
    if keys.size < 2:
        raise DataFileError(f"{_label(what, path)}: an array needs at least 2 keys, got {keys.size}")
    if max_size is not None and keys.size > max_size:
        raise DataFileError(f"{_label(what, path)}: {keys.size} keys, more than the {max_size} supported")
    return keys


# ---------------------------------------------------------------- streams


def _csv_columns(path: Path, what: str) -> list[str]:
    import pandas as pd

    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{_label(what, path)}: no header row") from None
    except (UnicodeDecodeError, pd.errors.ParserError, OSError) as exc:
        raise DataFileError(f"{_label(what, path)}: not a readable CSV file ({_one_line(exc)})") from None


def _csv_column(path: Path, column: str, what: str):
    import pandas as pd

    columns = _csv_columns(path, what)
    if column not in columns:
        raise DataFileError(f"{_label(what, path)}: no column {column!r}; columns: {', '.join(map(str, columns))}")
    check_memory(path, 3 * path.stat().st_size, what)
    return pd.read_csv(path, usecols=[column])[column]


def _tokens_to_ids(values) -> np.ndarray:
    """Items as int64 ids: integers stand for themselves; any other strings get the ids
    of their sorted order (0 for the smallest string)."""
    import pandas as pd

    series = pd.Series(values)
    if series.dtype.kind in "iu":
        return series.to_numpy(dtype=np.int64)
    text = series.astype(str).str.strip()
    as_int = pd.to_numeric(text, errors="coerce")
    if not as_int.isna().any() and (as_int == as_int.round()).all() and text.str.fullmatch(r"-?\d+").all():
        return text.astype(np.int64).to_numpy()
    codes, _ = pd.factorize(text, sort=True)
    return codes.astype(np.int64)


def stream(path: str | Path, what: str = "stream_file", column: str | None = None) -> np.ndarray:
    """A user's stream as int64 item ids: a `.npy` of integers (memory-mapped when it is
    int64 already), one item per line of a text file (blank lines skipped), or the column
    `column` of a CSV file (empty cells skipped). DataFileError on a missing, empty or
    unreadable file, a float `.npy`, or a column that does not exist."""
    path = check_file(path, what)
    if path.suffix.lower() == ".npy":
        if column:
            raise DataFileError(f"{_label(what, path)}: a column ({column!r}) is for CSV files, not .npy")
        items = _load_npy(path, what)
        if items.dtype.kind not in "iu":
            raise DataFileError(f"{_label(what, path)}: a .npy stream must hold integers, not {items.dtype}")
        items = items.reshape(-1)
        if items.size == 0:
            raise DataFileError(f"{_label(what, path)}: no items")
        return items if items.dtype == np.int64 else items.astype(np.int64)
    if _is_csv(path) and column is None:
        raise DataFileError(f"{_label(what, path)}: a CSV stream needs a column name "
                            f"(columns: {', '.join(map(str, _csv_columns(path, what)))})")
    if column is not None:
        if not _is_csv(path):
            raise DataFileError(f"{_label(what, path)}: a column ({column!r}) is for .csv files")
        values = _csv_column(path, column, what).dropna()
    else:
        check_memory(path, 4 * path.stat().st_size, what)  # Python strings of every line
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{_label(what, path)}: not a text file ({_one_line(exc)})") from None
        values = [line for line in (ln.strip() for ln in lines) if line]
    if len(values) == 0:
        raise DataFileError(f"{_label(what, path)}: no items")
    return _tokens_to_ids(values)


# ---------------------------------------------------------------- points


def points(path: str | Path, what: str = "points_file", dim: int | None = None,
           columns: list[str] | None = None, min_points: int = 1) -> np.ndarray:
    """A user's points as float64 (n, d): a `.npy` of shape (n, d) (or (n,) for d = 1),
    or the numeric columns of a CSV file (`columns` picks some by name). DataFileError on
    NaN / inf (naming the first row), a dimension other than `dim`, too few points."""
    path = check_file(path, what)
    if path.suffix.lower() == ".npy":
        if columns:
            raise DataFileError(f"{_label(what, path)}: columns ({columns}) are for CSV files, not .npy")
        raw = _load_npy(path, what)
        if raw.size == 0:
            raise DataFileError(f"{_label(what, path)}: no points (shape {raw.shape})")
        if raw.dtype.kind not in "iuf":
            raise DataFileError(f"{_label(what, path)}: points must be numbers, not {raw.dtype}")
        if raw.ndim == 1:
            raw = raw.reshape(-1, 1)
        if raw.ndim != 2:
            raise DataFileError(f"{_label(what, path)}: wrong dimension: points must be an (n, d) array, got shape {raw.shape}")
        check_memory(path, raw.shape[0] * raw.shape[1] * 8, what)
    elif _is_csv(path):
        import pandas as pd

        available = _csv_columns(path, what)
        missing = [c for c in (columns or []) if c not in available]
        if missing:
            raise DataFileError(f"{_label(what, path)}: no column {missing[0]!r}; columns: {', '.join(map(str, available))}")
        check_memory(path, 3 * path.stat().st_size, what)
        frame = pd.read_csv(path, usecols=columns or None)
        if columns is None:
            frame = frame.select_dtypes("number")
            if frame.shape[1] == 0:
                raise DataFileError(f"{_label(what, path)}: no numeric columns; columns: {', '.join(map(str, available))}")
        else:
            bad = [c for c in columns if frame[c].dtype.kind not in "iuf"]
            if bad:
                raise DataFileError(f"{_label(what, path)}: column {bad[0]!r} is not numeric ({frame[bad[0]].dtype})")
        raw = frame.to_numpy(dtype=np.float64)
    else:
        raise DataFileError(f"{_label(what, path)}: points are read from .npy or .csv files, not {path.suffix or 'no suffix'}")
    bad_row = _first(raw.reshape(-1), lambda c: ~np.isfinite(c)) if raw.dtype.kind == "f" else None
    if bad_row is not None:
        row = bad_row // raw.shape[1]
        kind = "NaN" if np.isnan(raw.reshape(-1)[bad_row]) else "inf"
        raise DataFileError(f"{_label(what, path)}: {kind} in row {row} (points must be finite)")
    if dim is not None and raw.shape[1] != dim:
        raise DataFileError(f"{_label(what, path)}: wrong dimension: points have d={raw.shape[1]}, the task needs d={dim}")
    if raw.shape[0] < min_points:
        raise DataFileError(f"{_label(what, path)}: {raw.shape[0]} points, the task needs at least {min_points}")
    return np.asarray(raw, dtype=np.float64)
