"""Chat prompts and the labels' first tokens.

The user message is INSTRUCTION, a newline, and the object's ten feature lines in one order. It goes
through the model's chat template with the generation prompt; where the template has a thinking
switch (its source mentions ``enable_thinking``) ``enable_thinking=False`` is passed, so reasoning
models answer at once instead of opening a think block.

The class is read from the next-token logits over each label's *first* token as it follows the
generation prompt. Two labels sharing a first token, or a label the tokenizer cannot write
(unknown-token pieces, or text that does not decode back), is an InputError.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from specllm import paths
from specllm.errors import InputError

BASE_MODEL = paths.rel(paths.BASE_MODEL)  # named in the errors when no folder is given

INSTRUCTION = ("Classify this astronomical object as STAR, GALAXY, or QSO based on the following "
               "spectral features:")


def user_text(lines: Sequence[str]) -> str:
    return INSTRUCTION + "\n" + "\n".join(lines)


def has_thinking_switch(tokenizer) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "enable_thinking" in template


def chat_prompt(tokenizer, text: str, model_dir: str | Path = BASE_MODEL) -> str:
    """The chat-templated prompt (text, special tokens included) ending with the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(Path(model_dir) / "tokenizer_config.json", "chat_template", "the tokenizer has no chat template",
                         "use an instruction-tuned model (its tokenizer carries the template)")
    extra = {"enable_thinking": False} if has_thinking_switch(tokenizer) else {}
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True, **extra)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a templated prompt (the template already holds the special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def label_token_ids(tokenizer, labels: Sequence[str], model_dir: str | Path = BASE_MODEL) -> list[int]:
    """First token id of each label where it follows the generation prompt; InputError when a label cannot
    be emitted or two labels share their first token."""
    where = Path(model_dir) / "tokenizer.json"
    probe = chat_prompt(tokenizer, "x", model_dir)
    p_ids = encode(tokenizer, probe)
    unk = getattr(tokenizer, "unk_token_id", None)
    firsts = []
    for label in labels:
        ids = encode(tokenizer, label)
        if not ids or (unk is not None and unk in ids) or tokenizer.decode(ids).strip() != label:
            raise InputError(where, f"label {label!r}",
                             f"the tokenizer cannot write {label!r} (tokens {ids}, decoded "
                             f"{tokenizer.decode(ids)!r})", "use a model whose tokenizer covers the labels' letters")
        full = encode(tokenizer, probe + label)
        first = full[len(p_ids)] if full[:len(p_ids)] == p_ids and len(full) > len(p_ids) else ids[0]
        firsts.append(int(first))
    for i in range(len(labels)):
        for j in range(i):
            if firsts[i] == firsts[j]:
                tok = tokenizer.decode([firsts[i]])
                raise InputError(where, f"labels {labels[j]!r} and {labels[i]!r}",
                                 f"both start with token {firsts[i]} ({tok!r}): the next-token logits cannot tell them apart",
                                 "use a tokenizer that splits the labels differently, or distinct label words")
    return firsts


def label_ids_full(tokenizer, label: str) -> list[int]:
    """Every token of a label as the assistant's answer (for DPO's completion log-probabilities)."""
    return encode(tokenizer, label)
