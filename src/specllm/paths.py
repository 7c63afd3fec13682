"""Every path the project reads or writes, in one place (showyourwork!-style).

Paths are relative to the project root: the folder holding dvc.yaml, found upwards
from the working directory (DVC runs every stage from there), or $SPECLLM_ROOT.
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

MODELS = ROOT / "models"
BASE_MODEL = MODELS / "base"          # safetensors folder the LLM stages load
LORA = MODELS / "lora"                # one LoRA adapter folder per training run

RESULTS = ROOT / "results"            # metrics (JSON) and plot data of every stage

PAPER = ROOT / "paper"
GENERATED = PAPER / "generated"       # macros, tables and figures written by the report stage
FIGURES = GENERATED / "figures"
TABLES = GENERATED / "tables"
PDF = PAPER / "main.pdf"
