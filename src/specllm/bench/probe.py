"""Stability probe: three ways to read the class logits and last-token hidden state of every (object, order).

  naive     the published attempt: one generate() call per prompt (batch 1), greedy, the class from the
            first step's logits and the hidden state from generate's output_hidden_states
  batched   the project's probe (specllm.stability.probe.probe): length-sorted, left-padded batches,
            one forward pass each, only the last position's logits
  prefix    the batched pass reusing the key/value cache of the prompt prefix every prompt shares (chat
            template, system text and the instruction), computed once and repeated over the batch; the
            suffixes are right-padded and each row is read at its last real token

All three run on the same model, objects and orders; `agreement` checks classes and hidden states.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from specllm.evaluate.generate import pad_id
from specllm.stability.probe import common_prefix  # noqa: F401  (the shared prefix; tests import it from here)


@torch.inference_mode()
def naive(model, tokenizer, encoded: Sequence[Sequence[int]], label_ids: Sequence[int], max_new_tokens: int = 8) -> dict[str, Any]:
    dev = next(model.parameters()).device
    pad = pad_id(tokenizer)
    logits, hidden, tokens = [], [], 0
    t0 = time.perf_counter()
    for seq in encoded:
        ids = torch.tensor([list(seq)], dtype=torch.long, device=dev)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=pad, output_hidden_states=True,
                             output_logits=True, return_dict_in_generate=True)
        logits.append(out.logits[0][0, list(label_ids)].float().cpu().numpy())
        hidden.append(out.hidden_states[0][-1][0, -1, :].float().cpu().numpy())
        tokens += len(seq) + out.sequences.shape[1] - ids.shape[1] - 1  # prompt, then one token per further step
    seconds = time.perf_counter() - t0
    logits = np.stack(logits)
    return {"logits": logits, "answer": logits.argmax(axis=1), "hidden": np.stack(hidden), "seconds": seconds,
            "tokens": tokens, "prompts_per_s": len(encoded) / seconds}


def batched(model, tokenizer, encoded, label_ids, batch_size: int) -> dict[str, Any]:
    from specllm.stability.probe import probe

    return probe(model, tokenizer, encoded, label_ids, batch_size=batch_size)


def prefix_cached(model, tokenizer, encoded, label_ids, batch_size: int) -> dict[str, Any]:
    from specllm.stability.probe import probe_prefix_cached

    return probe_prefix_cached(model, tokenizer, encoded, label_ids, batch_size=batch_size)


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Same classes? Largest hidden-state and logit differences, absolute and relative to the largest |value|."""
    ha, hb = np.asarray(a["hidden"], np.float32), np.asarray(b["hidden"], np.float32)
    la, lb = np.asarray(a["logits"], np.float32), np.asarray(b["logits"], np.float32)
    dh, dl = float(np.abs(ha - hb).max()), float(np.abs(la - lb).max())
    return {"same_classes": bool((np.asarray(a["answer"]) == np.asarray(b["answer"])).all()),
            "n_class_differ": int((np.asarray(a["answer"]) != np.asarray(b["answer"])).sum()),
            "hidden_max_abs_diff": dh, "hidden_max_rel_diff": dh / float(np.abs(hb).max()),
            "logit_max_abs_diff": dl}


def prompts_for(tokenizer, model_dir, n_per_class: int, n_orders: int) -> tuple[list[list[int]], list[int]]:
    from specllm.bench.common import stability_objects
    from specllm.stability import features, prompts
    from specllm.stability.runtime import build_prompts

    objects, orders = stability_objects(n_per_class, n_orders)
    recs = build_prompts(tokenizer, objects, orders, 3, model_dir)
    encoded = [prompts.encode(tokenizer, r["prompt"]) for r in recs]
    return encoded, prompts.label_token_ids(tokenizer, features.CLASSES, model_dir)


def run(model, tokenizer, model_dir, *, n_per_class: int, n_orders: int, n_naive: int, batch_size: int,
        max_new_tokens: int, n_params: int, peak: float) -> dict[str, Any]:
    """All three methods on the same prompts (naive on the first n_naive of them, as its time is linear in
    the prompt count), each after a one-prompt warm-up; rates, ratios, FLOP shares and agreement."""
    from specllm.bench.flops import model_flops

    encoded, label_ids = prompts_for(tokenizer, model_dir, n_per_class, n_orders)
    sub = encoded[:n_naive]
    naive(model, tokenizer, sub[:1], label_ids, 1)
    batched(model, tokenizer, encoded[:2], label_ids, 2)
    res = {"naive": naive(model, tokenizer, sub, label_ids, max_new_tokens),
           "batched": batched(model, tokenizer, encoded, label_ids, batch_size),
           "prefix": prefix_cached(model, tokenizer, encoded, label_ids, batch_size)}
    sub_b = {k: res["batched"][k][:n_naive] for k in ("logits", "answer", "hidden")}
    out: dict[str, Any] = {"n_prompts": len(encoded), "n_prompts_naive": len(sub), "batch_size": batch_size,
                           "naive_max_new_tokens": max_new_tokens,
                           "mean_prompt_tokens": float(np.mean([len(e) for e in encoded])),
                           "prefix_tokens": res["prefix"]["prefix_tokens"]}
    for name, r in res.items():
        flops = model_flops(n_params, r["tokens"], "forward")
        out[name] = {"seconds": round(r["seconds"], 4), "prompts_per_s": r["prompts_per_s"], "tokens": int(r["tokens"]),
                     "model_flops_per_s": flops / r["seconds"], "share_of_matmul": flops / r["seconds"] / peak}
    out["batched_vs_naive"] = out["batched"]["prompts_per_s"] / out["naive"]["prompts_per_s"]
    out["prefix_vs_batched"] = out["prefix"]["prompts_per_s"] / out["batched"]["prompts_per_s"]
    out["agreement_naive_batched"] = agreement(res["naive"], sub_b)
    out["agreement_prefix_batched"] = agreement(res["prefix"], res["batched"])
    return out
