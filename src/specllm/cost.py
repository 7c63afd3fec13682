"""What each DVC stage run cost: wall time, CPU time, peak memory, GPU memory and the hardware.

runner.run_main (every stage's entry point) wraps the stage in `record()`. When the process runs
under DVC (DVC sets $DVC_STAGE to the stage's address, e.g. `train_lr@1e-05`), it writes
`results/cost/<address>.json` below the working directory after the stage finished successfully.
The working directory, not $DVC_ROOT: DVC runs every command in its stage's folder (the project
root here), while a queued experiment (`dvc exp run --queue`) runs in a temporary copy whose
$DVC_ROOT still names the original repository, so the record would land there and the
experiment's own output would be missing. Run by hand
(tests, `python -m specllm.stages.x`) it writes nothing, so no stray, untracked record appears.

dvc.yaml declares each record as a `metrics:` output (cache: true) of its stage, so:
  * `dvc metrics show` / `dvc metrics diff` list the cost of every stage between runs/profiles;
  * a stage restored from the run cache restores the record of the run that made its outputs
    (the cost it would take to recompute them), so a no-op `dvc repro` changes nothing.
The records are the only stage outputs that are not deterministic (times); `specllm verify`
never compares them, and values.json never contains them.

The `provenance` and `paper` stages write theirs to results/cost_final/ instead: provenance
renders the per-stage cost table from results/cost/ and the paper depends on provenance, so their
own records must lie outside the folder provenance depends on (else DVC sees a cycle).

Record schema (JSON, sorted keys):
    stage        DVC address ("train_lr@1e-05")
    wall_s       wall-clock seconds of main()
    cpu_s        user + system CPU seconds of the process and its waited-for children
    peak_rss_mib peak resident memory of the process (specllm.machine.peak_rss_bytes: VmHWM; children: the largest child, listed apart)
    peak_rss_children_mib
    cuda_max_allocated_mib  torch.cuda.max_memory_allocated summed over devices (null: no CUDA used)
    gpus         names of the CUDA devices the process used ([] on CPU)
    world_size   processes of a torchrun job (1 otherwise); only rank 0 writes the record
    gpu_hours    wall_s / 3600 x len(gpus) x world_size  (what a GPU rental bills)
    cpu_hours    cpu_s / 3600               (what CPU runs cost)
    hardware     {cpu, usable_cores, torch_threads}
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from specllm import machine, paths

COST_DIR = paths.rel(paths.COST)
FINAL_COST_DIR = paths.rel(paths.COST_FINAL)
# Stages downstream of `provenance` (which reads results/cost/): their records go to FINAL_COST_DIR.
FINAL_STAGES = frozenset({"provenance", "paper"})


def record_path(stage: str, root: str | Path) -> Path:
    """Where the record of DVC stage `stage` (its address) goes below the project root."""
    base = stage.split("@", 1)[0]
    folder = FINAL_COST_DIR if base in FINAL_STAGES else COST_DIR
    return Path(root) / folder / f"{stage}.json"


def _mib(kib: int) -> float:
    return round(kib / 1024.0, 1)  # Linux reports ru_maxrss in KiB


def _cuda() -> tuple[float | None, list[str]]:
    """(max allocated MiB summed over devices, device names), only when the stage itself imported
    torch and initialised CUDA (never imports torch: a data stage stays fast)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None, []
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None, []
        n = torch.cuda.device_count()
        alloc = [torch.cuda.max_memory_allocated(i) for i in range(n)]
        used = [i for i in range(n) if alloc[i] > 0] or list(range(n))
        return round(sum(alloc) / 2**20, 1), [torch.cuda.get_device_name(i) for i in used]
    except Exception:  # a broken CUDA setup must not fail a stage that already succeeded
        return None, []


def hardware() -> dict[str, Any]:
    cpu = machine.cpu_info()
    torch = sys.modules.get("torch")
    return {"cpu": cpu["model"], "usable_cores": cpu["usable_cores"],
            "torch_threads": torch.get_num_threads() if torch is not None else None}


def measure(stage: str, wall_s: float, cpu0: tuple[float, float], world_size: int = 1) -> dict[str, Any]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) - (cpu0[0] + cpu0[1])
    cuda_mib, gpus = _cuda()
    return {
        "stage": stage,
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "peak_rss_mib": round(machine.peak_rss_bytes() / 2**20, 1),
        "peak_rss_children_mib": _mib(kids.ru_maxrss),
        "cuda_max_allocated_mib": cuda_mib,
        "gpus": gpus,
        "world_size": world_size,
        "gpu_hours": round(wall_s / 3600.0 * len(gpus) * world_size, 6),
        "cpu_hours": round(cpu_s / 3600.0, 6),
        "hardware": hardware(),
    }


@contextmanager
def record(environ: dict[str, str] | None = None):
    """Measure the block; on success, write the record when running under DVC (see module doc)."""
    env = os.environ if environ is None else environ
    stage = env.get("DVC_STAGE")
    t0 = time.perf_counter()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = (me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime)
    yield
    if not stage or env.get("SPECLLM_COST") == "0" or int(env.get("RANK", 0)) != 0:
        return
    from specllm.io import write_json

    world = int(env.get("WORLD_SIZE", 1))  # torchrun: one record for the job, from rank 0
    write_json(record_path(stage, Path.cwd()), measure(stage, time.perf_counter() - t0, cpu0, world))


def run_recorded(main: Callable[[], Any]) -> Any:
    with record():
        return main()
