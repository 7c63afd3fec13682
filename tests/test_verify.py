"""verify/freeze on a small fake project: the two passing levels (identical, within tolerance), real
changes that must fail, tolerances taken from code only, the readable table and the exit status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from specllm import fingerprint, verify
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
    - path: results/ablation_best_predictions.csv
      md5: fff
  stability_analyze:
    cmd: python -m specllm.stages.stability_analyze
    outs:
    - path: results/stability/spectral.npz
      md5: ddd
    - path: results/stability/analysis.json
      md5: eee
"""
EIGEN = np.linspace(0.5, 3.0, 240).reshape(8, 30)  # larger than fingerprint.SMALL_N: summarised
CSV = "figure:baseline_predictions results/baseline_predictions.csv"   # a CPU stage's figure data
NPZ = "figure:stability_eigenvalues results/stability/spectral.npz"     # a model stage's large array
SENTENCE = "its test MAE is {r} times the non-language baseline's ({w})"


def make_project(root: Path, *, mae: float = 0.0431, lora: float = 0.05123, n_train: int = 160, cuda: bool = False,
                 knn: str = "0.11", eigen: np.ndarray | None = None, ratio: str = "8.1", word: str = "worse",
                 table_mae: str = "0.0431", answer: str = "0.123") -> Path:
    ms = MacroSet()
    ms.add("profile", "smoke", source="params.yaml")
    ms.add("split.train.n", n_train, source="results/data_summary.json", kind="int")
    ms.add("baseline.best.mae", mae, source="results/baseline.json", kind="float", precision=4)
    ms.add("lora.best.mae", lora, source="results/ablation.json", kind="float", precision=4)
    ms.add("lora.retention", 0.852, source="results/ablation.json", kind="percent", precision=1)
    ms.add("lora.best.run", "lr-0.001", source="results/ablation.json", kind="code")
    ms.add("claim.baseline", SENTENCE.format(r=ratio, w=word), source="results/ablation.json", kind="latex")
    ms.add("env.cpu", "Some CPU", source="results/environment.json")
    gen = root / "paper" / "generated"
    ms.write(gen / "macros.tex", gen / "values.json")
    (gen / "tables").mkdir(parents=True, exist_ok=True)
    (gen / "tables" / "baseline.tex").write_text(
        f"\\begin{{tabular}}{{lrr}}\nkNN & {table_mae} & 9{{,}}980 \\\\\n\\end{{tabular}}\n")
    (gen / "figures").mkdir(parents=True, exist_ok=True)
    for fig in ("baseline_predictions", "stability_eigenvalues", "ablation_predictions"):
        (gen / "figures" / f"{fig}.png").write_bytes(b"png")
    (root / "results" / "stability").mkdir(parents=True, exist_ok=True)
    (root / "results" / "baseline_predictions.csv").write_text(
        f"gal_id,split,z_true,knn\n1,test,0.1,{knn}\n2,test,0.2,0.19\n")
    (root / "results" / "ablation_best_predictions.csv").write_text(  # the model's answers (3 decimals)
        f"gal_id,z_true,z_pred\n1,0.125012,{answer}\n2,0.200113,0.201\n")
    (root / "results" / "ablation.json").write_text(json.dumps({"best": "lr-0.001", "best_test": {"mae": lora}}))
    (root / "results" / "baseline.json").write_text(json.dumps({"knn": {"mae": mae, "n": 2}, "best": "knn"}))
    np.savez(root / "results" / "stability" / "spectral.npz", eigen=EIGEN if eigen is None else eigen,
             k=np.arange(8))
    (root / "results" / "stability" / "analysis.json").write_text(json.dumps({"overall": {"mean_pss": 0.2}}))
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


def verdicts(root: Path, frozen: dict | None = None) -> dict[str, str]:
    frozen = frozen or json.loads((root / "paper/reported/smoke.json").read_text())
    return {r.name: r.verdict for r in verify.compare(frozen, verify.load_values(root), root)}


def run(root: Path) -> tuple[int, str]:
    lines: list[str] = []
    code = verify.verify(root, repro=False, out=lines.append)
    return code, "\n".join(lines)


