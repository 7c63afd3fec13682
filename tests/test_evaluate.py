"""Redshift evaluation: parsing, metrics with unparsed outputs, batched greedy decoding, selection on val,
bad inputs, the stage end to end and the demo chat (tiny random Llama; seconds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from specllm.errors import InputError
from specllm.evaluate import redshift
from specllm.evaluate.generate import NumberConstraint, greedy_generate, load_model
from specllm.evaluate.parse import parse_redshift, target_grammar
from specllm.evaluate.select import ablation, choose_best, run_settings
from specllm.metrics import redshift_metrics

# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from specllm.model.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "base", hidden=32, layers=2, heads=4, seed=1)


@pytest.fixture(scope="module")
def noisy(tiny_dir):
    """The tiny model with large random weights, so greedy outputs differ from prompt to prompt."""
    from specllm.model.load import load_base

    model, tok = load_base(tiny_dir)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model, tok


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir, tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    from specllm.model.load import load_base

    model, _ = load_base(tiny_dir)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("lora") / "lr2e-4_r8_e3"
    get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(out)
    return out


def chat_prompt(tok, text: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)


def write_serialized(folder: Path, tok, sizes=None) -> Path:
    sizes = sizes or {"train": 4, "val": 5, "test": 6}
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    gal = 100
    for split, n in sizes.items():
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                z = float(rng.uniform(0.01, 0.5))
                series = ",".join(f"{v}|{w}|0" for v, w in rng.integers(0, 10, (int(rng.integers(3, 9)), 2)))
                fh.write(json.dumps({"gal_id": gal, "z": z, "series": series,
                                     "prompt": chat_prompt(tok, f"Galaxy spectrum is rescaled and encoded to an input series: {series}"),
                                     "target": f"Redshift: {z:.3f}", "n_tokens": 1}) + "\n")
                gal += 1
    return folder


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("Redshift: 0.123", 0.123),
    ("Redshift: 0.123</s>", 0.123),
    ("redshift:0.5", 0.5),
    ("  Redshift:   1.25\nmore text", 1.25),
    ("The answer is Redshift: 0.07.", 0.07),
    ("Redshift: 2", 2.0),
    ("Redshift: .5", 0.5),
    ("Redshift: -0.01", -0.01),
    ("Redshift: 0.1 Redshift: 0.3", 0.1),
])
def test_parse_valid(text, value):
    assert parse_redshift(text) == pytest.approx(value)


@pytest.mark.parametrize("text", [
    "", None, "0.123", "Redshift:", "Redshift: abc", "Redshift: 0.1.2", "z = 0.12", "Redshift 0.12",
    "Redshift: .", "\n\n\n", "Redshift: 1e-3x",
])
def test_parse_invalid(text):
    assert parse_redshift(text) is None


# --- metrics -------------------------------------------------------------------------------------------


def test_metrics_count_unparsed_and_exclude_them():
    records = [{"gal_id": i, "z": z} for i, z in enumerate([0.1, 0.2, 0.3, 0.4, 0.45])]
    outputs = ["Redshift: 0.11", "Redshift: 0.25", "garbage", "Redshift: 0.9", "Redshift: 0.44"]
    df = redshift.predictions_frame("val", records, outputs)
    assert list(df.columns) == redshift.PRED_COLUMNS
    assert df["parsed"].tolist() == [True, True, False, True, True]
    assert np.isnan(df.loc[2, "z_pred"]) and df.loc[2, "raw_output"] == "garbage"
    m = redshift.metrics(df)
    ref = redshift_metrics([0.1, 0.2, 0.4, 0.45], [0.11, 0.25, 0.9, 0.44])
    assert (m["n"], m["n_parsed"], m["n_unparsed"]) == (5, 4, 1)
    assert m["unparsed_frac"] == pytest.approx(0.2)
    for key in ("mae", "nmad", "outlier_frac", "bias"):
        assert m[key] == pytest.approx(ref[key])
    assert m["failure_frac"] == pytest.approx(2 / 5)  # one outlier (0.4 -> 0.9) and one unparsed


def test_metrics_all_unparsed_are_null():
    df = redshift.predictions_frame("test", [{"gal_id": 1, "z": 0.1}, {"gal_id": 2, "z": 0.2}], ["?", ""])
    m = redshift.metrics(df)
    assert m["n_unparsed"] == 2 and m["mae"] is None and m["nmad"] is None and m["failure_frac"] == 1.0


def test_per_bin_from_meta_and_recomputed():
    z = np.linspace(0.02, 0.48, 20)
    df = redshift.predictions_frame("val", [{"gal_id": i, "z": v} for i, v in enumerate(z)],
                                    [f"Redshift: {v + 0.01:.3f}" if i != 3 else "x" for i, v in enumerate(z)])
    meta = pd.DataFrame({"gal_id": np.arange(20), "z": z, "z_bin": np.repeat([0, 1, 2, 3], 5)})
    s = redshift.summarize(df, meta)
    assert [b["z_bin"] for b in s["per_bin"]] == [0, 1, 2, 3]
    assert [b["n"] for b in s["per_bin"]] == [5, 5, 5, 5]
    assert s["per_bin"][0]["n_unparsed"] == 1 and s["per_bin"][0]["mae"] == pytest.approx(0.01, abs=6e-4)
    assert s["per_bin"][0]["z_lo"] == pytest.approx(z[0]) and s["per_bin"][0]["z_hi"] == pytest.approx(z[4])
    recomputed = redshift.summarize(df, None)["per_bin"]
    assert len(recomputed) == 10 and sum(b["n"] for b in recomputed) == 20


# --- decoding ------------------------------------------------------------------------------------------


def test_left_padded_batches_equal_unbatched(noisy):
    model, tok = noisy
    prompts = [chat_prompt(tok, "spec: " + "1|2|3," * k) for k in (1, 6, 11, 2, 8, 3, 4)]
    lengths = {len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) == 7  # every batch really is padded
    one = greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=1)
    many = greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=3)
    assert one == many
    assert len(set(one)) > 1  # the model does not say the same thing to every prompt


def test_constrained_decoding_writes_the_target_grammar(noisy):
    model, tok = noisy
    prompts = [chat_prompt(tok, "spec: " + "4|5|6," * k) for k in (1, 5, 9)]
    for decimals in (3, 1):
        out = greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=2, constrained=True, grammar=(1, decimals))
        for text in out:
            assert text.startswith("Redshift: ")
            assert re.fullmatch(rf"\d\.\d{{{decimals}}}", text[len("Redshift: "):]), text  # stops after the last decimal
            assert parse_redshift(text) is not None
        assert out == greedy_generate(model, tok, prompts, max_new_tokens=12, batch_size=1, constrained=True, grammar=(1, decimals))


def test_number_grammar_prefixes(noisy):
    _, tok = noisy
    c = NumberConstraint(tok, 0, [tok.eos_token_id], decimals=2)
    assert [c.is_prefix(t) for t in ("0", "0.", "0.1", "0.12", "0.123", "01", ".", ".5", "1.2.")] == \
        [True, True, True, True, False, False, False, False, False]
    assert c.is_complete("0.12") and not c.is_complete("0.1") and not c.is_complete("0")
    assert c.allowed_ids("0.12").tolist() == [tok.eos_token_id]  # a complete number can only end
    assert tok.eos_token_id not in c.allowed_ids("0.1").tolist()
    with pytest.raises(ValueError, match="decimals"):
        NumberConstraint(tok, 0, [tok.eos_token_id], decimals=-1)


def test_target_grammar_is_read_from_the_training_targets():
    assert target_grammar(["Redshift: 0.123", "Redshift: 1.500"]) == (1, 3)
    assert target_grammar(["Redshift: 12.5", "Redshift: 0.1"]) == (2, 1)
    with pytest.raises(ValueError, match="mix"):
        target_grammar(["Redshift: 0.12", "Redshift: 0.123"])
    with pytest.raises(ValueError, match="target 1"):
        target_grammar(["Redshift: 0.12", "z = 0.1"])


# --- bad inputs ------------------------------------------------------------------------------------------


def test_missing_adapter_is_an_input_error(tiny_dir, tmp_path):
    with pytest.raises(InputError) as err:
        load_model(tiny_dir, tmp_path / "no_such_run", run="no_such_run")
    assert err.value.field == "adapter folder" and "train" in err.value.fix
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text("{}")
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="pickle"):
        load_model(tiny_dir, tmp_path / "pickled", run="pickled")


def test_empty_or_missing_split_is_an_input_error(tmp_path):
    (tmp_path / "val.jsonl").write_text("\n")
    with pytest.raises(InputError) as err:
        redshift.read_split(tmp_path / "val.jsonl")
    assert "empty" in err.value.problem and "data.n_val" in err.value.fix
    with pytest.raises(InputError, match="not found"):
        redshift.read_split(tmp_path / "test.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"gal_id": 1, "z": 0.1}) + "\n")
    with pytest.raises(InputError, match="prompt"):
        redshift.read_split(tmp_path / "bad.jsonl")


# --- the stage ---------------------------------------------------------------------------------------------


def test_evaluate_run_writes_json_and_predictions(tiny_dir, adapter_dir, tmp_path):
    from specllm.evaluate.run import evaluate_run, write_outputs
    from specllm.model.load import load_base

    _, tok = load_base(tiny_dir)
    serialized = write_serialized(tmp_path / "serialized", tok)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for split in ("val", "test"):
        recs = redshift.read_split(serialized / f"{split}.jsonl")
        pd.DataFrame({"gal_id": [r["gal_id"] for r in recs], "z": [r["z"] for r in recs],
                      "z_bin": [i % 2 for i in range(len(recs))]}).to_csv(prepared / f"{split}_meta.csv", index=False)
    settings = {"batch_size": 4, "max_new_tokens": 8, "constrained": True}
    summary, preds = evaluate_run("lr2e-4_r8_e3", base_dir=tiny_dir, adapter_dir=adapter_dir, serialized=serialized,
                                  prepared=prepared, settings=settings, log=lambda *_: None)
    json_file, csv_file = write_outputs(summary, preds, tmp_path / "eval")
    assert json_file.name == "lr2e-4_r8_e3.json" and csv_file.name == "lr2e-4_r8_e3_predictions.csv"
    back = json.loads(json_file.read_text())
    assert set(back["splits"]) == {"val", "test"}
    assert back["splits"]["val"]["n"] == 5 and back["splits"]["test"]["n"] == 6
    assert back["splits"]["test"]["n_unparsed"] == 0  # constrained decoding always yields a number
    assert [b["z_bin"] for b in back["splits"]["test"]["per_bin"]] == [0, 1]
    assert back["adapter"] == "lr2e-4_r8_e3" and back["timing"]["prompts"] == 11
    csv = pd.read_csv(csv_file)
    assert list(csv.columns) == ["split", "gal_id", "z_true", "z_pred", "raw_output", "parsed"]
    assert csv["split"].tolist() == ["val"] * 5 + ["test"] * 6
    assert csv["raw_output"].str.startswith("Redshift: ").all()


# --- selection ------------------------------------------------------------------------------------------------


def _eval_json(folder: Path, run: str, val_mae, test_mae, val_unparsed=0, n=10):
    def split(mae, unparsed):
        return {"n": n, "n_parsed": n - unparsed, "n_unparsed": unparsed, "unparsed_frac": unparsed / n, "mae": mae,
                "nmad": 0.01, "outlier_frac": 0.0, "bias": 0.0, "failure_frac": unparsed / n,
                "per_bin": [{"z_bin": 0, "z_lo": 0.0, "z_hi": 0.5, "n": n, "n_parsed": n, "n_unparsed": 0,
                             "mae": mae, "nmad": 0.01, "outlier_frac": 0.0, "bias": 0.0}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run}.json").write_text(json.dumps({"run": run, "splits": {"val": split(val_mae, val_unparsed),
                                                                            "test": split(test_mae, 0)}}))
    pd.DataFrame({"split": ["val", "test"], "gal_id": [1, 2], "z_true": [0.1, 0.2], "z_pred": [0.1, 0.2],
                  "raw_output": ["Redshift: 0.1", "Redshift: 0.2"], "parsed": [True, True]}).to_csv(
        folder / f"{run}_predictions.csv", index=False)


RUNS = ["base", "lr1e-4_r8_e1", "lr1e-3_r16_e2", "lr5e-4_r4_e3"]


def test_selection_uses_validation_not_test(tmp_path):
    eval_dir = tmp_path / "eval"
    _eval_json(eval_dir, "base", None, None, val_unparsed=10)
    _eval_json(eval_dir, "lr1e-4_r8_e1", val_mae=0.010, test_mae=0.090)  # best on val, worst on test
    _eval_json(eval_dir, "lr1e-3_r16_e2", val_mae=0.030, test_mae=0.001)  # best on test
    _eval_json(eval_dir, "lr5e-4_r4_e3", val_mae=0.005, test_mae=0.002, val_unparsed=5)  # lowest MAE, half unparsed
    summary = ablation(eval_dir, RUNS, train_dir=None, retention_dir=None, max_unparsed_frac=0.1)
    assert summary["best"] == "lr1e-4_r8_e1"
    assert summary["selection"]["split"] == "val"
    assert summary["best_test"]["mae"] == pytest.approx(0.090)
    rows = {r["run"]: r for r in summary["runs"]}
    assert rows["lr1e-3_r16_e2"]["test_mae"] == pytest.approx(0.001) and rows["base"]["val_mae"] is None
    assert (rows["lr1e-3_r16_e2"]["lr"], rows["lr1e-3_r16_e2"]["rank"], rows["lr1e-3_r16_e2"]["epochs"]) == (1e-3, 16, 2)
    # swapping the test numbers changes nothing; with a looser parse threshold the half-unparsed run wins
    _eval_json(eval_dir, "lr1e-4_r8_e1", val_mae=0.010, test_mae=0.0)
    assert ablation(eval_dir, RUNS, train_dir=None, retention_dir=None, max_unparsed_frac=0.1)["best"] == "lr1e-4_r8_e1"
    assert ablation(eval_dir, RUNS, train_dir=None, retention_dir=None, max_unparsed_frac=0.5)["best"] == "lr5e-4_r4_e3"


def test_choose_best_falls_back_when_nothing_parses():
    rows = [{"run": "a", "val_mae": None, "val_unparsed_frac": 1.0}, {"run": "b", "val_mae": 0.2, "val_unparsed_frac": 0.6},
            {"run": "base", "val_mae": 0.01, "val_unparsed_frac": 0.0}]
    best, why = choose_best(rows, 0.1)
    assert best == "b" and "fewest unparsed" in why  # base is a reference row, not a candidate
    assert choose_best([rows[2]], 0.1)[0] == "base"


def test_run_settings_from_train_json_then_name(tmp_path):
    assert run_settings("lr2e-4_r8_e3", None) == {"lr": 2e-4, "rank": 8, "epochs": 3, "settings_source": "run name"}
    assert run_settings("lr0.001-rank16-epochs2", None)["rank"] == 16
    assert run_settings("base", None)["settings_source"] is None
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "train.json").write_text(json.dumps({"config": {"learning_rate": 5e-5, "lora_r": 4, "num_train_epochs": 1}}))
    assert run_settings("x", tmp_path) == {"lr": 5e-5, "rank": 4, "epochs": 1, "settings_source": "train.json"}


def test_select_stage_writes_ablation_and_figure_data(tmp_path):
    from specllm.stages.select import run_select

    eval_dir = tmp_path / "eval"
    _eval_json(eval_dir, "lr1e-4_r8_e1", val_mae=0.01, test_mae=0.09)
    _eval_json(eval_dir, "lr1e-3_r16_e2", val_mae=0.03, test_mae=0.001)
    ret = tmp_path / "retention"
    ret.mkdir()
    acc = {"ratio": 0.9, "ci_low": 0.8, "ci_high": 1.0}
    (ret / "lr1e-4_r8_e1.json").write_text(json.dumps({"sets": {
        s: {"base": {"acc": 0.5}, "adapted": {"acc": 0.45}, "retention": {"acc": acc, "acc_norm": acc}}
        for s in ("science", "general")}}))
    out = tmp_path / "out"
    summary = run_select(eval_dir, ["lr1e-4_r8_e1", "lr1e-3_r16_e2"], tmp_path / "train", ret, out / "ablation.json",
                         out / "best.csv", out / "bins.csv", 0.1)
    assert summary["best"] == "lr1e-4_r8_e1"
    assert json.loads((out / "ablation.json").read_text())["best"] == "lr1e-4_r8_e1"
    row = next(r for r in summary["runs"] if r["run"] == "lr1e-4_r8_e1")
    assert row["science_retention"] == 0.9 and row["general_retention"] == 0.9
    best = pd.read_csv(out / "best.csv")
    assert set(best["run"]) == {"lr1e-4_r8_e1"} and set(best["split"]) == {"val", "test"}
    bins = pd.read_csv(out / "bins.csv")
    assert set(bins["run"]) == {"lr1e-4_r8_e1", "lr1e-3_r16_e2"} and {"z_bin", "mae", "split"} <= set(bins.columns)


def test_select_reads_only_declared_runs(tmp_path):
    """With `ablation.epochs: []` the paper kept epochs 1-3: select globbed results/eval/*.json, including
    files no stage owns any more. It reads exactly the runs dvc.yaml's evaluate stages produce."""
    from specllm.stages.select import declared_runs, run_select

    eval_dir = tmp_path / "eval"
    for run, mae in (("base", 0.2), ("default", 0.05), ("lr-0.001", 0.04), ("epochs-1", 0.001)):
        _eval_json(eval_dir, run, val_mae=mae, test_mae=mae)  # epochs-1: a stale run, best by far
    p = {"ablation.lr": [1.0e-3], "ablation.rank": [], "ablation.epochs": []}
    runs = declared_runs(p)
    assert runs == ["base", "default", "lr-0.001"]
    out = tmp_path / "out"
    summary = run_select(eval_dir, runs, tmp_path / "train", tmp_path / "retention", out / "ablation.json",
                         out / "best.csv", out / "bins.csv", 0.1)
    assert summary["best"] == "lr-0.001" and [r["run"] for r in summary["runs"]] == ["base", "default", "lr-0.001"]
    assert set(pd.read_csv(out / "bins.csv")["run"]) == {"base", "default", "lr-0.001"}


def test_declared_runs_are_the_names_dvc_gives_the_evaluate_stages(params):
    """The run names select derives from params.yaml are those of dvc.yaml's evaluate stages."""
    import subprocess

    from conftest import ROOT, VENV

    from specllm.stages.select import declared_runs

    listed = subprocess.run([str(VENV / "bin" / "dvc"), "stage", "list", "--name-only"], cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout.split()
    from_dvc = [name.replace("evaluate_", "", 1).replace("@", "-") for name in listed if name.startswith("evaluate_")]
    assert declared_runs(params) == from_dvc


def test_select_without_results_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no evaluation results"):
        ablation(tmp_path / "eval", [], train_dir=None, retention_dir=None, max_unparsed_frac=0.1)
    with pytest.raises(InputError, match="no evaluation results of the declared run 'default'"):
        ablation(tmp_path / "eval", ["default"], train_dir=None, retention_dir=None, max_unparsed_frac=0.1)


# --- demo -------------------------------------------------------------------------------------------------------


def test_demo_chat_has_both_turns(tiny_dir, adapter_dir):
    from specllm.evaluate.demo import chat_demo

    model, tok = load_model(tiny_dir, adapter_dir, "lr2e-4_r8_e3")
    user = "Galaxy spectrum is rescaled and encoded to an input series: 1|2|3,4|5|6"
    record = {"gal_id": 7, "z": 0.1, "series": "1|2|3,4|5|6", "prompt": chat_prompt(tok, user)}
    out = chat_demo(model, tok, record, user, "How far away is it?", max_new_tokens=5)
    assert [t["role"] for t in out["transcript"]] == ["user", "assistant", "user", "assistant"]
    assert out["transcript"][0]["content"] == user and out["transcript"][2]["content"] == "How far away is it?"
    assert out["template_matches_eval_prompt"] is True
    assert out["chat_text"].startswith(record["prompt"]) and "How far away is it?" in out["chat_text"]
    assert out["gal_id"] == 7 and out["parsed"] == (out["z_pred"] is not None)


def test_params_come_from_the_stage_that_mirrors_the_training_run(tmp_path):
    from specllm.evaluate.run import check_run_name, resolve_stage

    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(json.dumps({"stages": {s: {"cmd": "x"} for s in
                                               ("evaluate_base", "evaluate_default", "evaluate_lr", "retention_rank")}}))
    assert resolve_stage("evaluate", "base", dvc_yaml) == "evaluate_base"
    assert resolve_stage("evaluate", "default", dvc_yaml) == "evaluate_default"
    assert resolve_stage("evaluate", "lr-0.001", dvc_yaml) == "evaluate_lr"
    assert resolve_stage("retention", "rank-16", dvc_yaml) == "retention_rank"
    with pytest.raises(InputError):
        check_run_name("../models/base")


def test_select_reads_the_constant_from_the_training_split(tmp_path):
    from specllm.stages.select import constant_value

    (tmp_path / "train_meta.csv").write_text("gal_id,z\n1,0.1\n2,0.3\n3,0.2\n")
    assert constant_value(tmp_path) == pytest.approx(0.2)
    (tmp_path / "train_meta.csv").write_text("gal_id,zz\n1,0.1\n")
    with pytest.raises(InputError, match="train_meta.csv: z: missing or empty"):
        constant_value(tmp_path)
