"""`specllm where <Macro>`: one hop from a number in the paper to the code, file and params behind it.

For a macro name (with or without the backslash) it prints
  * the stage that writes the macro (report: paper/generated/macros.tex; provenance:
    paper/generated_provenance/macros.tex) and its key (the dotted name in the code);
  * the output file the value is read from and the DVC stage that writes that file;
  * the params that stage declares in dvc.yaml, with their values in params.yaml (a macro read from
    params.yaml: that one key);
  * the code that adds it: module:function and line of every `ms.add("<key>", ...)` whose key, written
    out in full (an f-string's {...} parts stand for one dotted part each), matches;
  * its value in this checkout's paper/generated/ (if built) and its frozen value in
    paper/reported/<profile>.json.
The record comes from paper/generated*/values.json when built, else from paper/reported/*.json;
a macro in neither (the provenance stage's caption links before a run) is found from its name alone.

Figures and tables: `specllm where figure:<stem>` (or table:<stem>, or a caption link
\\LinkFigure<Stem>) prints specllm.artifacts.REGISTRY's row.

Where the paper prints it: the lines of paper/main.tex and paper/sections/*.tex that name the macro;
for a value printed inside a generated sentence instead (the paper names the sentence's macro), the
sentences whose text holds its printed text. A number read off the PDF works too:
`specllm where 0.026` lists the macros printed as 0.026 (and the sentences that hold it), then traces
each macro printed exactly so.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from specllm import paths
from specllm.report.macros import macro_name

SRC = Path(__file__).resolve().parents[1]  # src/specllm
GENERATED_VALUES = {"report": paths.rel(paths.VALUES), "provenance": paths.rel(paths.GENERATED_PROVENANCE / "values.json")}
_KEY_TEXT = re.compile(r"[A-Za-z0-9._ -]*")


@dataclass(frozen=True)
class Producer:
    """One `add("<key>", ...)` call in the code: `template` is its key, {} where an f-string computes a part."""

    template: str
    module: str
    function: str
    line: int

    @property
    def code(self) -> str:
        return f"{self.module}:{self.function} (line {self.line})"

    @property
    def exact(self) -> bool:
        return "{}" not in self.template

    def matches_key(self, key: str) -> bool:
        parts = [re.escape(p) for p in self.template.split("{}")]
        return re.fullmatch(r"[A-Za-z0-9_ -]+".join(parts), key) is not None

    def matches_name(self, name: str) -> bool:
        """The macro name could come from this key (used when no values file records the macro)."""
        pieces = []
        for part in self.template.split("{}"):
            core = part.strip("._ -")
            pieces.append(re.escape(macro_name(core)) if core else "")
        return re.fullmatch("[A-Za-z]+".join(pieces), name) is not None


def _template(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    else:
        return None
    literal = text.replace("{}", "")
    return text if re.search(r"[A-Za-z]", literal) and _KEY_TEXT.fullmatch(literal) else None


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module, self.stack, self.found = module, [], []

    def _scope(self, node) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "add" and node.args and (t := _template(node.args[0])) is not None:
            self.found.append(Producer(t, self.module, ".".join(self.stack) or "<module>", node.lineno))
        self.generic_visit(node)


@lru_cache(maxsize=1)
def producers() -> tuple[Producer, ...]:
    """Every macro-adding call under src/specllm, by a static read of the code (nothing is imported)."""
    out: list[Producer] = []
    for file in sorted(SRC.rglob("*.py")):
        module = "specllm." + ".".join(file.relative_to(SRC).with_suffix("").parts)
        finder = _Finder(module.removesuffix(".__init__"))
        finder.visit(ast.parse(file.read_text(encoding="utf-8"), str(file)))
        out.extend(finder.found)
    return tuple(out)


def code_for(key: str | None, name: str) -> list[Producer]:
    """The calls that add `key` (exact keys first; f-string templates only when none is exact)."""
    if key is not None:
        hits = [p for p in producers() if p.matches_key(key)]
    else:
        hits = [p for p in producers() if p.matches_name(name)]
    exact = [p for p in hits if p.exact]
    return exact or hits


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


@lru_cache(maxsize=4)
def _records(root: Path) -> tuple[dict[str, tuple[str, Mapping[str, Any]]], dict[str, dict[str, Any]]]:
    """({name: (writing stage, record)} from paper/generated*/values.json, {profile: frozen values})."""
    current: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for stage, rel in GENERATED_VALUES.items():
        for m in _load(root / rel).get("macros", []):
            current[m["name"]] = (stage, m)
    frozen = {f.stem: _load(f).get("values", {}) for f in sorted(paths.at(root, paths.REPORTED).glob("*.json"))}
    return current, frozen


@lru_cache(maxsize=4)
def _params(root: Path) -> dict[str, Any]:
    """params.yaml, flat (empty when it does not load)."""
    from specllm import config
    from specllm.errors import InputError

    try:
        return config.load(root / "params.yaml")
    except (InputError, OSError):
        return {}


@lru_cache(maxsize=64)
def _declared(stage: str, root: Path) -> tuple[str, ...]:
    from specllm import config
    from specllm.errors import InputError

    try:
        return tuple(config.declared_params(stage, root / "dvc.yaml"))
    except (InputError, OSError):
        return ()


def _stage_params(stage: str | None, source: str, key: str, root: Path) -> dict[str, Any]:
    flat = _params(root)
    if source == "params.yaml":
        return {key: flat[key]} if key in flat else {}
    if not stage:
        return {}
    declared = _declared(stage, root)
    return {k: v for k, v in sorted(flat.items()) if any(k == d or k.startswith(d + ".") for d in declared)}


def _profile(root: Path) -> str | None:
    profile = _params(root).get("profile")
    return None if profile is None else str(profile)


def where(name: str, root: Path, profile: str | None = None) -> dict[str, Any]:
    """Everything `specllm where` prints for one macro (KeyError: no such generated macro)."""
    name = name.lstrip("\\")
    current, frozen = _records(root)
    profile = profile or _profile(root)
    frozen_rec = (frozen.get(profile) or {}).get(name) if profile else None
    any_frozen = next((v[name] for v in frozen.values() if name in v), None)
    if name in current:
        writer, rec = current[name]
    elif frozen_rec is not None or any_frozen is not None:
        writer, rec = "report", frozen_rec or any_frozen
    else:
        writer, rec = None, None
    key = rec["key"] if rec else None
    code = code_for(key, name)
    if rec is None and not code:
        raise KeyError(name)
    if writer is None:
        writer = "provenance" if all(p.module == "specllm.stages.provenance" for p in code) else "report"
    source = str(rec.get("source") or "") if rec else ""
    from_stage = (frozen_rec or any_frozen or {}).get("stage") if rec else None
    if rec is not None and from_stage is None and source and source != "params.yaml":
        from_stage = _producer_stage(source, root)
    return {
        "name": name, "key": key, "writer": writer,
        "output": paths.rel((paths.GENERATED_PROVENANCE if writer == "provenance" else paths.GENERATED) / "macros.tex"),
        "source": source, "source_stage": from_stage,
        "params": _stage_params(from_stage, source, key or "", root) if rec else {},
        "code": [p.code for p in code],
        "current": current[name][1].get("text") if name in current else None,
        "frozen": {"profile": profile, "text": frozen_rec.get("text"), "value": frozen_rec.get("value")}
        if frozen_rec else None,
        "frozen_profiles": sorted(p for p, v in frozen.items() if name in v),
    }


@lru_cache(maxsize=256)
def _producer_stage(path: str, root: Path) -> str | None:
    """The dvc.yaml stage whose outs hold `path` (data/raw: data.dvc)."""
    from ruamel.yaml import YAML

    raw = paths.rel(paths.RAW)
    if path == raw or path.startswith(raw + "/"):
        return "data.dvc"
    try:
        stages = YAML(typ="safe").load(paths.at(root, paths.DVC_YAML).read_text())["stages"]
    except (OSError, KeyError, TypeError):
        return None
    for stage, spec in stages.items():
        for out in (spec.get("do", spec).get("outs") or []):
            out = out if isinstance(out, str) else next(iter(out))
            if "${" not in out and (path == out or path.startswith(out.rstrip("/") + "/")):
                return stage
    return None


def artifact(ident: str) -> dict[str, Any]:
    """The registry row of figure:<stem>, table:<stem> or a caption link \\Link{Figure,Table}<Stem>."""
    from specllm import artifacts

    ident = ident.lstrip("\\")
    for art in artifacts.REGISTRY.values():
        if ident in (art.id, macro_name(f"link.{art.kind}.{art.stem}")):
            return {"id": art.id, "section": f"specllm.report.{art.section}", "made_by": art.made_by,
                    "function": art.function, "data": list(art.data), "machine": art.machine,
                    "output": paths.rel(paths.GENERATED / f"{art.kind}s" / art.stem) + (".pdf" if art.kind == "figure" else ".tex"),
                    "caption_link": "\\" + macro_name(f"link.{art.kind}.{art.stem}")}
    raise KeyError(ident)


def render(found: Mapping[str, Any]) -> str:
    if "made_by" in found:
        lines = [f"{found['id']}  (caption link {found['caption_link']})",
                 f"  output   {found['output']}",
                 f"  code     {found['made_by']}:{found['function']}  (section {found['section']})"]
        if found["data"]:
            lines.append(f"  data     {', '.join(found['data'])}")
        return "\n".join(lines)
    src = found["source"] or "(not recorded: no values file holds it yet)"
    stage = f" (written by {found['source_stage']})" if found["source_stage"] else ""
    lines = [f"\\{found['name']}  key {found['key'] or '(from the name: see the code)'}",
             f"  stage    {found['writer']} -> {found['output']}",
             f"  from     {src}{stage}",
             "  params   " + (", ".join(f"{k}={v}" for k, v in found["params"].items()) + " (params.yaml now)"
                                  if found["params"] else "none"),
             "  code     " + ("\n           ".join(found["code"]) or "(no add call matches: write the key in full)")]
    if found["current"] is not None:
        lines.append(f"  built    {found['current']}")
    f = found["frozen"]
    if f:
        lines.append(f"  frozen   {f['text']}  (value {f['value']!r}, paper/reported/{f['profile']}.json)")
    else:
        lines.append("  frozen   " + (f"not in this profile's file; in {', '.join(found['frozen_profiles'])}"
                                      if found["frozen_profiles"] else "not frozen (paper/reported/*.json)"))
    return "\n".join(lines)


@lru_cache(maxsize=4)
def paper_uses(root: Path) -> dict[str, tuple[str, ...]]:
    """{macro name: ("main.tex:12", "sections/stability.tex:36", ...)}: the paper's lines that name it."""
    uses: dict[str, list[str]] = {}
    for file in [paths.at(root, paths.MAIN_TEX), *sorted(paths.at(root, paths.SECTIONS).glob("*.tex"))]:
        rel = file.relative_to(paths.at(root, paths.PAPER)).as_posix()
        for i, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for name in re.findall(r"\\([A-Za-z]+)", re.split(r"(?<!\\)%", line, maxsplit=1)[0]):
                uses.setdefault(name, []).append(f"{rel}:{i}")
    return {k: tuple(dict.fromkeys(v)) for k, v in uses.items()}


