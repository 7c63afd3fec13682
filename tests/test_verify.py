"""verify/freeze on a small fake project: tolerance rules, the readable table, the exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specllm import verify
from specllm.errors import InputError
from specllm.report.macros import MacroSet

LOCK = """schema: '2.0'
stages:
  baseline:
    cmd: python -m specllm.stages.baseline
    params:
      params.yaml:
        baseline.n_neighbors: 10
    outs:
    - path: results/baseline.json
      md5: aaa
    - path: results/baseline_predictions.csv
      md5: bbb
  select:
    cmd: python -m specllm.stages.select
    outs:
    - path: results/ablation.json
      md5: ccc
"""


def make_project(root: Path, *, mae: float = 0.0431, cuda: bool = False) -> Path:
    ms = MacroSet()
    ms.add("profile", "smoke", source="params.yaml")
    ms.add("split.train.n", 160, source="results/data_summary.json", kind="int")
    ms.add("baseline.best.mae", mae, source="results/baseline.json", kind="float", precision=4)
    ms.add("lora.best.mae", 0.05123, source="results/ablation.json", kind="float", precision=4)
    ms.add("lora.retention", 0.852, source="results/ablation.json", kind="percent", precision=1)
    ms.add("env.cpu", "Some CPU", source="results/environment.json")
    gen = root / "paper" / "generated"
    ms.write(gen / "macros.tex", gen / "values.json")
    (gen / "tables").mkdir(parents=True, exist_ok=True)
    (gen / "tables" / "baseline.tex").write_text("\\begin{tabular}{l}x\\end{tabular}\n")
    (gen / "figures").mkdir(parents=True, exist_ok=True)
    (gen / "figures" / "baseline_predictions.png").write_bytes(b"png")
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / "baseline_predictions.csv").write_text("gal_id,z_true,knn\n1,0.1,0.11\n")
    (root / "results" / "baseline.json").write_text("{}\n")
    (root / "results" / "environment.json").write_text(json.dumps({"torch": {"cuda_available": cuda}}))
    (root / "params.yaml").write_text("profile: smoke  # comment\n")
    (root / "dvc.lock").write_text(LOCK)
    (root / "paper" / "main.tex").write_text(
        "\\begin{document}\nMAE \\BaselineBestMae{} and \\LoraBestMae.\n"
        "\\includegraphics[width=\\columnwidth]{baseline_predictions}\n"
        "\\input{generated/tables/baseline.tex}\n\\end{document}\n")
    return root


def freeze(root: Path) -> dict:
    out = verify.freeze(root, check_status=False)
    assert out == root / "paper" / "reported" / "smoke.json"
    return json.loads(out.read_text())


def test_freeze_records_values_rules_and_checksums(tmp_path):
    frozen = freeze(make_project(tmp_path))
    v = frozen["values"]
    assert frozen["profile"] == "smoke" and frozen["gpu_run"] is False
    assert v["BaselineBestMae"]["value"] == 0.0431 and v["BaselineBestMae"]["tolerance"] == {"mode": "exact"}
    assert v["BaselineBestMae"]["stage"] == "baseline"
    assert v["SplitTrainN"]["tolerance"] == {"mode": "exact"}
    assert v["EnvCpu"]["tolerance"] == {"mode": "info"}
    fig = frozen["artifacts"]["figure:baseline_predictions"]
    assert set(fig["files"]) == {"results/baseline_predictions.csv", "results/baseline.json"}
    assert fig["tolerance"] == {"mode": "sha256"}
    # Deterministic: freezing the same outputs twice gives the same bytes (reviewable diffs only).
    first = (tmp_path / "paper" / "reported" / "smoke.json").read_bytes()
    freeze(tmp_path)
    assert (tmp_path / "paper" / "reported" / "smoke.json").read_bytes() == first


def test_verify_passes_when_nothing_changed(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    lines: list[str] = []
    assert verify.verify(root, repro=False, out=lines.append) == 0
    text = "\n".join(lines)
    assert "verify: OK" in text
    assert "name" in text and "where in the paper" in text and "tolerance" in text and "verdict" in text


def test_altering_one_stored_number_fails_with_a_readable_table(tmp_path):
    root = make_project(tmp_path)
    frozen = freeze(root)
    frozen["values"]["BaselineBestMae"]["value"] = 0.0432
    (root / "paper" / "reported" / "smoke.json").write_text(json.dumps(frozen))
    lines: list[str] = []
    assert verify.verify(root, repro=False, out=lines.append) == 1
    text = "\n".join(lines)
    row = next(line for line in text.splitlines() if line.startswith("BaselineBestMae"))
    assert "main.tex:2" in row and "0.0432" in row and "0.0431" in row and "exact" in row and "MISMATCH" in row
    assert "FAILED: 1 of" in text and "BaselineBestMae" in text.splitlines()[-2]


def test_a_regenerated_change_and_new_or_missing_values_fail(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, mae=0.0500)  # the pipeline now produces another number
    rows = verify.compare(json.loads((root / "paper/reported/smoke.json").read_text()), verify.load_values(root), root)
    assert {r.name: r.verdict for r in rows}["BaselineBestMae"] == "MISMATCH"
    frozen = json.loads((root / "paper/reported/smoke.json").read_text())
    frozen["values"]["Gone"] = dict(frozen["values"]["SplitTrainN"])
    del frozen["values"]["LoraRetention"]
    verdicts = {r.name: r.verdict for r in verify.compare(frozen, verify.load_values(root), root)}
    assert verdicts["Gone"] == "MISSING" and verdicts["LoraRetention"] == "NEW"


def test_figure_data_is_checked_by_checksum(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    (root / "results" / "baseline_predictions.csv").write_text("gal_id,z_true,knn\n1,0.1,0.12\n")
    lines: list[str] = []
    assert verify.verify(root, repro=False, only_failures=True, out=lines.append) == 1
    assert any("figure:baseline_predictions results/baseline_predictions.csv" in ln and "MISMATCH" in ln
               and "main.tex:3" in ln for ln in lines)


def test_machine_descriptions_never_fail(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    frozen = json.loads((root / "paper/reported/smoke.json").read_text())
    frozen["values"]["EnvCpu"]["value"] = frozen["values"]["EnvCpu"]["text"] = "Another CPU"
    (root / "paper/reported/smoke.json").write_text(json.dumps(frozen))
    lines: list[str] = []
    assert verify.verify(root, repro=False, out=lines.append) == 0
    assert "1 informational difference" in lines[-1]


def test_gpu_runs_get_a_stated_tolerance_for_gpu_stage_floats_only(tmp_path):
    root = make_project(tmp_path, cuda=True)
    frozen = freeze(root)
    assert frozen["gpu_run"] is True
    tol = frozen["values"]["LoraBestMae"]["tolerance"]
    assert tol["mode"] == "close" and tol["abs"] == pytest.approx(2e-4) and tol["rel"] == 0.02
    assert frozen["values"]["LoraRetention"]["tolerance"] == {"mode": "close", "rel": 0.0, "abs": 0.01}
    assert frozen["values"]["BaselineBestMae"]["tolerance"] == {"mode": "exact"}  # a CPU stage
    assert frozen["values"]["SplitTrainN"]["tolerance"] == {"mode": "exact"}     # a count
    assert verify.within(0.05123, 0.0513, frozen["values"]["LoraBestMae"]["tolerance"])
    assert not verify.within(0.05123, 0.0540, frozen["values"]["LoraBestMae"]["tolerance"])


def test_verify_without_a_frozen_file_says_how_to_make_one(tmp_path):
    root = make_project(tmp_path)
    with pytest.raises(InputError, match="make freeze"):
        verify.verify(root, repro=False, out=lambda s: None)


def test_freeze_refuses_a_dirty_pipeline(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.setattr(verify, "pipeline_status", lambda r: {"baseline": [{"changed deps": {}}]})
    with pytest.raises(InputError, match="not up to date"):
        verify.freeze(root)
    assert not (root / "paper" / "reported" / "smoke.json").exists()


def test_compare_prints_this_run_beside_the_original_with_citations(tmp_path):
    from conftest import ROOT

    from specllm import compare

    root = make_project(tmp_path)
    (root / "data" / "reference").mkdir(parents=True)
    for name in ("arxiv_2508.10075.json", "scse.json"):
        (root / "data" / "reference" / name).write_bytes((ROOT / "data" / "reference" / name).read_bytes())
    runs = [{"run": "default", "lr": 1e-4, "rank": 8, "epochs": 2, "val_mae": 0.05, "science_retention": 0.9,
             "general_retention": 0.95},
            {"run": "lr-0.001", "lr": 1e-3, "rank": 8, "epochs": 2, "val_mae": 0.04, "science_retention": 0.8,
             "general_retention": 0.9}]
    (root / "results" / "ablation.json").write_text(json.dumps(
        {"best": "lr-0.001", "best_test": {"mae": 0.047}, "runs": runs}))
    (root / "results" / "data_summary.json").write_text(json.dumps({"n_train": 160}))
    (root / "results" / "stability").mkdir()
    (root / "results" / "stability" / "analysis.json").write_text(json.dumps({"overall": {"mean_pss": 0.2}}))
    text = compare.render(root)
    row = next(ln for ln in text.splitlines() if ln.startswith("learning rate of the best"))
    assert "0.0001 [1]" in row and "0.001" in row
    assert "85.2% [1]" in text and "80.0%" in text and "3000 [1]" in text and "160" in text
    assert "16 A100-hours [1]" in text and "n/a, not available offline [1]" in text
    assert "1e-05: " not in text and "0.0001: 0.05; 0.001: 0.04 (val MAE)" in text
    mean_pss = next(ln for ln in text.splitlines() if ln.startswith("mean PSS "))
    assert "0.0916 [2]" in mean_pss and "0.2" in mean_pss
    assert "not in this build" in next(ln for ln in text.splitlines() if ln.startswith("mean PSS after DPO"))
    assert "[1] Ramachandra, N., Ting, Y.-S." in text and "arXiv:2508.10075" in text and "arXiv:2601.02993" in text
    assert "this run: profile smoke" in text


def test_json_figure_data_is_digested_without_its_measurements(tmp_path):
    from specllm import artifacts

    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps({"pss": 0.1, "timing": {"seconds": 3.4, "prompts_per_s": 14.1}}))
    b.write_text(json.dumps({"timing": {"seconds": 9.9, "prompts_per_s": 2.0}, "pss": 0.1}, indent=2))
    c.write_text(json.dumps({"pss": 0.2, "timing": {"seconds": 3.4, "prompts_per_s": 14.1}}))
    assert artifacts.digest(a) == artifacts.digest(b) != artifacts.digest(c)
