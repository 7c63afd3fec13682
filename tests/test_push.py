"""`make push` checks the remote before uploading and bounds the wait (issue 13).

On main it waited over 120 s in silence on an unreachable endpoint and printed one transfer error per
file without credentials. A minimal DVC project (the Makefile and .dvc/config of this repository, no
outputs) is enough: the preflight refuses before DVC transfers anything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, VENV


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def _push(repo: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(["make", "push", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], cwd=repo, env=env,
                          text=True, capture_output=True, timeout=120)
    return proc, time.monotonic() - start


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "HOME": str(home), "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE":
            str(home / "none"), "AWS_EC2_METADATA_DISABLED": "true", "SPECLLM_ROOT": ""}


def test_push_without_credentials_stops_at_once(project, tmp_path):
    proc, seconds = _push(project, _clean_env(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and seconds < 60
    assert "has no credentials here" in out and "nothing was uploaded" in out and "fix:" in out
    assert "dvc push --run-cache" not in proc.stdout and "ERROR" not in out  # dvc never ran: no transfer errors


@pytest.mark.slow  # about 15 s: the preflight's probe waits for botocore's retries
def test_push_to_an_unreachable_endpoint_is_bounded(project, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**_clean_env(tmp_path), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run([str(VENV / "bin" / "dvc"), "remote", "modify", "--local", "specllm", "endpointurl",
                    f"http://127.0.0.1:{port}"], cwd=project, env=env, check=True, capture_output=True)
    proc, seconds = _push(project, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and seconds < 60, out
    assert "not reachable" in out and "nothing was uploaded" in out
