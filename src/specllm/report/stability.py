"""The stability study's part of the paper: macros, booktabs tables and figures from results/stability/.

One of the report's section modules (specllm.report.section: read_inputs -> make_macros ->
make_tables -> make_figures); add_stability(macros, results_dir, out_dir, reference) runs all
four at once (tests).

Every number and every qualitative claim the section prints is a macro (keys `stability.*`):
whether order sensitivity is present, whether one K dominates, whether DPO lowered PSS and whether
it kept accuracy are text macros decided here from the numbers. The published SCSE figures come from
data/reference/scse.json (with its source and citation), never from the TeX.

Tables stability_{summary,confusion,checks,categories,before_after,baselines}; figures
stability_{eigenvalues,hidden_pca,pss,before_after,k_sigma} (rows of specllm.artifacts.REGISTRY).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import paths
from specllm.errors import InputError
from specllm.io import read_csv, read_json
from specllm.report import figures, tables
from specllm.report.macros import MacroSet, escape_latex, format_value
from specllm.report.section import Context, Section
from specllm.stability.analysis import HIGH_PSS
from specllm.vocab import CLASSES  # row order of the stability tables

REFERENCE = Path(paths.rel(paths.SCSE_REFERENCE))  # relative: the paper names it so
FIX = "run the stability stages (`dvc repro stability_reprobe`)"
ANSWER_COLOURS = {**figures.CLASS_COLOURS, "": "#999999"}
CLUSTER_COLOURS = ("#1b6ca8", "#d1495b", "#2a9d3f", "#7b4ea3", "#e39b2d", "#555555", "#8c564b", "#17becf")


def _json(path: Path) -> dict[str, Any]:
    return read_json(path, FIX)


def _csv(path: Path) -> pd.DataFrame:
    return read_csv(path, FIX, dtype={"obj_id": str}, keep_default_na=False)


def _f(v: Any, kind: str = "float", precision: int | None = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "--"
    return format_value(v, kind, None if kind == "int" else precision)


def _pct(x: float) -> str:
    return format_value(x, "percent", 0)


def _ci(d: Mapping[str, Any], kind: str = "float", precision: int = 3, key: str = "mean") -> str:
    r"""'value (95\% CI low--high)' in LaTeX."""
    f = (lambda v: _pct(v)) if kind == "percent" else (lambda v: format_value(v, "float", precision))
    return f"{f(d[key])} (95\\% CI {f(d['ci_low'])}--{f(d['ci_high'])})"


def readout_claim(base: Mapping[str, Any]) -> str:
    """Whether the answers read the object, from the answer shares and the null baselines (LaTeX)."""
    ans, m, diff = base["answers"], base["model"], base["model_minus_prior_bound"]
    if base["readout"] == "constant":
        return (f"the model answers {ans['top_label']} for {_pct(ans['top_share'])} of the prompts: its answer does "
                "not depend on the object, so order sensitivity, $K$ and the quality checks are not testable at this scale")
    if base["readout"] == "prior":
        return (f"its majority-answer accuracy, {_ci(m, 'percent')}, is not above the {_pct(base['prior_bound'])} that "
                "a classifier reading only the feature order can reach on these objects (the paired interval of the "
                f"difference, {format_value(diff['ci_low'], 'float', 2)} to {format_value(diff['ci_high'], 'float', 2)}, "
                "includes zero), so the answers cannot be told from a label prior at this scale")
    return (f"its majority-answer accuracy, {_ci(m, 'percent')}, is above the {_pct(base['prior_bound'])} that a "
            "classifier reading only the feature order can reach on these objects (paired interval of the difference "
            f"{format_value(diff['ci_low'], 'float', 2)} to {format_value(diff['ci_high'], 'float', 2)}), so the answers "
            "depend on the object")


def sensitivity_claim(dec: Mapping[str, Any], intervals: Mapping[str, Any], overall: Mapping[str, Any]) -> str:
    """Order sensitivity in words, decided by analysis.decisions (LaTeX)."""
    ci = _ci(intervals["mean_pss"])
    if dec["sensitivity"] == "not testable":
        return f"not testable at this scale (the answer is constant; mean PSS {ci} describes a label prior)"
    if dec["sensitivity"] == "present":
        prior = "" if dec.get("above_prior", True) else \
            ("; as the answers do not read the object, this is the order sensitivity of a label prior, "
             "not of a classification")
        return (f"present: the mean PSS is {ci}, and the answer changes with the order for "
                f"{_pct(1 - overall['share_stable'])} of the objects{prior}")
    if dec["sensitivity"] == "absent":
        return f"absent: no object changes its answer with the order (mean PSS {ci})"
    return f"not decided at this scale: the mean PSS is {ci}, an interval that includes zero"


def checks_claim(dec: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]) -> str:
    if not dec["testable"]:
        return ("The quality checks (Table~\\ref{tab:stability-checks}) are not testable at this scale: "
                "with a constant answer they score the label prior")
    passed = sum(bool(c["passed"]) for c in checks)
    return f"{passed} of {len(checks)} quality checks pass (Table~\\ref{{tab:stability-checks}})"


def after_claim(g: Mapping[str, Any], testable: bool = True, reads_object: bool = True) -> str:
    """What alignment did to PSS and accuracy, decided by the paired intervals of the changes."""
    pt, at = g["pss_test"], g["accuracy_test"]
    if not testable:
        return "cannot be judged at this scale (the answer is constant)"
    pss = ("lowered the mean PSS" if pt["ci_high"] < 0 else "raised the mean PSS" if pt["ci_low"] > 0 else
           "did not change the mean PSS measurably")
    acc = ("lowered accuracy" if at["ci_high"] < 0 else "raised accuracy" if at["ci_low"] > 0 else
           "left accuracy within its interval")
    # the same condition as the SCSE verdicts (stability/verdicts.py): answers that do not read the object
    # make any PSS change a change of the label prior's order sensitivity
    tail = "" if reads_object else (", changes of a label prior's order sensitivity, since the answers do not "
                                    "read the object (accuracy not above the prior-only classifier)")
    return f"{pss} and {acc}{tail}"


def k_claim(an: Mapping[str, Any]) -> str:
    """Which K the eigengap chose, in words (K = 1 means one cluster: the orders are not split)."""
    n = max(1, an["n_objects"])
    one = format_value(an["k_counts"].get("1", 0) / n, "percent", 0)
    if an["k_dominant"] == 1:
        return rf"$K=1$ (a single cluster) for {one} of the objects"
    dom = format_value(an["k_dominant_share"], "percent", 0)
    return rf"$K={an['k_dominant']}$ for {dom} of the objects and $K=1$ for {one}"


def k_sentence(an: Mapping[str, Any]) -> str:
    """K at the study's sigma and how it moves over the scan (LaTeX); not testable with a constant answer."""
    scan = an.get("k_scan", [])
    lo, hi = (scan[0], scan[-1]) if scan else (None, None)
    if scan and len({s["mean_k"] for s in scan}) == 1:
        return k_claim(an) + (f" at every $\\sigma$ of the scan, {lo['sigma']:g} to {hi['sigma']:g} "
                              "(Fig.~\\ref{fig:stability-ksigma}): here $K$ does not depend on $\\sigma$") + \
            ("" if an["decisions"]["testable"] else ". With a constant answer the clusters cannot be related to answers")
    moves = (f"; over the scan it goes from a mean of {format_value(lo['mean_k'], 'float', 1)} at "
             f"$\\sigma={lo['sigma']:g}$ to {format_value(hi['mean_k'], 'float', 1)} at $\\sigma={hi['sigma']:g}$ "
             "(Fig.~\\ref{fig:stability-ksigma}), so $K$ is a property of $\\sigma$ as much as of the object") if scan else ""
    head = k_claim(an) + moves
    if not an["decisions"]["testable"]:
        return head + ". With a constant answer the clusters cannot be related to answers: not testable at this scale"
    return head


