"""Batched single-forward-pass inference: the class from the next-token logits, and the hidden state.

One forward pass per prompt, never one generate() call per prompt. Prompts are sorted by length and
left-padded (pad token, or EOS), with position ids counted from each prompt's first real token, so a
padded prompt sees the same positions as alone. From the last position of each row:

  logits   the next-token logits at the labels' first tokens (float32, [n, n_labels])
  answer   argmax over them; -1 when the maximum is tied (counted and reported)
  hidden   the last layer's hidden state (after the final norm), stored as float16

`decode_answers` decodes a free-text answer for a subsample (batched greedy, left-padded) and
`parse_answer` reads a label from it; `agreement` compares it with the logit reading.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from specllm.evaluate.generate import left_pad, pad_id

SYNONYMS = {"quasar": "QSO"}


@torch.inference_mode()
def probe(model, tokenizer, encoded: Sequence[Sequence[int]], label_ids: Sequence[int], *, batch_size: int,
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Label logits, answers and hidden states of every encoded prompt (input order), plus timing."""
    n = len(encoded)
    order = sorted(range(n), key=lambda i: -len(encoded[i]))
    pad = pad_id(tokenizer)
    dev = next(model.parameters()).device
    labels = torch.tensor(list(label_ids), dtype=torch.long, device=dev)
    logits = np.zeros((n, len(label_ids)), dtype=np.float32)
    hidden = None
    t0 = time.perf_counter()
    tokens = 0
    for start in range(0, n, batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_pad([encoded[i] for i in chunk], pad)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                    output_hidden_states=True, use_cache=False, logits_to_keep=1)
        last = out.logits[:, -1, :].float()
        h = out.hidden_states[-1][:, -1, :].float().cpu().numpy()
        if hidden is None:
            hidden = np.zeros((n, h.shape[1]), dtype=np.float16)
        for row, i in enumerate(chunk):
            logits[i] = last[row, labels].cpu().numpy()
            hidden[i] = h[row].astype(np.float16)
        tokens += int(mask.sum())
        if progress is not None:
            progress(min(start + batch_size, n), n)
    seconds = time.perf_counter() - t0
    top = logits.max(axis=1, keepdims=True)
    tied = (logits == top).sum(axis=1) > 1
    answer = np.where(tied, -1, logits.argmax(axis=1))
    return {"logits": logits, "answer": answer.astype(np.int64), "tied": tied, "hidden": hidden,
            "seconds": seconds, "tokens": tokens, "prompts_per_s": n / seconds if seconds > 0 else float("nan"),
            "tokens_per_s": tokens / seconds if seconds > 0 else float("nan")}


def parse_answer(text: str, labels: Sequence[str]) -> int:
    """Index of the label a free-text answer names (first mention as a whole word, case-insensitive;
    'quasar' counts as QSO); -1 when it names none, or names two different labels first thing in a tie."""
    words = {lab.lower(): k for k, lab in enumerate(labels)}
    for syn, lab in SYNONYMS.items():
        if lab in labels:
            words[syn] = labels.index(lab)
    found = [(m.start(), words[m.group(0).lower()]) for m in
             re.finditer(r"(?<![A-Za-z])(" + "|".join(map(re.escape, words)) + r")(?![A-Za-z])", text, re.IGNORECASE)]
    if not found:
        return -1
    first = min(found)[1]
    return int(first)


def decode_answers(model, tokenizer, prompts: Sequence[str], *, batch_size: int, max_new_tokens: int) -> list[str]:
    from specllm.evaluate.generate import greedy_generate

    return greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


def agreement(free: Sequence[int], logit: Sequence[int]) -> dict[str, Any]:
    """How often the free-text answer agrees with the logit reading (over prompts whose free text parsed)."""
    free, logit = np.asarray(free), np.asarray(logit)
    parsed = free >= 0
    n = int(parsed.sum())
    agree = int((free[parsed] == logit[parsed]).sum())
    return {"n_decoded": int(len(free)), "n_unparseable": int((~parsed).sum()), "n_parsed": n,
            "n_agree": agree, "agreement": agree / n if n else None}
