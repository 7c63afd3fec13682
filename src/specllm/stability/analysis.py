"""Per-object permutation sensitivity, summaries, quality checks and the before/after comparison.

Per object, over its valid answers (tied readings are answer -1 and left out):
  PSS         1 - (count of the majority answer / number of valid answers)   (0 = fully stable)
  entropy     Shannon entropy of the answer distribution, bits
  n_distinct  distinct answers
  majority    the most common answer (ties: the label listed first in CLASSES); correct = majority == class
An object with no valid answer has PSS NaN and is counted as unanswerable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from specllm.stability.features import CLASSES

HIGH_PSS = 0.5          # "PSS > 0.5": the majority answer holds for fewer than half of the orders
CHANCE = 1.0 / len(CLASSES)


def object_metrics(answers: Sequence[int], n_labels: int = len(CLASSES)) -> dict[str, Any]:
    a = np.asarray(answers, dtype=np.int64)
    valid = a[a >= 0]
    counts = np.bincount(valid, minlength=n_labels) if len(valid) else np.zeros(n_labels, dtype=np.int64)
    n = int(len(valid))
    if n == 0:
        return {"n_valid": 0, "n_tied": int((a < 0).sum()), "pss": float("nan"), "entropy": float("nan"),
                "n_distinct": 0, "majority": -1, "majority_count": 0, "counts": counts.tolist()}
    p = counts[counts > 0] / n
    majority = int(np.argmax(counts))
    return {"n_valid": n, "n_tied": int((a < 0).sum()), "pss": float(1.0 - counts[majority] / n),
            "entropy": float(-(p * np.log2(p)).sum()) + 0.0, "n_distinct": int((counts > 0).sum()),
            "majority": majority, "majority_count": int(counts[majority]), "counts": counts.tolist()}


def per_object_table(objects: pd.DataFrame, probe_rows: pd.DataFrame, clusters: Mapping[str, Mapping[str, Any]] | None
                     = None) -> pd.DataFrame:
    """One row per object: obj_id, class, split, redshift, pss, entropy, n_distinct, majority (label), correct,
    n_valid, n_tied, k (if clusters given), aligned (clusters and answers partition the orders alike)."""
    rows = []
    for _, obj in objects.iterrows():
        sub = probe_rows[probe_rows["obj_id"] == obj["obj_id"]].sort_values("order")
        m = object_metrics(sub["answer"].to_numpy())
        row = {"obj_id": obj["obj_id"], "class": obj["class"], "split": obj.get("split", ""),
               "redshift": float(obj["redshift"]), "pss": m["pss"], "entropy": m["entropy"],
               "n_distinct": m["n_distinct"], "majority": CLASSES[m["majority"]] if m["majority"] >= 0 else "",
               "correct": int(m["majority"] >= 0 and CLASSES[m["majority"]] == obj["class"]),
               "n_valid": m["n_valid"], "n_tied": m["n_tied"]}
        if clusters is not None:
            c = clusters[obj["obj_id"]]
            row["k"] = int(c["k"])
            row["aligned"] = int(partitions_agree(c["labels"], sub["answer"].to_numpy()))
        rows.append(row)
    return pd.DataFrame(rows)


def partitions_agree(labels: Sequence[int], answers: Sequence[int]) -> bool:
    """True when the clusters and the answers split the orders into the same groups."""
    labels, answers = np.asarray(labels), np.asarray(answers)
    pairs = set(zip(labels.tolist(), answers.tolist()))
    return len(pairs) == len(set(labels.tolist())) == len(set(answers.tolist()))


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """mean/max PSS, share with PSS = 0 and PSS > 0.5, accuracy of the majority answer, over answerable objects."""
    t = table[table["n_valid"] > 0]
    n = len(t)
    if n == 0:
        return {"n": 0, "n_unanswerable": int(len(table))}
    pss = t["pss"].to_numpy(dtype=float)
    return {"n": int(n), "n_unanswerable": int(len(table) - n), "mean_pss": float(pss.mean()),
            "median_pss": float(np.median(pss)), "max_pss": float(pss.max()),
            "share_stable": float((pss == 0).mean()), "share_high_pss": float((pss > HIGH_PSS).mean()),
            "accuracy": float(t["correct"].mean()), "mean_entropy": float(t["entropy"].mean()),
            "mean_distinct": float(t["n_distinct"].mean())}


def confusion(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{true class: {majority answer (or 'none'): count}}."""
    out = {c: {a: 0 for a in (*CLASSES, "none")} for c in CLASSES}
    for _, r in table.iterrows():
        out[r["class"]][r["majority"] or "none"] += 1
    return out


def prompt_accuracy(objects: pd.DataFrame, probe_rows: pd.DataFrame) -> float:
    truth = dict(zip(objects["obj_id"], objects["class"]))
    labels = probe_rows["answer_label"].fillna("").astype(str)
    return float((labels == probe_rows["obj_id"].map(truth)).mean())