def compare_claim(ci: Mapping[str, Any], ref: float, testable: bool, reads_object: bool = True) -> str:
    if not testable:
        return "not comparable with that value (our answer is constant)"
    if not reads_object:  # the verdicts' condition (stability/verdicts.py): a prior's PSS is not SCSE's quantity
        return ("not comparable with that value: our answers do not read the object (majority-answer accuracy "
                "not above the prior-only classifier), so our PSS measures a label prior's order sensitivity")
    if ci["ci_high"] < ref:
        return "below that value (our interval lies below it)"
    if ci["ci_low"] > ref:
        return "above that value (our interval lies above it)"
    return "consistent with that value (our interval contains it)"


def load(results_dir: Path, reference: Path | None = None) -> dict[str, Any]:
    """Every result file of the stability study (results/stability/) and the published reference, read."""
    res = Path(results_dir)
    reference = Path(reference or REFERENCE)
    files = {n: res / paths.STABILITY_FILES[key].name for n, key in (  # results_dir may be another folder
        ("sample", "sample"), ("warmup", "warmup"), ("probe", "probe_json"), ("analysis", "analysis"), ("dpo", "dpo"),
        ("reprobe", "reprobe_json"), ("per_object", "per_object"), ("probe_csv", "probe"), ("hidden", "hidden"),
        ("spectral", "spectral"), ("dpo_loss", "dpo_loss"))}
    sample, probe, an = _json(files["sample"]), _json(files["probe"]), _json(files["analysis"])
    warm = _json(files["warmup"])
    dpo, rep, ref = _json(files["dpo"]), _json(files["reprobe"]), _json(reference)
    per_object, probe_rows = _csv(files["per_object"]), _csv(files["probe_csv"])
    for key in ("hidden", "spectral"):
        if not files[key].is_file():
            raise InputError(files[key], "-", "not found", FIX)
    hidden, spec = np.load(files["hidden"]), np.load(files["spectral"])
    return {"files": files, "reference": reference, "sample": sample, "probe": probe, "an": an, "warm": warm,
            "dpo": dpo, "rep": rep, "ref": ref, "per_object": per_object, "probe_rows": probe_rows, "hidden": hidden,
            "spec": spec}


