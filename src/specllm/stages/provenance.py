"""Stage `provenance`: where every macro, table and figure of the paper came from, and what it cost.

    python -m specllm.stages.provenance

Reads
    paper/generated/values.json    every macro (name, key, value, source file)
    paper/generated/{tables,figures}/  the tables and figures (specllm.artifacts says what made them)
    dvc.lock                       per stage: cmd, params and values, deps and outs with their hashes
    data.dvc                       the hash of the embedded source data/raw
    results/environment.json       packages, CPU/GPU, driver (environment stage)
    results/cost/*.json            wall time, CPU time, peak memory, hardware per stage (specllm.cost)
    params                         cost.usd_per_gpu_hour, provenance.repo_url, provenance.repo_ref
Writes
    results/provenance.json        one record per macro, table and figure: the stage that made it
                                   (and the stage that produced its source file), its output file,
                                   the params keys and values it depends on, the data hash, the code
                                   version (git commit + dirty flag) and the environment; per stage
                                   the lock entry and its cost record
    paper/generated_provenance/    macros.tex (caption links \\LinkFigure<Stem>/\\LinkTable<Stem>,
                                   \\SourceLink{path}, cost totals), tables/cost.tex (compute cost per
                                   stage), tables/data_hashes.tex, appendix.tex (the appendix section)

Determinism and git state (why the commit is only in provenance.json):
  * dvc.lock cannot be a declared dependency (this stage's own entry is written into it). It is
    read at run time instead, and that is safe: every stage run rewrites its results/cost record,
    which *is* a dependency (results/cost/), so any change of an upstream lock entry reruns this
    stage, and a run-cache restore restores the matching record and lock entry together.
  * data.dvc cannot be a DVC dependency either (DVC refuses .dvc files as deps); it is read at run
    time for the same reason: a changed data/raw reruns `prepare`, whose new cost record reruns this.
  * The git commit and dirty flag go into results/provenance.json only, never into the TeX: the
    PDF is then a function of the declared dependencies alone, so identical inputs still give a
    byte-identical PDF, and a commit that changes nothing the paper depends on does not rerun
    anything. (dvc.lock itself is left out of the dirty check: DVC rewrites it during every run.)
  * The cost table does carry measured times. They come from dependencies (the cost records), so a
    no-op `dvc repro` keeps the PDF, but two independent runs differ there, and only there.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from specllm import artifacts, paths
from specllm.errors import InputError
from specllm.io import atomic_dir, read_json, sha256_file, write_json
from specllm.report import tables
from specllm.report.macros import MacroSet, escape_latex, format_value
from specllm.runner import run_main

PARAM_KEYS = ("cost.usd_per_gpu_hour", "provenance.repo_url", "provenance.repo_ref")
OUT_DIR = paths.rel(paths.GENERATED_PROVENANCE)
RAW = paths.rel(paths.RAW)
COST = paths.rel(paths.COST)
GENERATED = paths.rel(paths.GENERATED)


# ---------------------------------------------------------------- reading

def read_lock(root: Path) -> dict[str, dict[str, Any]]:
    """dvc.lock's stages in pipeline order: {stage: {cmd, params {k: v}, deps {path: hash}, outs {path: hash}}}."""
    file = Path(root) / "dvc.lock"
    if not file.is_file():
        raise InputError(file, "-", "file not found", "run the pipeline with `dvc repro` (it writes dvc.lock)")
    tree = YAML(typ="safe").load(file.read_text()) or {}
    out: dict[str, dict[str, Any]] = {}
    for name, st in (tree.get("stages") or {}).items():
        params: dict[str, Any] = {}
        for values in (st.get("params") or {}).values():
            params.update(values or {})
        out[name] = {
            "cmd": st.get("cmd"),
            "params": dict(sorted(params.items())),
            "deps": {d["path"]: d.get("md5") for d in st.get("deps") or []},
            "outs": {o["path"]: o.get("md5") for o in st.get("outs") or []},
        }
    return out


def data_hash(root: Path) -> dict[str, Any]:
    """data.dvc's record of data/raw (md5 of the folder, files, bytes)."""
    file = paths.at(root, paths.DATA_DVC)
    if not file.is_file():
        raise InputError(file, "-", "file not found", "restore data.dvc from git")
    outs = (YAML(typ="safe").load(file.read_text()) or {}).get("outs") or []
    if not outs:
        raise InputError(file, "outs", "no output recorded", "restore data.dvc from git")
    o = outs[0]
    return {"path": o.get("path"), "md5": o.get("md5"), "nfiles": o.get("nfiles"), "size": o.get("size")}