def _plain(text: str) -> str:
    """Printed text as the PDF shows it (94\\% -> 94%, 9{,}980 -> 9,980, \\ensuremath{-} -> -)."""
    return text.replace("\\%", "%").replace("{,}", ",").replace("\\ensuremath{-}", "-")


def _texts(root: Path, profile: str | None) -> dict[str, str]:
    """{macro name: printed text, as the PDF shows it}: this checkout's generated values, else the
    profile's frozen ones."""
    current, frozen = _records(root)
    active = _profile(root)
    out = {n: _plain(str(v.get("text"))) for n, v in (frozen.get(profile or active or "") or {}).items()}
    if profile in (None, active):  # this checkout's run is of that profile
        out.update({n: _plain(str(rec.get("text"))) for n, (_, rec) in current.items()})
    return out


def _token(text: str) -> re.Pattern[str] | None:
    """`text` as printed (_plain), as a whole number or word: 56 is not inside 56.0% or 1,560, 0.02 not inside
    0.022. None for an empty text."""
    text = _plain(text)
    return re.compile(r"(?<![\w.,])" + re.escape(text) + r"(?!\w|[.,]\d)") if text.strip() else None


def printed_in(text: str, root: Path, profile: str | None = None, exclude: str = "") -> list[str]:
    """The macros the paper names whose printed text holds `text` as a whole number or word (a value
    printed inside a generated sentence), each with its first line in the paper."""
    if (token := _token(text)) is None:
        return []
    uses = paper_uses(root)
    return [f"\\{n} ({uses[n][0]})" for n, t in sorted(_texts(root, profile).items())
            if n != exclude and n in uses and t != _plain(text) and token.search(t)]


