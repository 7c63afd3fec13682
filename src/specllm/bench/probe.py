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

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from specllm.evaluate.generate import pad_id


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


def common_prefix(encoded: Sequence[Sequence[int]]) -> list[int]:
    """The longest token prefix every prompt shares, less one token (each prompt keeps a non-empty suffix)."""
    first = list(encoded[0])
    n = min(len(s) for s in encoded) - 1
    k = 0
    while k < n and all(s[k] == first[k] for s in encoded):
        k += 1
    return first[:k]


@torch.inference_mode()
def prefix_cached(model, tokenizer, encoded, label_ids, batch_size: int) -> dict[str, Any]:
    dev = next(model.parameters()).device
    pad = pad_id(tokenizer)
    n = len(encoded)
    t0 = time.perf_counter()
    prefix = common_prefix(encoded)
    p = len(prefix)
    cache = model(input_ids=torch.tensor([prefix], device=dev), use_cache=True).past_key_values
    order = sorted(range(n), key=lambda i: -len(encoded[i]))
    labels = torch.tensor(list(label_ids), device=dev)
    logits = np.zeros((n, len(label_ids)), dtype=np.float32)
    hidden = None
    tokens = p
    for start in range(0, n, batch_size):
        chunk = order[start:start + batch_size]
        suffixes = [list(encoded[i])[p:] for i in chunk]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for row, s in enumerate(suffixes):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, p:p + len(s)] = 1
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(chunk))
        positions = (p + torch.arange(width)).expand(len(chunk), width)
        out = model.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                          past_key_values=past, use_cache=True)
        last = torch.tensor([len(s) - 1 for s in suffixes], device=dev)
        h = out.last_hidden_state[torch.arange(len(chunk), device=dev), last]
        lg = model.lm_head(h)[:, labels].float().cpu().numpy()
        h = h.float().cpu().numpy()
        if hidden is None:
            hidden = np.zeros((n, h.shape[1]), dtype=np.float32)
        for row, i in enumerate(chunk):
            logits[i], hidden[i] = lg[row], h[row]
        tokens += sum(len(s) for s in suffixes)
    seconds = time.perf_counter() - t0
    return {"logits": logits, "answer": logits.argmax(axis=1), "hidden": hidden, "seconds": seconds,
            "tokens": tokens, "prefix_tokens": p, "prompts_per_s": n / seconds}


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
