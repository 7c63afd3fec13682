"""The ablation table over every evaluated run, and the best run, chosen on the validation split only.

Rule: among the trained runs (``base`` is a reference row, a candidate only when no trained run
exists) whose validation outputs parse at least ``1 - max_unparsed_frac`` of the time, the lowest
validation MAE wins (ties: fewer unparsed outputs, then the name). When no run passes the parse
threshold, the run with the fewest unparsed validation outputs wins (then MAE). Test numbers are
carried along for the table and never read by the rule.

Settings (lr, rank, epochs) come from the run's ``results/train/<run>/train.json`` when it exists
(keys ``lr``/``learning_rate``, ``rank``/``r``/``lora_r``/``lora_rank``,
``epochs``/``num_train_epochs``/``n_epochs``, at the top level or one level down), else from the
run name (``lr2e-4_r8_e3``, ``lr0.0002-rank16-epochs2``, ...), else null.

With ``stats`` (the select stage always passes it), the summary also holds the paired comparisons
every claim of the paper is decided by (specllm.claims), each the mean absolute-error difference
over the same galaxies with a seeded paired-bootstrap interval (specllm.evaluate.paired):
  constant          the null predictor (the training median, data/prepared/train_meta.csv) and its MAEs
  runs[].vs_constant.{val,test}   the run minus the constant (negative: the run is better)
  axes.{lr,rank,epochs}           per ablation axis (the runs that vary it with the other two at the
                                  default run's values): best and runner-up on validation, best
                                  minus runner-up on the validation galaxies, ``decided``
  best_vs_runner_up               the same for the selected run against the next-best candidate
Unparsed answers have no error; a comparison uses the galaxies both predictors answered (``n``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import paths
from specllm.errors import InputError
from specllm.evaluate.paired import LEVEL, excludes_zero, paired_mean_diff
from specllm.io import read_csv, read_json

ALIASES = {"lr": ("lr", "learning_rate"), "rank": ("rank", "r", "lora_r", "lora_rank"),
           "epochs": ("epochs", "num_train_epochs", "n_epochs", "epoch")}
NAME_PATTERNS = {
    "lr": re.compile(r"(?:^|[_\-])(?:lr|learning_rate)[=_-]?(\d*\.?\d+(?:e[-+]?\d+)?)", re.IGNORECASE),
    "rank": re.compile(r"(?:^|[_\-])(?:rank|r)[=_-]?(\d+)(?=$|[_\-])", re.IGNORECASE),
    "epochs": re.compile(r"(?:^|[_\-])(?:epochs|epoch|ep|e)[=_-]?(\d+)(?=$|[_\-])", re.IGNORECASE),
}
AXES = ("lr", "rank", "epochs")
SPLIT_KEYS = ("n", "n_unparsed", "unparsed_frac", "mae", "nmad", "outlier_frac", "bias", "failure_frac")
BASE_RUN = "base"


def _find(tree: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in tree and not isinstance(tree[name], Mapping):
            return tree[name]
    for value in tree.values():
        if isinstance(value, Mapping):
            for name in names:
                if name in value and not isinstance(value[name], Mapping):
                    return value[name]
    return None


def run_settings(run: str, train_dir: str | Path | None) -> dict[str, Any]:
    """lr, rank and epochs of a run, and where they came from (train.json, name, or none)."""
    file = Path(train_dir) / run / "train.json" if train_dir is not None else None
    if file is not None and file.is_file():
        tree = read_json(file, f"rerun the training stage for {run}", kind=None)
        if isinstance(tree, Mapping):
            found = {k: _find(tree, names) for k, names in ALIASES.items()}
            if any(v is not None for v in found.values()):
                return {**found, "settings_source": "train.json"}
    found = {}
    for key, pattern in NAME_PATTERNS.items():
        m = pattern.search(run)
        found[key] = None if m is None else (float(m.group(1)) if key == "lr" else int(m.group(1)))
    source = "run name" if any(v is not None for v in found.values()) else None
    return {**found, "settings_source": source}


def load_eval_results(eval_dir: str | Path, runs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{run: summary} of results/eval/<run>.json for exactly the declared runs.

    Never a glob: a file no stage owns (an ablation value since removed from params.yaml) stays on
    disk, and reading it would put a stale run into the paper.
    """
    eval_dir = Path(eval_dir)
    if not runs:
        raise InputError(eval_dir, "-", "no evaluation results (no runs declared)",
                         "run the evaluate stages first (`dvc repro evaluate`)")
    out = {}
    for run in runs:
        file = eval_dir / f"{run}.json"
        if not file.is_file():
            raise InputError(file, "-", f"no evaluation results of the declared run {run!r}",
                             "run the evaluate stages first (`dvc repro`)")
        summary = read_json(file, "rerun the evaluate stage for this run (it scores val and test)", required=("splits.val",))
        out[str(summary.get("run", file.stem))] = summary
    return out