def by_text(text: str, root: Path, profile: str | None = None) -> list[str]:
    """The macros printed exactly as `text` (e.g. a number read off the PDF)."""
    return sorted(n for n, t in _texts(root, profile).items() if t == _plain(text))


@lru_cache(maxsize=4)
def table_cells(root: Path) -> dict[str, tuple[str, ...]]:
    """{table stem: its cells as the PDF shows them} for every generated table of this checkout."""
    out = {}
    for file in sorted(paths.at(root, paths.TABLES).glob("*.tex")):
        body = [ln for ln in file.read_text(encoding="utf-8").splitlines() if not ln.startswith("%")]
        out[file.stem] = tuple(_plain(c).strip() for row in "\n".join(body).split("\\\\") for c in row.split("&"))
    return out


def tabled_in(text: str, root: Path) -> list[str]:
    """The generated tables with a cell that holds `text` as a whole number or word (as printed_in)."""
    if (token := _token(text)) is None:
        return []
    return [f"table:{stem}" for stem, cells in table_cells(root).items() if any(token.search(c) for c in cells)]


def unprinted(root: Path) -> list[str]:
    """The macros of this checkout's generated values (report and provenance) that the paper prints nowhere:
    not named by its text, not inside a generated sentence it names, not in a generated table's cell."""
    names = {n: str(rec.get("text")) for n, (_, rec) in _records(root)[0].items()}
    uses = paper_uses(root)
    return sorted(n for n, text in names.items()
                  if n not in uses and not printed_in(text, root, exclude=n) and not tabled_in(text, root))


