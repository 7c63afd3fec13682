"""Load the base model with an optional LoRA adapter, and decode greedily in left-padded batches.

Batches are left-padded (the pad token, or EOS when the tokenizer has none) with an attention
mask, so every prompt's last token sits in the last column and generation continues from it; the
prompts are sorted by length first so a batch wastes little on padding, and the outputs come back in
the input order. Greedy decoding with left padding gives the same tokens as decoding each prompt
alone (up to floating-point ties; tests/test_evaluate.py checks it).

Prompts are tokenized without special tokens: the serialized prompts already carry the chat
template's own (the serialize stage counts tokens the same way).

Constrained decoding (optional) appends ``"Redshift: "`` to the prompt and then only lets the
model write a number formatted like the training targets (parse.target_grammar: e.g. one
integer digit, '.', three decimals) and then EOS; the output is then always a number (it can still be a wrong one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from specllm.evaluate.parse import PREFIX


def adapter_fix(run: str) -> str:
    return (f"train the run first (`dvc repro train@{run}`, or `python -m specllm.stages.train --run {run}`), "
            f"or use `--run base` to evaluate the base model alone")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(base_dir: str | Path, adapter_dir: str | Path | None = None, run: str = "base", dtype: str | None = None):
    """(model, tokenizer): the base model, wrapped in the LoRA adapter of training run `run` when adapter_dir
    is given (specllm.model.load.load_base); eval mode, on this machine's device. `dtype` is the preflight's
    choice ("bf16" on Ampere and newer, "fp32" on CPU); None keeps the stored one."""
    from specllm.model.load import load_base

    adapters = [(adapter_dir, adapter_fix(run))] if adapter_dir is not None else []
    return load_base(base_dir, dtype, adapters=adapters, device=device())


def pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    return int(pid)


def eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a generation: the tokenizer's EOS and the model's generation-config EOS(s)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    return sorted(ids)


def left_pad(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask of a left-padded batch."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


class NumberConstraint:
    """Logits processor: after the prompt, only the target's number grammar, then EOS.

    The fine-tuning target is ``"Redshift: {z:.<decimals>f}"``, so the allowed text is 1 to
    `int_digits` integer digits, '.', exactly `decimals` digits (no '.' when decimals is 0), and
    then only EOS. A bounded grammar keeps a model that has not learnt the format from writing
    24-digit numbers (slow, and a meaningless MAE). Token classes come from decoding each
    vocabulary entry alone; a token is allowed when the text so far plus the token is still a
    prefix of the grammar. transformers' own constraints (PhrasalConstraint, prefix_allowed_tokens_fn)
    work on token sequences rather than on text, so the grammar is written here.
    """

    def __init__(self, tokenizer, prompt_width: int, eos: Sequence[int], *, decimals: int = 3, int_digits: int = 1):
        if decimals < 0 or int_digits < 1:
            raise ValueError(f"need decimals >= 0 and int_digits >= 1, got {decimals} and {int_digits}")
        self.tokenizer, self.prompt_width, self.eos = tokenizer, prompt_width, list(eos)
        self.decimals, self.int_digits = decimals, int_digits
        frac = rf"\.\d{{0,{decimals}}}" if decimals else ""
        self._prefix = re.compile(rf"\d{{0,{int_digits}}}" + (rf"(?<=\d)(?:{frac})?" if decimals else ""))
        self._complete = re.compile(rf"\d{{1,{int_digits}}}" + (rf"\.\d{{{decimals}}}" if decimals else ""))
        self.text: dict[int, str] = {}
        special = set(tokenizer.all_special_ids)
        for tid in range(len(tokenizer)):
            if tid in special:
                continue
            s = tokenizer.decode([tid])
            if s and s.isascii() and set(s) <= set("0123456789.") and s.count(".") <= 1:
                self.text[tid] = s
        if not any(s.isdigit() for s in self.text.values()):
            raise ValueError("the tokenizer has no digit tokens: constrained decoding is impossible")
        self._eos = torch.tensor(self.eos, dtype=torch.long)
        self._cache: dict[str, torch.Tensor] = {}

    def is_prefix(self, text: str) -> bool:
        return self._prefix.fullmatch(text) is not None

    def is_complete(self, text: str) -> bool:
        return self._complete.fullmatch(text) is not None

    def allowed_ids(self, generated: str) -> torch.Tensor:
        """Token ids allowed after `generated` (cached: the grammar has few distinct states)."""
        if generated not in self._cache:
            if self.is_complete(generated):
                ids = list(self.eos)
            else:
                ids = [t for t, s in self.text.items() if self.is_prefix(generated + s)]
            self._cache[generated] = torch.tensor(ids, dtype=torch.long)
        return self._cache[generated]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        for row in range(input_ids.shape[0]):
            tokens = input_ids[row, self.prompt_width:].tolist()
            if any(t in self.eos for t in tokens):  # finished rows: generate() pads them, anything goes
                allowed[row] = True
                continue
            generated = "".join(self.text.get(int(t), "") for t in tokens)
            ids = self.allowed_ids(generated)
            if ids.numel() == 0:  # cannot happen for a tokenizer with digit tokens; never leave a row with nothing
                ids = self._eos
            allowed[row, ids.to(scores.device)] = True
        return scores.masked_fill(~allowed, float("-inf"))


@torch.inference_mode()
def greedy_generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                    constrained: bool = False, grammar: tuple[int, int] = (1, 3),
                    progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy continuation of every prompt (special tokens removed), in input order.

    With constrained=True the continuation starts with ``"Redshift: "`` (fed to the model) followed by
    a number in the targets' grammar (int_digits, decimals), e.g. (1, 3) for "0.123" (NumberConstraint).
    Batches are left-padded; prompts are processed longest first.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")
    prompts = list(prompts)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    prefix_ids = tokenizer(PREFIX, add_special_tokens=False)["input_ids"] if constrained else []
    encoded = [ids + prefix_ids for ids in encoded]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    pad, eos = pad_id(tokenizer), eos_ids(model, tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                              eos_token_id=eos or None, bos_token_id=tokenizer.bos_token_id)
    dev = next(model.parameters()).device
    int_digits, decimals = grammar
    constraint = NumberConstraint(tokenizer, 0, eos, decimals=decimals, int_digits=int_digits) if constrained else None
    outputs: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_pad([encoded[i] for i in chunk], pad)
        if constraint is not None:
            constraint.prompt_width = ids.shape[1]
        processors = LogitsProcessorList([constraint] if constraint is not None else [])
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=config,
                             logits_processor=processors)
        for row, i in enumerate(chunk):
            new = out[row, ids.shape[1]:].tolist()
            cut = next((k for k, t in enumerate(new) if t in eos), len(new))
            text = tokenizer.decode(new[:cut], skip_special_tokens=True)
            outputs[i] = (PREFIX + text) if constrained else text
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return outputs


def throughput(model, tokenizer, prompts: Sequence[str], batch_sizes: Sequence[int], *, max_new_tokens: int,
               constrained: bool = False, repeats: int = 1) -> list[dict[str, Any]]:
    """Prompts per second of greedy_generate for each batch size (best of `repeats` after one warm-up batch)."""
    greedy_generate(model, tokenizer, list(prompts)[:1], max_new_tokens=2, batch_size=1)  # warm-up
    rows = []
    for bs in batch_sizes:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=bs, constrained=constrained)
            best = min(best, time.perf_counter() - t0)
        rows.append({"batch_size": int(bs), "n_prompts": len(prompts), "seconds": round(best, 3),
                     "prompts_per_s": round(len(prompts) / best, 4)})
    return rows
