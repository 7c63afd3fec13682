"""Stage `evaluate` (one per training run) and `evaluate_base`: redshift accuracy on val and test.

    python -m specllm.stages.evaluate --run NAME     # models/base + the LoRA adapter models/lora/NAME
    python -m specllm.stages.evaluate --run base     # the base model alone

Reads data/serialized/{val,test}.jsonl (chat-formatted prompts) and data/prepared/{split}_meta.csv
(z_bin); decodes greedily in left-padded batches (evaluate.batch_size, evaluate.max_new_tokens;
evaluate.constrained limits the output to a number written like the training targets,
e.g. "Redshift: 0.123", read from data/serialized/train.jsonl); parses
"Redshift: <number>". Writes results/eval/<run>.json (per split: counts, unparsed, MAE, NMAD,
outlier fraction, bias, per-bin table; decoding settings; prompts per second) and
results/eval/<run>_predictions.csv (split, gal_id, z_true, z_pred, raw_output, parsed).
Unparseable outputs are counted (n_unparsed) and printed, never dropped silently.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specllm import paths
from specllm.evaluate.run import (
    BASE_RUN,
    EVAL_DIR,
    LORA_DIR,
    check_run_name,
    evaluate_run,
    resolve_stage,
    settings_from_params,
    write_outputs,
)
from specllm.runner import run_main


def main(argv: list[str] | None = None) -> None:
    from specllm import config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help=f"training run name (adapter in {paths.rel(paths.LORA)}/NAME), or 'base'")
    parser.add_argument("--adapter", type=Path, default=None, help=f"adapter folder (default {paths.rel(paths.LORA)}/NAME)")
    parser.add_argument("--out", type=Path, default=EVAL_DIR, help=f"output folder (default {paths.rel(EVAL_DIR)})")
    parser.add_argument("--stage", default=None, help="dvc.yaml stage whose params are read (default: see resolve_stage)")
    args = parser.parse_args(argv)
    run = check_run_name(args.run)
    settings = settings_from_params(config.stage_params(args.stage or resolve_stage("evaluate", run)))
    adapter = None if run == BASE_RUN else (args.adapter or LORA_DIR / run)
    from specllm import preflight

    dtype = preflight.require("inference").dtype  # GPU, capability and memory in seconds, before any weights load
    summary, predictions = evaluate_run(run, base_dir=paths.BASE_MODEL, adapter_dir=adapter, serialized=paths.SERIALIZED,
                                        prepared=paths.PREPARED, settings=settings, dtype=dtype)
    json_file, csv_file = write_outputs(summary, predictions, args.out)
    print(f"evaluate {run}: wrote {json_file} and {csv_file}")


if __name__ == "__main__":
    run_main(main)
