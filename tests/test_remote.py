"""The DVC remote cache and the experiment queue, against a real S3-compatible server on loopback.

moto's server (moto[server]) plays S3 on 127.0.0.1 with fake credentials; conftest.s3 starts it and
stops it by its PID. One fresh copy of the repository reproduces the smoke profile with the empty remote
reachable (conftest.smoke_repo, the suite's one full run, which every other smoke test copies); a copy of it
computes a second value of one parameter, pushes data, outputs and run cache (`make push`) and commits
dvc.lock, as an author publishing results does. A fresh clone of that commit, with an empty cache, runs the same
`make reproduce`, which pulls instead of recomputing: no stage runs and the PDF is byte-identical;
the other parameter value comes back from the pushed run cache. The scale-out path: two queued
experiments run by one queue worker, in the copy, while the fresh clone pulls (a background thread).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, S3_BUCKET, copy_run, free_port, run_in, stages_run, use_remote

pytestmark = pytest.mark.slow
VENV = Path(sys.executable).parent.parent
BUCKET = S3_BUCKET




def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(repo: Path) -> dict:
    """sha256 of the PDF and of every metrics file (results/*.json) as they are now."""
    return {"pdf": _sha(repo / "paper" / "main.pdf"),
            "metrics": {f.name: _sha(f) for f in sorted((repo / "results").glob("*.json"))}}


def _set_neighbors(repo: Path, k: int) -> None:
    text = (repo / "params.yaml").read_text()
    new = re.sub(r"^(  n_neighbors: )\d+", rf"\g<1>{k}", text, count=1, flags=re.M)
    assert new != text or f"n_neighbors: {k}" in text
    (repo / "params.yaml").write_text(new)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, smoke_repo, aws_env) -> Path:
    """Copy A: smoke reproduced with the (empty) remote reachable (a copy of conftest.smoke_repo, which computed
    every stage) and pushed; baseline.n_neighbors=5 computed and pushed, then set back and pushed; dvc.lock and
    params.yaml committed.

    `make push` after each run: `dvc push --run-cache` uploads the run-cache records and the
    workspace's outputs only, so a run's outputs reach the remote while they are the workspace's."""
    repo = copy_run(smoke_repo, tmp_path_factory.mktemp("first") / "specllm")
    (repo / "reproduce.log").rename(repo.parent / "reproduce.log")  # outside git, as when the run was made here
    (repo / "values.first.json").unlink()
    run_in(["make", "push", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, aws_env)
    _set_neighbors(repo, 5)
    run_in(["dvc", "repro"], repo)
    (repo.parent / "k5.pdf.sha256").write_text(_sha(repo / "paper" / "main.pdf"))
    run_in(["make", "push", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, aws_env)
    _set_neighbors(repo, 10)
    run_in(["dvc", "repro"], repo)
    push = run_in(["make", "push", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, aws_env)
    (repo.parent / "push.log").write_text(push.stdout + push.stderr)
    run_in(["git", "add", "-A"], repo)
    run_in(["git", "commit", "-qm", "smoke results (dvc.lock); outputs on the remote"], repo)
    (repo.parent / "k10.outputs.json").write_text(json.dumps(_outputs(repo)))
    return repo


def _pull(repo: Path, aws_env: dict[str, str]) -> dict:
    """What the fresh-clone test checks, run in its clone: `make reproduce`, `dvc status`, then the other
    n_neighbors value with `dvc repro --pull`. Returns each command's output, and the sha256 of the PDF and the
    metrics as `make reproduce` left them (before the other value replaces them)."""
    out = {"reproduce": run_in(["make", "reproduce", "PROFILE=smoke", f"VENV={VENV}", f"--assume-old={VENV}/.installed"],
                               repo, aws_env)}
    out["outputs"] = _outputs(repo)
    out["status"] = run_in(["dvc", "status"], repo)
    _set_neighbors(repo, 5)
    out["k5"] = run_in(["dvc", "repro", "--pull"], repo, aws_env)
    return out


@pytest.fixture(scope="module")
def pulled(pushed, s3, aws_env, tmp_path_factory):
    """(clone, future): a fresh clone of the pushed commit, with an empty cache and the endpoint set, whose pull
    (_pull) runs in a background thread from the first test of this module that needs it. The queue test, a
    chain of DVC commands in `pushed`, runs beside it: each is one core's work, and they were the suite's last
    three minutes, one after the other on one core."""
    repo = tmp_path_factory.mktemp("fresh") / "specllm"
    run_in(["git", "clone", "-q", str(pushed), str(repo)], repo.parent)
    # git gives every file a new mtime; the venv's prerequisites keep the checkout's, or make would
    # rebuild the shared venv (and point its editable install at this temporary clone).
    for name in ("requirements.lock", "requirements/nodeps.lock", "requirements/bootstrap.lock", "pyproject.toml"):
        shutil.copystat(ROOT / name, repo / name)
    assert not (repo / ".dvc" / "cache").exists() and not (repo / "results").exists()
    use_remote(repo, s3)
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield repo, pool.submit(_pull, repo, aws_env)


def test_the_committed_remote_is_s3_without_endpoint_or_credentials():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"^\s*remote = specllm$", config, re.M)
    assert re.search(rf"^\s*url = s3://{BUCKET}/\S+$", config, re.M)
    for secret in ("endpointurl", "access_key_id", "secret_access_key", "session_token", "credentialpath"):
        assert secret not in config


def test_reproduce_with_an_empty_remote_computes_and_push_uploads(pushed, pulled, s3):
    log = (pushed.parent / "reproduce.log").read_text()
    assert "dvc repro --pull" in log  # the remote answered
    assert stages_run(log) >= {"model", "prepare", "serialize", "baseline", "report", "paper"}
    import boto3

    keys = [o["Key"] for page in boto3.client("s3", endpoint_url=s3, aws_access_key_id="testing",
                                              aws_secret_access_key="testing", region_name="us-east-1")
            .get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]
    assert any("/runs/" in k for k in keys), "no run cache on the remote"
    assert any("/files/md5/" in k for k in keys), "no outputs on the remote"


def test_two_queued_experiments_run_on_one_worker(pushed):
    """The scale-out path: queue experiments, start workers, wait; each runs in its own temp workspace. Runs before
    the fresh-clone test, beside its pull (`pulled`)."""
    env = {k: v for k, v in os.environ.items() if k != "SPECLLM_ROOT"}  # stages find their own root
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"

    def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["dvc", *args], cwd=pushed, env=env, text=True, capture_output=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    dvc("exp", "run", "--queue", "-n", "k5", "-S", "baseline.n_neighbors=5")
    dvc("exp", "run", "--queue", "-n", "k7", "-S", "baseline.n_neighbors=7")
    dvc("queue", "start", "-j", "1")

    def finished() -> tuple[str, dict[str, str]]:
        status = dvc("queue", "status").stdout
        return status, {m.group(1): m.group(2) for m in re.finditer(r"\b(k5|k7)\s.*?\b(Success|Failed)\b", status)}

    try:
        # k5 comes from the run cache (pushed computed it); k7 reruns baseline, report, provenance and paper.
        # Waiting polls git for the experiments' refs (refs/exps/.../<name>, written when one is saved): a
        # `dvc queue status` costs a second of CPU, taken from the runs beside this test, so it is asked every 30 s
        # (a failed experiment writes no ref) and, once both refs exist, until both report a final state.
        deadline = time.monotonic() + 600
        asked = time.monotonic()
        while time.monotonic() < deadline:
            refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=pushed,
                                  capture_output=True, text=True, check=True).stdout.split()
            saved = {ref.rsplit("/", 1)[-1] for ref in refs} >= {"k5", "k7"}
            if saved or time.monotonic() - asked > 30:
                status, done = finished()
                asked = time.monotonic()
                if len(done) == 2 or "Failed" in done.values():
                    break
            time.sleep(1)
        else:
            status, done = finished()
    finally:
        dvc("queue", "stop", check=False)  # no-op once the worker has drained the queue and exited
    failed = [name for name, state in done.items() if state != "Success"]
    logs = "".join(f"\n--- dvc queue logs {n} ---\n" + dvc("queue", "logs", n, check=False).stdout[-4000:] for n in failed)
    assert done == {"k5": "Success", "k7": "Success"}, status + logs
    shown = json.loads(dvc("exp", "show", "--json").stdout)
    knn = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            if rev.get("name") in ("k5", "k7"):
                data = rev["data"]
                knn[rev["name"]] = (data["params"]["params.yaml"]["data"]["baseline"]["n_neighbors"],
                                    data["metrics"]["results/baseline.json"]["data"]["methods"]["knn"]["mae"])
    assert set(knn) == {"k5", "k7"} and knn["k5"][0] == 5 and knn["k7"][0] == 7
    assert knn["k5"][1] != knn["k7"][1]  # each experiment really ran its own k


def test_a_fresh_clone_pulls_instead_of_recomputing(pushed, pulled):
    repo, future = pulled
    ran = future.result()
    out = ran["reproduce"].stdout + ran["reproduce"].stderr
    assert "data/raw restored from the DVC remote" in out
    assert stages_run(out) == set(), out[-3000:]  # no stage executed
    assert "is cached - skipping run" in out or "Pulling data" in out
    published = json.loads((pushed.parent / "k10.outputs.json").read_text())
    assert ran["outputs"]["pdf"] == published["pdf"]
    for name, sha in published["metrics"].items():  # metrics are cached outputs: restored too
        assert ran["outputs"]["metrics"].get(name) == sha, name
    assert ran["status"].stdout.strip() == "Data and pipelines are up to date."
    # The other value was never computed here: it comes from the pushed run cache.
    assert stages_run(ran["k5"].stdout) == set(), ran["k5"].stdout
    assert "is cached - skipping run" in ran["k5"].stdout
    assert _sha(repo / "paper" / "main.pdf") == (pushed.parent / "k5.pdf.sha256").read_text()


def test_an_unreachable_remote_is_reported_within_seconds(tmp_path, aws_env):
    """make reproduce then runs plain `dvc repro` (tests/test_pipeline.py runs it that way: no credentials)."""
    repo = tmp_path / "specllm"
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    shutil.copy2(ROOT / "dvc.yaml", repo / "dvc.yaml")
    run_in(["git", "init", "-q"], repo)
    use_remote(repo, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    started = time.monotonic()
    proc = run_in(["specllm", "preflight", "--remote"], repo, aws_env, check=False)
    assert proc.returncode == 1 and "not reachable" in proc.stderr
    assert time.monotonic() - started < 30
