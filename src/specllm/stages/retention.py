"""Stage `retention` (one per training run): does the adapted model still know what the base model knew?

    python -m specllm.stages.retention --run NAME [--probes PATH]

Scores the base model and the adapted model (models/base + models/lora/NAME; the base scores come
from the same loaded model with the adapter disabled) on the same multiple-choice items: every
*.jsonl in the probe folder (retention.probes, default data/probes: science.jsonl and
general.jsonl, written for this project; the paper profile can point at ARC/SciQ/MMLU converted
with `python -m specllm.evaluate.probes`). Option log-likelihood as lm-evaluation-harness scores it
(acc and length-normalised acc_norm). Retention = adapted accuracy / base accuracy with a seeded
paired bootstrap 95% CI (retention.n_boot draws, params `seed`). retention.max_items > 0 scores a
seeded random subset of that many items per set (large benchmarks on a CPU); 0 scores all.

Writes results/retention/<run>.json and results/retention/<run>_items.csv (per item: set, id,
topic, answer, both models' choices). `--run base` scores the base model alone (retention 1).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import paths
from specllm.evaluate import loglik, probes
from specllm.evaluate.generate import load_model
from specllm.evaluate.retention import summarize_set
from specllm.evaluate.run import BASE_RUN, LORA_DIR, check_run_name, model_name, resolve_stage
from specllm.io import sha256_file, write_json
from specllm.runner import run_main

RETENTION_DIR = paths.RETENTION


def settings_from_params(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"probes": str(p["retention.probes"]), "batch_size": int(p["retention.batch_size"]),
            "n_boot": int(p["retention.n_boot"]), "max_items": int(p["retention.max_items"]), "seed": int(p["seed"])}


def subsample(items: list[dict], max_items: int, seed: int, name: str) -> list[dict]:
    if max_items <= 0 or len(items) <= max_items:
        return items
    rng = np.random.default_rng([seed, sum(name.encode())])
    keep = np.sort(rng.choice(len(items), size=max_items, replace=False))
    return [items[i] for i in keep]


def retention_run(run: str, *, base_dir: Path, adapter_dir: Path | None, probe_path: Path, settings: Mapping[str, Any],
                  log=print, dtype: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score both models on every probe set; return (summary for <run>.json, per-item frame)."""
    sets = {name: subsample(items, settings["max_items"], settings["seed"], name)
            for name, items in probes.load_probes(probe_path).items()}  # validate every file before the model loads
    model, tokenizer = load_model(base_dir, adapter_dir, run, dtype=dtype)
    summary_sets, frames = {}, []
    t0 = time.perf_counter()
    for name, items in sets.items():
        if adapter_dir is not None:
            with model.disable_adapter():
                base = loglik.score_items(model, tokenizer, items, batch_size=settings["batch_size"])
            adapted = loglik.score_items(model, tokenizer, items, batch_size=settings["batch_size"])
        else:
            base = adapted = loglik.score_items(model, tokenizer, items, batch_size=settings["batch_size"])
        s = summarize_set(items, base, adapted, n_boot=settings["n_boot"], seed=settings["seed"])
        files = sorted(Path(probe_path).glob(f"{name}.jsonl")) if Path(probe_path).is_dir() else [Path(probe_path)]
        s["file_sha256"] = sha256_file(files[0]) if files else None
        summary_sets[name] = s
        r = s["retention"]["acc"]
        ci = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r["ci_low"] is not None else "[n/a]"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "n/a"
        log(f"retention {run}: {name}: {len(items)} items, base acc {s['base']['acc']:.3f}, adapted acc "
            f"{s['adapted']['acc']:.3f}, retention {ratio} {ci}; acc_norm {s['base']['acc_norm']:.3f} -> "
            f"{s['adapted']['acc_norm']:.3f}")
        frames.append(pd.DataFrame({
            "set": name, "id": [it["id"] for it in items], "topic": [it["topic"] for it in items],
            "answer": [it["answer"] for it in items],
            "base_pred": base["pred"], "adapted_pred": adapted["pred"],
            "base_pred_norm": base["pred_norm"], "adapted_pred_norm": adapted["pred_norm"],
        }))
    summary = {
        "run": run, "model": model_name(Path(base_dir)),
        "adapter": None if adapter_dir is None else Path(adapter_dir).name,
        "probes": paths.shown(probe_path), "sets": summary_sets,
        "scoring": {"context": loglik.CONTEXT, "delimiter": loglik.DELIMITER, "special_tokens": False,
                    "acc": "argmax of summed option log-likelihood",
                    "acc_norm": "argmax of summed log-likelihood / option length in characters"},
        "settings": {k: settings[k] for k in ("batch_size", "n_boot", "max_items", "seed")},
        "timing": {"seconds": round(time.perf_counter() - t0, 3)},
    }
    return summary, pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    from specllm import config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help=f"training run name (adapter in {paths.rel(paths.LORA)}/NAME), or 'base'")
    parser.add_argument("--adapter", type=Path, default=None, help=f"adapter folder (default {paths.rel(paths.LORA)}/NAME)")
    parser.add_argument("--probes", type=Path, default=None, help="probe JSONL file or folder (default retention.probes)")
    parser.add_argument("--out", type=Path, default=RETENTION_DIR, help=f"output folder (default {paths.rel(RETENTION_DIR)})")
    parser.add_argument("--stage", default=None, help="dvc.yaml stage whose params are read (default: see resolve_stage)")
    args = parser.parse_args(argv)
    run = check_run_name(args.run)
    settings = settings_from_params(config.stage_params(args.stage or resolve_stage("retention", run)))
    probe_path = args.probes or (paths.ROOT / settings["probes"])
    adapter = None if run == BASE_RUN else (args.adapter or LORA_DIR / run)
    from specllm import preflight

    dtype = preflight.require("inference").dtype  # before any weights load
    summary, items = retention_run(run, base_dir=paths.BASE_MODEL, adapter_dir=adapter, probe_path=probe_path,
                                   settings=settings, dtype=dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_file = args.out / f"{run}_items.csv"
    tmp = csv_file.with_name(f".{csv_file.name}.tmp")
    items.to_csv(tmp, index=False)
    tmp.replace(csv_file)
    write_json(args.out / f"{run}.json", summary)
    print(f"retention {run}: wrote {args.out / f'{run}.json'} and {csv_file}")


if __name__ == "__main__":
    run_main(main)
