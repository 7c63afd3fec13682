"""What every workload shares: the model folder, the spectra as training records, the stability objects,
printing, and running one workload in a fresh subprocess (so peak memory is its own)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from specllm import paths

BASE_DIR = Path(os.environ.get("SPECLLM_BENCH_BASE", "/work/main/models/base"))
TINY = {"hidden": 64, "layers": 2, "heads": 4, "seed": 0}  # params.yaml's model.tiny_*


def model_dir(kind: str, work: Path) -> Path:
    """The model folder: 'tiny' (built into work/tiny once) or 'base' (SmolLM2; models/base or SPECLLM_BENCH_BASE)."""
    if kind == "tiny":
        out = Path(work) / "tiny"
        if not (out / "config.json").is_file():
            from specllm.model.tiny import build_tiny

            build_tiny(out, TINY["hidden"], TINY["layers"], TINY["heads"], TINY["seed"])
        return out
    if kind == "base":
        local = paths.ROOT / "models" / "base"
        return local if (local / "config.json").is_file() else BASE_DIR
    raise ValueError(f"unknown model {kind!r}: tiny or base")


def peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM from /proc/self/status on Linux, else getrusage's ru_maxrss.

    Not ru_maxrss on Linux: it survives fork and execve, so a subprocess started by a parent that held a
    model would report at least the parent's size. VmHWM belongs to the address space execve creates."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def spectra_records(tokenizer, n: int, n_points: int = 48, cfg=None) -> list[dict[str, Any]]:
    """n training records (prompt, target) from the first n galaxies of data/raw, prepared as the prepare
    and serialize stages do (linear grid, rescaling, LLMTime text). Deterministic."""
    import numpy as np

    from specllm.serialize import SerializerConfig, build_example, encode
    from specllm.stages.prepare import linear_grid, load_source, resample, rescale

    cfg = cfg or SerializerConfig()
    meta, loglam, flux, ivar = load_source(paths.ROOT / "data" / "raw")
    wave = linear_grid(3850.0, 9150.0, n_points)
    lin = resample(loglam, np.asarray(flux[:n], dtype=np.float64), np.asarray(ivar[:n]), wave)
    scaled, _ = rescale(lin, 0.95, 5.0)
    out = []
    for k in range(n):
        rec = build_example(encode(scaled[k], cfg).text, float(meta["z"].iloc[k]), cfg, tokenizer)
        out.append({"gal_id": int(meta["gal_id"].iloc[k]), "z": float(meta["z"].iloc[k]), **rec})
    return out


def write_records(records: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stability_objects(n_per_class: int, n_orders: int, seed: int = 0):
    """(objects, orders) drawn as the stability_sample stage draws them, from data/raw/catalogue.csv."""
    import pandas as pd

    from specllm.stability.features import make_orders, sample_objects

    file = paths.ROOT / "data" / "raw" / "catalogue.csv"
    objects = sample_objects(pd.read_csv(file, dtype={"obj_id": str}), n_per_class, 0.5, seed, file)
    return objects, make_orders(n_orders, seed)


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def run_isolated(workload: str, args: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run `specllm.bench.<workload>.isolated(**args)` in a fresh Python process and return its JSON result
    (it reports its own peak RSS, untouched by anything this process loaded)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "specllm.bench.isolated", workload, json.dumps(args), str(out)]
    try:
        subprocess.run(cmd, check=True, env=env, timeout=timeout)
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
