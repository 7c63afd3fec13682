"""Every path the project reads or writes, in one place (showyourwork!-style).

Paths are relative to the project root: the folder holding dvc.yaml, found upwards
from the working directory (DVC runs every stage from there), or $SPECLLM_ROOT.
`at(root, X)` is the path X below another project root (a test's temporary project, the report's
`Inputs.under`), spelled the same way, so every reader and writer names a path here only.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if env := os.environ.get("SPECLLM_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


ROOT = _find_root()
PARAMS = ROOT / "params.yaml"
DVC_YAML = ROOT / "dvc.yaml"
DATA_DVC = ROOT / "data.dvc"          # DVC's record of data/raw (md5 of the folder)
DVC_CACHE = ROOT / ".dvc" / "cache"  # DVC's default cache (content-addressed outputs, .dir manifests)
PROFILES = ROOT / "profiles"

DATA = ROOT / "data"
RAW = DATA / "raw"                    # embedded source, tracked by data.dvc
EXTERNAL = DATA / "external"          # imported / downloaded real sources (not in git)
SDSS17 = EXTERNAL / "sdss17"          # `specllm data import-sdss17` writes here
DR16 = EXTERNAL / "dr16"              # resumable SkyServer download cache
DR16_SOURCE = DATA / "dr16"           # DR16 spectra in data/raw's format (fetch_dr16 stage)
PREPARED = DATA / "prepared"          # split, resampled, rescaled spectra
SERIALIZED = DATA / "serialized"      # LLMTime text for the LLM
CATALOGUE = RAW / "catalogue.csv"     # the embedded photometric catalogue (stability study, colour figure)
MANIFEST = RAW / "manifest.json"      # what data/raw holds and where it came from
SDSS17_CATALOGUE = SDSS17 / "catalogue.csv"
REFERENCE = DATA / "reference"        # committed published values the paper compares with
ARXIV_REFERENCE = REFERENCE / "arxiv_2508.10075.json"
SCSE_REFERENCE = REFERENCE / "scse.json"

MODELS = ROOT / "models"
BASE_MODEL = MODELS / "base"          # safetensors folder the LLM stages load
LORA = MODELS / "lora"                # one LoRA adapter folder per training run
STABILITY_WARMUP_ADAPTER = MODELS / "stability_warmup"
STABILITY_DPO_ADAPTER = MODELS / "stability_dpo"

RESULTS = ROOT / "results"            # metrics (JSON) and plot data of every stage
TRAIN_RESULTS = RESULTS / "train"     # one folder per LoRA run (train.json, loss.csv)
EVAL = RESULTS / "eval"               # one summary and predictions per evaluated run
RETENTION = RESULTS / "retention"     # one retention record per run
STABILITY = RESULTS / "stability"     # the stability study's outputs (specllm.stability.files)
STABILITY_FILES = {name: STABILITY / file for name, file in (
    ("objects", "objects.csv"),                 # sampled objects, features, split
    ("orders", "orders.json"),                  # the feature orders (same for every object)
    ("sample", "sample.json"),
    ("warmup_objects", "warmup_objects.csv"),   # warm-up objects (never probed), shown in one order
    ("warmup", "warmup.json"),                  # warm-up loss, accuracy on its own objects, time
    ("warmup_loss", "warmup_loss.csv"),
    ("probe", "probe.csv"),                     # one row per (object, order): logits, answer
    ("hidden", "hidden.npz"),                   # last-layer last-token hidden states, float16
    ("decode", "decode.csv"),                   # free-text answers of the decoded subsample
    ("probe_json", "probe.json"),
    ("per_object", "per_object.csv"),           # PSS, entropy, K, ... per object
    ("spectral", "spectral.npz"),               # eigenvalues and cluster labels per object
    ("analysis", "analysis.json"),
    ("pairs", "pairs.csv"),
    ("dpo_loss", "dpo_loss.csv"),
    ("dpo", "dpo.json"),
    ("reprobe", "reprobe.csv"),
    ("reprobe_json", "reprobe.json"),
)}

COST = RESULTS / "cost"               # one cost record per stage (specllm.cost)
COST_FINAL = RESULTS / "cost_final"   # the report/provenance/paper stages' records (written after the report)
ENVIRONMENT = RESULTS / "environment.json"
DATA_SUMMARY = RESULTS / "data_summary.json"          # prepare: split sizes and redshift bins
MODEL_INFO = RESULTS / "model.json"                   # model: the base LLM's origin, size and hash
SERIALIZATION = RESULTS / "serialization.json"        # serialize: token counts and the context budget
BASELINE = RESULTS / "baseline.json"                  # baseline: the regressors' metrics
BASELINE_PREDICTIONS = RESULTS / "baseline_predictions.csv"
ABLATION = RESULTS / "ablation.json"                  # select: every run, the best, the paired comparisons
ABLATION_BEST_PREDICTIONS = RESULTS / "ablation_best_predictions.csv"
ABLATION_PER_BIN = RESULTS / "ablation_per_bin.csv"
DEMO = RESULTS / "demo.json"                          # demo: one galaxy read, one follow-up answered
VERDICTS = RESULTS / "verdicts.json"                  # verdicts: one per headline claim of both studies
PROVENANCE = RESULTS / "provenance.json"              # provenance: a record per macro, table and figure

PAPER = ROOT / "paper"
MAIN_TEX = PAPER / "main.tex"
SECTIONS = PAPER / "sections"         # the paper's section .tex files
GENERATED = PAPER / "generated"       # macros, tables and figures written by the report stage
VALUES = GENERATED / "values.json"    # every macro's value (what `specllm verify` compares)
GENERATED_PROVENANCE = PAPER / "generated_provenance"  # the provenance stage's appendix and link macros
REPORTED = PAPER / "reported"         # <profile>.json: the frozen reported values (make freeze)
FIGURES = GENERATED / "figures"
TABLES = GENERATED / "tables"
PDF = PAPER / "main.pdf"


_ANCHOR = ROOT  # the root the constants above were built on


def _relative(path: Path) -> Path:
    # relative to the root in use (tests point ROOT and some constants at a temporary project), else to the
    # root the constants were built on
    for base in (ROOT, _ANCHOR):
        try:
            return Path(path).relative_to(base)
        except ValueError:
            continue
    raise ValueError(f"{path} is not below the project root {ROOT}")


def at(root: str | Path, path: Path) -> Path:
    """`path` (one of the constants above) below another project root, spelled the same way."""
    return Path(root) / _relative(path)


def shown(path: str | Path, root: str | Path | None = None) -> str:
    """`path` relative to the project root (`root`, default ROOT) when it lies inside it, else as given,
    in POSIX form: how outputs record a path, so that their bytes do not depend on where the clone lies."""
    path, root = Path(path), Path(root or ROOT)
    # as given, then absolute, then with symlinks resolved: a tmp folder or a clone may be reached either way
    for p, r in ((path, root), (path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        if p.is_relative_to(r):
            return p.relative_to(r).as_posix()
    return path.as_posix()


def rel(path: Path) -> str:
    """`path` (one of the constants above) relative to the project root, as dvc.yaml and the paper write it."""
    return _relative(path).as_posix()
