"""Stage `report`: turn the stage outputs into paper/generated/ (macros, values, tables, figures).

    python -m specllm.stages.report

Writes, and owns, paper/generated/:
    macros.tex         one \\newcommand per number or claim the paper prints (sorted)
    values.json        every macro's name, key, raw value, text, kind, precision and source file
    tables/*.tex       booktabs tabulars
    figures/*.pdf|png  the figures
from the report's section modules, each of one shape (specllm.report.section: read_inputs ->
make_macros -> make_tables -> make_figures), run in this order:
    specllm.report.setup      data, model, serialization, baselines, environment (its inputs and
                              their contracts are listed there)
    specllm.report.ablation   the LoRA study
    specllm.report.stability  the order-stability study
    specllm.report.verdicts   the claim verdicts
specllm.artifacts.REGISTRY names the function and data files of every table and figure;
`specllm where <Macro>` traces one macro to its stage, file, params and code.

Every section's inputs are read and checked, and its macros and tables made, before anything is
written; the folder is then replaced in one rename, so a failed run leaves the previous
paper/generated/ intact. write_report takes explicit paths and a plain params dict (tests call it);
main() only fills in specllm.paths and config.stage_params("report").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specllm.errors import InputError
from specllm.io import atomic_dir
from specllm.report import ablation, setup, stability, tables, verdicts
from specllm.report.macros import MacroSet
from specllm.report.section import Context
from specllm.report.setup import PARAM_KEYS, Inputs, load_comparisons
from specllm.runner import run_main

SECTIONS = (setup.SECTION, ablation.SECTION, stability.SECTION, verdicts.SECTION)


def write_report(params: Mapping[str, Any], inputs: Inputs, out_dir: Path,
                 comparisons: Sequence[Mapping[str, Any]],
                 lora: ablation.AblationInputs | None = None, stability: Path | None = None,
                 verdicts_file: Path | None = None) -> dict[str, Any]:
    """Read and check every input, then replace `out_dir` with macros, values, tables, figures.
    `lora`: the LoRA study's outputs; `stability`: the stability study's folder (results/stability);
    `verdicts_file`: results/verdicts.json. The stage always passes all three; tests of one part may
    leave the others out (that section is then skipped)."""
    ctx = Context(params=params, inputs=inputs, comparisons=comparisons, lora=lora, stability=stability,
                  verdicts=verdicts_file)
    for section in SECTIONS:
        data = section.read_inputs(ctx)
        if data is not None:
            ctx.read[section.name] = data
    macros = MacroSet()
    table_text: dict[str, str] = {}
    for section in SECTIONS:
        if section.name in ctx.read:
            section.make_macros(macros, ctx.read[section.name])
            table_text.update(section.make_tables(ctx.read[section.name]))

    figs: list[Path] = []
    with atomic_dir(Path(out_dir)) as tmp:
        macros.write(tmp / "macros.tex", tmp / "values.json")
        for name, text in sorted(table_text.items()):
            tables.write(tmp / "tables" / f"{name}.tex", text)
        for section in SECTIONS:
            if section.name in ctx.read:
                figs += section.make_figures(ctx.read[section.name], tmp / "figures")
    return {"macros": len(macros), "tables": sorted(table_text), "figures": sorted({f.stem for f in figs})}


def main() -> None:
    from specllm import config, paths

    sp = config.stage_params("report")
    try:
        params = {k: sp[k] for k in PARAM_KEYS}
    except KeyError as err:
        raise InputError(paths.DVC_YAML, "stages.report.params", str(err.args[0]),
                         f"list these keys there: {', '.join(PARAM_KEYS)}") from None
    inputs = Inputs.under(paths.ROOT)
    done = write_report(params, inputs, paths.GENERATED, load_comparisons(), lora=ablation.AblationInputs.under(paths.ROOT),
                        stability=paths.STABILITY, verdicts_file=paths.VERDICTS)
    print(f"report: {done['macros']} macros, tables {', '.join(done['tables'])}, "
          f"figures {', '.join(done['figures'])} -> {inputs.rel(paths.GENERATED)}/")


if __name__ == "__main__":
    run_main(main)
