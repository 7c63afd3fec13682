"""Stage `select`: the ablation table over all evaluated runs and the best configuration (validation only).

Reads results/eval/<run>.json of exactly the runs dvc.yaml's evaluate stages produce (base, default
and one per ablation.* value, named as dvc.yaml's foreach names them; never a glob, so a removed
ablation value's old files cannot reach the paper) and their <run>_predictions.csv, the training
settings from results/train/<run>/train.json when present (else from the run name), the
retention results/retention/<run>.json when present, and the constant predictor's value (the
training median of data/prepared/train_meta.csv, as in the baseline stage: the null every run is
compared with; select.n_boot paired-bootstrap draws, seed). The best run is the lowest validation
MAE among trained runs whose validation outputs parse often enough (select.max_unparsed_frac); the
test split never enters the choice (see specllm.evaluate.select, which also makes the paired
comparisons the claims are decided by).

Writes results/ablation.json (per run: lr, rank, epochs, val and test MAE, NMAD, outlier fraction,
bias, unparsed counts, science/general retention; the best run and the rule), and the figure data
results/ablation_best_predictions.csv (predicted vs true redshift of the best run, val and test)
and results/ablation_per_bin.csv (per-bin error of every run and split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from specllm import paths
from specllm.errors import InputError
from specllm.evaluate.select import ablation, load_eval_results
from specllm.io import write_json
from specllm.runner import run_main

EVAL_DIR = paths.EVAL
TRAIN_DIR = paths.TRAIN_RESULTS
RETENTION_DIR = paths.RETENTION
OUT_JSON = paths.ABLATION
OUT_BEST = paths.ABLATION_BEST_PREDICTIONS
OUT_BINS = paths.ABLATION_PER_BIN


def declared_runs(p) -> list[str]:
    """base, default, then lr-<v>, rank-<v>, epochs-<v> per ablation value, as dvc.yaml names them
    (DVC writes ${item} with Python's str(): 1.0e-5 -> 1e-05)."""
    return ["base", "default"] + [f"{key}-{value}" for key in ABLATION_KEYS for value in p[f"ablation.{key}"]]


ABLATION_KEYS = ("lr", "rank", "epochs")


def per_bin_frame(eval_dir: Path, runs: list[str]) -> pd.DataFrame:
    rows = []
    for run, summary in sorted(load_eval_results(eval_dir, runs).items()):
        for split, s in summary["splits"].items():
            for b in s.get("per_bin", []):
                rows.append({"run": run, "split": split, **{k: b.get(k) for k in
                             ("z_bin", "z_lo", "z_hi", "n", "n_parsed", "n_unparsed", "mae", "nmad", "outlier_frac", "bias")}})
    return pd.DataFrame(rows)


def best_predictions(eval_dir: Path, best: str) -> pd.DataFrame:
    file = Path(eval_dir) / f"{best}_predictions.csv"
    if not file.is_file():
        raise InputError(file, "-", "predictions of the best run not found", f"rerun the evaluate stage for {best}")
    df = pd.read_csv(file)
    missing = [c for c in ("split", "gal_id", "z_true", "z_pred", "parsed") if c not in df.columns]
    if missing:
        raise InputError(file, ", ".join(missing), "missing column", f"rerun the evaluate stage for {best}")
    return df[["split", "gal_id", "z_true", "z_pred", "parsed"]].assign(run=best)


def constant_value(prepared: Path) -> float:
    """The null predictor's value: the training split's median redshift (what the baseline stage's
    `constant` row predicts), read from the prepared split itself, so that a change of the learned
    baselines does not rerun this stage."""
    file = Path(prepared) / "train_meta.csv"
    if not file.is_file():
        raise InputError(file, "-", "not found", "run `dvc repro prepare`")
    z = pd.read_csv(file)["z"].to_numpy(float) if "z" in pd.read_csv(file, nrows=0).columns else None
    if z is None or len(z) == 0:
        raise InputError(file, "z", "missing or empty", "run `dvc repro prepare`")
    return float(np.median(z))


def run_select(eval_dir: Path, runs: list[str], train_dir: Path, retention_dir: Path, out_json: Path, out_best: Path,
               out_bins: Path, max_unparsed_frac: float, stats: dict | None = None) -> dict:
    summary = ablation(eval_dir, runs, train_dir=train_dir, retention_dir=retention_dir,
                       max_unparsed_frac=max_unparsed_frac, stats=stats)
    preds = best_predictions(eval_dir, summary["best"])  # read everything before writing anything
    bins = per_bin_frame(eval_dir, runs)
    for out, frame in ((out_best, preds), (out_bins, bins)):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        frame.to_csv(tmp, index=False, float_format="%.6f")
        tmp.replace(out)
    write_json(out_json, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    from specllm import config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    args = parser.parse_args(argv)
    p = config.stage_params("select")
    stats = {"constant": constant_value(paths.PREPARED), "n_boot": int(p["select.n_boot"]), "seed": int(p["seed"])}
    summary = run_select(args.eval_dir, declared_runs(p), TRAIN_DIR, RETENTION_DIR, OUT_JSON, OUT_BEST, OUT_BINS,
                         float(p["select.max_unparsed_frac"]), stats)
    for row in summary["runs"]:
        mae = "n/a" if row["val_mae"] is None else f"{row['val_mae']:.4f}"
        print(f"select: {row['run']}: val MAE {mae}, val unparsed {row['val_n_unparsed']}/{row['val_n']}")
    print(f"select: best run {summary['best']} ({summary['selection']['rule']}) -> {OUT_JSON}")


if __name__ == "__main__":
    run_main(main)
