"""Lint: the paper's text must not type a number that a generated macro should carry.

    python -m specllm.paperlint [FILE ...]      (default: paper/main.tex, paper/sections/*.tex)

Scans the document body (from \\begin{document}; the preamble is layout) for numeric literals
outside macros and reports `file:line: literal (context)`, exit status 1 when any is found.
Allowed, because they are not results:
  * anything inside the arguments of \\ref, \\label, \\cite*, \\input, \\includegraphics,
    \\href/\\url, \\setcounter, \\vspace/\\hspace, \\bibliography*, \\begin/\\end option brackets
    and length-valued options ([width=...], [0.4em]);
  * lengths (`0.48\\textwidth`, `1.2em`, `3pt`, ...);
  * digits that are part of a word or name (SmolLM2, DR16, SDSS17, ugriz);
  * in math mode: the equation constants in EQUATION_CONSTANTS (0, 1, 2 and the NMAD 1.4826);
  * the contexts in ALLOW (each with its reason): section/appendix numbers, years after a
    citation-like author name, arXiv identifiers, the version of a named model, ordinal
    percentiles that name a statistic.
Everything else, e.g. "reaches an MAE of 0.043" typed by hand, is a violation: make it a macro in
the report stage (values.json) so it follows the result.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from specllm import paths

DEFAULT_FILES = (paths.rel(paths.MAIN_TEX), f"{paths.rel(paths.SECTIONS)}/*.tex")
# Commands whose (first) braced argument is never text.
SKIP_ARG_CMDS = ("ref", "eqref", "label", "cite", "citep", "citet", "citealp", "citeauthor", "citeyear",
                 "input", "include", "includegraphics", "href", "url", "nolinkurl", "setcounter", "addtocounter",
                 "vspace", "hspace", "bibliography", "bibliographystyle", "begin", "end", "setlength", "hypersetup",
                 "graphicspath", "usepackage", "documentclass", "fontsize", "rule", "resizebox", "scalebox",
                 "multicolumn", "parbox", "makebox", "raisebox", "renewcommand", "newcommand", "sisetup",
                 "Cref", "cref", "autoref", "nameref", "pageref")
EQUATION_CONSTANTS = {"0", "1", "2", "10", "1.4826"}  # 10: the base of log_10
# (regex over the text around a literal, reason). The literal is allowed when a match covers it.
ALLOW: tuple[tuple[str, str], ...] = (
    (r"(?:Section|Sections|Sect\.|Sec\.|Appendix|Appendices|Table|Fig\.|Figure|Eq\.)~?\s*\d+(?:\.\d+)*",
     "a section/table/figure number (prefer \\ref)"),
    (r"(?:et~?\s?al\.|[A-Z][a-z]+)\s*,?\s*\(?(?:19|20)\d\d[a-z]?\)?", "a year in an author-year reference"),
    (r"arXiv:?\s*~?\d{4}\.\d{4,5}(?:v\d+)?", "an arXiv identifier"),
    (r"(?:Llama|LLaMA|Qwen|GPT|Mistral|Python|CUDA|PyTorch)[~\s-]?\d+(?:\.\d+)*(?:-\d+[BbMm])?",
     "a named model or software version"),
    (r"\d+(?:st|nd|rd|th)\s+percentile", "an ordinal naming a statistic (95th percentile)"),
    (r"first\s+\d+\s+(?:hexadecimal\s+)?(?:digits|characters)", "how much of a checksum is shown (formatting)"),
    (r"\d+\s*\\?%\s+(?:confidence\s+|bootstrap\s+)?(?:interval|CI)", "the confidence level that names an interval"),
)
# Letter units only right after the number ("3 in the" is text); \textwidth-like units may follow a space.
_LENGTH_UNITS = (r"(?:(?:pt|em|ex|in|cm|mm|bp|sp|pc|mu)(?![A-Za-z])|\s*\\(?:(?:text|column|line|paper)width|"
                 r"(?:text|paper)height|baselineskip|fboxsep|fboxrule))")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.\\])(\d+(?:[.,]\d+)*(?:\{,\}\d+)*)(?![A-Za-z0-9_])")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    literal: str
    context: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.literal}  ({self.context.strip()})"


def _blank(text: str, start: int, end: int) -> str:
    """Replace text[start:end] by spaces, keeping newlines (line numbers stay right)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif text[i] == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return i
    return len(text) - 1


