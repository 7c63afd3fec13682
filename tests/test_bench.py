"""The benchmark suite's behaviour on the tiny model: no timing assertions, only what the figures rest on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from specllm.bench import flops, probe, report, serial
from specllm.bench.common import model_dir, stability_objects
from specllm.model.load import load_base

RAW = Path(__file__).resolve().parents[1] / "data" / "raw" / "catalogue.csv"
needs_raw = pytest.mark.skipif(not RAW.is_file(), reason="data/raw not built (make data)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = model_dir("tiny", tmp_path_factory.mktemp("bench"))
    model, tok = load_base(d)
    return model, tok, d


@needs_raw
def test_naive_batched_and_prefix_agree(tiny):
    model, tok, d = tiny
    encoded, label_ids = probe.prompts_for(tok, d, 1, 3)
    assert len(encoded) == 9
    naive = probe.naive(model, tok, encoded, label_ids, max_new_tokens=2)
    batched = probe.batched(model, tok, encoded, label_ids, batch_size=4)
    cached = probe.prefix_cached(model, tok, encoded, label_ids, batch_size=4)
    for other in (naive, cached):
        a = probe.agreement(other, batched)
        assert a["same_classes"] and a["n_class_differ"] == 0
        assert a["hidden_max_rel_diff"] < 1e-2  # batched stores float16
        assert a["logit_max_abs_diff"] < 1e-3
    prefix = probe.common_prefix(encoded)
    assert 0 < len(prefix) < min(map(len, encoded))
    assert all(list(e[:len(prefix)]) == prefix for e in encoded)


def test_common_prefix_leaves_a_suffix():
    assert probe.common_prefix([[1, 2, 3], [1, 2, 3]]) == [1, 2]
    assert probe.common_prefix([[1, 2, 3], [1, 5, 3]]) == [1]
    assert probe.common_prefix([[4, 2], [1, 2]]) == []


def test_flop_accounting(tiny):
    model, _, _ = tiny
    c = model.config
    d, L, i = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    per_layer = 4 * d * d + 3 * d * i + 2 * d  # q k v o (no GQA in tiny), gate up down, two norms
    assert flops.non_embedding_params(model) == L * per_layer + d  # + final norm; embedding and tied head excluded
    assert flops.model_flops(100, 10, "forward") == 2000
    assert flops.model_flops(100, 10, "lora") == 4000
    assert flops.model_flops(100, 10, "full") == 6000
    x = flops.a100_extrapolation(1e9, 0.5)
    assert x["a100_hours"] == pytest.approx(4 * flops.LLAMA_31_8B_NON_EMBEDDING * 1e9 / (312e12 * 0.5) / 3600)
    assert x["kind"] == "extrapolation"
    assert flops.LLAMA_31_8B_NON_EMBEDDING == 8_030_261_248 - 2 * 128_256 * 4_096
    mm = flops.matmul_rate(64, repeats=1)
    assert mm["flops_per_s"] > 0 and mm["dtype"] == "float32"


@needs_raw
def test_serialization_token_table(tiny):
    _, tok, _ = tiny
    rows = serial.token_table(tok, n=2, n_points=8)
    assert [r["setting"] for r in rows] == [s for s, _ in serial.SETTINGS]
    by = {r["digit_sep"]: r for r in rows}
    # character tokenizer: 8 values x 3 digits; '|' and ' ' add two characters per value, '' adds none
    assert by["|"]["tokens_per_spectrum"] - by[""]["tokens_per_spectrum"] == pytest.approx(8 * 2)
    assert by[" "]["tokens_per_spectrum"] == by["|"]["tokens_per_spectrum"]
    assert by["|"]["relative_to_paper"] == 1.0
    costed = serial.with_cost(rows, tokens_per_s=100.0, n_train=64, epochs=2)
    assert costed[0]["train_s_run"] == pytest.approx(costed[0]["tokens_per_spectrum"] / 100 * 128)


def _fake_results() -> dict:
    side = {"seconds": 1.0, "prompts_per_s": 2.0, "tokens": 10, "model_flops_per_s": 1e9, "share_of_matmul": 0.5}
    agree = {"same_classes": True, "n_class_differ": 0, "hidden_max_abs_diff": 1e-4, "hidden_max_rel_diff": 1e-5,
             "logit_max_abs_diff": 0.0}
    tr = {"tokens_per_s": 100.0, "share_of_matmul": 0.8, "padding_share": 0.02, "peak_rss_bytes": 2**30}
    mem = {"peak_rss_bytes": 2**30, "baseline_rss_bytes": 2**29, "seconds": 1.0}
    return {"meta": {"machine": "test box", "model": "tiny", "n_params": 1000, "date": "2026-11-21", "torch": "x", "threads": 2},
            "matmul": {"dtype": "float32", "n": 64, "threads": 2, "flops_per_s": 2e9},
            "probe": {"naive": side, "batched": {**side, "prompts_per_s": 20.0, "share_of_matmul": 0.75}, "prefix": side,
                      "batched_vs_naive": 10.0, "prefix_vs_batched": 1.2, "agreement_naive_batched": agree,
                      "agreement_prefix_batched": agree},
            "train": {"project": tr, "hf_trainer": {**tr, "share_of_matmul": 0.4, "padding_share": 0.2},
                      "speedup_vs_hf": 2.0, "memory_vs_hf": 0.9},
            "dpo": {"policy_only": mem, "adapter_ref": mem, "second_ref": {**mem, "peak_rss_bytes": 2**31},
                    "adapter_ref_vs_single": 1.0, "second_ref_vs_single": 2.0},
            "serialization": [{"setting": "4|5|6 (paper)", "n_points": 48, "tokens_per_spectrum": 300.0, "relative_to_paper": 1.0,
                               "train_s_run": 12.0, "run_n_train": 64, "run_epochs": 2}],
            "extrapolation": flops.a100_extrapolation(1e8, 0.4)}


def test_json_and_markdown_writers(tmp_path):
    from specllm.bench.__main__ import targets

    res = _fake_results()
    res["targets"] = targets(res)
    met = {t["target"]: t["met"] for t in res["targets"]}
    assert met["probe >= 70% of the matmul rate"] and met["padding < 10% of training tokens"]
    assert met["DPO peak < 1.5x a single model with adapter and optimizer"]
    j = report.write_json(res, tmp_path / "b" / "bench.json")
    assert json.loads(j.read_text())["probe"]["batched_vs_naive"] == 10.0
    md = report.write_markdown(res, tmp_path / "b" / "bench.md").read_text()
    assert md.startswith("Machine: test box")
    table = [line for line in md.splitlines() if line.startswith("|")]
    columns = [len(re.split(r"(?<!\\)\|", line)) for line in table[:len(report.rows(res)) + 2]]
    assert set(columns) == {6}  # four columns: the '|' of `4|5|6` is escaped
    assert "`4\\|5\\|6 (paper)`" in md
    assert "10.0x" in md and "75.0%" in md and "2.00 GiB (2.00x single)" in md and "extrapolation" in md
    assert "| probe >= 70% of the matmul rate | 75.0% | yes |" in md


@needs_raw
def test_stability_objects_are_class_balanced():
    objects, orders = stability_objects(2, 3)
    assert sorted(objects["class"].value_counts().tolist()) == [2, 2, 2]
    assert len(orders) == 3 and orders[0][0] == "identity"


def test_probe_agreement_flags_a_class_change():
    a = {"answer": np.array([0, 1]), "hidden": np.ones((2, 3)), "logits": np.zeros((2, 3))}
    b = {"answer": np.array([0, 2]), "hidden": np.ones((2, 3)) * 1.5, "logits": np.ones((2, 3))}
    r = probe.agreement(a, b)
    assert not r["same_classes"] and r["n_class_differ"] == 1 and r["hidden_max_abs_diff"] == pytest.approx(0.5)
