"""The GPU's dtype path without a GPU: every stage that loads the model, rerun with SPECLLM_FORCE_BF16=1
so that training, evaluation, retention, the demo, the stability warm-up, probe, DPO and re-probe all load
and compute in bf16 on the CPU, as they do on an Ampere-or-newer GPU; then everything downstream and the
paper. A dtype mismatch (fp32 inputs to bf16 weights, a bf16 tensor into NumPy, a bf16-only overflow or
NaN) fails here instead of on a rented GPU.

It reads conftest.bf16_run: a copy of the suite's smoke run (conftest.smoke_repo) whose model-loading
stages, one of each kind (the other six trainings run the same code), were forced in bf16 beside the other
tests (conftest.recomputations): a whole second pipeline in bf16 cost 8 minutes of the suite's time."""

from __future__ import annotations

import json

import pytest
from conftest import BF16_STAGES, run_in

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
def test_model_stages_and_the_paper_in_bf16_on_the_cpu(bf16_run):
    log = (bf16_run.parent / "preflight.log").read_text() + (bf16_run.parent / "recompute.log").read_text()
    assert "Running stage 'paper'" in log and (bf16_run / "paper" / "main.pdf").is_file()
    # Training ran in bf16 (train.json); every preflight-gated stage was told bf16, none fp32.
    assert json.loads((bf16_run / "results" / "train" / "default" / "train.json").read_text())["dtype"] == "bfloat16"
    assert "in bf16" in log and "on the CPU in fp32" not in log
    for stage in BF16_STAGES:
        assert f"Running stage '{stage}'" in log, stage
    assert run_in(["dvc", "status"], bf16_run).stdout.strip() == "Data and pipelines are up to date."
