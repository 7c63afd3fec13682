"""specllm: a reproducible paper on teaching a causal LLM to read SDSS spectra."""

__version__ = "0.1.0"

# CUDA numbers GPUs fastest-first unless told otherwise, NVML (the preflight) by PCI bus: with this,
# CUDA_VISIBLE_DEVICES=1 means the same GPU to both. Set before any specllm code imports torch.
import os as _os

_os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
