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


def _macros(inputs, baseline_mae=0.02) -> dict[str, str]:
    ms = MacroSet()
    ablation.add_macros(ms, ablation.load(inputs), DEFAULTS, lambda p: Path(p).name, baseline_mae, constrained=True)
    return {m.key: m.text for m in ms.macros()}


def test_three_tables_vary_one_setting_around_the_default(tmp_path):
    data = ablation.load(fake_lora(tmp_path))
    for dim, values in (("lr", [1e-5, 1e-4, 1e-3]), ("rank", [4, 8, 16]), ("epochs", [1, 2, 3])):
        rows = ablation.dimension_rows(data["runs"], DEFAULTS, dim)
        assert [r[dim] for r in rows] == values
        assert sum(r["run"] == "default" for r in rows) == 1  # the default run is shared, not repeated
    text = ablation.build_tables(data, DEFAULTS)["ablation_lr"]
    default_line = next(line for line in text.splitlines() if line.startswith(r"\textbf{\num{1e-04}}"))
    assert "0.043" in default_line and r"85.2\%" in default_line  # the original's values beside ours
    other = next(line for line in text.splitlines() if line.startswith(r"\num{1e-05}"))
    assert other.rstrip(" \\").endswith("--- & --- & ---")  # not in the reference file: a dash, never a guess


def test_claims_follow_the_results(tmp_path):
    first = _macros(fake_lora(tmp_path / "a"))
    assert first["ablation.best.run"] == r"\texttt{default}"
    assert "the same setting the original found best" == first["ablation.claim.original"]
    assert first["ablation.lr.best"] == r"\num{1e-04}"
    # make lr 1e-3 the best run on validation: every sentence that depends on it changes
    flipped = _macros(fake_lora(tmp_path / "b", val_mae={"lr-0.001": 0.010}))
    assert flipped["ablation.best.run"] == r"\texttt{lr-0.001}"
    assert flipped["ablation.claim.original"].startswith("whereas the original found")
    assert r"\num{1e-03}" in flipped["ablation.claim.best"] and r"\num{1e-03}" in flipped["ablation.claim.setting"]
    assert flipped["ablation.lr.best"] == r"\num{1e-03}"
    # a much better baseline turns "(better)" into "(worse)"
    assert "(better)" in _macros(fake_lora(tmp_path / "c"), baseline_mae=1.0)["ablation.claim.baseline"]
    assert "(worse)" in _macros(fake_lora(tmp_path / "d"), baseline_mae=0.001)["ablation.claim.baseline"]


def test_unparsed_runs_are_reported_not_dropped(tmp_path):
    m = _macros(fake_lora(tmp_path, unparsed=0.5))
    assert m["ablation.claim.best"].startswith("None of the 7 trained runs parses")
    assert m["ablation.lr.best"] == "---"
    assert m["ablation.best.test_n_unparsed"] == "10"
    assert m["ablation.base.test_unparsed_frac"] == r"100\%"


def test_demo_text_is_safe_latex(tmp_path):
    m = _macros(fake_lora(tmp_path))
    assert m["demo.answer"].isascii() and r"\&" in m["demo.answer"] and r"\%" in m["demo.answer"]
    assert m["demo.prompt"].endswith("(24 values)")  # the series is elided, not printed in full
    assert ablation.clean_text("word " * 300, limit=20).endswith("[...]")


@pytest.mark.parametrize("mutate, field", [
    (lambda i: i.demo.unlink(), "demo.json: -: not found"),
    (lambda i: (i.train_dir / "rank-4" / "train.json").unlink(), "rank-4/train.json: -: not found"),
    (lambda i: i.ablation.write_text("{"), "ablation.json: -: not valid JSON"),
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
