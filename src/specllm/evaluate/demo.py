"""One chat session: the adapted model reads a galaxy's spectrum, gives its redshift, then answers a
natural-language follow-up about that galaxy. Greedy decoding, bounded length.

Turn 1 is the evaluation prompt itself (data/serialized/test.jsonl ``prompt``); turn 2 puts the
whole conversation so far (user spectrum message, the model's own answer, the follow-up question)
through the tokenizer's chat template, so the model sees one continuous session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specllm.evaluate.generate import greedy_generate
from specllm.evaluate.parse import parse_redshift

DEFAULT_QUESTION = "What does this redshift tell us about the galaxy's distance?"


def _template(tokenizer, messages: list[dict[str, str]]) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def chat_demo(model, tokenizer, record: Mapping[str, Any], user_text: str, question: str, *,
              max_new_tokens: int) -> dict[str, Any]:
    """The transcript of the two-turn session and the parsed redshift."""
    prompt1 = record["prompt"]
    template1 = _template(tokenizer, [{"role": "user", "content": user_text}])
    answer1 = greedy_generate(model, tokenizer, [prompt1], max_new_tokens=max_new_tokens, batch_size=1)[0].strip()
    messages = [{"role": "user", "content": user_text}, {"role": "assistant", "content": answer1},
                {"role": "user", "content": question}]
    prompt2 = _template(tokenizer, messages)
    if prompt2 is None:  # no chat template: plain text turns, as build_example does
        prompt2 = f"{prompt1}{answer1}\n{question}\n"
    answer2 = greedy_generate(model, tokenizer, [prompt2], max_new_tokens=max_new_tokens, batch_size=1)[0].strip()
    z_pred = parse_redshift(answer1)
    z_true = float(record["z"])
    return {
        "gal_id": record["gal_id"],
        "z_true": z_true,
        "z_pred": z_pred,
        "parsed": z_pred is not None,
        "abs_error": None if z_pred is None else abs(z_pred - z_true),
        "question": question,
        "transcript": [*messages, {"role": "assistant", "content": answer2}],
        "chat_text": prompt2 + answer2,
        "template_matches_eval_prompt": template1 == prompt1 if template1 is not None else None,
        "max_new_tokens": max_new_tokens,
        "decoding": "greedy",
    }
