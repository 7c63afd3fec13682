"""Two CPU processes (torchrun, gloo, DistributedDataParallel) train the same adapter as one process
at the same global batch, up to floating-point summation order.

Tolerance: |difference| <= 1e-6 absolute (+ 1e-4 relative) on every adapter weight (typical weights
~1e-1; measured differences ~2e-8). LoRA dropout is 0 here: with dropout, each process draws its own
masks, so the runs agree in distribution only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from test_train import QUIET, make_project, read_adapter, run_paths, stage_env

TOLERANCE = {"atol": 1e-6, "rtol": 1e-4}


def launched(project) -> list[psutil.Process]:
    """The processes running this project's launch_train.py: torch's elastic agent starts each worker in a session
    of its own, so signalling torchrun's process group misses them, and one left alive holds the output pipe open
    (a test that waited on it would never end)."""
    script = str(project / "launch_train.py")
    return [p for p in psutil.process_iter(["cmdline"]) if script in (p.info["cmdline"] or [])]


def signal_all(proc: subprocess.Popen, project, sig: int) -> None:
    """sig to torchrun's process group and to every worker of this project."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    for worker in launched(project):
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(sig)


def run_or_dump_stacks(cmd: list[str], project, timeout: float) -> tuple[int, str]:
    """Run cmd; if it is still running after timeout seconds, send SIGABRT to torchrun and both workers
    (PYTHONFAULTHANDLER=1) so that each prints the stack of each of its threads, and return that output: a hang
    fails with where it hung, not only that it did. One CI run timed out after the workers had written their
    results, and on 2026-12-02 a worker hung at exit: its main thread freeing DDP's Reducer, which joined gloo's
    threads under the GIL while one of them waited for the GIL (train/loop.py now frees DDP first)."""
    env = {**stage_env(project), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        signal_all(proc, project, signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            signal_all(proc, project, signal.SIGKILL)
            out, _ = proc.communicate()
        return -1, f"HUNG after {timeout} s; stacks:\n{out}"


@pytest.mark.slow  # three Python processes importing torch: ~25-50 s on 2 busy cores
def test_two_processes_match_one(tmp_path):
    import torch

    from specllm import config
    from specllm.train.loop import train
    from specllm.train.settings import TrainSettings

    project = make_project(tmp_path / "proj", n=40, dropout=0.0, lr=1.0e-2, epochs=2, batch_size=8,
                           checkpoint_every=4, warmup_ratio=0.0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(project / "launch_train.py"), "--run-name", "ddp"]
    returncode, out = run_or_dump_stacks(cmd, project, timeout=240)
    assert returncode == 0, out[-6000:]
    summary = json.loads((project / "results" / "train" / "ddp" / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["per_process_batch"] == 4 and summary["steps"] == 10
    assert summary["complete"]

    params = config.load(project / "params.yaml")
    single = TrainSettings.from_params(params, run="single")
    train(single, **run_paths(project, "single"), **QUIET)
    a = read_adapter(project / "models" / "lora" / "ddp")
    b = read_adapter(project / "models" / "lora" / "single")
    assert a.keys() == b.keys()
    init_b = {k: v for k, v in b.items() if "lora_B" in k}
    assert all(v.abs().max() > 1e-3 for v in init_b.values())  # trained away from B = 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], **TOLERANCE)
    single_loss = (project / "results" / "train" / "single" / "loss.csv").read_text().splitlines()
    ddp_loss = (project / "results" / "train" / "ddp" / "loss.csv").read_text().splitlines()
    assert len(single_loss) == len(ddp_loss) == 11
    for s_row, d_row in zip(single_loss[1:], ddp_loss[1:]):
        assert float(s_row.split(",")[2]) == pytest.approx(float(d_row.split(",")[2]), rel=1e-5)
