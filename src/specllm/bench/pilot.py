"""The sizing pilot: how much LoRA training the embedded model needs before it reads redshift better
than a constant (the training median), so the small profile is sized on evidence, not hope.

    python -m specllm.bench.pilot prepare --out pilot/data          # here: prepare + serialize variants
    python -m specllm.bench.pilot run --data pilot/data --model models/base --out pilot/out \
        --run 48sep:512:1e-3:8:2:8 --run 24nosep:512:1e-3:8:2:4 ...   # anywhere torch runs (a GPU: minutes)

A run is VARIANT:N_TRAIN:LR:RANK:EPOCHS:BATCH. Each run trains one adapter with the project's own
loop (specllm.train.loop.train) on the first N_TRAIN training spectra of the variant, answers the
validation spectra with the project's constrained decoding (specllm.evaluate.run.evaluate_run), and
compares its absolute errors with those of the constant predictor (median of the same N_TRAIN
redshifts) on the same galaxies: MAE of both, and a paired bootstrap 95% interval of the MAE
difference (run minus constant; below zero = the run reads redshift). Results are printed as they come
and written to <out>/pilot.json and pilot.md. `--budget-s` stops starting new runs after that time.

The pilot runs outside DVC on purpose: it is the evidence for a profile's sizes, not a paper result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from specllm import paths
from specllm.evaluate.paired import paired_mean_diff

VARIANTS = {  # name: (n_points, digit_sep)
    "48sep": (48, "|"),
    "48nosep": (48, ""),
    "24sep": (24, "|"),
    "24nosep": (24, ""),
}


def prepare_variants(out: Path, source: Path, model_dir: Path, n_train: int, n_val: int, n_test: int, seed: int,
                     variants: list[str]) -> None:
    from specllm import config, paths
    from specllm.data.prepare import prepare
    from specllm.model.serialized import config_from_params, serialize_splits

    base = dict(config.load(paths.PARAMS))
    for name in variants:
        n_points, sep = VARIANTS[name]
        p = {**base, "data.n_train": n_train, "data.n_val": n_val, "data.n_test": n_test, "seed": seed,
             "spectrum.n_points": n_points, "serialize.digit_sep": sep, "data.source": "embedded"}
        prepared = out / name / "prepared"
        prepare(source, prepared, p)
        serialize_splits(prepared, model_dir, out / name / "serialized", out / name / "serialization.json",
                         config_from_params(p))


def parse_run(spec: str) -> dict:
    variant, n, lr, rank, epochs, batch = spec.split(":")
    return {"variant": variant, "n_train": int(n), "lr": float(lr), "rank": int(rank), "epochs": int(epochs),
            "batch": int(batch), "name": spec.replace(":", "_")}


def run_one(run: dict, data: Path, model_dir: Path, out: Path, seed: int, n_val: int | None) -> dict:
    from specllm.evaluate.run import evaluate_run
    from specllm.serialize import read_serialized
    from specllm.train.loop import train
    from specllm.train.settings import TrainSettings

    ser = data / run["variant"] / "serialized"
    work = out / run["name"]
    (work / "serialized").mkdir(parents=True, exist_ok=True)
    train_recs = read_serialized(ser / "train.jsonl")[: run["n_train"]]
    val_recs = read_serialized(ser / "val.jsonl")[: n_val or None]
    for split, recs in (("train", train_recs), ("val", val_recs)):
        with open(work / "serialized" / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)
    settings = TrainSettings(run=run["name"], seed=seed, lr=run["lr"], rank=run["rank"], epochs=run["epochs"],
                             batch_size=run["batch"], checkpoint_every=0)
    t0 = time.perf_counter()
    summary = train(settings, model_dir, work / "serialized" / "train.jsonl", work / "adapter", work / "train",
                    work / "ckpt", progress=False, log=lambda *_: None)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev, pred = evaluate_run(run["name"], base_dir=model_dir, adapter_dir=work / "adapter",
                            serialized=work / "serialized", prepared=data / run["variant"] / "prepared",
                            settings={"batch_size": 32, "max_new_tokens": 24, "constrained": True},
                            splits=("val",), log=lambda *_: None)
    t_eval = time.perf_counter() - t0
    z_med = float(np.median([float(r["z"]) for r in train_recs]))
    z_true = pred["z_true"].to_numpy(float)
    z_pred = pred["z_pred"].to_numpy(float)
    err_run = np.where(np.isfinite(z_pred), np.abs(z_pred - z_true), np.abs(z_true - z_med))  # unparsed -> constant
    err_const = np.abs(z_true - z_med)
    d = paired_mean_diff(err_run, err_const, n_boot=2000, seed=0)  # the select stage's paired bootstrap
    diff, lo, hi = d["mean_diff"], d["ci_low"], d["ci_high"]
    return {**run, "steps": summary.get("steps"), "tokens": summary.get("tokens"),
            "tokens_per_s": summary.get("tokens_per_s"), "final_loss": summary.get("final_loss"),
            "train_s": round(t_train, 1), "eval_s": round(t_eval, 1), "n_val": int(z_true.size),
            "n_unparsed": int((~np.isfinite(z_pred)).sum()),
            "mae_run": float(err_run.mean()), "mae_const": float(err_const.mean()),
            "mae_diff": diff, "diff_lo": lo, "diff_hi": hi,
            "pred_std": float(np.nanstd(z_pred)), "true_std": float(z_true.std()),
            "corr": float(np.corrcoef(z_true[np.isfinite(z_pred)], z_pred[np.isfinite(z_pred)])[0, 1])
            if np.isfinite(z_pred).sum() > 2 and np.nanstd(z_pred) > 0 else None}


def table(rows: list[dict]) -> str:
    head = ("| run | steps | tokens/s | train s | final loss | val MAE | constant MAE | diff [95% CI] | corr |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    def f(x, fmt):
        return "n/a" if x is None else format(x, fmt)
    return head + "".join(
        f"| {r['name']} | {r['steps']} | {f(r['tokens_per_s'], '.0f')} | {r['train_s']} | {f(r['final_loss'], '.3f')} "
        f"| {r['mae_run']:.4f} | {r['mae_const']:.4f} | {r['mae_diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}] "
        f"| {f(r['corr'], '.2f')} |\n" for r in rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m specllm.bench.pilot", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--out", type=Path, required=True)
    pp.add_argument("--source", type=Path, default=Path(paths.rel(paths.RAW)))
    pp.add_argument("--model", type=Path, default=Path(paths.rel(paths.BASE_MODEL)))
    pp.add_argument("--n-train", type=int, default=1024)
    pp.add_argument("--n-val", type=int, default=200)
    pp.add_argument("--n-test", type=int, default=200)
    pp.add_argument("--seed", type=int, default=20250814)
    pp.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    pr = sub.add_parser("run")
    pr.add_argument("--data", type=Path, required=True)
    pr.add_argument("--model", type=Path, required=True)
    pr.add_argument("--out", type=Path, required=True)
    pr.add_argument("--run", action="append", required=True, help="VARIANT:N_TRAIN:LR:RANK:EPOCHS:BATCH")
    pr.add_argument("--n-val", type=int, default=None)
    pr.add_argument("--seed", type=int, default=20250814)
    pr.add_argument("--budget-s", type=float, default=1e9)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        prepare_variants(args.out, args.source, args.model, args.n_train, args.n_val, args.n_test, args.seed,
                         args.variant or sorted(VARIANTS))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    for spec in args.run:
        if time.perf_counter() - t0 > args.budget_s:
            print(f"pilot: budget of {args.budget_s:.0f} s spent; skipping {spec}", flush=True)
            continue
        try:
            rows.append(run_one(parse_run(spec), args.data, args.model, args.out, args.seed, args.n_val))
        except Exception as exc:  # a pilot reports a failed run and goes on with the others
            print(f"pilot: {spec} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        r = rows[-1]
        print(f"pilot: {r['name']}: {r['steps']} steps in {r['train_s']} s, val MAE {r['mae_run']:.4f} vs constant "
              f"{r['mae_const']:.4f}, diff {r['mae_diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}], "
              f"corr {r['corr']}", flush=True)
        (args.out / "pilot.json").write_text(json.dumps(rows, indent=1))
        (args.out / "pilot.md").write_text(table(rows))
    print(table(rows), flush=True)


if __name__ == "__main__":
    main()
