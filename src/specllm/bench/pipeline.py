"""(Optional, --pipeline; about 7-8 minutes on 2 cores.) Wall time of the smoke DAG from scratch in a fresh
copy of this checkout (data build included, as `make reproduce PROFILE=smoke` does), of a no-op `dvc repro`
after it, and of a full restore from a warm remote: `dvc push --run-cache` to a local folder remote, then
cache and outputs removed and `dvc repro --pull` restores everything. Uses this interpreter's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from specllm import paths

OUTPUTS = tuple(paths.rel(p) for p in (paths.RAW, paths.DR16_SOURCE, paths.PREPARED, paths.SERIALIZED, paths.MODELS,
                                        paths.RESULTS, paths.GENERATED, paths.PDF))


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=paths.ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = paths.ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run(say) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONHASHSEED": "0",
           "SOURCE_DATE_EPOCH": "1735689600", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@specllm.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@specllm.invalid"}
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = str(paths.ROOT / "src")
    work = Path(tempfile.mkdtemp(prefix="specllm-bench-pipeline-"))
    repo, remote = work / "repo", work / "remote"
    repo.mkdir()

    def sh(*cmd: str) -> float:
        t0 = time.perf_counter()
        subprocess.run(list(cmd), cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    try:
        _copy_checkout(repo)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
        out: dict[str, Any] = {}
        t0 = time.perf_counter()
        sh("specllm", "profile", "smoke")
        sh(sys.executable, "-m", "specllm.stages.build_raw")
        sh("dvc", "commit", "-q", "-f", "data.dvc")
        sh("dvc", "repro", "-q")
        out["smoke_scratch_s"] = time.perf_counter() - t0
        say(f"pipeline: smoke DAG from scratch {out['smoke_scratch_s']:.1f} s")
        out["noop_repro_s"] = sh("dvc", "repro", "-q")
        say(f"pipeline: no-op dvc repro {out['noop_repro_s']:.1f} s")
        sh("dvc", "remote", "add", "--local", "-f", "-d", "bench", str(remote))
        sh("dvc", "push", "-q", "--run-cache")
        for name in OUTPUTS:
            p = repo / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        shutil.rmtree(paths.at(repo, paths.DVC_CACHE), ignore_errors=True)
        t0 = time.perf_counter()
        sh("dvc", "pull", "-q", "data.dvc")
        sh("dvc", "repro", "-q", "--pull")
        out["restore_s"] = time.perf_counter() - t0
        say(f"pipeline: full restore from a warm remote {out['restore_s']:.1f} s")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