def _paper_lines(name: str, text: str | None, root: Path, profile: str | None) -> list[str]:
    if uses := paper_uses(root).get(name):
        return [f"  paper    {', '.join(uses[:4])}" + (f" +{len(uses) - 4}" if len(uses) > 4 else "")]
    lines = []
    if inside := printed_in(text or "", root, profile, exclude=name):
        lines.append(f"  paper    not named; its text {text} is printed inside {', '.join(inside[:4])}"
                     + (f" +{len(inside) - 4}" if len(inside) > 4 else ""))
    if tabled := tabled_in(text or "", root):
        lines.append(f"  paper    {'and' if lines else 'not named;'} its text {text} is a cell of "
                     f"{', '.join(tabled[:4])}" + (f" +{len(tabled) - 4}" if len(tabled) > 4 else ""))
    if lines:
        return lines
    return ["  paper    not printed (neither named, nor inside a generated sentence, nor in a generated table)"]


def lookup(names: Iterable[str], root: Path, profile: str | None = None) -> list[str]:
    """The printed answer for each name (a macro, figure:<stem> or table:<stem>, or a printed value);
    KeyError: unknown."""
    out = []
    for name in names:
        bare = name.lstrip("\\")
        if bare.startswith(("figure:", "table:")):
            out.append(render(artifact(bare)))
            continue
        if not re.fullmatch(r"[A-Za-z]+", bare):  # a printed value, not a macro name
            exact, inside = by_text(bare, root, profile), printed_in(bare, root, profile)
            if not exact and not inside:
                raise KeyError(name)
            head = [f"printed as {bare}: " + (", ".join("\\" + n for n in exact) or "no macro alone")]
            if inside:
                head.append(f"  inside   {', '.join(inside)}")
            out.append("\n".join(head))
            out.extend(lookup(exact, root, profile))
            continue
        found = where(bare, root, profile)
        text = render(found) + "\n" + "\n".join(
            _paper_lines(bare, found["current"] or (found["frozen"] or {}).get("text"), root, profile))
        try:  # a caption link: the registry row it points at, too
            text += "\n" + render(artifact(bare))
        except KeyError:
            pass
        out.append(text)
    return out
