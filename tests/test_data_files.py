"""The shared data loader (pipeline/workloads/data_files.py): every format it reads, every
bad file it refuses with one line naming the file, and the refusal through
`python -m pipeline.run ... --dry-run` (exit 2, before Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.workloads import data_files as df

ROOT = Path(__file__).resolve().parents[1]


def _sosd(path: Path, keys, count: int | None = None, dtype="<u8") -> Path:
    with open(path, "wb") as f:
        np.array([len(keys) if count is None else count], dtype="<u8").tofile(f)
        np.asarray(keys, dtype=dtype).tofile(f)
    return path


# ---------------------------------------------------------------- formats that load


def test_keys_formats(tmp_path):
    keys = np.array([1, 5, 5, 9, 2**40], dtype=np.uint64)
    small = keys[:4].astype(np.uint32)
    cases = {
        "k_uint64": _sosd(tmp_path / "k_uint64", keys),
        "k_uint32": _sosd(tmp_path / "k_uint32", small, dtype="<u4"),
        "plain.bin": _sosd(tmp_path / "plain.bin", small, dtype="<u4"),  # width from the size
        "k.npy": tmp_path / "k.npy",
        "k.txt": tmp_path / "k.txt",
    }
    np.save(cases["k.npy"], keys)
    cases["k.txt"].write_text("\n".join(str(int(k)) for k in keys) + "\n\n")
    widths = {"k_uint64": 8, "k_uint32": 4, "plain.bin": 4, "k.npy": 8, "k.txt": 8}
    for name, path in cases.items():
        got = df.sorted_keys(path)
        expect = small if widths[name] == 4 and name != "k.txt" else keys
        assert got.keys.dtype == np.uint64 and got.keys.tolist() == expect.astype(np.uint64).tolist(), name
        assert got.key_bytes == widths[name], name
    assert isinstance(df.sorted_keys(cases["k_uint64"]).keys, np.memmap)  # no copy of a uint64 table


def test_unsorted_array_keeps_arrival_order(tmp_path):
    np.save(tmp_path / "a.npy", np.array([9, 1, 5], dtype=np.int64))
    assert df.unsorted_array(tmp_path / "a.npy").tolist() == [9, 1, 5]
    assert df.unsorted_array(_sosd(tmp_path / "a_uint32", [3, 2, 1], dtype="<u4")).tolist() == [3, 2, 1]


def test_stream_formats(tmp_path):
    (tmp_path / "w.txt").write_text("the\ncat\nthe\n\n42\n")
    assert df.stream(tmp_path / "w.txt").tolist() == [2, 1, 2, 0]  # ids of the sorted tokens: 42 < cat < the
    (tmp_path / "i.txt").write_text("7\n3\n7\n")
    assert df.stream(tmp_path / "i.txt").tolist() == [7, 3, 7]
    np.save(tmp_path / "s.npy", np.array([[1, 2], [2, 2]], dtype=np.int32))
    assert df.stream(tmp_path / "s.npy").tolist() == [1, 2, 2, 2]
    (tmp_path / "t.csv").write_text("user,item\n1,apple\n2,pear\n3,apple\n4,\n")
    assert df.stream(tmp_path / "t.csv", column="item").tolist() == [0, 1, 0]
    assert df.stream(tmp_path / "t.csv", column="user").tolist() == [1, 2, 3, 4]


def test_points_formats(tmp_path):
    pts = np.random.default_rng(0).normal(size=(20, 3))
    np.save(tmp_path / "p.npy", pts)
    assert np.allclose(df.points(tmp_path / "p.npy", dim=3), pts)
    np.save(tmp_path / "line.npy", pts[:, 0])
    assert df.points(tmp_path / "line.npy").shape == (20, 1)
    (tmp_path / "p.csv").write_text("name,x,y\n" + "".join(f"r{i},{a},{b}\n" for i, (a, b, _) in enumerate(pts)))
    assert np.allclose(df.points(tmp_path / "p.csv"), pts[:, :2])  # the numeric columns
    assert np.allclose(df.points(tmp_path / "p.csv", columns=["y"]), pts[:, 1:2])


# ---------------------------------------------------------------- the bad-data table

def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    return path


BAD = [
    # (loader, kwargs, file name, content, expected message)
    ("sorted_keys", {}, "missing_uint64", None, "no such file"),
    ("sorted_keys", {}, "empty_uint64", b"", "empty"),
    ("sorted_keys", {}, "short_uint64", np.array([5], "<u8").tobytes() + np.arange(4, dtype="<u8").tobytes(),
     "wrong length"),
    ("sorted_keys", {}, "half_uint64", np.array([4], "<u8").tobytes() + np.arange(4, dtype="<u4").tobytes(),
     "wrong length"),
    ("sorted_keys", {}, "tiny.bin", b"\x01\x02", "shorter than SOSD's 8-byte count"),
    ("sorted_keys", {}, "unsorted.npy", np.array([1, 2, 9, 3, 4], dtype=np.uint64),
     r"not sorted: position 3 \(3\) < position 2 \(9\)"),
    ("sorted_keys", {}, "unsorted.txt", "1\n5\n4\n", "not sorted: position 2"),
    ("sorted_keys", {}, "words.txt", "1\n2\nthree\n", "line 3 is not a non-negative integer"),
    ("sorted_keys", {}, "float.npy", np.array([1.0, 2.0]), "32- or 64-bit integers"),
    ("sorted_keys", {}, "nan.npy", np.array([1.0, np.nan]), "NaN at position 1"),
    ("sorted_keys", {}, "neg.npy", np.array([-3, 2], dtype=np.int64), "non-negative"),
    ("sorted_keys", {}, "one.npy", np.array([3], dtype=np.uint64), "at least 2 keys"),
    ("sorted_keys", {}, "matrix.npy", np.zeros((2, 2), dtype=np.uint64), "wrong dimension"),
    ("sorted_keys", {}, "pickle.npy", b"not an npy header at all", "not a readable .npy"),
    ("unsorted_array", {}, "empty.npy", np.array([], dtype=np.uint64), "at least 2 keys, got 0"),
    ("stream", {}, "missing.txt", None, "no such file"),
    ("stream", {}, "empty.txt", "", "no items"),
    ("stream", {}, "blank.txt", "\n\n  \n", "no items"),
    ("stream", {}, "floats.npy", np.array([0.5, 1.5]), "must hold integers"),
    ("stream", {}, "none.npy", np.array([], dtype=np.int64), "no items"),
    ("stream", {"column": "colour"}, "t.csv", "user,item\n1,a\n", "no column 'colour'; columns: user, item"),
    ("stream", {}, "nocol.csv", "user,item\n1,a\n", "needs a column name"),
    ("points", {}, "nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]), "NaN in row 1"),
    ("points", {}, "inf.csv", "x,y\n1,2\n3,inf\n", "inf in row 1"),
    ("points", {"dim": 2}, "d3.npy", np.zeros((4, 3)), "wrong dimension: points have d=3, the task needs d=2"),
    ("points", {}, "cube.npy", np.zeros((2, 2, 2)), "wrong dimension"),
    ("points", {"columns": ["z"]}, "p.csv", "x,y\n1,2\n", "no column 'z'"),
    ("points", {}, "text.csv", "name\na\nb\n", "no numeric columns"),
    ("points", {}, "p.json", "[1, 2]", "from .npy or .csv"),
    ("points", {"min_points": 5}, "few.npy", np.zeros((3, 2)), "3 points, the task needs at least 5"),
]


@pytest.mark.parametrize("loader,kwargs,name,content,message", BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_bad_data(tmp_path, loader, kwargs, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(df.DataFileError, match=message) as info:
        getattr(df, loader)(path, **kwargs)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


@pytest.mark.parametrize("loader,content,need", [
    ("sorted_keys", "1\n2\n3\n", "needs about"),
    ("stream", "a\nb\n", "needs about"),
    ("points", "x\n1\n2\n", "needs about"),
])
def test_file_larger_than_memory(tmp_path, monkeypatch, loader, content, need):
    monkeypatch.setattr(df, "available_memory", lambda: 4)  # 4 bytes free
    path = _write(tmp_path, "f.csv" if loader == "points" else "f.txt", content)
    with pytest.raises(df.DataFileError, match=rf"{need} .* of memory to load, only 4 B is available") as info:
        getattr(df, loader)(path)
    assert str(path) in str(info.value)


def test_uint32_widening_counts_memory(tmp_path, monkeypatch):
    path = _sosd(tmp_path / "k_uint32", np.arange(1000), dtype="<u4")
    monkeypatch.setattr(df, "available_memory", lambda: 4000)  # the uint64 copy needs 8000
    with pytest.raises(df.DataFileError, match="needs about 7.8 KB"):
        df.sorted_keys(path)


def test_large_sosd_loads_without_a_second_copy(tmp_path):
    """10M uint64 keys (80 MB): loading and checking them raises the peak RSS by less
    than 1.5x the file's size (memory-mapped, scanned in chunks)."""
    path = _sosd(tmp_path / "big_uint64", np.arange(10_000_000, dtype=np.uint64) * 3)
    script = (
        "import resource, sys\n"
        "from pipeline.workloads import data_files as df\n"
        "import numpy, pandas\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"k = df.sorted_keys({str(path)!r})\n"
        "assert int(k.keys[-1]) == 3 * (10_000_000 - 1)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    grown = int(out.stdout.strip())
    assert grown < 1.5 * path.stat().st_size, f"peak RSS grew by {grown} bytes for a {path.stat().st_size}-byte file"


# ---------------------------------------------------------------- through the workloads and the CLI


def _dry_run(task: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////tmp/test_data_files_unused.db"}
    return subprocess.run([sys.executable, "-m", "pipeline.run", task, *overrides, "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_dry_run_refuses_bad_files_with_exit_2(tmp_path):
    unsorted = _write(tmp_path, "keys.npy", np.array([1, 3, 2], dtype=np.uint64))
    nan = _write(tmp_path, "pts.npy", np.array([[0.0, 1.0], [np.nan, 1.0]] * 100))
    cases = [
        ("tasks/learned_index.yaml", f"params.keys_file={unsorted}", unsorted, "not sorted: position 2"),
        ("tasks/nn_uniform_2d.yaml", f"params.points_file={nan}", nan, "NaN in row 1"),
        ("tasks/cms.yaml", "params.stream.source=file", f"params.stream.path={tmp_path / 'nope.txt'}"),
    ]
    for task, *overrides in cases[:2]:
        override, path, message = overrides
        out = _dry_run(task, override)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, (task, out.stderr)
        assert str(path) in lines[0] and message in lines[0], lines[0]
    task, *overrides = cases[2]
    out = _dry_run(task, *overrides)
    assert out.returncode == 2 and "nope.txt" in out.stderr and "no such file" in out.stderr


def test_workload_validators_use_the_loader(tmp_path):
    """Each workload's params validator reads the user's file through data_files."""
    from pipeline.workloads import get

    bad_sosd = _write(tmp_path, "arr_uint64", np.array([9], "<u8").tobytes() + np.arange(3, dtype="<u8").tobytes())
    words = _write(tmp_path, "words.txt", "a\nb\na\n")
    cases = [
        ("wavelet_mapping", {"array_file": str(bad_sosd)}, "wrong length"),
        ("e2e_freq", {"setting": "file", "stream_file": str(words), "stream_length": 10}, "fewer than one stream"),
        ("e2e_freq", {"setting": "file", "stream_file": str(words), "universe": 1, "stream_length": 2},
         "2 distinct items, more than params.universe=1"),
        ("lego_eval", {"stream_file": str(tmp_path / "missing.txt")}, "no such file"),
        ("cms", {"stream": {"source": "file", "path": str(words), "column": "x"}}, "for .csv files"),
        ("e2e_nn", {"points_file": str(_write(tmp_path, "few.npy", np.zeros((5, 1)))), "n": 10}, "fewer than params.n=10"),
    ]
    for name, values, message in cases:
        workload = get(name)
        params = workload.make_params({**workload.smoke_params, **values})
        with pytest.raises(ValueError, match=message):
            workload.validate(params)


# ---------------------------------------------------------------- real data shipped in packages


def test_real_data_sets_load_through_the_loader(tmp_path):
    """scripts/real_data.py: at least two real data sets of each kind, from files that
    installed packages ship (no download), each read back by data_files."""
    pytest.importorskip("plotly")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_data", ROOT / "scripts" / "real_data.py")
    real_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_data)
    written = real_data.write_all(tmp_path)
    kinds: dict[str, int] = {}
    for name, kind in written.items():
        values = real_data.load(tmp_path / name, kind)
        assert len(values) >= 100, name
        kinds[kind.partition(":")[0]] = kinds.get(kind.partition(":")[0], 0) + 1
    assert all(kinds.get(k, 0) >= 2 for k in ("keys", "stream", "points", "array")), kinds
    keys = df.sorted_keys(tmp_path / "fonts_codepoints_uint32")
    assert keys.key_bytes == 4 and int(keys.keys[0]) == 32  # DejaVu maps the space first among code points >= 32
