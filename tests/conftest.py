"""Shared fixtures. Tests run from any folder; ROOT is the repository under test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real SDSS17 sample lives beside the checkout (never inside it): ../shared/data/sdss17/.
SHARED_SDSS17 = ROOT.parent / "shared" / "data" / "sdss17" / "star_classification_sample10k.csv"

# Tests create git repositories (DVC needs one); give them an identity without touching ~/.gitconfig.
for var, value in {"GIT_AUTHOR_NAME": "specllm tests", "GIT_AUTHOR_EMAIL": "tests@specllm.invalid",
                   "GIT_COMMITTER_NAME": "specllm tests", "GIT_COMMITTER_EMAIL": "tests@specllm.invalid"}.items():
    os.environ.setdefault(var, value)


def fresh_copy(dest: Path) -> Path:
    """The working tree as a new user clones it: committed and uncommitted files, no outputs, no cache,
    committed to a new git repository (DVC needs one). File times are kept, so make never thinks the
    lock is newer than the shared venv."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def write_source(folder: Path, n: int = 200, npix: int = 600, seed: int = 0) -> Path:
    """A small source folder in data/raw's format: smooth spectra on SDSS's log-lambda grid."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    loglam = 3.58 + 1e-4 * 6.4 * np.arange(npix)  # coarser steps, same span as SDSS
    wave = 10**loglam
    z = rng.uniform(0.01, 0.5, n)
    slope = rng.uniform(-1, 1, n)
    flux = (5 + slope[:, None] * (wave - 6000) / 3000 + rng.normal(0, 0.1, (n, npix))).astype(np.float32)
    np.save(folder / "loglam.npy", loglam)
    np.save(folder / "spectra_flux.npy", flux)
    np.save(folder / "spectra_ivar.npy", np.full_like(flux, 100.0))
    pd.DataFrame({"gal_id": np.arange(n) + 1000, "ra": 0.0, "dec": 0.0, "z": z}).to_csv(folder / "galaxies.csv", index=False)
    return folder


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_source(tmp_path / "raw")


@pytest.fixture
def params() -> dict:
    """The committed params.yaml, flat (the small profile)."""
    from specllm import config

    return config.load(ROOT / "params.yaml")


VENV = Path(sys.executable).parent.parent


def run_in(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in a clone with the test venv first on PATH and SPECLLM_ROOT set."""
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", "SPECLLM_ROOT": str(cwd)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def reproduce_smoke(repo: Path) -> Path:
    """`make reproduce PROFILE=smoke` in a fresh clone (never letting make rebuild the shared venv);
    the log goes to reproduce.log and a snapshot of values.json to values.first.json."""
    proc = run_in(["make", "reproduce", "PROFILE=smoke", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo)
    (repo / "reproduce.log").write_text(proc.stdout + proc.stderr)
    shutil.copyfile(repo / "paper" / "generated" / "values.json", repo / "values.first.json")
    return repo


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory) -> Path:
    """One clean clone reproduced on smoke, shared by the slow modules (test_pipeline, test_verify_smoke).
    SPECLLM_SMOKE_REPO=<folder> reuses a clone already reproduced from this tree (with values.first.json),
    e.g. to rerun test_verify_smoke alone in one pipeline run instead of two."""
    if reuse := os.environ.get("SPECLLM_SMOKE_REPO"):
        return Path(reuse)
    return reproduce_smoke(fresh_copy(tmp_path_factory.mktemp("clone") / "specllm"))
