"""Stage `train_*`: LoRA fine-tuning of models/base on data/serialized/train.jsonl, one run per call.

    python -m specllm.stages.train --run NAME [--lr X] [--rank R] [--epochs E]
    torchrun --nproc_per_node N -m specllm.stages.train --run-name NAME ...   (several processes / GPUs;
                                          torchrun itself would take `--run` for its `--run-path`)

Every setting comes from params.yaml's `train:` section (and `seed`) through
config.stage_params(<stage>), except the run's own overrides, which come from the command line:
dvc.yaml's `foreach` stages put one ablation value into each stage's `cmd`. The stage whose declared
params are read is `train_default` without overrides, `train_<axis>` with one (`--stage` names it
explicitly).

Writes (run = NAME):
  models/lora/<run>/              the adapter (peft save_pretrained, safetensors)
  results/train/<run>/loss.csv    step, epoch, loss, lr, tokens (a DVC plot)
  results/train/<run>/train.json  trainable/total parameters, steps, tokens/s, padding share, peak memory, ...
  models/lora/<run>.ckpt/         checkpoints while it runs (removed when the run completes); a killed
                                  run restarted with the same command resumes from the last one
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from specllm import paths
from specllm.runner import run_main

OVERRIDES = ("lr", "rank", "epochs")


def run_paths(run: str) -> dict[str, Path]:
    """Where a run reads and writes."""
    return {"model_dir": paths.BASE_MODEL, "train_file": paths.SERIALIZED / "train.jsonl", "out_dir": paths.LORA / run,
            "results_dir": paths.TRAIN_RESULTS / run, "ckpt_dir": paths.LORA / f"{run}.ckpt"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m specllm.stages.train", description=__doc__.splitlines()[0])
    ap.add_argument("--run", "--run-name", dest="run", required=True,
                    help="run name: models/lora/<run>, results/train/<run> (under torchrun write --run-name: "
                         "torchrun's own parser takes --run for an abbreviation of its --run-path)")
    ap.add_argument("--lr", type=float, default=None, help="override train.lr")
    ap.add_argument("--rank", type=int, default=None, help="override train.rank (LoRA r; alpha stays train.alpha)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--stage", default=None, help="dvc.yaml stage whose params are read (default: train_default, "
                                                   "or train_<axis> with one override)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (timing only)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--throttle", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: sleep s after each step
    return ap


def stage_name(args: argparse.Namespace) -> str:
    if args.stage:
        return args.stage
    given = [k for k in OVERRIDES if getattr(args, k) is not None]
    if len(given) > 1:
        raise SystemExit(f"error: several overrides ({', '.join('--' + k for k in given)}): name the stage with --stage")
    return f"train_{given[0]}" if given else "train_default"


def main(argv: list[str] | None = None) -> None:
    from specllm import config
    from specllm.train.loop import train
    from specllm.train.settings import TrainSettings

    args = build_parser().parse_args(argv)
    params = config.stage_params(stage_name(args))
    settings = TrainSettings.from_params(params, {k: getattr(args, k) for k in OVERRIDES}, run=args.run,
                                         params_file=paths.PARAMS)
    progress = not args.no_progress and os.environ.get("SPECLLM_NO_PROGRESS") != "1"
    from specllm import preflight

    preflight.require("sft")  # GPU, capability, memory and disk in seconds, before any weights load
    train(settings, **run_paths(args.run), max_steps=args.max_steps, progress=progress, throttle_s=args.throttle)


if __name__ == "__main__":
    run_main(main)
