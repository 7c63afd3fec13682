"""The one place where the LoRA study's claims are decided and worded, and where its verdicts on the
original study's claims (arXiv:2508.10075) are made. The report (specllm.report.ablation) prints these
sentences as macros; the verdicts stage (specllm.verdicts) writes the verdict rows; nothing else words
a claim about the results.

Rules (every number comes from results/ablation.json, written by the select stage; the intervals are
95% paired-bootstrap intervals over the same galaxies, specllm.evaluate.paired):
  * a setting is "best" only when the interval of its absolute-error difference to the runner-up on
    the validation galaxies excludes zero; otherwise the runs are "indistinguishable at this scale";
  * a run "reads redshift" only when its MAE is below the constant predictor's (every galaxy gets
    the training median) with an interval that excludes zero; when no run does, no setting can be
    called best and the setting and MAE claims are "not testable at this scale";
  * a comparison with the original's value is "above" / "below" / "consistent" by our interval;
  * a claim names only what was varied: each axis was varied with the other two at the default run's
    values, so every "best" is "at" those values and no best combination is claimed;
  * p-values print with the resolution of their test (format_p).

Sentences are LaTeX (macros of kind latex); verdict rows are plain text (specllm.verdicts escapes them)
with the contract of specllm.stability.verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from specllm import paths
from specllm.report.macros import format_value

ABLATION = paths.rel(paths.ABLATION)  # what the messages below name

VERDICTS = ("supported", "contradicted", "not testable at this scale")
SUPPORTED, CONTRADICTED, UNTESTABLE = VERDICTS
AXES = ("lr", "rank", "epochs")
RETENTION_SETS = ("science", "general")
_AXIS_WORDS = {"lr": ("learning rate", "learning rates"), "rank": ("LoRA rank", "LoRA ranks"),
               "epochs": ("epoch count", "epoch counts")}


# ---------------------------------------------------------------- numbers

def finite(v: Any) -> float | None:
    """A finite float, or None (null, NaN, missing, a boolean)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


_num = finite


def format_p(p: float | None, resolution: float | None = None, *, max_decimals: int = 3, latex: bool = True) -> str:
    """A p-value printed with the resolution its test has.

    `resolution`: the smallest step the test can resolve (signflip_resolution): the decimals shown are
    the fewest (at least 2, at most `max_decimals`) that resolve it, so an exact sign-flip test with 9
    pairs (step 2/512) prints p = 2/512 as "p = 0.004", not "p = 0.00". A p-value below what those
    decimals can print reads "p < 0.01" (or "p < 0.001")."""
    p = _num(p)
    if p is None:
        text = "p n/a"
        return r"$p$ n/a" if latex else text
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"not a p-value: {p}")
    decimals = 2
    res = _num(resolution)
    if res is not None and res > 0:
        decimals = min(max_decimals, max(2, math.ceil(-math.log10(res) - 1e-12)))
    floor = 10.0 ** -decimals
    text = f"p < {floor:.{decimals}f}" if p < floor - 1e-15 else f"p = {p:.{decimals}f}"
    return "$" + text + "$" if latex else text


def signflip_resolution(n: int, n_draws: int | None = None) -> float:
    """The step of a two-sided sign-flip test's p-value over n pairs: exact (all 2^n sign patterns,
    p a multiple of 1/2^n, at least 2/2^n) when n_draws is None, else Monte Carlo (1/n_draws)."""
    if n < 1:
        raise ValueError("need at least one pair")
    return 1.0 / n_draws if n_draws else 2.0 / 2 ** n


def against(lo: float | None, hi: float | None, theirs: float | None) -> str | None:
    """'above' / 'below' / 'consistent': our interval against the original's value (None if either is missing)."""
    lo, hi, theirs = _num(lo), _num(hi), _num(theirs)
    if lo is None or hi is None or theirs is None:
        return None
    return "above" if lo > theirs else "below" if hi < theirs else "consistent"


