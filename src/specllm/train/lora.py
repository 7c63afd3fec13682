"""The LoRA adapter: seeding, target-module checks, trainable-parameter counts.

`lora_param_count` computes the adapter size from a model config alone (no weights): LoRA adds
A (r x in) and B (out x r) to every targeted linear layer, i.e. r * (in + out) parameters per
layer and module. For Llama-3.1-8B (hidden 4096, 32 layers, 32 heads, 8 KV heads, head_dim 128)
with r = 8 on q_proj and v_proj that is 32 * 8 * ((4096 + 4096) + (4096 + 1024)) = 3,407,872, the
paper's "3.4M trainable parameters".
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from specllm.errors import InputError

# (in, out) features of each projection of a Llama-family decoder layer (Llama, Mistral, Qwen2, SmolLM2, ...).
_SHAPES = {
    "q_proj": lambda c: (c["hidden"], c["heads"] * c["head_dim"]),
    "k_proj": lambda c: (c["hidden"], c["kv_heads"] * c["head_dim"]),
    "v_proj": lambda c: (c["hidden"], c["kv_heads"] * c["head_dim"]),
    "o_proj": lambda c: (c["heads"] * c["head_dim"], c["hidden"]),
    "gate_proj": lambda c: (c["hidden"], c["intermediate"]),
    "up_proj": lambda c: (c["hidden"], c["intermediate"]),
    "down_proj": lambda c: (c["intermediate"], c["hidden"]),
}
LLAMA_31_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
               "head_dim": 128, "intermediate_size": 14336}  # for the printed reference figure


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, str | Path):
        config = json.loads(Path(config).read_text())
    if not isinstance(config, Mapping):
        config = config.to_dict() if hasattr(config, "to_dict") else vars(config)
    config = dict(config)
    if isinstance(config.get("text_config"), Mapping):  # multimodal configs nest the decoder's
        config = dict(config["text_config"])
    return config


def lora_param_count(config: Any, rank: int, modules: Iterable[str]) -> int:
    """Trainable LoRA parameters for a Llama-family decoder: sum over layers and modules of rank * (in + out).

    config: a transformers config, a config.json dict, or a path to config.json (needs hidden_size,
    num_hidden_layers, num_attention_heads; optional num_key_value_heads, head_dim, intermediate_size).
    Raises ValueError for a module it does not know or a config that lacks a needed size.
    """
    c = _config_dict(config)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    try:
        hidden, layers, heads = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    except KeyError as err:
        raise ValueError(f"config lacks {err.args[0]!r}: not a Llama-family decoder config") from None
    sizes = {"hidden": hidden, "heads": heads, "kv_heads": c.get("num_key_value_heads") or heads,
             "head_dim": c.get("head_dim") or hidden // heads, "intermediate": c.get("intermediate_size")}
    per_layer = 0
    for name in modules:
        if name not in _SHAPES:
            raise ValueError(f"unknown module {name!r}; known: {', '.join(_SHAPES)}")
        if name in ("gate_proj", "up_proj", "down_proj") and not sizes["intermediate"]:
            raise ValueError("config lacks 'intermediate_size', needed for the MLP projections")
        n_in, n_out = _SHAPES[name](sizes)
        per_layer += rank * (n_in + n_out)
    return layers * per_layer


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def linear_module_names(model) -> list[str]:
    """Distinct last name components of the model's linear layers (what LoRA target_modules match)."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_target_modules(model, modules: Iterable[str], where: tuple[str, str] = ("params.yaml", "train.target_modules")):
    """InputError unless every name is a linear module of the model; the message lists the ones it has."""
    have = linear_module_names(model)
    missing = [m for m in modules if m not in have]
    if missing:
        raise InputError(where[0], where[1], f"no linear module named {', '.join(map(repr, missing))} in the model",
                         f"use some of the model's linear modules: {', '.join(have)}")


def make_lora_model(model, settings, where: tuple[str, str] = ("params.yaml", "train.target_modules")):
    """Wrap `model` with a fresh LoRA adapter: target modules checked, seed set first, so the same
    settings always give the same initial adapter."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, settings.target_modules, where)
    set_seed(settings.seed)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 calls a transformers 5 property deprecated for v6
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def save_adapter(model, out_dir: str | Path, base_dir: str | Path) -> None:
    """Write the adapter (safetensors + adapter_config.json) into `out_dir`, atomically, so that its
    bytes do not depend on where the project lies.

    peft records the base model by the path it was loaded from, in adapter_config.json and in the
    front matter of a generated model card (README.md, otherwise placeholders). An absolute path
    there would make the folder's DVC hash differ between clones and rerun every downstream stage
    instead of restoring it from the run cache; so the config names the base by its path relative
    to the project root and the card is not written.
    """
    from specllm import paths
    from specllm.io import atomic_dir

    for config in model.peft_config.values():
        config.base_model_name_or_path = paths.shown(base_dir)
        # peft writes a set as list(set), in Python's per-process string-hash order (PYTHONHASHSEED), so
        # target_modules = {"q_proj", "v_proj"} came out in either order; a sorted list means the same to peft
        for name, value in vars(config).items():
            if isinstance(value, set | frozenset):
                setattr(config, name, sorted(value))
    with atomic_dir(out_dir) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.md").unlink(missing_ok=True)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters of a model."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
