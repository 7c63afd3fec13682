"""dvc.yaml's code dependencies are exactly the imports: each stage's `deps:` must cover every module of
its script's import closure within `specllm` (an ast pass over src/specllm, lazy imports included), and
list nothing under src/ that the closure does not hold: a file it does not import, or a folder with a
module it does not import (list that folder's imported files instead).

A module missing from a stage's deps means that editing it reruns nothing and the paper keeps numbers
the current code would not produce (issue 13: train lacked model/load.py, evaluate lacked
preflight.py, report lacked stability/analysis.py). A module listed but not imported reruns the stage
(and everything downstream) for an edit that cannot change its outputs, and hides a stale list (issue
15: three stability stages kept stages/stability_probe.py after its workload moved). The test works for
any stage, new ones included.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGE_CMD = re.compile(r"python -m (specllm(?:\.\w+)+)")
# Not followed: specllm.cost is run bookkeeping that runner.run_main wraps around every stage; it
# writes only results/cost/<stage>.json (wall time, CPU time, peak memory, hardware), which differ on
# every run and which no result, macro or claim reads. Everything else a stage imports is listed.
BOOKKEEPING = frozenset({"specllm.cost"})


def module_file(name: str) -> Path | None:
    """src/ path of a specllm module or package (its __init__.py), or None when it is not one."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str) -> list[str]:
    """The packages Python imports before `name` (specllm, specllm.x, ...) and `name` itself."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


@cache
def direct_imports(name: str) -> frozenset[str]:
    """specllm modules a module imports anywhere in its body (function-level, lazy imports too)."""
    file = module_file(name)
    is_package = file is not None and file.name == "__init__.py"
    tree = ast.parse(file.read_text(), filename=str(file))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from specllm.x import y`: y is a submodule or a name defined in specllm.x
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "specllm":
                continue
            for mod in _package_inits(target):
                if module_file(mod) is not None:
                    found.add(mod)
    found.discard(name)
    return frozenset(found)


def closure(name: str) -> set[str]:
    """Every specllm module that importing (and running) `name` can execute."""
    seen = set(_package_inits(name))
    todo = list(seen)
    while todo:
        for mod in direct_imports(todo.pop()):
            if mod not in seen and mod not in BOOKKEEPING:
                seen.add(mod)
                todo.append(mod)
    return {m for m in seen if module_file(m) is not None}


def _has_code(file: Path) -> bool:
    """An __init__.py with only a docstring, `from __future__` and `__version__` runs nothing that
    can change a result; requiring it in every stage would only add noise."""
    for node in ast.parse(file.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["__version__"]:
            continue
        return True
    return False


def code_files(stage_module: str) -> list[str]:
    files = {module_file(m) for m in closure(stage_module)}
    return sorted(f.relative_to(ROOT).as_posix() for f in files if f.name != "__init__.py" or _has_code(f))


def stages() -> dict[str, dict]:
    """dvc.yaml's stages; a foreach stage once (its deps do not depend on the item's code)."""
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


def missing_code_deps(stage: dict) -> tuple[str, list[str]]:
    body = stage.get("do", stage)
    match = STAGE_CMD.search(body["cmd"])
    assert match, f"cmd {body['cmd']!r} does not run a specllm module"
    deps = [str(d) for d in body.get("deps", [])]
    return match.group(1), [f for f in code_files(match.group(1)) if not covered(f, deps)]


def closure_files(stage_module: str) -> set[str]:
    """Every file of the closure, package __init__.py files without code included (listing one is allowed)."""
    return {module_file(m).relative_to(ROOT).as_posix() for m in closure(stage_module)}


def extra_code_deps(stage: dict) -> tuple[str, list[str]]:
    """The stage's deps under src/ that its script does not import (files, or folders not wholly imported)."""
    body = stage.get("do", stage)
    module = STAGE_CMD.search(body["cmd"]).group(1)
    imported = closure_files(module)
    extra = []
    for dep in (str(d) for d in body.get("deps", [])):
        if not dep.startswith("src/"):
            continue
        path = ROOT / dep
        if path.is_dir():
            unused = sorted(f.relative_to(ROOT).as_posix() for f in path.rglob("*.py")
                            if f.relative_to(ROOT).as_posix() not in imported)
            if unused:
                extra.append(f"{dep} (not imported: {', '.join(unused)})")
        elif dep not in imported:
            extra.append(dep)
    return module, extra


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_list_only_imported_code(name):
    module, extra = extra_code_deps(stages()[name])
    assert not extra, (f"dvc.yaml stage {name!r} ({module}) depends on code its script does not import: "
                       f"{'; '.join(extra)}; drop them or list the folder's imported files (python tests/fix_dvc_deps.py does)")


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_the_import_closure(name):
    module, missing = missing_code_deps(stages()[name])
    assert not missing, (f"dvc.yaml stage {name!r} ({module}) imports code its deps do not list: "
                         f"{', '.join(missing)}; add them to the stage's deps (python tests/fix_dvc_deps.py does)")


def test_closure_follows_from_imports_and_lazy_imports():
    """The pass finds what issue 13 found missing, so an empty `missing` list means something."""
    train = code_files("specllm.stages.train")
    assert "src/specllm/model/load.py" in train and "src/specllm/serialize.py" in train
    assert "src/specllm/preflight.py" in code_files("specllm.stages.evaluate")
    assert "src/specllm/stability/analysis.py" in code_files("specllm.stages.report")
    # a stage whose deps drop a module its script imports fails, naming it
    module, missing = missing_code_deps({"cmd": "python -m specllm.stages.select --x",
                                         "deps": ["src/specllm/stages/select.py"]})
    assert module == "specllm.stages.select" and "src/specllm/evaluate/select.py" in missing
    # a stage whose deps keep a module it no longer imports, or a folder it imports only part of, fails
    module, extra = extra_code_deps({"cmd": "python -m specllm.stages.select",
                                     "deps": ["src/specllm/stages/select.py", "src/specllm/evaluate/select.py",
                                              "src/specllm/stages/stability_probe.py", "src/specllm/stability",
                                              "src/specllm/__init__.py", "data/prepared"]})
    assert extra[0] == "src/specllm/stages/stability_probe.py" and len(extra) == 2
    assert extra[1].startswith("src/specllm/stability (not imported: ") and "stability/dpo.py" in extra[1]


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_stage_depends_on_the_environment_key(name):
    """A changed lock, torch or CUDA build must be visible to `dvc status` and to a restore."""
    body = stages()[name].get("do", stages()[name])
    assert "environment.key.json" in [str(d) for d in body.get("deps", [])], (
        f"dvc.yaml stage {name!r} does not depend on environment.key.json (specllm.envkey)")
