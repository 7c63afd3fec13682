"""One evaluation run: decode a run's (or the base model's) redshifts on val and test and score them.

The library behind the `evaluate` stages (specllm.stages.evaluate is only their main()), also used by
the retention and demo stages (run names, the LoRA folder, the model's name) and by bench.pilot.
evaluate_run reads data/serialized/{split}.jsonl and data/prepared/{split}_meta.csv, decodes greedily
(constrained to the training targets' number format when asked) and returns the summary written to
results/eval/<run>.json with its predictions frame (write_outputs writes both).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from specllm import paths
from specllm.errors import InputError
from specllm.evaluate import redshift
from specllm.evaluate.generate import greedy_generate, load_model
from specllm.evaluate.parse import PATTERN, target_grammar
from specllm.io import sha256_file, write_json

EVAL_DIR = paths.EVAL
LORA_DIR = paths.LORA
BASE_RUN = "base"
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def check_run_name(run: str) -> str:
    if not RUN_NAME.match(run) or run.endswith("_predictions"):
        raise InputError("--run", run, "not a valid run name (letters, digits, '_', '.', '+', '-'; no '/')",
                         f"use the run's folder name under {paths.rel(paths.LORA)}/")
    return run


def resolve_stage(kind: str, run: str, dvc_yaml: Path | None = None) -> str:
    """The dvc.yaml stage whose declared params this run reads, mirroring the training stages:
    `<kind>_base` for base, `<kind>_<axis>` for a run named `<axis>-<value>` (train_lr -> lr-0.001),
    `<kind>_<run>` (e.g. evaluate_default), else plain `<kind>`; the first that dvc.yaml defines."""
    from ruamel.yaml import YAML

    dvc_yaml = Path(dvc_yaml or paths.DVC_YAML)
    candidates = [f"{kind}_base"] if run == BASE_RUN else [f"{kind}_{run.split('-', 1)[0]}", f"{kind}_{run}"]
    candidates += [kind, f"{kind}_default", f"{kind}_base"]
    if dvc_yaml.is_file():
        stages = (YAML(typ="safe").load(dvc_yaml.read_text()) or {}).get("stages", {})
        for name in candidates:
            if name in stages:
                return name
    return candidates[0]


def model_name(base_dir: Path) -> str:
    prov = base_dir / "specllm_model.json"
    if prov.is_file():
        return str(json.loads(prov.read_text()).get("name") or base_dir.name)
    return base_dir.name


def settings_from_params(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"batch_size": int(p["evaluate.batch_size"]), "max_new_tokens": int(p["evaluate.max_new_tokens"]),
            "constrained": bool(p["evaluate.constrained"])}


def evaluate_run(run: str, *, base_dir: Path, adapter_dir: Path | None, serialized: Path, prepared: Path,
                 settings: Mapping[str, Any], splits=redshift.SPLITS, log=print,
                 dtype: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Predict every split, score it; return (summary for <run>.json, predictions frame)."""
    records = {s: redshift.read_split(Path(serialized) / f"{s}.jsonl") for s in splits}  # all inputs before the model
    grammar = None
    if settings["constrained"]:  # the number format the model was trained to write (train targets, never test)
        train_file = Path(serialized) / "train.jsonl"
        try:
            grammar = target_grammar(r["target"] for r in redshift.read_split(train_file))
        except (KeyError, ValueError) as exc:
            raise InputError(train_file, "target", str(exc), "rebuild it with `dvc repro serialize`") from exc
    model, tokenizer = load_model(base_dir, adapter_dir, run, dtype=dtype)
    frames, summary_splits, seconds, n_prompts = [], {}, 0.0, 0
    for split in splits:
        recs = records[split]
        t0 = time.perf_counter()
        every = max(1, len(recs) // 5)

        def progress(done: int, total: int, split=split, t0=t0, every=every) -> None:
            if done == total or done // every != (done - settings["batch_size"]) // every:
                log(f"evaluate {run}: {split}: {done}/{total} prompts, {time.perf_counter() - t0:.0f} s")

        outputs = greedy_generate(model, tokenizer, [r["prompt"] for r in recs],
                                  max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                                  constrained=settings["constrained"], grammar=grammar or (1, 3), progress=progress)
        dt = time.perf_counter() - t0
        seconds, n_prompts = seconds + dt, n_prompts + len(recs)
        df = redshift.predictions_frame(split, recs, outputs)
        summary_splits[split] = redshift.summarize(df, redshift.read_meta(prepared, split))
        frames.append(df)
        s = summary_splits[split]
        mae = f"{s['mae']:.4f}" if s["mae"] is not None else "n/a"
        log(f"evaluate {run}: {split}: {s['n']} galaxies, {s['n_unparsed']} unparseable outputs "
            f"(excluded from the metrics), MAE {mae} over {s['n_parsed']}; {len(recs) / dt:.2f} prompts/s")
        if s["n_unparsed"]:
            example = df.loc[~df["parsed"], "raw_output"].iloc[0]
            log(f"evaluate {run}: {split}: first unparseable output: {example[:80]!r}")
    summary = {
        "run": run,
        "model": model_name(Path(base_dir)),
        "adapter": None if adapter_dir is None else Path(adapter_dir).name,
        "adapter_sha256": None if adapter_dir is None else sha256_file(Path(adapter_dir) / "adapter_model.safetensors"),
        "decoding": {"method": "constrained greedy" if settings["constrained"] else "greedy",
                     "batch_size": settings["batch_size"], "max_new_tokens": settings["max_new_tokens"],
                     "number_format": None if grammar is None else {"int_digits": grammar[0], "decimals": grammar[1]},
                     "padding": "left", "parse_pattern": PATTERN.pattern},
        "splits": summary_splits,
        "timing": {"seconds": round(seconds, 3), "prompts": n_prompts,
                   "prompts_per_s": round(n_prompts / seconds, 4) if seconds > 0 else None,
                   "device": str(next(model.parameters()).device)},
    }
    return summary, pd.concat(frames, ignore_index=True)


def write_outputs(summary: Mapping[str, Any], predictions: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_file, csv_file = out_dir / f"{summary['run']}.json", out_dir / f"{summary['run']}_predictions.csv"
    tmp = csv_file.with_name(f".{csv_file.name}.tmp")
    predictions.to_csv(tmp, index=False, float_format="%.6f")
    tmp.replace(csv_file)
    write_json(json_file, summary)
    return json_file, csv_file