def git_state(root: Path) -> dict[str, Any]:
    """Commit and dirty flag (dvc.lock excluded: DVC rewrites it during the run). Null outside git."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                                  check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = sorted({line[3:].strip() for line in (status or "").splitlines() if line[3:].strip() != "dvc.lock"})
    return {"git_commit": commit.strip() if commit else None, "dirty": bool(dirty), "dirty_files": dirty}


def read_costs(cost_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for file in sorted(Path(cost_dir).glob("*.json")):
        rec = read_json(file, "rerun the stage (`dvc repro`); specllm.cost writes this record")
        out[str(rec.get("stage", file.stem))] = rec
    return out


# ---------------------------------------------------------------- records

def producer(path: str, lock: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The DVC stage whose output is `path` (or holds it, for a folder output)."""
    path = path.strip("/")
    for stage, st in lock.items():
        for out in st["outs"]:
            if path == out or path.startswith(out.rstrip("/") + "/"):
                return stage
    if path == RAW or path.startswith(RAW + "/"):
        return "data.dvc"
    return None


def source_params(source: str, key: str, stage: str | None, lock: Mapping[str, Mapping[str, Any]],
                  flat_params: Mapping[str, Any]) -> dict[str, Any]:
    if source == "params.yaml":
        return {key: flat_params[key]} if key in flat_params else {}
    if stage and stage in lock:
        return dict(lock[stage]["params"])
    return {}


def link_url(base: str, ref: str, path: str) -> str:
    """Repository URL of a source file; relative to the PDF (paper/ -> ../) when no base is set."""
    if not base:
        return "../" + path
    return f"{base.rstrip('/')}/blob/{ref}/{path}"


def build_records(root: Path, values: Mapping[str, Any], lock: Mapping[str, Mapping[str, Any]],
                  flat_params: Mapping[str, Any], data: Mapping[str, Any], link: dict[str, str]) -> dict[str, Any]:
    report_params = dict(lock.get("report", {}).get("params", {}))
    macros = []
    for m in values.get("macros", []):
        source = str(m.get("source") or "")
        from_stage = producer(source, lock) if source else None
        macros.append({
            "name": m["name"], "key": m["key"], "kind": m["kind"], "value": m["value"],
            "stage": "report", "output": f"{GENERATED}/macros.tex",
            "source": source, "source_stage": from_stage,
            "params": source_params(source, m["key"], from_stage, lock, flat_params),
            "data_hash": data.get("md5"),
        })
    arts = []
    for art in artifacts.discover(root, GENERATED):
        sub = "figures" if art.kind == "figure" else "tables"
        suffix = ".pdf" if art.kind == "figure" else ".tex"
        files = artifacts.data_files(art, root, GENERATED)
        stages = sorted({s for f in files if (s := producer(f, lock))} - {"report"})
        params = dict(report_params)
        for s in stages:
            if s in lock:
                params.update(lock[s]["params"])
        arts.append({
            "id": art.id, "kind": art.kind, "stem": art.stem, "stage": "report",
            "output": f"{GENERATED}/{sub}/{art.stem}{suffix}",
            "made_by": art.made_by, "function": art.function, "link": link[art.id],
            "data": {f: artifacts.digest(root / f) for f in files},
            "data_stages": stages, "params": dict(sorted(params.items())), "data_hash": data.get("md5"),
        })
    return {"macros": macros, "artifacts": arts}


# ---------------------------------------------------------------- TeX

def _hours(x: float) -> str:
    return format_value(x, "float", 4 if x < 0.01 else 2)


def cost_rows(lock: Mapping[str, Any], costs: Mapping[str, Mapping[str, Any]], usd_per_gpu_hour: float):
    """(rows for the table, totals) in pipeline order; stages without a record say so."""
    rows, tot = [], {"wall_s": 0.0, "cpu_hours": 0.0, "gpu_hours": 0.0}
    for stage in lock:
        rec = costs.get(stage)
        if rec is None:
            if stage.split("@")[0] in ("provenance", "paper"):
                continue  # recorded in results/cost_final/, after this table is written
            rows.append([format_value(stage, "code"), r"\multicolumn{6}{l}{\emph{no record}}"] + [""] * 0)
            continue
        gpu_h = float(rec.get("gpu_hours") or 0.0)
        for k in tot:
            tot[k] += float(rec.get(k) or 0.0)
        device = ", ".join(rec.get("gpus") or []) or "CPU"
        cuda = rec.get("cuda_max_allocated_mib")
        rows.append([
            format_value(stage, "code"), escape_latex(device),
            format_value(float(rec.get("wall_s", 0.0)), "float", 1),
            _hours(float(rec.get("cpu_hours") or 0.0)),
            _hours(gpu_h) if gpu_h else "--",
            format_value(float(rec.get("peak_rss_mib", 0.0)), "float", 0)
            + (" / " + format_value(float(cuda), "float", 0) if cuda else ""),
            format_value(gpu_h * usd_per_gpu_hour, "float", 2) if gpu_h else "--",
        ])
    tot["usd"] = tot["gpu_hours"] * usd_per_gpu_hour
    return rows, tot


