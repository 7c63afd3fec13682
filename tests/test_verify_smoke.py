"""`make verify` on a fresh clone of the smoke profile, and bitwise reproducibility on this machine.

Bitwise: a copy of conftest.smoke_repo recomputes every stage that computes something (conftest.RECOMPUTED:
model conversion, data preparation, serialization, the baselines, a training with its evaluation and
retention, the whole stability study, the verdicts and the report; --force, so neither the DVC cache nor the
run cache answers) and must give the same values, tables, figure data and adapters byte for byte (CPU runs
are deterministic). The six other trainings run the same code. `second` is a copy of conftest.perturbed_run
(the same stages recomputed under another CPU's numerics): `make verify` must pass on it against the
committed paper/reported/smoke.json, and altering one stored number must make it fail with a readable table.
The PDF must carry the provenance appendix and the caption links.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RECOMPUTED, VENV, copy_run, run_in, stages_run

pytestmark = pytest.mark.slow


# The outputs that carry learned weights: nondeterministic training would show here first.
ADAPTERS = ("models/lora/default/adapter_model.safetensors", "models/stability_warmup/adapter_model.safetensors",
            "models/stability_dpo/adapter_model.safetensors")


@pytest.fixture(scope="module")
def second(tmp_path_factory, perturbed_run) -> Path:
    """Another CPU's run, as a fresh clone without a remote has it (no endpoint: make verify runs plain)."""
    return copy_run(perturbed_run, tmp_path_factory.mktemp("second") / "specllm")


def _results(values_json: Path) -> tuple[list, list]:
    """(results, measurements) of a values.json: measurements of the run (throughput, peak memory,
    wall time, device; verify.MEASURED_KEY_RE) and machine descriptions differ between runs by nature."""
    from specllm import verify

    macros = json.loads(values_json.read_text())["macros"]
    info = [m for m in macros if verify.macro_rule(m, None, False).mode == "info"]
    return [m for m in macros if m not in info], info


def test_recomputing_every_stage_gives_identical_values(smoke_repo, recomputed_run):
    recomputed = recomputed_run  # conftest.recomputations: its computing stages ran again from their inputs
    log = (recomputed.parent / "recompute.log").read_text()
    assert stages_run(log) >= set(RECOMPUTED)
    first, first_measured = _results(smoke_repo / "values.first.json")
    again, again_measured = _results(recomputed / "paper" / "generated" / "values.json")
    # Bitwise: every result value, its text and its source, after a JSON round trip of the floats.
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert [m["name"] for m in again_measured] == [m["name"] for m in first_measured]
    # The figures' data and the tables too (checksums as verify computes them), and the trained adapters.
    from specllm import verify

    arts = {k: v for k, v in verify.artifact_entries(smoke_repo).items() if not v["machine"]}
    assert verify.file_fingerprints(smoke_repo, arts) == verify.file_fingerprints(recomputed, arts)
    for name in ADAPTERS:
        assert (recomputed / name).read_bytes() == (smoke_repo / name).read_bytes(), name


def test_make_verify_passes_on_a_fresh_clone(second):
    proc = run_in(["make", "verify", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], second, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "verify: OK" in out  # identical on the freezing host, within tolerance on another CPU
    assert not stages_run(out)  # everything restored, nothing recomputed


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
