"""Language retention: the committed probe sets, their validation, the ARC/SciQ/MMLU converter, option
log-likelihood scoring (batched = direct, picks what the model prefers), the paired bootstrap, and the
stage end to end on the tiny random Llama."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import ROOT

from specllm.errors import InputError
from specllm.evaluate import loglik, probes
from specllm.evaluate.retention import paired_bootstrap_ratio

PROBES = ROOT / "data" / "probes"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from specllm.model.load import load_base
    from specllm.model.tiny import build_tiny

    folder = build_tiny(tmp_path_factory.mktemp("tiny") / "base", hidden=32, layers=2, heads=4, seed=2)
    model, tok = load_base(folder)
    return folder, model, tok


def item(i=0, answer=0, choices=None, **kw):
    return {"id": f"q{i}", "question": f"Question number {i}?", "choices": choices or ["alpha", "beta", "gamma", "delta"],
            "answer": answer, "topic": "test", **kw}


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- the committed probe files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["science", "general"])
def test_probe_files_validate(name):
    items = probes.load_probe_file(PROBES / f"{name}.jsonl")  # schema, 4 distinct choices, index 0-3, unique ids
    assert len(items) >= 100
    assert all(len(i["choices"]) == 4 for i in items)
    counts = probes.answer_balance(items)
    assert min(counts.values()) >= len(items) // 4 - 1 and max(counts.values()) <= len(items) // 4 + 2, counts
    questions = [i["question"].strip().lower() for i in items]
    assert len(set(questions)) == len(questions)
    assert len({i["topic"] for i in items}) >= 4
    assert max(Counter(i["topic"] for i in items).values()) < 0.5 * len(items)
    # the correct option is not given away by being the one longest option (chance: about a quarter)
    longest = [len(i["choices"][i["answer"]]) > max(len(c) for j, c in enumerate(i["choices"]) if j != i["answer"])
               for i in items]
    assert np.mean(longest) < 0.35


def test_load_probes_folder_gives_one_set_per_file():
    sets = probes.load_probes(PROBES)
    assert {"science", "general"} <= set(sets)


# --- bad probe files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, field", [
    (item(answer=4), "answer"),
    (item(answer=-1), "answer"),
    (item(answer="1"), "answer"),
    (item(choices=["a", "b", "c"]), "choices"),
    (item(choices=["a", "b", "c", "d", "e"]), "choices"),
    (item(choices=["a", "b", "c", "A"]), "choices"),
    (item(choices=["a", "b", "c", ""]), "choices"),
    ({"id": "x", "question": "q?", "choices": ["a", "b", "c", "d"], "topic": "t"}, "answer"),
])
def test_bad_probe_items_are_input_errors(tmp_path, bad, field):
    file = write_jsonl(tmp_path / "probe.jsonl", [item(1), bad])
    with pytest.raises(InputError) as err:
        probes.load_probe_file(file)
    assert err.value.file == str(file) and field in err.value.field and "line 2" in err.value.field


def test_duplicate_ids_and_empty_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="duplicate id"):
        probes.load_probe_file(write_jsonl(tmp_path / "dup.jsonl", [item(1), item(1)]))
    with pytest.raises(InputError, match="no probe items"):
        probes.load_probe_file(write_jsonl(tmp_path / "empty.jsonl", []))
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="no \\*.jsonl"):
        probes.load_probes(tmp_path / "folder")


# --- converter -------------------------------------------------------------------------------------------------------


def test_converter_reads_arc_sciq_and_mmlu(tmp_path):
    arc = [
        {"id": "Mercury_1", "question": "Which is a gas?", "choices": {"text": ["rock", "steam", "ice", "wood"],
                                                                       "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "ARC_2", "question": {"stem": "Pick three", "choices": [{"text": t, "label": str(k + 1)} for k, t in
                                                                       enumerate(["1", "2", "3", "4"])]}, "answerKey": "3"},
        {"id": "ARC_3", "question": "Five options?", "choices": {"text": list("abcde"), "label": list("ABCDE")}, "answerKey": "A"},
    ]
    sciq = [{"question": f"Q{k}?", "distractor1": "x", "distractor2": "y", "distractor3": "z", "correct_answer": "right",
             "support": "text"} for k in range(4)]
    mmlu = [{"question": "2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
            {"question": "Capital?", "subject": "geography", "choices": ["a", "b", "c", "d"], "answer": "D"}]
    counts = probes.convert_file(write_jsonl(tmp_path / "arc.jsonl", arc), tmp_path / "out" / "arc.jsonl")
    assert counts == {"written": 2, "skipped": 1}  # the five-option question is skipped and counted
    items = probes.load_probe_file(tmp_path / "out" / "arc.jsonl")
    assert items[0]["choices"][items[0]["answer"]] == "steam" and items[1]["choices"][items[1]["answer"]] == "3"
    probes.convert_file(write_jsonl(tmp_path / "sciq.jsonl", sciq), tmp_path / "out" / "sciq.jsonl", "sciq")
    items = probes.load_probe_file(tmp_path / "out" / "sciq.jsonl")
    assert all(i["choices"][i["answer"]] == "right" for i in items)
    assert sorted(i["answer"] for i in items) == [0, 1, 2, 3]
    probes.convert_file(write_jsonl(tmp_path / "mmlu.jsonl", mmlu), tmp_path / "out" / "mmlu.jsonl")
    items = probes.load_probe_file(tmp_path / "out" / "mmlu.jsonl")
    assert [i["answer"] for i in items] == [1, 3] and items[0]["topic"] == "elementary_mathematics"
    assert set(probes.load_probes(tmp_path / "out")) == {"arc", "sciq", "mmlu"}
    with pytest.raises(InputError, match="cannot convert"):
        probes.convert_file(write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}]), tmp_path / "odd_out.jsonl")


# --- log-likelihood scoring ------------------------------------------------------------------------------------------


def test_encode_pair_moves_trailing_space_and_splits_like_lm_eval(tiny):
    _, _, tok = tiny
    ctx, cont = loglik.encode_pair(tok, "Question: x?\nAnswer: ", "Paris")
    assert tok.decode(ctx) == "Question: x?\nAnswer:" and tok.decode(cont) == " Paris"
    whole = tok("Question: x?\nAnswer: Paris", add_special_tokens=False)["input_ids"]
    assert ctx + cont == whole


def test_batched_loglikelihood_equals_direct_computation(tiny):
    _, model, tok = tiny
    items = [item(0, choices=["red", "a much longer option", "b", "blue-white"]),
             item(1, choices=["x", "yy", "zzz", "wwww"], answer=2)]
    scores = loglik.score_items(model, tok, items, batch_size=3)
    for r, it in enumerate(items):
        ctx = tok(loglik.context_text(it["question"]), add_special_tokens=False)["input_ids"]
        for c, choice in enumerate(it["choices"]):
            cont = tok(" " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].double(), -1)
            direct = sum(float(logp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
            assert scores["loglik"][r, c] == pytest.approx(direct, abs=1e-4)
    lengths = np.array([[len(c) for c in it["choices"]] for it in items])
    assert (scores["pred"] == scores["loglik"].argmax(1)).all()
    assert (scores["pred_norm"] == (scores["loglik"] / lengths).argmax(1)).all()


class PrefersToken(torch.nn.Module):
    """A 'language model' that puts almost all probability on one token, whatever the context."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(vocab))
        with torch.no_grad():
            self.logits[token] = 20.0

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_scoring_picks_the_option_the_model_prefers(tiny):
    _, _, tok = tiny
    x = tok.convert_tokens_to_ids("x")
    model = PrefersToken(len(tok), x)
    items = [item(k, answer=k, choices=[("xxx" if j == k else w) for j, w in enumerate(["abc", "pqr", "mno", "stu"])])
             for k in range(4)]
    scores = loglik.score_items(model, tok, items, batch_size=5)
    assert scores["correct"].tolist() == [1.0] * 4 and scores["correct_norm"].tolist() == [1.0] * 4
    # the sum favours short options when every token is unlikely; acc_norm divides that bias away
    model = PrefersToken(len(tok), tok.convert_tokens_to_ids("#"))
    scores = loglik.score_items(model, tok, [item(0, choices=["abcdefgh", "ab", "abcd", "abcdef"], answer=0)])
    assert scores["pred"][0] == 1 and scores["pred_norm"][0] == 0