def quality_checks(table: pd.DataFrame, z_plausible: float) -> list[dict[str, Any]]:
    """Pass/fail checks, each with the objects that fail it.

    physical_plausibility  no majority answer that physics rules out: QSO at z < z_plausible, STAR at
                           z > z_plausible, GALAXY/QSO at a negative redshift
    label_agreement_<C>    the majority answer's accuracy on catalogue class C beats chance (1/3);
                           failing objects are the misclassified ones
    order_insensitivity    no object changes its answer with the order (fails = sensitivity present)
    clusters_match_answers every object's clusters split the orders exactly as its answers do
    """
    checks = []
    t = table[table["n_valid"] > 0]
    z, maj = t["redshift"].to_numpy(float), t["majority"].to_numpy(object)
    bad = ((maj == "QSO") & (z < z_plausible)) | ((maj == "STAR") & (z > z_plausible)) | \
          (np.isin(maj, ["GALAXY", "QSO"]) & (z < 0))
    checks.append({"name": "physical_plausibility", "passed": not bad.any(), "failing": t["obj_id"][bad].tolist(),
                   "value": float(bad.mean()) if len(t) else 0.0,
                   "detail": f"QSO answers at z < {z_plausible}, STAR answers at z > {z_plausible}, "
                             "GALAXY/QSO answers at z < 0"})
    for cls in CLASSES:
        sub = t[t["class"] == cls]
        acc = float(sub["correct"].mean()) if len(sub) else float("nan")
        checks.append({"name": f"label_agreement_{cls}", "passed": bool(len(sub) and acc > CHANCE),
                       "failing": sub["obj_id"][sub["correct"] == 0].tolist(), "value": acc if len(sub) else 0.0,
                       "detail": f"accuracy on catalogue {cls} objects above chance (1/3)"})
    sens = t["pss"] > 0
    checks.append({"name": "order_insensitivity", "passed": not sens.any(), "failing": t["obj_id"][sens].tolist(),
                   "value": float(sens.mean()) if len(t) else 0.0,
                   "detail": "no object changes its answer with the feature order"})
    if "aligned" in t:
        mis = t["aligned"] == 0
        checks.append({"name": "clusters_match_answers", "passed": not mis.any(), "failing": t["obj_id"][mis].tolist(),
                       "value": float(1.0 - mis.mean()) if len(t) else 0.0,
                       "detail": "hidden-state clusters split the orders exactly as the answers do"})
    for c in checks:
        c["passed"] = bool(c["passed"])
        c["n_failing"] = len(c["failing"])
    return checks


def paired_bootstrap(before: np.ndarray, after: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    """Mean of after - before with a 95% percentile bootstrap interval over objects, and the exact
    two-sided sign-flip (permutation) p-value when n <= 16, else a Monte Carlo one with n_boot draws."""
    d = np.asarray(after, float) - np.asarray(before, float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"n": 0, "mean_diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    obs = abs(d.mean())
    if len(d) <= 16:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
    else:
        signs = rng.choice([-1, 1], size=(n_boot, len(d)))
    p = float((np.abs((signs * d).mean(axis=1)) >= obs - 1e-12).mean())
    return {"n": int(len(d)), "mean_diff": float(d.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5)), "p_value": p}


def before_after(before: pd.DataFrame, after: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """PSS and accuracy before/after per class and overall, with paired tests (objects matched by obj_id)."""
    m = before.merge(after, on=["obj_id", "class"], suffixes=("_before", "_after"))
    out: dict[str, Any] = {}
    for group, sub in [("all", m), *((c, m[m["class"] == c]) for c in CLASSES)]:
        if not len(sub):
            continue
        g = {"n": int(len(sub))}
        for metric in ("pss", "correct"):
            b, a = sub[f"{metric}_before"].to_numpy(float), sub[f"{metric}_after"].to_numpy(float)
            name = "accuracy" if metric == "correct" else "pss"
            g[f"{name}_before"] = float(np.nanmean(b))
            g[f"{name}_after"] = float(np.nanmean(a))
            g[f"{name}_test"] = paired_bootstrap(b, a, n_boot, seed)
        g["share_stable_before"] = float((sub["pss_before"] == 0).mean())
        g["share_stable_after"] = float((sub["pss_after"] == 0).mean())
        out[group] = g
    return out


def decisions(intervals: Mapping[str, Any], baselines: Mapping[str, Any], k_counts: Mapping[Any, int]) -> dict[str, Any]:
    """What the stability sentences may say, decided from intervals and the null baselines.

    testable     False when the answer is (nearly) constant (baselines.CONSTANT_SHARE): PSS, K and the quality
                 checks then describe a label prior, and every claim about them is "not testable"
    sensitivity  "not testable" (constant answer) | "present" (the mean PSS's interval excludes 0) |
                 "absent" (every object gives one answer under every order: the interval is [0, 0]) |
                 "undecided" (the interval includes 0 but not only 0)
    above_prior  the majority-answer accuracy's paired interval over the prior-only bound excludes zero
    """
    testable = baselines["readout"] != "constant"
    ci = intervals["mean_pss"]
    if not testable:
        sens = "not testable"
    elif ci["ci_low"] > 0:
        sens = "present"
    elif ci["ci_high"] == 0:
        sens = "absent"
    else:
        sens = "undecided"
    return {"testable": testable, "sensitivity": sens, "above_prior": baselines["readout"] == "object",
            "readout": baselines["readout"], "k_values": sorted(int(k) for k in k_counts)}
