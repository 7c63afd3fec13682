"""DPO peak memory, each variant in its own subprocess on the same pairs and steps:

  policy_only   one model with its LoRA adapter and AdamW, policy forward/backward on chosen and rejected
                (the floor: a single model with adapter and optimizer)
  adapter_ref   the project's DPO (specllm.stability.dpo.train_dpo): reference = the same weights with the
                adapter disabled, its log-probabilities computed once before the first step
  second_ref    the usual alternative: a second copy of the base loaded as the reference model, queried
                under no_grad at every step
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def _pairs(tokenizer, model_dir, n_pairs: int):
    from specllm.bench.probe import prompts_for
    from specllm.stability import features, prompts

    encoded, _ = prompts_for(tokenizer, model_dir, max(1, n_pairs // 3 + 1), 1)
    encoded = encoded[:n_pairs]
    labels = [prompts.label_ids_full(tokenizer, c) for c in features.CLASSES]
    chosen = [labels[k % 3] for k in range(len(encoded))]
    rejected = [labels[(k + 1) % 3] for k in range(len(encoded))]
    return encoded, chosen, rejected


def isolated(variant: str, model_kind: str, work: str, n_pairs: int, batch_size: int) -> dict[str, Any]:
    import torch

    from specllm.bench.common import model_dir
    from specllm.evaluate.generate import pad_id
    from specllm.model.load import load_base
    from specllm.precision import choose_device_dtype
    from specllm.stability import dpo
    from specllm.train.lora import make_lora_model
    from specllm.train.settings import TrainSettings

    d = model_dir(model_kind, Path(work))
    device, dtype = choose_device_dtype()  # as the stability_dpo stage: bf16 on an Ampere-or-newer GPU
    base, tok = load_base(d, dtype=dtype)
    model_bytes = dpo.model_bytes(base)
    model = make_lora_model(base, TrainSettings()).to(device)
    prompts, chosen, rejected = _pairs(tok, d, n_pairs)
    pad = pad_id(tok)
    t0 = time.perf_counter()
    if variant == "adapter_ref":
        dpo.train_dpo(model, prompts, chosen, rejected, pad=pad, beta=0.1, lr=1e-5, epochs=1, batch_size=batch_size, seed=0)
    else:
        ref = load_base(d, dtype=dtype)[0].requires_grad_(False).to(device) if variant == "second_ref" else None
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        model.train()
        for s in range(0, len(prompts), batch_size):
            idx = range(s, min(s + batch_size, len(prompts)))
            ps = [prompts[i] for i in idx] * 2
            cs = [chosen[i] for i in idx] + [rejected[i] for i in idx]
            both = dpo.sequence_logps(model, ps, cs, pad)
            pc, pr = both[:len(idx)], both[len(idx):]
            if ref is not None:
                with torch.no_grad():
                    rb = dpo.sequence_logps(ref, ps, cs, pad)
                loss, _ = dpo.dpo_loss(pc, pr, rb[:len(idx)], rb[len(idx):], 0.1)
            else:
                loss = -(pc - pr).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {"variant": variant, "seconds": time.perf_counter() - t0, "n_pairs": len(prompts), "model_bytes": model_bytes}


def run(model_kind: str, work: Path, *, n_pairs: int, batch_size: int, say) -> dict[str, Any]:
    from specllm.bench.common import run_isolated

    out: dict[str, Any] = {"n_pairs": n_pairs, "batch_size": batch_size}
    for variant in ("policy_only", "adapter_ref", "second_ref"):
        r = run_isolated("dpo", {"variant": variant, "model_kind": model_kind, "work": str(work), "n_pairs": n_pairs,
                                 "batch_size": batch_size})
        # On a GPU the peak that matters is the device's (torch.cuda.max_memory_allocated), else the RSS.
        cuda = r.get("cuda_peak_bytes") is not None
        peak = r["cuda_peak_bytes"] if cuda else r["peak_rss_bytes"]
        r.update(peak_bytes=peak, peak_kind="cuda" if cuda else "rss", peak_vs_model=peak / r["model_bytes"])
        out[variant] = r
        say(f"dpo {variant}: peak RSS {r['peak_rss_bytes'] / 2**30:.3f} GiB"
            + (f", peak CUDA {peak / 2**30:.3f} GiB = {r['peak_vs_model']:.2f}x one model copy" if cuda else "")
            + f" ({r['seconds']:.1f} s)")
    single = out["policy_only"]["peak_rss_bytes"]
    out["adapter_ref_vs_single"] = out["adapter_ref"]["peak_rss_bytes"] / single
    out["second_ref_vs_single"] = out["second_ref"]["peak_rss_bytes"] / single
    base = out["policy_only"]["baseline_rss_bytes"]  # torch imported, no model: what every process pays
    for k in ("adapter_ref", "second_ref"):  # the part each variant adds above the bare process
        out[f"{k}_vs_single_above_baseline"] = ((out[k]["peak_rss_bytes"] - base) / (single - base)
                                                if single > base else None)
    return out
