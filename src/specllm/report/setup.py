"""The report's setup section: data, model, serialization, baselines and environment.

One of the report's section modules (specllm.report.section: read_inputs -> make_macros ->
make_tables -> make_figures); specllm.stages.report runs it with the others.

Tables: data_summary, splits, baseline, model, params, environment, packages, inputs.
Figures: redshift_distribution, example_spectrum, real_vs_reconstructed, colour_colour,
baseline_predictions (specllm.report.figures draws them; specllm.artifacts registers them).

The core functions take explicit paths and a plain params dict (tests call them).

Input contracts (files written by other stages; every key named here is required unless
marked optional):
    params (dict)                   PARAM_KEYS below
    data/raw/manifest.json          counts {name: int, or {kind: int}} (those in CUT_LABELS and
                                    stars_by_kind are tabled); params {z_min, z_max, i_max,
                                    snr_r, seed, loglam_step, ...}; grid {npix, wave_min_A,
                                    wave_max_A}; optional: checks (median_r_band_pixel_snr,
                                    photometry_round_trip_abs_rel_error {band: {median, p95}}),
                                    inputs_sha256 {file: sha256} (appendix)
    data/raw/catalogue.csv          obj_id, class, u, g, r, i, z, redshift, simulated, source
    results/data_summary.json       profile, source, n_source, n_train, n_val, n_test, z_bins,
                                    bin_edges, wave_min, wave_max, n_points
    data/prepared/                  {train,val,test}_meta.csv (gal_id, z, z_bin, scale),
                                    {split}_flux.npy, wavelength.npy
    results/model.json              name, source, sha256, n_params, dtype, vocab_size,
                                    context_length, revision
    results/serialization.json      tokens_per_spectrum {min, mean, max}, context_tokens,
                                    max_share_used (or max_share), tokens_per_value, and the
                                    settings it used (SERIALIZE_KEYS: int_digits, value_sep,
                                    prompt, target_decimals, max_context_share); optional: base,
                                    precision, digit_sep (checked against params), n_clipped,
                                    n_negative, n_values, chat_template (bool)
    data/serialized/train.jsonl     first line {gal_id, z, series, target}: the example figure
                                    (if absent: serialization.json's example, a string or
                                    {text, gal_id?, split?, z?})
    results/baseline.json           methods {key: {label, mae, nmad, outlier_frac, n_test|n}},
                                    best (a key of methods); optional: null (the constant
                                    predictor's key, whose method has its value)
    results/baseline_predictions.csv gal_id, z_true, one column per method key
    results/environment.json        written by specllm.stages.environment
    real spectra                    a list of dicts {name, wave, real_flux, reconstructed_flux,
                                    z} from specllm.data.real_spectra (main() imports it lazily)
    results/verdicts.json           rows (specllm.verdicts' contract), counts, summaries: the
                                    verdict table, its counts and one summary per study
    results/stability/sample.json   optional: catalogue_source, catalogue_rows (the catalogue
                                    paragraph follows the catalogue the stability study used)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import io, paths
from specllm.errors import InputError
from specllm.metrics import OUTLIER_DZ
from specllm.report import figures, tables
from specllm.report.macros import MacroSet, escape_latex, format_value
from specllm.report.section import Context, Section
from specllm.vocab import SPLITS

# params.yaml keys the report prints (dvc.yaml must list them under the report stage). The other
# serialize.* settings are taken from results/serialization.json, the serialize stage's own record
# of what it used (SERIALIZE_KEYS), and checked against these where both exist.
PARAM_KEYS = (
    "profile", "seed", "data.source",
    "data.n_train", "data.n_val", "data.n_test", "data.z_bins",
    "spectrum.n_points", "spectrum.rescale_quantile", "spectrum.rescale_to",
    "serialize.base", "serialize.precision", "serialize.digit_sep",
    "model.name", "model.source",
    "baseline.n_neighbors", "baseline.n_estimators", "baseline.max_depth",
    "train.lr", "train.rank", "train.epochs", "evaluate.constrained",
)
SERIALIZE_KEYS = ("int_digits", "value_sep", "prompt", "target_decimals", "context_tokens", "max_context_share")
# Manifest counts shown in the data table, in selection order (a missing key is skipped).
CUT_LABELS = (
    ("galaxies_read", "SDSS galaxies read"),
    ("pass_redshift_cut", r"\quad with $z_\mathrm{min} < z < z_\mathrm{max}$"),
    ("pass_imag_cut", r"\quad with $i < i_\mathrm{max}$"),
    ("pass_both_cuts", r"\quad passing both cuts"),
    ("galaxies_written", "galaxies in the embedded source"),
    ("galaxies_written_with_nonpositive_flux", r"\quad with a nonpositive flux (not in the catalogue)"),
)
CLASS_ORDER = ("GALAXY", "STAR", "QSO")
# What each profile's numbers mean (printed on the title page as \ProfileNote).
PROFILE_NOTES = {
    "smoke": "The smoke profile runs the whole pipeline in minutes with a tiny, randomly initialised "
             "language model; its numbers check the plumbing and carry no scientific meaning.",
    "small": "The small profile pairs a small instruction-tuned language model with the embedded galaxy "
             "sample, so that the whole pipeline runs on a CPU.",
    "open": "The open profile runs the original study's sizes and grid with the small open-weights language "
            "model on the embedded galaxy sample, on one GPU.",
    "paper": "The paper profile reproduces the original setting: a large instruction-tuned language model "
             "and real SDSS DR16 spectra.",
}
REAL_SPECTRA = ("NGC3073", "NGC3522", "NGC4636")  # default; real_spectra.SPECTRA lists the available ones
_PRODUCERS = {
    "manifest.json": "rebuild the embedded source (`make data`)",
    "catalogue.csv": "rebuild the embedded source (`make data`)",
    "data_summary.json": "run `dvc repro prepare`",
    "model.json": "run `dvc repro model`",
    "serialization.json": "run `dvc repro serialize`",
    "baseline.json": "run `dvc repro baseline`",
    "baseline_predictions.csv": "run `dvc repro baseline`",
    "environment.json": "run `dvc repro environment` (python -m specllm.stages.environment)",
    "verdicts.json": "run `dvc repro verdicts`",
}


@dataclass(frozen=True)
class Inputs:
    """Where the report reads from; `root` makes the source names in values.json relative."""

    root: Path
    manifest: Path
    catalogue: Path
    data_summary: Path
    prepared: Path
    model: Path
    serialization: Path
    serialized: Path
    baseline: Path
    baseline_predictions: Path
    environment: Path
    stability_sample: Path | None = None  # results/stability/sample.json: which catalogue the study used

    @classmethod
    def under(cls, root: Path) -> Inputs:
        """The standard project layout below `root` (what specllm.paths names)."""
        root = Path(root)
        return cls(
            root=root,
            manifest=paths.at(root, paths.MANIFEST),
            catalogue=paths.at(root, paths.CATALOGUE),
            data_summary=paths.at(root, paths.DATA_SUMMARY),
            prepared=paths.at(root, paths.PREPARED),
            model=paths.at(root, paths.MODEL_INFO),
            serialization=paths.at(root, paths.SERIALIZATION),
            serialized=paths.at(root, paths.SERIALIZED),
            baseline=paths.at(root, paths.BASELINE),
            baseline_predictions=paths.at(root, paths.BASELINE_PREDICTIONS),
            environment=paths.at(root, paths.ENVIRONMENT),
            stability_sample=paths.at(root, paths.STABILITY_FILES["sample"]),
        )

    def rel(self, path: Path) -> str:
        """`path` relative to the project root (as the paper names it), else as given."""
        return paths.shown(path, self.root)


# ---------------------------------------------------------------- reading and checking inputs

def _fix(path: Path) -> str:
    return _PRODUCERS.get(Path(path).name, "rerun the stage that writes it (`dvc repro`)")


def read_json(path: Path) -> dict[str, Any]:
    return io.read_json(path, _fix(path))


def read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    return io.read_csv(path, _fix(path), columns, nonempty=True)


def get(data: Mapping[str, Any], dotted: str, path: Path, *, types: type | tuple = object) -> Any:
    """data['a']['b'] for 'a.b', or an InputError naming the file and the key."""
    return io.field(data, dotted, path, _fix(path), types=types)


def _bool_column(series: pd.Series) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy()
    text = series.astype(str).str.strip().str.lower()
    ok = text.isin(["true", "false", "1", "0", "yes", "no"])
    if not ok.all():
        raise ValueError(f"not a boolean: {series[~ok].iloc[0]!r}")
    return text.isin(["true", "1", "yes"]).to_numpy()


def decode_series(text: str, *, prompt: str, base: int, precision: int, digit_sep: str,
                  value_sep: str, int_digits: int = 1, signed: bool = False) -> np.ndarray:
    """The numbers in an LLMTime text ('prompt 4|5|6,1|2|3 ... Redshift: z'), as floats: the series
    between the prompt and 'Redshift', read by serialize.decode (ValueError if encode cannot have written it)."""
    from specllm.serialize import SerializerConfig, decode

    body = text.split(prompt, 1)[1] if prompt and prompt in text else text
    body = body.split("Redshift", 1)[0].strip()
    if not body:
        raise ValueError("no values found")
    return decode(body, SerializerConfig(base=base, precision=precision, int_digits=int_digits, digit_sep=digit_sep,
                                         value_sep=value_sep, signed=signed))


def load_inputs(params: Mapping[str, Any], inputs: Inputs) -> dict[str, Any]:
    """Read every input and check it against its contract and against the others."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise InputError("dvc.yaml", "stages.report.params", f"keys not given to the report: {', '.join(missing)}",
                         "list them under the report stage's params in dvc.yaml")
    loaded: dict[str, Any] = {"params": dict(params)}

    manifest = read_json(inputs.manifest)
    counts = get(manifest, "counts", inputs.manifest, types=dict)
    for key, value in counts.items():
        for sub, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                where = f"counts.{key}" + (f".{sub}" if sub is not None else "")
                raise InputError(inputs.manifest, where, f"not a count: {v!r}", _fix(inputs.manifest))
    for key in ("params.z_min", "params.z_max", "params.i_max", "params.snr_r", "params.loglam_step",
                "grid.npix", "grid.wave_min_A", "grid.wave_max_A"):
        get(manifest, key, inputs.manifest, types=(int, float))
    loaded["manifest"] = manifest

    cat = read_csv(inputs.catalogue, ("class", "u", "g", "r", "simulated"))
    try:
        cat["simulated"] = _bool_column(cat["simulated"])
    except ValueError as err:
        raise InputError(inputs.catalogue, "simulated", str(err), _fix(inputs.catalogue)) from None
    cat["class"] = cat["class"].astype(str).str.upper()
    loaded["catalogue"] = cat
    loaded["stability_sample"] = None
    if inputs.stability_sample is not None and Path(inputs.stability_sample).is_file():
        sample = read_json(inputs.stability_sample)
        get(sample, "catalogue_source", inputs.stability_sample, types=str)
        get(sample, "catalogue_rows", inputs.stability_sample, types=int)
        loaded["stability_sample"] = sample

    summary = read_json(inputs.data_summary)
    for key in ("profile", "source", "n_source", "n_train", "n_val", "n_test", "z_bins", "bin_edges",
                "wave_min", "wave_max", "n_points"):
        get(summary, key, inputs.data_summary)
    if summary["source"] != params["data.source"]:
        raise InputError(inputs.data_summary, "source",
                         f"spectra from '{summary['source']}', but params.yaml says data.source "
                         f"'{params['data.source']}'",
                         "run `dvc repro` so every stage output belongs to the same parameters")
    if summary["profile"] != params["profile"]:
        raise InputError(inputs.data_summary, "profile",
                         f"written by profile '{summary['profile']}', but params.yaml says '{params['profile']}'",
                         "run `dvc repro` so every stage output belongs to the same profile")
    for key, param in (("n_train", "data.n_train"), ("n_val", "data.n_val"), ("n_test", "data.n_test"),
                       ("z_bins", "data.z_bins"), ("n_points", "spectrum.n_points")):
        if summary[key] != params[param]:
            raise InputError(inputs.data_summary, key, f"{summary[key]!r}, but params.yaml says {param} = "
                             f"{params[param]!r}", "run `dvc repro prepare` (it is stale)")
    edges = np.asarray(summary["bin_edges"], dtype=float)
    if edges.size != summary["z_bins"] + 1 or np.any(np.diff(edges) < 0):
        raise InputError(inputs.data_summary, "bin_edges", f"{edges.size} edges for {summary['z_bins']} bins "
                         "(need z_bins + 1, increasing)", _fix(inputs.data_summary))
    loaded["summary"] = summary

    meta = {}
    for split in SPLITS:
        df = read_csv(inputs.prepared / f"{split}_meta.csv", ("gal_id", "z"))
        if len(df) != summary[f"n_{split}"]:
            raise InputError(inputs.prepared / f"{split}_meta.csv", "rows",
                             f"{len(df)} spectra, but data_summary.json says n_{split} = {summary[f'n_{split}']}",
                             "run `dvc repro prepare`")
        meta[split] = df
    loaded["meta"] = meta
    wave_file = inputs.prepared / "wavelength.npy"
    if not wave_file.is_file():
        raise InputError(wave_file, "-", "file not found", "run `dvc repro prepare`")
    loaded["wave"] = np.load(wave_file)
    if loaded["wave"].size != summary["n_points"]:
        raise InputError(wave_file, "shape", f"{loaded['wave'].size} pixels, data_summary.json says "
                         f"{summary['n_points']}", "run `dvc repro prepare`")

    model = read_json(inputs.model)
    for key in ("name", "source", "sha256", "n_params", "dtype", "vocab_size", "context_length"):
        get(model, key, inputs.model)
    if model["name"] != params["model.name"]:
        raise InputError(inputs.model, "name", f"model '{model['name']}', but params.yaml names "
                         f"'{params['model.name']}'", "run `dvc repro` (the model stage is stale)")
    loaded["model"] = model

    ser = read_json(inputs.serialization)
    for key in ("tokens_per_spectrum.min", "tokens_per_spectrum.mean", "tokens_per_spectrum.max",
                "context_tokens", "tokens_per_value"):
        get(ser, key, inputs.serialization, types=(int, float))
    if "max_share_used" not in ser and "max_share" not in ser:
        raise InputError(inputs.serialization, "max_share_used", "key missing", _fix(inputs.serialization))
    for key in SERIALIZE_KEYS:
        get(ser, key, inputs.serialization)
    for key in ("base", "precision", "digit_sep"):
        if key in ser and ser[key] != params[f"serialize.{key}"]:
            raise InputError(inputs.serialization, key, f"{ser[key]!r}, but params.yaml says serialize.{key} = "
                             f"{params[f'serialize.{key}']!r}", "run `dvc repro serialize` (it is stale)")
    loaded["example"] = load_example(params, ser, inputs, meta, summary["n_points"])
    loaded["serialization"] = ser

    base = read_json(inputs.baseline)
    methods = get(base, "methods", inputs.baseline, types=dict)
    best = get(base, "best", inputs.baseline, types=str)
    if not methods or best not in methods:
        raise InputError(inputs.baseline, "best", f"'{best}' is not one of the methods {list(methods)}",
                         _fix(inputs.baseline))
    for key, m in methods.items():
        for field in ("label", "mae", "nmad", "outlier_frac"):
            get(m, field, inputs.baseline)
        if "n_test" not in m and "n" not in m:
            raise InputError(inputs.baseline, f"methods.{key}.n_test", "key missing", _fix(inputs.baseline))
        m.setdefault("n_test", m.get("n"))
    pred = read_csv(inputs.baseline_predictions, ("gal_id", "z_true", *methods))
    check_baseline(methods, pred, inputs)
    loaded["baseline"], loaded["predictions"] = base, pred

    env = read_json(inputs.environment)
    for key in ("python.version", "platform.system", "cpu.model", "cpu.usable_cores", "torch.version", "packages"):
        get(env, key, inputs.environment)
    loaded["environment"] = env
    return loaded


