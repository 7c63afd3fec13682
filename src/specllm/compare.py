"""`specllm compare` (`make compare`): this run's values beside the values the original work reported.

References are the committed data files the report stage also reads (their schema is theirs):
data/reference/arxiv_2508.10075.json (the original LoRA study: best setting, its row, training
size, GPU-hours; the other ablation rows are not available offline and print as such) and
data/reference/scse.json (the published SCSE stability figures). Each row names its reference
([1], [2]), cited below the table; a reference value that is missing is never guessed.

This run's counterpart of each row comes from the stage outputs (ITEMS); a row whose output is
absent from this build prints "not in this build". Below the table, the verdict on each headline
claim (results/verdicts.json, see specllm.verdicts). Read-only: compare never runs a stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from specllm import paths

REFERENCES = (paths.rel(paths.ARXIV_REFERENCE), paths.rel(paths.SCSE_REFERENCE))


def _load(root: Path, path: Path | str) -> Any:
    """A JSON file below `root`: a specllm.paths constant, or a path relative to the root; None if absent."""
    file = paths.at(root, path) if Path(path).is_absolute() else Path(root) / path
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def _best_row(root: Path) -> Mapping[str, Any] | None:
    ab = _load(root, paths.ABLATION)
    if not ab:
        return None
    return next((r for r in ab.get("runs", []) if r.get("run") == ab.get("best")), None)


def _best(field: str) -> Callable[[Path], Any]:
    return lambda root: (_best_row(root) or {}).get(field)


def _best_test_mae(root: Path) -> Any:
    ab = _load(root, paths.ABLATION)
    return None if not ab else (ab.get("best_test") or {}).get("mae")


def _n_train(root: Path) -> Any:
    s = _load(root, paths.DATA_SUMMARY)
    return None if not s else s.get("n_train")


def _compute_hours(root: Path) -> Any:
    recs = [json.loads(f.read_text()) for f in sorted(paths.at(root, paths.COST).glob("*.json"))]
    if not recs:
        return None
    gpu = sum(float(r.get("gpu_hours") or 0) for r in recs)
    cpu = sum(float(r.get("cpu_hours") or 0) for r in recs)
    return f"{gpu:.3g} GPU-h" if gpu else f"0 GPU-h ({cpu:.3g} CPU-h)"


def _ablation_rows(axis: str) -> Callable[[Path], Any]:
    def get(root: Path) -> Any:
        ab = _load(root, paths.ABLATION)
        if not ab:
            return None
        rows = [r for r in ab.get("runs", []) if r.get("run") != "base" and r.get("val_mae") is not None]
        default = next((r for r in rows if r.get("run") == "default"), None)
        if default is None:
            return None
        others = [a for a in ("lr", "rank", "epochs") if a != axis]
        pool = sorted((r for r in rows if all(r.get(a) == default.get(a) for a in others)), key=lambda r: r[axis])
        return "; ".join(f"{r[axis]:g}: {r['val_mae']:.4g}" for r in pool) + " (val MAE)"
    return get


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def _result(file: Path, dotted: str) -> Callable[[Path], Any]:
    return lambda root: _dig(_load(root, file), dotted)


def _ref_best_row(ref: Mapping[str, Any]) -> Mapping[str, Any]:
    best = ref.get("best") or {}
    return next((r for r in ref.get("rows", []) if all(r.get(k) == best.get(k) for k in ("lr", "rank", "epochs"))), {})


ARXIV, SCSE = REFERENCES
# (reference file, what, the reference's value, this run's value, unit, where in the original). The reference
# files' schema is the one the report stage reads (specllm.report.ablation / specllm.report.stability).
ITEMS: tuple[tuple[str, str, Callable[[Mapping], Any], Callable[[Path], Any], str | None, str], ...] = (
    (ARXIV, "learning rate of the best configuration", lambda r: _dig(r, "best.lr"), _best("lr"), None, "best"),
    (ARXIV, "LoRA rank of the best configuration", lambda r: _dig(r, "best.rank"), _best("rank"), None, "best"),
    (ARXIV, "epochs of the best configuration", lambda r: _dig(r, "best.epochs"), _best("epochs"), None, "best"),
    (ARXIV, "test redshift MAE of the best configuration", lambda r: _ref_best_row(r).get("mae"), _best_test_mae,
     None, "best"),
    (ARXIV, "science retention of the best configuration", lambda r: _ref_best_row(r).get("science_retention"),
     _best("science_retention"), "fraction", "retention"),
    (ARXIV, "general retention of the best configuration", lambda r: _ref_best_row(r).get("general_retention"),
     _best("general_retention"), "fraction", "retention"),
    (ARXIV, "training spectra", lambda r: r.get("n_train"), _n_train, None, "data"),
    (ARXIV, "GPU time of the study", lambda r: f"{r['gpu_hours']} {r.get('gpu', 'GPU')}-hours"
     if r.get("gpu_hours") is not None else None, _compute_hours, None, "compute"),
    (ARXIV, "validation MAE per learning rate", lambda r: None, _ablation_rows("lr"), None, "ablation"),
    (ARXIV, "validation MAE per rank", lambda r: None, _ablation_rows("rank"), None, "ablation"),
    (ARXIV, "validation MAE per epoch count", lambda r: None, _ablation_rows("epochs"), None, "ablation"),
    (SCSE, "mean PSS", lambda r: r.get("mean_pss"), _result(paths.STABILITY_FILES["analysis"], "overall.mean_pss"),
     None, "stability"),
    (SCSE, "share of objects fully stable", lambda r: r.get("share_fully_stable"),
     _result(paths.STABILITY_FILES["analysis"], "overall.share_stable"), "fraction", "stability"),
    (SCSE, "mean PSS before DPO", lambda r: r.get("dpo_pss_before"),
     _result(paths.STABILITY_FILES["reprobe_json"], "comparison.all.pss_before"), None, "DPO"),
    (SCSE, "mean PSS after DPO", lambda r: r.get("dpo_pss_after"),
     _result(paths.STABILITY_FILES["reprobe_json"], "comparison.all.pss_after"), None, "DPO"),
)


def _fmt(value: Any, unit: str | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if unit == "fraction":
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    return str(value)


def _citation(ref: Mapping[str, Any], rel: str) -> str:
    cite = str(ref.get("citation") or ref.get("source") or rel)
    if " " not in cite:  # a bibkey: name the source too
        cite = f"{ref.get('source', '')} [{cite} in paper/refs.bib]".strip()
    if ref.get("arxiv") and str(ref["arxiv"]) not in cite:
        cite += f", arXiv:{ref['arxiv']}"
    return cite


def rows(root: Path, references=REFERENCES) -> tuple[list[tuple[str, ...]], list[str]]:
    table, cites = [], []
    for i, rel in enumerate(references, 1):
        ref = _load(root, rel)
        if ref is None:
            continue
        cites.append(f"[{i}] {_citation(ref, rel)} ({rel})")
        if ref.get("note"):
            cites.append(f"    note: {ref['note']}")
        for file, what, theirs, ours_fn, unit, where in ITEMS:
            if file != rel:
                continue
            try:
                value = theirs(ref)
            except (KeyError, TypeError):
                value = None
            try:
                ours = ours_fn(root)
            except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
                ours = None
            reported = f"{_fmt(value, unit)} [{i}]" if value is not None else f"n/a, not available offline [{i}]"
            table.append((what, reported, _fmt(ours, unit) if ours is not None else "not in this build", where))
    return table, cites


def render(root: Path) -> str:
    from specllm.verify import active_profile

    table, cites = rows(root)
    header = ("quantity", "original (reported)", "this run", "where in the original")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(4)]
    lines = [f"this run: profile {active_profile(root)} (only the paper profile reproduces the original setting)", "",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    lines += ["", *cites, "", *verdict_lines(root)]
    return "\n".join(lines)


def verdict_lines(root: Path) -> list[str]:
    """The verdict table (results/verdicts.json, stage `verdicts`): each headline claim of both original
    studies, supported / contradicted / not testable at this scale, with this run's value and the reason."""
    from specllm import verdicts

    v = _load(root, paths.VERDICTS)
    if v is None:
        return ["verdicts: not in this build (run `dvc repro verdicts`)"]
    return [f"verdicts ({paths.rel(paths.VERDICTS)}; decided by this run's 95% intervals and null baselines):", "",
            *verdicts.text_table(v).splitlines()]
