"""The floors of the house (docs/architecture.md): read every module's imports with
`ast` (function-local imports included: they run too, only later) and check that

- no module under pipeline/workloads imports ray or mlflow (STYLE.md, rule 1);
- no module imports one on a higher floor of `FLOORS`;
- no import cycle joins pipeline modules.

Nothing is imported or run: the test reads source text, in milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

#: The floors, bottom first. A module may import its own floor and those below it.
#: A name stands for that module, and a name ending in ".*" for every module under
#: that package (the most specific entry wins). docs/architecture.md shows the same map.
FLOORS: list[tuple[str, ...]] = [
    # 0: error types; imports nothing of the pipeline
    ("pipeline.errors",),
    # 1: shared bottom: places on disk, Pareto sets, plots, the workload contract
    ("pipeline", "pipeline.paths", "pipeline.pareto", "pipeline.plots", "pipeline.plots.*",
     "pipeline.workloads.base"),
    # 2: the science: numpy / numba / torch code, no Ray, no MLflow
    ("pipeline.workloads.*",),
    # 3: the registry: name -> workload, imported on first use
    ("pipeline.workloads",),
    # 4: search spaces (models, Optuna distributions, constraints)
    ("pipeline.space",),
    # 5: task files: load, merge, validate against the workload
    ("pipeline.config",),
    # 6: the MLflow store (no Ray), and the MLflow artifacts a trial's params may name
    ("pipeline.mlflow_store", "pipeline.artifacts"),
    # 7: one trial under Ray Train / Tune
    ("pipeline.trial",),
    # 8: MLflow logging and the Ray Tune driver
    ("pipeline.tracking", "pipeline.driver"),
    # 9: entry points: the command line, one trial in-process, benches, clusters
    ("pipeline.run", "pipeline.local", "pipeline.bench", "pipeline.bench.*", "pipeline.cluster",
     "pipeline.cluster.*"),
]

FORBIDDEN_IN_WORKLOADS = ("ray", "mlflow")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the file; `from P import X`
    names P.X where X is a module of P, else P."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                child = f"{base}.{alias.name}"
                out.append((child if base.startswith("pipeline") and _exists(child) else base, node.lineno))
    return out


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(name: str) -> int | None:
    best, best_len = None, -1
    for level, names in enumerate(FLOORS):
        for entry in names:
            if entry.endswith(".*"):
                prefix = entry[:-1]
                hit = name.startswith(prefix) and len(prefix) > best_len
                size = len(prefix)
            else:
                hit = name == entry and len(entry) + 1 > best_len
                size = len(entry) + 1
            if hit:
                best, best_len = level, size
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module
    importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_floor():
    missing = sorted(name for name in _graph() if floor_of(name) is None)
    assert not missing, f"add these modules to FLOORS in {__file__}: {missing}"


def forbidden_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    return sorted({f"{name}:{line} imports {target}"
                   for name, imports in graph.items() if name.startswith("pipeline.workloads")
                   for target, line in imports if target.split(".")[0] in FORBIDDEN_IN_WORKLOADS})


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = set()
    for name, imports in graph.items():
        own = floor_of(name)
        for target, line in imports:
            other = floor_of(target) if target.startswith("pipeline") else None
            if own is not None and other is not None and other > own:
                bad.add(f"{name}:{line} (floor {own}) imports {target} (floor {other})")
    return sorted(bad)


def test_workloads_import_neither_ray_nor_mlflow():
    bad = forbidden_imports(_graph())
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_higher_floor():
    bad = upward_imports(_graph())
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {name: {t for t, _ in imports if t.startswith("pipeline") and t != name}
             for name, imports in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_what_they_check():
    """The checks above would pass vacuously if the reader found nothing: pin a few known
    edges, and feed each check a made-up graph that breaks it."""
    graph = _graph()
    assert any(t == "pipeline.space" for t, _ in graph["pipeline.config"])
    assert any(t == "pipeline.trial" for t, _ in graph["pipeline.driver"])  # function-local
    assert any(t == "pipeline.workloads.base" for t, _ in graph["pipeline.workloads.sketches"])
    assert floor_of("pipeline.workloads.base") < floor_of("pipeline.workloads.sketches") < floor_of("pipeline.workloads")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    made_up = {"pipeline.workloads.x.y": [("ray.tune", 3), ("pipeline.config", 4), ("numpy", 5)],
               "pipeline.space": [("pipeline.errors", 1)]}
    assert forbidden_imports(made_up) == ["pipeline.workloads.x.y:3 imports ray.tune"]
    assert upward_imports(made_up) == ["pipeline.workloads.x.y:4 (floor 2) imports pipeline.config (floor 5)"]