def _key(text: str) -> str:
    """A free-form name ('FGK dwarf', 'A/BHB') as a macro key part (letters and digits only)."""
    return "_".join(re.findall(r"[A-Za-z0-9]+", text)) or "x"


def load_example(params: Mapping[str, Any], ser: Mapping[str, Any], inputs: Inputs,
                 meta: Mapping[str, pd.DataFrame], n_points: int) -> dict[str, Any]:
    """The spectrum shown in the example figure: its text, the series read back from it, and
    (when its gal_id is in a prepared split) its unrounded rescaled flux and redshift."""
    fmt = {
        "prompt": ser["prompt"],
        "base": int(params["serialize.base"]),
        "precision": int(params["serialize.precision"]),
        "digit_sep": params["serialize.digit_sep"],
        "value_sep": ser["value_sep"],
        "int_digits": int(ser["int_digits"]),
        "signed": bool(ser.get("signed", False)),
    }
    jsonl = inputs.serialized / "train.jsonl"
    if jsonl.is_file():
        source, field = jsonl, "line 1"
        with jsonl.open(encoding="utf-8") as fh:
            first = fh.readline()
        try:
            rec = json.loads(first)
            series_text, example = rec["series"], {"gal_id": rec["gal_id"], "split": "train", "z": rec.get("z")}
            text = f"{fmt['prompt']} {series_text}" + (f"\n{rec['target']}" if rec.get("target") else "")
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(jsonl, field, f"not a serialized record ({err})", "run `dvc repro serialize`") from None
    else:
        source, field = inputs.serialization, "example"
        example = ser.get("example")
        text = example if isinstance(example, str) else example.get("text") if isinstance(example, dict) else None
        if not isinstance(text, str) or not text:
            raise InputError(jsonl, "-", "file not found (and serialization.json has no example text)",
                             "run `dvc repro serialize`")
        example = example if isinstance(example, dict) else {}
    try:
        series = decode_series(text, **fmt)
    except ValueError as err:
        raise InputError(source, field, f"cannot read the series back ({err})", "run `dvc repro serialize`") from None
    if series.size != n_points:
        raise InputError(source, field, f"{series.size} values, but the grid has {n_points} pixels",
                         "run `dvc repro serialize` (it is older than `prepare`)")
    body = text.split(fmt["prompt"], 1)[1] if fmt["prompt"] and fmt["prompt"] in text else text
    tokens = body.strip().split(fmt["value_sep"]) if fmt["value_sep"].strip() else body.split()
    out = {"text": text, "series": series, "flux": None, "format": fmt, "first_token": tokens[0].strip(),
           "z": example.get("z"), "source": source}
    split = example.get("split", "train")
    if "gal_id" in example and split in meta:
        df = meta[split]
        hit = np.flatnonzero(df["gal_id"].astype(str).to_numpy() == str(example["gal_id"]))
        if len(hit):
            flux = np.load(inputs.prepared / f"{split}_flux.npy", mmap_mode="r")
            out["flux"] = np.asarray(flux[hit[0]], dtype=float)
            out["z"] = float(df["z"].iloc[hit[0]])
    return out


