"""Make dvc.yaml's code deps equal each stage script's import closure (what tests/test_dvc_deps.py checks).

    python tests/fix_dvc_deps.py      # edits dvc.yaml in place, keeping its comments and anchors

Adds the src files a stage imports but does not list, drops the src files it lists but does not import, and
replaces a src folder the stage imports only in part by the files it imports. Review the diff, then commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))
import test_dvc_deps as t  # noqa: E402


def fix(dvc_yaml: Path = t.ROOT / "dvc.yaml") -> list[str]:
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's own layout
    doc = rt.load(dvc_yaml.read_text())
    changes = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        match = t.STAGE_CMD.search(body["cmd"])
        if not match:
            continue
        module, deps = match.group(1), body["deps"]
        imported = t.closure_files(module)
        for dep in [str(d) for d in deps]:
            if not dep.startswith("src/"):
                continue
            path = t.ROOT / dep
            keep = (dep in imported) if not path.is_dir() else all(
                f.relative_to(t.ROOT).as_posix() in imported for f in path.rglob("*.py"))
            if not keep:
                deps.remove(dep)
                changes.append(f"{name}: - {dep}")
        for file in t.code_files(module):
            if not t.covered(file, [str(d) for d in deps]):
                last_src = max((i for i, d in enumerate(deps) if str(d).startswith("src/")), default=len(deps) - 1)
                deps.insert(last_src + 1, file)
                changes.append(f"{name}: + {file}")
    with dvc_yaml.open("w") as fh:
        rt.dump(doc, fh)
    return changes


if __name__ == "__main__":
    print("\n".join(fix()) or "dvc.yaml's code deps already match the imports")
