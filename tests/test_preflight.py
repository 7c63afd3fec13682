"""The hardware preflight: simulated T4, V100, A100, H100 and no GPU (the queries are patched), the
memory formula, and a failing preflight leaving every existing output untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import ROOT

from specllm import preflight
from specllm.preflight import GIB, GpuInfo, Workload, estimate_memory

T4 = GpuInfo(0, "Tesla T4", (7, 5), 15 * GIB, 14 * GIB, "535.104.05", (12, 2))
V100 = GpuInfo(0, "Tesla V100-SXM2-32GB", (7, 0), 32 * GIB, 31 * GIB, "535.104.05", (12, 2))
A100 = GpuInfo(0, "NVIDIA A100-SXM4-80GB", (8, 0), 80 * GIB, 79 * GIB, "580.82.07", (13, 0))
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 * GIB, 79 * GIB, "580.82.07", (13, 0))
A10 = GpuInfo(0, "NVIDIA A10", (8, 6), 24 * GIB, 22 * GIB, "580.82.07", (13, 0))


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A project folder and a machine whose GPUs, torch build, disk and network the test chooses."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    shutil.copytree(ROOT / "profiles", project / "profiles")
    state = {"gpus": [], "torch": ("2.13.0", "13.0"), "free": 500 * GIB, "hub": (True, "HTTP 200"),
             "net": (True, "HTTP 200"), "bf16_asked": 0}
    monkeypatch.setattr(preflight, "query_gpus", lambda: list(state["gpus"]))
    monkeypatch.setattr(preflight, "torch_cuda_build", lambda: state["torch"])
    monkeypatch.setattr(preflight, "disk_free", lambda path: state["free"])
    monkeypatch.setattr(preflight, "hub_status", lambda hub_id, revision: state["hub"])
    monkeypatch.setattr(preflight, "reachable", lambda url, *a, **k: state["net"])

    def main(*args: str) -> int:
        return preflight.main([*args, "--params", str(project / "params.yaml")])

    return types.SimpleNamespace(root=project, state=state, main=main)


def _run(machine, capsys, *args: str) -> tuple[int, str]:
    code = machine.main(*args)
    out = capsys.readouterr()
    return code, out.out + out.err


# --- simulated GPUs --------------------------------------------------------------------------------


def test_t4_fails_the_paper_profile_on_compute_capability(machine, capsys, monkeypatch):
    machine.state["gpus"] = [T4]
    machine.state["torch"] = ("2.13.0", "12.8")
    # A T4 "supports" bf16 by emulation; the preflight must not be swayed by torch saying so.
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "Tesla T4" in text and "7.5" in text and ">= 8.0" in text
    assert "FAIL  compute capability" in text
    assert "PROFILE=small" in text and "rent" in text
    assert "nothing was run or written" in text
    assert preflight.dtype_for((7, 5)) == "fp32"


def test_v100_fails_the_paper_profile(machine, capsys):
    machine.state["gpus"] = [V100]
    machine.state["torch"] = ("2.13.0", "12.8")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "Tesla V100-SXM2-32GB" in text and "7.0" in text and "FAIL  compute capability" in text
    assert "PROFILE=small" in text


def test_a100_passes_the_paper_profile_in_bf16(machine, capsys):
    machine.state["gpus"] = [A100]
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 0, text
    assert "preflight passed" in text and "NVIDIA A100-SXM4-80GB" in text and "bf16" in text
    assert "FAIL" not in text
    report = preflight.run("paper", params=preflight.load_params("paper", machine.root / "params.yaml"),
                           root=machine.root)
    assert (report.device, report.dtype, report.gpu) == ("cuda", "bf16", A100)


def test_h100_passes_every_stage(machine, capsys):
    machine.state["gpus"] = [H100]
    for stage in preflight.STAGE_KINDS:
        code, text = _run(machine, capsys, "--profile", "paper", "--stage", stage)
        assert code == 0, text
        assert f"for {stage}" in text and "H100" in text


def test_no_gpu_fails_the_paper_profile_and_names_the_cpu_profile(machine, capsys):
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "no CUDA GPU visible" in text and "Ampere-or-newer" in text
    assert "make reproduce PROFILE=small" in text and "docker-reproduce" in text


def test_the_open_profile_on_a_cpu_is_refused_with_an_estimate_of_its_training_time(machine, capsys):
    code, text = _run(machine, capsys, "--profile", "open")
    assert code == 2
    assert "no CUDA GPU visible" in text
    line = next(x for x in text.splitlines() if "CPU time" in x)
    hours = float(line.split("about ")[1].split(" h")[0])
    assert 5 < hours < 100, line  # 3,000 spectra x 7 two-epoch-equivalent runs of ~540 tokens at ~330 tokens/s
    code, text = _run(machine, capsys, "--profile", "open")
    assert "make reproduce PROFILE=small" in text


def test_training_tokens_count_every_run_of_the_grid():
    p = {"spectrum.n_points": 10, "serialize.int_digits": 1, "serialize.precision": 2, "serialize.digit_sep": "|",
         "train.epochs": 2, "ablation.lr": [1e-5, 1e-3], "ablation.rank": [4], "ablation.epochs": [1, 3],
         "data.n_train": 100}
    per_spectrum = 60 + 10 * (3 + 2 + 1)  # 3 digits, 2 separators, 1 value separator
    assert preflight.training_tokens(p) == 100 * (2 * 4 + 1 + 3) * per_spectrum
    no_sep = {**p, "serialize.digit_sep": ""}
    assert preflight.training_tokens(no_sep) == 100 * 12 * (60 + 10 * 4)
    shape = preflight.KNOWN_MODELS["Llama-3.1-8B-Instruct"]
    assert preflight.cpu_training_hours(p, shape) > 50 * preflight.cpu_training_hours(p, preflight.KNOWN_MODELS["SmolLM2-135M-Instruct"])
    assert preflight.cpu_training_hours(p, None) is None


@pytest.mark.parametrize("profile", ["smoke", "small"])
def test_no_gpu_passes_the_cpu_profiles_and_says_so(machine, capsys, profile):
    code, text = _run(machine, capsys, "--profile", profile)
    assert code == 0, text
    assert f"the {profile} profile runs on the CPU" in text and "FAIL" not in text


def test_a_t4_under_the_small_profile_is_a_note_and_the_cpu_is_used(machine, capsys):
    machine.state["gpus"] = [T4]
    code, text = _run(machine, capsys, "--profile", "small")
    assert code == 0, text
    assert "note  compute capability" in text and "is not used" in text
    report = preflight.run("small", params=preflight.load_params("small", machine.root / "params.yaml"),
                           root=machine.root)
    assert (report.device, report.dtype) == ("cpu", "fp32")


def test_a_driver_too_old_for_torchs_cuda_fails_with_the_version_to_install(machine, capsys):
    machine.state["gpus"] = [GpuInfo(0, "NVIDIA A100-SXM4-40GB", (8, 0), 40 * GIB, 39 * GIB, "535.104.05", (12, 2))]
    machine.state["torch"] = ("2.13.0", "13.0")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "FAIL  driver" in text and "535.104.05" in text and "CUDA 12.2" in text and ">= 580" in text
    machine.state["torch"] = ("2.13.0+cu128", "12.8")  # a CUDA 12 build runs on that driver
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 0, text


def test_a_cuda_11_driver_fails_even_for_a_cuda_12_build(machine, capsys):
    machine.state["gpus"] = [GpuInfo(0, "NVIDIA A100-SXM4-40GB", (8, 0), 40 * GIB, 39 * GIB, "470.82.01", (11, 4))]
    machine.state["torch"] = ("2.13.0+cu126", "12.6")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2 and "CUDA 11.4" in text and "525.60.13" in text


def test_a_cpu_torch_on_a_gpu_machine_fails_the_paper_profile(machine, capsys):
    machine.state["gpus"] = [A100]
    machine.state["torch"] = ("2.13.0+cpu", None)
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "2.13.0+cpu is a CPU build" in text and "requirements/cuda.lock" in text


def test_too_little_free_gpu_memory_fails_and_suggests_gpus_that_fit(machine, capsys):
    busy = GpuInfo(0, "NVIDIA A100-SXM4-40GB", (8, 0), 40 * GIB, 6 * GIB, "580.82.07", (13, 0))
    machine.state["gpus"] = [busy]
    code, text = _run(machine, capsys, "--profile", "paper", "--stage", "sft")
    assert code == 2
    assert "FAIL  GPU memory" in text and "6.0 GiB free" in text and "other processes use 34.0 GiB" in text
    assert "H100" in text


def test_a_24gb_gpu_is_too_small_for_the_8b_model_and_only_gpus_that_fit_are_suggested(machine, capsys):
    machine.state["gpus"] = [A10]
    code, text = _run(machine, capsys, "--profile", "paper", "--stage", "dpo")
    assert code == 2 and "FAIL  GPU memory" in text and "for dpo" in text and "NVIDIA A10" in text
    fix = text.split("fix:")[-1]
    assert "A100 40GB" in fix and "H100" in fix and "A10/" not in fix and "L4/" not in fix
    machine.state["gpus"] = [GpuInfo(0, "NVIDIA A100-SXM4-40GB", (8, 0), 40 * GIB, 39 * GIB, "580.82.07", (13, 0))]
    assert _run(machine, capsys, "--profile", "paper")[0] == 0  # what it suggested does fit


def test_cuda_visible_devices_empty_means_no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert preflight.query_gpus() == []


def test_nvml_query_reads_name_capability_memory_and_driver_without_torch(monkeypatch):
    """The NVML path, with a fake nvidia-ml-py module standing in for a machine with a T4 and an A100."""
    fake = types.ModuleType("pynvml")
    devices = [("Tesla T4", (7, 5), 15 * GIB, 14 * GIB, "GPU-aaa"), ("NVIDIA A100-SXM4-80GB", (8, 0), 80 * GIB, 70 * GIB, "GPU-bbb")]

    class NVMLError(Exception):
        pass

    calls = []
    fake.NVMLError = NVMLError
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlShutdown = lambda: calls.append("shutdown")
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    fake.nvmlSystemGetCudaDriverVersion = lambda: 12040
    fake.nvmlDeviceGetCount = lambda: len(devices)
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetUUID = lambda h: devices[h][4]
    fake.nvmlDeviceGetName = lambda h: devices[h][0].encode()
    fake.nvmlDeviceGetCudaComputeCapability = lambda h: devices[h][1]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=devices[h][2], free=devices[h][3])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = preflight.query_gpus()
    assert gpus == [GpuInfo(0, "Tesla T4", (7, 5), 15 * GIB, 14 * GIB, "550.54.15", (12, 4), "nvml"),
                    GpuInfo(1, "NVIDIA A100-SXM4-80GB", (8, 0), 80 * GIB, 70 * GIB, "550.54.15", (12, 4), "nvml")]
    assert calls == ["init", "shutdown"]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # what specllm/__init__.py, the Makefile and the image set
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # only the A100, which CUDA then calls device 0
    assert [(g.index, g.name) for g in preflight.query_gpus()] == [(0, "NVIDIA A100-SXM4-80GB")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbb,0")
    assert [g.name for g in preflight.query_gpus()] == ["NVIDIA A100-SXM4-80GB", "Tesla T4"]

    # CUDA's default order is fastest first (the A100 would be CUDA device 0): NVML's PCI order cannot
    # say which GPU "1" is, so the preflight asks torch, which numbers as CUDA does.
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(preflight.DeviceOrderUnknown):
        preflight._query_nvml()
    monkeypatch.setattr(preflight, "_query_torch", lambda: ["asked torch"])
    assert preflight.query_gpus() == ["asked torch"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa")  # UUIDs are unambiguous in either order
    assert [g.name for g in preflight.query_gpus()] == ["Tesla T4"]


def test_importing_specllm_sets_pci_bus_order_for_cuda():
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "CUDA_DEVICE_ORDER"}
    code = "import os, specllm; print(os.environ['CUDA_DEVICE_ORDER'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PCI_BUS_ID"
    env["CUDA_DEVICE_ORDER"] = "FASTEST_FIRST"  # a user's explicit choice stands
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "FASTEST_FIRST"


def test_without_nvml_or_a_cuda_torch_there_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert preflight.query_gpus() == []


def test_hub_check_uses_the_token_of_hf_auth_login(monkeypatch, tmp_path):
    """A user logged in with `hf auth login` (token file, no HF_TOKEN) is authenticated to the hub."""
    constants = pytest.importorskip("huggingface_hub.constants")
    token_file = tmp_path / "token"
    token_file.write_text("hf_fromlogin\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    sent = {}

    def fake_reachable(url, timeout=5.0, headers=None):
        sent.update(url=url, headers=dict(headers or {}))
        return False, "HTTP 403"

    monkeypatch.setattr(preflight, "reachable", fake_reachable)
    assert preflight.hub_token() == "hf_fromlogin"
    ok, detail = preflight.hub_status("meta-llama/Llama-3.1-8B-Instruct", "main")
    assert sent["headers"] == {"Authorization": "Bearer hf_fromlogin"} and not ok
    assert "accept its licence" in detail
    monkeypatch.setenv("HF_TOKEN", "hf_fromenv")  # the environment wins, as in huggingface_hub
    preflight.hub_status("meta-llama/Llama-3.1-8B-Instruct", "main")
    assert sent["headers"] == {"Authorization": "Bearer hf_fromenv"}
    monkeypatch.delenv("HF_TOKEN")
    token_file.unlink()
    ok, detail = preflight.hub_status("meta-llama/Llama-3.1-8B-Instruct", "main")
    assert sent["headers"] == {} and "hf auth login" in detail


def test_preflight_says_which_torch_build_runs(machine, capsys, monkeypatch):
    machine.state["torch"] = ("2.13.0+cpu", None)
    code, text = _run(machine, capsys, "--profile", "smoke")
    assert code == 0 and "ok    torch: 2.13.0+cpu, CPU build (environment from requirements.lock)" in text
    monkeypatch.setenv("SPECLLM_IMAGE", "1")
    machine.state["torch"] = ("2.10.0+cu128", "12.8")
    code, text = _run(machine, capsys, "--profile", "smoke")
    assert "ok    torch: 2.10.0+cu128, CUDA 12.8 build (environment from requirements/cuda.lock)" in text


def test_torch_build_is_read_without_importing_torch():
    version, cuda = preflight.torch_cuda_build()
    import torch

    assert (version, cuda) == (torch.__version__, torch.version.cuda)


# --- weights, data, disk ---------------------------------------------------------------------------


def test_gated_weights_that_the_hub_refuses_fail_with_what_to_do(machine, capsys):
    machine.state["gpus"] = [H100]
    machine.state["hub"] = (False, "HTTP 401 (no HF_TOKEN in the environment)")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert "FAIL  weights" in text and "meta-llama/Llama-3.1-8B-Instruct" in text and "HF_TOKEN" in text


def test_weights_in_models_base_need_no_hub(machine, capsys):
    machine.state["gpus"] = [H100]
    machine.state["hub"] = (False, "cannot reach huggingface.co")
    base = machine.root / "models" / "base"
    base.mkdir(parents=True)
    (base / "specllm_model.json").write_text(json.dumps({"name": "Llama-3.1-8B-Instruct", "source": "hub"}))
    (base / "model.safetensors").write_bytes(b"x")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 0, text
    assert "Llama-3.1-8B-Instruct in models/base" in text


def test_dr16_data_offline_fails(machine, capsys):
    machine.state["gpus"] = [H100]
    machine.state["net"] = (False, "cannot reach skyserver.sdss.org (ConnectionError)")
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2 and "FAIL  data" in text and "specllm data fetch-dr16" in text


def test_too_little_disk_fails(machine, capsys):
    machine.state["gpus"] = [H100]
    machine.state["free"] = 5 * GIB
    code, text = _run(machine, capsys, "--profile", "paper")
    assert code == 2 and "FAIL  disk" in text and "5.0 GiB free" in text


# --- the memory estimate ---------------------------------------------------------------------------


def test_estimate_memory_matches_the_documented_formula():
    n, lora, batch, seq, hidden, layers, vocab = 1_000_000_000, 10_000_000, 2, 512, 2048, 16, 32_000
    t = batch * seq
    sft = (n * 2 + lora * 16 + t * hidden * 2 * (layers + 17) + t * vocab * (2 + 8)) * 1.10 + GIB
    assert estimate_memory(n, "bf16", lora, batch, seq, hidden, layers, "sft", vocab=vocab) == pytest.approx(sft, abs=1)
    t2 = 2 * t
    dpo = (n * 2 + lora * 16 + t2 * hidden * 2 * (layers + 17) + t2 * vocab * (2 + 8) + t2 * vocab * 4) * 1.10 + GIB
    assert estimate_memory(n, "bf16", lora, batch, seq, hidden, layers, "dpo", vocab=vocab) == pytest.approx(dpo, abs=1)
    inf = (n * 2 + lora * 2 + 2 * layers * t * hidden * 2 + 17 * t * hidden * 2 + t * vocab * 4) * 1.10 + GIB
    assert estimate_memory(n, "bf16", lora, batch, seq, hidden, layers, "inference", vocab=vocab) == pytest.approx(inf, abs=1)
    full = (n * 2 + lora * 16 + t * hidden * 2 * 17 * layers) * 1.10 + GIB
    assert estimate_memory(n, "bf16", lora, batch, seq, hidden, layers, "sft",
                           gradient_checkpointing=False) == pytest.approx(full, abs=1)


def test_dpo_holds_a_single_copy_of_the_weights():
    args = dict(dtype="bf16", lora_params=0, batch=1, seq_len=1, hidden=1, layers=1)
    for stage in preflight.STAGE_KINDS:
        more = estimate_memory(2_000_000_000, stage=stage, **args) - estimate_memory(1_000_000_000, stage=stage, **args)
        assert more == pytest.approx(1_000_000_000 * 2 * 1.10, abs=2), stage  # one copy, whatever the stage


def test_estimate_memory_grows_with_batch_sequence_and_precision():
    base = dict(n_params=10**9, lora_params=10**7, batch=4, seq_len=512, hidden=2048, layers=16, stage="sft", vocab=32000)
    m = estimate_memory(dtype="bf16", **base)
    assert estimate_memory(dtype="bf16", **{**base, "batch": 8}) > m
    assert estimate_memory(dtype="bf16", **{**base, "seq_len": 1024}) > m
    assert estimate_memory(dtype="fp32", **base) > m
    assert estimate_memory(dtype="bf16", **{**base, "stage": "dpo"}) > m > estimate_memory(dtype="bf16", **{**base, "stage": "inference"})


@pytest.mark.parametrize("bad", [dict(stage="rlhf"), dict(dtype="fp8x"), dict(batch=-1)])
def test_estimate_memory_refuses_bad_arguments(bad):
    args = dict(n_params=10, dtype="bf16", lora_params=1, batch=1, seq_len=1, hidden=1, layers=1, stage="sft")
    with pytest.raises(ValueError):
        estimate_memory(**{**args, **bad})


def test_the_8b_paper_model_shape_and_lora_size():
    shape = preflight.KNOWN_MODELS["Llama-3.1-8B-Instruct"]
    cfg = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "intermediate_size": 14336,
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}
    assert preflight.ModelShape.from_config(cfg).n_params == shape.n_params == 8_030_261_248
    assert shape.lora_params(16) == 41_943_040  # r=16 on q,k,v,o,gate,up,down: PEFT's count for Llama-3.1-8B
    assert shape.lora_params(8, ["q_proj", "v_proj"]) == 3_407_872  # the paper's rank-8 q/v adapter


def test_default_workloads_follow_the_train_keys_when_params_has_them(machine):
    params = preflight.load_params("paper", machine.root / "params.yaml")
    default = preflight.default_workloads(params, ["sft"], machine.root)[0]
    assert (default.batch, default.lora_params, default.seq_len) == (8, 3_407_872, 576)  # 8192 x 0.07 -> 576
    params.update({"train.batch_size": 2, "train.rank": 16, "train.target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    custom = preflight.default_workloads(params, ["sft"], machine.root)[0]
    assert (custom.batch, custom.lora_params) == (2, 32 * 16 * (8192 + 5120 + 5120 + 8192))
    assert custom.need("bf16") < default.need("bf16")


def test_bf16_is_decided_by_compute_capability():
    assert [preflight.dtype_for(c) for c in [(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), None]] == \
        ["fp32", "fp32", "bf16", "bf16", "bf16", "bf16", "fp32"]


# --- a failing preflight writes nothing ------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failing_preflight_leaves_existing_outputs_untouched(machine, capsys):
    machine.state["gpus"] = [T4]
    for rel, text in {"results/model.json": "{}\n", "results/baseline.json": "{\"k\": 1}\n",
                      "paper/main.pdf": "%PDF-1.5 old\n", "models/base/config.json": "{}\n"}.items():
        (machine.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (machine.root / rel).write_text(text)
    before = _snapshot(machine.root)
    code, _ = _run(machine, capsys, "--profile", "paper")
    assert code == 2
    assert _snapshot(machine.root) == before  # same files, same bytes, same mtimes; params.yaml included


def test_require_stops_a_gpu_stage_before_it_writes(machine, capsys):
    machine.state["gpus"] = [T4]
    out = machine.root / "models" / "adapter" / "adapter_model.safetensors"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"previous adapter")

    def sft_stage() -> None:  # the shape every GPU stage has: preflight first, then load and write
        preflight.require("sft", params=preflight.load_params("paper", machine.root / "params.yaml"),
                          root=machine.root)
        out.write_bytes(b"new adapter")

    with pytest.raises(SystemExit) as exc:
        sft_stage()
    assert exc.value.code == 2
    assert out.read_bytes() == b"previous adapter"
    assert "Tesla T4" in capsys.readouterr().err


def test_require_returns_the_device_and_dtype_for_the_stage(machine, capsys):
    machine.state["gpus"] = [A100]
    w = Workload("inference", 8_030_261_248, 4096, 32, 128_256, 0, 16, 576)
    report = preflight.require("inference", w, params=preflight.load_params("paper", machine.root / "params.yaml"),
                               root=machine.root)
    assert (report.device, report.dtype) == ("cuda", "bf16")
    assert f"needs about {w.need('bf16') / GIB:.1f} GiB" in capsys.readouterr().err


def test_the_specllm_command_has_preflight():
    from specllm import cli

    args = cli.build_parser().parse_args(["preflight", "--profile", "small", "--stage", "dpo"])
    assert (args.profile, args.stage, args.remote) == ("small", "dpo", False)