def check_baseline(methods: Mapping[str, Mapping[str, Any]], pred: pd.DataFrame, inputs: Inputs) -> None:
    """The table (baseline.json) and the figure (predictions CSV) must agree at printed precision."""
    from specllm.metrics import redshift_metrics

    z_true = pred["z_true"].to_numpy(float)
    for key, m in methods.items():
        again = redshift_metrics(z_true, pred[key].to_numpy(float))
        for field, tol in (("mae", 5e-5), ("nmad", 5e-5), ("outlier_frac", 5e-4)):
            if not math.isclose(float(m[field]), again[field], abs_tol=tol):
                raise InputError(inputs.baseline, f"methods.{key}.{field}",
                                 f"{m[field]} disagrees with {again[field]:.6f} recomputed from "
                                 f"{inputs.baseline_predictions.name}", "run `dvc repro baseline`")
        if int(m["n_test"]) != len(pred):
            raise InputError(inputs.baseline, f"methods.{key}.n_test", f"{m['n_test']} but the predictions "
                             f"file has {len(pred)} rows", "run `dvc repro baseline`")


# ---------------------------------------------------------------- macros

def build_macros(loaded: Mapping[str, Any], inputs: Inputs, comparisons: Sequence[Mapping[str, Any]],
                 ms: MacroSet | None = None) -> MacroSet:
    ms = MacroSet() if ms is None else ms
    p = loaded["params"]
    src = "params.yaml"
    ms.add("profile", p["profile"], source=src)
    ms.add("seed", str(p["seed"]), source=src, kind="text")
    ms.add("data.n_train", p["data.n_train"], source=src, kind="int")
    ms.add("data.n_val", p["data.n_val"], source=src, kind="int")
    ms.add("data.n_test", p["data.n_test"], source=src, kind="int")
    ms.add("data.z_bins", p["data.z_bins"], source=src, kind="int")
    ms.add("spectrum.n_points", p["spectrum.n_points"], source=src, kind="int")
    ms.add("serialize.base", p["serialize.base"], source=src, kind="int")
    ms.add("serialize.precision", p["serialize.precision"], source=src, kind="int")
    ms.add("baseline.n_neighbors", p["baseline.n_neighbors"], source=src, kind="int")
    ms.add("baseline.n_estimators", p["baseline.n_estimators"], source=src, kind="int")
    depth = p["baseline.max_depth"]
    ms.add("baseline.max_depth", str(depth) if depth else "unlimited", source=src, kind="text")
    ms.add("spectrum.rescale_quantile", p["spectrum.rescale_quantile"], source=src, kind="float", precision=2)
    ms.add("spectrum.rescale_percentile", 100 * p["spectrum.rescale_quantile"], source=src, kind="float", precision=0)
    ms.add("spectrum.rescale_to", p["spectrum.rescale_to"], source=src, kind="float", precision=1)
    ms.add("serialize.digit_sep", p["serialize.digit_sep"], source=src, kind="code")
    ms.add("model.name", p["model.name"], source=src)
    ms.add("model.source", p["model.source"], source=src, kind="code")
    ms.add("profile.note", PROFILE_NOTES.get(p["profile"], ""), source=src)

    # embedded source and classification catalogue
    man = loaded["manifest"]
    src = inputs.rel(inputs.manifest)
    for key, value in sorted(man["counts"].items()):
        if isinstance(value, dict):
            for sub, v in sorted(value.items()):
                ms.add(f"sample.{_key(key)}.{_key(sub)}", v, source=src, kind="int")
        else:
            ms.add(f"sample.{_key(key)}", value, source=src, kind="int")
    mp = man["params"]
    ms.add("raw.z_min", mp["z_min"], source=src, kind="float", precision=1)
    ms.add("raw.z_max", mp["z_max"], source=src, kind="float", precision=1)
    ms.add("raw.i_max", mp["i_max"], source=src, kind="float", precision=1)
    ms.add("raw.snr_r", mp["snr_r"], source=src, kind="float", precision=0)
    ms.add("raw.loglam_step", mp["loglam_step"], source=src, kind="sci", precision=0)
    for key in ("n_stars", "n_qso"):
        if key in mp:
            ms.add(f"raw.{key}", mp[key], source=src, kind="int")
    grid = man["grid"]
    ms.add("raw.npix", grid["npix"], source=src, kind="int")
    ms.add("raw.wave_min", grid["wave_min_A"], source=src, kind="float", precision=0)
    ms.add("raw.wave_max", grid["wave_max_A"], source=src, kind="float", precision=0)
    ms.add("raw.velocity_step", 299792.458 * math.log(10) * mp["loglam_step"], source=src, kind="float", precision=0)
    checks = man.get("checks", {})
    if "median_r_band_pixel_snr" in checks:
        ms.add("raw.median_snr_r", checks["median_r_band_pixel_snr"], source=src, kind="float", precision=1)
    for band, stats in sorted(checks.get("photometry_round_trip_abs_rel_error", {}).items()):
        for stat in ("median", "p95"):
            if stat in stats:
                ms.add(f"raw.roundtrip.{_key(band)}.{stat}", stats[stat], source=src, kind="percent", precision=1)
    if "galaxies_round_trip_worse_than_10pct_in_gri" in checks:
        ms.add("raw.roundtrip.n_worse_10pct", checks["galaxies_round_trip_worse_than_10pct_in_gri"], source=src,
               kind="int")
    ms.add("raw.n_inputs", len(man.get("inputs_sha256", {})), source=src, kind="int")
    cat = loaded["catalogue"]
    src = inputs.rel(inputs.catalogue)
    sample = loaded.get("stability_sample")
    text, summary = catalogue_text(cat, sample)
    csrc = inputs.rel(inputs.stability_sample) if sample is not None else src
    ms.add("catalogue.text", text, source=csrc, kind="latex")
    ms.add("catalogue.summary", summary, source=csrc, kind="latex")
    ms.add("catalogue.used_n", int(sample["catalogue_rows"]) if sample is not None else len(cat), source=csrc)
    ms.add("catalogue.n", len(cat), source=src)
    ms.add("catalogue.real", int((~cat["simulated"]).sum()), source=src)
    for cls in sorted(set(cat["class"])):
        sel = cat["class"] == cls
        ms.add(f"catalogue.{cls.lower()}.n", int(sel.sum()), source=src)
        ms.add(f"catalogue.{cls.lower()}.simulated", int((sel & cat["simulated"]).sum()), source=src)

    # splits
    s = loaded["summary"]
    src = inputs.rel(inputs.data_summary)
    ms.add("data.source", str(s["source"]), source=src, kind="code")
    ms.add("split.n_source", s["n_source"], source=src, kind="int")
    ms.add("split.total", sum(int(s[f"n_{k}"]) for k in SPLITS), source=src, kind="int")
    for split in SPLITS:
        ms.add(f"split.{split}.n", s[f"n_{split}"], source=src, kind="int")
        z = loaded["meta"][split]["z"].to_numpy(float)
        msrc = inputs.rel(inputs.prepared / f"{split}_meta.csv")
        ms.add(f"split.{split}.z_median", float(np.median(z)), source=msrc, kind="float", precision=3)
    ms.add("split.z_bins", s["z_bins"], source=src, kind="int")
    ms.add("split.z_lo", s["bin_edges"][0], source=src, kind="float", precision=3)
    ms.add("split.z_hi", s["bin_edges"][-1], source=src, kind="float", precision=3)
    ms.add("grid.wave_min", s["wave_min"], source=src, kind="float", precision=0)
    ms.add("grid.wave_max", s["wave_max"], source=src, kind="float", precision=0)
    ms.add("grid.n_points", s["n_points"], source=src, kind="int")
    ms.add("grid.pixel_width", (s["wave_max"] - s["wave_min"]) / s["n_points"], source=src, kind="float", precision=1)

    # model
    m = loaded["model"]
    src = inputs.rel(inputs.model)
    ms.add("llm.name", str(m["name"]), source=src)
    ms.add("llm.source", str(m["source"]), source=src, kind="code")
    ms.add("llm.n_params", int(m["n_params"]), source=src, kind="int")
    ms.add("llm.n_params_million", int(m["n_params"]) / 1e6, source=src, kind="float", precision=1)
    ms.add("llm.dtype", str(m["dtype"]), source=src, kind="code")
    ms.add("llm.vocab_size", int(m["vocab_size"]), source=src, kind="int")
    ms.add("llm.context_length", int(m["context_length"]), source=src, kind="int")
    ms.add("llm.revision", str(m.get("revision") or "n/a"), source=src, kind="code")
    ms.add("llm.origin", model_origin(m), source=src, kind="latex")

    # serialization
    ser = loaded["serialization"]
    src = inputs.rel(inputs.serialization)
    for key in ("int_digits", "target_decimals"):
        ms.add(f"serialize.{key}", int(ser[key]), source=src, kind="int")
    ms.add("serialize.max_context_share", float(ser["max_context_share"]), source=src, kind="percent", precision=0)
    ms.add("serialize.value_sep", str(ser["value_sep"]), source=src, kind="code")
    ms.add("serialize.prompt", str(ser["prompt"]), source=src, kind="text")
    t = ser["tokens_per_spectrum"]
    ms.add("tokens.min", int(t["min"]), source=src, kind="int")
    ms.add("metrics.outlier_dz", OUTLIER_DZ, source="src/specllm/metrics.py", kind="float", precision=2)
    ms.add("tokens.mean", float(t["mean"]), source=src, kind="float", precision=1)
    ms.add("tokens.max", int(t["max"]), source=src, kind="int")
    # A phrase, so the sentence reads right whether or not every spectrum costs the same.
    span = f"exactly {int(t['min']):,}" if int(t["min"]) == int(t["max"]) else f"{int(t['min']):,} to {int(t['max']):,}"
    ms.add("tokens.range", span.replace(",", "{,}"), source=src, kind="latex")
    ms.add("tokens.context", int(ser["context_tokens"]), source=src, kind="int")
    ms.add("tokens.max_share", float(ser.get("max_share_used", ser.get("max_share"))), source=src, kind="percent",
           precision=2)
    for key in ("n_clipped", "n_negative"):
        if key in ser:
            ms.add(f"tokens.{key}", int(ser[key]), source=src, kind="int")
    if "chat_template" in ser:
        ms.add("tokens.wrapping", "the model's chat template" if ser["chat_template"] else "plain text",
               source=src, kind="text")
    ms.add("tokens.per_value", float(ser["tokens_per_value"]), source=src, kind="float", precision=2)
    ex = loaded["example"]
    esrc = inputs.rel(ex["source"])
    ms.add("serialize.example.value", float(ex["series"][0]), source=esrc, kind="float",
           precision=int(ex["format"]["precision"]))
    ms.add("serialize.example.token", ex["first_token"], source=esrc, kind="code")

    # baseline
    b = loaded["baseline"]
    src = inputs.rel(inputs.baseline)
    methods = b["methods"]
    ms.add("baseline.n_methods", len(methods), source=src)
    for key, m in [*methods.items(), ("best", methods[b["best"]])]:
        ms.add(f"baseline.{key}.mae", m["mae"], source=src, kind="float", precision=4)
        ms.add(f"baseline.{key}.nmad", m["nmad"], source=src, kind="float", precision=4)
        ms.add(f"baseline.{key}.outlier_pct", m["outlier_frac"], source=src, kind="percent", precision=1)
        ms.add(f"baseline.{key}.n_test", int(m["n_test"]), source=src, kind="int")
        if "bias" in m:
            ms.add(f"baseline.{key}.bias", m["bias"], source=src, kind="float", precision=4)
    null = b.get("null")
    if null in methods and "value" in methods[null]:
        ms.add("baseline.null.value", float(methods[null]["value"]), source=src, kind="float", precision=3)
    ms.add("baseline.best.method", in_sentence(str(methods[b["best"]]["label"])), source=src)
    if "n_train" in b:
        ms.add("baseline.n_train", int(b["n_train"]), source=src)

    # environment
    env = loaded["environment"]
    src = inputs.rel(inputs.environment)
    torch = env["torch"]
    ms.add("env.python", env["python"]["version"], source=src)
    ms.add("env.torch", str(torch["version"]), source=src)
    ms.add("env.cpu", env["cpu"]["model"], source=src)
    ms.add("env.cores", int(env["cpu"]["usable_cores"]), source=src)
    gpus = torch.get("gpus") or []
    ms.add("env.gpu", ", ".join(g["name"] for g in gpus) if gpus else "none", source=src)

    # real vs reconstructed spectra
    src = "src/specllm/data/real_spectra.py"
    ms.add("realspec.n", len(comparisons), source=src)
    names = [str(c.get("name", "")).split("_")[0] for c in comparisons]
    names = [n[:3] + "~" + n[3:] if n.startswith("NGC") else escape_latex(n) for n in names]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    ms.add("realspec.names", joined, source=src, kind="latex")
    corr = [spectrum_correlation(c) for c in comparisons]
    ms.add("realspec.corr_min", min(corr), source=src, kind="float", precision=2)
    ms.add("realspec.corr_max", max(corr), source=src, kind="float", precision=2)

    return ms


