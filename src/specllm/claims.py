"""Qualitative claims as generated macros: the sentence is computed from the results, so it changes
when the result does (which learning rate, rank and epoch count are best; whether retention stays
above a level; whether DPO lowers PSS without lowering accuracy; whether K = 2 dominates).

Each claim is a function of plain result dicts returning a `Claim` (macro key, LaTeX text, the
decisive value, the source file), so tests can feed it a result and flip it. `REGISTRY` binds each
claim to the result files it reads; `add_claims(ms, root)` adds every claim whose inputs exist to
the report's MacroSet (kind "latex", so values.json records the sentence and `make verify` checks
it exactly). A claim whose inputs are missing is skipped, and a main.tex that uses it then fails to
build with "undefined control sequence": a claim never silently keeps an old wording.

To add a claim (e.g. for the stability study): write `def my_claim(result) -> Claim`, register
`ClaimSpec("claim.my_claim", ("results/stability/x.json",), lambda data: my_claim(data[0]))`, and
list the files among the report stage's deps in dvc.yaml.

Macro names follow specllm.report.macros.macro_name: "claim.best_lr" -> \\ClaimBestLr.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specllm.report.macros import format_value

# The retention level the paper's claim is about ("stays above 85%": the original study reports
# 85.2% science-QA retention). A claim setting, not a result; move it to params.yaml when the
# report stage reads claims (then it is a declared dependency).
RETENTION_LEVEL = 0.85
AXES = ("lr", "rank", "epochs")
_AXIS_WORDS = {"lr": ("learning rate", "learning rates"), "rank": ("LoRA rank", "ranks"),
               "epochs": ("epoch count", "epoch counts")}
_SET_WORDS = {"science": "science-QA", "general": "general-QA"}


@dataclass(frozen=True)
class Claim:
    key: str
    text: str          # LaTeX, ready for the sentence
    value: Any         # the decisive result (winning setting, True/False, ...) for values.json
    source: str


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _setting(axis: str, value: Any) -> str:
    if axis == "lr":
        mantissa, exp = f"{float(value):.0e}".split("e")
        return (f"$10^{{{int(exp)}}}$" if mantissa == "1" else format_value(float(value), "sci", 0))
    return format_value(int(value), "int")


def best_setting(ablation: Mapping[str, Any], axis: str, source: str = "results/ablation.json") -> Claim:
    """Which value of `axis` gives the lowest validation MAE, among the default run and the runs that
    differ from it only in `axis` (a one-factor-at-a-time ablation)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    runs = [r for r in ablation.get("runs", []) if r.get("run") != "base"]
    default = next((r for r in runs if r.get("run") == "default"), None)
    if default is None:
        raise ValueError("ablation has no 'default' run")
    others = [a for a in AXES if a != axis]
    pool = [r for r in runs if all(r.get(a) == default.get(a) for a in others) and _finite(r.get("val_mae"))]
    if not pool:
        raise ValueError(f"no run with a validation MAE varies {axis}")
    best_mae = min(r["val_mae"] for r in pool)
    winners = sorted({r[axis] for r in pool if r["val_mae"] == best_mae})
    singular, plural = _AXIS_WORDS[axis]
    n = len({r[axis] for r in pool})
    tried = f"of the {format_value(n, 'int')} {plural} tried"
    if len(winners) > 1:
        text = (f"{plural} " + " and ".join(_setting(axis, w) for w in winners)
                + f" tie for the lowest validation MAE {tried}")
        return Claim(f"claim.best_{axis}", text, winners, source)
    w = winners[0]
    if axis == "epochs":
        subject = f"training for {_setting(axis, w)} epoch{'s' if int(w) != 1 else ''}"
    else:
        subject = f"a {singular} of {_setting(axis, w)}"
    return Claim(f"claim.best_{axis}", f"{subject} gives the lowest validation MAE {tried}", w, source)


def retention_above(ablation: Mapping[str, Any], set_name: str, level: float = RETENTION_LEVEL,
                    source: str = "results/ablation.json") -> Claim:
    """Whether the selected run's retention on `set_name` stays at or above `level` (a fraction)."""
    best = ablation.get("best")
    row = next((r for r in ablation.get("runs", []) if r.get("run") == best), None)
    ratio = None if row is None else row.get(f"{set_name}_retention")
    if not _finite(ratio):
        raise ValueError(f"no {set_name} retention for the selected run {best!r}")
    words = _SET_WORDS.get(set_name, set_name)
    pct = format_value(level, "percent", 0)
    above = ratio >= level
    text = (f"{words} retention stays above {pct} ({format_value(ratio, 'percent', 1)})" if above
            else f"{words} retention falls below {pct} ({format_value(ratio, 'percent', 1)})")
    return Claim(f"claim.retention_{set_name}_above", text, bool(above), source)


