"""`make verify` on fresh clones of the smoke profile, and bitwise reproducibility on this machine.

Two independent clones, each reproduced from scratch with its own DVC cache: conftest.smoke_repo
(test_pipeline works on a copy of it) and conftest.remote_run (reproduced with an empty S3 remote
reachable, which it never pulls from; test_remote pushes a copy of it), so the suite pays for no run of
its own here; `second` is a copy of remote_run, without the remote. Their values.json must be identical
byte for byte (CPU runs are deterministic), `make verify` must pass
against the committed paper/reported/smoke.json, and altering one stored number must make it fail
with a readable table. The PDF must carry the provenance appendix and the caption links.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import VENV, copy_run, run_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second(tmp_path_factory, remote_run) -> Path:
    """The independent run, as a fresh clone without a remote has it (no endpoint: make verify runs plain)."""
    repo = copy_run(remote_run, tmp_path_factory.mktemp("second") / "specllm")
    (repo / ".dvc" / "config.local").unlink()
    return repo


def _results(values_json: Path) -> tuple[list, list]:
    """(results, measurements) of a values.json: measurements of the run (throughput, peak memory,
    wall time, device; verify.MEASURED_KEY_RE) and machine descriptions differ between runs by nature."""
    from specllm import verify

    macros = json.loads(values_json.read_text())["macros"]
    info = [m for m in macros if verify.macro_rule(m, None, False).mode == "info"]
    return [m for m in macros if m not in info], info


def test_two_independent_smoke_runs_give_identical_values(smoke_repo, second):
    first, first_measured = _results(smoke_repo / "values.first.json")
    again, again_measured = _results(second / "paper" / "generated" / "values.json")
    # Bitwise: every result value, its text and its source, after a JSON round trip of the floats.
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert [m["name"] for m in again_measured] == [m["name"] for m in first_measured]
    # The figures' data and the tables too (checksums as verify computes them).
    from specllm import verify

    arts = {k: v for k, v in verify.artifact_entries(smoke_repo).items() if not v["machine"]}
    assert verify.file_fingerprints(smoke_repo, arts) == verify.file_fingerprints(second, arts)


def test_make_verify_passes_on_a_fresh_clone(second):
    proc = run_in(["make", "verify", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], second, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "verify: OK" in out  # identical on the freezing host, within tolerance on another CPU
    assert not re.findall(r"Running stage '([\w@.-]+)'", out)  # everything restored, nothing recomputed


def test_altering_one_stored_number_fails_with_a_readable_table(second):
    file = second / "paper" / "reported" / "smoke.json"
    original = file.read_text()
    frozen = json.loads(original)
    name = "BaselineBestMae"
    frozen["values"][name]["value"] += 0.001
    file.write_text(json.dumps(frozen))
    try:
        proc = run_in([str(VENV / "bin" / "specllm"), "verify", "--no-repro"], second, check=False)
    finally:
        file.write_text(original)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("name"))
    for col in ("where in the paper", "reported", "regenerated", "tolerance", "verdict"):
        assert col in header
    row = next(ln for ln in lines if ln.startswith(name + " "))
    assert "main.tex:" in row and "cpu: rel" in row and row.rstrip().endswith("MISMATCH")
    assert sum(ln.rstrip().endswith("MISMATCH") for ln in lines) == 1
    assert "FAILED: 1 of" in proc.stdout


def test_the_pdf_has_the_provenance_appendix_and_caption_links(second):
    pdf = second / "paper" / "main.pdf"
    text = run_in(["pdftotext", str(pdf), "-"], second).stdout
    assert "Provenance and compute cost" in text and "Compute cost per stage" in text
    # the caption links, checked as link targets (their visible text wraps at \\allowbreak points)
    urls = run_in(["pdfinfo", "-url", str(pdf)], second).stdout
    assert "src/specllm/report/figures.py" in urls and "src/specllm/report/tables.py" in urls
    prov = json.loads((second / "results" / "provenance.json").read_text())
    assert prov["code"]["git_commit"] and {"macros", "artifacts", "stages", "environment"} <= set(prov)
    costs = sorted(p.stem for p in (second / "results" / "cost").glob("*.json"))
    assert {"prepare", "train_default", "report"} <= set(costs)


def test_dvc_metrics_show_lists_the_cost_records(second):
    out = run_in([str(VENV / "bin" / "dvc"), "metrics", "show", "--json"], second).stdout
    assert "results/cost/train_default.json" in out and "wall_s" in out
