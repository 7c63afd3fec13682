"""Stage `verdicts`: a verdict on every headline claim of the two original studies (results/verdicts.json).

    python -m specllm.stages.verdicts

Reads results/ablation.json (select), results/stability/analysis.json and reprobe.json (the stability
stages) and the originals' values in data/reference/; see specllm.verdicts for the rows and
specllm.claims for how the LoRA study's claims are decided.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specllm import paths
from specllm.errors import InputError
from specllm.io import read_json, write_json
from specllm.runner import run_main

OUT = paths.VERDICTS
INPUTS = {
    "ablation": (paths.ABLATION, "run `dvc repro select`"),
    "arxiv": (paths.ARXIV_REFERENCE, "restore it from git"),
    "analysis": (paths.STABILITY_FILES["analysis"], "run `dvc repro stability_analyze`"),
    "reprobe": (paths.STABILITY_FILES["reprobe_json"], "run `dvc repro stability_reprobe`"),
    "scse": (paths.SCSE_REFERENCE, "restore it from git"),
}


def run(inputs: dict[str, tuple[Path, str]] = INPUTS, out: Path = OUT) -> dict[str, Any]:
    from specllm import verdicts
    from specllm.stability.verdicts import stability_verdicts

    data = {name: read_json(path, fix, kind=None) for name, (path, fix) in inputs.items()}
    try:
        scse = stability_verdicts(data["analysis"], data["reprobe"], data["scse"])
        result = verdicts.build(data["ablation"], data["arxiv"], scse)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(inputs["ablation"][0], "-", f"cannot decide the verdicts ({err})",
                         "rerun the stages that write the inputs (`dvc repro`)") from None
    write_json(out, result)
    return result


def main() -> None:
    result = run()
    c = result["counts"]["all"]
    print(f"verdicts: {result['n_claims']} claims: {c['supported']} supported, {c['contradicted']} contradicted, "
          f"{c['not testable']} not testable -> {OUT}")


if __name__ == "__main__":
    run_main(main)
