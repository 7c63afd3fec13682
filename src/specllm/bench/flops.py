"""Model-FLOP accounting and the machine's arithmetic rate.

N is the number of NON-EMBEDDING parameters (the decoder layers and the final norm; the token
embedding and the tied or untied LM head are left out, as in Kaplan et al. 2020). Attention-score
FLOPs (QK^T and AV) are not counted either, so the achieved rates below are conservative.

  forward (probe, inference)       2 * N FLOPs per processed token
  full fine-tuning                 6 * N FLOPs per token (forward 2N, backward 4N)
  LoRA with a frozen base          4 * N FLOPs per token: forward 2N plus the activation gradients 2N;
                                   the weight gradients (the other 2N) are not computed for frozen weights.
                                   The adapter's own FLOPs (r * (in + out) per module) are < 1 % and ignored.

The ceiling is measured in the same run: the best of a few large matrix products (fp32 on CPU, bf16
on a GPU), 2 * n^3 FLOPs each. Every workload is reported as achieved model FLOP/s and its share of it.
"""

from __future__ import annotations

import time
from typing import Any

FORWARD, LORA_TRAIN, FULL_TRAIN = 2, 4, 6
A100_BF16_PEAK = 312e12  # FLOP/s, NVIDIA A100 datasheet, dense bf16 tensor cores
LLAMA_31_8B_NON_EMBEDDING = 6_979_588_096  # 8,030,261,248 total - 2 x 128,256 x 4,096 (untied embedding and head)
ORIGINAL_A100_HOURS = 16.0  # the original study: 16 A100-hours for one configuration (arXiv:2508.10075)


def non_embedding_params(model) -> int:
    """Parameters outside the token embedding and the LM head (LoRA adapters excluded too)."""
    skip = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        mod = getattr(model, getter, lambda: None)()
        if mod is not None:
            skip.update(id(p) for p in mod.parameters())
    return int(sum(p.numel() for n, p in model.named_parameters() if id(p) not in skip and "lora_" not in n))


def model_flops(n_params: int, tokens: int, kind: str) -> float:
    """Model FLOPs of `tokens` tokens: kind 'forward' (2N), 'lora' (4N) or 'full' (6N) per token."""
    per = {"forward": FORWARD, "lora": LORA_TRAIN, "full": FULL_TRAIN}[kind]
    return float(per) * n_params * tokens


def share(flops_per_s: float, peak: float) -> float:
    return flops_per_s / peak if peak > 0 else float("nan")


def matmul_rate(n: int = 2048, repeats: int = 5, device: str = "cpu", dtype: Any = None) -> dict[str, Any]:
    """Best-of-`repeats` rate of an n x n by n x n matrix product (2 n^3 FLOPs): the achievable ceiling."""
    import torch

    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    rate = 2.0 * n**3 / best
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "device": device, "threads": torch.get_num_threads(),
            "seconds_best": best, "flops_per_s": rate}


def a100_extrapolation(tokens_per_run: float, mfu: float, n_params: int = LLAMA_31_8B_NON_EMBEDDING,
                       per_token: int = LORA_TRAIN, peak: float = A100_BF16_PEAK) -> dict[str, Any]:
    """EXTRAPOLATION (not a measurement): A100-hours of one LoRA training run of Llama-3.1-8B.

        hours = per_token * N * tokens_per_run / (peak * MFU) / 3600

    with N the non-embedding parameters, per_token 4 (LoRA, frozen base; 6 for full fine-tuning),
    peak the A100's dense bf16 rate and MFU an assumed model-FLOP utilisation."""
    flops = float(per_token) * n_params * tokens_per_run
    hours = flops / (peak * mfu) / 3600.0
    return {"formula": "hours = c * N * T / (peak * MFU) / 3600", "c": per_token, "N": n_params,
            "T_tokens": tokens_per_run, "peak_flops": peak, "mfu": mfu, "flops": flops, "a100_hours": hours,
            "original_a100_hours": ORIGINAL_A100_HOURS, "ratio_vs_original": ORIGINAL_A100_HOURS / hours if hours else None,
            "kind": "extrapolation"}
