"""The LoRA part of the report (specllm.report.ablation): tables, claims and figures follow the results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from specllm.errors import InputError
from specllm.report import ablation
from specllm.report.macros import MacroSet

sys.path.insert(0, str(Path(__file__).parent))
from test_report import FAKE_RUNS, PARAMS, fake_lora  # noqa: E402

DEFAULTS = {d: PARAMS[f"train.{d}"] for d in ablation.DIMS}


def _macros(inputs) -> dict[str, str]:
    ms = MacroSet()
    ablation.add_macros(ms, ablation.load(inputs), DEFAULTS, lambda p: Path(p).name, constrained=True)
    return {m.key: m.text for m in ms.macros()}


def test_three_tables_vary_one_setting_around_the_default(tmp_path):
    data = ablation.load(fake_lora(tmp_path))
    for dim, values in (("lr", [1e-5, 1e-4, 1e-3]), ("rank", [4, 8, 16]), ("epochs", [1, 2, 3])):
        rows = ablation.dimension_rows(data["runs"], DEFAULTS, dim)
        assert [r[dim] for r in rows] == values
        assert sum(r["run"] == "default" for r in rows) == 1  # the default run is shared, not repeated
    built = ablation.build_tables(data, DEFAULTS)
    for dim in ablation.DIMS:
        text = built[f"ablation_{dim}"]
        # every redshift table ends with the constant predictor and the base model on the same galaxies
        const = next(line for line in text.splitlines() if line.startswith("constant ($z=0.160$)"))
        assert const.split(" & ")[1] == "0.0664" and const.split(" & ")[2] == "0"
        assert any(line.startswith("base model & ---") for line in text.splitlines())
    text = built["ablation_lr"]
    default_line = next(line for line in text.splitlines() if line.startswith(r"\textbf{\num{1e-04}}"))
    assert "0.043" in default_line and r"85.2\%" in default_line  # the original's values beside ours
    assert r"\textbf{\ensuremath{-}0.0364\,{\scriptsize[" in default_line  # its difference to the constant, with CI
    other = next(line for line in text.splitlines() if line.startswith(r"\num{1e-05}"))
    assert other.rstrip(" \\").endswith("--- & --- & ---")  # not in the reference file: a dash, never a guess
    ret = built["ablation_retention"]
    assert ret.count(r"\texttt{") == 7 and r"80.0\%\,{\scriptsize[60, 100]}" in ret  # above chance beside the ratio


def test_claims_follow_the_results(tmp_path):
    first = _macros(fake_lora(tmp_path / "a"))
    assert first["ablation.best.run"] == r"\texttt{default}"
    assert first["ablation.claim.axis_lr"].startswith(r"at rank 8 and 2 epochs, a learning rate of $10^{-4}$ gives")
    assert first["ablation.n_beat_constant"] == "6" and first["ablation.constant.val_mae"] == "0.0664"
    # make lr 1e-3 the best run on validation: every sentence that depends on it changes
    flipped = _macros(fake_lora(tmp_path / "b", val_mae={"lr-0.001": 0.010}))
    assert flipped["ablation.best.run"] == r"\texttt{lr-0.001}"
    assert r"a learning rate of $10^{-3}$ gives" in flipped["ablation.claim.axis_lr"]
    assert r"run \texttt{lr-0.001}" in flipped["ablation.claim.selection"]
    # no run beats the constant: no setting is called best, the chosen run does not read redshift
    none = _macros(fake_lora(tmp_path / "c", scale=4.0))
    assert none["ablation.n_beat_constant"] == "0"
    assert "no learning rate can be called best at this scale" in none["ablation.claim.axis_lr"]
    assert "does worse than predicting the training median" in none["ablation.claim.constant"]


def test_unparsed_runs_are_reported_not_dropped(tmp_path):
    m = _macros(fake_lora(tmp_path, unparsed=0.5))
    assert m["ablation.claim.selection"].startswith("none of the 7 trained runs parses")
    assert "no run of the learning rates tried" in m["ablation.claim.axis_lr"]
    assert m["ablation.best.test_n_unparsed"] == "20"
    assert m["ablation.base.test_unparsed_frac"] == r"100\%"


def test_demo_text_is_safe_latex(tmp_path):
    m = _macros(fake_lora(tmp_path))
    assert m["demo.answer"].isascii() and r"\&" in m["demo.answer"] and r"\%" in m["demo.answer"]
    assert m["demo.prompt"].endswith("(24 values)")  # the series is elided, not printed in full
    assert ablation.clean_text("word " * 300, limit=20).endswith("[...]")


@pytest.mark.parametrize("mutate, field", [
    (lambda i: i.demo.unlink(), "demo.json: -: file not found"),
    (lambda i: (i.train_dir / "rank-4" / "train.json").unlink(), "rank-4/train.json: -: file not found"),
    (lambda i: i.ablation.write_text("{"), "ablation.json: line 1: not valid JSON"),
    (lambda i: i.ablation.write_text(json.dumps({**json.loads(i.ablation.read_text()), "best": "nope"})),
     "ablation.json: best: 'nope' is not one of the runs"),
])
def test_bad_inputs_name_file_and_field(tmp_path, mutate, field):
    inputs = fake_lora(tmp_path)
    mutate(inputs)
    with pytest.raises(InputError, match=field):
        ablation.load(inputs)


def test_grid_matches_the_fakes():
    assert len(FAKE_RUNS) == 7  # default + two values in each of three dimensions
