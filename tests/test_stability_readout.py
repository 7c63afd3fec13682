"""Stability study: warm-up data, null baselines, diagnostics, the prefix-cached probe, representative
decoding, the report's sentences and the SCSE verdicts, each checked against behaviour that can fail."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from specllm.errors import InputError
from specllm.stability import baselines, diagnostics, features, prompts, warmup
from specllm.stability.probe import PREFIX_RTOL, probe
from specllm.stability.verdicts import VERDICTS, stability_verdicts

CLASSES = features.CLASSES


def _catalogue(n: int = 10) -> pd.DataFrame:
    rows = []
    for cls in CLASSES:
        for k in range(n):
            rows.append({"obj_id": f"{cls[0]}{k:03d}", "class": cls, "u": 19.0 + k * 0.1, "g": 18.0, "r": 17.5,
                         "i": 17.2, "z": 17.0, "redshift": 0.001 if cls == "STAR" else 0.1 + k})
    return pd.DataFrame(rows)


# --- warm-up data -------------------------------------------------------------------------------------


def test_warmup_objects_are_disjoint_from_the_probed_ones_and_class_balanced(tmp_path):
    cat = _catalogue(10)
    probed = features.sample_objects(cat, 4, 0.5, 3, tmp_path / "c.csv")
    warm = features.sample_warmup(cat, probed, 6, 3, tmp_path / "c.csv")
    assert not set(warm["obj_id"]) & set(probed["obj_id"])
    assert warm["class"].value_counts().to_dict() == {c: 6 for c in CLASSES}
    assert set(warm["split"]) == {"warmup"}
    assert warm.equals(features.sample_warmup(cat, probed, 6, 3, tmp_path / "c.csv"))  # deterministic
    # every non-probed object of a class is used when asked for all of them; one more is an error naming the key
    assert len(features.sample_warmup(cat, probed, 6, 3, tmp_path / "c.csv")) == 18
    with pytest.raises(InputError) as err:
        features.sample_warmup(cat, probed, 7, 3, tmp_path / "c.csv")
    assert "stability.warmup_per_class" in err.value.problem
    assert len(features.sample_warmup(cat, probed, 0, 3, tmp_path / "c.csv")) == 0


def test_warmup_orders_are_distinct_per_object_never_probed_and_seeded():
    probed = features.make_orders(15, 7)
    orders = features.warmup_orders(50, 4, probed, 7)
    assert len(orders) == 50 and all(len(mine) == 4 for mine in orders)
    taught = [perm for mine in orders for _, perm in mine]
    assert not set(taught) & {perm for _, perm in probed}
    assert all(len({perm for _, perm in mine}) == 4 for mine in orders)
    assert all(sorted(perm) == list(range(features.N_FEATURES)) for perm in taught)
    assert len(set(taught)) > 150  # objects get different orders, not one shared set
    assert orders == features.warmup_orders(50, 4, probed, 7) and orders != features.warmup_orders(50, 4, probed, 8)
    with pytest.raises(InputError) as err:
        features.warmup_orders(1, 0, probed, 7)
    assert err.value.field == "stability.warmup_orders"


def test_warmup_training_teaches_the_label(tiny_model):
    tok, make = tiny_model
    model = make()
    enc = [prompts.encode(tok, prompts.chat_prompt(tok, f"object {k}")) for k in range(4)]
    target = [prompts.encode(tok, "QSO")] * 4
    from specllm.stability.dpo import sequence_logps

    with torch.no_grad():
        before = float(sequence_logps(model, enc, target, 0).mean())
    out = warmup.train_warmup(model, enc, target, pad=0, lr=5e-2, epochs=5, batch_size=2, seed=0)
    with torch.no_grad():
        after = float(sequence_logps(model, enc, target, 0).mean())
    assert after > before + 0.5 and len(out["history"]) == 10
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    with pytest.raises(ValueError, match="no trainable"):
        warmup.train_warmup(torch.nn.Linear(2, 2).requires_grad_(False), enc, target, pad=0, lr=1e-3, epochs=1,
                            batch_size=2, seed=0)


# --- null baselines -----------------------------------------------------------------------------------


def _rows(answer, n_obj_per_class=4, n_orders=5, eval_from=2):
    """Probe rows for n_obj_per_class objects per class; answer(class, obj_index, order) -> label."""
    rows = []
    for cls in CLASSES:
        for k in range(n_obj_per_class):
            for o in range(n_orders):
                rows.append({"obj_id": f"{cls}{k}", "class": cls, "split": "evaluation" if k >= eval_from else "alignment",
                             "order": o, "answer_label": answer(cls, k, o)})
    return pd.DataFrame(rows)


def _per_object(rows):
    out = []
    for oid, sub in rows.groupby("obj_id", sort=False):
        maj = baselines.most_frequent(sub["answer_label"].tolist())
        out.append({"obj_id": oid, "class": sub["class"].iloc[0], "split": sub["split"].iloc[0],
                    "correct": int(maj == sub["class"].iloc[0]), "n_valid": len(sub)})
    return pd.DataFrame(out)


def test_a_constant_classifier_is_flagged_and_sits_at_the_prior_bound():
    rows = _rows(lambda c, k, o: "QSO")
    b = baselines.classification_baselines(_per_object(rows), rows, 500, 0)
    assert b["readout"] == "constant" and b["answers"]["top_label"] == "QSO" and b["answers"]["top_share"] == 1.0
    assert b["model"]["mean"] == pytest.approx(1 / 3) and b["prior_bound"] == pytest.approx(1 / 3)
    assert b["model_minus_prior_bound"]["mean"] == pytest.approx(0.0)


def test_a_classifier_reading_the_object_beats_the_prior_only_bound():
    rows = _rows(lambda c, k, o: c if o != 4 else "QSO", n_obj_per_class=8, eval_from=4)  # right except one order
    b = baselines.classification_baselines(_per_object(rows), rows, 500, 0)
    assert b["readout"] == "object" and b["model"]["mean"] == 1.0
    assert b["model_minus_prior_bound"]["ci_low"] > 0
    assert b["prior_only_held_out"]["accuracy"] == pytest.approx(1 / 3)  # balanced classes: an order tells nothing
    assert b["model_prior_held_out"]["accuracy"] < 1.0


def test_an_order_driven_classifier_is_not_above_the_prior():
    answer = lambda c, k, o: CLASSES[o % 3]  # noqa: E731  the order alone decides; not constant
    rows = _rows(answer, n_orders=7)
    b = baselines.classification_baselines(_per_object(rows), rows, 500, 0)
    assert b["readout"] == "prior" and not b["answers"]["constant"]


def test_no_order_only_classifier_beats_the_in_sample_bound():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = {c: int(rng.integers(1, 6)) for c in CLASSES}
        rows = pd.DataFrame([{"obj_id": f"{c}{k}", "class": c, "order": o, "split": "evaluation",
                              "answer_label": CLASSES[int(rng.integers(0, 3))]}
                             for c in CLASSES for k in range(n[c]) for o in range(4)])
        bound = max(n.values()) / sum(n.values())
        for target in ("class", "answer_label"):
            acc, _ = baselines.order_only_accuracy(baselines.order_only_fit(rows, target), rows)
            assert acc <= bound + 1e-12


def test_bootstrap_mean_interval_contains_the_mean_and_shrinks_with_n():
    small = baselines.bootstrap_mean([0, 1] * 5, 2000, 0)
    large = baselines.bootstrap_mean([0, 1] * 200, 2000, 0)
    assert small["ci_low"] < 0.5 < small["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 3
    assert baselines.bootstrap_mean([0.0] * 5, 100, 0)["ci_high"] == 0.0


# --- diagnostics ---------------------------------------------------------------------------------------


def test_variance_decomposition_separates_order_from_object():
    rng = np.random.default_rng(1)
    order_eff, obj_eff = rng.normal(size=(1, 6, 3)), rng.normal(size=(8, 1, 3))
    only_order = np.broadcast_to(order_eff, (8, 6, 3)).copy()
    only_object = np.broadcast_to(obj_eff, (8, 6, 3)).copy()
    d = diagnostics.variance_decomposition(only_order, 200, 0)
    assert d["raw"]["order"]["share"] == pytest.approx(1.0) and d["raw"]["object"]["share"] == pytest.approx(0.0)
    d = diagnostics.variance_decomposition(only_object, 200, 0)
    assert d["raw"]["object"]["share"] == pytest.approx(1.0) and d["per_label"]["QSO"]["order"] == pytest.approx(0.0)
    # a common shift of all labels per order is invisible once the logits are centred over the labels
    shift = only_object + rng.normal(size=(1, 6, 1)) * 10
    d = diagnostics.variance_decomposition(shift, 200, 0)
    assert d["raw"]["order"]["share"] > 0.8 and d["centred"]["object"]["share"] == pytest.approx(1.0)
    a = diagnostics.anova_shares(rng.normal(size=(8, 6)))
    assert a["order"] + a["object"] + a["residual"] == pytest.approx(1.0)


def test_k_scan_moves_from_separate_groups_to_one_cluster():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    states = np.stack([np.stack([a + 0.01 * rng.normal(size=16) for _ in range(4)] +
                                [b + 0.01 * rng.normal(size=16) for _ in range(4)]) for _ in range(3)])
    scan = diagnostics.k_scan(states, [0.05, 1000.0], max_k=4)
    assert scan[0]["share_k2"] == 1.0 and scan[0]["k_counts"] == {"2": 3}
    assert scan[1]["share_k1"] == 1.0 and scan[1]["mean_k"] == 1.0


def test_representative_answer_reads_the_dominant_cluster_through_the_lm_head(tiny_model):
    """The centre of the dominant cluster's final hidden states, through the model's real LM head restricted
    to the label tokens, gives the same scores as the mean of the members' label logits (what the analysis
    computes), and the representative answer follows the dominant cluster, not the minority."""
    tok, make = tiny_model
    model = make().get_base_model()
    enc = [prompts.encode(tok, prompts.chat_prompt(tok, "x" * k)) for k in range(1, 7)]
    ids = prompts.label_token_ids(tok, CLASSES)
    out = probe(model, tok, enc, ids, batch_size=6)
    head = model.get_output_embeddings()
    assert getattr(head, "bias", None) is None
    labels = np.array([0, 0, 0, 0, 1, 1])
    with torch.no_grad():
        centre = torch.tensor(out["hidden"][labels == 0].astype(np.float32).mean(axis=0))
        via_head = head(centre)[ids].numpy()
    cube = out["logits"][None]
    rep = diagnostics.representative(cube, {"o": {"labels": labels}}, ["o"])[0]
    assert rep["cluster"] == 0 and rep["size"] == 4
    assert np.allclose(rep["scores"], via_head, atol=2e-2 * max(1.0, np.abs(via_head).max()))
    # make the minority cluster vote differently: the answer still follows the dominant cluster
    cube2 = cube.copy()
    cube2[0, labels == 1] = [0.0, 0.0, 50.0]
    cube2[0, labels == 0] = [5.0, 0.0, 0.0]
    assert diagnostics.representative(cube2, {"o": {"labels": labels}}, ["o"])[0]["answer"] == 0
    assert diagnostics.dominant_cluster([2, 2, 1, 1]) == 1  # tie: the lowest label


# --- the prefix-cached probe ---------------------------------------------------------------------------


def test_prefix_cached_probe_matches_the_uncached_pass(tiny_model):
    tok, make = tiny_model
    model = make().get_base_model()
    ids = prompts.label_token_ids(tok, CLASSES)
    enc = [prompts.encode(tok, prompts.chat_prompt(tok, prompts.user_text([f"line {k}"] * (k + 1)))) for k in range(7)]
    plain = probe(model, tok, enc, ids, batch_size=3)
    cached = probe(model, tok, enc, ids, batch_size=3, prefix_cache=True)
    assert cached["prefix_tokens"] > 0 and plain["prefix_tokens"] == 0
    assert (cached["answer"] == plain["answer"]).all()
    h1, h2 = plain["hidden"].astype(np.float32), cached["hidden"].astype(np.float32)
    assert np.abs(h1 - h2).max() / np.abs(h1).max() < PREFIX_RTOL
    assert np.abs(plain["logits"] - cached["logits"]).max() < 1e-3
    assert cached["tokens"] < plain["tokens"]  # the prefix is run once


# --- report sentences and verdicts ---------------------------------------------------------------------


def _analysis(readout="object", pss=(0.09, 0.05, 0.13), star=(0.3, 0.2, 0.4), others=(0.05, 0.0, 0.1),
              k_counts=None, scan_k2=(0.5, 0.2)):
    ci = lambda m, lo, hi, n=18: {"n": n, "mean": m, "ci_low": lo, "ci_high": hi}  # noqa: E731
    model = ci(0.8, 0.6, 0.95) if readout == "object" else ci(1 / 3, 0.2, 0.5)
    return {"n_objects": 18, "sigma": 0.1, "k_counts": k_counts or {"1": 4, "2": 14},
            "k_scan": [{"sigma": s, "share_k2": v, "mean_k": 2.0, "k_counts": {}} for s, v in zip((0.01, 1.0), scan_k2)],
            "intervals": {"mean_pss": ci(*pss), "per_class_pss": {"STAR": ci(*star, n=6), "GALAXY": ci(*others, n=6),
                                                                  "QSO": ci(*others, n=6)}},
            "baselines": {"readout": readout, "model": model, "prior_bound": 1 / 3,
                          "model_minus_prior_bound": {"mean": 0.4, "ci_low": 0.2 if readout == "object" else -0.1,
                                                      "ci_high": 0.6},
                          "answers": {"top_label": "QSO", "top_share": 1.0 if readout == "constant" else 0.4,
                                      "constant": readout == "constant"}},
            "decisions": {"testable": readout != "constant"}}


def _reprobe(pss=(0.14, 0.07, -0.07, -0.12, -0.02), acc=(0.8, 0.8, 0.0, -0.1, 0.1), constant_after=False):
    test = lambda d, lo, hi: {"mean_diff": d, "ci_low": lo, "ci_high": hi}  # noqa: E731
    return {"comparison": {"all": {"n": 9, "pss_before": pss[0], "pss_after": pss[1], "pss_test": test(*pss[2:]),
                                   "accuracy_before": acc[0], "accuracy_after": acc[1], "accuracy_test": test(*acc[2:])}},
            "answers_after": {"top_label": "QSO", "top_share": 1.0 if constant_after else 0.4, "constant": constant_after}}


REF = {"mean_pss": 0.0916, "dpo_pss_before": 0.139, "dpo_pss_after": 0.073}


def _verdicts(an, rp):
    rows = stability_verdicts(an, rp, REF)
    assert [r["key"] for r in rows] == ["scse.mean_pss", "scse.star_most_sensitive", "scse.k_two", "scse.dpo"]
    for r in rows:
        assert r["verdict"] in VERDICTS and r["study"] == "scse" and r["reason"] and r["original"] and r["ours"]
        assert "\\" not in r["claim"] + r["ours"] + r["reason"]  # plain text, no TeX
    return {r["key"]: r["verdict"] for r in rows}


def test_verdicts_supported_with_an_object_reading_classifier():
    v = _verdicts(_analysis(k_counts={"2": 18}), _reprobe())
    assert set(v.values()) == {"supported"}


def test_verdicts_contradicted():
    an = _analysis(pss=(0.4, 0.3, 0.5), star=(0.0, 0.0, 0.02), others=(0.3, 0.2, 0.4), scan_k2=(0.5, 0.2))
    v = _verdicts(an, _reprobe(pss=(0.1, 0.3, 0.2, 0.1, 0.3)))
    assert set(v.values()) == {"contradicted"}
    # losing accuracy contradicts the DPO claim even when PSS fell
    assert _verdicts(_analysis(), _reprobe(acc=(0.8, 0.4, -0.4, -0.6, -0.2)))["scse.dpo"] == "contradicted"


def test_a_constant_classifier_makes_every_verdict_not_testable():
    v = _verdicts(_analysis(readout="constant", pss=(0.0, 0.0, 0.0), k_counts={"1": 18}), _reprobe())
    assert set(v.values()) == {"not testable at this scale"}
    rows = stability_verdicts(_analysis(readout="constant"), _reprobe(), REF)
    assert all("constant" in r["reason"] for r in rows)


def test_verdicts_not_testable_when_intervals_cannot_decide():
    an = _analysis(readout="prior")
    assert _verdicts(an, _reprobe())["scse.mean_pss"] == "not testable at this scale"
    an = _analysis(star=(0.1, 0.0, 0.3), others=(0.05, 0.0, 0.2), scan_k2=(1.0, 0.2))
    v = _verdicts(an, _reprobe(pss=(0.14, 0.1, -0.04, -0.1, 0.02)))
    assert v["scse.star_most_sensitive"] == v["scse.k_two"] == v["scse.dpo"] == "not testable at this scale"
    assert _verdicts(_analysis(), _reprobe(constant_after=True))["scse.dpo"] == "not testable at this scale"
    assert _verdicts(_analysis(readout="prior", k_counts={"1": 18}), _reprobe())["scse.k_two"] == "not testable at this scale"


def test_stability_sentences_follow_the_intervals():
    from specllm.report.stability import after_claim, compare_claim, readout_claim, sensitivity_claim

    const, obj = _analysis(readout="constant"), _analysis()
    assert "not testable" in readout_claim(const["baselines"]) and "QSO" in readout_claim(const["baselines"])
    assert "is above" in readout_claim(obj["baselines"])
    assert "is not above" in readout_claim(_analysis(readout="prior")["baselines"])
    iv = {"mean_pss": {"mean": 0.1, "ci_low": 0.05, "ci_high": 0.15}}
    ov = {"share_stable": 0.5}
    assert sensitivity_claim({"sensitivity": "not testable"}, iv, ov).startswith("not testable")
    assert sensitivity_claim({"sensitivity": "present"}, iv, ov).startswith("present")
    assert "label prior" in sensitivity_claim({"sensitivity": "present", "above_prior": False}, iv, ov)
    assert "label prior" not in sensitivity_claim({"sensitivity": "present", "above_prior": True}, iv, ov)
    zero = {"mean_pss": {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}}
    assert sensitivity_claim({"sensitivity": "absent"}, zero, ov).startswith("absent")
    g = _reprobe()["comparison"]["all"]
    assert after_claim(g) == "lowered the mean PSS and left accuracy within its interval"
    assert after_claim(g, testable=False).startswith("cannot be judged")
    up = copy.deepcopy(g)
    up["pss_test"].update(ci_low=0.01, ci_high=0.2)
    up["accuracy_test"].update(ci_low=-0.5, ci_high=-0.1)
    assert after_claim(up) == "raised the mean PSS and lowered accuracy"
    assert compare_claim(iv["mean_pss"], 0.0916, True).startswith("consistent")
    assert compare_claim(iv["mean_pss"], 0.2, True).startswith("below")
    assert compare_claim(iv["mean_pss"], 0.2, False).startswith("not comparable")


@pytest.fixture(scope="module")
def tiny_model():
    from specllm.model.tiny import build_model, build_tokenizer
    from specllm.train.lora import make_lora_model

    tok = build_tokenizer()
    settings = SimpleNamespace(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], seed=0)
    return tok, lambda: make_lora_model(build_model(32, 1, 2, seed=0, vocab_size=len(tok)), settings)
