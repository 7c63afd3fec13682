"""Where the stability stages read and write, relative to the project root (specllm.paths.ROOT).

The folders and shared inputs are specllm.paths' (paths.STABILITY, ...); the file names inside
results/stability are listed here, the study's own layout.

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
        "objects": res / "objects.csv",          # sampled objects, features, split
        "orders": res / "orders.json",           # the feature orders (same for every object)
        "sample": res / "sample.json",
        "warmup_objects": res / "warmup_objects.csv",  # warm-up objects (never probed), shown in one order
        "warmup": res / "warmup.json",           # warm-up loss, accuracy on its own objects, time
        "warmup_loss": res / "warmup_loss.csv",
        "probe": res / "probe.csv",              # one row per (object, order): logits, answer
        "hidden": res / "hidden.npz",            # last-layer last-token hidden states, float16
        "decode": res / "decode.csv",            # free-text answers of the decoded subsample
        "probe_json": res / "probe.json",
        "per_object": res / "per_object.csv",    # PSS, entropy, K, ... per object
        "spectral": res / "spectral.npz",        # eigenvalues and cluster labels per object
        "analysis": res / "analysis.json",
        "pairs": res / "pairs.csv",
        "dpo_loss": res / "dpo_loss.csv",
        "dpo": res / "dpo.json",
        "reprobe": res / "reprobe.csv",
        "reprobe_json": res / "reprobe.json",
    }
