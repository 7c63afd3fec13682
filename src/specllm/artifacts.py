"""The paper's tables and figures: which code makes each, and which data files it is drawn from.

One registry that three consumers share:
  * `specllm verify` checks each figure's underlying data (the files below) and each table's
    generated .tex (a table *is* its data: the numbers it prints) by sha256 for the "identical"
    level and by value (specllm.fingerprint) for "within tolerance";
  * the `provenance` stage records, for each, the stage and script that made it, and writes the
    caption link macros (\\LinkFigure<Stem>, \\LinkTable<Stem>) that point at `made_by`;
  * tests check that every row's function exists, that every figure and table the paper includes has
    a row, and that its caption carries the row's link macro; `specllm where` prints the row.
A new figure is one function in its section module and one row here.

A table or figure found in paper/generated/ without an entry still gets checked and linked:
tables by their .tex, figures by their rendered PNG (deterministic on one machine, but it depends
on matplotlib and its fonts, so prefer listing the data files).

`data` paths are relative to the project root; a glob (`*`) is expanded and sorted.
`machine` marks tables whose content describes the machine or measures the run (environment,
packages, training throughput): verify reports their changes but never fails on them.
Data files are digested by `digest()`: the file's sha256, except .npz archives, whose zip entries
carry the time they were written: for those, the sha256 of the arrays (name, dtype, shape, bytes);
and .json files, digested as canonical JSON without the keys that measure the run (MEASURED_JSON_KEY:
two independent smoke runs differ only there, e.g. reprobe.json's timing block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from specllm import paths

FIGURES_PY = "src/specllm/report/figures.py"
TABLES_PY = "src/specllm/report/tables.py"
SETUP_PY = "src/specllm/report/setup.py"
ABLATION_PY = "src/specllm/report/ablation.py"
STABILITY_PY = "src/specllm/report/stability.py"
VERDICTS_PY = "src/specllm/verdicts.py"
SECTIONS = ("setup", "ablation", "stability", "verdicts")  # specllm.report.<section> makes it


@dataclass(frozen=True)
class Artifact:
    kind: str                      # "figure" | "table"
    stem: str                      # file stem in paper/generated/{figures,tables}/
    made_by: str                   # source file that draws/typesets it (the caption link)
    function: str                  # the function in made_by
    data: tuple[str, ...] = ()     # figures: the data files it is drawn from
    machine: bool = False          # tables: describes the machine, not a result
    extra: dict = field(default_factory=dict)
    section: str = ""              # the specllm.report section module that makes it (SECTIONS)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.stem}"


_R = paths.rel
_S = {name: _R(path) for name, path in paths.STABILITY_FILES.items()}
_PREPARED_META = tuple(_R(paths.PREPARED / f"{split}_meta.csv") for split in ("train", "val", "test"))

REGISTRY: dict[str, Artifact] = {a.id: a for a in (
    Artifact("figure", "redshift_distribution", FIGURES_PY, "redshift_distribution",
             (_R(paths.DATA_SUMMARY), *_PREPARED_META),
             section="setup"),
    Artifact("figure", "example_spectrum", FIGURES_PY, "example_spectrum",
             (_R(paths.SERIALIZED / "train.jsonl"), _R(paths.PREPARED / "wavelength.npy"), _R(paths.PREPARED / "train_flux.npy"),
              _PREPARED_META[0]), section="setup"),
    # Drawn from pPXF's shipped spectra and kcorrect fits computed in the report process: no stage
    # file holds its data, so the rendered PNG is what is checked (see the module docstring).
    Artifact("figure", "real_vs_reconstructed", FIGURES_PY, "real_vs_reconstructed",
             (_R(paths.FIGURES / "real_vs_reconstructed.png"),),
             section="setup"),
    Artifact("figure", "colour_colour", FIGURES_PY, "colour_colour", (_R(paths.CATALOGUE),),
             section="setup"),
    Artifact("figure", "baseline_predictions", FIGURES_PY, "baseline_predictions",
             (_R(paths.BASELINE_PREDICTIONS), _R(paths.BASELINE)),
             section="setup"),
    Artifact("figure", "ablation_predictions", FIGURES_PY, "ablation_predictions",
             (_R(paths.ABLATION_BEST_PREDICTIONS), _R(paths.ABLATION)),
             section="ablation"),
    Artifact("figure", "ablation_per_bin", FIGURES_PY, "ablation_per_bin",
             (_R(paths.ABLATION_PER_BIN), _R(paths.ABLATION), _R(paths.BASELINE_PREDICTIONS),
              _R(paths.DATA_SUMMARY)), section="ablation"),
    Artifact("figure", "ablation_loss", FIGURES_PY, "loss_curves", (_R(paths.TRAIN_RESULTS / "*" / "loss.csv"),),
             section="ablation"),
    Artifact("figure", "stability_eigenvalues", STABILITY_PY, "_eigenvalues",
             (_S["spectral"], _S["analysis"]),
             section="stability"),
    Artifact("figure", "stability_hidden_pca", STABILITY_PY, "_hidden_pca",
             (_S["hidden"], _S["spectral"], _S["probe"],
              _S["analysis"]),
             section="stability"),
    Artifact("figure", "stability_pss", STABILITY_PY, "_pss", (_S["per_object"],),
             section="stability"),
    Artifact("figure", "stability_before_after", STABILITY_PY, "_before_after", (_S["reprobe_json"],),
             section="stability"),
    Artifact("figure", "stability_k_sigma", STABILITY_PY, "_k_sigma", (_S["analysis"],),
             section="stability"),
    Artifact("table", "ablation_lr", ABLATION_PY, "dimension_table", section="ablation"),
    Artifact("table", "ablation_rank", ABLATION_PY, "dimension_table", section="ablation"),
    Artifact("table", "ablation_epochs", ABLATION_PY, "dimension_table", section="ablation"),
    Artifact("table", "ablation_retention", ABLATION_PY, "retention_table", section="ablation"),
    Artifact("table", "verdicts", VERDICTS_PY, "latex_table", section="verdicts"),
    # Throughput, peak memory and wall time of each training run: measurements, not results.
    Artifact("table", "ablation_cost", ABLATION_PY, "cost_table", machine=True, section="ablation"),
    Artifact("table", "stability_summary", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "stability_confusion", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "stability_checks", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "stability_categories", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "stability_before_after", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "stability_baselines", STABILITY_PY, "make_tables", section="stability"),
    Artifact("table", "data_summary", TABLES_PY, "data_summary", section="setup"),
    Artifact("table", "splits", TABLES_PY, "splits", section="setup"),
    Artifact("table", "baseline", TABLES_PY, "baseline", section="setup"),
    Artifact("table", "model", SETUP_PY, "build_tables", section="setup"),
    Artifact("table", "params", SETUP_PY, "build_tables", section="setup"),
    Artifact("table", "inputs", SETUP_PY, "manifest_checksums", section="setup"),
    Artifact("table", "environment", SETUP_PY, "build_tables", machine=True, section="setup"),
    Artifact("table", "packages", TABLES_PY, "packages", machine=True, section="setup"),
)}


def discover(root: Path, generated: str = _R(paths.GENERATED)) -> list[Artifact]:
    """Every table and figure in paper/generated/ (registry entries first, then unknown ones), sorted."""
    root = Path(root)
    found: dict[str, Artifact] = {}
    for kind, folder, suffix in (("figure", "figures", ".png"), ("table", "tables", ".tex")):
        for file in sorted((root / generated / folder).glob(f"*{suffix}")):
            key = f"{kind}:{file.stem}"
            if key in REGISTRY:
                found[key] = REGISTRY[key]
            elif kind == "figure":
                found[key] = Artifact(kind, file.stem, FIGURES_PY, file.stem,
                                      (f"{generated}/figures/{file.name}",))
            else:
                found[key] = Artifact(kind, file.stem, TABLES_PY, file.stem)
    return [found[k] for k in sorted(found)]


def data_files(art: Artifact, root: Path, generated: str = _R(paths.GENERATED)) -> list[str]:
    """The files whose sha256 stands for the artifact: a figure's data, a table's .tex."""
    if art.kind == "table":
        return [f"{generated}/tables/{art.stem}.tex"]
    out: list[str] = []
    for pattern in art.data:
        if "*" in pattern:
            out.extend(sorted(p.relative_to(root).as_posix() for p in Path(root).glob(pattern)))
        else:
            out.append(pattern)
    return out


# Keys of a JSON data file that measure the run (throughput, time, memory, device), not its result:
# e.g. results/stability/reprobe.json's "timing" block. Left out of its digest, as verify leaves
# measured macros out of the comparison.
MEASURED_JSON_KEY = re.compile(r"^(timing|seconds|wall_s|s_per_step|peak_memory_bytes|peak_memory_kind|device)$|_per_s$")


def _drop_measurements(data):
    if isinstance(data, dict):
        return {k: _drop_measurements(v) for k, v in data.items() if not MEASURED_JSON_KEY.search(str(k))}
    if isinstance(data, list):
        return [_drop_measurements(v) for v in data]
    return data


def digest(path: Path) -> str | None:
    """sha256 of a data file (of its arrays for .npz, see the module docstring); None if absent."""
    from specllm.io import sha256_file

    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix == ".json":
        import hashlib
        import json

        data = _drop_measurements(json.loads(path.read_text(encoding="utf-8")))
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    if path.suffix != ".npz":
        return sha256_file(path)
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as npz:
        for name in sorted(npz.files):
            a = np.ascontiguousarray(npz[name])
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()
