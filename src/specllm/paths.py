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

COST = RESULTS / "cost"               # one cost record per stage (specllm.cost)
ENVIRONMENT = RESULTS / "environment.json"

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


def rel(path: Path) -> str:
    """`path` (one of the constants above) relative to the project root, as dvc.yaml and the paper write it."""
    return _relative(path).as_posix()
