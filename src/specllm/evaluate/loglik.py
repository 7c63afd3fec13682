"""Multiple-choice scoring by option log-likelihood, as lm-evaluation-harness does it.

For each item the context is ``"Question: {question}\\nAnswer:"`` and each option is the
continuation ``" {choice}"`` (ARC's prompt in lm-evaluation-harness; used here for every set).
Following lm-eval's HFLM: trailing spaces of the context move to the continuation; the
continuation's tokens are those of ``encode(context + continuation)`` after the first
``len(encode(context))`` tokens; no special tokens are added (lm-eval's default for causal models).
The score of an option is the sum of the log-probabilities of its tokens given the context.

- ``acc``: the option with the highest summed log-likelihood is the correct one.
- ``acc_norm``: the same after dividing each sum by the option's length in characters
  (lm-eval's ``acc_norm``).

Sequences are scored in right-padded batches, longest first; padding never reaches a scored
position because each token only attends to earlier ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

CONTEXT = "Question: {question}\nAnswer:"
DELIMITER = " "


def context_text(question: str) -> str:
    return CONTEXT.format(question=question.strip())


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness splits them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not ctx:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [int(bos)], whole
    cont = whole[len(ctx):]
    if not cont:
        raise ValueError(f"continuation {continuation!r} adds no token after the context")
    return list(ctx), list(cont)


@torch.inference_mode()
def loglikelihoods(model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16,
                   max_length: int | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Summed log-probability of each continuation given its context (float64, input order)."""
    encoded = [encode_pair(tokenizer, c, x) for c, x in pairs]
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    dev = next(model.parameters()).device
    out = np.zeros(len(encoded), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        seqs = []
        for i in chunk:
            ctx, cont = encoded[i]
            seq = (ctx + cont)[:-1]  # the model predicts token t+1 at position t
            if max_length is not None and len(seq) > max_length:  # left-truncate as lm-eval does
                seq = seq[-max_length:]
            seqs.append((seq, cont))
        width = max(len(s) for s, _ in seqs)
        ids = torch.full((len(seqs), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, (seq, _) in enumerate(seqs):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for row, ((seq, cont), i) in enumerate(zip(seqs, chunk)):
            n = len(cont)
            positions = torch.arange(len(seq) - n, len(seq), device=dev)
            targets = torch.tensor(cont, device=dev)
            out[i] = float(logp[row, positions, targets].sum().double())
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return out


def score_items(model, tokenizer, items: Sequence[dict[str, Any]], *, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per item: loglik [n, 4], correct (acc) and correct_norm (acc_norm) as 0/1 arrays, chosen indices."""
    pairs = [(context_text(it["question"]), DELIMITER + c) for it in items for c in it["choices"]]
    ll = loglikelihoods(model, tokenizer, pairs, batch_size=batch_size).reshape(len(items), -1)
    lengths = np.array([[len(c) for c in it["choices"]] for it in items], dtype=np.float64)
    answer = np.array([it["answer"] for it in items], dtype=np.int64)
    pred, pred_norm = ll.argmax(axis=1), (ll / lengths).argmax(axis=1)
    return {"loglik": ll, "pred": pred, "pred_norm": pred_norm,
            "correct": (pred == answer).astype(np.float64), "correct_norm": (pred_norm == answer).astype(np.float64)}
