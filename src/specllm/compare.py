"""`specllm compare` (`make compare`): this run's values beside the values the original work reported.

References are committed data files, each {"source", "citation", "values": {key: {value, where,
what, unit?, note?}}}: data/reference/arxiv_2508.10075.json (the original LoRA study's tables) and
data/reference/scse.json (the published SCSE stability figures). A value the reference does not
give offline is null with a note, and is printed as such, never guessed.

This run's counterpart of each key comes from RESOLVERS (a function of the project root reading
the stage outputs); a key without one, or whose stage output is absent from this build, prints
"not in this build". Read-only: compare never runs a stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REFERENCES = ("data/reference/arxiv_2508.10075.json", "data/reference/scse.json")


def _load(root: Path, rel: str) -> Any:
    file = Path(root) / rel
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def _best_row(root: Path) -> Mapping[str, Any] | None:
    ab = _load(root, "results/ablation.json")
    if not ab:
        return None
    return next((r for r in ab.get("runs", []) if r.get("run") == ab.get("best")), None)


def _best(field: str) -> Callable[[Path], Any]:
    return lambda root: (_best_row(root) or {}).get(field)


def _best_test_mae(root: Path) -> Any:
    ab = _load(root, "results/ablation.json")
    return None if not ab else (ab.get("best_test") or {}).get("mae")


def _n_train(root: Path) -> Any:
    s = _load(root, "results/data_summary.json")
    return None if not s else s.get("n_train")


def _compute_hours(root: Path) -> Any:
    recs = [json.loads(f.read_text()) for f in sorted((Path(root) / "results" / "cost").glob("*.json"))]
    if not recs:
        return None
    gpu = sum(float(r.get("gpu_hours") or 0) for r in recs)
    cpu = sum(float(r.get("cpu_hours") or 0) for r in recs)
    return f"{gpu:.3g} GPU-h" if gpu else f"0 GPU-h ({cpu:.3g} CPU-h)"


def _ablation_rows(axis: str) -> Callable[[Path], Any]:
    def get(root: Path) -> Any:
        ab = _load(root, "results/ablation.json")
        if not ab:
            return None
        rows = [r for r in ab.get("runs", []) if r.get("run") != "base" and r.get("val_mae") is not None]
        default = next((r for r in rows if r.get("run") == "default"), None)
        if default is None:
            return None
        others = [a for a in ("lr", "rank", "epochs") if a != axis]
        pool = sorted((r for r in rows if all(r.get(a) == default.get(a) for a in others)), key=lambda r: r[axis])
        return "; ".join(f"{r[axis]:g}: {r['val_mae']:.3f}" for r in pool) + " (val MAE)"
    return get


def _stability(file: str, field: str) -> Callable[[Path], Any]:
    return lambda root: (_load(root, file) or {}).get(field)


RESOLVERS: dict[str, Callable[[Path], Any]] = {
    "best_lr": _best("lr"),
    "best_rank": _best("rank"),
    "best_epochs": _best("epochs"),
    "best_mae": _best_test_mae,
    "science_retention": _best("science_retention"),
    "general_retention": _best("general_retention"),
    "n_train": _n_train,
    "gpu_hours": _compute_hours,
    "ablation_lr_rows": _ablation_rows("lr"),
    "ablation_rank_rows": _ablation_rows("rank"),
    "ablation_epochs_rows": _ablation_rows("epochs"),
    # The stability study's outputs (adapt the file/field names when its stages land).
    "mean_pss": _stability("results/stability/summary.json", "mean_pss"),
    "fully_stable_frac": _stability("results/stability/summary.json", "fully_stable_frac"),
    "dpo_pss_before": _stability("results/stability/dpo.json", "pss_before"),
    "dpo_pss_after": _stability("results/stability/dpo.json", "pss_after"),
}


def _fmt(value: Any, unit: str | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if unit == "fraction":
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    return str(value)


def rows(root: Path, references=REFERENCES) -> tuple[list[tuple[str, ...]], list[str]]:
    table, cites = [], []
    for i, rel in enumerate(references, 1):
        ref = _load(root, rel)
        if ref is None:
            continue
        cites.append(f"[{i}] {ref.get('citation', rel)} ({rel})")
        for key, v in ref.get("values", {}).items():
            resolver = RESOLVERS.get(key)
            ours = None
            try:
                ours = resolver(root) if resolver else None
            except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
                ours = None
            reported = _fmt(v.get("value"), v.get("unit")) if v.get("value") is not None else \
                f"n/a ({v.get('note', 'not reported')})"
            table.append((v.get("what", key), f"{reported} [{i}]", _fmt(ours, v.get("unit")) if ours is not None
                          else "not in this build", v.get("where", "")))
    return table, cites


def render(root: Path) -> str:
    from specllm.verify import active_profile

    table, cites = rows(root)
    header = ("quantity", "original (reported)", "this run", "where in the original")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(4)]
    lines = [f"this run: profile {active_profile(root)} (only the paper profile reproduces the original setting)", "",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    lines += ["", *cites]
    return "\n".join(lines)
