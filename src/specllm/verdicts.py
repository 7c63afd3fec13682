"""The verdict table: one row per headline claim of the two original studies, decided by this build's
numbers. The LoRA study's rows (arXiv:2508.10075) come from specllm.claims, the SCSE attempt's from
specllm.stability.verdicts; both follow one contract (key, study, claim, original, ours, verdict,
reason: plain text) and this module checks it, counts the verdicts, words one summary per study,
and renders the rows for the paper (a booktabs table, LaTeX-escaped) and for `specllm compare`.

The verdicts stage (specllm.stages.verdicts) writes results/verdicts.json; the report prints it and
the abstract and summary speak from its counts and summaries.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from specllm import claims
from specllm.report import tables
from specllm.report.macros import escape_latex

FIELDS = ("key", "study", "claim", "original", "ours", "verdict", "reason")
STUDIES = {"lora": "the LoRA study (arXiv:2508.10075)", "scse": "the SCSE stability attempt (arXiv:2601.02993)"}
VERDICT_SHORT = {claims.SUPPORTED: "supported", claims.CONTRADICTED: "contradicted",
                 claims.UNTESTABLE: "not testable"}


def check_rows(rows: Sequence[Mapping[str, Any]], where: str) -> list[dict[str, str]]:
    """The rows as plain-string dicts, or ValueError naming the row and field that break the contract."""
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"{where}: row {i} lacks {', '.join(missing)}")
        if row["verdict"] not in claims.VERDICTS:
            raise ValueError(f"{where}: row {i} ({row['key']}) has verdict {row['verdict']!r}, not one of "
                             f"{', '.join(claims.VERDICTS)}")
        out.append({f: str(row[f]) for f in FIELDS})
    return out


def build(abl: Mapping[str, Any], arxiv_ref: Mapping[str, Any], scse_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """results/verdicts.json: rows, counts (per study and in total) and one summary sentence per study."""
    lora = check_rows(claims.lora_verdicts(abl, arxiv_ref), "specllm.claims.lora_verdicts")
    scse = check_rows(scse_rows, "specllm.stability.verdicts.stability_verdicts")
    rows = lora + scse
    keys = [r["key"] for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"verdict keys repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}")

    def count(rs: Sequence[Mapping[str, str]]) -> dict[str, int]:
        return {VERDICT_SHORT[v]: sum(1 for r in rs if r["verdict"] == v) for v in claims.VERDICTS}

    return {
        "rows": rows,
        "counts": {"all": count(rows), "lora": count(lora), "scse": count(scse)},
        "n_claims": len(rows),
        "summaries": {"lora": claims.study_summary(lora, STUDIES["lora"], claims.lora_cause(abl)),
                      "scse": claims.study_summary(scse, STUDIES["scse"])},
    }


def latex_table(rows: Sequence[Mapping[str, str]]) -> str:
    """The verdict table for the paper (every cell escaped: the rows are plain text)."""
    body: list[Any] = []
    for study in STUDIES:
        these = [r for r in rows if r["study"] == study]
        if not these:
            continue
        if body:
            body.append(tables.MIDRULE)
        body.append(tables.section(escape_latex(STUDIES[study][0].upper() + STUDIES[study][1:]), 5))
        for r in these:
            body.append([escape_latex(r["claim"]), escape_latex(r["original"]), escape_latex(r["ours"]),
                         r"\textbf{" + escape_latex(VERDICT_SHORT[r["verdict"]]) + "}", escape_latex(r["reason"])])
    cols = [r">{\raggedright\arraybackslash}p{0.17\linewidth}", r">{\raggedright\arraybackslash}p{0.09\linewidth}",
            r">{\raggedright\arraybackslash}p{0.22\linewidth}", r">{\raggedright\arraybackslash}p{0.08\linewidth}",
            r">{\raggedright\arraybackslash}X"]
    return tables.booktabs(["Claim", "Original", "This build (95\\% interval)", "Verdict", "Why"], body, cols,
                           width=r"\linewidth")


def text_table(verdicts: Mapping[str, Any], width: int = 110) -> str:
    """The verdict rows for a terminal (`specllm compare`)."""
    lines = []
    for study, words in STUDIES.items():
        these = [r for r in verdicts["rows"] if r["study"] == study]
        summary = str(verdicts["summaries"].get(study, "")) or words
        lines.append(summary[:1].upper() + summary[1:])
        for r in these:
            lines.append(f"  [{VERDICT_SHORT[r['verdict']]}] {r['claim']}")
            for label in ("original", "ours", "reason"):
                lines += textwrap.wrap(f"{label}: {r[label]}", width, initial_indent="      ",
                                       subsequent_indent="        ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
