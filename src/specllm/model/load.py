"""Load the base model (safetensors only, no remote code) and describe it for the paper."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from specllm.errors import InputError
from specllm.io import sha256_file

PROVENANCE = "specllm_model.json"  # written by the model stage beside the weights: name, source, revision, ...
BUILD_FIX = "run the model stage (`dvc repro model`, or `python -m specllm.stages.model`) to build models/base"
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


def load_base(folder: str | Path, dtype: Any = None):
    """(model, tokenizer) from a safetensors folder; trust_remote_code=False. dtype: None keeps the saved one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    check_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype if dtype is not None else "auto",
                                                 trust_remote_code=False, use_safetensors=True, local_files_only=True)
    return model.eval(), tokenizer


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