def test_freeze_records_values_and_fingerprints_but_no_tolerances(tmp_path):
    frozen = freeze(make_project(tmp_path))
    v = frozen["values"]
    assert frozen["profile"] == "smoke" and frozen["format"] == verify.FORMAT and frozen["gpu_run"] is False
    assert v["BaselineBestMae"]["value"] == 0.0431 and v["BaselineBestMae"]["stage"] == "baseline"
    assert "tolerance" not in json.dumps(v) and "rules" not in frozen
    assert frozen["artifacts"]["figure:baseline_predictions"]["files"] == [
        "results/baseline_predictions.csv", "results/baseline.json"]
    files = frozen["files"]
    csv = files["results/baseline_predictions.csv"]
    assert csv["columns"] == ["gal_id", "split", "z_true", "knn"] and csv["rows"] == 2 and len(csv["sha256"]) == 64
    assert csv["arrays"]["knn"] == {"shape": [2], "kind": "float", "dtype": "float64", "values": [0.11, 0.19],
                                    "decimals": 2}
    assert csv["arrays"]["split"]["kind"] == "text" and csv["arrays"]["gal_id"]["kind"] == "int"
    eigen = files["results/stability/spectral.npz"]
    assert eigen["arrays"]["eigen"]["shape"] == [8, 30] and "values" not in eigen["arrays"]["eigen"]
    assert eigen["arrays"]["eigen"]["stats"]["q0"] == 0.5 and eigen["arrays"]["k"]["values"] == list(range(8))
    table = files["paper/generated/tables/baseline.tex"]
    assert table["printed"]["numbers"] == ["0.0431", "9{,}980"]
    # Deterministic: freezing the same outputs twice gives the same bytes (reviewable diffs only).
    first = (tmp_path / "paper" / "reported" / "smoke.json").read_bytes()
    freeze(tmp_path)
    assert (tmp_path / "paper" / "reported" / "smoke.json").read_bytes() == first


def test_verify_passes_as_identical_when_nothing_changed(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    code, text = run(root)
    assert code == 0, text
    assert "verify: OK (identical)" in text and "0 reproduced within tolerance" in text
    assert "name" in text and "where in the paper" in text and "tolerance" in text and "verdict" in text
    assert set(verdicts(root).values()) <= {"identical"}


def test_float_moved_by_cross_host_noise_is_within_tolerance_not_identical(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, mae=0.0431 * (1 + 3e-8), lora=0.05123 * (1 + 3e-8))  # what another CPU gives
    v = verdicts(root)
    assert v["BaselineBestMae"] == v["LoraBestMae"] == "within tolerance"
    assert v["figure:baseline_predictions results/baseline.json"] == "within tolerance"
    assert v["SplitTrainN"] == "identical"
    code, text = run(root)
    assert code == 0, text
    assert "verify: OK (reproduced within tolerance)" in text and "reproduced within tolerance" in text.splitlines()[-1]
    row = next(ln for ln in text.splitlines() if ln.startswith("BaselineBestMae"))
    assert "within tolerance" in row and "cpu: rel" in row


@pytest.mark.parametrize("change", [
    {"mae": 0.0431 * (1 + 1e-4)},   # a real change of a CPU-stage float (0.0431 -> 0.0431043)
    {"lora": 0.0513},               # a different best model MAE
    {"n_train": 161},               # a count
])
def test_a_real_change_fails(tmp_path, change):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, **change)
    code, text = run(root)
    assert code == 1
    assert "verify: FAILED" in text and "MISMATCH" in text


def test_text_changes_fail_and_a_printed_rounding_flip_passes(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, word="better")
    assert verdicts(root)["ClaimBaseline"] == "MISMATCH"
    make_project(root, ratio="8.2")  # the printed ratio flipped its last digit at a rounding boundary
    assert verdicts(root)["ClaimBaseline"] == "within tolerance"
    make_project(root, ratio="8.3")
    assert verdicts(root)["ClaimBaseline"] == "MISMATCH"
    frozen = json.loads((root / "paper/reported/smoke.json").read_text())
    frozen["values"]["LoraBestRun"]["value"] = "lr-0.002"  # a different best run: identifiers are exact
    frozen["values"]["LoraBestRun"]["text"] = "\\texttt{lr-0.002}"
    make_project(root)
    assert verdicts(root, frozen)["LoraBestRun"] == "MISMATCH"