def _retention(retention_dir: Path | None, run: str) -> dict[str, Any]:
    file = Path(retention_dir) / f"{run}.json" if retention_dir is not None else None
    if file is None or not file.is_file():
        return {}
    tree = read_json(file, f"rerun the retention stage of run {run}")
    out = {}
    for name, s in tree.get("sets", {}).items():
        r = s["retention"]["acc"]
        above = s["retention"].get("acc_above_chance") or {}
        out[name] = {"ratio": r["ratio"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "base_acc": s["base"]["acc"], "adapted_acc": s["adapted"]["acc"],
                     "ratio_norm": s["retention"]["acc_norm"]["ratio"], "chance": s.get("chance"),
                     "above_chance": above.get("ratio"), "above_chance_ci_low": above.get("ci_low"),
                     "above_chance_ci_high": above.get("ci_high")}
    return out


def table_row(run: str, summary: Mapping[str, Any], train_dir, retention_dir) -> dict[str, Any]:
    row: dict[str, Any] = {"run": run, **run_settings(run, train_dir)}
    for split in ("val", "test"):
        s = summary["splits"].get(split, {})
        for key in SPLIT_KEYS:
            row[f"{split}_{key}"] = s.get(key)
    row["retention"] = _retention(retention_dir, run)
    for name in ("science", "general"):
        row[f"{name}_retention"] = row["retention"].get(name, {}).get("ratio")
    return row


def choose_best(rows: list[dict[str, Any]], max_unparsed_frac: float) -> tuple[str, str]:
    """(best run, why), from validation numbers only."""
    trained = [r for r in rows if r["run"] != BASE_RUN]
    pool = trained or rows
    if not pool:
        raise ValueError("no runs to choose from")

    def val_mae(r):
        return r["val_mae"] if r["val_mae"] is not None and math.isfinite(r["val_mae"]) else math.inf

    ok = [r for r in pool if r["val_unparsed_frac"] is not None and r["val_unparsed_frac"] <= max_unparsed_frac
          and r["val_mae"] is not None]
    if ok:
        best = min(ok, key=lambda r: (val_mae(r), r["val_unparsed_frac"], r["run"]))
        why = f"lowest validation MAE among {len(ok)} runs with at most {max_unparsed_frac:.0%} unparsed validation outputs"
    else:
        best = min(pool, key=lambda r: (r["val_unparsed_frac"] if r["val_unparsed_frac"] is not None else 1.0, val_mae(r), r["run"]))
        why = f"no run parsed at least {1 - max_unparsed_frac:.0%} of its validation outputs: fewest unparsed, then validation MAE"
    if not trained:
        why += " (no trained run found: the base model is the only candidate)"
    return best["run"], why


def abs_errors(eval_dir: str | Path, run: str) -> pd.DataFrame:
    """|z_pred - z_true| per (split, gal_id) from results/eval/<run>_predictions.csv (NaN: unparsed)."""
    file = Path(eval_dir) / f"{run}_predictions.csv"
    df = read_csv(file, f"rerun the evaluate stage for {run}", ("split", "gal_id", "z_true", "z_pred"))
    df["err"] = (df["z_pred"].astype(float) - df["z_true"].astype(float)).abs()
    return df.set_index(["split", "gal_id"])[["z_true", "err"]]


def _paired(a: pd.Series, b: pd.Series, stats: Mapping[str, Any]) -> dict[str, Any]:
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return paired_mean_diff(both["a"].to_numpy(float), both["b"].to_numpy(float), n_boot=int(stats["n_boot"]),
                            seed=int(stats["seed"]))


def _candidates(rows: list[dict[str, Any]], max_unparsed_frac: float) -> list[dict[str, Any]]:
    """Trained runs that may be called best (they parse often enough), by validation MAE."""
    ok = [r for r in rows if r["run"] != BASE_RUN and r["val_mae"] is not None and math.isfinite(r["val_mae"])
          and r["val_unparsed_frac"] is not None and r["val_unparsed_frac"] <= max_unparsed_frac]
    return sorted(ok, key=lambda r: (r["val_mae"], r["val_unparsed_frac"], r["run"]))


def _best_vs_runner_up(pool: list[dict[str, Any]], errors: Mapping[str, pd.DataFrame],
                       stats: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"candidates": [r["run"] for r in pool], "best": pool[0]["run"] if pool else None,
                           "runner_up": pool[1]["run"] if len(pool) > 1 else None, "diff": None, "decided": False}
    if len(pool) > 1:
        val = {r: errors[r].xs("val")["err"] for r in (out["best"], out["runner_up"])}
        out["diff"] = _paired(val[out["best"]], val[out["runner_up"]], stats)  # best minus runner-up
        out["decided"] = out["diff"]["ci_high"] is not None and out["diff"]["ci_high"] < 0
    return out


def comparisons(rows: list[dict[str, Any]], eval_dir: str | Path, best: str, max_unparsed_frac: float,
                stats: Mapping[str, Any]) -> dict[str, Any]:
    """The paired comparisons (module docstring) for the rows of one ablation."""
    value = float(stats["constant"])
    errors = {r["run"]: abs_errors(eval_dir, r["run"]) for r in rows}
    constant: dict[str, Any] = {"value": value, "source": stats.get("constant_source", paths.rel(paths.PREPARED / "train_meta.csv"))}
    any_errors = next(iter(errors.values()))
    for split in ("val", "test"):
        if split in any_errors.index.get_level_values(0):
            z = any_errors.xs(split)["z_true"].to_numpy(float)
            constant[f"{split}_mae"] = float(np.mean(np.abs(z - value)))
    for r in rows:
        e = errors[r["run"]]
        r["vs_constant"] = {}
        for split in ("val", "test"):
            if split not in e.index.get_level_values(0):
                continue
            sub = e.xs(split)
            d = _paired(sub["err"], (sub["z_true"] - value).abs(), stats)
            r["vs_constant"][split] = {**d, "beats": bool(excludes_zero(d) and d["ci_high"] < 0)}
    candidates = _candidates(rows, max_unparsed_frac)
    default = next((r for r in rows if r["run"] == "default"), None)
    axes: dict[str, Any] = {}
    for axis in AXES:
        if default is None or default.get(axis) is None:
            continue
        others = {a: default.get(a) for a in AXES if a != axis}
        pool = [r for r in candidates if all(r.get(a) == v for a, v in others.items())]
        tried = sorted({r[axis] for r in rows if r["run"] != BASE_RUN and r.get(axis) is not None
                        and all(r.get(a) == v for a, v in others.items())})
        entry = _best_vs_runner_up(pool, errors, stats)
        entry.update(fixed=others, values=tried,
                     best_value=next((r[axis] for r in pool if r["run"] == entry["best"]), None),
                     runner_up_value=next((r[axis] for r in pool if r["run"] == entry["runner_up"]), None),
                     any_beats_constant=any(r["vs_constant"].get("val", {}).get("beats") for r in pool))
        axes[axis] = entry
    overall = _best_vs_runner_up([r for r in candidates if r["run"] == best]
                                 + [r for r in candidates if r["run"] != best], errors, stats)
    return {"constant": constant, "axes": axes, "best_vs_runner_up": overall,
            "any_beats_constant": any(r["vs_constant"].get("val", {}).get("beats") for r in candidates),
            "stats": {"n_boot": int(stats["n_boot"]), "seed": int(stats["seed"]), "level": LEVEL,
                      "split": "val", "metric": "absolute error, paired over galaxies"}}


def ablation(eval_dir: str | Path, runs: Sequence[str], *, train_dir: str | Path | None,
             retention_dir: str | Path | None, max_unparsed_frac: float,
             stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ablation summary: one row per declared run, the best run by the validation rule, and its test
    numbers; with `stats` ({constant, n_boot, seed}) also the paired comparisons (module docstring)."""
    results = load_eval_results(eval_dir, runs)
    rows = [table_row(run, s, train_dir, retention_dir) for run, s in sorted(results.items())]
    best, why = choose_best(rows, max_unparsed_frac)
    extra = comparisons(rows, eval_dir, best, max_unparsed_frac, stats) if stats is not None else {}
    best_row = next(r for r in rows if r["run"] == best)
    return {
        "selection": {"split": "val", "metric": "mae", "max_unparsed_frac": max_unparsed_frac, "rule": why},
        "best": best,
        "best_test": {k[len("test_"):]: best_row[k] for k in best_row if k.startswith("test_")},
        "runs": rows,
        "n_runs": len(rows),
        **extra,
    }
