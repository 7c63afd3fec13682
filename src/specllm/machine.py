"""Facts about the machine a process runs on: CPU, torch build and GPUs, NVIDIA driver, peak memory.

The one place for them: the environment stage records them (results/environment.json, via
specllm.envkey.collect_environment), specllm.cost stamps every stage's cost record with them, and the
training loop, DPO and the benchmarks measure their peak memory with peak_memory / peak_rss_bytes.
Ground floor: imports nothing of specllm (specllm.cost, which runner.run_main wraps around every stage,
imports it), and never imports torch unless asked for torch's facts.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# How peak_memory measured, as train.json and results/stability/dpo.json record it ("peak_memory_kind").
CUDA_PEAK = "torch.cuda.max_memory_allocated"
RSS_PEAK = "peak RSS (VmHWM)"


def cpu_info() -> dict[str, Any]:
    """{model, logical_cores, usable_cores (this process's affinity)}."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": re.sub(r"\s+", " ", model), "logical_cores": os.cpu_count(), "usable_cores": usable}


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version from nvidia-smi (None: no nvidia-smi or it failed)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0].strip() if out.strip() else None


def torch_info() -> dict[str, Any]:
    """torch's version, threads, CUDA build and visible GPUs (imports torch; {"version": None} without it)."""
    try:
        import torch
    except ImportError:
        return {"version": None}
    info: dict[str, Any] = {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda_available": bool(torch.cuda.is_available()),
        "cuda_version": torch.version.cuda,
        "cudnn_version": None,
        "gpus": [],
        "driver": None,
    }
    if info["cuda_available"]:
        info["cudnn_version"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            info["gpus"].append({
                "name": prop.name,
                "capability": f"{prop.major}.{prop.minor}",
                "memory_gib": round(prop.total_memory / 2**30, 1),
            })
        info["driver"] = nvidia_driver()
    if info["version"]:
        info["build"] = f"CUDA {info['cuda_version']}" if info.get("cuda_version") else "CPU"
    return info


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes: VmHWM from /proc/self/status on Linux, else ru_maxrss.

    Not ru_maxrss on Linux: it survives fork and execve, so a stage started by DVC (fork + exec), or a
    benchmark subprocess of a parent that held a model, would report at least its parent's size. VmHWM
    belongs to the address space execve creates."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def peak_memory(device) -> tuple[int, str]:
    """(peak bytes, how measured) of a run on `device` (a torch.device): the CUDA allocator's maximum on
    a GPU, this process's peak RSS (peak_rss_bytes) on the CPU."""
    if getattr(device, "type", device) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device)), CUDA_PEAK
    return peak_rss_bytes(), RSS_PEAK
