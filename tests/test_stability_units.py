"""Stability study: the pure pieces (orders, prompts, spectral clustering, PSS, pairs, DPO) with behaviour checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from specllm.errors import InputError
from specllm.stability import analysis, dpo, features, pairs, prompts, spectral
from specllm.stability.probe import agreement, parse_answer, probe

# --- objects and orders ------------------------------------------------------------------------------


def _catalogue(n: int = 6) -> pd.DataFrame:
    rows = []
    for cls in features.CLASSES:
        for k in range(n):
            rows.append({"obj_id": f"{cls[0]}{k:03d}", "class": cls, "u": 19.0 + k * 0.1, "g": 18.0, "r": 17.5,
                         "i": 17.2, "z": 17.0, "redshift": 0.001 if cls == "STAR" else 0.1 + k})
    return pd.DataFrame(rows)


def test_feature_lines_name_bands_colours_and_redshift():
    row = _catalogue().iloc[0]
    lines = features.feature_lines(row, decimals=3)
    assert len(lines) == 10
    assert lines[0] == "u-band magnitude: 19.000"
    assert lines[5] == "u-g colour: 1.000"
    assert lines[9] == "redshift: 0.0010"


def test_orders_are_deterministic_distinct_and_start_with_the_named_ones():
    a = features.make_orders(30, seed=7)
    assert a == features.make_orders(30, seed=7)
    assert a != features.make_orders(30, seed=8)
    perms = [p for _, p in a]
    assert len(set(perms)) == 30
    assert all(sorted(p) == list(range(10)) for p in perms)
    assert [n for n, _ in a[:5]] == ["identity", "reverse", "mags_first", "colours_first", "redshift_first"]
    assert a[0][1] == tuple(range(10)) and a[1][1] == tuple(range(9, -1, -1))
    assert a[4][1][0] == 9  # redshift first
    assert features.make_orders(3, seed=0) == a[:3]


def test_too_many_orders_is_an_input_error_naming_the_bound():
    with pytest.raises(InputError) as err:
        features.make_orders(math.factorial(10) + 1, seed=0)
    assert err.value.field == "stability.n_orders"
    assert "3,628,800" in err.value.problem and "at most" in err.value.fix


def test_object_with_a_missing_band_names_file_object_and_band(tmp_path):
    cat = _catalogue()
    cat.loc[4, "g"] = np.nan
    with pytest.raises(InputError) as err:
        features.sample_objects(cat, 2, 0.5, 0, tmp_path / "cat.csv")
    assert "cat.csv" in err.value.file and "g" in err.value.field and cat.loc[4, "obj_id"] in err.value.field
    assert "drop or complete" in err.value.fix


def test_sample_is_class_balanced_and_splits_never_overlap(tmp_path):
    s = features.sample_objects(_catalogue(), 4, 0.5, 3, tmp_path / "c.csv")
    assert s["class"].value_counts().to_dict() == {c: 4 for c in features.CLASSES}
    assert set(s.groupby(["class", "split"]).size()) == {2}
    assert not set(s.loc[s.split == "alignment", "obj_id"]) & set(s.loc[s.split == "evaluation", "obj_id"])
    with pytest.raises(InputError, match="lower stability.n_per_class"):
        features.sample_objects(_catalogue(), 7, 0.5, 3, tmp_path / "c.csv")


# --- prompts and labels --------------------------------------------------------------------------------


def test_labels_first_tokens_and_prompt_through_the_chat_template():
    from specllm.model.tiny import build_tokenizer

    tok = build_tokenizer()
    ids = prompts.label_token_ids(tok, features.CLASSES)
    assert [tok.decode([i]) for i in ids] == ["S", "G", "Q"]
    text = prompts.chat_prompt(tok, prompts.user_text(["a", "b"]))
    assert text.startswith("<s>user\n" + prompts.INSTRUCTION + "\na\nb") and text.endswith("<s>assistant\n")


def test_labels_sharing_a_first_token_are_refused():
    from specllm.model.tiny import build_tokenizer

    with pytest.raises(InputError) as err:
        prompts.label_token_ids(build_tokenizer(), ("STAR", "SUN", "QSO"), "models/base")
    assert "STAR" in err.value.field and "SUN" in err.value.field and "tokenizer.json" in err.value.file


def test_a_label_the_tokenizer_cannot_write_is_refused():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from specllm.model.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    chars = [c for c in ("\n", *(chr(i) for i in range(32, 127))) if c != "Q"]
    vocab = {t: i for i, t in enumerate((*SPECIAL_TOKENS, *chars))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", chat_template=CHAT_TEMPLATE)
    with pytest.raises(InputError) as err:
        prompts.label_token_ids(tok, features.CLASSES)
    assert "QSO" in err.value.field and "cannot write" in err.value.problem


def test_thinking_is_switched_off_where_the_template_has_the_switch():
    seen = {}

    class Tok:
        chat_template = "{% if enable_thinking %}<think>{% endif %}{{ messages }}"

        def apply_chat_template(self, messages, **kw):
            seen.update(kw)
            return "x"

    prompts.chat_prompt(Tok(), "hi")
    assert seen["enable_thinking"] is False and seen["add_generation_prompt"] is True
    Tok.chat_template = "{{ messages }}"
    seen.clear()
    prompts.chat_prompt(Tok(), "hi")
    assert "enable_thinking" not in seen


def test_free_text_parsing_and_agreement():
    labels = features.CLASSES
    assert parse_answer("GALAXY", labels) == 1
    assert parse_answer("It is a quasar.", labels) == 2
    assert parse_answer("star, not a galaxy", labels) == 0
    assert parse_answer("starburst?", labels) == -1
    a = agreement([0, 1, -1, 2], [0, 2, 1, 2])
    assert a == {"n_decoded": 4, "n_unparseable": 1, "n_parsed": 3, "n_agree": 2, "agreement": 2 / 3}


# --- spectral clustering -------------------------------------------------------------------------------


def test_identical_states_give_one_cluster():
    states = np.tile(np.random.default_rng(0).normal(size=(1, 16)), (12, 1))
    out = spectral.cluster(states, sigma=0.1, max_k=8)
    assert out["k"] == 1 and set(out["labels"]) == {0}
    assert out["eigvals"][0] == pytest.approx(0.0, abs=1e-9)
    assert out["eigvals"][1:] == pytest.approx(np.ones(11), abs=1e-9)


def test_two_separated_groups_give_two_clusters():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=16), rng.normal(size=16)
    states = np.vstack([a + 0.01 * rng.normal(size=(7, 16)), b + 0.01 * rng.normal(size=(5, 16))])
    out = spectral.cluster(states, sigma=0.1, max_k=8, seed=0)
    assert out["k"] == 2
    assert len(set(out["labels"][:7])) == 1 and len(set(out["labels"][7:])) == 1 and out["labels"][0] != out["labels"][7]


def test_eigengap_picks_the_largest_gap_and_allows_k_one():
    assert spectral.eigengap_k(np.array([0.0, 0.01, 0.02, 0.9, 1.0]), 4) == 3
    assert spectral.eigengap_k(np.array([0.0, 0.9, 0.95, 1.0]), 3) == 1
    assert spectral.eigengap_k(np.array([0.0]), 3) == 1
    assert spectral.eigengap_k(np.array([0.0, 0.0, 0.1, 0.2, 1.0]), 2) == 2  # bounded by max_k


def test_affinity_and_laplacian_definitions():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    a = spectral.affinity(x, sigma=0.5)
    assert a[0, 1] == pytest.approx(math.exp(-2.0)) and a[0, 0] == 1.0
    lap = spectral.normalized_laplacian(a)
    d = 1 + math.exp(-2.0)
    assert lap[0, 1] == pytest.approx(-math.exp(-2.0) / d) and lap[0, 0] == pytest.approx(1 - 1 / d)


# --- PSS and summaries -----------------------------------------------------------------------------------


def test_pss_entropy_and_ties():
    m = analysis.object_metrics([0, 0, 0, 1, -1])
    assert m["n_valid"] == 4 and m["n_tied"] == 1
    assert m["pss"] == pytest.approx(0.25)
    assert m["entropy"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert m["n_distinct"] == 2 and m["majority"] == 0
    assert analysis.object_metrics([2, 2, 2])["pss"] == 0.0 and analysis.object_metrics([2, 2, 2])["entropy"] == 0.0
    assert analysis.object_metrics([0, 1, 2])["pss"] == pytest.approx(2 / 3)
    assert math.isnan(analysis.object_metrics([-1, -1])["pss"])


def _table():
    return pd.DataFrame({"obj_id": ["a", "b", "c", "d"], "class": ["STAR", "STAR", "QSO", "GALAXY"],
                         "redshift": [0.5, 0.0, 0.001, 0.1], "pss": [0.0, 0.6, 0.0, 0.2],
                         "entropy": [0, 1, 0, 0.5], "n_distinct": [1, 3, 1, 2],
                         "majority": ["STAR", "STAR", "QSO", "GALAXY"], "correct": [1, 1, 1, 1],
                         "n_valid": [5, 5, 5, 5], "n_tied": [0] * 4, "k": [1, 2, 1, 2], "aligned": [1, 0, 1, 1]})


def test_summary_and_quality_checks_name_failing_objects():
    t = _table()
    s = analysis.summary(t)
    assert s["mean_pss"] == pytest.approx(0.2) and s["share_stable"] == 0.5 and s["share_high_pss"] == 0.25
    assert s["max_pss"] == 0.6 and s["accuracy"] == 1.0
    checks = {c["name"]: c for c in analysis.quality_checks(t, 0.01)}
    assert checks["physical_plausibility"]["failing"] == ["a", "c"]  # STAR at z 0.5, QSO at z 0.001
    assert checks["order_insensitivity"]["failing"] == ["b", "d"] and not checks["order_insensitivity"]["passed"]
    assert checks["clusters_match_answers"]["failing"] == ["b"]
    assert checks["label_agreement_STAR"]["passed"]


def test_partitions_agree():
    assert analysis.partitions_agree([0, 0, 1], [2, 2, 0])
    assert not analysis.partitions_agree([0, 0, 0], [2, 2, 0])
    assert not analysis.partitions_agree([0, 1, 1], [2, 2, 0])


def test_paired_bootstrap_and_before_after():
    r = analysis.paired_bootstrap(np.array([0.5, 0.4, 0.3, 0.2]), np.array([0.1, 0.1, 0.0, 0.0]), 500, 0)
    assert r["mean_diff"] == pytest.approx(-0.3) and r["ci_high"] < 0 and r["p_value"] == pytest.approx(2 / 16)
    b = pd.DataFrame({"obj_id": ["a", "b"], "class": ["STAR", "QSO"], "pss": [0.5, 0.0], "correct": [0, 1]})
    a = pd.DataFrame({"obj_id": ["a", "b"], "class": ["STAR", "QSO"], "pss": [0.0, 0.0], "correct": [1, 1]})
    out = analysis.before_after(b, a, 100, 0)
    assert out["all"]["pss_before"] == 0.25 and out["all"]["pss_after"] == 0.0
    assert out["STAR"]["accuracy_after"] == 1.0 and "GALAXY" not in out


# --- preference pairs --------------------------------------------------------------------------------------


def test_pair_categories():
    assert pairs.categorize([0, 0, 0], 0) == ("fully_correct", None)
    assert pairs.categorize([0, 1, 2, 2, 0], 0) == ("partially_correct", 2)
    assert pairs.categorize([1, 1, 2], 0) == ("fully_wrong", 1)
    assert pairs.categorize([-1, -1], 0) == ("unanswerable", None)


def test_pairs_are_shown_under_misleading_orders_first():
    objs = [{"obj_id": "a", "label": 0, "answers": [0, 2, 0, 2, 0]},
            {"obj_id": "b", "label": 1, "answers": [1, 1, 1, 1, 1]},
            {"obj_id": "c", "label": 2, "answers": [0, 0, 0, 1, 0]}]
    out, counts = pairs.make_pairs(objs, 3, seed=0)
    assert counts == {"fully_correct": 1, "partially_correct": 1, "fully_wrong": 1, "unanswerable": 0}
    a = [p for p in out if p["obj_id"] == "a"]
    assert len(a) == 3 and {p["order"] for p in a[:2]} == {1, 3}
    assert all(p["chosen"] == "STAR" and p["rejected"] == "QSO" for p in a)
    c = [p for p in out if p["obj_id"] == "c"]
    assert all(p["chosen"] == "QSO" and p["rejected"] == "STAR" for p in c)
    assert out == pairs.make_pairs(objs, 3, seed=0)[0]


# --- DPO ------------------------------------------------------------------------------------------------------


def test_dpo_loss_matches_a_hand_computation():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.5]), torch.tensor([-2.0, -1.5])
    loss, stats = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    # margins: 0.5*((-1+1.5) - (-3+2)) = 0.75 ; 0.5*((-2+2.5) - (-1+1.5)) = 0
    expected = (math.log(1 + math.exp(-0.75)) + math.log(2.0)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert stats["margin"] == pytest.approx(0.375) and stats["reward_acc"] == 0.5


@pytest.fixture(scope="module")
def tiny():
    from types import SimpleNamespace

    from specllm.model.tiny import build_model, build_tokenizer
    from specllm.train.lora import make_lora_model

    tok = build_tokenizer()
    base = build_model(32, 1, 2, seed=0, vocab_size=len(tok))
    settings = SimpleNamespace(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    return tok, base, lambda: make_lora_model(build_model(32, 1, 2, seed=0, vocab_size=len(tok)), settings)


def _pairs(tok):
    ps = [prompts.chat_prompt(tok, f"object {k}") for k in range(4)]
    enc = [prompts.encode(tok, p) for p in ps]
    return enc, [prompts.encode(tok, "STAR")] * 4, [prompts.encode(tok, "QSO")] * 4


def test_batched_sequence_logps_equal_each_sequence_scored_alone(tiny):
    """Left padding, position ids and logits_to_keep change nothing: the sum of log-probabilities of each
    completion equals the one computed from the full logits of that sequence alone."""
    tok, base, _ = tiny
    enc = [prompts.encode(tok, prompts.chat_prompt(tok, "object " + "x" * k)) for k in (0, 7, 3)]
    comps = [prompts.encode(tok, w) for w in ("STAR", "QSO", "GALAXY")]
    assert len({len(e) for e in enc}) == 3 and len({len(c) for c in comps}) == 3  # the batch really is ragged
    with torch.no_grad():
        batched = dpo.sequence_logps(base, enc, comps, 0)
        for row, (p, c) in enumerate(zip(enc, comps)):
            ids = torch.tensor([list(p) + list(c)])
            logp = torch.log_softmax(base(input_ids=ids).logits[0, :-1].float(), dim=-1)
            alone = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c))
            assert float(batched[row]) == pytest.approx(alone, abs=1e-4)
    with pytest.raises(ValueError, match="at least one token"):
        dpo.sequence_logps(base, [[]], [comps[0]], 0)


def test_reference_logps_with_the_adapter_disabled_equal_the_base_model(tiny):
    tok, base, make = tiny
    enc, ch, rj = _pairs(tok)
    with torch.no_grad():
        want = dpo.sequence_logps(base, enc, ch, 0)
    model = make()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter that changes the outputs
        adapted = dpo.sequence_logps(model, enc, ch, 0)
    ref_c, _ = dpo.reference_logps(model, enc, ch, rj, 0, batch_size=2)
    assert torch.allclose(ref_c, want, atol=1e-5)
    assert not torch.allclose(adapted, want, atol=1e-3)


def test_a_dpo_step_lowers_the_loss_and_keeps_one_model_copy(tiny):
    tok, _base, make = tiny
    model = make()
    enc, ch, rj = _pairs(tok)
    n_params = sum(p.numel() for p in model.parameters())
    out = dpo.train_dpo(model, enc, ch, rj, pad=0, beta=0.5, lr=5e-2, epochs=4, batch_size=4, seed=0)
    losses = [h["loss"] for h in out["history"]]
    assert losses[0] == pytest.approx(math.log(2.0), rel=1e-4)  # the adapter starts as the identity
    assert losses[-1] < losses[0]
    assert sum(p.numel() for p in model.parameters()) == n_params  # no reference copy was added


def test_batched_left_padded_probe_matches_one_prompt_at_a_time(tiny):
    tok, base, _ = tiny
    enc = [prompts.encode(tok, prompts.chat_prompt(tok, "x" * k)) for k in (1, 9, 30)]
    ids = prompts.label_token_ids(tok, features.CLASSES)
    together = probe(base, tok, enc, ids, batch_size=3)
    alone = [probe(base, tok, [e], ids, batch_size=1) for e in enc]
    for j, a in enumerate(alone):
        assert np.allclose(together["logits"][j], a["logits"][0], atol=1e-4)
        assert np.allclose(together["hidden"][j].astype(float), a["hidden"][0].astype(float), atol=2e-3)
    assert together["hidden"].dtype == np.float16


def test_cluster_sentence_follows_the_numbers():
    from specllm.report.stability import k_claim, k_sentence

    assert k_claim({"n_objects": 4, "k_counts": {"1": 4}, "k_dominant": 1, "k_dominant_share": 1.0}).startswith("$K=1$ (a single")
    an = {"n_objects": 4, "k_counts": {"1": 1, "2": 3}, "k_dominant": 2, "k_dominant_share": 0.75}
    two = k_claim(an)
    assert two.startswith("$K=2$ for") and "$K=1$ for" in two
    scan = [{"sigma": 0.001, "mean_k": 5.0}, {"sigma": 1.0, "mean_k": 1.0}]
    assert "not testable" in k_sentence({**an, "k_scan": scan, "decisions": {"testable": False}})
    s = k_sentence({**an, "k_scan": scan, "decisions": {"testable": True}})
    assert "not testable" not in s and "5.0" in s and "property of" in s
    flat = [{"sigma": 0.001, "mean_k": 1.0}, {"sigma": 1.0, "mean_k": 1.0}]
    assert "does not depend on" in k_sentence({**an, "k_scan": flat, "decisions": {"testable": True}})
