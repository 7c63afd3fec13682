"""Stage `stability_analyze`: spectral clustering per object, PSS, summaries and quality checks.

    python -m specllm.stages.stability_analyze

Reads results/stability/{objects.csv, probe.csv, hidden.npz}. Writes results/stability/:
per_object.csv (obj_id, class, split, redshift, pss, entropy, n_distinct, majority, correct, n_valid,
n_tied, k, aligned, representative, representative_correct), spectral.npz (obj_ids, eigvals [objects,
orders], k, labels [objects, orders]) and analysis.json (summaries overall and per class with bootstrap
intervals over objects, the classification null baselines and the read-out status, the representative
(cluster-centre) answers, the order-versus-object variance decomposition of the label logits, K over
stability.sigma_scan, confusion matrix, K counts, quality checks, the decisions the paper's sentences
follow, example objects for the figures).
"""

from __future__ import annotations

from specllm.errors import InputError
from specllm.runner import run_main


def main() -> None:
    import numpy as np

    from specllm import config
    from specllm.io import write_json
    from specllm.stability import analysis, baselines, diagnostics, features, spectral
    from specllm.stability.files import layout
    from specllm.stability.runtime import STAGE_FIX, read_csv

    p = config.stage_params("stability_analyze")
    files = layout()
    objects = read_csv(files["objects"], ["obj_id", "class", "split", "redshift"])
    rows = read_csv(files["probe"], ["obj_id", "order", "answer", "answer_label"])
    if not files["hidden"].is_file():
        raise InputError(files["hidden"], "-", "not found", STAGE_FIX)
    hz = np.load(files["hidden"])
    ids, hidden = [str(x) for x in hz["obj_ids"]], hz["hidden"].astype(np.float32)
    if ids != objects["obj_id"].tolist():
        raise InputError(files["hidden"], "obj_ids", "objects differ from objects.csv", "rerun `dvc repro stability_probe`")
    clusters = {}
    for j, oid in enumerate(ids):
        clusters[oid] = spectral.cluster(hidden[j], p["stability.sigma"], p["stability.max_clusters"], p["seed"])
    table = analysis.per_object_table(objects, rows, clusters)
    n_boot, seed = p["stability.n_boot"], p["seed"]
    cube = diagnostics.logit_cube(rows, ids)
    rep = diagnostics.representative(cube, clusters, ids)
    table["representative"] = [features.CLASSES[r["answer"]] if r["answer"] >= 0 else "" for r in rep]
    table["representative_correct"] = (table["representative"] == table["class"]).astype(int)
    table.to_csv(files["per_object"], index=False, float_format="%.6f", lineterminator="\n")
    np.savez_compressed(files["spectral"], obj_ids=np.array(ids, dtype=str),
                        eigvals=np.stack([clusters[o]["eigvals"] for o in ids]),
                        k=np.array([clusters[o]["k"] for o in ids]),
                        labels=np.stack([clusters[o]["labels"] for o in ids]))
    ks = table["k"].value_counts().sort_index()
    t = table[table["n_valid"] > 0]
    examples = {}
    if len(t):
        examples["most_sensitive"] = t.sort_values(["pss", "obj_id"], ascending=[False, True])["obj_id"].iloc[0]
        examples["largest_k"] = t.sort_values(["k", "obj_id"], ascending=[False, True])["obj_id"].iloc[0]
        stable = t[t["pss"] == 0]
        examples["stable"] = (stable if len(stable) else t).sort_values("obj_id")["obj_id"].iloc[0]
    base = baselines.classification_baselines(t, rows, n_boot, seed)
    intervals = {"mean_pss": baselines.bootstrap_mean(t["pss"], n_boot, seed),
                 "accuracy": base["model"],
                 "representative_accuracy": baselines.bootstrap_mean(t["representative_correct"], n_boot, seed),
                 "per_class_pss": {c: baselines.bootstrap_mean(t.loc[t["class"] == c, "pss"], n_boot, seed)
                                   for c in features.CLASSES}}
    scan = diagnostics.k_scan(hidden, p["stability.sigma_scan"], p["stability.max_clusters"])
    out = {"overall": analysis.summary(table), "intervals": intervals, "baselines": base,
           "decisions": analysis.decisions(intervals, base, ks.to_dict()),
           "representative": {"share_agree_majority": float((t["representative"] == t["majority"]).mean()) if len(t) else 0.0,
                              "accuracy": intervals["representative_accuracy"]},
           "variance": diagnostics.variance_decomposition(cube, n_boot, seed),
           "k_scan": scan,
           "per_class": {c: analysis.summary(table[table["class"] == c]) for c in features.CLASSES},
           "prompt_accuracy": analysis.prompt_accuracy(objects, rows),
           "confusion": analysis.confusion(t),
           "k_counts": {str(int(k)): int(n) for k, n in ks.items()},
           "k_dominant": int(ks.idxmax()), "k_dominant_share": float(ks.max() / ks.sum()),
           "share_aligned": float(t["aligned"].mean()) if len(t) else 0.0,
           "checks": analysis.quality_checks(table, p["stability.z_plausible"]),
           "examples": examples, "sigma": p["stability.sigma"], "max_clusters": p["stability.max_clusters"],
           "n_objects": int(len(table)), "n_orders": int(hidden.shape[1])}
    write_json(files["analysis"], out)
    o = out["overall"]
    print(f"stability_analyze: mean PSS {o.get('mean_pss')}, stable share {o.get('share_stable')}, "
          f"accuracy {o.get('accuracy')} (prior-only bound {base['prior_bound']:.3f}, read-out {base['readout']}), "
          f"dominant K {out['k_dominant']}")


if __name__ == "__main__":
    run_main(main)
