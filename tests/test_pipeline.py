"""The whole smoke pipeline in a fresh copy of the repository, as a new user runs it.

One session-scoped run of `make reproduce PROFILE=smoke` (data build included; conftest.smoke_repo, copied), then the DVC
properties the paper relies on: the embedded data matches data.dvc byte for byte, a second
`dvc repro` does nothing, a params change reruns only the stages that read the key, switching
back restores from the run cache, and the PDF is byte-identical when rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import plain_copy, run_in, stages_run
from ruamel.yaml import YAML

pytestmark = pytest.mark.slow
VENV = Path(sys.executable).parent.parent
# Every `make` call below passes --assume-old=<VENV>/.installed: the tests share the running venv
# and must never let make rebuild it (its editable install would then point at a temporary copy).




def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repo(smoke_repo, tmp_path_factory) -> Path:
    """A clean clone of the working tree (committed and uncommitted files), reproduced on smoke: this
    module's own copy of conftest.smoke_repo (test_verify_smoke compares an independent run with the
    original, which the tests here change)."""
    return plain_copy(smoke_repo, tmp_path_factory.mktemp("pipeline") / "specllm")


def test_reproduce_builds_the_paper_and_data_matches_data_dvc(repo):
    log = (repo / "reproduce.log").read_text()
    assert "matches data.dvc byte for byte" in log, log[-3000:]
    assert run_in(["dvc", "status", "data.dvc"], repo).stdout.strip() == "Data and pipelines are up to date."
    pdf = repo / "paper" / "main.pdf"
    assert pdf.stat().st_size > 50_000
    text = run_in(["pdftotext", str(pdf), "-"], repo).stdout
    assert "smoke" in text  # the PDF says which profile produced it
    assert stages_run(log) >= {"model", "prepare", "serialize", "baseline", "report", "paper"}


def test_second_repro_does_nothing(repo):
    proc = run_in(["dvc", "repro"], repo)
    assert stages_run(proc.stdout) == set(), proc.stdout
    assert run_in(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."


def _set_param(repo: Path, key: str, value) -> None:
    from specllm import config

    y = YAML()
    file = repo / "params.yaml"
    tree = y.load(file.read_text())
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = value
    with file.open("w") as fh:
        y.dump(tree, fh)
    config.load(file)  # still valid


def _changed_stages(repo: Path) -> set[str]:
    return set(json.loads(run_in(["dvc", "status", "--json"], repo).stdout))


def test_a_params_change_reruns_only_its_dependents(repo):
    pdf_before = _sha(repo / "paper" / "main.pdf")
    _set_param(repo, "serialize.target_decimals", 4)
    assert _changed_stages(repo) == {"serialize"}
    _set_param(repo, "serialize.target_decimals", 3)
    _set_param(repo, "baseline.n_neighbors", 5)
    assert _changed_stages(repo) == {"baseline", "report"}  # the paper prints the baseline's k
    ran = stages_run(run_in(["dvc", "repro"], repo).stdout)
    # provenance reruns too: the baseline's cost record (results/cost/baseline.json) is new.
    assert "baseline" in ran and ran <= {"baseline", "report", "provenance", "paper"}, ran
    # Back to the committed value: restored from the run cache, nothing recomputed.
    _set_param(repo, "baseline.n_neighbors", 10)
    proc = run_in(["dvc", "repro"], repo)
    assert stages_run(proc.stdout) == set(), proc.stdout
    assert "skipping run" in proc.stdout
    assert _sha(repo / "paper" / "main.pdf") == pdf_before


def test_pdf_is_byte_identical_when_rebuilt(repo):
    before = _sha(repo / "paper" / "main.pdf")
    run_in(["dvc", "repro", "--force", "--single-item", "paper"], repo)
    assert _sha(repo / "paper" / "main.pdf") == before


def test_bad_params_stop_reproduce_before_any_output_changes(repo):
    outputs = {p: _sha(p) for p in (repo / "results").glob("*.json")}
    outputs[repo / "paper" / "main.pdf"] = _sha(repo / "paper" / "main.pdf")
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("  n_neighbors:", "  n_neigbors:"))
    try:
        proc = run_in(["make", "reproduce", "PROFILE=smoke", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, check=False)
        assert proc.returncode != 0
        assert "baseline.n_neigbors" in proc.stderr and "did you mean 'baseline.n_neighbors'" in proc.stderr
        assert {p: _sha(p) for p in outputs} == outputs
    finally:
        (repo / "params.yaml").write_text(text)


def test_reproduce_without_profile_fails_fast_without_a_gpu(repo):
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU driver is present")
    proc = run_in(["make", "reproduce", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, check=False)
    assert proc.returncode != 0
    assert "PROFILE=small" in proc.stdout + proc.stderr


def test_params_and_metrics_diff_between_runs_and_profiles(repo):
    """`dvc params diff` / `dvc metrics diff` against the committed run: a reviewer's view of what changed."""
    run_in(["git", "add", "-A"], repo)
    run_in(["git", "commit", "-qm", "smoke run", "--allow-empty"], repo)
    try:
        _set_param(repo, "baseline.n_neighbors", 5)
        run_in(["dvc", "repro"], repo)  # from the run cache when test_a_params_change ran first
        params = json.loads(run_in(["dvc", "params", "diff", "--json"], repo).stdout)
        k = params["params.yaml"]["baseline.n_neighbors"]
        assert (k["old"], k["new"], k["diff"]) == (10, 5, -5)
        metrics = json.loads(run_in(["dvc", "metrics", "diff", "--json"], repo).stdout)
        knn = metrics["results/baseline.json"]["methods.knn.mae"]
        assert knn["old"] != knn["new"] and knn["diff"] == pytest.approx(knn["new"] - knn["old"])
        # Between profiles: switching to small changes exactly the keys profiles/small.yaml sets.
        _set_param(repo, "baseline.n_neighbors", 10)
        run_in(["specllm", "profile", "small"], repo)
        changed = json.loads(run_in(["dvc", "params", "diff", "--json"], repo).stdout)["params.yaml"]
        small = YAML(typ="safe").load((repo / "profiles" / "small.yaml").read_text())
        smoke = YAML(typ="safe").load((repo / "profiles" / "smoke.yaml").read_text())
        assert set(changed) == {k for k in small if small[k] != smoke[k]}
        assert (changed["profile"]["old"], changed["profile"]["new"]) == ("smoke", "small")
    finally:
        run_in(["specllm", "profile", "smoke"], repo)
        _set_param(repo, "baseline.n_neighbors", 10)
        run_in(["dvc", "repro"], repo)
    assert run_in(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
