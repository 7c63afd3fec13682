"""Stage `paper`: build paper/main.pdf from paper/main.tex and paper/generated/, reproducibly.

    python -m specllm.stages.paper

Runs `latexmk -pdf` in the paper folder with the output in a fresh temporary folder, a fixed
SOURCE_DATE_EPOCH (a constant, never the clock) and FORCE_SOURCE_DATE=1; main.tex itself turns off
the PDF trailer ID, the info dates and pdfTeX's info entries. Identical inputs therefore give a
byte-identical PDF. Only on success is main.pdf copied into place (atomically); on a LaTeX error
the relevant log lines (file:line: error) are printed, the stage exits non-zero and the previous
PDF stays as it was (under `dvc repro`, which removes outputs before a stage runs, the message
says so and names `dvc checkout paper`, which restores the last good PDF).
Undefined references or citations count as errors: the PDF must not show "??".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from specllm.errors import InputError
from specllm.runner import run_main

# 2025-01-01 00:00:00 UTC (the Makefile exports the same value). Fixed so that \today, the PDF's
# dates and font timestamps never follow the clock; change it only on purpose (it changes the PDF).
SOURCE_DATE_EPOCH = 1735689600
TIMEOUT_S = 600
INSTALL_HINT = ("install TeX Live: apt-get install latexmk texlive-latex-base texlive-latex-recommended "
                "texlive-fonts-recommended texlive-science lmodern poppler-utils")
_UNDEFINED = re.compile(r"(LaTeX Warning: (?:Reference|Citation) .* undefined.*|"
                        r"LaTeX Warning: There were undefined references.*|"
                        r"Package natbib Warning: Citation .* undefined.*)")


class LatexError(RuntimeError):
    """The LaTeX run failed; the message holds the relevant log lines."""


def check_tools() -> str:
    """Path of latexmk, or an InputError saying exactly what to install."""
    exe = shutil.which("latexmk")
    if not exe or not shutil.which("pdflatex"):
        missing = "latexmk" if not exe else "pdflatex"
        raise InputError(missing, "-", "not found on PATH", INSTALL_HINT)
    return exe


def latex_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), FORCE_SOURCE_DATE="1", TZ="UTC", LC_ALL="C.UTF-8")
    env.pop("TEXINPUTS", None)  # only the paper folder and the TeX installation
    return env


def log_errors(log_text: str, context: int = 2) -> list[str]:
    """The error lines of a LaTeX log: 'file:line: message' lines (from -file-line-error) and
    '! message' lines, each with the lines after it that LaTeX prints as context, plus any
    undefined reference or citation warning."""
    lines = log_text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if re.match(r"^(\./)?[^:\s]+\.(tex|sty|cls|bbl|aux):\d+: ", line) or line.startswith("! "):
            out.extend(lines[i:i + 1 + context])
        elif _UNDEFINED.search(line):
            out.append(line)
    seen, unique = set(), []
    for line in out:
        if line not in seen:
            seen.add(line)
            unique.append(line)
    return unique


def build(paper_dir: Path, pdf_out: Path | None = None, *, main: str = "main.tex",
          timeout: int = TIMEOUT_S) -> Path:
    """Build paper_dir/main.tex in a temporary folder; copy only the PDF to pdf_out on success.

    Raises LatexError (with the relevant log lines) and leaves pdf_out untouched on failure.
    """
    paper_dir = Path(paper_dir).resolve()
    pdf_out = Path(pdf_out or paper_dir / (Path(main).stem + ".pdf"))
    if not (paper_dir / main).is_file():
        raise InputError(paper_dir / main, "-", "file not found", "restore it from git (`git checkout -- <file>`)")
    if not (paper_dir / "generated" / "macros.tex").is_file():
        raise InputError(paper_dir / "generated" / "macros.tex", "-", "file not found",
                         "run the report stage first (`dvc repro report`)")
    latexmk = check_tools()
    with tempfile.TemporaryDirectory(prefix="specllm-paper-") as tmp:
        cmd = [latexmk, "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
               f"-outdir={tmp}", main]
        try:
            proc = subprocess.run(cmd, cwd=paper_dir, env=latex_env(), capture_output=True, text=True,
                                  timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            raise LatexError(f"latexmk did not finish within {timeout} s") from None
        log_file = Path(tmp) / (Path(main).stem + ".log")
        log_text = log_file.read_text(errors="replace") if log_file.is_file() else ""
        errors = log_errors(log_text)
        built = Path(tmp) / (Path(main).stem + ".pdf")
        if proc.returncode != 0 or not built.is_file() or errors:
            detail = "\n".join(errors) or "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise LatexError(f"LaTeX failed on {paper_dir / main} (latexmk exit {proc.returncode}):\n{detail}")
        pdf_out.parent.mkdir(parents=True, exist_ok=True)
        part = pdf_out.with_name(f".{pdf_out.name}.part")
        shutil.copyfile(built, part)
        os.replace(part, pdf_out)
    return pdf_out


def main() -> None:
    from specllm import paths

    try:
        out = build(paths.PAPER, paths.PDF)
    except LatexError as err:
        print(f"error: {err}", file=sys.stderr)
        # True only when a previous PDF is still there: `dvc repro` removes it before the run
        # (runner.run_main then says how to restore it: `dvc checkout paper`).
        if paths.PDF.is_file():
            print(f"  the previous {paths.PDF.name} is unchanged", file=sys.stderr)
        elif not os.environ.get("DVC_STAGE"):
            print(f"  no previous {paths.PDF.name} to keep", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"paper: wrote {paths.shown(out)}")


if __name__ == "__main__":
    run_main(main)
