"""The LoRA study's part of the paper: the three ablation tables, the cost of each run, the best
run's figures, language retention and the chat demonstration.

One of the report's section modules (specllm.report.section: read_inputs -> make_macros ->
make_tables -> make_figures). Every input is read and checked by load() before anything is
written. Inputs, by the stage that writes them:
    select       results/ablation.json                 runs (lr, rank, epochs, val_/test_ metrics,
                                                       retention {set: ratio, ci_low, ci_high}),
                                                       best, selection.rule, max_unparsed_frac
                 results/ablation_best_predictions.csv split, gal_id, z_true, z_pred, parsed, run
                 results/ablation_per_bin.csv          run, split, z_bin, n, n_unparsed, mae, ...
    train_*      results/train/<run>/train.json        steps, tokens, tokens_per_s, wall_s, ...
                 results/train/<run>/loss.csv          step, epoch, loss
    demo         results/demo.json                     transcript, z_true, z_pred, run
    (committed)  data/reference/arxiv_2508.10075.json  the original's reported values, cited

The original's values sit beside ours as a reference, never as a target: its model, data and
compute differ (the paper's data section says how).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import claims, paths
from specllm.claims import finite as _num
from specllm.errors import InputError
from specllm.io import read_csv, read_json
from specllm.report import figures, tables
from specllm.report.macros import MacroSet, format_value
from specllm.report.section import Context, Section

DIMS = ("lr", "rank", "epochs")
DIM_LABELS = {"lr": "Learning rate", "rank": "LoRA rank", "epochs": "Epochs"}
RETENTION_SETS = ("science", "general")
DASH = "---"
DEMO_CHARS = 700  # longest model answer the appendix prints (the full text is in results/demo.json)
PROMPT_VALUES = 8
# How answers are decoded (params evaluate.constrained), as the method section says it.
DECODING = {
    False: r"by free greedy decoding; the number after ``Redshift:'' is parsed, and an answer without one is counted "
           r"as unparsed, never dropped",
    True: r"by greedy decoding constrained to the target's format: ``Redshift:'' is given and only a number written "
          r"like the targets (one integer digit, a decimal point and the target's decimals) may follow, so every answer "
          r"parses (unparsed answers are still counted)",
}  # serialized values the appendix shows before eliding the rest of the spectrum


@dataclass(frozen=True)
class AblationInputs:
    ablation: Path
    best_predictions: Path
    per_bin: Path
    train_dir: Path
    demo: Path
    reference: Path
    retention_dir: Path | None = None

    @classmethod
    def under(cls, root: Path) -> AblationInputs:
        return cls(ablation=paths.at(root, paths.ABLATION), best_predictions=paths.at(root, paths.ABLATION_BEST_PREDICTIONS),
                   per_bin=paths.at(root, paths.ABLATION_PER_BIN), train_dir=paths.at(root, paths.TRAIN_RESULTS),
                   demo=paths.at(root, paths.DEMO), reference=paths.at(root, paths.ARXIV_REFERENCE),
                   retention_dir=paths.at(root, paths.RETENTION))


# ---------------------------------------------------------------- reading

def _json(path: Path, fix: str) -> dict[str, Any]:
    return read_json(path, fix)


def _csv(path: Path, columns: Sequence[str], fix: str) -> pd.DataFrame:
    return read_csv(path, fix, columns)



def load(inputs: AblationInputs) -> dict[str, Any]:
    """Everything the LoRA part of the paper needs, checked."""
    select_fix = "run `dvc repro select`"
    abl = _json(inputs.ablation, select_fix)
    for key in ("runs", "best", "selection"):
        if key not in abl:
            raise InputError(inputs.ablation, key, "missing", select_fix)
    runs = {r["run"]: r for r in abl["runs"]}
    if abl["best"] not in runs:
        raise InputError(inputs.ablation, "best", f"{abl['best']!r} is not one of the runs", select_fix)
    for name, r in runs.items():
        for key in (*DIMS, "val_mae", "test_mae", "test_n", "test_n_unparsed"):
            if key not in r:
                raise InputError(inputs.ablation, f"runs[{name}].{key}", "missing", select_fix)
    preds = _csv(inputs.best_predictions, ("split", "gal_id", "z_true", "z_pred", "parsed"), select_fix)
    bins = _csv(inputs.per_bin, ("run", "split", "z_bin", "n", "n_unparsed", "mae"), select_fix)
    train, loss = {}, {}
    for name in runs:
        if name == "base":
            continue
        folder = inputs.train_dir / name
        fix = f"run `dvc repro` for the training stage of run {name}"
        train[name] = _json(folder / "train.json", fix)
        loss[name] = _csv(folder / "loss.csv", ("step", "epoch", "loss"), fix)
    demo = _json(inputs.demo, "run `dvc repro demo`")
    for key in ("transcript", "z_true", "run"):
        if key not in demo:
            raise InputError(inputs.demo, key, "missing", "run `dvc repro demo`")
    ref = _json(inputs.reference, f"restore the committed file from git (`git checkout {paths.rel(paths.REFERENCE)}`)")
    for key in ("citation", "rows", "best"):
        if key not in ref:
            raise InputError(inputs.reference, key, "missing", "restore the committed file from git")
    levels = set()  # the bootstrap intervals' confidence level, as the retention stage recorded it
    if inputs.retention_dir is not None:
        for name in runs:
            file = inputs.retention_dir / f"{name}.json"
            if file.is_file():
                for s in _json(file, f"rerun the retention stage of run {name}").get("sets", {}).values():
                    levels.add(float(s["retention"]["acc"]["level"]))
    if len(levels) > 1:
        raise InputError(inputs.retention_dir, "sets.*.retention.acc.level", f"runs disagree ({sorted(levels)})",
                         "rerun the retention stages with one retention setting")
    return {"ablation": abl, "runs": runs, "preds": preds, "bins": bins, "train": train, "loss": loss,
            "demo": demo, "ref": ref, "inputs": inputs, "ci_level": levels.pop() if levels else None}


# ---------------------------------------------------------------- the grid

def _same(a: Any, b: Any) -> bool:
    fa, fb = _num(a), _num(b)
    return fa is not None and fb is not None and math.isclose(fa, fb, rel_tol=1e-9)


def dimension_rows(runs: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any], dim: str) -> list[Mapping[str, Any]]:
    """The runs that vary `dim` with the other two settings at their defaults (the default run
    included), ordered by the value of `dim`."""
    others = [d for d in DIMS if d != dim]
    rows = [r for name, r in runs.items() if name != "base" and _num(r.get(dim)) is not None
            and all(_same(r.get(o), defaults[o]) for o in others)]
    return sorted(rows, key=lambda r: float(r[dim]))


def reference_row(ref: Mapping[str, Any], setting: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for row in ref.get("rows", []):
        if all(_same(row.get(d), setting.get(d)) for d in DIMS):
            return row
    return None


def _setting_text(dim: str, value: Any) -> str:
    return format_value(float(value), "sci", 0) if dim == "lr" else format_value(int(value), "int")


def _cell(v: Any, kind: str, precision: int | None = None) -> str:
    f = _num(v)
    return DASH if f is None else format_value(f, kind, precision)


def _interval_cell(mid: Any, lo: Any, hi: Any, kind: str, precision: int, scale: float = 1.0,
                   ci_precision: int | None = None) -> str:
    """'0.064 [0.050, 0.080]' with the interval set small, or a dash."""
    m = _num(mid)
    if m is None:
        return DASH
    lo, hi = _num(lo), _num(hi)
    cp = precision if ci_precision is None else ci_precision
    sign = "$+$" if kind == "float" and m > 0 else ""
    ci = rf"\,{{\scriptsize[{format_value(scale * lo, 'float', cp)}, {format_value(scale * hi, 'float', cp)}]}}" \
        if lo is not None and hi is not None else ""
    return sign + format_value(m, kind, precision) + ci


def _vs_constant_cell(r: Mapping[str, Any]) -> str:
    d = (r.get("vs_constant") or {}).get("val") or {}
    return _interval_cell(d.get("mean_diff"), d.get("ci_low"), d.get("ci_high"), "float", 4)


def _reference_rows(runs: Mapping[str, Mapping[str, Any]], constant: Mapping[str, Any] | None,
                    ncols: int) -> list[Any]:
    """The rows every redshift table repeats below its runs: the constant predictor and the base model."""
    rows: list[Any] = [tables.MIDRULE]
    if constant:
        cells = [r"constant ($z=" + format_value(float(constant["value"]), "float", 3) + "$)",
                 _cell(constant.get("val_mae"), "float", 4), "0", _cell(constant.get("test_mae"), "float", 4)]
        rows.append(cells + [DASH] * (ncols - len(cells)))
    base = runs.get("base")
    if base is not None:
        cells = ["base model", _cell(base.get("val_mae"), "float", 4), _vs_constant_cell(base),
                 _cell(base.get("test_mae"), "float", 4), _cell(base.get("test_nmad"), "float", 4),
                 _cell(base.get("test_outlier_frac"), "percent", 1), _cell(base.get("test_unparsed_frac"), "percent", 1)]
        rows.append(cells + [DASH] * (ncols - len(cells)))
    return rows


def dimension_table(dim: str, rows: Sequence[Mapping[str, Any]], best_run: str, ref: Mapping[str, Any],
                    runs: Mapping[str, Mapping[str, Any]] | None = None,
                    constant: Mapping[str, Any] | None = None) -> str:
    """One ablation table: ours (validation and test) beside the original's reported values, then the
    constant predictor and the base model on the same galaxies."""
    body: list[Any] = []
    for r in rows:
        cells = [_setting_text(dim, r[dim]), _cell(r.get("val_mae"), "float", 4), _vs_constant_cell(r),
                 _cell(r.get("test_mae"), "float", 4), _cell(r.get("test_nmad"), "float", 4),
                 _cell(r.get("test_outlier_frac"), "percent", 1), _cell(r.get("test_unparsed_frac"), "percent", 1)]
        if r["run"] == best_run:
            cells = [rf"\textbf{{{c}}}" for c in cells]
        orig = reference_row(ref, r) or {}
        cells += [_cell(orig.get("mae"), "float", 3), _cell(orig.get("science_retention"), "percent", 1),
                  _cell(orig.get("general_retention"), "percent", 1)]
        body.append(cells)
    body += _reference_rows(runs or {}, constant, 10)
    header = [DIM_LABELS[dim], "val MAE", r"$\Delta$ vs const.", "MAE", "NMAD", r"$f_\mathrm{out}$", "unparsed",
              "MAE", "science", "general"]
    group = (r" & \multicolumn{2}{c}{validation} & \multicolumn{4}{c}{test} & \multicolumn{3}{c}{original} \\"
             r" \cmidrule(lr){2-3}\cmidrule(lr){4-7}\cmidrule(l){8-10}")
    text = tables.booktabs(header, body, "l" + "r" * 9)
    return text.replace(r"\toprule" + "\n", r"\toprule" + "\n" + group + "\n", 1)


def retention_table(runs: Mapping[str, Mapping[str, Any]], order: Sequence[str], best_run: str) -> str:
    """Per run and probe set: base and adapted accuracy, the raw retention ratio and the retention above
    chance, each ratio with its paired-bootstrap interval (percent)."""
    body = []
    for name in order:
        r = runs[name]
        cells = [format_value(name, "code")]
        for s in RETENTION_SETS:
            ret = (r.get("retention") or {}).get(s) or {}
            cells += [_cell(ret.get("base_acc"), "percent", 1), _cell(ret.get("adapted_acc"), "percent", 1),
                      _interval_cell(ret.get("ratio"), ret.get("ci_low"), ret.get("ci_high"), "percent", 1, 100, 0),
                      _interval_cell(ret.get("above_chance"), ret.get("above_chance_ci_low"),
                                     ret.get("above_chance_ci_high"), "percent", 1, 100, 0)]
        if name == best_run:
            cells = [rf"\textbf{{{c}}}" for c in cells]
        body.append(cells)
    header = ["Run"] + ["base", "adapted", "retention", "above chance"] * 2
    group = (r" & \multicolumn{4}{c}{science} & \multicolumn{4}{c}{general} \\"
             r" \cmidrule(lr){2-5}\cmidrule(l){6-9}")
    text = tables.booktabs(header, body, "l" + "r" * 8)
    return text.replace(r"\toprule" + "\n", r"\toprule" + "\n" + group + "\n", 1)


def cost_table(train: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> str:
    """Per training run: optimizer steps, tokens, throughput, padding, peak memory and wall time."""
    body = []
    for name in order:
        t = train[name]
        peak = _num(t.get("peak_memory_bytes"))
        body.append([format_value(name, "code"), _cell(t.get("steps"), "int"), _cell(t.get("tokens"), "int"),
                     _cell(t.get("tokens_per_s"), "float", 0), _cell(t.get("padding_share"), "percent", 1),
                     DASH if peak is None else format_value(peak / 2**30, "float", 2),
                     _cell(_num(t.get("wall_s")) and _num(t.get("wall_s")) / 60, "float", 1)])
    header = ["Run", "steps", "tokens", "tokens/s", "padding", "peak GiB", "wall min"]
    return tables.booktabs(header, body, "lrrrrrr")


def run_order(runs: Mapping[str, Any]) -> list[str]:
    """default first, then the ablation runs by dimension and value."""
    def key(name: str) -> tuple:
        r = runs[name]
        dim = next((d for d in DIMS if name.startswith(d)), "")
        return (name != "default", DIMS.index(dim) if dim else -1, _num(r.get(dim)) or 0.0, name)
    return sorted((n for n in runs if n != "base"), key=key)


# ---------------------------------------------------------------- text

def clean_text(text: str, limit: int = DEMO_CHARS) -> str:
    """Model output as printable ASCII on one paragraph (pdfLaTeX cannot set arbitrary Unicode),
    cut at `limit` characters on a word boundary."""
    text = "".join(c if 32 <= ord(c) < 127 else " " for c in str(text).replace("\n", " "))
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " [...]"
    return text


def prompt_excerpt(prompt: str, n_values: int = PROMPT_VALUES) -> str:
    """The serialized prompt with the series cut after n_values values."""
    head, sep, series = prompt.partition(": ")
    values = series.split(",")
    if not sep or len(values) <= n_values:
        return clean_text(prompt)
    return clean_text(f"{head}: {','.join(values[:n_values])}, ... ({len(values)} values)")


# ---------------------------------------------------------------- macros, tables, figures

def add_macros(ms: MacroSet, data: Mapping[str, Any], defaults: Mapping[str, Any], rel,
               constrained: bool = False) -> None:
    inputs: AblationInputs = data["inputs"]
    ms.add("evaluate.decoding", DECODING[bool(constrained)], source="params.yaml", kind="latex")
    abl, runs, ref = data["ablation"], data["runs"], data["ref"]
    src, ref_src, demo_src = rel(inputs.ablation), rel(inputs.reference), rel(inputs.demo)
    best = runs[abl["best"]]
    level = data.get("ci_level")
    ms.add("ablation.ci_level", "n/a" if level is None else level, source=rel(inputs.retention_dir or inputs.ablation),
           kind="text" if level is None else "percent", precision=None if level is None else 0)
    ms.add("ablation.n_runs", sum(1 for n in runs if n != "base"), source=src)
    ms.add("ablation.best.run", str(abl["best"]), source=src, kind="code")
    ms.add("ablation.best.lr", float(best["lr"]), source=src, kind="sci", precision=0)
    ms.add("ablation.best.rank", int(best["rank"]), source=src)
    ms.add("ablation.best.epochs", int(best["epochs"]), source=src)
    ms.add("ablation.rule", str(abl["selection"].get("rule", "")), source=src)
    ms.add("ablation.max_unparsed", float(abl["selection"].get("max_unparsed_frac", 0.1)), source=src,
           kind="percent", precision=0)
    for key, kind, prec, fallback in (("val_mae", "float", 4, "n/a"), ("test_mae", "float", 4, "n/a"),
                                      ("test_nmad", "float", 4, "n/a"), ("test_outlier_frac", "percent", 1, "n/a"),
                                      ("test_unparsed_frac", "percent", 1, "n/a")):
        v = _num(best.get(key))
        ms.add(f"ablation.best.{key}", fallback if v is None else v, source=src,
               kind="text" if v is None else kind, precision=None if v is None else prec)
    ms.add("ablation.best.test_n", int(best["test_n"]), source=src)
    ms.add("ablation.best.test_n_unparsed", int(best["test_n_unparsed"]), source=src)
    for s in RETENTION_SETS:
        ret = (best.get("retention") or {}).get(s) or {}
        for part in ("ratio", "ci_low", "ci_high", "base_acc", "adapted_acc", "above_chance",
                     "above_chance_ci_low", "above_chance_ci_high", "chance"):
            v = _num(ret.get(part))
            ms.add(f"ablation.best.{s}.{part}", "n/a" if v is None else v, source=src,
                   kind="text" if v is None else "percent", precision=None if v is None else 1)
    base = runs.get("base")
    if base is not None:
        ms.add("ablation.base.test_unparsed_frac", _num(base.get("test_unparsed_frac")) or 0.0, source=src,
               kind="percent", precision=0)
        v = _num(base.get("test_mae"))
        ms.add("ablation.base.test_mae", "n/a" if v is None else v, source=src,
               kind="text" if v is None else "float", precision=None if v is None else 4)
    for dim in DIMS:
        rows = dimension_rows(runs, defaults, dim)
        ms.add(f"ablation.{dim}.n_values", len(rows), source=src)
        ms.add(f"ablation.{dim}.values", ", ".join(_setting_text(dim, r[dim]) for r in rows), source=src, kind="latex")
    for name, text in claims.lora_claims(abl, ref).items():
        ms.add(f"ablation.claim.{name}", text, source=src, kind="latex")
    c = abl.get("constant") or {}
    if c:
        ms.add("ablation.constant.value", float(c["value"]), source=src, kind="float", precision=3)
        for split in ("val", "test"):
            if _num(c.get(f"{split}_mae")) is not None:
                ms.add(f"ablation.constant.{split}_mae", float(c[f"{split}_mae"]), source=src, kind="float", precision=4)
    n_beat = sum(1 for n, r in runs.items() if n != "base" and ((r.get("vs_constant") or {}).get("val") or {}).get("beats"))
    ms.add("ablation.n_beat_constant", n_beat, source=src)
    ms.add("ablation.n_boot", int((abl.get("stats") or {}).get("n_boot", 0)), source=src)
    ms.add("ablation.cmp_level", float((abl.get("stats") or {}).get("level", 0.95)), source=src, kind="percent",
           precision=0)
    # the cost of the grid (train.json of every run)
    train = data["train"]
    wall = [_num(t.get("wall_s")) or 0.0 for t in train.values()]
    tps = [v for v in (_num(t.get("tokens_per_s")) for t in train.values()) if v is not None]
    peaks = [v for v in (_num(t.get("peak_memory_bytes")) for t in train.values()) if v is not None]
    pads = [v for v in (_num(t.get("padding_share")) for t in train.values()) if v is not None]
    tsrc = rel(inputs.train_dir)
    ms.add("ablation.cost.train_minutes", sum(wall) / 60, source=tsrc, kind="float", precision=1)
    ms.add("ablation.cost.tokens_per_s", float(np.median(tps)) if tps else 0.0, source=tsrc, kind="float", precision=0)
    ms.add("ablation.cost.peak_gib", max(peaks) / 2**30 if peaks else 0.0, source=tsrc, kind="float", precision=2)
    ms.add("ablation.cost.padding_max", max(pads) if pads else 0.0, source=tsrc, kind="percent", precision=1)
    d = train.get("default") or next(iter(train.values()), {})
    for key in ("trainable_params", "llama31_8b_lora_param_count"):
        if _num(d.get(key)) is not None:
            ms.add(f"ablation.default.{key}", int(d[key]), source=tsrc)
    if _num(d.get("trainable_share")) is not None:
        ms.add("ablation.default.trainable_share", float(d["trainable_share"]), source=tsrc, kind="percent", precision=3)
    ms.add("ablation.default.device", str(d.get("device", "n/a")), source=tsrc)
    # the original's reported values (a reference, cited)
    rb = ref["best"]
    rrow = reference_row(ref, rb) or {}
    ms.add("ref.lora.best.lr", float(rb["lr"]), source=ref_src, kind="sci", precision=0)
    ms.add("ref.lora.best.rank", int(rb["rank"]), source=ref_src)
    ms.add("ref.lora.best.epochs", int(rb["epochs"]), source=ref_src)
    for key, kind, prec in (("mae", "float", 3), ("science_retention", "percent", 1), ("general_retention", "percent", 1)):
        if _num(rrow.get(key)) is not None:
            ms.add(f"ref.lora.{key}", float(rrow[key]), source=ref_src, kind=kind, precision=prec)
    for key in ("n_train", "gpu_hours", "lora_trainable_params"):
        if _num(ref.get(key)) is not None:
            ms.add(f"ref.lora.{key}", int(ref[key]), source=ref_src)
    ms.add("ref.lora.model", str(ref.get("model", "n/a")), source=ref_src)
    ms.add("ref.lora.gpu", str(ref.get("gpu", "n/a")), source=ref_src)
    # the demonstration
    demo = data["demo"]
    turns = demo["transcript"]
    user = [t["content"] for t in turns if t.get("role") == "user"]
    bot = [t["content"] for t in turns if t.get("role") == "assistant"]
    ms.add("demo.run", str(demo["run"]), source=demo_src, kind="code")
    ms.add("demo.gal_id", int(demo.get("gal_id", -1)), source=demo_src)
    ms.add("demo.z_true", float(demo["z_true"]), source=demo_src, kind="float", precision=4)
    zp = _num(demo.get("z_pred"))
    ms.add("demo.z_pred", "unparsed" if zp is None else zp, source=demo_src,
           kind="text" if zp is None else "float", precision=None if zp is None else 4)
    ms.add("demo.prompt", prompt_excerpt(user[0]) if user else "", source=demo_src)
    ms.add("demo.reply", clean_text(bot[0]) if bot and bot[0].strip() else "(empty answer)", source=demo_src)
    ms.add("demo.question", clean_text(user[1]) if len(user) > 1 else "", source=demo_src)
    ms.add("demo.answer", clean_text(bot[1]) if len(bot) > 1 and bot[1].strip() else "(empty answer)", source=demo_src)


def build_tables(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, str]:
    runs, best, ref = data["runs"], data["ablation"]["best"], data["ref"]
    constant = data["ablation"].get("constant")
    out = {f"ablation_{dim}": dimension_table(dim, dimension_rows(runs, defaults, dim), best, ref, runs, constant)
           for dim in DIMS}
    out["ablation_cost"] = cost_table(data["train"], run_order(data["train"]))
    out["ablation_retention"] = retention_table(runs, run_order(data["train"]), best)
    return out


def build_figures(data: Mapping[str, Any], fig_dir: Path, baseline_predictions: pd.DataFrame,
                  baseline_label: str, baseline_key: str, bin_edges: Sequence[float]) -> list[Path]:
    abl = data["ablation"]
    written = figures.ablation_predictions(data["preds"], abl["best"], fig_dir / "ablation_predictions")
    test_base = baseline_predictions[["z_true", baseline_key]].rename(columns={baseline_key: "z_pred"})
    written += figures.ablation_per_bin(data["bins"], abl["best"], test_base, baseline_label, bin_edges,
                                        fig_dir / "ablation_per_bin")
    written += figures.loss_curves({n: data["loss"][n] for n in run_order(data["train"])}, abl["best"],
                                   fig_dir / "ablation_loss")
    return written


# ---------------------------------------------------------------- the section

def read_inputs(ctx: Context) -> dict[str, Any] | None:
    """The LoRA study's inputs (None when the report was not given them), with what its macros and
    figures take from params.yaml and from the setup section (the baseline they are drawn beside)."""
    if ctx.lora is None:
        return None
    data = load(ctx.lora)
    setup = ctx.read["setup"]
    b = setup["baseline"]
    data["section"] = {
        "defaults": {d: ctx.params[f"train.{d}"] for d in DIMS}, "rel": ctx.rel,
        "constrained": bool(ctx.params["evaluate.constrained"]), "baseline_predictions": setup["predictions"],
        "baseline_label": b["methods"][b["best"]]["label"], "baseline_key": b["best"],
        "bin_edges": setup["summary"]["bin_edges"],
    }
    return data


def make_macros(ms: MacroSet, data: Mapping[str, Any]) -> None:
    sec = data["section"]
    add_macros(ms, data, sec["defaults"], sec["rel"], constrained=sec["constrained"])


def make_tables(data: Mapping[str, Any]) -> dict[str, str]:
    return build_tables(data, data["section"]["defaults"])


def make_figures(data: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    sec = data["section"]
    return build_figures(data, fig_dir, sec["baseline_predictions"], sec["baseline_label"], sec["baseline_key"],
                         sec["bin_edges"])


SECTION = Section("ablation", read_inputs, make_macros, make_tables, make_figures)
