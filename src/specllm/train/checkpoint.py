"""Resumable checkpoints: adapter, optimizer, scheduler, every process's RNG states, data position.

A checkpoint is a folder `<root>/step-0000020/` built in a temporary sibling and renamed into place
(io.atomic_dir), so a process killed while writing leaves the previous checkpoint intact and no torn
one; after a new one is in place the older ones are deleted. `state.json` holds the position (epoch,
next batch, optimizer step), the loss history so far, the number of processes and a fingerprint
of the settings, data and model; a checkpoint resumes only a run with the same fingerprint.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from specllm.io import atomic_dir, json_text

STEP_DIR = re.compile(r"^step-(\d+)$")
ADAPTER, OPTIMIZER, SCHEDULER, RNG, STATE = "adapter.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, NumPy's global, Python's), loadable with weights_only."""
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)), int(pos),
                  int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))


def trainable_state(model) -> dict[str, Any]:
    """The trainable tensors (the adapter) by parameter name, detached CPU copies."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under root, oldest first (temporary folders of an interrupted write are skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def save(root: str | Path, step: int, model, optimizer, scheduler, rng_states: list[dict[str, Any]],
         state: dict[str, Any]) -> Path:
    """Write checkpoint `step` atomically, then delete the older ones (and leftovers of interrupted writes)."""
    import torch
    from safetensors.torch import save_file

    root = Path(root)
    out = root / f"step-{step:07d}"
    with atomic_dir(out) as tmp:
        save_file(trainable_state(model), str(tmp / ADAPTER))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER)
        torch.save(rng_states, tmp / RNG)
        (tmp / STATE).write_text(json_text({**state, "step": step}))
    for p in root.iterdir():
        if p != out and (STEP_DIR.match(p.name) or p.name.startswith(".step-")):
            shutil.rmtree(p, ignore_errors=True)
    return out


def read_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE).read_text())


def load(folder: str | Path, model, optimizer, scheduler, device) -> list[dict[str, Any]]:
    """Restore adapter, optimizer and scheduler from a checkpoint folder; return the per-process RNG states."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    tensors = load_file(str(folder / ADAPTER))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing or set(tensors) - set(params):
        raise ValueError(f"checkpoint {folder} does not match the adapter (missing {missing[:3]}...)")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER, map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(folder / SCHEDULER, weights_only=True))
    return torch.load(folder / RNG, weights_only=True)