def test_tables_are_compared_by_their_printed_numbers(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    name = "table:baseline paper/generated/tables/baseline.tex"
    make_project(root, table_mae="0.0432")  # last digit flipped: a value at a rounding boundary
    assert verdicts(root)[name] == "within tolerance"
    make_project(root, table_mae="0.0433")
    assert verdicts(root)[name] == "MISMATCH"
    make_project(root, table_mae="0.043")   # another format
    assert verdicts(root)[name] == "MISMATCH"
    (root / "paper/generated/tables/baseline.tex").write_text(
        "\\begin{tabular}{lrr}\nkNN & 0.0431 & 9{,}981 \\\\\n\\end{tabular}\n")  # a count
    assert verdicts(root)[name] == "MISMATCH"


def test_arrays_are_compared_by_value_with_allclose(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, knn=repr(0.11 * (1 + 3e-8)), eigen=EIGEN * (1 + 3e-8))
    v = verdicts(root)
    assert v[CSV] == "within tolerance" and v[NPZ] == "within tolerance"
    make_project(root, knn="0.1125")  # a different prediction (written with 4 decimals now)
    assert verdicts(root)[CSV] == "MISMATCH"
    moved = EIGEN.copy()
    moved[3, 4] += 0.5  # one large element of 240 changed: the summary's sums move beyond the bound
    make_project(root, eigen=moved)
    assert verdicts(root)[NPZ] == "MISMATCH"
    make_project(root, eigen=EIGEN[::-1].copy())  # same values, another order: the weighted sums see it
    assert verdicts(root)[NPZ] == "MISMATCH"


def test_a_written_digit_may_flip_in_cpu_stage_files_but_a_model_answer_may_not(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    answers = "figure:ablation_predictions results/ablation_best_predictions.csv"
    make_project(root, knn="0.12")  # two decimals written: one unit in the last is a rounding flip
    assert verdicts(root)[CSV] == "within tolerance"
    make_project(root, knn="0.13")
    assert verdicts(root)[CSV] == "MISMATCH"
    # Written with fewer decimals now: the frozen file's finer digits keep the allowance narrow.
    col = {"shape": [1], "kind": "float"}
    frozen = {"arrays": {"x": {**col, "values": [0.134093], "decimals": 6}}}
    assert not fingerprint.close_file(frozen, {"arrays": {"x": {**col, "values": [0.13], "decimals": 2}}},
                                      1e-6, 1e-9, written_units=1.0)[0]
    assert fingerprint.close_file(frozen, {"arrays": {"x": {**col, "values": [0.134094], "decimals": 6}}},
                                  1e-6, 1e-9, written_units=1.0)[0]
    make_project(root, answer="0.124")  # the model answered another redshift
    assert verdicts(root)[answers] == "MISMATCH"


def test_float16_arrays_may_flip_their_last_stored_bit():
    hidden = np.linspace(-2.4, 2.4, 600).astype(np.float16)
    flipped = hidden.copy()
    flipped[[3, 300]] = np.nextafter(hidden[[3, 300]], np.float16(10))  # what another CPU gave (6 of 6144)
    model = verify.TOLERANCES["model"]
    assert fingerprint.close_array(fingerprint.array(hidden), fingerprint.array(flipped), model.rtol, model.atol)[0]
    moved = hidden.copy()
    moved[100:160] += np.float16(0.05)  # a real change of 60 hidden values
    assert not fingerprint.close_array(fingerprint.array(hidden), fingerprint.array(moved), model.rtol, model.atol)[0]
    assert not fingerprint.close_array(fingerprint.array(hidden), fingerprint.array(hidden.astype(np.float32)),
                                       model.rtol, model.atol)[0]  # another storage dtype


def test_shape_columns_and_integer_columns_are_exact(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    make_project(root, eigen=EIGEN.reshape(30, 8))
    assert verdicts(root)[NPZ] == "MISMATCH"
    file = root / "results" / "baseline_predictions.csv"
    file.write_text(file.read_text() + "3,test,0.3,0.31\n")  # a row more
    assert verdicts(root)[CSV] == "MISMATCH"
    file.write_text("gal_id,split,z_true,knn\n1,test,0.1,0.11\n9,test,0.2,0.19\n")  # another galaxy
    assert verdicts(root)[CSV] == "MISMATCH"
    file.write_text("gal_id,split,z,knn\n1,test,0.1,0.11\n2,test,0.2,0.19\n")  # a renamed column
    assert verdicts(root)[CSV] == "MISMATCH"


def test_the_frozen_file_cannot_loosen_a_tolerance(tmp_path):
    """Tolerance, kind, stage, rules and gpu flag typed into the file under test change nothing."""
    root = make_project(tmp_path)
    frozen = freeze(root)
    make_project(root, mae=0.0500, lora=0.0600)  # wrong values
    for entry in frozen["values"].values():
        entry["tolerance"] = {"mode": "close", "rel": 1.0, "abs": 1.0}
        entry["stage"] = "train_default"
    frozen["gpu_run"] = True
    frozen["profile"] = "paper"  # a GPU profile: verify() refuses the file, compare() ignores the field
    frozen["rules"] = {"gpu_stage_re": ".*", "gpu_tolerance": {"float": {"rel": 1.0, "abs": 1.0}}}
    frozen["tolerances"] = {"cpu": {"rtol": 1.0, "atol": 1.0}}
    for art in frozen["artifacts"].values():
        art["tolerance"] = {"mode": "info"}
        art["machine"] = True
    (root / "paper/reported/smoke.json").write_text(json.dumps(frozen))
    v = verdicts(root)
    assert v["BaselineBestMae"] == v["LoraBestMae"] == "MISMATCH"
    assert v["figure:baseline_predictions results/baseline.json"] == "MISMATCH"
    frozen["profile"] = "smoke"
    (root / "paper/reported/smoke.json").write_text(json.dumps(frozen))
    code, text = run(root)
    assert code == 1 and "says its values came from a GPU run" in text


def test_gpu_runs_get_the_gpu_tolerance_for_model_stage_floats_only(tmp_path):
    root = make_project(tmp_path, cuda=True)
    freeze(root)
    make_project(root, cuda=True, lora=0.05123 * 1.01, mae=0.0431 * (1 + 1e-4))
    v = verdicts(root)
    assert v["LoraBestMae"] == "within tolerance"        # a model stage on a GPU: rel 2%
    assert v["BaselineBestMae"] == "MISMATCH"            # a CPU stage: the CPU tolerance still
    rule = verify.macro_rule({"kind": "float", "precision": 4, "key": "x"}, "select", True)
    assert rule.tol == verify.Tol(0.02, pytest.approx(2e-4))
    assert verify.macro_rule({"kind": "int", "key": "x"}, "select", True).mode == "exact"
    assert verify.macro_rule({"kind": "float", "precision": 4, "key": "x"}, "select", False).tol == \
        verify.TOLERANCES["model"]


def test_a_missing_or_new_value_fails(tmp_path):
    root = make_project(tmp_path)
    frozen = freeze(root)
    frozen["values"]["Gone"] = dict(frozen["values"]["SplitTrainN"])
    del frozen["values"]["LoraRetention"]
    del frozen["artifacts"]["table:baseline"]
    v = verdicts(root, frozen)
    assert v["Gone"] == "MISSING" and v["LoraRetention"] == "NEW" and v["table:baseline"] == "NEW"


def test_altering_one_stored_number_fails_with_a_readable_table(tmp_path):
    root = make_project(tmp_path)
    frozen = freeze(root)
    frozen["values"]["BaselineBestMae"]["value"] = 0.0432
    (root / "paper" / "reported" / "smoke.json").write_text(json.dumps(frozen))
    code, text = run(root)
    assert code == 1
    row = next(line for line in text.splitlines() if line.startswith("BaselineBestMae"))
    assert "main.tex:2" in row and "0.0432" in row and "0.0431" in row and "cpu: rel" in row and "MISMATCH" in row
    assert "FAILED: 1 of" in text and "BaselineBestMae" in text.splitlines()[-2]


def test_machine_descriptions_never_fail(tmp_path):
    root = make_project(tmp_path)
    frozen = freeze(root)
    frozen["values"]["EnvCpu"]["value"] = frozen["values"]["EnvCpu"]["text"] = "Another CPU"
    (root / "paper/reported/smoke.json").write_text(json.dumps(frozen))
    code, text = run(root)
    assert code == 0 and "1 informational differences" in text.splitlines()[-1]


def test_a_format_1_frozen_file_still_verifies_identical_files(tmp_path):
    root = make_project(tmp_path)
    frozen = freeze(root)
    for art in frozen["artifacts"].values():
        art["files"] = {f: frozen["files"][f]["sha256"] for f in art["files"]}
    del frozen["format"], frozen["files"]
    (root / "paper/reported/smoke.json").write_text(json.dumps(frozen))
    code, text = run(root)
    assert code == 0 and "older format" in text
    make_project(root, knn=repr(0.11 * (1 + 3e-8)))
    assert verdicts(root)["figure:baseline_predictions results/baseline_predictions.csv"] == "MISMATCH"


def test_an_unreadable_data_file_fails_with_its_error(tmp_path):
    root = make_project(tmp_path)
    freeze(root)
    (root / "results" / "baseline_predictions.csv").write_text("")
    rows = {r.name: r for r in verify.compare(json.loads((root / "paper/reported/smoke.json").read_text()),
                                               verify.load_values(root), root)}
    assert rows[CSV].verdict == "MISMATCH" and "unreadable: EmptyDataError" in rows[CSV].regenerated


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


def test_printed_number_parser():
    p = fingerprint.printed(r"MAE $-0.0028$ of 9{,}980 objects, run lr-0.001, \num{2.0e-04}, 85.2\%")
    assert p["numbers"] == ["-0.0028", "9{,}980", "2.0", "85.2"]
    ok = fingerprint.close_printed
    q = fingerprint.printed(r"MAE $-0.0029$ of 9{,}980 objects, run lr-0.001, \num{2.0e-04}, 85.2\%")
    assert ok(p, q)[0] and not ok(p, fingerprint.printed(r"MAE $-0.0028$ of 9{,}980 objects, run lr-0.002, "
                                                          r"\num{2.0e-04}, 85.2\%"))[0]
    assert not ok(p, fingerprint.printed(r"MAE $-0.0028$ of 9{,}980 objects, run lr-0.001, \num{2.0e-05}, 85.2\%"))[0]


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
    assert fingerprint.fingerprint(a)["arrays"] == fingerprint.fingerprint(b)["arrays"]


def test_the_measured_cross_host_differences_pass_but_printing_the_same_is_not_enough():
    """Issue 13's AMD EPYC values against the Intel Xeon ones frozen in smoke.json (kNN baseline)."""
    rule = verify.macro_rule({"kind": "float", "precision": 4, "key": "baseline.knn.mae"}, "baseline", False)
    assert verify.within(0.013388501540947647, 0.01338850111944062, rule.tol)      # MAE, 3.1e-8 relative
    assert verify.within(0.002385844512740376, 0.0023858470322716875, rule.tol)    # bias, 2.5e-9 absolute
    assert verify.within(0.007552604785513424, 0.007552607769614063, rule.tol)     # NMAD, 4.0e-7 relative
    # Prints 0.0134 like the frozen value, but moved 150 times more than another CPU moves it.
    assert not verify.within(0.013388501540947647, 0.013388501540947647 + 2e-5, rule.tol)


def test_text_data_and_rendered_images_have_no_value_level():
    text = verify.file_rule("data/serialized/train.jsonl", "serialize", False, False)
    row = verify._file_row("figure:x data/serialized/train.jsonl", "-", {"sha256": "a" * 64}, {"sha256": "b" * 64}, text)
    assert text.mode == "sha256" and row.verdict == "MISMATCH"
    png = verify.file_rule("paper/generated/figures/real_vs_reconstructed.png", None, False, False)
    row = verify._file_row("figure:y", "-", {"sha256": "a" * 64}, {"sha256": "b" * 64}, png)
    assert row.verdict == "differs (advisory)"


@pytest.mark.parametrize("key", ["stability.warmup.minutes", "ablation.cost.train_minutes", "probe.prompts_per_s",
                                 "train.default.wall_s", "stability.probe.device"])
def test_run_measurements_are_informational_never_failures(key):
    """Timings and devices differ between any two runs (a perturbed smoke run moved the warm-up's
    minutes by 80%): shown, never failed; a result key next to them is still checked."""
    assert verify._info({"key": key, "source": "results/x.json"}) == "info (measured)"
    assert verify._info({"key": key.rsplit(".", 1)[0] + ".mae", "source": "results/x.json"}) is None