# --- bootstrap -----------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_point_estimate_and_is_seeded():
    rng = np.random.default_rng(5)
    base = (rng.random(150) < 0.6).astype(float)
    adapted = np.where(rng.random(150) < 0.85, base, 1 - base)
    r = paired_bootstrap_ratio(adapted, base, n_boot=1000, seed=7)
    assert r["ratio"] == pytest.approx(adapted.mean() / base.mean())
    assert r["ci_low"] <= r["ratio"] <= r["ci_high"] and r["ci_low"] < r["ci_high"]
    assert r == paired_bootstrap_ratio(adapted, base, n_boot=1000, seed=7)
    assert r != paired_bootstrap_ratio(adapted, base, n_boot=1000, seed=8)
    same = paired_bootstrap_ratio(base, base, n_boot=200, seed=1)
    assert (same["ratio"], same["ci_low"], same["ci_high"]) == (1.0, 1.0, 1.0)  # paired: identical answers, no spread


def test_bootstrap_counts_draws_without_a_ratio():
    base, adapted = np.array([1.0, 0, 0, 0, 0]), np.array([1.0, 1, 0, 0, 0])
    r = paired_bootstrap_ratio(adapted, base, n_boot=500, seed=0)
    assert r["n_undefined"] > 0 and r["ratio"] == 2.0 and r["ci_low"] <= 2.0 <= r["ci_high"]
    assert paired_bootstrap_ratio([1.0, 0], [0.0, 0], n_boot=10, seed=0)["ratio"] is None


