"""Real public data sets that installed packages ship inside their wheels (nothing is
downloaded), written as files in the formats `pipeline/workloads/data_files.py` reads, so
every workload can be run on data nobody here generated:

    .venv/bin/python scripts/real_data.py OUT_DIR        # writes the files, prints a table

keys (sorted unique integers: learned_index)
  fonts_codepoints_uint32   SOSD: every Unicode code point mapped by matplotlib's DejaVu fonts
  gapminder_pop_uint64      SOSD: the distinct populations of plotly's Gapminder table (1952-2007)
  dem_elevation_keys.txt    text: the distinct elevations of matplotlib's Jacksboro fault DEM
streams (cms, lego_eval, e2e_freq)
  python_docs_words.txt     one word a line: the text of CPython's own documentation topics (pydoc_data)
  sklearn_descr_words.txt   one word a line: scikit-learn's data set descriptions (descr/*.rst)
  gapminder.csv             column `country`: plotly's Gapminder table
  python_stdlib_names.txt   one name a line: every identifier of CPython's standard library
                            sources (Lib/**/*.py outside folders named test*, in path order): ~1.3M
                            arrivals, ~50K distinct on 3.11 (the exact counts follow the version)
points (e2e_nn)
  gapminder_2d.npy          (log10 GDP per capita, life expectancy) of plotly's Gapminder rows
  iris_petals.csv           columns petal_length, petal_width of scikit-learn's iris
  wine.npy                  scikit-learn's wine recognition data, 13 features
unsorted arrays (wavelet_mapping)
  dem_elevation.npy         matplotlib's Jacksboro fault DEM elevations, row by row (arrival order)
  goog_volume_uint64        SOSD: daily trading volumes of matplotlib's goog.npz, in date order

The packages: matplotlib, plotly, scikit-learn (project dependencies) and CPython's
`pydoc_data`. A missing package skips its files with a note.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from pathlib import Path

import numpy as np

from pipeline.workloads import data_files

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def fonts_codepoints() -> np.ndarray:
    import matplotlib
    from matplotlib.ft2font import FT2Font

    codes: set[int] = set()
    for path in sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVu*.ttf"))):
        codes |= set(FT2Font(path).get_charmap())
    return np.array(sorted(codes), dtype=np.uint32)


def gapminder():
    import plotly.data

    return plotly.data.gapminder()


def dem_elevation() -> np.ndarray:
    from matplotlib import cbook

    return np.asarray(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]).reshape(-1).astype(np.int64)


def goog_volume() -> np.ndarray:
    from matplotlib import cbook

    return np.asarray(cbook.get_sample_data("goog.npz")["price_data"]["volume"]).astype(np.uint64)


def python_docs_words() -> list[str]:
    from pydoc_data.topics import topics

    return _words(" ".join(topics[key] for key in sorted(topics)))


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def python_stdlib_names() -> list[str]:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    names: list[str] = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or any(part.startswith("test") for part in parts[:-1]):
            continue
        names += IDENTIFIER.findall(path.read_text(encoding="utf-8", errors="ignore"))
    return names


def sklearn_descr_words() -> list[str]:
    import sklearn

    paths = sorted(glob.glob(os.path.join(os.path.dirname(sklearn.__file__), "datasets", "descr", "*.rst")))
    return _words(" ".join(Path(p).read_text() for p in paths))


def write_all(out: Path) -> dict[str, str]:
    """Write every data set whose package is installed; {file name: kind}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def attempt(name: str, kind: str, make) -> None:
        try:
            make(out / name)
            written[name] = kind
        except ImportError as err:
            print(f"skipped {name}: {err}", file=sys.stderr)

    attempt("fonts_codepoints_uint32", "keys", lambda p: data_files.write_sosd(p, fonts_codepoints()))
    attempt("gapminder_pop_uint64", "keys",
            lambda p: data_files.write_sosd(p, np.unique(gapminder()["pop"].to_numpy()).astype(np.uint64)))
    attempt("dem_elevation_keys.txt", "keys",
            lambda p: p.write_text("\n".join(map(str, np.unique(dem_elevation()))) + "\n"))
    attempt("python_docs_words.txt", "stream", lambda p: p.write_text("\n".join(python_docs_words()) + "\n"))
    attempt("sklearn_descr_words.txt", "stream", lambda p: p.write_text("\n".join(sklearn_descr_words()) + "\n"))
    attempt("python_stdlib_names.txt", "stream", lambda p: p.write_text("\n".join(python_stdlib_names()) + "\n"))
    attempt("gapminder.csv", "stream:country", lambda p: gapminder().to_csv(p, index=False))

    def gap_points(p: Path) -> None:
        g = gapminder()
        np.save(p, np.stack([np.log10(g["gdpPercap"].to_numpy()), g["lifeExp"].to_numpy()], axis=1))

    def iris(p: Path) -> None:
        from sklearn.datasets import load_iris

        frame = load_iris(as_frame=True).frame
        frame = frame.rename(columns={"petal length (cm)": "petal_length", "petal width (cm)": "petal_width"})
        frame[["petal_length", "petal_width"]].to_csv(p, index=False)

    def wine(p: Path) -> None:
        from sklearn.datasets import load_wine

        np.save(p, load_wine().data)

    attempt("gapminder_2d.npy", "points", gap_points)
    attempt("iris_petals.csv", "points", iris)
    attempt("wine.npy", "points", wine)
    attempt("dem_elevation.npy", "array", lambda p: np.save(p, dem_elevation()))
    attempt("goog_volume_uint64", "array", lambda p: data_files.write_sosd(p, goog_volume()))
    return written


def load(path: Path, kind: str):
    """The file read back through the shared loader, as its workload would."""
    if kind == "keys":
        return data_files.sorted_keys(path).keys
    if kind.startswith("stream"):
        column = kind.partition(":")[2] or None
        return data_files.stream(path, column=column)
    if kind == "points":
        return data_files.points(path)
    return data_files.unsorted_array(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.splitlines()[4].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    print(f"{'file':<26} {'kind':<15} {'size':>9} {'distinct':>9}  shape")
    for name, kind in write_all(out).items():
        values = load(out / name, kind)
        distinct = len(np.unique(values)) if values.ndim == 1 else len(np.unique(values, axis=0))
        print(f"{name:<26} {kind:<15} {values.shape[0]:>9} {distinct:>9}  {values.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
