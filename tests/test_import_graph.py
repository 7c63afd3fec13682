"""The import graph of src/specllm: no circles, no module imports a stage script, no import runs upward.

An ast pass over every module (function-level, lazy imports included: they run too, and a circle through a
lazy import is still a circle a newcomer has to untangle). Three rules:

1. No circle: runner.run_main wraps every stage in specllm.cost, so whatever cost imports must not import
   errors back (issue 15 found errors -> cost -> stages/environment -> errors).
2. No module imports specllm.stages.*: a stage script is a thin main() over library code, run as
   `python -m specllm.stages.x` (by DVC, `make data`, bench/pipeline.py, the cli as a subprocess). What two
   stages share lives in a library package (evaluate/run.py, stability/runtime.py, data/prepare.py, ...).
   There are no exceptions: cli.py starts stages as processes, never imports them. Tests may import a
   stage's main() to run it; src may not.
3. No import runs upward, floor by floor (FLOORS, lowest first); a module may import its own floor and any
   below. A new module must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# Lowest first. A module's floor is the first entry whose prefix names it or a package above it.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("specllm", "specllm.errors", "specllm.runner", "specllm.io", "specllm.paths", "specllm.config", "specllm.metrics",
                "specllm.machine", "specllm.vocab", "specllm.schema", "specllm.precision",
                "specllm.cost", "specllm.envkey", "specllm.preflight", "specllm.artifacts",
                "specllm.fingerprint", "specllm.paperlint")),
    ("data", ("specllm.data",)),
    ("serialize", ("specllm.serialize",)),
    ("model", ("specllm.model",)),
    ("train/evaluate", ("specllm.train", "specllm.evaluate")),
    ("stability", ("specllm.stability",)),
    ("report", ("specllm.report", "specllm.claims", "specllm.verdicts")),
    ("stages", ("specllm.stages",)),
    ("tools", ("specllm.verify", "specllm.retrained", "specllm.compare", "specllm.bench", "specllm.cli")),
]


def modules(src: Path, package: str = "specllm") -> dict[str, Path]:
    """{dotted module name: file} of every module below src/<package> (a package is its __init__.py)."""
    out = {}
    for file in sorted((src / package).rglob("*.py")):
        parts = list(file.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file
    return out


def imports(name: str, file: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its body (the most specific one each time:
    `from pkg.a import b` is pkg.a.b when b is a module, else pkg.a)."""
    is_package = file.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(src: Path, package: str = "specllm") -> dict[str, set[str]]:
    known = modules(src, package)
    return {name: imports(name, file, known) for name, file in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def stage_imports(edges: dict[str, set[str]], stages: str = "specllm.stages") -> list[str]:
    """'a -> b' for every import of a stage script (specllm.stages.x) by any module."""
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if b.startswith(stages + "."))


def floor(name: str, floors=FLOORS) -> int | None:
    best = None
    for level, (_label, prefixes) in enumerate(floors):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), level)
    return None if best is None else best[1]


def upward(edges: dict[str, set[str]], floors=FLOORS) -> list[str]:
    """'a (floor) -> b (higher floor)' for every import that runs up."""
    out = []
    for a, targets in edges.items():
        for b in targets:
            fa, fb = floor(a, floors), floor(b, floors)
            if fa is not None and fb is not None and fb > fa:
                out.append(f"{a} ({floors[fa][0]}) -> {b} ({floors[fb][0]})")
    return sorted(out)


# ------------------------------------------------------------------------------ the real tree


def test_no_import_circle():
    found = circles(graph(SRC))
    assert not found, "import circles in src/specllm: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_a_stage_script():
    found = stage_imports(graph(SRC))
    assert not found, ("stage scripts imported as libraries (move what they share into a library package): "
                       + ", ".join(found))


def test_every_module_has_a_floor():
    missing = sorted(m for m in modules(SRC) if floor(m) is None)
    assert not missing, f"give these modules a floor in tests/test_import_graph.py FLOORS: {', '.join(missing)}"


def test_no_import_runs_upward():
    found = upward(graph(SRC))
    assert not found, "imports that run up the floors (data -> ... -> stages): " + "; ".join(found)


# ------------------------------------------------------------------------------ the rules bite


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_deliberate_circle_through_a_lazy_import_is_found(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "def run_main(main):\n    from pkg import cost\n    return cost\n",
        "cost.py": "from pkg.stages.environment import cpu_info\n",
        "stages/__init__.py": "",
        "stages/environment.py": "from pkg.errors import run_main\ncpu_info = None\n",
        "data.py": "from . import errors\n",
    })
    edges = graph(src, "pkg")
    assert edges["pkg.cost"] == {"pkg.stages.environment"} and edges["pkg.data"] == {"pkg.errors"}
    assert circles(edges) == [["pkg.cost", "pkg.errors", "pkg.stages.environment"]]
    assert stage_imports(edges, "pkg.stages") == ["pkg.cost -> pkg.stages.environment"]
    floors = [("ground", ("pkg", "pkg.errors", "pkg.cost")), ("data", ("pkg.data",)), ("stages", ("pkg.stages",))]
    assert upward(edges, floors) == ["pkg.cost (ground) -> pkg.stages.environment (stages)"]


def test_a_tree_without_circles_passes(tmp_path):
    src = _package(tmp_path, {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "x = 1\n"})
    assert circles(graph(src, "pkg")) == []


@pytest.mark.parametrize("name, expected", [("specllm.data.binning", "data"), ("specllm.serialize", "serialize"),
                                            ("specllm.model.serialized", "model"), ("specllm", "ground"),
                                            ("specllm.stages.report", "stages"), ("specllm.report.macros", "report")])
def test_floor_is_the_longest_matching_prefix(name, expected):
    assert FLOORS[floor(name)][0] == expected
