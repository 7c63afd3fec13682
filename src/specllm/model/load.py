"""Load the base model (safetensors only, no remote code), with LoRA adapters on top, and describe it for the paper."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.errors import InputError
from specllm.io import sha256_file

PROVENANCE = "specllm_model.json"  # written by the model stage beside the weights: name, source, revision, ...
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # a peft LoRA adapter saved as safetensors
BUILD_FIX = f"run the model stage (`dvc repro model`, or `python -m specllm.stages.model`) to build {paths.rel(paths.BASE_MODEL)}"
# safetensors header dtype codes -> torch dtype names
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
           "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def weight_files(folder: str | Path) -> list[Path]:
    """The *.safetensors files of a model folder, sorted by name."""
    return sorted(Path(folder).glob("*.safetensors"))


def check_model_folder(folder: str | Path) -> None:
    """InputError unless folder holds config.json and *.safetensors weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "model folder", "not found", BUILD_FIX)
    if not weight_files(folder):
        other = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".gguf"})
        found = f" (found {', '.join(other)}: pickle/GGUF weights are not loaded)" if other else ""
        raise InputError(folder, "weights", f"no *.safetensors weight file{found}",
                         BUILD_FIX + "; a model folder needs its weights as safetensors")
    if not (folder / "config.json").is_file():
        raise InputError(folder, "config.json", "missing", BUILD_FIX)


def load_tokenizer(folder: str | Path):
    """The tokenizer of a checked model folder (trust_remote_code=False, local files only)."""
    from transformers import AutoTokenizer

    check_model_folder(folder)
    return AutoTokenizer.from_pretrained(Path(folder), trust_remote_code=False, local_files_only=True)


def check_adapter_folder(folder: str | Path, fix: str) -> None:
    """InputError unless folder holds a peft LoRA adapter saved as safetensors; `fix` says which stage writes it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "adapter folder", "not found", fix)
    for name in ADAPTER_FILES:
        if not (folder / name).is_file():
            pickled = " (adapter_model.bin found: pickle weights are not loaded)" if (folder / "adapter_model.bin").is_file() else ""
            raise InputError(folder, name, f"missing{pickled}", fix + "; peft's save_pretrained writes both files")


def load_base(folder: str | Path, dtype: Any = None, *, adapters: Sequence[tuple[str | Path, str]] = (),
              merge: bool = False, device: Any = None):
    """(model, tokenizer) in eval mode: the project's one model loader (training, evaluation, retention,
    the demo, the stability probe, warm-up and DPO, the benchmarks).

    folder: a safetensors model folder (trust_remote_code=False, local files only). dtype: a torch
    dtype or a specllm.precision name ("bf16", "fp32"); None keeps the saved one. adapters: (folder,
    fix) of each LoRA adapter to put on top, in order, all checked before the (slow) base load; `fix`
    names the stage that writes it. merge: fold each adapter into the weights (a plain causal LM
    again), else keep a peft model. device: where to move the model (None: where it loads, the CPU)."""
    from transformers import AutoModelForCausalLM

    from specllm.precision import torch_dtype

    folder = Path(folder)
    check_model_folder(folder)
    for adapter, fix in adapters:
        check_adapter_folder(adapter, fix)
    tokenizer = load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(dtype) if dtype is not None else "auto",
                                                 trust_remote_code=False, use_safetensors=True, local_files_only=True)
    for adapter, _ in adapters:
        model = attach_adapter(model, adapter, merge=merge)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def attach_adapter(model, adapter_dir: str | Path, *, merge: bool):
    """The model with the LoRA adapter in adapter_dir: merged into the weights in memory, or kept as a peft model."""
    from peft import PeftModel

    with warnings.catch_warnings():  # peft 0.21 calls a transformers 5 property deprecated for v6
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
        return peft.merge_and_unload() if merge else peft


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes) without reading the tensors."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(size))


def model_identity(folder: str | Path) -> dict[str, Any]:
    """What the paper prints about the model: name, source, revision, sha256 of the weights, size, dtype,
    vocabulary and context length, plus the provenance the model stage recorded (e.g. the GGUF's sha256).

    `sha256` is the file's own hash when there is one weight file (check it with `sha256sum`), else the
    sha256 of the `sha256sum`-style manifest of all weight files in name order; `weight_files` lists each.
    """
    folder = Path(folder)
    check_model_folder(folder)
    per_file = {p.name: sha256_file(p) for p in weight_files(folder)}
    if len(per_file) == 1:
        combined = next(iter(per_file.values()))
    else:
        combined = hashlib.sha256("".join(f"{h}  {n}\n" for n, h in per_file.items()).encode()).hexdigest()
    n_params, dtypes = 0, set()
    for p in weight_files(folder):
        for name, info in safetensors_header(p).items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            n_params += count
            dtypes.add(_DTYPES.get(info["dtype"], info["dtype"]))
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    context = next((text[k] for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
                    if k in text), None)
    provenance = json.loads((folder / PROVENANCE).read_text()) if (folder / PROVENANCE).is_file() else {}
    identity = {
        **provenance,
        "name": provenance.get("name", folder.name),
        "source": provenance.get("source", "unknown"),
        "revision": provenance.get("revision"),
        "sha256": combined,
        "weight_files": per_file,
        "n_params": n_params,
        "dtype": ",".join(sorted(dtypes)),
        "vocab_size": text.get("vocab_size"),
        "context_length": context,
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
    }
    return identity
