"""Stage `stability_sample`: a class-balanced sample of catalogue objects, their split, and the feature orders.

    python -m specllm.stages.stability_sample

Reads the classification catalogue (catalogue.source: embedded data/raw/catalogue.csv, or sdss17
data/external/sdss17/catalogue.csv from `specllm data import-sdss17`). Writes results/stability/:
objects.csv (obj_id, class, u..z, redshift, split = alignment | evaluation), warmup_objects.csv (the
supervised warm-up's objects: stability.warmup_per_class per class from the catalogue rows that are not
probed, split = warmup), orders.json (every order: index, name, permutation, feature names) and
sample.json (counts, catalogue file and sha256).
"""

from __future__ import annotations

from specllm import paths
from specllm.errors import InputError
from specllm.io import sha256_file, write_json
from specllm.runner import run_main


def catalogue_path(source: str, files: dict):
    path = files["catalogue_sdss17"] if source == "sdss17" else files["catalogue_embedded"]
    if not path.is_file():
        fix = ("import it: `specllm data import-sdss17 star_classification.csv`" if source == "sdss17"
               else "build the embedded data: `make data`")
        raise InputError(path, "catalogue.source", f"catalogue for source {source!r} not found", fix)
    return path


def main() -> None:
    import pandas as pd

    from specllm import config
    from specllm.stability import features
    from specllm.stability.files import layout

    p = config.stage_params("stability_sample")
    files = layout()
    path = catalogue_path(p["catalogue.source"], files)
    where = (str(files["params"]), "stability.n_orders")
    orders = features.make_orders(p["stability.n_orders"], p["seed"], where)
    frame = pd.read_csv(path, dtype={"obj_id": str})
    objects = features.sample_objects(frame, p["stability.n_per_class"], p["stability.eval_share"], p["seed"], path)
    warm = features.sample_warmup(frame, objects, p["stability.warmup_per_class"], p["seed"], path)
    files["results"].mkdir(parents=True, exist_ok=True)
    warm.to_csv(files["warmup_objects"], index=False, float_format="%.6f", lineterminator="\n")
    objects.to_csv(files["objects"], index=False, float_format="%.6f", lineterminator="\n")
    write_json(files["orders"], {"features": list(features.FEATURES), "orders": [
        {"index": k, "name": name, "perm": list(perm), "features": [features.FEATURES[i] for i in perm]}
        for k, (name, perm) in enumerate(orders)]})
    counts = {cls: {s: int(((objects["class"] == cls) & (objects["split"] == s)).sum())
                    for s in ("alignment", "evaluation")} for cls in features.CLASSES}
    write_json(files["sample"], {"catalogue": paths.shown(path, files["root"]), "catalogue_source": p["catalogue.source"],
                                 "catalogue_sha256": sha256_file(path), "catalogue_rows": int(len(frame)),
                                 "n_objects": int(len(objects)), "n_per_class": p["stability.n_per_class"],
                                 "n_orders": len(orders), "n_prompts": int(len(objects) * len(orders)),
                                 "n_warmup": int(len(warm)), "warmup_per_class": p["stability.warmup_per_class"],
                                 "warmup_probed_overlap": int(warm["obj_id"].isin(objects["obj_id"]).sum()),
                                 "counts": counts, "simulated_share": {
                                     cls: float(frame.loc[frame["obj_id"].isin(objects["obj_id"]) & (frame["class"] == cls),
                                                          "simulated"].mean()) if "simulated" in frame else 0.0
                                     for cls in features.CLASSES}})
    print(f"stability_sample: {len(objects)} objects x {len(orders)} orders from {path}")


if __name__ == "__main__":
    run_main(main)
