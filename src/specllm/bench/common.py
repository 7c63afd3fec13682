"""What every workload shares: the model folder, the spectra as training records, the stability objects,
printing, and running one workload in a fresh subprocess (so peak memory is its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from specllm import paths

BASE_DIR = Path(os.environ.get("SPECLLM_BENCH_BASE", "/work/main/models/base"))
TINY = {"hidden": 64, "layers": 2, "heads": 4, "seed": 0}  # params.yaml's model.tiny_*


# Random-weight models of a real model's shapes, for throughput and memory (which do not depend on the
# weights' values) on a machine that cannot download or carry the weights: the config.json values of
# SmolLM2-135M-Instruct and of Llama-3.1-8B-Instruct (with fewer layers: random-llama8b-L<n>).
RANDOM_SHAPES = {
    "random-smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                           num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                           rms_norm_eps=1e-5, max_position_embeddings=8192),
    "random-llama8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0,
                           rms_norm_eps=1e-5, max_position_embeddings=8192),
}
MODEL_KINDS = ("tiny", "base", "random-smollm2", "random-llama8b-L<n>")


def build_random(kind: str, out: Path, seed: int = 0) -> Path:
    """A seeded random Llama of RANDOM_SHAPES[kind] (kind 'random-llama8b-L4': 4 of Llama-3.1-8B's layers)
    in bf16 with the project's character tokenizer (specllm.model.tiny: no download; its ids are a
    subset of the vocabulary, so the embedding and LM head keep the real model's size)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from specllm.model.tiny import CHAT_TEMPLATE, build_tokenizer

    name, _, layers = kind.partition("-L")
    if name not in RANDOM_SHAPES or (layers and not layers.isdigit()):
        raise ValueError(f"unknown model {kind!r}: one of {', '.join(MODEL_KINDS)}")
    shape = dict(RANDOM_SHAPES[name], **({"num_hidden_layers": int(layers)} if layers else {}))
    config = LlamaConfig(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # initialising 8B-wide layers on a CPU takes minutes
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    del model
    return out


def model_dir(kind: str, work: Path) -> Path:
    """The model folder: 'tiny' (built into work/tiny once), 'base' (SmolLM2; models/base or
    SPECLLM_BENCH_BASE), or a random model of a real one's shapes (build_random, into work/<kind> once)."""
    if kind == "tiny":
        out = Path(work) / "tiny"
        if not (out / "config.json").is_file():
            from specllm.model.tiny import build_tiny

            build_tiny(out, TINY["hidden"], TINY["layers"], TINY["heads"], TINY["seed"])
        return out
    if kind == "base":
        local = paths.BASE_MODEL
        return local if (local / "config.json").is_file() else BASE_DIR
    if kind.startswith("random-"):
        out = Path(work) / kind
        return out if (out / "config.json").is_file() else build_random(kind, out)
    raise ValueError(f"unknown model {kind!r}: one of {', '.join(MODEL_KINDS)}")


def raw_dir() -> Path | None:
    """data/raw when it has been built here (make data), else None: the bench then draws synthetic spectra
    and objects (a GPU check on a machine with only the code: token counts and shapes are what matter)."""
    return paths.RAW if paths.MANIFEST.is_file() else None


def spectra_records(tokenizer, n: int, n_points: int = 48, cfg=None) -> list[dict[str, Any]]:
    """n training records (prompt, target) from the first n galaxies of data/raw, prepared as the prepare
    and serialize stages do (linear grid, rescaling, LLMTime text); synthetic spectra of the same form
    when data/raw is not there (raw_dir). Deterministic."""
    import numpy as np

    from specllm.serialize import SerializerConfig, build_example, encode

    cfg = cfg or SerializerConfig()
    raw = raw_dir()
    if raw is None:  # smooth synthetic spectra already on the linear grid, in the rescaled range
        rng = np.random.default_rng(0)
        x = np.linspace(-1.0, 1.0, n_points)
        scaled = 2.5 + rng.uniform(-1, 1, (n, 1)) * x + 0.3 * np.sin(rng.uniform(2, 9, (n, 1)) * x) \
            + rng.normal(0, 0.05, (n, n_points))
        gal_ids, zs = np.arange(n) + 1000, rng.uniform(0.01, 0.5, n)
    else:
        from specllm.data.prepare import linear_grid, load_source, resample, rescale

        frame, loglam, flux, ivar = load_source(raw)
        wave = linear_grid(3850.0, 9150.0, n_points)
        lin = resample(loglam, np.asarray(flux[:n], dtype=np.float64), np.asarray(ivar[:n]), wave)
        scaled, _ = rescale(lin, 0.95, 5.0)
        gal_ids, zs = frame["gal_id"].to_numpy(), frame["z"].to_numpy()
    out = []
    for k in range(n):
        rec = build_example(encode(scaled[k], cfg).text, float(zs[k]), cfg, tokenizer)
        out.append({"gal_id": int(gal_ids[k]), "z": float(zs[k]), **rec})
    return out


def write_records(records: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stability_objects(n_per_class: int, n_orders: int, seed: int = 0):
    """(objects, orders) drawn as the stability_sample stage draws them, from data/raw/catalogue.csv (a
    synthetic catalogue when data/raw is not there)."""
    import pandas as pd

    from specllm.stability.features import make_orders, sample_objects

    raw = raw_dir()
    if raw is None:  # synthetic photometry of plausible magnitudes; the prompts' form is the real one
        import numpy as np

        rng = np.random.default_rng(seed)
        k = 3 * max(n_per_class, 1)
        frame = pd.DataFrame({"obj_id": [f"X{i:05d}" for i in range(k)], "class": ["STAR", "GALAXY", "QSO"] * (k // 3),
                              **{b: np.round(rng.uniform(15, 22, k), 5) for b in "ugriz"},
                              "redshift": np.round(rng.uniform(0, 3, k), 6)})
        file = "synthetic catalogue"
    else:
        file = raw / "catalogue.csv"
        frame = pd.read_csv(file, dtype={"obj_id": str})
    objects = sample_objects(frame, n_per_class, 0.5, seed, file)
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
