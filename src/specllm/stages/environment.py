"""Stage `environment`: record the software and hardware the pipeline ran on.

Writes results/environment.json: Python, platform, CPU model and cores, torch (version, threads,
CUDA, GPUs with capability and driver), the exact installed versions of every dependency that
pyproject.toml pins (with the pin beside it; torch's from the lock in use), and the sha256 of the
lock the environment was installed from (requirements.lock, or requirements/cuda.lock in the image).
Sorted keys, no timestamps, no host names or user names: the same machine and stack give the
same bytes. The paper's appendix renders it (report stage).

    python -m specllm.stages.environment
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.errors import InputError, run_main
from specllm.report.macros import dumps_json

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
            version = md.version(name)
        except md.PackageNotFoundError:
            version = None
        out[name] = {"installed": version, "pinned": pin}
    return out


def cpu_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": re.sub(r"\s+", " ", model), "logical_cores": os.cpu_count(), "usable_cores": usable}


def _nvidia_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0].strip() if out.strip() else None


def torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"version": None}
    info: dict[str, Any] = {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda_available": bool(torch.cuda.is_available()),
        "cuda_version": torch.version.cuda,
        "cudnn_version": None,
        "gpus": [],
        "driver": None,
    }
    if info["cuda_available"]:
        info["cudnn_version"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            info["gpus"].append({
                "name": prop.name,
                "capability": f"{prop.major}.{prop.minor}",
                "memory_gib": round(prop.total_memory / 2**30, 1),
            })
        info["driver"] = _nvidia_driver()
    return info


def active_lock(root: Path) -> Path:
    """The lock this environment was installed from: requirements/cuda.lock in the CUDA image
    (SPECLLM_IMAGE, torch 2.10.0 for CUDA 12.8), requirements.lock elsewhere (torch 2.13.0+cpu)."""
    return root / "requirements" / "cuda.lock" if os.environ.get("SPECLLM_IMAGE") else root / "requirements.lock"


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
    torch = torch_info()
    if torch.get("version"):
        torch["build"] = f"CUDA {torch['cuda_version']}" if torch.get("cuda_version") else "CPU"
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
        "cpu": cpu_info(),
        "torch": torch,
        "packages": packages,
        "lock_file": lock.name if lock is not None else None,
        "requirements_lock_sha256": lock_sha,
    }


def write_environment(out: Path, pyproject: Path, lock: Path | None = None) -> dict[str, Any]:
    env = collect_environment(pyproject, lock)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(dumps_json(env), encoding="utf-8")
    os.replace(tmp, out)
    return env


def main() -> None:
    out = paths.RESULTS / "environment.json"
    env = write_environment(out, paths.ROOT / "pyproject.toml", active_lock(paths.ROOT))
    missing = [n for n, v in env["packages"].items() if v["installed"] is None]
    mismatch = [n for n, v in env["packages"].items()
                if v["installed"] and v["pinned"] and v["installed"].split("+")[0] != v["pinned"]]
    print(f"wrote {out.relative_to(paths.ROOT) if out.is_relative_to(paths.ROOT) else out}: "
          f"python {env['python']['version']}, torch {env['torch']['version']} "
          f"({env['torch'].get('build', '-')} build, {env['lock_file']}), "
          f"{len(env['packages'])} dependencies")
    if missing:
        print(f"warning: not installed: {', '.join(missing)}", file=sys.stderr)
    if mismatch:
        print(f"warning: installed version differs from the pin: {', '.join(mismatch)}", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
