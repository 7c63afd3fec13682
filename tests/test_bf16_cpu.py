"""The GPU's dtype path without a GPU: the smoke pipeline with SPECLLM_FORCE_BF16=1, so that training,
evaluation, retention, the demo, the stability probe, DPO and the re-probe all load and compute in bf16
on the CPU, as they do on an Ampere-or-newer GPU. A dtype mismatch (fp32 inputs to bf16 weights, a
bf16 tensor into NumPy, a bf16-only overflow or NaN) fails here instead of on a rented GPU."""

from __future__ import annotations

import json
import os

import pytest
from conftest import VENV, fresh_copy, run_in

from specllm import preflight


def test_one_bf16_policy_forced_on_the_cpu(monkeypatch):
    torch = pytest.importorskip("torch")
    from specllm.precision import choose_device_dtype

    monkeypatch.delenv(preflight.FORCE_BF16_ENV, raising=False)
    if not torch.cuda.is_available():
        assert choose_device_dtype() == (torch.device("cpu"), torch.float32)
    assert preflight.dtype_for(None) == "fp32" and preflight.dtype_for((7, 5)) == "fp32"
    monkeypatch.setenv(preflight.FORCE_BF16_ENV, "1")
    assert preflight.dtype_for(None) == "bf16" and preflight.dtype_for((7, 5)) == "bf16"
    if not torch.cuda.is_available():
        assert choose_device_dtype() == (torch.device("cpu"), torch.bfloat16)
        report = preflight.run("smoke", ["inference"])
        assert report.ok and report.device == "cpu" and report.dtype == "bf16"
        assert "SPECLLM_FORCE_BF16=1" in report.text()


@pytest.mark.slow
@pytest.mark.timeout(3600)  # bf16 on a CPU is emulated in part: slower than the fp32 smoke run
def test_smoke_pipeline_in_bf16_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv(preflight.FORCE_BF16_ENV, "1")
    repo = fresh_copy(tmp_path / "specllm")
    proc = run_in(["make", "reproduce", "PROFILE=smoke", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo,
                  check=False)
    log = proc.stdout + proc.stderr
    (tmp_path / "reproduce.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    assert (repo / "paper" / "main.pdf").is_file()
    # Training (train.json) and evaluation ran in bf16; every preflight-gated stage was told bf16.
    trains = list((repo / "results").rglob("train.json"))
    assert trains and all(json.loads(p.read_text())["dtype"] == "bfloat16" for p in trains), trains
    assert "in bf16" in log and "on the CPU in fp32" not in log
    for stage in ("train_default", "evaluate_default", "retention_default", "demo", "stability_probe", "stability_dpo",
                  "stability_reprobe"):
        assert f"Running stage '{stage}'" in log, stage
    assert os.environ.get(preflight.FORCE_BF16_ENV) == "1"
