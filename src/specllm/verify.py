"""`specllm verify` / `specllm freeze`: the values the paper reports, frozen, and checked against a rerun.

The reported values live in a committed, reviewable file next to the paper,
`paper/reported/<profile>.json` (one per profile: smoke, small and paper report different numbers;
the active profile is the `profile` key of params.yaml). It is written only by `specllm freeze`
(`make freeze`), deliberately, from the outputs of a clean pipeline, and never by `dvc repro`: a
DVC stage output would follow every rerun, which is exactly what must not happen silently.

    specllm freeze   refuse unless `dvc status` is clean; write paper/reported/<profile>.json from
                     paper/generated/values.json (every macro) and the sha256 of each figure's
                     underlying data and of each generated table (specllm.artifacts)
    specllm verify   `dvc repro` (restores from the cache/run cache what it can; --pull also from
                     the remote), then compare the regenerated values with the frozen ones, each
                     within its own tolerance; print a table (name, where it appears in the paper,
                     reported, regenerated, tolerance, verdict) and exit 1 on any mismatch

Tolerance rules (stated per entry in the frozen file, so a reviewer sees each one):
  * counts (kind int), text, code and composed LaTeX (claims): exact;
  * floats (float, percent, sci): exact (bit for bit) when the frozen run used no GPU: the CPU
    pipeline is deterministic, so any difference is a real change. When it did use a GPU, the
    values that come from GPU stages (GPU_STAGE_RE) get GPU_TOLERANCE for their kind: nondeterministic
    kernels (atomics in reductions, TF32/bf16) move the last digits between runs and GPUs;
  * machine descriptions (env.*, anything from results/environment.json, the environment and
    packages tables) and measurements of the run (MEASURED_KEY_RE: throughput, peak memory, wall
    time, device; the training-cost table): "info": shown when they differ, never a failure
    (another machine or a busier one is not a wrong result);
  * figures and tables: sha256 of the figure's data files / the table's .tex; on a GPU run, those
    drawn from GPU stages are "sha256 (advisory)": their numbers are checked through the macros.
Cost records (results/cost/) are never compared: they are measurements of the run, not results.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specllm import artifacts
from specllm.errors import InputError
from specllm.io import write_json

REPORTED_DIR = "paper/reported"
VALUES = "paper/generated/values.json"
GENERATED = "paper/generated"
PAPER_TEX = ("paper/main.tex", "paper/sections/*.tex", "paper/generated_provenance/appendix.tex")
# Stages whose numbers a GPU computes (the lead extends this for new GPU stages).
GPU_STAGE_RE = re.compile(r"^(train|evaluate|retention|select|demo|stability|permut|cluster|dpo)")
# Per kind, for GPU-computed values: pass when |a - b| <= max(abs, rel * |frozen|). Percent values
# are stored as fractions, so abs 0.01 is one percentage point.
GPU_TOLERANCE = {
    "float": {"rel": 0.02, "abs_ulps": 2},   # abs: 2 units in the last printed decimal
    "percent": {"rel": 0.0, "abs": 0.01},
    "sci": {"rel": 0.02, "abs": 0.0},
}
FLOAT_KINDS = ("float", "percent", "sci")
MACHINE_SOURCES = ("results/environment.json",)
# Values that measure the run rather than result from it (throughput, peak memory, wall time, the
# device): like the cost records, shown when they differ, never a failure, and left out of the
# bitwise-reproducibility check (tests/test_verify_smoke.py).
MEASURED_KEY_RE = re.compile(r"(tokens_per_s|prompts_per_s|_per_s|peak_mib|peak_gib|peak_over_model|peak_memory"
                             r"|train_minutes|wall_s|_seconds|s_per_step)$|\.device$")
FAILING = ("MISMATCH", "MISSING", "NEW")


# ---------------------------------------------------------------- reading

def _json(path: Path, fix: str) -> Any:
    if not path.is_file():
        raise InputError(path, "-", "file not found", fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}", f"not valid JSON ({err.msg})", fix) from None


def active_profile(root: Path) -> str:
    from ruamel.yaml import YAML

    file = Path(root) / "params.yaml"
    if not file.is_file():
        raise InputError(file, "-", "file not found", "run from the project root")
    profile = (YAML(typ="safe").load(file.read_text()) or {}).get("profile")
    if not isinstance(profile, str):
        raise InputError(file, "profile", "missing", "set it with `specllm profile <name>`")
    return profile


def frozen_path(root: Path, profile: str) -> Path:
    return Path(root) / REPORTED_DIR / f"{profile}.json"


def load_values(root: Path) -> dict[str, dict[str, Any]]:
    data = _json(Path(root) / VALUES, "run the pipeline (`dvc repro`) so the report stage writes it")
    return {m["name"]: m for m in data.get("macros", [])}


def source_stages(root: Path) -> dict[str, str]:
    """{output path: stage} from dvc.lock (resolved foreach stages included); {} without a lock."""
    from ruamel.yaml import YAML

    file = Path(root) / "dvc.lock"
    if not file.is_file():
        return {}
    tree = YAML(typ="safe").load(file.read_text()) or {}
    return {o["path"]: name for name, st in (tree.get("stages") or {}).items() for o in st.get("outs") or []}


def stage_of(path: str, outs: Mapping[str, str]) -> str | None:
    for out, stage in outs.items():
        if path == out or path.startswith(out.rstrip("/") + "/"):
            return stage
    return None


def gpu_run(root: Path) -> bool:
    """Did this run use a GPU? (a cost record naming a GPU, or CUDA in results/environment.json)"""
    for file in sorted((Path(root) / "results" / "cost").glob("*.json")):
        try:
            if json.loads(file.read_text()).get("gpus"):
                return True
        except (OSError, json.JSONDecodeError):
            continue
    env = Path(root) / "results" / "environment.json"
    try:
        return bool(json.loads(env.read_text())["torch"].get("cuda_available"))
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return False


# ---------------------------------------------------------------- tolerance

def tolerance(macro: Mapping[str, Any], stage: str | None, gpu: bool) -> dict[str, Any]:
    """The rule a macro is checked with (see the module docstring)."""
    source = str(macro.get("source") or "")
    if str(macro.get("key", "")).startswith("env.") or source in MACHINE_SOURCES:
        return {"mode": "info"}
    if MEASURED_KEY_RE.search(str(macro.get("key", ""))):
        return {"mode": "info", "why": "measured"}
    kind = macro.get("kind")
    if kind in FLOAT_KINDS and gpu and stage and GPU_STAGE_RE.match(stage):
        rule = dict(GPU_TOLERANCE[kind])
        if "abs_ulps" in rule:
            rule["abs"] = rule.pop("abs_ulps") * 10.0 ** -(macro.get("precision") or 0)
        return {"mode": "close", "rel": rule.get("rel", 0.0), "abs": rule.get("abs", 0.0)}
    return {"mode": "exact"}


def describe(tol: Mapping[str, Any]) -> str:
    mode = tol.get("mode")
    if mode == "close":
        parts = []
        if tol.get("abs"):
            parts.append(f"abs {tol['abs']:g}")
        if tol.get("rel"):
            parts.append(f"rel {tol['rel']:g}")
        return " or ".join(parts) or "exact"
    if mode == "sha256-advisory":
        return "sha256 (advisory)"
    if mode == "info":
        return "info (measured)" if tol.get("why") == "measured" else "info (machine)"
    return {"exact": "exact", "sha256": "sha256"}.get(mode, str(mode))


def within(frozen: Any, now: Any, tol: Mapping[str, Any]) -> bool:
    if tol.get("mode") == "close":
        try:
            a, b = float(frozen), float(now)
        except (TypeError, ValueError):
            return frozen == now
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b
        return abs(a - b) <= max(float(tol.get("abs", 0.0)), float(tol.get("rel", 0.0)) * abs(a))
    return frozen == now


# ---------------------------------------------------------------- freeze

def artifact_entries(root: Path, outs: Mapping[str, str], gpu: bool) -> dict[str, dict[str, Any]]:
    """{"figure:stem" | "table:stem": {files: {path: sha256}, tolerance, made_by}}."""
    out = {}
    for art in artifacts.discover(root, GENERATED):
        files = artifacts.data_files(art, root, GENERATED)
        shas = {f: artifacts.digest(Path(root) / f) for f in files}
        stages = {stage_of(f, outs) for f in files}
        if art.machine:
            mode = "info"
        elif gpu and any(s and GPU_STAGE_RE.match(s) for s in stages):
            mode = "sha256-advisory"
        else:
            mode = "sha256"
        out[art.id] = {"files": shas, "tolerance": {"mode": mode}, "made_by": art.made_by}
    return out


def build_frozen(root: Path) -> dict[str, Any]:
    root = Path(root)
    profile = active_profile(root)
    values = load_values(root)
    outs = source_stages(root)
    gpu = gpu_run(root)
    if "Profile" in values and values["Profile"]["value"] != profile:
        raise InputError(root / VALUES, "Profile", f"written for profile '{values['Profile']['value']}', but "
                         f"params.yaml says '{profile}'", "run `dvc repro` first")
    entries = {}
    for name, m in sorted(values.items()):
        stage = stage_of(str(m.get("source") or ""), outs)
        entries[name] = {k: m.get(k) for k in ("key", "kind", "precision", "value", "text", "source")}
        entries[name]["stage"] = stage
        entries[name]["tolerance"] = tolerance(m, stage, gpu)
    return {
        "generator": "specllm freeze",
        "profile": profile,
        "gpu_run": gpu,
        "rules": {"gpu_stage_re": GPU_STAGE_RE.pattern, "gpu_tolerance": GPU_TOLERANCE,
                  "note": "see specllm/verify.py: counts/text exact; floats exact on CPU runs, "
                          "gpu_tolerance per kind for GPU-stage values of GPU runs; env.* informational"},
        "values": entries,
        "artifacts": artifact_entries(root, outs, gpu),
    }


def dvc_exe() -> str:
    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.is_file() else (shutil.which("dvc") or "dvc")


def pipeline_status(root: Path) -> dict[str, Any]:
    """`dvc status --json` ({} when every stage and data.dvc are up to date)."""
    proc = subprocess.run([dvc_exe(), "status", "--json"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError("dvc status", "-", (proc.stderr or proc.stdout).strip()[-500:], "fix the pipeline first")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith(("{", "}", '"', "[", "]"))]
    try:
        return json.loads("\n".join(lines) or "{}")
    except json.JSONDecodeError:
        return {"?": proc.stdout.strip()}


def freeze(root: Path, *, check_status: bool = True) -> Path:
    root = Path(root)
    if check_status:
        status = pipeline_status(root)
        if status:
            raise InputError("dvc status", ", ".join(sorted(status))[:300], "the pipeline is not up to date: "
                             "freezing now would record values that no committed input produces",
                             "run `dvc repro` (make reproduce), check the result, then `make freeze` again")
    frozen = build_frozen(root)
    out = frozen_path(root, frozen["profile"])
    write_json(out, frozen)
    return out


# ---------------------------------------------------------------- verify

@dataclass
class Row:
    name: str
    where: str
    reported: str
    regenerated: str
    tolerance: str
    verdict: str


def where_in_paper(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({macro name: ["main.tex:12", ...]}, {"figure:stem"|"table:stem": [...]}) from the paper's TeX."""
    macros: dict[str, list[str]] = {}
    arts: dict[str, list[str]] = {}
    files: list[Path] = []
    for pattern in PAPER_TEX:
        files.extend(sorted(Path(root).glob(pattern)))
    fig_re = re.compile(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}")
    tab_re = re.compile(r"\\input\{generated/tables/([^}]+?)(?:\.tex)?\}")
    for file in files:
        rel = file.relative_to(Path(root) / "paper").as_posix() if file.is_relative_to(Path(root) / "paper") \
            else file.name
        for i, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            code = re.split(r"(?<!\\)%", line, maxsplit=1)[0]
            for name in re.findall(r"\\([A-Za-z]+)", code):
                macros.setdefault(name, []).append(f"{rel}:{i}")
            for stem in fig_re.findall(code):
                arts.setdefault(f"figure:{Path(stem).stem}", []).append(f"{rel}:{i}")
            for stem in tab_re.findall(code):
                arts.setdefault(f"table:{stem}", []).append(f"{rel}:{i}")
    return macros, arts


