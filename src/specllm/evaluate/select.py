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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specllm.errors import InputError

ALIASES = {"lr": ("lr", "learning_rate"), "rank": ("rank", "r", "lora_r", "lora_rank"),
           "epochs": ("epochs", "num_train_epochs", "n_epochs", "epoch")}
NAME_PATTERNS = {
    "lr": re.compile(r"(?:^|[_\-])(?:lr|learning_rate)[=_-]?(\d*\.?\d+(?:e[-+]?\d+)?)", re.IGNORECASE),
    "rank": re.compile(r"(?:^|[_\-])(?:rank|r)[=_-]?(\d+)(?=$|[_\-])", re.IGNORECASE),
    "epochs": re.compile(r"(?:^|[_\-])(?:epochs|epoch|ep|e)[=_-]?(\d+)(?=$|[_\-])", re.IGNORECASE),
}
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
        try:
            tree = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise InputError(file, "-", f"not valid JSON ({err.msg})", f"rerun the training stage for {run}") from None
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
        try:
            summary = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise InputError(file, "-", f"not valid JSON ({err.msg})", "rerun the evaluate stage for this run") from None
        if not isinstance(summary, Mapping) or "val" not in summary.get("splits", {}):
            raise InputError(file, "splits.val", "missing", "rerun the evaluate stage for this run (it scores val and test)")
        out[str(summary.get("run", file.stem))] = summary
    return out


def _retention(retention_dir: Path | None, run: str) -> dict[str, Any]:
    file = Path(retention_dir) / f"{run}.json" if retention_dir is not None else None
    if file is None or not file.is_file():
        return {}
    tree = json.loads(file.read_text())
    out = {}
    for name, s in tree.get("sets", {}).items():
        r = s["retention"]["acc"]
        out[name] = {"ratio": r["ratio"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "base_acc": s["base"]["acc"], "adapted_acc": s["adapted"]["acc"],
                     "ratio_norm": s["retention"]["acc_norm"]["ratio"]}
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


def ablation(eval_dir: str | Path, runs: Sequence[str], *, train_dir: str | Path | None,
             retention_dir: str | Path | None, max_unparsed_frac: float) -> dict[str, Any]:
    """The ablation summary: one row per declared run, the best run by the validation rule, its test numbers."""
    results = load_eval_results(eval_dir, runs)
    rows = [table_row(run, s, train_dir, retention_dir) for run, s in sorted(results.items())]
    best, why = choose_best(rows, max_unparsed_frac)
    best_row = next(r for r in rows if r["run"] == best)
    return {
        "selection": {"split": "val", "metric": "mae", "max_unparsed_frac": max_unparsed_frac, "rule": why},
        "best": best,
        "best_test": {k[len("test_"):]: best_row[k] for k in best_row if k.startswith("test_")},
        "runs": rows,
        "n_runs": len(rows),
    }
