"""The report's verdicts section: the claim verdicts' counts, one summary per study, and the table.

One of the report's section modules (specllm.report.section); its input is results/verdicts.json
(rows in specllm.verdicts' contract, counts, summaries), written by the verdicts stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specllm.errors import InputError
from specllm.report.macros import MacroSet
from specllm.report.section import Context, Section


def read_inputs(ctx: Context) -> dict[str, Any] | None:
    """results/verdicts.json, checked (None when the report was not given it)."""
    from specllm import verdicts
    from specllm.report.setup import read_json

    if ctx.verdicts is None:
        return None
    src = ctx.rel(ctx.verdicts)
    v = read_json(ctx.verdicts)
    try:
        rows = verdicts.check_rows(v["rows"], src)
        counts = v["counts"]["all"]
        summaries = v["summaries"]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(src, "rows", f"not a verdict table ({err})", "run `dvc repro verdicts`") from None
    return {"rows": rows, "counts": counts, "summaries": summaries, "source": src}


def make_macros(ms: MacroSet, d: Mapping[str, Any]) -> None:
    from specllm import verdicts

    rows, counts, summaries, src = d["rows"], d["counts"], d["summaries"], d["source"]
    ms.add("verdict.n_claims", len(rows), source=src)
    ms.add("verdict.n_supported", int(counts["supported"]), source=src)
    ms.add("verdict.n_contradicted", int(counts["contradicted"]), source=src)
    ms.add("verdict.n_untestable", int(counts["not testable"]), source=src)
    for study in verdicts.STUDIES:
        text = str(summaries.get(study, ""))
        ms.add(f"verdict.{study}.summary", text[:1].upper() + text[1:], source=src, kind="text")
        ms.add(f"verdict.{study}.n_claims", sum(1 for r in rows if r["study"] == study), source=src)


def make_tables(d: Mapping[str, Any]) -> dict[str, str]:
    from specllm import verdicts

    return {"verdicts": verdicts.latex_table(d["rows"])}


def make_figures(d: Mapping[str, Any], fig_dir: Path) -> list[Path]:
    return []


SECTION = Section("verdicts", read_inputs, make_macros, make_tables, make_figures)
