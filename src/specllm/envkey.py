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

collect_environment is the fuller record the environment stage writes (results/environment.json, the
paper's appendix): the machine's facts (specllm.machine) and every pinned dependency's installed version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from specllm import machine, paths
from specllm.errors import InputError
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


def in_image() -> bool:
    """Whether this process runs in the CUDA image, whose environment comes from IMAGE_LOCKS."""
    return bool(os.environ.get("SPECLLM_IMAGE"))


def current(root: Path | None = None, image: bool | None = None) -> dict[str, Any]:
    """This environment's key (deterministic for a given lock and install)."""
    root = Path(root or paths.ROOT)
    image = in_image() if image is None else image
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


_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?")


def pinned_dependencies(pyproject: Path) -> dict[str, str | None]:
    """{distribution name: pinned version (None if not pinned with ==)} from [project].dependencies."""
    if not pyproject.is_file():
        raise InputError(pyproject, "-", "file not found", "run from the project root")
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("dependencies", [])
    out: dict[str, str | None] = {}
    for spec in deps:
        m = _REQ_RE.match(spec)
        if not m:
            raise InputError(pyproject, "project.dependencies", f"cannot parse {spec!r}", "use name==version")
        out[m.group(1)] = m.group(2)
    return out


def installed_versions(pins: dict[str, str | None]) -> dict[str, dict[str, str | None]]:
    """{name: {"installed": version or None, "pinned": pin}} via importlib.metadata."""
    out = {}
    for name, pin in sorted(pins.items()):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        out[name] = {"installed": version, "pinned": pin}
    return out


def active_lock(root: Path) -> Path:
    """The lock this environment was installed from, the first of the key's locks: requirements/cuda.lock in
    the CUDA image (torch 2.10.0 for CUDA 12.8), requirements.lock elsewhere (torch 2.13.0+cpu)."""
    return root / (IMAGE_LOCKS if in_image() else CPU_LOCKS)[0]


def locked_torch(lock: Path | None) -> str | None:
    """torch's version in a hashed lock (the image's differs from pyproject.toml's pin by policy)."""
    if lock is None or not lock.is_file():
        return None
    m = re.search(r"^torch==([^\s;\\]+)", lock.read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else None


def collect_environment(pyproject: Path, lock: Path | None = None) -> dict[str, Any]:
    """Everything results/environment.json records (a plain, JSON-ready dict). The torch pin is the
    lock's (the version policy: README "Versions: which torch runs where")."""
    lock_sha = None
    if lock is not None and lock.is_file():
        lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    packages = installed_versions(pinned_dependencies(pyproject))
    if "torch" in packages and (pin := locked_torch(lock)):
        packages["torch"]["pinned"] = pin.split("+")[0]
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "virtualenv": sys.prefix != sys.base_prefix,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "libc": " ".join(platform.libc_ver()).strip() or None,
        },
        "cpu": machine.cpu_info(),
        "torch": machine.torch_info(),
        "packages": packages,
        "lock_file": lock.name if lock is not None else None,
        "requirements_lock_sha256": lock_sha,
    }


def main() -> None:
    file, changed = write()
    if changed:
        print(f"{file.name}: updated to this environment; `dvc status` now lists the stages computed in another "
              "one (they rerun, or verify within tolerance: see the README)", file=sys.stderr)


if __name__ == "__main__":
    main()
