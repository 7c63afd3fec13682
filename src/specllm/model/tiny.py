"""A tiny randomly initialised Llama with a character-level tokenizer, saved like any HF model.

For plumbing tests and the smoke profile: `AutoTokenizer.from_pretrained(folder)` and
`AutoModelForCausalLM.from_pretrained(folder)` load it, it has a chat template, and the same
seed and sizes give the same bytes (weights, config and tokenizer files).
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
# Newline plus printable ASCII (space .. '~'); every digit, separator and letter of the prompts.
CHARS = ("\n", *(chr(i) for i in range(32, 127)))
CONTEXT_LENGTH = 8192  # RoPE positions cost no parameters; matches the 8K context of the budget
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_tokenizer():
    """Character-level `PreTrainedTokenizerFast`: one token per character, specials first (ids 0-3).

    A BPE model with an empty merge list splits text into single characters from the vocabulary;
    characters outside it become <unk>. The Fuse decoder joins tokens without spaces.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *CHARS))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        chat_template=CHAT_TEMPLATE, model_max_length=CONTEXT_LENGTH,
    )


def build_model(hidden: int, layers: int, heads: int, seed: int, vocab_size: int):
    """Randomly initialised `LlamaForCausalLM` (fp32, tied embeddings), seeded without touching the global RNG."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
    if (hidden // heads) % 2:
        raise ValueError(f"head size {hidden // heads} (hidden {hidden} / heads {heads}) must be even for RoPE")
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=CONTEXT_LENGTH,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32).eval()


def build_tiny(out_dir: str | Path, hidden: int, layers: int, heads: int, seed: int) -> Path:
    """Save the tiny model and its tokenizer to out_dir (created); return out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(hidden, layers, heads, seed, vocab_size=len(tokenizer))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