def read_inputs(ctx: Context) -> dict[str, Any] | None:
    """The study's results (None when the report was not given results/stability)."""
    if ctx.stability is None:
        return None
    return load(ctx.stability, reference=paths.at(ctx.inputs.root, paths.SCSE_REFERENCE))


def make_macros(macros: MacroSet, d: Mapping[str, Any]) -> None:
    """Every stability macro, under its full key (stability.*)."""
    files, reference = d["files"], d["reference"]
    sample, probe, an, warm, dpo, rep, ref = (d[k] for k in ("sample", "probe", "an", "warm", "dpo", "rep", "ref"))

    def add(key: str, value: Any, src: Path, kind: str | None = None, precision: int | None = None) -> None:
        macros.add(key, value, source=paths.shown(src), kind=kind, precision=precision)

    s, p = files["sample"], files["probe"]
    add("stability.n_objects", sample["n_objects"], s)
    add("stability.n_per_class", sample["n_per_class"], s)
    add("stability.n_orders", sample["n_orders"], s)
    add("stability.n_prompts", sample["n_prompts"], s)
    add("stability.catalogue", "the imported SDSS17 catalogue" if sample["catalogue_source"] == "sdss17" else
        "the embedded catalogue", s)
    n_align = sum(c["alignment"] for c in sample["counts"].values())
    add("stability.n_alignment", n_align, s)
    add("stability.n_evaluation", sample["n_objects"] - n_align, s)
    w = files["warmup"]
    add("stability.warmup.n_objects", warm["n_objects"], w)
    add("stability.warmup.per_class", warm["per_class"], w)
    add("stability.warmup.epochs", warm["settings"]["epochs"], w)
    add("stability.warmup.orders", warm["orders_per_object"], w)
    add("stability.warmup.distinct_orders", warm["distinct_orders"], w)
    add("stability.warmup.probed_orders_taught", warm["probed_orders_taught"], w)
    add("stability.warmup.lr", warm["settings"]["lr"], w, "sci", 1)
    add("stability.warmup.rank", warm["settings"]["rank"], w)
    add("stability.warmup.target_modules", ", ".join(warm["settings"]["target_modules"]), w, "code")
    add("stability.warmup.steps", warm["steps"], w)
    add("stability.warmup.minutes", warm["seconds"] / 60, w, "float", 1)
    for key in ("accuracy_before", "accuracy_after"):
        add(f"stability.warmup.{key}", "--" if warm[key] is None else _pct(warm[key]), w, "latex")
    add("stability.probe.prefix_tokens", probe.get("prefix_tokens", 0), p)
    add("stability.probe.prompts_per_s", probe["prompts_per_s"], p, "float", 1)
    add("stability.probe.mean_tokens", probe["mean_prompt_tokens"], p, "float", 0)
    add("stability.probe.device", probe["device"].upper() if probe["device"] == "cuda" else "CPU", p)
    add("stability.probe.n_tied", probe["n_tied"], p)
    add("stability.probe.thinking", "passed" if probe["thinking_switch"] else "not needed (the template has no switch)", p)
    ft = probe["free_text"]
    add("stability.free.n_decoded", ft["n_decoded"], p)
    add("stability.free.n_unparseable", ft["n_unparseable"], p)
    add("stability.free.agreement", "--" if ft["agreement"] is None else format_value(ft["agreement"], "percent", 0), p, "latex")

    a, o = files["analysis"], an["overall"]
    add("stability.mean_pss", o.get("mean_pss", 0.0), a, "float", 3)
    add("stability.share_stable", o.get("share_stable", 0.0), a, "percent", 0)
    add("stability.share_high", o.get("share_high_pss", 0.0), a, "percent", 0)
    add("stability.high_pss_level", HIGH_PSS, Path("src/specllm/stability/analysis.py"), "float", 1)  # "PSS above 0.5"
    add("stability.max_pss", o.get("max_pss", 0.0), a, "float", 3)
    add("stability.accuracy", o.get("accuracy", 0.0), a, "percent", 0)
    add("stability.prompt_accuracy", an["prompt_accuracy"], a, "percent", 0)
    add("stability.n_unanswerable", o.get("n_unanswerable", 0), a)
    for c in CLASSES:
        pc = an["per_class"][c]
        add(f"stability.class.{c}.mean_pss", pc.get("mean_pss", 0.0), a, "float", 3)
        add(f"stability.class.{c}.accuracy", pc.get("accuracy", 0.0), a, "percent", 0)
    dec, iv, base = an["decisions"], an["intervals"], an["baselines"]
    add("stability.sensitivity_claim", sensitivity_claim(dec, iv, o), a, "latex")
    add("stability.readout_claim", readout_claim(base), a, "latex")
    add("stability.checks_claim", checks_claim(dec, an["checks"]), a, "latex")
    add("stability.pss_ci_low", iv["mean_pss"]["ci_low"], a, "float", 3)
    add("stability.pss_ci_high", iv["mean_pss"]["ci_high"], a, "float", 3)
    add("stability.acc_ci_low", iv["accuracy"]["ci_low"], a, "percent", 0)
    add("stability.acc_ci_high", iv["accuracy"]["ci_high"], a, "percent", 0)
    add("stability.prior_bound", base["prior_bound"], a, "percent", 0)
    add("stability.top_label", base["answers"]["top_label"], a)
    add("stability.top_share", base["answers"]["top_share"], a, "percent", 0)
    ra = an["representative"]
    add("stability.rep.accuracy", _ci(ra["accuracy"], "percent"), a, "latex")
    add("stability.rep.agree", ra["share_agree_majority"], a, "percent", 0)
    var = an["variance"]
    for space in ("raw", "centred"):
        for part in ("order", "object"):
            add(f"stability.var.{space}.{part}", _ci(var[space][part], "percent", key="share"), a, "latex")
    add("stability.k_dominant", an["k_dominant"], a)
    add("stability.k_dominant_share", an["k_dominant_share"], a, "percent", 0)
    add("stability.k_one_share", an["k_counts"].get("1", 0) / max(1, an["n_objects"]), a, "percent", 0)
    add("stability.k_sentence", k_sentence(an), a, "latex")
    add("stability.sigma_scan_low", an["k_scan"][0]["sigma"], a, "sci", 0)
    add("stability.sigma_scan_high", an["k_scan"][-1]["sigma"], a, "sci", 0)
    add("stability.share_aligned", an["share_aligned"], a, "percent", 0)
    add("stability.sigma", an["sigma"], a, "float", 2)
    checks = an["checks"]
    add("stability.checks_total", len(checks), a)

    d = files["dpo"]
    for cat, n in dpo["categories"].items():
        add(f"stability.cat.{cat}", n, d)
    add("stability.dpo.n_pairs", dpo["n_pairs"], d)
    add("stability.dpo.steps", dpo["steps"], d)
    add("stability.dpo.pair_orders", dpo["pair_orders"], d)
    add("stability.dpo.beta", dpo["settings"]["beta"], d, "float", 2)
    add("stability.dpo.lr", dpo["settings"]["lr"], d, "sci", 1)
    add("stability.dpo.epochs", dpo["settings"]["epochs"], d)
    add("stability.dpo.rank", dpo["settings"]["rank"], d)
    add("stability.dpo.loss_first", dpo["loss_first"] if dpo["loss_first"] is not None else 0.0, d, "float", 3)
    add("stability.dpo.loss_last", dpo["loss_last"] if dpo["loss_last"] is not None else 0.0, d, "float", 3)
    add("stability.dpo.peak_mib", dpo["peak_memory_bytes"] / 2**20, d, "float", 0)
    add("stability.dpo.model_mib", dpo["model_bytes"] / 2**20, d, "float", 1)
    add("stability.dpo.adapter_mib", dpo["adapter_bytes"] / 2**20, d, "float", 2)
    add("stability.dpo.optimizer_mib", dpo["optimizer_bytes"] / 2**20, d, "float", 2)
    add("stability.dpo.peak_kind", "CUDA maximum allocated memory" if dpo["device"] == "cuda" else
        "peak resident set size of the process (Python, libraries and data included)", d)
    add("stability.dpo.trainable", dpo["trainable_params"], d)

    r, cmp = files["reprobe"], rep["comparison"]
    for group in ("all", *CLASSES):
        g = cmp.get(group)
        if g is None:
            continue
        if group == "all":
            add("stability.after.pss_before", g["pss_before"], r, "float", 3)
            add("stability.after.pss_after", g["pss_after"], r, "float", 3)
            add("stability.after.acc_before", g["accuracy_before"], r, "percent", 0)
            add("stability.after.acc_after", g["accuracy_after"], r, "percent", 0)
        else:
            add(f"stability.after.{group}.pss_before", g["pss_before"], r, "float", 3)
            add(f"stability.after.{group}.pss_after", g["pss_after"], r, "float", 3)
            add(f"stability.after.{group}.acc_before", g["accuracy_before"], r, "percent", 0)
            add(f"stability.after.{group}.acc_after", g["accuracy_after"], r, "percent", 0)
    g = cmp["all"]
    add("stability.after.pss_diff", g["pss_test"]["mean_diff"], r, "float", 3)
    add("stability.after.pss_ci_low", g["pss_test"]["ci_low"], r, "float", 3)
    add("stability.after.pss_ci_high", g["pss_test"]["ci_high"], r, "float", 3)
    add("stability.after.pss_p", g["pss_test"]["p_value"], r, "float", 2)
    add("stability.after.acc_diff", g["accuracy_test"]["mean_diff"], r, "percent", 0)
    add("stability.after.acc_p", g["accuracy_test"]["p_value"], r, "float", 2)
    add("stability.after.n", g["n"], r)
    add("stability.after.claim", after_claim(g, dec["testable"], dec.get("above_prior", True)), r)
    ci = g["pss_test"]
    significant = ci["ci_high"] < 0 or ci["ci_low"] > 0
    add("stability.after.significance", "the paired interval excludes zero" if significant else "the paired interval includes zero", r)

    add("stability.scse.mean_pss", ref["mean_pss"], reference, "float", 4)
    add("stability.scse.share_stable", ref["share_fully_stable"], reference, "percent", 0)
    add("stability.scse.dpo_before", ref["dpo_pss_before"], reference, "float", 3)
    add("stability.scse.dpo_after", ref["dpo_pss_after"], reference, "float", 3)
    add("stability.scse.cite", ref["citation"], reference, "latex")
    add("stability.scse.method_cite", ref.get("method_citation", ref["citation"]), reference, "latex")
    add("stability.scse.compare", compare_claim(iv["mean_pss"], ref["mean_pss"], dec["testable"], dec.get("above_prior", True)),
        a, "latex")