def cost_table(rows: list, tot: Mapping[str, float]) -> str:
    header = ["Stage", "Device", "Wall (s)", "CPU-h", "GPU-h", "Peak MiB (RAM / GPU)", "USD"]
    fixed = []
    for r in rows:
        if len(r) == 2:  # "no record"
            fixed.append(f"{r[0]} & {r[1]} \\\\")
        else:
            fixed.append(r)
    total = [r"\textbf{total}", "", format_value(tot["wall_s"], "float", 1), _hours(tot["cpu_hours"]),
             _hours(tot["gpu_hours"]) if tot["gpu_hours"] else "--", "",
             format_value(tot["usd"], "float", 2) if tot["gpu_hours"] else "--"]
    return tables.booktabs(header, [*fixed, tables.MIDRULE, total], "llrrrrr")


def data_hash_table(data: Mapping[str, Any], lock: Mapping[str, Mapping[str, Any]], root: Path) -> str:
    rows = [[format_value(str(data.get("path") or RAW), "code") + r" (\texttt{data.dvc})",
             format_value(str(data.get("md5") or "n/a"), "code")]]
    seen = set()
    for st in lock.values():
        for out, md5 in st["outs"].items():
            if out in seen or not md5 or not (out.startswith(paths.rel(paths.DATA) + "/") or out.startswith(paths.rel(paths.BASE_MODEL))):
                continue
            seen.add(out)
            rows.append([format_value(out, "code"), format_value(str(md5).removesuffix(".dir"), "code")])
    values = root / GENERATED / "values.json"
    if values.is_file():
        rows.append([format_value(f"{GENERATED}/values.json", "code") + " (sha256, first 32)",
                     format_value(sha256_file(values)[:32], "code")])
    return tables.booktabs(["Data", "Hash (md5 unless stated)"], rows, ["l", "l"])


LINK_MACRO = r"\newcommand{\SourceLink}[1]{\href{\SourceBaseUrl#1}{\nolinkurl{#1}}}"


def build_macros(link_base: str, arts: Sequence[Mapping[str, Any]], tot: Mapping[str, float],
                 usd_per_gpu_hour: float, data: Mapping[str, Any]) -> MacroSet:
    ms = MacroSet()
    for a in arts:
        # "\href{url}{src/specllm/report/figures.py} (function)": a clickable caption source.
        # \protect: captions are moving arguments (written to the .aux), and \href is fragile.
        text = (r"\protect\href{" + a["link"].replace("#", r"\#").replace("%", r"\%") + "}{\\protect\\nolinkurl{"
                + a["made_by"] + "}} (\\texttt{" + escape_latex(a["function"]) + "})")
        ms.add(f"link.{a['kind']}.{a['stem']}", text, source=a["made_by"], kind="latex")
    ms.add("compute.wall_hours", tot["wall_s"] / 3600.0, source=COST, kind="float", precision=2)
    ms.add("compute.cpu_hours", tot["cpu_hours"], source=COST, kind="float", precision=2)
    ms.add("compute.gpu_hours", tot["gpu_hours"], source=COST, kind="float", precision=2)
    ms.add("compute.usd", tot["usd"], source=COST, kind="float", precision=2)
    ms.add("compute.usd_per_gpu_hour", usd_per_gpu_hour, source="params.yaml", kind="float", precision=2)
    ms.add("data.hash_short", str(data.get("md5") or "n/a")[:12], source="data.dvc", kind="code")
    ms.add("source.base_url", link_base, source="params.yaml", kind="latex")
    return ms