# --- the stage ---------------------------------------------------------------------------------------------------------------


def test_retention_run_scores_base_and_adapter_on_the_same_items(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    from specllm.model.load import load_base
    from specllm.stages.retention import retention_run

    folder, _, _ = tiny
    fresh, _ = load_base(folder)  # get_peft_model changes the model it wraps: keep the shared one clean
    torch.manual_seed(0)
    adapter = tmp_path / "lora" / "run1"
    get_peft_model(fresh, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(adapter)
    probe_dir = tmp_path / "probes"
    probe_dir.mkdir()
    for name in ("science", "general"):
        src = probes.load_probe_file(PROBES / f"{name}.jsonl")[:12]
        write_jsonl(probe_dir / f"{name}.jsonl", src)
    settings = {"batch_size": 16, "n_boot": 200, "max_items": 10, "seed": 3}
    summary, frame = retention_run("run1", base_dir=folder, adapter_dir=adapter, probe_path=probe_dir,
                                   settings=settings, log=lambda *_: None)
    assert set(summary["sets"]) == {"science", "general"}
    for s in summary["sets"].values():
        assert s["n_items"] == 10  # max_items: a seeded subset
        r = s["retention"]["acc"]
        if r["ratio"] is not None:
            assert r["ci_low"] <= r["ratio"] <= r["ci_high"]
    assert len(frame) == 20 and {"base_pred", "adapted_pred"} <= set(frame.columns)
    again, _ = retention_run("run1", base_dir=folder, adapter_dir=adapter, probe_path=probe_dir, settings=settings,
                             log=lambda *_: None)
    assert again["sets"] == summary["sets"]
    base, _ = retention_run("base", base_dir=folder, adapter_dir=None, probe_path=probe_dir, settings=settings,
                            log=lambda *_: None)
    for name, s in base["sets"].items():
        assert s["base"]["acc"] == summary["sets"][name]["base"]["acc"]  # disable_adapter() gives the base model
        assert s["adapted"] == s["base"]
    with pytest.raises(InputError, match="adapter folder"):
        retention_run("gone", base_dir=folder, adapter_dir=tmp_path / "lora" / "gone", probe_path=probe_dir,
                      settings=settings, log=lambda *_: None)


def test_retention_above_chance_discounts_guessing():
    # 4 options (chance 0.25); base 60%, adapted 40%: raw ratio 2/3, above chance (0.40-0.25)/(0.60-0.25) = 3/7
    from specllm.evaluate.retention import paired_bootstrap_ratio

    base = np.array([1] * 6 + [0] * 4, float)
    adapted = np.array([1] * 4 + [0] * 6, float)
    chance = np.full(10, 0.25)
    raw = paired_bootstrap_ratio(adapted, base, n_boot=500, seed=1)
    above = paired_bootstrap_ratio(adapted, base, n_boot=500, seed=1, chance=chance)
    assert raw["ratio"] == pytest.approx(2 / 3) and above["ratio"] == pytest.approx(3 / 7)
    assert above["ci_low"] < above["ratio"] < above["ci_high"]
    # a base model at chance leaves nothing to retain: no point estimate
    assert paired_bootstrap_ratio(adapted, np.array([1, 0, 0, 0] * 2 + [0, 0], float), n_boot=50, seed=1,
                                  chance=chance)["ratio"] is None
