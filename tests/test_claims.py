"""Claims and verdicts are decided by intervals (specllm.claims, specllm.verdicts): flip the synthetic
results and the sentence and the verdict follow."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from specllm import claims, verdicts
from specllm.evaluate.paired import excludes_zero, paired_mean_diff

sys.path.insert(0, str(Path(__file__).parent))
from test_report import fake_lora  # noqa: E402


def _load(tmp_path: Path, **kw) -> tuple[dict, dict]:
    inputs = fake_lora(tmp_path, **kw)
    return json.loads(inputs.ablation.read_text()), json.loads(inputs.reference.read_text())


def _verdicts(abl: dict, ref: dict) -> dict[str, dict]:
    return {r["key"]: r for r in claims.lora_verdicts(abl, ref)}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """The default run (lr 1e-4, rank 8, 2 epochs) is best and beats the constant; epochs 2 vs 3 tie."""
    return _load(tmp_path_factory.mktemp("learned"))


# ---------------------------------------------------------------- p-values and intervals

@pytest.mark.parametrize("p, resolution, text", [
    (2 / 512, 2 / 512, "p = 0.004"),          # exact sign-flip test, 9 pairs: not "p = 0.00"
    (24 / 512, 2 / 512, "p = 0.047"),
    (0.5, 2 / 16, "p = 0.50"),                # 4 pairs: two decimals resolve the test
    (0.004, None, "p < 0.01"),                # unknown resolution: two decimals
    (2 / 2 ** 20, 2 / 2 ** 20, "p < 0.001"),  # finer than three decimals can print
    (1.0, None, "p = 1.00"),
])
def test_p_values_print_with_their_tests_resolution(p, resolution, text):
    assert claims.format_p(p, resolution, latex=False) == text
    assert claims.format_p(p, resolution) == f"${text}$"


def test_p_value_of_the_real_sign_flip_test():
    # nine objects that all move the same way: the exact test's smallest p, 2/2^9
    from specllm.stability.analysis import paired_bootstrap

    r = paired_bootstrap(np.zeros(9), np.linspace(0.1, 0.9, 9), n_boot=200, seed=1)
    assert r["p_value"] == pytest.approx(2 / 512)
    assert claims.format_p(r["p_value"], claims.signflip_resolution(r["n"]), latex=False) == "p = 0.004"
    assert claims.signflip_resolution(30, n_draws=2000) == pytest.approx(1 / 2000)
    with pytest.raises(ValueError):
        claims.format_p(1.5)


def test_comparison_with_the_original_follows_our_interval():
    assert claims.against(0.81, 1.02, 0.852) == "consistent"  # 91.4% [81, 102] vs 85.2%: not "more than"
    assert claims.against(0.86, 0.95, 0.852) == "above"
    assert claims.against(0.70, 0.80, 0.852) == "below"
    assert claims.against(None, 0.9, 0.852) is None


def test_paired_difference_on_known_values():
    a, b = np.array([0.3, 0.2, 0.4, 0.1]), np.array([0.1, 0.1, 0.1, 0.1])
    d = paired_mean_diff(a, b, n_boot=400, seed=0)
    assert d["mean_diff"] == pytest.approx(0.15) and d["n"] == 4
    assert 0 <= d["ci_low"] <= 0.15 <= d["ci_high"] <= 0.3 and excludes_zero(d) == (d["ci_low"] > 0)
    same = paired_mean_diff(a, a, n_boot=50, seed=0)
    assert same["mean_diff"] == 0 and not excludes_zero(same)
    nan = paired_mean_diff(np.array([np.nan, 0.2]), np.array([0.1, 0.1]), n_boot=10, seed=0)
    assert nan["n"] == 1  # an unparsed answer has no error: that pair is left out


# ---------------------------------------------------------------- the LoRA study's claims

def test_a_decided_best_setting_is_supported(learned):
    abl, ref = learned
    v = _verdicts(abl, ref)
    assert v["lora.best_lr"]["verdict"] == claims.SUPPORTED and v["lora.best_rank"]["verdict"] == claims.SUPPORTED
    s = claims.lora_claims(abl, ref)
    assert s["axis_lr"].startswith(r"at rank 8 and 2 epochs, a learning rate of $10^{-4}$ gives the lowest")
    assert "it reads redshift from the spectra" in s["constant"]


def test_best_and_runner_up_indistinguishable(learned, tmp_path):
    abl, ref = learned
    # epochs 2 (0.030) and 3 (0.031): the interval of their difference includes zero
    assert _verdicts(abl, ref)["lora.best_epochs"]["verdict"] == claims.UNTESTABLE
    assert "indistinguishable at this scale" in claims.axis_sentence(abl, "epochs")
    assert "indistinguishable from the runner-up" in claims.selection_sentence(abl)
    # rank 16 given exactly the default's errors: rank 8 is no longer "best"
    tied, _ = _load(tmp_path, ties={"rank-16": "default"}, val_mae={"rank-16": 0.030})
    assert _verdicts(tied, ref)["lora.best_rank"]["verdict"] == claims.UNTESTABLE
    assert "includes 0" in _verdicts(tied, ref)["lora.best_rank"]["reason"]


def test_another_best_setting_contradicts(tmp_path, learned):
    _, ref = learned
    abl, _ = _load(tmp_path, val_mae={"lr-0.001": 0.010})
    v = _verdicts(abl, ref)["lora.best_lr"]
    assert v["verdict"] == claims.CONTRADICTED and v["reason"].startswith("1e-3 beats the runner-up")
    assert r"a learning rate of $10^{-3}$ gives the lowest" in claims.axis_sentence(abl, "lr")


def test_no_run_beats_the_constant(tmp_path, learned):
    _, ref = learned
    abl, _ = _load(tmp_path, scale=4.0)  # every run's MAE 0.12 or more; the constant's is 0.066
    assert abl["any_beats_constant"] is False
    v = _verdicts(abl, ref)
    assert {r["verdict"] for r in v.values()} == {claims.UNTESTABLE}
    assert all("no run beats the constant" in v[k]["reason"] for k in ("lora.best_lr", "lora.best_rank",
                                                                       "lora.best_epochs", "lora.mae"))
    assert "our data differ" in v["lora.mae"]["reason"]
    s = claims.lora_claims(abl, ref)
    assert "so no run is shown to read redshift at this scale" in s["runs_vs_constant"]
    assert "no learning rate can be called best" in s["axis_lr"]
    assert "does worse than predicting the training median" in s["constant"]
    summary = verdicts.build(abl, ref, [])["summaries"]["lora"]
    assert summary.endswith("6 not testable at this scale: no LoRA run is shown to read redshift better than the constant "
                            "training-median predictor")


def test_a_test_split_win_after_no_validation_win_is_not_called_reading(learned):
    # the small profile's case: no run beats the constant on validation (the rule's split), yet the chosen
    # run's test MAE is below it; the sentence must not say the model reads redshift
    abl = copy.deepcopy(learned[0])
    for r in abl["runs"]:
        if r["run"] != "base":
            r["vs_constant"]["val"].update(ci_low=-0.004, ci_high=0.001, beats=False)
    best = next(r for r in abl["runs"] if r["run"] == abl["best"])
    best["vs_constant"]["test"].update(mean_diff=-0.009, ci_low=-0.013, ci_high=-0.005)
    s = claims.constant_sentence(abl)
    assert "it reads redshift" not in s and "the rule does not count this as reading redshift" in s
    assert "so no run is shown to read redshift" in claims.runs_vs_constant_sentence(abl)
    assert "it reads redshift from the spectra" in claims.constant_sentence(learned[0])


@pytest.mark.parametrize("ci, verdict", [((0.90, 0.99), claims.SUPPORTED), ((0.60, 0.80), claims.CONTRADICTED),
                                         ((0.81, 1.02), claims.UNTESTABLE)])
def test_retention_verdict_follows_its_interval(learned, ci, verdict):
    abl = copy.deepcopy(learned[0])
    row = next(r for r in abl["runs"] if r["run"] == abl["best"])
    row["retention"]["science"].update(ratio=sum(ci) / 2, ci_low=ci[0], ci_high=ci[1])
    assert _verdicts(abl, learned[1])["lora.retention_science"]["verdict"] == verdict
    word = {claims.SUPPORTED: "above the original", claims.CONTRADICTED: "below the original",
            claims.UNTESTABLE: "consistent with the original"}[verdict]
    assert word in claims.retention_sentence(abl, learned[1])


def test_claims_name_only_what_was_varied(learned):
    abl, ref = learned
    assert "no claim about the best combination" in claims.combination_sentence(abl)
    assert _verdicts(abl, ref)["lora.best_rank"]["claim"].endswith("(at learning rate 1e-4 and 2 epochs)")
    missing = copy.deepcopy(ref)
    missing["best"]["lr"] = 3e-4  # a value nobody ran
    assert _verdicts(abl, missing)["lora.best_lr"]["reason"] == "3e-4 was not run"


# ---------------------------------------------------------------- the verdict table

def test_verdict_table_is_latex_safe(learned):
    abl, ref = learned
    odd = {"key": "scse.x", "study": "scse", "claim": "50% of_objects & more", "original": "#1 {x}", "ours": "a < b",
           "verdict": claims.CONTRADICTED, "reason": "$\\ cost ~ ^"}
    v = verdicts.build(abl, ref, [odd])
    text = verdicts.latex_table(v["rows"])
    assert r"50\% of\_objects \& more" in text and r"\#1 \{x\}" in text and r"\$\textbackslash{}" in text
    assert not re.search(r"(?<!\\)[%&#_]", text.replace(" & ", " ").replace(r"\\", ""))  # no bare specials
    assert text.count(r"\textbf{contradicted}") == 1 and v["counts"]["scse"]["contradicted"] == 1
    assert "Of the 6 headline claims" in verdicts.text_table(v)
    with pytest.raises(ValueError, match="verdict 'maybe'"):
        verdicts.build(abl, ref, [{**odd, "verdict": "maybe"}])
    with pytest.raises(ValueError, match="lacks reason"):
        verdicts.build(abl, ref, [{k: odd[k] for k in odd if k != "reason"}])


def test_verdicts_stage_writes_its_file(tmp_path, learned):
    from specllm.errors import InputError
    from specllm.stages import verdicts as stage

    abl, ref = learned
    files = {}
    for name, obj in (("ablation", abl), ("arxiv", ref), ("analysis", {}), ("reprobe", {}), ("scse", {})):
        files[name] = (tmp_path / f"{name}.json", "fix")
        files[name][0].write_text(json.dumps(obj))
    files["arxiv"][0].write_text("{")
    with pytest.raises(InputError, match="arxiv.json: line 1: not valid JSON"):
        stage.run(files, tmp_path / "verdicts.json")
    files["arxiv"][0].write_text(json.dumps(ref))
    try:  # the stability study's rows from empty results: none, or an error the stage must name
        from specllm.stability.verdicts import stability_verdicts

        stability_verdicts({}, {}, {})
    except (KeyError, TypeError, ValueError):
        with pytest.raises(InputError, match="cannot decide the verdicts"):
            stage.run(files, tmp_path / "verdicts.json")
        return
    out = stage.run(files, tmp_path / "verdicts.json")
    assert json.loads((tmp_path / "verdicts.json").read_text()) == json.loads(json.dumps(out))
    assert out["n_claims"] == len(out["rows"]) >= 6


def test_compare_prints_the_verdicts(tmp_path, learned):
    from specllm import compare

    assert compare.verdict_lines(tmp_path) == ["verdicts: not in this build (run `dvc repro verdicts`)"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "verdicts.json").write_text(json.dumps(verdicts.build(*learned, [])))
    text = "\n".join(compare.verdict_lines(tmp_path))
    assert "[supported] learning rate 1e-4 is best (at rank 8 and 2 epochs)" in text
    assert "[not testable] epoch count 2 is best" in text and "reason: best and runner-up are indistinguishable" in text


def test_a_prior_readout_is_not_compared_with_scse():
    # answers that vary with the order but do not read the object (accuracy not above the prior-only
    # classifier): the text must not set that PSS against SCSE's, as the verdicts do not
    from specllm.report.stability import after_claim, compare_claim

    ci = {"ci_low": 0.137, "ci_high": 0.174}
    assert compare_claim(ci, 0.0916, True).startswith("above that value")
    assert compare_claim(ci, 0.0916, True, reads_object=False).startswith("not comparable with that value")
    g = {"pss_test": {"ci_low": 0.0, "ci_high": 0.044}, "accuracy_test": {"ci_low": 0.0, "ci_high": 0.0}}
    assert "label prior" in after_claim(g, True, reads_object=False) and "label prior" not in after_claim(g, True)


def test_a_percent_interval_is_printed_outward():
    # the small run's science retention: 71.4% [58.4%, 85.29%] against the original's 85.2%; whole percents
    # rounded to nearest would print [58%, 85%] beside "consistent with 85.2%"
    d = {"ratio": 0.714, "ci_low": 0.584, "ci_high": 0.8529}
    assert claims._interval(d, "percent", 1, latex=False) == "71.4% [58%, 86%]"
    assert claims._interval({"ratio": 0.5, "ci_low": 0.42, "ci_high": 0.57}, "percent", 1, latex=False) == "50.0% [42%, 57%]"
