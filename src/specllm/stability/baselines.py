"""Classification null baselines, intervals, and whether the answers can be read as classification at all.

Accuracy everywhere is the per-object majority answer's (object-level, as in analysis.per_object_table).

  majority class     the most frequent class of the alignment objects, scored on the evaluation objects
                     (held out); in sample, the largest class share of the scored objects
  prior-only         predicts from the feature order alone: per order, the most frequent catalogue class of the
                     alignment objects' prompts in that order (held out, scored on the evaluation objects).
                     In sample it is bounded by the largest class share: an object's majority over orders of
                     an order-only prediction is the same label for every object, so it is right exactly for
                     that label's objects. This bound (`prior_bound`) is what the model is compared with.
  model's prior      per order, the model's own most frequent answer on the alignment objects, scored on the
                     evaluation objects: what the model's order prior alone would score
  constant answer    one label holds at least CONSTANT_SHARE of the valid prompt answers: the model reads a
                     label prior, not the object, and order sensitivity, K and the quality checks cannot be
                     tested on it (reported as not testable, never as findings)

Intervals are 95% percentile bootstrap intervals over objects (n_boot draws, seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from specllm.stability.features import CLASSES

CONSTANT_SHARE = 0.95  # one label for >= 95% of the prompts: the answer is (nearly) constant


def bootstrap_mean(values: Sequence[float], n_boot: int, seed: int) -> dict[str, float]:
    """Mean with its 95% percentile bootstrap interval (resampling the values, i.e. objects)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0, "mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    boots = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    return {"n": int(len(v)), "mean": float(v.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5))}


def most_frequent(labels: Sequence[str]) -> str:
    """The most frequent label (ties: the one listed first in CLASSES); '' for none."""
    counts = pd.Series(list(labels)).value_counts()
    if not len(counts):
        return ""
    top = counts.max()
    return next(c for c in (*CLASSES, *sorted(counts.index)) if counts.get(c, 0) == top)


def order_only_fit(rows: pd.DataFrame, target: str) -> dict[int, str]:
    """Per order index, the most frequent value of column `target` (a label name) over the given prompts."""
    return {int(o): most_frequent(sub[target].astype(str).tolist()) for o, sub in rows.groupby("order")}


def order_only_accuracy(fit: dict[int, str], rows: pd.DataFrame) -> tuple[float, list[int]]:
    """Object-level accuracy of an order-only classifier: each object's majority over its orders' predictions
    against its class. Returns (accuracy, per-object correct in obj_id order of appearance)."""
    correct = []
    for _, sub in rows.groupby("obj_id", sort=False):
        pred = most_frequent([fit.get(int(o), "") for o in sub["order"]])
        correct.append(int(pred == str(sub["class"].iloc[0])))
    return (float(np.mean(correct)) if correct else float("nan")), correct


def answer_profile(rows: pd.DataFrame) -> dict[str, Any]:
    """Share of valid prompt answers per label, the top label and whether the answer is (nearly) constant."""
    labels = rows["answer_label"].fillna("").astype(str)
    valid = labels[labels != ""]
    shares = {c: float((valid == c).mean()) if len(valid) else 0.0 for c in CLASSES}
    top = max(CLASSES, key=lambda c: shares[c])
    return {"shares": shares, "top_label": top, "top_share": shares[top], "n_valid": int(len(valid)),
            "constant": bool(len(valid) and shares[top] >= CONSTANT_SHARE)}


def classification_baselines(per_object: pd.DataFrame, rows: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """The model's majority-answer accuracy beside the null baselines, with intervals, and the read-out status.

    per_object: analysis.per_object_table (obj_id, class, split, correct, n_valid); rows: the probe rows
    (obj_id, class, split, order, answer_label). readout is 'constant' (one label for >= CONSTANT_SHARE of the
    prompts), 'object' (the accuracy's paired interval over the prior-only bound excludes zero) or 'prior'."""
    t = per_object.reset_index(drop=True)
    correct = t["correct"].to_numpy(float)
    cls = t["class"].astype(str).to_numpy()
    shares = {c: float((cls == c).mean()) for c in CLASSES}
    bound = max(shares.values()) if len(t) else float("nan")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot if len(t) else 0):
        idx = rng.integers(0, len(t), len(t))
        c = cls[idx]
        diffs.append(correct[idx].mean() - max((c == k).mean() for k in CLASSES))
    diff = {"mean": float(correct.mean() - bound) if len(t) else float("nan"),
            "ci_low": float(np.percentile(diffs, 2.5)) if diffs else float("nan"),
            "ci_high": float(np.percentile(diffs, 97.5)) if diffs else float("nan")}
    align, ev = rows[rows["split"] == "alignment"], rows[rows["split"] == "evaluation"]
    ev_obj = t[t["split"] == "evaluation"]
    out: dict[str, Any] = {
        "n_objects": int(len(t)), "class_shares": shares,
        "model": bootstrap_mean(correct, n_boot, seed),
        "model_evaluation": bootstrap_mean(ev_obj["correct"].to_numpy(float), n_boot, seed),
        "majority_class_in_sample": bound,
        "prior_bound": bound,
        "model_minus_prior_bound": diff,
        "answers": answer_profile(rows),
    }
    if len(align) and len(ev):
        maj = most_frequent(align.drop_duplicates("obj_id")["class"].astype(str).tolist())
        ev_cls = ev.drop_duplicates("obj_id")["class"].astype(str)
        out["majority_class_held_out"] = {"label": maj, "accuracy": float((ev_cls == maj).mean())}
        acc, _ = order_only_accuracy(order_only_fit(align, "class"), ev)
        out["prior_only_held_out"] = {"accuracy": acc, "fit": "most frequent class per order, alignment objects"}
        acc, _ = order_only_accuracy(order_only_fit(align[align["answer_label"].astype(str) != ""], "answer_label"), ev)
        out["model_prior_held_out"] = {"accuracy": acc, "fit": "the model's most frequent answer per order, alignment objects"}
    out["readout"] = ("constant" if out["answers"]["constant"] else
                      "object" if diff["ci_low"] > 0 else "prior")
    return out