def make_tables(d: Mapping[str, Any]) -> dict[str, str]:
    return {**_tables(d["an"], d["dpo"], d["rep"]["comparison"]), **_baselines_table(d["an"])}


def make_figures(d: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    an, spec, cmp = d["an"], d["spec"], d["rep"]["comparison"]
    drawn = [_eigenvalues(spec, an, fig_dir / "stability_eigenvalues"),
             _hidden_pca(d["hidden"], spec, d["probe_rows"], an, fig_dir / "stability_hidden_pca"),
             _pss(d["per_object"], fig_dir / "stability_pss"),
             _before_after(cmp, fig_dir / "stability_before_after"),
             _k_sigma(an, fig_dir / "stability_k_sigma")]
    return [fig_dir / f"stability_{fn.__name__.strip('_')}.pdf" for fn in drawn]


SECTION = Section("stability", read_inputs, make_macros, make_tables, make_figures)


def add_stability(macros: MacroSet, results_dir: Path, out_dir: Path, reference: Path | None = None) -> list[Path]:
    """All of the section at once (tests): add the macros, write the tables and figures under out_dir;
    return the result files read."""
    d = load(results_dir, reference)
    make_macros(macros, d)
    for name, text in sorted(make_tables(d).items()):
        tables.write(Path(out_dir) / "tables" / f"{name}.tex", text)
    make_figures(d, Path(out_dir) / "figures")
    files = d["files"]
    return [files[k] for k in ("sample", "warmup", "probe", "analysis", "dpo", "reprobe", "per_object", "probe_csv",
                               "hidden", "spectral")] + [d["reference"]]


# ---------------------------------------------------------------- tables

def _tables(an: Mapping[str, Any], dpo: Mapping[str, Any], cmp: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    rows = []
    for name, s in [*((c, an["per_class"][c]) for c in CLASSES), ("all", an["overall"])]:
        rows.append([escape_latex(name), _f(s.get("n", 0), "int"), _f(s.get("mean_pss")), _f(s.get("share_stable"), "percent", 0),
                     _f(s.get("share_high_pss"), "percent", 0), _f(s.get("max_pss")), _f(s.get("accuracy"), "percent", 0)])
    rows.insert(3, tables.MIDRULE)
    out["stability_summary"] = (tables.booktabs(
        ["class", "$n$", "mean PSS", "PSS $=0$", "PSS $>0.5$", "max PSS", "accuracy"], rows, ["l"] + ["r"] * 6))
    crow = [[escape_latex(c), *(_f(an["confusion"][c][x], "int") for x in (*CLASSES, "none"))] for c in CLASSES]
    out["stability_confusion"] = (tables.booktabs(
        ["true \\textbackslash{} answer", *CLASSES, "none"], crow, ["l"] + ["r"] * 4))
    chk = []
    for c in an["checks"]:
        fails = ", ".join(c["failing"][:4]) + (f" (+{len(c['failing']) - 4})" if len(c["failing"]) > 4 else "")
        result = ("pass" if c["passed"] else "fail") if an["decisions"]["testable"] else "not testable"
        chk.append([escape_latex(c["name"].replace("_", " ")), result,
                    _f(c["n_failing"], "int"), escape_latex(fails) or "--"])
    out["stability_checks"] = (tables.booktabs(
        ["check", "result", "failing", "objects (first four)"], chk, ["l", "l", "r", "p{0.38\\linewidth}"]))
    cats = [[escape_latex(k.replace("_", " ")), _f(v, "int")] for k, v in dpo["categories"].items()]
    cats.append(tables.MIDRULE)
    cats.append(["preference pairs", _f(dpo["n_pairs"], "int")])
    out["stability_categories"] = tables.booktabs(["category", "objects"], cats, ["l", "r"])
    ba = []
    for group in ("all", *CLASSES):
        g = cmp.get(group)
        if g is None:
            continue
        t = g["pss_test"]
        ba.append([escape_latex(group), _f(g["n"], "int"), _f(g["pss_before"]), _f(g["pss_after"]),
                   f"[{_f(t['ci_low'])}, {_f(t['ci_high'])}]", _f(g["accuracy_before"], "percent", 0),
                   _f(g["accuracy_after"], "percent", 0)])
    out["stability_before_after"] = (tables.booktabs(
        ["set", "$n$", "PSS before", "PSS after", "95\\% CI of change", "acc.\\ before", "acc.\\ after"], ba,
        ["l"] + ["r"] * 6))
    return out


def _baselines_table(an: Mapping[str, Any]) -> dict[str, str]:
    """The model's majority-answer accuracy beside the classification null baselines."""
    b, iv = an["baselines"], an["intervals"]
    n_ev = b["model_evaluation"]["n"]
    rows = [["model, majority answer over orders", _f(b["n_objects"], "int"), _ci(b["model"], "percent")],
            ["model, representative (cluster-centre) answer", _f(b["n_objects"], "int"),
             _ci(iv["representative_accuracy"], "percent")],
            ["majority class = prior-only bound (in sample)", _f(b["n_objects"], "int"), _pct(b["prior_bound"])],
            tables.MIDRULE,
            ["model, majority answer over orders", _f(n_ev, "int"), _ci(b["model_evaluation"], "percent")
             if n_ev else "--"]]
    for key, name in (("majority_class_held_out", "majority class of the alignment set"),
                      ("prior_only_held_out", "prior-only: most frequent class per order"),
                      ("model_prior_held_out", "the model's most frequent answer per order")):
        if key in b:
            rows.append([name, _f(n_ev, "int"), _pct(b[key]["accuracy"])])
    table = tables.booktabs(
        ["classifier (accuracy of the per-object answer)", "objects", "accuracy"], rows, ["l", "r", "r"])
    return {"stability_baselines": table}


# ---------------------------------------------------------------- figures


def _k_sigma(an: Mapping[str, Any], stem: Path):
    scan = an["k_scan"]
    sig = [s["sigma"] for s in scan]
    n = max(1, an["n_objects"])
    with figures._style():
        fig, ax = figures.plt.subplots(figsize=(figures.SINGLE, 2.3))
        for k, colour, label in ((1, CLUSTER_COLOURS[0], "$K=1$"), (2, CLUSTER_COLOURS[1], "$K=2$")):
            ax.plot(sig, [s["k_counts"].get(str(k), 0) / n for s in scan], marker="o", ms=3, color=colour, label=label)
        ax.plot(sig, [sum(v for kk, v in s["k_counts"].items() if int(kk) >= 3) / n for s in scan], marker="o", ms=3,
                color=CLUSTER_COLOURS[2], label=r"$K\geq 3$")
        ax.axvline(an["sigma"], color="#999999", lw=0.8, ls="--")
        ax.set_xscale("log")
        _finish(fig, ax, "$\\sigma$ (affinity width)", "share of objects", stem)
    return _k_sigma


def _finish(fig, ax, xlabel: str, ylabel: str, stem: Path) -> None:
    """Axis labels, a frameless legend, tight layout, saved as PDF and PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    fig.tight_layout()
    figures.save(fig, stem)


def _eigenvalues(spec, an: Mapping[str, Any], stem: Path):
    ids = [str(x) for x in spec["obj_ids"]]
    with figures._style():
        fig, ax = figures.plt.subplots(figsize=(figures.SINGLE, 2.3))
        shown = list(dict.fromkeys(an["examples"].values())) or ids[:1]
        for n, oid in enumerate(shown):
            j = ids.index(oid)
            ev = spec["eigvals"][j]
            ax.plot(np.arange(1, len(ev) + 1), ev, marker="o", ms=2.5, color=CLUSTER_COLOURS[n % 8],
                    label=f"{oid} (K = {int(spec['k'][j])})")
        _finish(fig, ax, "eigenvalue index", "eigenvalue of $L$", stem)
    return _eigenvalues


def _hidden_pca(hidden, spec, probe_rows: pd.DataFrame, an: Mapping[str, Any], stem: Path):
    from sklearn.decomposition import PCA

    h = hidden["hidden"].astype(np.float64)
    n_obj, n_ord, dim = h.shape
    flat = h.reshape(-1, dim)
    xy = PCA(n_components=2, random_state=0).fit_transform(flat) if len(flat) > 2 else np.zeros((len(flat), 2))
    answers = probe_rows.sort_values(["obj_id", "order"], key=lambda c: c.map(
        {o: k for k, o in enumerate(str(x) for x in hidden["obj_ids"])}) if c.name == "obj_id" else c)
    labels = answers["answer_label"].astype(str).to_numpy()
    with figures._style():
        fig, axes = figures.plt.subplots(1, 2, figsize=(figures.DOUBLE, 2.8))
        for lab in (*CLASSES, ""):
            m = labels == lab
            if m.any():
                axes[0].scatter(xy[m, 0], xy[m, 1], s=4, color=ANSWER_COLOURS[lab], label=lab or "tied", lw=0)
        axes[0].set_title("all prompts, coloured by answer")
        axes[0].legend(frameon=False, markerscale=2)
        ids = [str(x) for x in hidden["obj_ids"]]
        oid = an["examples"].get("largest_k", ids[0])
        j = ids.index(oid)
        own = h[j]
        pts = PCA(n_components=2, random_state=0).fit_transform(own) if n_ord > 2 else np.zeros((n_ord, 2))
        cl = spec["labels"][j]
        ans = labels[j * n_ord:(j + 1) * n_ord]
        markers = {"STAR": "*", "GALAXY": "o", "QSO": "s", "": "x"}
        for lab in (*CLASSES, ""):
            m = ans == lab
            if m.any():
                axes[1].scatter(pts[m, 0], pts[m, 1], s=14, marker=markers[lab],
                                c=[CLUSTER_COLOURS[int(c) % 8] for c in cl[m]], label=lab or "tied", lw=0)
        axes[1].set_title(f"{oid}, {n_ord} orders: colour = cluster (K = {int(spec['k'][j])}), marker = answer")
        axes[1].legend(frameon=False)
        for ax in axes:
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
        fig.tight_layout()
        figures.save(fig, stem)
    return _hidden_pca


def _pss(per_object: pd.DataFrame, stem: Path):
    with figures._style():
        fig, ax = figures.plt.subplots(figsize=(figures.SINGLE, 2.3))
        bins = np.linspace(0, 2 / 3, 11)
        data = [pd.to_numeric(per_object.loc[per_object["class"] == c, "pss"], errors="coerce").dropna() for c in CLASSES]
        ax.hist(data, bins=bins, color=[figures.CLASS_COLOURS[c] for c in CLASSES], label=list(CLASSES))
        ax.set_xlabel("PSS (0 = the same answer under every order)")
        ax.set_ylabel("objects")
        ax.legend(frameon=False)
        fig.tight_layout()
        figures.save(fig, stem)
    return _pss


def _before_after(cmp: Mapping[str, Any], stem: Path):
    groups = [g for g in ("all", *CLASSES) if g in cmp]
    x = np.arange(len(groups))
    with figures._style():
        fig, axes = figures.plt.subplots(1, 2, figsize=(figures.DOUBLE, 2.2))
        for ax, metric, label in ((axes[0], "pss", "mean PSS"), (axes[1], "accuracy", "accuracy")):
            ax.bar(x - 0.18, [cmp[g][f"{metric}_before"] for g in groups], 0.36, color="#999999", label="before DPO")
            ax.bar(x + 0.18, [cmp[g][f"{metric}_after"] for g in groups], 0.36, color="#1b6ca8", label="after DPO")
            ax.set_xticks(x, groups)
            ax.set_ylabel(label)
        axes[0].legend(frameon=False)
        fig.tight_layout()
        figures.save(fig, stem)
    return _before_after