def dpo_effect(stability: Mapping[str, Any], source: str = "results/stability/dpo.json",
               acc_tolerance: float = 0.0) -> Claim:
    """Whether DPO lowers the mean PSS without lowering accuracy.

    Expects {pss_before, pss_after, acc_before, acc_after} (fractions). Accuracy counts as not
    lowered when acc_after >= acc_before - acc_tolerance.
    """
    for k in ("pss_before", "pss_after", "acc_before", "acc_after"):
        if not _finite(stability.get(k)):
            raise ValueError(f"stability result lacks a finite {k}")
    pb, pa, ab, aa = (float(stability[k]) for k in ("pss_before", "pss_after", "acc_before", "acc_after"))
    pss = f"from {format_value(pb, 'float', 3)} to {format_value(pa, 'float', 3)}"
    acc = f"from {format_value(ab, 'percent', 1)} to {format_value(aa, 'percent', 1)}"
    lowers_pss = pa < pb
    keeps_acc = aa >= ab - acc_tolerance
    if lowers_pss and keeps_acc:
        text, value = f"DPO lowers the mean PSS ({pss}) without lowering accuracy ({acc})", "lowers-pss-keeps-acc"
    elif lowers_pss:
        text, value = f"DPO lowers the mean PSS ({pss}) but also lowers accuracy ({acc})", "lowers-pss-lowers-acc"
    else:
        text, value = f"DPO does not lower the mean PSS ({pss}; accuracy {acc})", "no-pss-gain"
    return Claim("claim.dpo_effect", text, value, source)


def k_dominates(k_counts: Mapping[Any, int], k: int = 2, source: str = "results/stability/clusters.json") -> Claim:
    """Whether K = k is the most frequent number of hidden-state clusters ({K: objects})."""
    counts = {int(key): int(v) for key, v in k_counts.items()}
    if not counts or sum(counts.values()) == 0:
        raise ValueError("no cluster counts")
    total = sum(counts.values())
    top = max(counts.values())
    mode = sorted(key for key, v in counts.items() if v == top)
    share = format_value(counts.get(k, 0) / total, "percent", 0)
    if mode == [k]:
        text, value = f"$K={k}$ dominates: it is chosen for {share} of the objects", True
    else:
        alt = " and ".join(f"$K={m}$" for m in mode if m != k) or f"$K={k}$"
        tie = " (a tie)" if k in mode else ""
        text = f"$K={k}$ does not dominate{tie}: {alt} is chosen most often ($K={k}$: {share} of the objects)"
        value = False
    return Claim(f"claim.k{k}_dominates", text, value, source)


@dataclass(frozen=True)
class ClaimSpec:
    key: str
    files: tuple[str, ...]
    make: Callable[[Sequence[Any]], Claim]


# The LoRA ablation's claims (the report stage adds these; dvc.yaml lists results/ablation.json as its dep).
LORA_CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("claim.best_lr", ("results/ablation.json",), lambda d: best_setting(d[0], "lr")),
    ClaimSpec("claim.best_rank", ("results/ablation.json",), lambda d: best_setting(d[0], "rank")),
    ClaimSpec("claim.best_epochs", ("results/ablation.json",), lambda d: best_setting(d[0], "epochs")),
    ClaimSpec("claim.retention_science_above", ("results/ablation.json",),
              lambda d: retention_above(d[0], "science")),
    ClaimSpec("claim.retention_general_above", ("results/ablation.json",),
              lambda d: retention_above(d[0], "general")),
)
# The stability study's claims (schema in dpo_effect / k_dominates; adapt the files when its stages land,
# then add STABILITY_CLAIMS to the report's add_claims call and the files to its deps in dvc.yaml).
STABILITY_CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec("claim.dpo_effect", ("results/stability/dpo.json",), lambda d: dpo_effect(d[0])),
    ClaimSpec("claim.k2_dominates", ("results/stability/clusters.json",),
              lambda d: k_dominates(d[0]["k_counts"])),
)
REGISTRY: tuple[ClaimSpec, ...] = LORA_CLAIMS + STABILITY_CLAIMS


def compute(root: Path, registry: Sequence[ClaimSpec] = REGISTRY) -> tuple[list[Claim], dict[str, str]]:
    """(claims whose inputs exist and hold a result, {key: why skipped})."""
    claims, skipped = [], {}
    for spec in registry:
        paths = [Path(root) / f for f in spec.files]
        missing = [str(p.relative_to(root)) for p in paths if not p.is_file()]
        if missing:
            skipped[spec.key] = f"missing {', '.join(missing)}"
            continue
        try:
            claim = spec.make([json.loads(p.read_text(encoding="utf-8")) for p in paths])
        except (ValueError, KeyError, TypeError) as err:
            skipped[spec.key] = str(err)
            continue
        claims.append(claim)
    return claims, skipped


def add_claims(ms, root: Path, registry: Sequence[ClaimSpec] = REGISTRY) -> dict[str, str]:
    # Pass only the claims whose files the calling stage declares as deps in dvc.yaml (a claim read
    # from an undeclared file would go stale silently).
    """Add every computable claim to a report MacroSet; return the skipped ones with the reason."""
    claims, skipped = compute(root, registry)
    for c in claims:
        ms.add(c.key, c.text, source=c.source, kind="latex")
    return skipped
