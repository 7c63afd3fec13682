"""One shape for every part of the paper the report stage generates.

A section module (specllm.report.setup: data, model, baselines; .ablation: the LoRA study;
.stability: the order-stability study; .verdicts: the claim verdicts) exposes

    read_inputs(ctx) -> data | None     read and check its inputs (None: not asked for, skipped)
    make_macros(ms, data)               add its macros to the MacroSet (full keys, e.g.
                                        "stability.mean_pss": grep the key, or `specllm where Macro`)
    make_tables(data) -> {stem: LaTeX}  its tables (paper/generated/tables/<stem>.tex)
    make_figures(data, fig_dir) -> [paths]  its figures (paper/generated/figures/<stem>.pdf|png)

and one `SECTION = Section(...)` of the four. specllm.stages.report runs them in order: every
section reads, then adds macros and tables, then (inside the atomic folder) draws figures.
Each figure and table is also a row of specllm.artifacts.REGISTRY (made_by, function, section,
data files): a new figure is one function in its section module and one registry row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specllm.report.macros import MacroSet


@dataclass
class Context:
    """What the report stage was given. `read` fills with each section's data as it is read (a later
    section may use an earlier one's: the ablation figures draw the baseline's predictions)."""

    params: Mapping[str, Any]
    inputs: Any                                  # specllm.report.setup.Inputs
    comparisons: Sequence[Mapping[str, Any]] = ()
    lora: Any = None                             # specllm.report.ablation.AblationInputs, or None
    stability: Path | None = None                # results/stability
    verdicts: Path | None = None                 # results/verdicts.json
    read: dict[str, Any] = field(default_factory=dict)

    def rel(self, path: Path) -> str:
        return self.inputs.rel(path)


@dataclass(frozen=True)
class Section:
    name: str
    read_inputs: Callable[[Context], Any]
    make_macros: Callable[[MacroSet, Any], None]
    make_tables: Callable[[Any], dict[str, str]]
    make_figures: Callable[[Any, Path], list[Path]]