def model_origin(m: Mapping[str, Any]) -> str:
    """Where the weights come from, as the paper must disclose it (LaTeX): a de-quantized GGUF names its
    quantization type and bits (results/model.json, recorded by the model stage from the GGUF header)."""
    name = escape_latex(str(m["name"]))
    if m.get("source") == "gguf":
        q = m.get("gguf_quantization")
        if not q:
            raise InputError(paths.rel(paths.MODEL_INFO), "gguf_quantization", "missing for a GGUF model",
                             "rerun `dvc repro model` (it records the GGUF header's file type)")
        bits = f" ({int(m['gguf_bits'])}-bit)" if m.get("gguf_bits") else ""
        return (rf"the {escape_latex(q)}{bits} GGUF file of {name} shipped in "
                rf"{format_value(str(m.get('gguf_package', 'n/a')), 'code')}, de-quantized to 32-bit floats (fp32): "
                r"its weights are the quantized ones, not the original 16-bit weights")
    if m.get("source") == "tiny":
        return rf"{name}, a tiny randomly initialised model (its answers carry no knowledge)"
    return rf"{name} as published (revision {format_value(str(m.get('revision') or 'n/a'), 'code')})"


def catalogue_text(cat: pd.DataFrame, sample: Mapping[str, Any] | None) -> tuple[str, str]:
    """The data section's paragraph on the classification catalogue and the summary's clause, for the
    catalogue the stability study actually used (results/stability/sample.json's catalogue_source)."""
    counts = {c: int((cat["class"] == c).sum()) for c in CLASS_ORDER}
    sim = {c: int(((cat["class"] == c) & cat["simulated"]).sum()) for c in CLASS_ORDER}
    n = format_value(len(cat), "int")
    embedded = (rf"The embedded catalogue holds {n} objects with $ugriz$ magnitudes and a redshift. Its "
                rf"{format_value(counts['GALAXY'], 'int')} galaxies are the real galaxies above, with their measured "
                rf"magnitudes and spectroscopic redshifts. Its {format_value(counts['STAR'], 'int')} stars and "
                rf"{format_value(counts['QSO'], 'int')} quasars are "
                + ("simulated" if sim["STAR"] == counts["STAR"] and sim["QSO"] == counts["QSO"] else
                   rf"partly simulated ({format_value(sim['STAR'], 'int')} stars and {format_value(sim['QSO'], 'int')} "
                   r"quasars)")
                + r" (Table~\ref{tab:data}): stars from empirical SDSS stellar colour loci of dwarfs, giants and blue "
                r"horizontal-branch stars, quasars from a power-law continuum with broad emission lines and "
                r"intergalactic absorption \citep{madau1995} integrated through the SDSS filters, both with real "
                r"Galactic extinction values and SDSS-like photometric noise. Every simulated row is flagged in the "
                r"catalogue (Fig.~\ref{fig:colour}), so no result can mistake them for observed objects.")
    if sample is None or sample.get("catalogue_source") == "embedded":
        return (r"The stability study uses the embedded catalogue. " + embedded,
                r"the catalogue's stars and quasars are simulated")
    rows = format_value(int(sample["catalogue_rows"]), "int")
    where = format_value(str(sample.get("catalogue", "n/a")), "code")
    return (rf"The stability study uses a real SDSS DR17 export ({where}, {rows} objects): every object, star, "
            r"galaxy or quasar, is observed, with the survey's photometry, spectroscopic class and redshift. "
            r"The embedded catalogue (Table~\ref{tab:data}, Fig.~\ref{fig:colour}) is built as well but not used by "
            r"this build's stability study.",
            r"the stability study classifies observed SDSS DR17 objects")


