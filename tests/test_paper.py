"""The paper stage: fake paper/generated in a copy of paper/ -> a byte-reproducible PDF."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specllm.errors import InputError
from specllm.report.macros import read_values
from specllm.stages import paper, report

sys.path.insert(0, str(Path(__file__).parent))
from test_report import PARAMS, fake_comparisons, fake_lora, fake_project  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
needs_latex = pytest.mark.skipif(not (shutil.which("latexmk") and shutil.which("pdftotext")),
                                 reason="needs latexmk and pdftotext (texlive, poppler-utils)")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project root holding a copy of paper/ (sources only) and fake generated outputs."""
    root = tmp_path_factory.mktemp("paperproj")
    shutil.copytree(REPO / "paper", root / "paper",
                    ignore=shutil.ignore_patterns("generated", "*.pdf", "*.aux", "*.log", "*.bbl", "*.blg",
                                                  "*.out", "*.fls", "*.fdb_latexmk"))
    inputs = fake_project(root)
    lora = fake_lora(root)
    stability = stability_results(tmp_path_factory.mktemp("stability"))
    from specllm.stages import verdicts

    verdicts_file = root / "results" / "verdicts.json"
    verdicts.run({"ablation": (lora.ablation, ""), "arxiv": (lora.reference, ""),
                  "analysis": (stability / "analysis.json", ""), "reprobe": (stability / "reprobe.json", ""),
                  "scse": (root / "data" / "reference" / "scse.json", "")}, verdicts_file)
    report.write_report(PARAMS, inputs, root / "paper" / "generated", fake_comparisons(), lora=lora, stability=stability,
                        verdicts_file=verdicts_file)
    write_provenance(root)
    return root


def write_provenance(root: Path) -> None:
    """The provenance stage's appendix and caption links over the fake outputs (a recorded lock and costs)."""
    import json

    from test_provenance import LOCK
    from test_provenance import PARAMS as PROVENANCE_PARAMS

    from specllm.stages import provenance

    (root / "results" / "cost").mkdir(parents=True, exist_ok=True)
    (root / "results" / "cost" / "prepare.json").write_text(json.dumps({
        "stage": "prepare", "wall_s": 12.0, "cpu_s": 20.0, "cpu_hours": 0.0056, "gpu_hours": 0.0, "gpus": [],
        "peak_rss_mib": 512.0, "cuda_max_allocated_mib": None}))
    (root / "dvc.lock").write_text(LOCK)
    (root / "data.dvc").write_text("outs:\n- md5: feedbeef.dir\n  size: 10\n  nfiles: 3\n  path: raw\n")
    provenance.write_provenance(root, PROVENANCE_PARAMS, root / "results" / "provenance.json",
                                root / "paper" / "generated_provenance")


def stability_results(tmp: Path) -> Path:
    """Real stability-stage outputs: the five stages on the tiny model over a small synthetic catalogue."""
    import numpy as np
    import pandas as pd
    from test_stability_stages import _project, _run_all

    rng = np.random.default_rng(0)
    rows = []
    for cls, z0 in (("STAR", 0.0), ("GALAXY", 0.1), ("QSO", 1.5)):
        for k in range(8):
            mags = 17 + rng.normal(0, 0.5) + np.cumsum(rng.uniform(0.1, 0.6, 5))[::-1]
            rows.append({"obj_id": f"{cls[0]}{k}", "class": cls, **dict(zip("ugriz", np.round(mags, 3), strict=True)),
                         "redshift": round(z0 + rng.uniform(0, 0.05), 4), "simulated": True, "source": "test"})
    with pytest.MonkeyPatch.context() as mp:
        root = _project(tmp, mp)
        pd.DataFrame(rows).to_csv(root / "data" / "raw" / "catalogue.csv", index=False)
        _run_all(root)
    return root / "results" / "stability"