APPENDIX = r"""%% Generated by specllm.stages.provenance; do not edit.
\subsection{Provenance and compute cost}\label{app:provenance}

Every macro, table and figure of this document has a provenance record in
\texttt{results/provenance.json}: the stage that made it and the stage that produced its input,
the output file, the parameters it depends on with their values, the hash of the input data
(\texttt{data.dvc}: \DataHashShort), the git commit of the code with a flag for uncommitted changes,
and the environment of Table~\ref{tab:env}. Table~\ref{tab:datahashes} lists the hashes of the
data products. Each caption names, and links to, the source file that drew the table or figure;
\texttt{make verify} recomputes every value and compares it with the values this document reports.

Table~\ref{tab:cost} gives the measured cost of each stage of this build (wall time, CPU time,
peak memory and the device); GPU-hours are priced at \$\ComputeUsdPerGpuHour{} per GPU-hour
(\texttt{cost.usd\_per\_gpu\_hour} in \texttt{params.yaml}, which cites the price). This build took
\ComputeWallHours{} hours of wall time, \ComputeCpuHours{} CPU-hours and \ComputeGpuHours{}
GPU-hours (\$\ComputeUsd{}). Stages restored from the DVC cache show the cost of the run that made
their outputs.

\begin{table}[h]
\centering\small
\caption{Data products and their hashes (from \texttt{dvc.lock} and \texttt{data.dvc}).}\label{tab:datahashes}
\input{generated_provenance/tables/data_hashes.tex}
\end{table}

\begin{table}[h]
\centering\footnotesize
\caption{Compute cost per stage (\texttt{results/cost/}, written by \texttt{specllm.cost}).}\label{tab:cost}
\input{generated_provenance/tables/cost.tex}
\end{table}
"""


# ---------------------------------------------------------------- the stage

def write_provenance(root: Path, params: Mapping[str, Any], out_json: Path, out_dir: Path) -> dict[str, Any]:
    root = Path(root)
    values = read_json(root / GENERATED / "values.json", "run the report stage (`dvc repro report`)")
    env = read_json(paths.at(root, paths.ENVIRONMENT), "run `dvc repro environment`")
    lock = read_lock(root)
    data = data_hash(root)
    costs = read_costs(paths.at(root, paths.COST))
    usd = float(params["cost.usd_per_gpu_hour"])
    base = str(params["provenance.repo_url"] or "")
    ref = str(params["provenance.repo_ref"] or "main")
    # Both reach LaTeX verbatim (\href): checked here too, whoever passes the params (an injected
    # `\input{/etc/passwd}` or `\write18` once broke the build).
    from specllm import config

    for key, value in (("provenance.repo_url", base), ("provenance.repo_ref", ref)):
        if problem := config.SCHEMA[key](value):
            raise InputError(root / "params.yaml", key, problem, "correct the value in params.yaml")
    # Parameter values as the stages used them (dvc.lock), not params.yaml: reading params.yaml here
    # would be an undeclared dependency. The report's own entry wins (it prints params.yaml values).
    flat: dict[str, Any] = {}
    for name, st in lock.items():
        if name != "report":
            flat.update(st["params"])
    flat.update(lock.get("report", {}).get("params", {}))
    link = {a.id: link_url(base, ref, a.made_by) for a in artifacts.discover(root, GENERATED)}
    records = build_records(root, values, lock, flat, data, link)
    rows, tot = cost_rows(lock, costs, usd)
    link_base = link_url(base, ref, "")
    record = {
        "generator": "specllm.stages.provenance",
        "code": git_state(root),
        "environment": env,
        "data": {"data.dvc": data},
        "stages": {s: {**st, "cost": costs.get(s)} for s, st in lock.items()},
        "cost": {"usd_per_gpu_hour": usd, "totals": tot},
        **records,
    }
    ms = build_macros(link_base, records["artifacts"], tot, usd, data)
    with atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        (tmp / "macros.tex").write_text(ms.tex() + LINK_MACRO + "\n", encoding="utf-8")
        tables.write(tmp / "tables" / "cost.tex", cost_table(rows, tot))
        tables.write(tmp / "tables" / "data_hashes.tex", data_hash_table(data, lock, root))
        (tmp / "appendix.tex").write_text(APPENDIX, encoding="utf-8")
    write_json(out_json, record)
    return record


def main() -> None:
    from specllm import config, paths

    sp = config.stage_params("provenance")
    params = {k: sp[k] for k in PARAM_KEYS}
    rec = write_provenance(paths.ROOT, params, paths.PROVENANCE, paths.ROOT / OUT_DIR)
    print(f"provenance: {len(rec['macros'])} macros, {len(rec['artifacts'])} tables/figures, "
          f"{len(rec['stages'])} stages; commit {str(rec['code']['git_commit'])[:12]}"
          f"{' (dirty)' if rec['code']['dirty'] else ''} -> results/provenance.json, {OUT_DIR}/")


if __name__ == "__main__":
    run_main(main)