def _where(places: Sequence[str] | None) -> str:
    if not places:
        return "-"
    uniq = list(dict.fromkeys(places))
    return uniq[0] + (f" +{len(uniq) - 1}" if len(uniq) > 1 else "")


def _show(value: Any, width: int = 28) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def compare(frozen: Mapping[str, Any], values: Mapping[str, Mapping[str, Any]], root: Path) -> list[Row]:
    used, arts_used = where_in_paper(root)
    rows: list[Row] = []
    fv = frozen.get("values", {})
    for name in sorted(set(fv) | set(values)):
        f, now = fv.get(name), values.get(name)
        where = _where(used.get(name))
        if f is None:
            rows.append(Row(name, where, "(not frozen)", _show(now["value"]), "-", "NEW"))
            continue
        tol = f.get("tolerance") or {"mode": "exact"}
        if now is None:
            rows.append(Row(name, where, _show(f["value"]), "(not generated)", describe(tol), "MISSING"))
            continue
        same = within(f["value"], now["value"], tol) and (tol.get("mode") == "close" or f.get("text") == now.get("text"))
        if tol.get("mode") == "close":
            same = same and f.get("kind") == now.get("kind")
        verdict = "ok" if same else ("differs (info)" if tol.get("mode") == "info" else "MISMATCH")
        rows.append(Row(name, where, _show(f["value"]), _show(now["value"]), describe(tol), verdict))
    outs = source_stages(root)
    current = artifact_entries(root, outs, bool(frozen.get("gpu_run")))
    fa = frozen.get("artifacts", {})
    for aid in sorted(set(fa) | set(current)):
        f, now = fa.get(aid), current.get(aid)
        where = _where(arts_used.get(aid))
        if f is None:
            rows.append(Row(aid, where, "(not frozen)", "present", "-", "NEW"))
            continue
        mode = (f.get("tolerance") or {}).get("mode", "sha256")
        if now is None:
            rows.append(Row(aid, where, "present", "(not generated)", describe({"mode": mode}), "MISSING"))
            continue
        for file in sorted(set(f["files"]) | set(now["files"])):
            a, b = f["files"].get(file), now["files"].get(file)
            ok = a == b and a is not None
            verdict = "ok" if ok else ("differs (info)" if mode == "info" else
                                       "differs (advisory)" if mode == "sha256-advisory" else "MISMATCH")
            rows.append(Row(f"{aid} {file}", where, (a or "(none)")[:12], (b or "(none)")[:12],
                            describe({"mode": mode}), verdict))
    return rows


