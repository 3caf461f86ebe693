"""`python -m pipeline.bench NAME [options] --json PATH`: run a named benchmark.

Writes `{"bench", "machine", "command", "results"}` to PATH and prints the rows as a
table. `python -m pipeline.bench --list` names the benchmarks.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from pipeline.bench import BENCHES


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("numpy", "numba", "torch", "ray", "optuna", "mlflow", "datasketches", "pygm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cores": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(), "versions": versions}


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    cells = [[fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__)
        print("benchmarks: " + ", ".join(sorted(BENCHES)))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        print(f"error: unknown benchmark {name!r}; valid: {', '.join(sorted(BENCHES))}", file=sys.stderr)
        return 2
    json_path = None
    if "--json" in rest:
        i = rest.index("--json")
        if i + 1 >= len(rest):
            print("error: --json needs a path", file=sys.stderr)
            return 2
        json_path = Path(rest[i + 1])
        rest = rest[:i] + rest[i + 2:]
        if not json_path.parent.exists():
            print(f"error: --json: folder {json_path.parent} does not exist", file=sys.stderr)
            return 2
    from pipeline.errors import TaskError

    module = importlib.import_module(BENCHES[name])
    try:
        rows = module.main(rest)
    except TaskError as error:  # a bad --task file: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(rows))
    if json_path is not None:
        out = {"bench": name, "machine": machine(), "command": "python -m pipeline.bench " + " ".join(argv),
               "results": rows}
        json_path.write_text(json.dumps(out, indent=2, default=str))
        print(f"written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
