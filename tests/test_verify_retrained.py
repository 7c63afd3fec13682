"""verify when a training diverged (specllm.retrained): downstream values that moved pass as
"consistent (retrained)" only with the cause observed (a loss curve beyond the model tolerance),
every verdict identical and every interval of that study holding; never for values that do not
depend on the diverged training, and never with --strict."""

from __future__ import annotations

import json
from pathlib import Path

from test_verify import LOCK, make_project

from specllm import retrained, verify
from specllm.report.macros import MacroSet

EXTRA_LOCK = """  stability_warmup:
    cmd: python -m specllm.stages.stability_warmup
    outs:
    - path: results/stability/warmup_loss.csv
      md5: ggg
  stability_reprobe:
    cmd: python -m specllm.stages.stability_reprobe
    outs:
    - path: results/stability/reprobe.json
      md5: hhh
  verdicts:
    cmd: python -m specllm.stages.verdicts
    outs:
    - path: results/verdicts.json
      md5: iii
"""
LOSSES = [4.06, 2.49, 1.13, 0.30, 0.33]


def make(root: Path, *, losses=LOSSES, mean_pss=0.026, top="QSO", verdict="contradicted", baseline=0.0431) -> Path:
    """The fake project of test_verify plus a stability study: a warm-up loss curve, a mean PSS with
    its interval [0, 0.074], a top label, the verdicts."""
    make_project(root, mae=baseline)
    (root / "dvc.lock").write_text(LOCK + EXTRA_LOCK)
    st = root / "results" / "stability"
    (st / "warmup_loss.csv").write_text("step,loss\n" + "".join(f"{i},{x:.6f}\n" for i, x in enumerate(losses, 1)))
    (st / "reprobe.json").write_text(json.dumps({"after": {"accuracy": 0.9}}))
    rows = [{"key": "scse.mean_pss", "verdict": verdict}, {"key": "lora.mae", "verdict": "supported"}]
    (root / "results" / "verdicts.json").write_text(json.dumps({"rows": rows}))
    values = json.loads((root / "paper/generated/values.json").read_text())
    ms = MacroSet()
    for m in values["macros"]:  # keep the base project's macros, add the stability study's
        ms.add(m["key"], m["value"], source=m.get("source"), kind=m["kind"], precision=m.get("precision"))
    src = "results/stability/analysis.json"
    ms.add("stability.mean_pss", mean_pss, source=src, kind="float", precision=3)
    ms.add("stability.pss_ci_low", 0.0, source=src, kind="float", precision=3)
    ms.add("stability.pss_ci_high", 0.074, source=src, kind="float", precision=3)
    ms.add("stability.top_label", top, source=src, kind="code")
    ms.add("verdict.n_contradicted", 1 if verdict == "contradicted" else 0, source="results/verdicts.json",
           kind="int")
    gen = root / "paper" / "generated"
    ms.write(gen / "macros.tex", gen / "values.json")
    return root


def check(root: Path, *, strict: bool = False) -> tuple[int, str, dict[str, str]]:
    lines: list[str] = []
    code = verify.verify(root, repro=False, strict=strict, out=lines.append)
    frozen = json.loads((root / "paper/reported/smoke.json").read_text())
    rows = verify.compare(frozen, verify.load_values(root), root)
    verify.claim_level(rows, frozen, verify.load_values(root), root, strict=strict)
    return code, "\n".join(lines), {r.name: r.verdict for r in rows}


def diverged_losses() -> list[float]:
    return [4.06, 2.49, 1.13, 0.304, 0.344]  # measured shape: equal early, apart after ~100 steps


def test_freeze_records_the_loss_curves_and_every_verdict(tmp_path):
    root = make(tmp_path)
    frozen = json.loads(verify.freeze(root, check_status=False).read_text())
    assert frozen["format"] == 3
    assert list(frozen["trainings"]) == ["results/stability/warmup_loss.csv"]
    assert frozen["trainings"]["results/stability/warmup_loss.csv"]["arrays"]["loss"]["values"] == LOSSES
    assert frozen["verdicts"] == {"scse.mean_pss": "contradicted", "lora.mae": "supported"}


def test_values_downstream_of_a_diverged_training_pass_at_the_claim_level(tmp_path):
    root = make(tmp_path)
    verify.freeze(root, check_status=False)
    make(root, losses=diverged_losses(), mean_pss=0.0, top="GALAXY")  # what the perturbed small run gave
    code, text, v = check(root)
    assert code == 0, text
    assert v["StabilityMeanPss"] == v["StabilityTopLabel"] == retrained.CONSISTENT
    assert v["interval StabilityMeanPss"] == retrained.CONSISTENT
    assert v["verdict scse.mean_pss"] == v["verdict lora.mae"] == "identical"
    assert "the stability warm-up and DPO diverged" in text and "warmup_loss.csv" in text
    assert "verify: OK (reproduced at the claim level)" in text and "3 consistent at the claim level" in text  # 2 values + 1 interval check
    # --strict: the same run fails, and says why.
    code, text, v = check(root, strict=True)
    assert code == 1 and v["StabilityTopLabel"] == "MISMATCH" and "NOT accepted (--strict)" in text


