"""One hop from a paper number to its code: `specllm where`, full macro keys, the figure/table registry."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from specllm import artifacts, cli
from specllm.report import where

ROOT = Path(__file__).resolve().parents[1]
TEX = [ROOT / "paper" / "main.tex", *sorted((ROOT / "paper" / "sections").glob("*.tex"))]


def _frozen() -> dict[str, dict]:
    """The smoke profile's frozen values (small.json is an older freeze: a few of its macros are gone)."""
    return json.loads((ROOT / "paper" / "reported" / "smoke.json").read_text(encoding="utf-8"))["values"]


def _paper_commands() -> set[str]:
    return {n for f in TEX for n in re.findall(r"\\([A-Za-z]+)", f.read_text(encoding="utf-8"))}


def test_every_frozen_macro_has_its_add_call():
    """Every reported macro's key is written out where it is added (no key built from a prefix and a suffix)."""
    missing = [(name, rec["key"]) for name, rec in _frozen().items() if not where.code_for(rec["key"], name)]
    assert not missing, f"no ms.add call writes these keys in full: {missing}"


def test_where_finds_every_generated_macro_the_paper_uses():
    frozen = _frozen()
    links = {where.macro_name(f"link.{a.kind}.{a.stem}") for a in artifacts.REGISTRY.values()}
    used = sorted(n for n in _paper_commands() if n in frozen or n in links)
    assert len(used) > 200
    for name in used:
        found = where.where(name, ROOT, profile="smoke")
        assert found["code"], name
        assert found["writer"] in ("report", "provenance"), name
        if name in frozen:
            assert found["key"] == frozen[name]["key"] and found["source"], name
    text = where.lookup(["StabilityMeanPss"], ROOT, profile="smoke")[0]
    assert "stability.mean_pss" in text and "specllm.report.stability:make_macros" in text
    assert "results/stability/analysis.json" in text and "paper/reported/smoke.json" in text
    assert "specllm.stages.provenance:build_macros" in where.lookup(["\\LinkFigureColourColour"], ROOT)[0]


def test_where_cli(capsys):
    assert cli.main(["where", "BaselineBestMae", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "baseline.best.mae" in out and "specllm.report.setup:build_macros" in out and "smoke.json" in out
    assert cli.main(["where", "figure:colour_colour"]) == 0
    assert "src/specllm/report/figures.py:colour_colour" in capsys.readouterr().out
    assert cli.main(["where", "NoSuchMacroAnywhere"]) == 2


@pytest.mark.parametrize("art", list(artifacts.REGISTRY.values()), ids=lambda a: a.id)
def test_every_registered_function_exists(art):
    module = importlib.import_module(art.made_by.removeprefix("src/").removesuffix(".py").replace("/", "."))
    assert callable(getattr(module, art.function, None)), f"{art.made_by} has no {art.function}"
    assert art.section in artifacts.SECTIONS


def test_every_paper_figure_and_table_is_registered():
    text = "\n".join(f.read_text(encoding="utf-8") for f in TEX)
    figures = set(re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([A-Za-z0-9_]+)\}", text))
    tables = set(re.findall(r"\\input\{generated/tables/([A-Za-z0-9_]+)\.tex\}", text))
    assert figures and tables
    missing = sorted(({f"figure:{f}" for f in figures} | {f"table:{t}" for t in tables}) - set(artifacts.REGISTRY))
    assert not missing, f"add a row to specllm.artifacts.REGISTRY for {missing}"


def test_every_registered_figure_and_table_is_linked_from_its_caption():
    """One code link per figure and table: the provenance stage's \\Link<Kind><Stem> in its caption."""
    text = "\n".join(f.read_text(encoding="utf-8") for f in TEX)
    unlinked = [art.id for art in artifacts.REGISTRY.values()
                if "\\" + where.macro_name(f"link.{art.kind}.{art.stem}") not in text]
    assert not unlinked, f"captions without their link macro (Made by \\Link...): {unlinked}"


def test_a_value_printed_inside_a_sentence_is_traced_through_it():
    """StabilityMeanPss is not named by the paper: its text is printed inside the sensitivity sentence."""
    found = "\n".join(where.lookup(["StabilityMeanPss"], ROOT, "small"))
    assert "paper    not named; its text 0.026 is printed inside \\StabilitySensitivityClaim (sections/" in found
    named = "\n".join(where.lookup(["StabilityAccuracy"], ROOT, "small"))
    assert "paper    sections/stability.tex:" in named


def test_a_number_read_off_the_pdf_finds_its_macros():
    out = "\n".join(where.lookup(["0.026"], ROOT, "small"))
    assert out.startswith("printed as 0.026: \\StabilityMeanPss")
    assert "inside   \\StabilitySensitivityClaim" in out and "key stability.mean_pss" in out
    assert "\\StabilityAccuracy" in where.lookup(["94%"], ROOT, "small")[0]  # as the PDF prints it, not 94\\%
    with pytest.raises(KeyError):
        where.lookup(["0.123456789"], ROOT, "small")


def test_a_table_cell_holds_a_whole_printed_value(tmp_path):
    tables = tmp_path / "paper" / "generated" / "tables"
    tables.mkdir(parents=True)
    (tables / "t.tex").write_text("% Generated\n\\begin{tabular}{lr}\nA & \\textbf{0.0009} \\\\\nB & 56.0\\% & 1{,}560 "
                                  "\\\\\n\\end{tabular}\n", encoding="utf-8")
    assert where.tabled_in("0.0009", tmp_path) == ["table:t"]  # inside \textbf{...}
    assert where.tabled_in("56.0\\%", tmp_path) == ["table:t"]
    assert where.tabled_in("56", tmp_path) == [] and where.tabled_in("560", tmp_path) == []
    assert where.tabled_in("0.000", tmp_path) == [] and where.tabled_in("", tmp_path) == []


def test_every_macro_of_the_smoke_run_is_printed(smoke_repo):
    """Nothing dead: each generated macro is named by the paper, printed inside a generated sentence it names,
    or in a generated table's cell; the only exceptions are the interval ends verify reads for the claim level
    (retrained.INTERVALS; the sentences print them rounded)."""
    from specllm.retrained import INTERVALS

    read_by_verify = {name for triple in INTERVALS for name in triple}
    dead = [n for n in where.unprinted(smoke_repo) if n not in read_by_verify]
    assert not dead, f"generated but printed nowhere (remove them, or print them): {dead}"