@pytest.mark.slow
@needs_latex
def test_pdf_is_byte_identical_and_shows_generated_values(project, tmp_path):
    first = paper.build(project / "paper", tmp_path / "a.pdf")
    second = paper.build(project / "paper", tmp_path / "b.pdf")
    assert first.read_bytes().startswith(b"%PDF")
    assert _sha(first) == _sha(second)
    text = subprocess.run(["pdftotext", "-layout", str(first), "-"], capture_output=True, text=True,
                          check=True).stdout
    values = read_values(project / "paper" / "generated" / "values.json")
    assert f"Built with the {values['Profile']['text']} profile" in " ".join(text.split())
    assert values["BaselineBestMae"]["text"] in text
    assert values["LlmName"]["text"] in text
    assert values["AblationBestTestMae"]["text"] in text and "Learning-rate ablation" in text
    assert "It is far away" in text  # the demo's answer, in the appendix
    assert values["StabilityMeanPss"]["text"] in text and "Order stability of classifications" in text
    flat = " ".join(text.split())
    assert "Verdicts on the headline claims" in flat and values["VerdictNClaims"]["text"] in flat
    assert "Of the 6 headline claims of the LoRA study" in flat  # the abstract speaks from the verdicts
    assert "??" not in text
    # no paths of the build machine leak into the PDF
    assert str(project).encode() not in first.read_bytes()
    assert b"/CreationDate" not in first.read_bytes() and b"/ID [" not in first.read_bytes()


@pytest.mark.slow
@needs_latex
def test_latex_error_keeps_previous_pdf(project, tmp_path):
    work = tmp_path / "paper"
    shutil.copytree(project / "paper", work)
    pdf = paper.build(work)
    before = _sha(pdf)
    main = work / "main.tex"
    main.write_text(main.read_text().replace(r"\section{Introduction}", r"\section{Introduction}\NoSuchMacroHere", 1))
    with pytest.raises(paper.LatexError) as info:
        paper.build(work)
    message = str(info.value)
    assert "main.tex:" in message and "Undefined control sequence" in message
    assert _sha(pdf) == before


@pytest.mark.slow
@needs_latex
def test_undefined_citation_is_an_error(project, tmp_path):
    work = tmp_path / "paper"
    shutil.copytree(project / "paper", work)
    main = work / "main.tex"
    main.write_text(main.read_text().replace(r"\section{Introduction}", r"\section{Introduction}\citet{nobody1999}", 1))
    with pytest.raises(paper.LatexError, match="nobody1999"):
        paper.build(work, tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()


@pytest.mark.slow
@needs_latex
def test_stage_main_exits_nonzero_and_keeps_pdf(project, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(project / "paper", root / "paper")
    pdf = root / "paper" / "main.pdf"
    pdf.write_bytes(b"%PDF previous build")
    (root / "paper" / "generated" / "macros.tex").write_text(r"\newcommand{\Profile}{smoke" + "\n")  # broken
    env = {**os.environ, "SPECLLM_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "specllm.stages.paper"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert "main.tex:" in proc.stderr and "unchanged" in proc.stderr
    assert pdf.read_bytes() == b"%PDF previous build"


def test_missing_latexmk_says_what_to_install(monkeypatch):
    monkeypatch.setattr(paper.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match=r"apt-get install latexmk texlive-latex-base texlive-latex-recommended"):
        paper.check_tools()


def test_missing_generated_macros_names_the_report_stage(tmp_path):
    (tmp_path / "main.tex").write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    with pytest.raises(InputError, match="run the report stage first"):
        paper.build(tmp_path)


def test_log_errors_picks_file_line_errors():
    log = "\n".join(["(./main.tex", "./main.tex:12: Undefined control sequence.", "l.12 \\foo", "",
                     "LaTeX Warning: Citation `x' on page 1 undefined on input line 3.", "Output written"])
    lines = paper.log_errors(log)
    assert lines[0] == "./main.tex:12: Undefined control sequence."
    assert any("Citation `x'" in line for line in lines)
    assert "Output written" not in lines


def test_failed_stage_under_dvc_says_how_to_restore(tmp_path, monkeypatch, capsys):
    """`dvc repro` removes a stage's outputs before running it; on main a LaTeX error still printed
    "the previous main.pdf (if any) is unchanged". The message now says what is true."""
    from specllm import paths, runner

    def fail(*args, **kwargs):
        raise paper.LatexError("LaTeX failed on main.tex")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paper, "build", fail)
    monkeypatch.setattr(paths, "PDF", tmp_path / "paper" / "main.pdf")  # DVC removed it before the run
    monkeypatch.setenv("DVC_STAGE", "paper")
    with pytest.raises(SystemExit) as exit_:
        runner.run_main(paper.main)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "unchanged" not in err and "`dvc checkout paper` restores the last good ones" in err
    # outside DVC with a previous PDF in place, it is kept and the message says so
    monkeypatch.delenv("DVC_STAGE")
    paths.PDF.parent.mkdir()
    paths.PDF.write_bytes(b"%PDF previous build")
    with pytest.raises(SystemExit):
        runner.run_main(paper.main)
    err = capsys.readouterr().err
    assert "the previous main.pdf is unchanged" in err and "dvc checkout" not in err