def test_without_a_diverged_training_a_moved_value_is_a_mismatch(tmp_path):
    root = make(tmp_path)
    verify.freeze(root, check_status=False)
    make(root, mean_pss=0.0, top="GALAXY")  # the same loss curve: a bug, not another CPU
    code, text, v = check(root)
    assert code == 1 and v["StabilityTopLabel"] == v["StabilityMeanPss"] == "MISMATCH"
    assert "interval StabilityMeanPss" not in v and "diverged" not in text


def test_a_changed_verdict_is_never_accepted(tmp_path):
    root = make(tmp_path)
    verify.freeze(root, check_status=False)
    make(root, losses=diverged_losses(), mean_pss=0.0, verdict="not testable at this scale")
    code, text, v = check(root)
    assert code == 1
    assert v["verdict scse.mean_pss"] == "MISMATCH" and v["StabilityMeanPss"] == "MISMATCH"
    assert v["VerdictNContradicted"] == "MISMATCH"  # the verdict stage's own values are never relaxed
    assert "the verdict of scse.mean_pss changed" in text


def test_a_statistic_outside_its_frozen_interval_is_not_accepted(tmp_path):
    root = make(tmp_path)
    verify.freeze(root, check_status=False)
    make(root, losses=diverged_losses(), mean_pss=0.09, top="GALAXY")
    code, text, v = check(root)
    assert code == 1
    assert v["interval StabilityMeanPss"] == "MISMATCH" and v["StabilityTopLabel"] == "MISMATCH"
    assert "StabilityMeanPss outside the frozen 95% interval" in text


def test_an_undefined_point_frozen_and_regenerated_alike_is_inside_a_number_is_not():
    """A ratio over a base model at chance is "n/a" on both runs while its bootstrap interval exists: that point
    did not move. A number where "n/a" was frozen, or "n/a" where a number was, is checked as before."""
    interval = {"lo": {"value": 3.667}, "hi": {"value": 6.233}}
    names = [("P", "lo", "hi")]
    old = retrained.INTERVALS
    retrained.INTERVALS = names
    try:
        same = retrained.interval_checks({"P": {"value": "n/a"}, **interval}, {"P": {"value": "n/a"}}, {})
        number = retrained.interval_checks({"P": {"value": "n/a"}, **interval}, {"P": {"value": 9.0}}, {})
        gone = retrained.interval_checks({"P": {"value": 5.0}, **interval}, {"P": {"value": "n/a"}}, {})
    finally:
        retrained.INTERVALS = old
    assert same[0][2] is True and "n/a as frozen" in same[0][3]
    assert number[0][2] is False and gone[0][2] is False and "outside" in gone[0][3]


def test_values_that_do_not_depend_on_the_diverged_training_keep_their_tolerance(tmp_path):
    root = make(tmp_path)
    verify.freeze(root, check_status=False)
    make(root, losses=diverged_losses(), top="GALAXY", baseline=0.0432)  # a CPU stage moved as well
    code, text, v = check(root)
    assert code == 1
    assert v["BaselineBestMae"] == "MISMATCH" and v["StabilityTopLabel"] == retrained.CONSISTENT


def test_every_interval_names_macros_the_paper_reports():
    """INTERVALS must name real macros, with the point inside its own interval, in every frozen file."""
    root = Path(__file__).resolve().parents[1]
    for profile in ("smoke", "small"):
        values = json.loads((root / "paper" / "reported" / f"{profile}.json").read_text())["values"]
        checked = 0
        for point, lo, hi in retrained.INTERVALS:
            assert {point, lo, hi} <= set(values), (profile, point)
            if values[point]["value"] == "n/a":  # above chance is undefined when the base model is at chance
                continue
            x, a, b = (float(values[n]["value"]) for n in (point, lo, hi))
            assert a - retrained.INTERVAL_SLACK <= x <= b + retrained.INTERVAL_SLACK, (profile, point)
            checked += 1
        assert checked >= len(retrained.INTERVALS) - 2, profile


def test_each_training_group_matches_real_stages():
    root = Path(__file__).resolve().parents[1]
    from ruamel.yaml import YAML

    stages = list((YAML(typ="safe").load((root / "dvc.yaml").read_text()) or {})["stages"])
    assert retrained.group_of("train_default") == retrained.group_of("select") == "LoRA fine-tuning"
    assert retrained.group_of("evaluate_base") is None and retrained.group_of("baseline") is None
    assert retrained.group_of("stability_sample") is None and retrained.group_of("verdicts") is None
    assert retrained.group_of("stability_probe") == "stability warm-up and DPO"
    assert retrained.group_of(None, "src/specllm/verdicts.py") == retrained.ANY
    for t in retrained.TRAININGS:
        assert [s for s in stages if t.stages.match(s)], t.name
        for module in t.modules:
            assert (root / module).is_file(), module
