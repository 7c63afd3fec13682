"""Where the stability stages read and write, relative to the project root (specllm.paths.ROOT).

Every path is specllm.paths' (paths.STABILITY_FILES names the files inside results/stability);
this module resolves them, with the shared inputs, below a root.

Resolved at call time, so tests can point specllm.paths at a temporary project.
"""

from __future__ import annotations

from pathlib import Path


def layout(root: Path | None = None) -> dict[str, Path]:
    from specllm import paths

    root = Path(root or paths.ROOT)
    res = paths.at(root, paths.STABILITY)
    return {
        "root": root,
        "params": paths.at(root, paths.PARAMS),
        "catalogue_embedded": paths.at(root, paths.CATALOGUE),
        "catalogue_sdss17": paths.at(root, paths.SDSS17_CATALOGUE),
        "base_model": paths.at(root, paths.BASE_MODEL),
        "adapter": paths.at(root, paths.STABILITY_DPO_ADAPTER),
        "warmup_adapter": paths.at(root, paths.STABILITY_WARMUP_ADAPTER),
        "results": res,
        **{name: paths.at(root, path) for name, path in paths.STABILITY_FILES.items()},
    }