def strip_non_text(text: str) -> str:
    """Blank out comments, skipped command arguments, option brackets and lengths (same length)."""
    # comments (an unescaped %)
    text = re.sub(r"(?<!\\)%[^\n]*", lambda m: " " * len(m.group()), text)
    # \cmd*[opt]{arg} for the commands whose argument is not text
    pattern = re.compile(r"\\(" + "|".join(SKIP_ARG_CMDS) + r")\*?(?![A-Za-z])")
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        i = m.end()
        while True:
            j = i
            while j < len(text) and text[j] in " \t":
                j += 1
            if j < len(text) and text[j] == "[":
                close = text.find("]", j)
                if close < 0:
                    break
                text = _blank(text, j, close + 1)
                i = close + 1
                continue
            if j < len(text) and text[j] == "{":
                close = _matching_brace(text, j)
                text = _blank(text, j, close + 1)
                i = close + 1
                # \begin{x}{arg}: also blank a second argument (minipage width, tabular spec)
                if m.group(1) in ("begin", "multicolumn", "parbox", "makebox", "raisebox", "resizebox",
                                  "scalebox", "setcounter", "addtocounter", "setlength", "newcommand",
                                  "renewcommand", "href"):
                    continue
            break
        pos = max(i, m.end())
    # \\[0.4em] line-break spacing and lengths like 0.48\textwidth, 1.2em
    text = re.sub(r"\\\\\[[^\]]*\]", lambda m: " " * len(m.group()), text)
    text = re.sub(r"\d*\.?\d+" + _LENGTH_UNITS, lambda m: " " * len(m.group()), text)
    return text


def _math_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in re.finditer(r"(?<!\\)\$\$.*?(?<!\\)\$\$|(?<!\\)\$.*?(?<!\\)\$|\\\(.*?\\\)|\\\[.*?\\\]", text, re.S):
        spans.append((m.start(), m.end()))
    for env in ("equation", "equation*", "align", "align*", "eqnarray", "displaymath", "math"):
        for m in re.finditer(r"\\begin\{" + re.escape(env) + r"\}.*?\\end\{" + re.escape(env) + r"\}", text, re.S):
            spans.append((m.start(), m.end()))
    return spans


def lint_text(text: str, file: str = "<text>") -> list[Violation]:
    body_at = text.find("\\begin{document}")
    start = body_at if body_at >= 0 else 0
    original = text
    text = " " * start + text[start:] if start else text
    text = re.sub(r"[^\n]", " ", original[:start]) + text[start:] if start else text
    clean = strip_non_text(text)
    math = _math_spans(clean)
    allowed: list[tuple[int, int]] = []
    for pattern, _why in ALLOW:
        allowed += [(m.start(), m.end()) for m in re.finditer(pattern, clean)]
    out = []
    for m in _NUMBER.finditer(clean):
        a, b = m.start(1), m.end(1)
        lit = m.group(1)
        if any(s <= a and b <= e for s, e in allowed):
            continue
        if any(s <= a < e for s, e in math) and lit in EQUATION_CONSTANTS:
            continue
        line = clean.count("\n", 0, a) + 1
        ctx_line = original.splitlines()[line - 1] if line - 1 < len(original.splitlines()) else ""
        out.append(Violation(file, line, lit, ctx_line[:100]))
    return out


def lint_files(root: Path, patterns=DEFAULT_FILES) -> list[Violation]:
    root = Path(root)
    out = []
    for pattern in patterns:
        for file in sorted(root.glob(pattern)):
            rel = file.relative_to(root).as_posix()
            out.extend(lint_text(file.read_text(encoding="utf-8"), rel))
    return out


def main(argv: list[str] | None = None) -> int:
    from specllm import paths

    args = sys.argv[1:] if argv is None else argv
    violations = lint_files(paths.ROOT, tuple(args) or DEFAULT_FILES)
    for v in violations:
        print(v)
    if violations:
        print(f"paperlint: {len(violations)} numeric literal(s) in the paper's text are not generated macros; "
              "make each a macro in the report stage (values.json), or, for a constant that is no result, "
              "extend specllm.paperlint.ALLOW with the reason", file=sys.stderr)
        return 1
    print("paperlint: no hand-typed numbers in the paper's text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
