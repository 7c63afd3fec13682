"""Qualitative claims are generated from the results: flip a result and the sentence follows."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from specllm import claims
from specllm.report.macros import MacroSet


def _run(run, lr=1e-4, rank=8, epochs=2, val_mae=0.05, sci=0.9, gen=0.95):
    return {"run": run, "lr": lr, "rank": rank, "epochs": epochs, "val_mae": val_mae,
            "science_retention": sci, "general_retention": gen}


ABLATION = {
    "best": "default",
    "runs": [
        {"run": "base", "lr": None, "rank": None, "epochs": None, "val_mae": 0.2,
         "science_retention": None, "general_retention": None},
        _run("default", val_mae=0.043, sci=0.852, gen=0.894),
        _run("lr-1e-05", lr=1e-5, val_mae=0.080),
        _run("lr-0.001", lr=1e-3, val_mae=0.060),
        _run("rank-4", rank=4, val_mae=0.050),
        _run("rank-16", rank=16, val_mae=0.045),
        _run("epochs-1", epochs=1, val_mae=0.070),
        _run("epochs-3", epochs=3, val_mae=0.044),
    ],
}


def _set(ab, run, **kw):
    out = copy.deepcopy(ab)
    next(r for r in out["runs"] if r["run"] == run).update(kw)
    return out


def test_best_learning_rate_sentence_follows_the_result():
    before = claims.best_setting(ABLATION, "lr")
    assert before.text == "a learning rate of $10^{-4}$ gives the lowest validation MAE of the 3 learning rates tried"
    assert before.value == 1e-4
    # Flip: swap the MAEs of the default run and the lr = 1e-3 run.
    flipped = _set(_set(ABLATION, "default", val_mae=0.060), "lr-0.001", val_mae=0.043)
    after = claims.best_setting(flipped, "lr")
    assert after.value == 1e-3 and "$10^{-3}$" in after.text and after.text != before.text


def test_best_rank_and_epochs_and_ties():
    assert claims.best_setting(ABLATION, "rank").text.startswith("a LoRA rank of 8 gives")
    assert claims.best_setting(ABLATION, "epochs").text.startswith("training for 2 epochs gives")
    flipped = claims.best_setting(_set(ABLATION, "epochs-1", val_mae=0.01), "epochs")
    assert flipped.text.startswith("training for 1 epoch gives") and flipped.value == 1
    tie = claims.best_setting(_set(ABLATION, "rank-16", val_mae=0.043), "rank")
    assert "tie" in tie.text and tie.value == [8, 16]


def test_retention_claim_flips_at_the_level():
    assert claims.retention_above(ABLATION, "science").text == \
        "science-QA retention stays above 85\\% (85.2\\%)"
    low = claims.retention_above(_set(ABLATION, "default", science_retention=0.80), "science")
    assert low.text == "science-QA retention falls below 85\\% (80.0\\%)" and low.value is False


def test_dpo_claim_three_outcomes():
    good = claims.dpo_effect({"pss_before": 0.139, "pss_after": 0.073, "acc_before": 0.9, "acc_after": 0.91})
    assert good.text.startswith("DPO lowers the mean PSS (from 0.139 to 0.073) without lowering accuracy")
    costly = claims.dpo_effect({"pss_before": 0.139, "pss_after": 0.073, "acc_before": 0.9, "acc_after": 0.85})
    assert "but also lowers accuracy" in costly.text
    none = claims.dpo_effect({"pss_before": 0.07, "pss_after": 0.08, "acc_before": 0.9, "acc_after": 0.9})
    assert none.text.startswith("DPO does not lower the mean PSS")


def test_k2_dominates_claim_flips():
    assert claims.k_dominates({"1": 10, "2": 60, "3": 30}).value is True
    flipped = claims.k_dominates({"1": 10, "2": 30, "3": 60})
    assert flipped.value is False and "$K=3$ is chosen most often" in flipped.text


def test_add_claims_reads_result_files_and_skips_missing_ones(tmp_path: Path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ablation.json").write_text(json.dumps(ABLATION))
    ms = MacroSet()
    skipped = claims.add_claims(ms, tmp_path)
    assert ms["claim.best_lr"].name == "ClaimBestLr"
    assert "$10^{-4}$" in ms["claim.best_lr"].text and ms["claim.best_lr"].source == "results/ablation.json"
    assert set(skipped) == {"claim.dpo_effect", "claim.k2_dominates"}  # no stability results here
    assert "\\newcommand{\\ClaimRetentionScienceAbove}" in ms.tex()


def test_a_claim_without_a_default_run_is_skipped_not_invented(tmp_path: Path):
    (tmp_path / "results").mkdir()
    ab = {"best": "x", "runs": [_run("x")]}
    (tmp_path / "results" / "ablation.json").write_text(json.dumps(ab))
    made, skipped = claims.compute(tmp_path)
    assert "claim.best_lr" in skipped and "default" in skipped["claim.best_lr"]
    with pytest.raises(ValueError):
        claims.best_setting(ab, "lr")
