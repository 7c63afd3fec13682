"""The project's one bf16 policy: which dtype every model stage computes in.

bf16 from compute capability 8.0 (Ampere) on; fp32 below (a T4's bf16 is only emulated, and fp16
would need loss scaling) and on the CPU, unless SPECLLM_FORCE_BF16=1 (bf16 everywhere, the CPU
included: tests/test_bf16_cpu.py runs the GPU's dtype path on a CPU; the outputs are then not the
profile's). Decided by the capability, never by torch.cuda.is_bf16_supported(), which answers yes
on older GPUs that emulate bf16 slowly.

The preflight (its report's dtype, which evaluation, retention and the demo load the model in),
training, the stability probe, warm-up and DPO, and the benchmarks all take the dtype from here.
Light on purpose: torch is imported only by the functions that return torch objects.
"""

from __future__ import annotations

import os
from typing import Any

MIN_CAPABILITY = (8, 0)  # Ampere: native bf16 and the attention kernels the paper used
FORCE_BF16_ENV = "SPECLLM_FORCE_BF16"


def bf16_forced() -> bool:
    """SPECLLM_FORCE_BF16=1: compute in bf16 wherever the stages run, the CPU included."""
    return os.environ.get(FORCE_BF16_ENV, "") == "1"


def dtype_for(capability: tuple[int, int] | None) -> str:
    """"bf16" or "fp32" for a CUDA device of this compute capability (None: the CPU)."""
    if bf16_forced() or (capability is not None and tuple(capability) >= MIN_CAPABILITY):
        return "bf16"
    return "fp32"


def torch_dtype(dtype: Any) -> Any:
    """A torch dtype from a policy name ("bf16", "fp16", "fp32", as the preflight reports it) or a
    torch dtype (returned as it is); None stays None (keep the dtype the weights are stored in)."""
    if dtype is None or not isinstance(dtype, str):
        return dtype
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def choose_device_dtype(local_rank: int = 0) -> tuple[Any, Any]:
    """(torch device, torch dtype) for this process: its CUDA GPU (local_rank modulo the GPU count)
    in the policy's dtype for that GPU, else the CPU in fp32 (bf16 under SPECLLM_FORCE_BF16=1)."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        capability = tuple(torch.cuda.get_device_capability(device))
    else:
        device, capability = torch.device("cpu"), None
    return device, torch_dtype(dtype_for(capability))
