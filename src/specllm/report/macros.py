"""A tiny, strict writer of LaTeX macros for every number and claim the paper prints.

Naming rule (dotted key -> macro name, letters only):
  * the key may contain ASCII letters, digits and the separators ``. _ - space``;
  * it is split at the separators and at every letter/digit boundary;
  * a letter chunk is kept with its first letter upper-cased (``knn`` -> ``Knn``,
    ``MAE`` -> ``MAE``);
  * a digit chunk is spelled out: ``0``..``99`` as English words without a leading zero
    (``16`` -> ``Sixteen``, ``21`` -> ``TwentyOne``), any other run digit by digit
    (``2508`` -> ``TwoFiveZeroEight``, ``07`` -> ``ZeroSeven``);
  * the chunks are concatenated: ``baseline.random_forest.mae`` -> ``\\BaselineRandomForestMae``,
    ``data.n_train`` -> ``\\DataNTrain``, ``sample.dr16`` -> ``\\SampleDrSixteen``.
Two keys that map to one name are an error (MacroCollision), as is a name that LaTeX itself
defines (``\\newcommand`` would fail later, far from the cause).

Values are formatted with a stated kind and precision (see format_value); the same function
formats table cells, so a number reads the same in the text and in a table.

write() writes macros.tex (sorted by name, one \\newcommand per line, no timestamps) and
values.json (every macro's name, key, raw value, formatted text, kind, precision and the file
it came from), the record that `make verify` checks the PDF against.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from specllm.errors import InputError

KINDS = ("int", "float", "percent", "sci", "text", "code", "latex")

_ONES = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine",
         "Ten", "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen", "Seventeen",
         "Eighteen", "Nineteen"]
_TENS = ["", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety"]
_KEY_RE = re.compile(r"[A-Za-z0-9]+(?:[._\- ][A-Za-z0-9]+)*")
# Names LaTeX (or a package main.tex loads) already defines, which a key could plausibly produce.
RESERVED = frozenset({
    "Alph", "AtBeginDocument", "Box", "Bbb", "Delta", "Gamma", "Huge", "LARGE", "Large", "LaTeX",
    "Lambda", "Omega", "Phi", "Pi", "Pr", "Psi", "Re", "Im", "Sigma", "TeX", "Theta", "Upsilon",
    "Xi", "Roman", "Alpha", "Beta", "Item", "Label", "Ref", "Cite", "Url", "Title", "Author", "Date",
    "Caption", "Figure", "Table", "Section", "Input", "Include", "Num", "Qty", "Si", "Ang", "Unit",
    "Text", "Textbf", "Textit", "Cref", "Autoref", "Nameref", "Hyperref", "Href", "Path",
})


class MacroCollision(ValueError):
    """Two keys map to the same macro name, or a name LaTeX already defines."""


def _number_words(digits: str) -> str:
    if len(digits) <= 2 and (digits == "0" or not digits.startswith("0")):
        n = int(digits)
        if n < 20:
            return _ONES[n]
        return _TENS[n // 10] + (_ONES[n % 10] if n % 10 else "")
    return "".join(_ONES[int(d)] for d in digits)


def macro_name(key: str) -> str:
    """The LaTeX macro name (without backslash) for a dotted key; see the module docstring."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"macro key {key!r}: use ASCII letters, digits and . _ - as separators")
    out = []
    for chunk in re.findall(r"[A-Za-z]+|[0-9]+", key):
        out.append(_number_words(chunk) if chunk.isdigit() else chunk[0].upper() + chunk[1:])
    return "".join(out)


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}",
}


def escape_latex(text: str) -> str:
    """Escape a plain string for LaTeX text mode (every special character, nothing else)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _plain(value: Any) -> Any:
    """numpy scalars and other numbers -> plain Python values (for JSON and formatting)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def _group_int(n: int) -> str:
    sign = r"\ensuremath{-}" if n < 0 else ""
    digits = f"{abs(n):d}"
    if len(digits) > 3:
        groups = []
        while digits:
            groups.insert(0, digits[-3:])
            digits = digits[:-3]
        digits = "{,}".join(groups)
    return sign + digits


def _fixed(x: float, precision: int) -> str:
    text = f"{x:.{precision}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]  # no "-0.000"
    whole, _, frac = text.lstrip("-").partition(".")
    body = _group_int(int(whole)).replace(r"\ensuremath{-}", "") + (f".{frac}" if frac else "")
    return (r"\ensuremath{-}" if text.startswith("-") else "") + body


