"""The software environment as a DVC input: environment.key.json, a dependency of every stage.

    python -m specllm.envkey        (run by `make setup`, `make verify`, `make paper`, `specllm check`)

The key holds what decides the numbers a stage computes and nothing that differs between machines
with the same environment: the sha256 of the lock the environment was installed from
(requirements.lock, or requirements/cuda.lock inside the CUDA image) and of requirements/nodeps.lock
(it carries the embedded SmolLM2 weights), the Python minor version, torch's version and the CUDA
version torch was built for (None for the CPU wheel). No hostname, CPU or GPU model: two machines
with the same lock write the same bytes, so a DVC remote filled on one serves the other.

The committed file is the authors' environment. When this machine's differs, the file changes
(`git diff environment.key.json` shows how), `dvc status` lists every stage, `dvc repro` reruns
them, and `dvc repro --pull` cannot restore outputs computed in the other environment (the run cache
keys on the file). The versions are read from package metadata, without importing torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.io import json_text, sha256_file

KEY_FILE = "environment.key.json"
CPU_LOCKS = ("requirements.lock", "requirements/nodeps.lock")
IMAGE_LOCKS = ("requirements/cuda.lock", "requirements/nodeps.lock")  # Dockerfile sets SPECLLM_IMAGE=1


def torch_build() -> dict[str, str | None]:
    """torch's version and CUDA build from its metadata and torch/version.py (no import: fast)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return {"torch": None, "cuda": None}
    spec = importlib.util.find_spec("torch")
    cuda = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        file = Path(folder) / "version.py"
        if file.is_file():
            m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", file.read_text(), re.MULTILINE)
            cuda = m.group(1) if m else None
            break
    return {"torch": version, "cuda": cuda}


def current(root: Path | None = None, image: bool | None = None) -> dict[str, Any]:
    """This environment's key (deterministic for a given lock and install)."""
    root = Path(root or paths.ROOT)
    image = bool(os.environ.get("SPECLLM_IMAGE")) if image is None else image
    locks = {}
    for rel in IMAGE_LOCKS if image else CPU_LOCKS:
        file = root / rel
        locks[rel] = sha256_file(file) if file.is_file() else None
    return {"locks": locks, "python": f"{sys.version_info.major}.{sys.version_info.minor}", **torch_build()}


def write(root: Path | None = None) -> tuple[Path, bool]:
    """Write environment.key.json when its content differs; (path, changed)."""
    root = Path(root or paths.ROOT)
    file = root / KEY_FILE
    text = json_text(current(root))
    if file.is_file() and file.read_text(encoding="utf-8") == text:
        return file, False
    file.write_text(text, encoding="utf-8")
    return file, True


def main() -> None:
    file, changed = write()
    if changed:
        print(f"{file.name}: updated to this environment; `dvc status` now lists the stages computed in another "
              "one (they rerun, or verify within tolerance: see the README)", file=sys.stderr)


if __name__ == "__main__":
    main()