def _interval(d: Mapping[str, Any] | None, kind: str = "float", precision: int = 3, latex: bool = True) -> str:
    """'+0.064 [0.050, 0.080]' of a paired difference (or a ratio with kind percent)."""
    d = d or {}
    mid, lo, hi = _num(d.get("mean_diff", d.get("ratio"))), _num(d.get("ci_low")), _num(d.get("ci_high"))
    if mid is None:
        return "n/a"

    def f(x: float, sign: bool = False, digits: int = precision) -> str:
        if not latex:
            text = f"{100 * x:.{digits}f}%" if kind == "percent" else f"{x:.{digits}f}"
            return ("+" if sign and x > 0 else "") + text
        text = format_value(x, kind, digits)
        return ("$+$" if sign and x > 0 else "") + text

    ci_digits = 0 if kind == "percent" else precision  # a percentage's interval to the whole percent
    if kind == "percent" and lo is not None and hi is not None:
        # rounded outward, so the printed interval contains the computed one: 85.29% printed as 85% would
        # sit beside "consistent with 85.2%" as if it excluded it
        lo, hi = math.floor(round(100 * lo, 9)) / 100, math.ceil(round(100 * hi, 9)) / 100
    ci = "" if lo is None or hi is None else f" [{f(lo, digits=ci_digits)}, {f(hi, digits=ci_digits)}]"
    return f(mid, sign=kind != "percent") + ci


# ---------------------------------------------------------------- decisions

