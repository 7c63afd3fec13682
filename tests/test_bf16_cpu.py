"""The GPU's dtype path without a GPU: every stage that loads the model, rerun with SPECLLM_FORCE_BF16=1
so that training, evaluation, retention, the demo, the stability warm-up, probe, DPO and re-probe all load
and compute in bf16 on the CPU, as they do on an Ampere-or-newer GPU; then everything downstream and the
paper. A dtype mismatch (fp32 inputs to bf16 weights, a bf16 tensor into NumPy, a bf16-only overflow or
NaN) fails here instead of on a rented GPU.

It works on a copy of the suite's smoke run (conftest.smoke_repo) and forces only the model-loading
stages, one of each kind (the other six trainings run the same code): a whole second pipeline in bf16
cost 8 minutes of the suite's time, this about a third of it."""

from __future__ import annotations

import json
import os

import pytest
from conftest import VENV, copy_run, run_in

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


# One stage of each kind that loads the model (preflight-gated: each is told its dtype), in pipeline order.
BF16_STAGES = ("train_default", "evaluate_default", "retention_default", "demo", "stability_warmup",
               "stability_probe", "stability_dpo", "stability_reprobe")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # bf16 on a CPU is emulated in part: slower than fp32
def test_model_stages_and_the_paper_in_bf16_on_the_cpu(smoke_repo, tmp_path, monkeypatch):
    monkeypatch.setenv(preflight.FORCE_BF16_ENV, "1")
    repo = copy_run(smoke_repo, tmp_path / "specllm")
    log = run_in([str(VENV / "bin" / "specllm"), "preflight", "--profile", "smoke"], repo).stdout
    for stage in BF16_STAGES:
        proc = run_in(["dvc", "repro", "--force", "--single-item", stage], repo, check=False)
        log += proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{stage}:\n{(proc.stdout + proc.stderr)[-6000:]}"
    proc = run_in(["dvc", "repro"], repo, check=False)  # what reads their outputs, the paper last
    log += proc.stdout + proc.stderr
    (tmp_path / "reproduce.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    assert "Running stage 'paper'" in log and (repo / "paper" / "main.pdf").is_file()
    # Training ran in bf16 (train.json); every preflight-gated stage was told bf16, none fp32.
    assert json.loads((repo / "results" / "train" / "default" / "train.json").read_text())["dtype"] == "bfloat16"
    assert "in bf16" in log and "on the CPU in fp32" not in log
    for stage in BF16_STAGES:
        assert f"Running stage '{stage}'" in log, stage
    assert run_in(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
    assert os.environ.get(preflight.FORCE_BF16_ENV) == "1"
