"""Verdicts on the headline claims of the SCSE attempt (order stability of SDSS classification).

Contract shared with the report's verdict table (`specllm.verdicts`): each row is a dict with
  key       short id, e.g. "scse.mean_pss"
  study     "scse"
  claim     the original's claim in words (plain text, no TeX)
  original  the original's value as printed (plain text)
  ours      our value with its interval (plain text), or "" when not measured
  verdict   "supported" | "contradicted" | "not testable at this scale"
  reason    one sentence: why this verdict (the decisive numbers, or why the data cannot decide)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERDICTS = ("supported", "contradicted", "not testable at this scale")


NOT_TESTABLE = VERDICTS[2]


def _ci(d: Mapping[str, Any], key: str = "mean", fmt: str = ".3f") -> str:
    return f"{d[key]:{fmt}} [95% CI {d['ci_low']:{fmt}}, {d['ci_high']:{fmt}}]"


def _precondition(analysis: Mapping[str, Any]) -> str | None:
    """Why the probe's answers cannot test a claim about order sensitivity, or None when they can."""
    base = analysis["baselines"]
    ans = base["answers"]
    if base["readout"] == "constant":
        return (f"the model answers {ans['top_label']} for {ans['top_share']:.0%} of the prompts: the answer is "
                "constant, so PSS and K describe a label prior, not classification")
    if base["readout"] != "object":
        m = base["model"]
        return (f"the majority-answer accuracy {_ci(m, fmt='.2f')} is not above the best prior-only "
                f"classifier's {base['prior_bound']:.2f} (paired interval of the difference "
                f"[{base['model_minus_prior_bound']['ci_low']:.2f}, {base['model_minus_prior_bound']['ci_high']:.2f}] "
                "includes zero): the answers do not read the object")
    return None


def _row(key: str, claim: str, original: str, ours: str, verdict: str, reason: str) -> dict[str, str]:
    assert verdict in VERDICTS, verdict
    return {"key": key, "study": "scse", "claim": claim, "original": original, "ours": ours, "verdict": verdict,
            "reason": reason}


def _mean_pss(analysis, reference) -> dict[str, str]:
    ref = float(reference["mean_pss"])
    ci = analysis["intervals"]["mean_pss"]
    ours = _ci(ci, fmt=".4f")
    why = _precondition(analysis)
    if why:
        return _row("scse.mean_pss", "mean PSS over the objects", f"{ref:.4f}", ours, NOT_TESTABLE, why)
    inside = ci["ci_low"] <= ref <= ci["ci_high"]
    return _row("scse.mean_pss", "mean PSS over the objects", f"{ref:.4f}", ours,
                "supported" if inside else "contradicted",
                f"{ref:.4f} lies {'inside' if inside else 'outside'} our interval over {ci['n']} objects")


def _star(analysis) -> dict[str, str]:
    per = analysis["intervals"]["per_class_pss"]
    ours = "; ".join(f"{c} {_ci(per[c])}" for c in per)
    claim, original = "STAR is the most order-sensitive class", "STAR highest mean PSS"
    why = _precondition(analysis)
    if why:
        return _row("scse.star_most_sensitive", claim, original, ours, NOT_TESTABLE, why)
    star, others = per["STAR"], {c: v for c, v in per.items() if c != "STAR"}
    if all(star["ci_low"] > v["ci_high"] for v in others.values()):
        return _row("scse.star_most_sensitive", claim, original, ours, "supported",
                    "STAR's interval lies above every other class's")
    above = [c for c, v in others.items() if v["ci_low"] > star["ci_high"]]
    if above:
        return _row("scse.star_most_sensitive", claim, original, ours, "contradicted",
                    f"{', '.join(above)}'s interval lies above STAR's")
    return _row("scse.star_most_sensitive", claim, original, ours, NOT_TESTABLE,
                f"the per-class intervals overlap ({star['n']} STAR objects)")