def _runs(abl: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {r["run"]: r for r in abl.get("runs", [])}


def _setting(axis: str, value: Any, latex: bool = True) -> str:
    if axis == "lr":
        mantissa, exp = f"{float(value):.0e}".split("e")
        if not latex:
            return f"{mantissa}e{int(exp)}"
        return f"$10^{{{int(exp)}}}$" if mantissa == "1" else format_value(float(value), "sci", 0)
    return format_value(int(value), "int") if latex else str(int(value))


def _fixed_phrase(fixed: Mapping[str, Any], latex: bool = True) -> str:
    parts = []
    for axis in AXES:
        if axis in fixed and fixed[axis] is not None:
            v = _setting(axis, fixed[axis], latex)
            parts.append({"lr": f"learning rate {v}", "rank": f"rank {v}",
                          "epochs": f"{v} epoch{'s' if int(fixed[axis]) != 1 else ''}"}[axis])
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def decide_axis(abl: Mapping[str, Any], axis: str) -> dict[str, Any]:
    """status: 'none' (no run of the axis parses often enough), 'no-learning' (none beats the constant on
    validation), 'single' (one candidate), 'indistinguishable' or 'decided'; with the axis entry of
    ablation.json (best/runner-up values, diff, fixed settings, values tried)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    entry = dict((abl.get("axes") or {}).get(axis) or {})
    if not entry:
        raise ValueError(f"{ABLATION} has no comparison for {axis} (rerun `dvc repro select`)")
    if not entry.get("candidates"):
        status = "none"
    elif not entry.get("any_beats_constant"):
        status = "no-learning"
    elif entry.get("runner_up") is None:
        status = "single"
    else:
        status = "decided" if entry.get("decided") else "indistinguishable"
    return {**entry, "axis": axis, "status": status}


def _best_row(abl: Mapping[str, Any]) -> Mapping[str, Any]:
    runs = _runs(abl)
    if abl.get("best") not in runs:
        raise ValueError(f"{ABLATION} names no best run among its runs")
    return runs[abl["best"]]


def _constant(abl: Mapping[str, Any]) -> Mapping[str, Any]:
    c = abl.get("constant")
    if not c:
        raise ValueError(f"{ABLATION} has no constant baseline (rerun `dvc repro select`)")
    return c


def _versus_constant(row: Mapping[str, Any], split: str) -> Mapping[str, Any]:
    return (row.get("vs_constant") or {}).get(split) or {}


def reads_redshift(row: Mapping[str, Any], split: str) -> str:
    """'better' / 'worse' / 'indistinguishable' against the constant predictor on `split`."""
    d = _versus_constant(row, split)
    lo, hi = _num(d.get("ci_low")), _num(d.get("ci_high"))
    if lo is None or hi is None:
        return "indistinguishable"
    return "better" if hi < 0 else "worse" if lo > 0 else "indistinguishable"


# ---------------------------------------------------------------- sentences (LaTeX)

def axis_sentence(abl: Mapping[str, Any], axis: str) -> str:
    d = decide_axis(abl, axis)
    singular, plural = _AXIS_WORDS[axis]
    at = _fixed_phrase(d.get("fixed") or {})
    tried = ", ".join(_setting(axis, v) for v in d.get("values") or [])
    if d["status"] == "none":
        return (rf"at {at}, no run of the {plural} tried ({tried}) parses often enough to be compared, so no {singular} "
                r"can be called best")
    if d["status"] == "no-learning":
        return (rf"at {at}, none of the {plural} tried ({tried}) gives a validation MAE below the constant "
                rf"predictor's, so no {singular} can be called best at this scale")
    if d["status"] == "single":
        return rf"at {at}, only one {singular} parses often enough ({_setting(axis, d['best_value'])}), so none is best"
    diff = _interval(d.get("diff"), precision=4)
    if d["status"] == "indistinguishable":
        return (rf"at {at}, the {plural} tried ({tried}) are indistinguishable at this scale: the lowest validation "
                rf"MAE ({_setting(axis, d['best_value'])}) differs from the runner-up's ({_setting(axis, d['runner_up_value'])}) "
                rf"by {diff}, an interval that includes zero")
    return (rf"at {at}, a {singular} of {_setting(axis, d['best_value'])} gives the lowest validation MAE of the "
            rf"{plural} tried ({tried}), {diff} against the runner-up ({_setting(axis, d['runner_up_value'])})")


def combination_sentence(abl: Mapping[str, Any]) -> str:
    default = _runs(abl).get("default") or {}
    fixed = {a: default.get(a) for a in AXES}
    if any(v is None for v in fixed.values()):
        return r"the runs do not vary one setting at a time around a default run, so no setting is called best"
    return (rf"each setting was varied with the other two at the default ({_fixed_phrase(fixed)}), so no claim "
            r"about the best combination of settings can be made")


def selection_sentence(abl: Mapping[str, Any]) -> str:
    """Which run the validation rule chose, and whether it is distinguishable from the runner-up."""
    runs = _runs(abl)
    n_trained = sum(1 for n in runs if n != "base")
    cmp = abl.get("best_vs_runner_up") or {}
    n_ok = len(cmp.get("candidates") or [])
    max_unparsed = float(abl["selection"].get("max_unparsed_frac", 0.1))
    best = _best_row(abl)
    name = format_value(str(abl["best"]), "code")
    if n_ok == 0:
        return (rf"none of the {n_trained} trained runs parses at least {format_value(1 - max_unparsed, 'percent', 0)} "
                rf"of its validation answers, so the run with the fewest unparsed answers ({name}) is reported")
    head = (rf"of the {n_trained} trained runs, {n_ok} parse at least {format_value(1 - max_unparsed, 'percent', 0)} "
            rf"of their validation answers; the lowest validation MAE among them is run {name} "
            rf"({format_value(_num(best.get('val_mae')) or 0.0, 'float', 4)})")
    if cmp.get("runner_up") is None:
        return head
    other = format_value(str(cmp["runner_up"]), "code")
    diff = _interval(cmp.get("diff"), precision=4)
    if cmp.get("decided"):
        return head + rf", lower than the runner-up's ({other}; difference {diff})"
    return head + rf", but it is indistinguishable from the runner-up {other} at this scale (difference {diff})"


def runs_vs_constant_sentence(abl: Mapping[str, Any]) -> str:
    runs = [r for n, r in _runs(abl).items() if n != "base"]
    c = _constant(abl)
    beat = [r for r in runs if _versus_constant(r, "val").get("beats")]
    const = (rf"the constant predictor (every galaxy gets the training median, {format_value(float(c['value']), 'float', 3)}; "
             rf"validation MAE {format_value(_num(c.get('val_mae')) or 0.0, 'float', 4)})")
    if not beat:
        return (rf"none of the {len(runs)} trained runs has a validation MAE below that of {const} with an interval "
                r"that excludes zero, so no run is shown to read redshift at this scale")
    names = ", ".join(format_value(str(r["run"]), "code") for r in beat)
    return (rf"{len(beat)} of the {len(runs)} trained runs ({names}) have a validation MAE below that of {const} "
            r"with an interval that excludes zero")


def constant_sentence(abl: Mapping[str, Any]) -> str:
    """The selected run against the constant predictor on the test split."""
    best = _best_row(abl)
    c = _constant(abl)
    d = _versus_constant(best, "test")
    mae, cmae = _num(best.get("test_mae")), _num(c.get("test_mae"))
    if mae is None or cmae is None or _num(d.get("mean_diff")) is None:
        return r"the chosen run has no test MAE to set against the constant predictor's"
    head = (rf"its test MAE ({format_value(mae, 'float', 4)}) against the constant predictor's "
            rf"({format_value(cmae, 'float', 4)}) differs by {_interval(d, precision=4)}")
    verdict = reads_redshift(best, "test")
    if verdict == "better" and not any(_versus_constant(r, "val").get("beats")
                                       for n, r in _runs(abl).items() if n != "base"):
        # the rule fixed before the runs decides on the validation split, over every run; one test split
        # below the constant after none was on validation is a hint, not the finding the rule asks for
        return head + (r": lower on the test split, but as no run was below the constant on the validation split, "
                       r"where the runs are compared, the rule does not count this as reading redshift")
    if verdict == "better":
        return head + r": it reads redshift from the spectra"
    if verdict == "worse":
        return head + r": it does worse than predicting the training median for every galaxy"
    return head + r": it cannot be told apart from predicting the training median for every galaxy"


def retention_sentence(abl: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    best = _best_row(abl)
    refrow = _reference_row(ref)
    parts = []
    for s in RETENTION_SETS:
        r = (best.get("retention") or {}).get(s) or {}
        if _num(r.get("ratio")) is None:
            return r"the retention of the chosen run was not measured"
        text = rf"{_interval(r, 'percent', 1)} of the base model's {s} accuracy"
        above = {"ratio": r.get("above_chance"), "ci_low": r.get("above_chance_ci_low"),
                 "ci_high": r.get("above_chance_ci_high")}
        if _num(above["ratio"]) is not None:
            text += rf" ({_interval(above, 'percent', 1)} of its accuracy above chance)"
        theirs = _num(refrow.get(f"{s}_retention"))
        rel = against(r.get("ci_low"), r.get("ci_high"), theirs)
        if rel is not None:
            word = {"above": "above", "below": "below", "consistent": "consistent with"}[rel]
            text += rf", {word} the original's {format_value(theirs, 'percent', 1)}"
        parts.append(text)
    return r"the chosen run keeps " + " and ".join(parts)


def lora_claims(abl: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, str]:
    """{macro key suffix: LaTeX sentence} for the report (keys ablation.claim.<suffix>)."""
    out = {"selection": selection_sentence(abl), "constant": constant_sentence(abl),
           "runs_vs_constant": runs_vs_constant_sentence(abl), "combination": combination_sentence(abl),
           "retention": retention_sentence(abl, ref)}
    for axis in AXES:
        if (abl.get("axes") or {}).get(axis):
            out[f"axis_{axis}"] = axis_sentence(abl, axis)
    return out


# ---------------------------------------------------------------- verdicts (plain text)

def _reference_row(ref: Mapping[str, Any]) -> Mapping[str, Any]:
    best = ref.get("best") or {}
    return next((r for r in ref.get("rows", []) if all(_num(r.get(k)) == _num(best.get(k)) for k in AXES)), {})


def _no_learning_reason(abl: Mapping[str, Any]) -> str:
    c = _constant(abl)
    runs = [r for n, r in _runs(abl).items() if n != "base" and _num(r.get("val_mae")) is not None]
    best = min(runs, key=lambda r: r["val_mae"], default=None)
    if best is None:
        return "no run beats the constant baseline (no run has a validation MAE)"
    return (f"no run beats the constant baseline: the lowest validation MAE ({best['run']}, {best['val_mae']:.4f}) "
            f"against the constant's {c.get('val_mae', float('nan')):.4f} differs by "
            f"{_interval(_versus_constant(best, 'val'), precision=4, latex=False)}")


def _axis_verdict(abl: Mapping[str, Any], axis: str, claimed: Any) -> dict[str, str]:
    d = decide_axis(abl, axis)
    singular = _AXIS_WORDS[axis][0]
    at = _fixed_phrase(d.get("fixed") or {}, latex=False)
    row = {"key": f"lora.best_{axis}", "study": "lora",
           "claim": f"{singular} {_setting(axis, claimed, False)} is best" + (f" (at {at})" if at else ""),
           "original": _setting(axis, claimed, False)}
    best_v, run_v = d.get("best_value"), d.get("runner_up_value")
    diff = _interval(d.get("diff"), precision=4, latex=False)
    ours = "" if best_v is None else f"lowest val MAE: {_setting(axis, best_v, False)}"
    if run_v is not None:
        ours += f"; minus runner-up {_setting(axis, run_v, False)}: {diff}"
    tried = [_num(v) for v in d.get("values") or []]
    if _num(claimed) not in tried:
        return {**row, "ours": ours, "verdict": UNTESTABLE, "reason": f"{_setting(axis, claimed, False)} was not run"}
    if d["status"] == "none":
        return {**row, "ours": ours, "verdict": UNTESTABLE, "reason": "no run of this ablation parses often enough"}
    if d["status"] == "no-learning":
        return {**row, "ours": ours, "verdict": UNTESTABLE, "reason": _no_learning_reason(abl)}
    if d["status"] == "single":
        return {**row, "ours": ours, "verdict": UNTESTABLE, "reason": f"only one {singular} can be compared"}
    if d["status"] == "indistinguishable":
        return {**row, "ours": ours, "verdict": UNTESTABLE,
                "reason": f"best and runner-up are indistinguishable at this scale: the interval {diff} includes 0"}
    if _num(best_v) == _num(claimed):
        return {**row, "ours": ours, "verdict": SUPPORTED,
                "reason": f"it beats the runner-up with an interval that excludes 0 ({diff})"}
    return {**row, "ours": ours, "verdict": CONTRADICTED,
            "reason": f"{_setting(axis, best_v, False)} beats the runner-up with an interval that excludes 0 ({diff})"}


def _mae_verdict(abl: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, str]:
    theirs = _num(_reference_row(ref).get("mae"))
    best = _best_row(abl)
    c = _constant(abl)
    d = _versus_constant(best, "test")
    mae = _num(best.get("test_mae"))
    row = {"key": "lora.mae", "study": "lora", "claim": "LoRA teaches the model to read redshift (test MAE "
           + ("n/a" if theirs is None else f"{theirs:.3f}") + ")",
           "original": "n/a" if theirs is None else f"{theirs:.3f} ({ref.get('n_train', '?')} DR16 spectra)",
           "ours": "n/a" if mae is None else (f"{mae:.4f} (constant {c.get('test_mae', float('nan')):.4f}; "
                                              f"difference {_interval(d, precision=4, latex=False)})")}
    differ = f"our data differ from the original's, so {theirs:.3f} itself is not compared" if theirs else \
        "the original's value is not in the reference file"
    if not abl.get("any_beats_constant"):
        return {**row, "verdict": UNTESTABLE, "reason": f"{_no_learning_reason(abl)}; {differ}"}
    if reads_redshift(best, "test") == "better":
        return {**row, "verdict": SUPPORTED, "reason": f"the chosen run beats our constant baseline on the test split "
                f"with an interval that excludes 0; {differ}"}
    return {**row, "verdict": UNTESTABLE, "reason": f"the chosen run does not beat our constant baseline on the test "
            f"split; {differ}"}


def _retention_verdict(abl: Mapping[str, Any], ref: Mapping[str, Any], s: str, level: float) -> dict[str, str]:
    best = _best_row(abl)
    r = (best.get("retention") or {}).get(s) or {}
    theirs = _num(_reference_row(ref).get(f"{s}_retention"))
    ours = "not measured"
    if _num(r.get("ratio")) is not None:
        ours = _interval(r, "percent", 1, latex=False)
        if _num(r.get("above_chance")) is not None:
            ours += "; above chance " + _interval({"ratio": r["above_chance"], "ci_low": r.get("above_chance_ci_low"),
                                                   "ci_high": r.get("above_chance_ci_high")}, "percent", 1, latex=False)
    row = {"key": f"lora.retention_{s}", "study": "lora",
           "claim": f"{s} retention stays above {100 * level:.0f}%",
           "original": "n/a" if theirs is None else f"{100 * theirs:.1f}%", "ours": ours}
    lo, hi = _num(r.get("ci_low")), _num(r.get("ci_high"))
    if lo is None or hi is None:
        return {**row, "verdict": UNTESTABLE, "reason": "the chosen run's retention has no interval"}
    if not abl.get("any_beats_constant"):
        # the claim is about what fine-tuning that teaches the task costs; an adapter that learned nothing
        # measures no such cost, whatever its ratio
        return {**row, "verdict": UNTESTABLE, "reason": "no run is shown to read redshift (none beats the constant baseline on "
                "the validation split), "
                "so retention does not measure the cost of learning the task"}
    if lo > level:
        return {**row, "verdict": SUPPORTED, "reason": f"the interval lies above {100 * level:.0f}%"}
    if hi < level:
        return {**row, "verdict": CONTRADICTED, "reason": f"the interval lies below {100 * level:.0f}%"}
    return {**row, "verdict": UNTESTABLE, "reason": f"the interval includes {100 * level:.0f}%"}


def lora_verdicts(abl: Mapping[str, Any], ref: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per headline claim of arXiv:2508.10075 (the contract of specllm.stability.verdicts)."""
    claimed = ref.get("best") or {}
    rows = [_axis_verdict(abl, axis, claimed[axis]) for axis in AXES if axis in claimed]
    rows.append(_mae_verdict(abl, ref))
    for s, level in sorted((ref.get("retention_claims") or {}).items(), key=lambda kv: RETENTION_SETS.index(kv[0])
                           if kv[0] in RETENTION_SETS else 99):
        rows.append(_retention_verdict(abl, ref, s, float(level)))
    return rows


def study_summary(rows: Sequence[Mapping[str, str]], study_words: str, cause: str | None = None) -> str:
    """'Of the 6 claims of <study>, 0 are supported, 1 contradicted and 5 not testable at this scale[: cause]'."""
    if not rows:
        return f"{study_words} has no verdicts in this build"
    n = {v: sum(1 for r in rows if r["verdict"] == v) for v in VERDICTS}
    text = (f"of the {len(rows)} headline claims of {study_words}, {n[SUPPORTED]} "
            f"{'is' if n[SUPPORTED] == 1 else 'are'} supported, {n[CONTRADICTED]} contradicted and "
            f"{n[UNTESTABLE]} not testable at this scale")
    return text + (f": {cause}" if cause and n[UNTESTABLE] else "")


def lora_cause(abl: Mapping[str, Any]) -> str | None:
    """The one reason that makes the LoRA study's claims untestable, when there is one."""
    if not abl.get("any_beats_constant"):
        return "no LoRA run is shown to read redshift better than the constant training-median predictor"
    return None
