"""The paper lint: no hand-typed numbers in the paper's text (they must be generated macros)."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT

from specllm import paperlint

BODY = "\\documentclass{article}\n\\setcounter{topnumber}{3}\n\\begin{document}\n{}\n\\end{document}\n"


def lint(text: str):
    return paperlint.lint_text(BODY.replace("{}\n", text + "\n", 1), "paper/main.tex")


def test_the_committed_paper_has_no_hand_typed_numbers():
    violations = paperlint.lint_files(ROOT)
    assert not violations, "\n".join(map(str, violations))


def test_a_planted_literal_is_caught_with_file_line_and_literal():
    found = lint("The best run reaches an MAE of 0.043 on the test split \\citep{ramachandra2025}.")
    assert [(v.file, v.line, v.literal) for v in found] == [("paper/main.tex", 4, "0.043")]
    assert "paper/main.tex:4: 0.043" in str(found[0])


def test_grouped_thousands_and_percent_are_caught():
    found = lint("We train on 3{,}000 spectra and keep 85.2\\% of the accuracy.")
    assert [v.literal for v in found] == ["3{,}000", "85.2"]


def test_allowed_contexts_pass():
    text = "\n".join([
        "As in Section~3 and \\citet{hu2021lora} (Hu et al. 2021), see arXiv:2508.10075 and Llama~3.1.",
        "\\includegraphics[width=0.48\\textwidth]{fig2} \\vspace{1.2em} \\ref{sec:2} \\label{tab:1}",
        "$\\mathrm{NMAD}=1.4826\\,\\mathrm{median}|\\Delta|$ and $(1+z)$, $\\log_{10}\\lambda$, SmolLM2, DR16.",
        "The 95th percentile; sha256 checksums (first 16 hexadecimal digits).  % a comment with 42",
        "\\begin{minipage}[t]{0.5\\textwidth} \\\\[0.4em] \\end{minipage} \\MacroWithValue{}",
    ])
    assert lint(text) == []


def test_math_mode_only_allows_equation_constants():
    assert [v.literal for v in lint("$z < 0.5$ and $k=7$")] == ["0.5", "7"]


def test_preamble_is_not_text():
    assert lint("") == []


def test_cli_reports_and_exits_non_zero(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "main.tex").write_text(BODY.replace("{}", "An MAE of 0.043."))
    from specllm import paths

    monkeypatch.setattr(paths, "ROOT", tmp_path)
    assert paperlint.main([]) == 1
    assert "paper/main.tex:4: 0.043" in capsys.readouterr().out


def test_a_unit_word_after_a_number_is_not_a_length():
    assert [v.literal for v in lint("We use 80 in each bin and 3 pt sources.")] == ["80", "3"]
