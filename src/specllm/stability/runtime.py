"""What the model stages of the study share: loading the model, building every prompt, probing a set,
the preflight's memory workload."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import io
from specllm.stability import features, prompts

STAGE_FIX = "run the earlier stability stages first (`dvc repro stability_sample`, ...)"


def read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    return io.read_csv(path, STAGE_FIX, columns, dtype={"obj_id": str})


def read_orders(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    data = io.read_json(path, STAGE_FIX, required=("orders",))
    return [(o["name"], tuple(o["perm"])) for o in data["orders"]]


def load_model(model_dir: Path, warmup_dir: Path | None = None, adapter_dir: Path | None = None):
    """(model, tokenizer, device) in eval mode, in specllm.precision's dtype for this machine's device.

    warmup_dir: the supervised warm-up adapter (stage stability_warmup), merged into the base weights, so
    the study's "base" model is the one that knows the task. adapter_dir: the DPO adapter on top of it,
    merged as well (inference only)."""
    from specllm.model.load import load_base
    from specllm.precision import choose_device_dtype

    device, dtype = choose_device_dtype()
    adapters = [(d, f"run `dvc repro {stage}` first")
                for d, stage in ((warmup_dir, "stability_warmup"), (adapter_dir, "stability_dpo")) if d is not None]
    model, tokenizer = load_base(model_dir, dtype, adapters=adapters, merge=True, device=device)
    return model, tokenizer, device


def build_prompts(tokenizer, objects: pd.DataFrame, orders, decimals: int, model_dir: Path) -> list[dict[str, Any]]:
    """One record per (object, order), objects outer: obj_id, class, split, order, order_name, prompt (templated)."""
    rows = []
    for _, obj in objects.iterrows():
        lines = features.feature_lines(obj, decimals)
        for k, (name, perm) in enumerate(orders):
            text = prompts.user_text(features.ordered_lines(lines, perm))
            rows.append({"obj_id": obj["obj_id"], "class": obj["class"], "split": obj.get("split", ""),
                         "order": k, "order_name": name, "prompt": prompts.chat_prompt(tokenizer, text, model_dir)})
    return rows


def probe_set(model, tokenizer, objects: pd.DataFrame, orders, *, decimals: int, batch_size: int,
              model_dir: Path, log=print) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any], list[dict[str, Any]]]:
    """Probe every (object, order): (rows, hidden [n_obj, n_orders, H] float16, timing, prompt records)."""
    from specllm.stability.probe import probe

    label_ids = prompts.label_token_ids(tokenizer, features.CLASSES, model_dir)
    recs = build_prompts(tokenizer, objects, orders, decimals, model_dir)
    encoded = [prompts.encode(tokenizer, r["prompt"]) for r in recs]
    step = max(1, len(recs) // 10)

    def progress(done: int, total: int) -> None:
        if done % step < batch_size or done == total:
            log(f"probe: {done}/{total} prompts")

    out = probe(model, tokenizer, encoded, label_ids, batch_size=batch_size, progress=progress, prefix_cache=True)
    rows = pd.DataFrame([{k: r[k] for k in ("obj_id", "class", "split", "order", "order_name")} for r in recs])
    rows["answer"] = out["answer"]
    rows["answer_label"] = [features.CLASSES[a] if a >= 0 else "" for a in out["answer"]]
    rows["tied"] = out["tied"].astype(int)
    for j, lab in enumerate(features.CLASSES):
        rows[f"logit_{lab}"] = np.round(out["logits"][:, j].astype(np.float64), 5)
    hidden = out["hidden"].reshape(len(objects), len(orders), -1)
    timing = {"n_prompts": len(recs), "seconds": round(out["seconds"], 3), "prompts_per_s": round(out["prompts_per_s"], 4),
              "tokens": out["tokens"], "tokens_per_s": round(out["tokens_per_s"], 2),
              "prefix_tokens": int(out["prefix_tokens"]),
              "mean_prompt_tokens": round(float(np.mean([len(e) for e in encoded])), 2),
              "label_first_tokens": {lab: int(t) for lab, t in zip(features.CLASSES, label_ids)},
              "thinking_switch": prompts.has_thinking_switch(tokenizer), "batch_size": batch_size}
    return rows, hidden, timing, recs


def workload(kind: str, batch: int, rank: int = 0, targets=()):
    """The preflight's memory workload of a stability stage (probe, warm-up, DPO, re-probe); prompts are
    about 150-400 tokens, 512 bounds them."""
    from specllm import paths, preflight

    params = preflight.load_params(None, paths.PARAMS)
    shape = preflight.model_shape(params, paths.ROOT)
    if shape is None:
        return None
    lora = shape.lora_params(rank, targets) if rank else 0
    return preflight.Workload(kind, shape.n_params, shape.hidden, shape.layers, shape.vocab, lora, batch, 512,
                              gradient_checkpointing=False)
