"""Stage `demo`: one test galaxy's redshift and a natural-language follow-up, in one chat session.

    python -m specllm.stages.demo [--run NAME]     # default: the best run named in results/ablation.json

Loads models/base + models/lora/<run>, takes the test galaxy at position demo.index of
data/serialized/test.jsonl, asks for its redshift (the evaluation prompt), then asks demo.question
in the same session; greedy, at most demo.max_new_tokens new tokens per answer. The user message
of turn 1 is rebuilt as "{serialize.prompt} {series}" for the chat template (the JSON records
whether it reproduces the evaluation prompt exactly). Writes results/demo.json: the full
transcript (roles and contents, verbatim), the templated chat text, the true and parsed redshift.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specllm import paths
from specllm.errors import InputError
from specllm.evaluate.demo import chat_demo
from specllm.evaluate.generate import load_model
from specllm.evaluate.redshift import read_split
from specllm.evaluate.run import BASE_RUN, LORA_DIR, check_run_name, model_name
from specllm.io import write_json
from specllm.runner import run_main

ABLATION = paths.ABLATION
OUT = paths.DEMO


def best_run(ablation_file: Path) -> str:
    if not ablation_file.is_file():
        raise InputError(ablation_file, "best", "not found", "run the select stage first (`dvc repro select`), or pass --run NAME")
    best = json.loads(ablation_file.read_text()).get("best")
    if not best:
        raise InputError(ablation_file, "best", "no best run recorded", "rerun the select stage")
    return str(best)


def run_demo(run: str, *, base_dir: Path, adapter_dir: Path | None, test_file: Path, index: int, series_prompt: str,
             question: str, max_new_tokens: int, dtype: str | None = None) -> dict:
    records = read_split(test_file)
    if not 0 <= index < len(records):
        raise InputError(paths.PARAMS, "demo.index", f"{index} is outside the test split (0-{len(records) - 1})",
                         "choose a position inside the test split")
    record = records[index]
    if "series" not in record:
        raise InputError(test_file, f"line {index + 1}: series", "missing field", "rerun the serialize stage")
    model, tokenizer = load_model(base_dir, adapter_dir, run, dtype=dtype)
    out = chat_demo(model, tokenizer, record, f"{series_prompt} {record['series']}", question, max_new_tokens=max_new_tokens)
    return {"run": run, "model": model_name(Path(base_dir)),
            "adapter": None if adapter_dir is None else Path(adapter_dir).name, "split": "test", "index": index, **out}


def main(argv: list[str] | None = None) -> None:
    from specllm import config, preflight

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None,
                        help=f"run name (default: the best run in {paths.rel(paths.ABLATION)}); 'base' for no adapter")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    p = config.stage_params("demo")
    run = check_run_name(args.run or best_run(ABLATION))
    adapter = None if run == BASE_RUN else LORA_DIR / run
    result = run_demo(run, base_dir=paths.BASE_MODEL, adapter_dir=adapter, test_file=paths.SERIALIZED / "test.jsonl",
                      index=int(p["demo.index"]), series_prompt=str(p["serialize.prompt"]), question=str(p["demo.question"]),
                      max_new_tokens=int(p["demo.max_new_tokens"]), dtype=preflight.require("inference").dtype)
    write_json(args.out, result)
    for turn in result["transcript"]:
        text = turn["content"] if len(turn["content"]) < 200 else turn["content"][:100] + " ... " + turn["content"][-40:]
        print(f"demo {run}: {turn['role']}: {text}")
    print(f"demo {run}: gal_id {result['gal_id']}, z_true {result['z_true']:.4f}, z_pred {result['z_pred']} -> {args.out}")


if __name__ == "__main__":
    run_main(main)