def in_sentence(label: str) -> str:
    """'Random forest' -> 'random forest' (a capitalised word, not an acronym like 'SVM')."""
    return label[0].lower() + label[1:] if len(label) > 1 and label[0].isupper() and label[1].islower() else label


def spectrum_correlation(comp: Mapping[str, Any]) -> float:
    """Pearson correlation of real and reconstructed flux over pixels where both are finite."""
    a = np.asarray(comp["real_flux"], dtype=float)
    b = np.asarray(comp["reconstructed_flux"], dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise InputError("specllm.data.real_spectra", str(comp.get("name", "?")), "fewer than 3 finite pixels",
                         "check compare_real_and_reconstructed")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


# ---------------------------------------------------------------- tables

def build_tables(loaded: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    counts = loaded["manifest"]["counts"]
    cuts = [(label, counts[key]) for key, label in CUT_LABELS if key in counts and not isinstance(counts[key], dict)]
    cat = loaded["catalogue"]
    classes = [c for c in CLASS_ORDER if c in set(cat["class"])] + sorted(set(cat["class"]) - set(CLASS_ORDER))
    plural = {"GALAXY": "galaxies", "STAR": "stars", "QSO": "quasars"}
    cat_rows = [(plural.get(c, c.lower()), int((cat["class"] == c).sum()),
                 int(((cat["class"] == c) & cat["simulated"]).sum())) for c in classes]
    split_rows = []
    for split in SPLITS:
        z = loaded["meta"][split]["z"].to_numpy(float)
        split_rows.append((split, len(z), float(z.min()), float(np.median(z)), float(z.max())))
    kinds = {"stars": sorted(counts["stars_by_kind"].items())} if isinstance(counts.get("stars_by_kind"), dict) else {}
    out["data_summary"] = tables.data_summary(cuts, cat_rows, kinds)
    out["splits"] = tables.splits(split_rows)

    b = loaded["baseline"]
    out["baseline"] = tables.baseline(b["methods"], b["best"])

    m = loaded["model"]
    out["model"] = tables.key_value([
        ("Model", escape_latex(str(m["name"]))),
        ("Loaded from", format_value(str(m["source"]), "code")),
        ("Parameters", format_value(int(m["n_params"]), "int")),
        ("Weights dtype", format_value(str(m["dtype"]), "code")
         + (rf", de-quantized from {escape_latex(str(m['gguf_quantization']))} GGUF" if m.get("gguf_quantization") else "")),
        ("Vocabulary", format_value(int(m["vocab_size"]), "int")),
        ("Context length", format_value(int(m["context_length"]), "int")),
        ("Revision", format_value(str(m.get("revision") or "n/a"), "code")),
        ("Weights sha256", format_value(str(m["sha256"])[:16], "code") + r"\ldots"),
    ])

    p = loaded["params"]
    rows = []
    for key in PARAM_KEYS:
        value = p[key]
        text = format_value(str(value) if not isinstance(value, str) else value, "code")
        rows.append((format_value(key, "code"), text))
    out["params"] = tables.key_value(rows, header=(r"\texttt{params.yaml} key", "Value"))

    env = loaded["environment"]
    torch = env["torch"]
    gpus = torch.get("gpus") or []
    gpu = "; ".join(f"{g['name']} (compute capability {g['capability']})" for g in gpus) or "none"
    plat = env["platform"]
    pairs = [
        ("Python", escape_latex(f"{env['python'].get('implementation', 'Python')} {env['python']['version']}")),
        ("Platform", escape_latex(" ".join(str(plat.get(k) or "") for k in ("system", "release", "machine")).strip())),
        ("C library", escape_latex(str(plat.get("libc") or "n/a"))),
        ("CPU", escape_latex(f"{env['cpu']['model']}, {env['cpu']['usable_cores']} usable of "
                             f"{env['cpu'].get('logical_cores', '?')} logical cores")),
        ("PyTorch", escape_latex(f"{torch['version']}, {torch.get('threads', '?')} threads")),
        ("CUDA", escape_latex(str(torch.get("cuda_version") or "none"))),
        ("GPU", escape_latex(gpu)),
        ("GPU driver", escape_latex(str(torch.get("driver") or "none"))),
        ("requirements.lock", format_value(str(env.get("requirements_lock_sha256") or "n/a")[:16], "code")
         + (r"\ldots" if env.get("requirements_lock_sha256") else "")),
    ]
    out["environment"] = tables.key_value(pairs, header=("", "Recorded"))
    versions = []
    for name, v in sorted(env["packages"].items(), key=lambda kv: kv[0].lower()):
        inst = v.get("installed") if isinstance(v, Mapping) else v
        pin = v.get("pinned") if isinstance(v, Mapping) else None
        text = escape_latex(inst) if inst else r"\emph{missing}"
        if inst and pin and inst.split("+")[0] != pin:
            text += r"$^\dagger$"
        versions.append((name, text))
    out["packages"] = tables.packages(versions)
    out["inputs"] = tables.key_value(manifest_checksums(loaded["manifest"]), header=("Input", "sha256 (first 16)"))
    return out


def manifest_checksums(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(file, sha256 prefix) for every checksum the manifest records, sorted by file.

    Looks in `inputs_sha256`, `inputs`, `files` and `outputs` (each a {name: sha256} or
    {name: {sha256: ...}} mapping, or a list of {path|name, sha256} records).
    """
    found: dict[str, str] = {}
    for section_name in ("inputs_sha256", "inputs", "files", "outputs"):
        section = manifest.get(section_name)
        items: list[tuple[str, Any]] = []
        if isinstance(section, Mapping):
            items = list(section.items())
        elif isinstance(section, list):
            items = [(str(r.get("path") or r.get("name") or r.get("file")), r)
                     for r in section if isinstance(r, Mapping)]
        for name, value in items:
            sha = value.get("sha256") if isinstance(value, Mapping) else value
            if isinstance(sha, str) and len(sha) == 64:
                found[name if section_name.startswith("inputs") else f"{section_name}/{name}"] = sha
    if not found:
        return [("(the manifest records no checksums)", "")]
    return [(format_value(k, "code"), format_value(v[:16], "code")) for k, v in sorted(found.items())]


# ---------------------------------------------------------------- figures

def build_figures(loaded: Mapping[str, Any], comparisons: Sequence[Mapping[str, Any]], fig_dir: Path) -> list[Path]:
    written: list[Path] = []
    s = loaded["summary"]
    z_by_split = {split: loaded["meta"][split]["z"].to_numpy(float) for split in SPLITS}
    written += figures.redshift_distribution(z_by_split, s["bin_edges"], fig_dir / "redshift_distribution")
    ex = loaded["example"]
    written += figures.example_spectrum(loaded["wave"], ex["series"], ex["text"], fig_dir / "example_spectrum",
                                        flux=ex["flux"], z=ex["z"])
    written += figures.real_vs_reconstructed(list(comparisons), fig_dir / "real_vs_reconstructed")
    written += figures.colour_colour(loaded["catalogue"], fig_dir / "colour_colour")
    b = loaded["baseline"]
    labels = {k: m["label"] for k, m in b["methods"].items() if k != b.get("null")}  # a constant needs no panel
    written += figures.baseline_predictions(loaded["predictions"], labels, b["best"], fig_dir / "baseline_predictions")
    return written



# ---------------------------------------------------------------- real spectra

def check_comparisons(comparisons: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    comparisons = list(comparisons)
    if not comparisons:
        raise InputError("specllm.data.real_spectra", "-", "no real spectra to compare",
                         "check compare_real_and_reconstructed")
    for comp in comparisons:
        for key in ("wave", "real_flux", "reconstructed_flux", "z"):
            if key not in comp:
                raise InputError("specllm.data.real_spectra", f"{comp.get('name', '?')}.{key}", "key missing",
                                 "compare_real_and_reconstructed must return wave, real_flux, reconstructed_flux, z")
    return comparisons



def load_comparisons(names: Sequence[str] = REAL_SPECTRA) -> list[dict[str, Any]]:
    """The real-vs-reconstructed comparisons from specllm.data.real_spectra (imported lazily)."""
    try:
        from specllm.data import real_spectra
    except ImportError as err:
        raise InputError("src/specllm/data/real_spectra.py", "-", f"cannot import ({err})",
                         "the module providing compare_real_and_reconstructed(name) is missing") from None
    names = list(getattr(real_spectra, "SPECTRA", names))
    out = []
    for name in names:
        comp = dict(real_spectra.compare_real_and_reconstructed(name))
        comp.setdefault("name", name)
        out.append(comp)
    return out


# ---------------------------------------------------------------- the section

def read_inputs(ctx: Context) -> dict[str, Any]:
    """Every input of this section, read and checked (load_inputs), with the real-spectra comparisons."""
    loaded = load_inputs(ctx.params, ctx.inputs)
    loaded["comparisons"] = check_comparisons(ctx.comparisons)
    loaded["inputs"] = ctx.inputs
    return loaded


def make_macros(ms: MacroSet, loaded: Mapping[str, Any]) -> None:
    build_macros(loaded, loaded["inputs"], loaded["comparisons"], ms)


def make_tables(loaded: Mapping[str, Any]) -> dict[str, str]:
    return build_tables(loaded)


def make_figures(loaded: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    return build_figures(loaded, loaded["comparisons"], fig_dir)


SECTION = Section("setup", read_inputs, make_macros, make_tables, make_figures)