def _k_two(analysis) -> dict[str, str]:
    n = max(1, int(analysis["n_objects"]))
    counts = analysis["k_counts"]
    share2 = counts.get("2", 0) / n
    sigma = analysis["sigma"]
    ours = f"K = 2 for {share2:.0%} of {n} objects at sigma = {sigma:g} (" + \
        ", ".join(f"K = {k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: int(kv[0]))) + ")"
    claim, original = "K = 2 clusters for every object", "K = 2 for 100%"
    why = _precondition(analysis)  # SCSE's clusters separate consistent from order-induced answers
    if why:
        return _row("scse.k_two", claim, original, ours, NOT_TESTABLE, why)
    if share2 == 1.0:
        return _row("scse.k_two", claim, original, ours, "supported", f"every object has K = 2 at sigma = {sigma:g}")
    scan = analysis.get("k_scan", [])
    all_two = [s["sigma"] for s in scan if s["share_k2"] == 1.0]
    if all_two:
        return _row("scse.k_two", claim, original, ours, NOT_TESTABLE,
                    f"K depends on sigma: K = 2 for every object only at sigma = {', '.join(f'{x:g}' for x in all_two)}")
    rng = f" at any sigma from {min(s['sigma'] for s in scan):g} to {max(s['sigma'] for s in scan):g}" if scan else ""
    return _row("scse.k_two", claim, original, ours, "contradicted", f"no sigma gives K = 2 for every object{rng}")


def _dpo(analysis, reprobe, reference) -> dict[str, str]:
    b, a = float(reference["dpo_pss_before"]), float(reference["dpo_pss_after"])
    claim, original = "DPO lowers PSS without losing accuracy", f"PSS {b:.3f} -> {a:.3f}"
    g = reprobe["comparison"]["all"]
    pt, at = g["pss_test"], g["accuracy_test"]
    ours = (f"PSS {g['pss_before']:.3f} -> {g['pss_after']:.3f} (change {pt['mean_diff']:+.3f} [95% CI "
            f"{pt['ci_low']:+.3f}, {pt['ci_high']:+.3f}]); accuracy {g['accuracy_before']:.0%} -> {g['accuracy_after']:.0%} "
            f"(change [{at['ci_low']:+.2f}, {at['ci_high']:+.2f}]); {g['n']} objects")
    why = _precondition(analysis)
    after = reprobe.get("answers_after")
    if why is None and after and after.get("constant"):
        why = f"after DPO the model answers {after['top_label']} for {after['top_share']:.0%} of the prompts (constant)"
    if why is None and g["pss_before"] == 0:
        why = "no evaluation object changes its answer before DPO: there is no sensitivity to lower"
    if why:
        return _row("scse.dpo", claim, original, ours, NOT_TESTABLE, why)
    if at["ci_high"] < 0:
        return _row("scse.dpo", claim, original, ours, "contradicted", "accuracy fell: its paired interval lies below zero")
    if pt["ci_low"] > 0:
        return _row("scse.dpo", claim, original, ours, "contradicted", "PSS rose: its paired interval lies above zero")
    if pt["ci_high"] < 0:
        return _row("scse.dpo", claim, original, ours, "supported",
                    "PSS fell (paired interval below zero) and accuracy did not fall significantly")
    return _row("scse.dpo", claim, original, ours, NOT_TESTABLE,
                f"the paired interval of the PSS change includes zero with {g['n']} objects")


def stability_verdicts(analysis: Mapping[str, Any], reprobe: Mapping[str, Any],
                       reference: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per SCSE headline claim (mean PSS 0.0916, STAR most sensitive, K = 2 for every
    object, DPO lowers PSS 0.139 -> 0.073 without losing accuracy), decided from our intervals and the
    classification null baselines (analysis.json of stability_analyze, reprobe.json of stability_reprobe,
    data/reference/scse.json). A constant answer, or accuracy not above the prior-only classifier, makes
    the order-sensitivity claims "not testable at this scale" with the reason."""
    return [_mean_pss(analysis, reference), _star(analysis), _k_two(analysis), _dpo(analysis, reprobe, reference)]