def render(rows: Sequence[Row]) -> str:
    header = Row("name", "where in the paper", "reported", "regenerated", "tolerance", "verdict")
    cols = list(zip(*[(r.name, r.where, r.reported, r.regenerated, r.tolerance, r.verdict) for r in [header, *rows]]))
    widths = [max(len(c) for c in col) for col in cols]
    widths[0] = min(widths[0], 60)

    def line(r: Row) -> str:
        cells = (r.name, r.where, r.reported, r.regenerated, r.tolerance, r.verdict)
        return "  ".join(c.ljust(w) if i < 5 else c for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def verify(root: Path, *, repro: bool = True, pull: bool = False, only_failures: bool = False,
           out=print) -> int:
    """Rerun (or restore) the pipeline, compare with the frozen values; 0 when all agree, else 1."""
    root = Path(root)
    profile = active_profile(root)
    frozen_file = frozen_path(root, profile)
    frozen = _json(frozen_file, f"freeze the reported values of profile '{profile}' deliberately: "
                                "`make reproduce PROFILE=... && make freeze`, then commit the file")
    if frozen.get("profile") != profile:
        raise InputError(frozen_file, "profile", f"'{frozen.get('profile')}', but params.yaml says '{profile}'",
                         "re-freeze it (`make freeze`)")
    if repro:
        cmd = [dvc_exe(), "repro"] + (["--pull"] if pull else [])
        out("$ " + " ".join(["dvc", *cmd[1:]]))
        proc = subprocess.run(cmd, cwd=root)
        if proc.returncode != 0:
            out(f"verify: `dvc repro` failed (exit {proc.returncode}); nothing compared")
            return proc.returncode or 1
    values = load_values(root)
    rows = compare(frozen, values, root)
    bad = [r for r in rows if r.verdict in FAILING]
    shown = bad if only_failures else rows
    if shown:
        out(render(shown))
    info = sum(r.verdict.startswith("differs") for r in rows)
    rel = frozen_file.relative_to(root).as_posix()
    if bad:
        out(f"\nverify: FAILED: {len(bad)} of {len(rows)} reported values differ from {rel} "
            f"({', '.join(r.name for r in bad[:8])}{', ...' if len(bad) > 8 else ''}).")
        out("  a real change: check it, then `make freeze` and commit the file; an unintended one: find the "
            "stage that changed it (the 'where' column and values.json's source)")
        return 1
    out(f"\nverify: OK: {len(rows)} values, tables and figure data match {rel} (profile {profile})"
        + (f"; {info} informational differences" if info else ""))
    return 0