def format_value(value: Any, kind: str, precision: int | None = None) -> str:
    """LaTeX text for a value.

    kinds: int (integral, thousands as ``9{,}980``), float (fixed, `precision` decimals),
    percent (a fraction printed x100 with `precision` decimals and ``\\%``), sci (siunitx
    ``\\num{2.0e-4}`` with `precision` mantissa decimals), text (escaped), code (escaped, in
    ``\\texttt``), latex (the value is already LaTeX: used for composed text).
    Raises ValueError for a value that does not fit its kind (non-finite, non-integral, ...).
    """
    value = _plain(value)
    if kind not in KINDS:
        raise ValueError(f"unknown macro kind {kind!r} (one of {', '.join(KINDS)})")
    if kind in ("float", "percent", "sci"):
        if precision is None or not isinstance(precision, int) or precision < 0:
            raise ValueError(f"kind {kind} needs a precision (decimals >= 0), got {precision!r}")
    if kind in ("int", "float", "percent", "sci"):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"kind {kind} needs a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"not a finite number: {value!r}")
    if kind == "int":
        if not isinstance(value, Integral) and not float(value).is_integer():
            raise ValueError(f"kind int needs an integral number, got {value!r}")
        return _group_int(int(value))
    if kind == "float":
        return _fixed(float(value), precision)
    if kind == "percent":
        return _fixed(100.0 * float(value), precision) + r"\%"
    if kind == "sci":
        return r"\num{" + f"{float(value):.{precision}e}" + "}"
    if not isinstance(value, str):
        raise ValueError(f"kind {kind} needs a string, got {value!r}")
    if kind == "text":
        return escape_latex(value)
    if kind == "code":
        return r"\texttt{" + escape_latex(value) + "}"
    return value  # latex


@dataclass(frozen=True)
class Macro:
    name: str
    key: str
    value: Any
    text: str
    kind: str
    precision: int | None
    source: str


class MacroSet:
    """Collects macros; refuses collisions; writes macros.tex and values.json deterministically."""

    def __init__(self) -> None:
        self._by_name: dict[str, Macro] = {}

    def add(self, key: str, value: Any, *, source: str | Path, kind: str | None = None,
            precision: int | None = None) -> Macro:
        """Register `value` under `key`, formatted as `kind` (inferred for int and str).

        A value that does not fit its kind is an InputError naming `source` and `key`
        (the stage that wrote the file is what to fix); a name collision is a MacroCollision.
        """
        value = _plain(value)
        if kind is None:
            if isinstance(value, bool):
                raise ValueError(f"{key}: give booleans as text (kind='text'), not {value!r}")
            if isinstance(value, Integral):
                kind = "int"
            elif isinstance(value, str):
                kind = "text"
            else:
                raise ValueError(f"{key}: state the kind (and precision) of {value!r}")
        name = macro_name(key)
        if name in RESERVED:
            raise MacroCollision(f"key {key!r} gives \\{name}, which LaTeX already defines: rename the key")
        if name in self._by_name:
            other = self._by_name[name].key
            raise MacroCollision(f"keys {other!r} and {key!r} both give \\{name}: rename one of them")
        try:
            text = format_value(value, kind, precision)
        except ValueError as err:
            raise InputError(source, key, str(err), "rerun the stage that writes this file") from None
        macro = Macro(name, key, value, text, kind, precision, Path(source).as_posix() if source else "")
        self._by_name[name] = macro
        return macro

    def __getitem__(self, key: str) -> Macro:
        return self._by_name[macro_name(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and macro_name(key) in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def macros(self) -> list[Macro]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def tex(self) -> str:
        lines = ["% Generated by specllm.stages.report from the stage outputs named on each line.",
                 "% Do not edit: change the stage output (or params.yaml) and rerun `dvc repro report`."]
        for m in self.macros():
            lines.append(f"\\newcommand{{\\{m.name}}}{{{m.text}}}% {m.key} <- {m.source}")
        return "\n".join(lines) + "\n"

    def values(self) -> dict[str, Any]:
        return {
            "generator": "specllm.stages.report",
            "macros": [asdict(m) for m in self.macros()],
        }

    def write(self, tex_path: Path, json_path: Path) -> None:
        tex_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tex_path.write_text(self.tex(), encoding="utf-8")
        json_path.write_text(dumps_json(self.values()), encoding="utf-8")


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, UTF-8, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_plain) + "\n"


def read_values(json_path: Path) -> Mapping[str, Mapping[str, Any]]:
    """values.json -> {macro name: record}: what `make verify` compares the PDF text with."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    return {m["name"]: m for m in data["macros"]}
