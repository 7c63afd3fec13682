"""specllm.paths is where project paths are spelled: the layouts below another root (tests, the report) keep
the project's spelling, so outputs and dvc.yaml's paths stay what they were."""

from __future__ import annotations

from pathlib import Path

from specllm import paths
from specllm.report import stability
from specllm.report.ablation import AblationInputs
from specllm.stability.files import layout
from specllm.stages import evaluate, retention, select, verdicts
from specllm.stages.report import Inputs

ROOT = Path("/x/proj")


def _check(obj, expected: dict[str, str]) -> None:
    for key, rel in expected.items():
        got = obj[key] if isinstance(obj, dict) else getattr(obj, key)
        assert got == ROOT / rel, (key, got)


def test_stability_layout():
    _check(layout(ROOT), {
        "params": "params.yaml", "catalogue_embedded": "data/raw/catalogue.csv",
        "catalogue_sdss17": "data/external/sdss17/catalogue.csv", "base_model": "models/base",
        "adapter": "models/stability_dpo", "warmup_adapter": "models/stability_warmup",
        "results": "results/stability", "objects": "results/stability/objects.csv"})


def test_report_inputs_under_a_root():
    _check(Inputs.under(ROOT), {
        "manifest": "data/raw/manifest.json", "catalogue": "data/raw/catalogue.csv",
        "data_summary": "results/data_summary.json", "prepared": "data/prepared", "model": "results/model.json",
        "serialization": "results/serialization.json", "serialized": "data/serialized",
        "baseline": "results/baseline.json", "baseline_predictions": "results/baseline_predictions.csv",
        "environment": "results/environment.json", "stability_sample": "results/stability/sample.json"})
    _check(AblationInputs.under(ROOT), {
        "ablation": "results/ablation.json", "best_predictions": "results/ablation_best_predictions.csv",
        "per_bin": "results/ablation_per_bin.csv", "train_dir": "results/train", "demo": "results/demo.json",
        "reference": "data/reference/arxiv_2508.10075.json", "retention_dir": "results/retention"})
    assert stability.REFERENCE == Path("data/reference/scse.json")


def test_stage_constants():
    root = paths.ROOT
    assert evaluate.LORA_DIR == root / "models/lora"
    assert evaluate.EVAL_DIR == select.EVAL_DIR == root / "results/eval"
    assert select.RETENTION_DIR == retention.RETENTION_DIR == root / "results/retention"
    assert verdicts.INPUTS["arxiv"][0] == root / "data/reference/arxiv_2508.10075.json"
    assert verdicts.INPUTS["scse"][0] == root / "data/reference/scse.json"


def test_at_and_rel():
    assert paths.rel(paths.STABILITY) == "results/stability"
    assert paths.at("/y", paths.LORA) == Path("/y/models/lora")


def test_shown_is_relative_inside_the_root_and_as_given_outside(tmp_path):
    """What outputs record for a path (an adapter's base model, a probe file, a macro's source):
    the same string whether the clone is reached directly, through a symlink, or relative to cwd."""
    root = tmp_path / "clone"
    (root / "models" / "base").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root)
    assert paths.shown(root / "models" / "base", root) == "models/base"
    assert paths.shown(tmp_path / "link" / "models" / "base", root) == "models/base"
    assert paths.shown(root / "models" / "base", tmp_path / "link") == "models/base"
    assert paths.shown(tmp_path / "elsewhere.csv", root) == (tmp_path / "elsewhere.csv").as_posix()
    assert paths.shown("data/raw", root) == "data/raw"  # relative paths are kept as given


def test_paper_paths_as_verify_provenance_and_paperlint_spell_them():
    from specllm import paperlint, verify
    from specllm.stages import provenance

    assert (verify.REPORTED_DIR, verify.VALUES, verify.GENERATED) == (
        "paper/reported", "paper/generated/values.json", "paper/generated")
    assert verify.PAPER_TEX == ("paper/main.tex", "paper/sections/*.tex", "paper/generated_provenance/appendix.tex")
    assert verify.MACHINE_SOURCES == ("results/environment.json",)
    assert (provenance.OUT_DIR, provenance.GENERATED) == ("paper/generated_provenance", "paper/generated")
    assert paperlint.DEFAULT_FILES == ("paper/main.tex", "paper/sections/*.tex")
