"""Preference-pair categories (as in Stable-RAG) and the pairs shown to DPO.

Per object of the alignment set, from its answers over all orders (tied readings left out):
  fully_correct      every valid answer is the catalogue label: no pair
  partially_correct  some right, some wrong: chosen = the label, rejected = the most common wrong answer
  fully_wrong        answerable but never right: chosen = the label, rejected = the dominant wrong answer
  unanswerable       no valid answer at all: excluded
A pair is shown under `per_object` of the object's orders: first the orders that gave the rejected
answer (where the order misled the model), then the others, each group in seeded random order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from specllm.stability.features import CLASSES

CATEGORIES = ("fully_correct", "partially_correct", "fully_wrong", "unanswerable")


def categorize(answers: Sequence[int], label: int) -> tuple[str, int | None]:
    """(category, rejected label index or None)."""
    a = np.asarray(answers, dtype=np.int64)
    valid = a[a >= 0]
    if len(valid) == 0:
        return "unanswerable", None
    wrong = valid[valid != label]
    if len(wrong) == 0:
        return "fully_correct", None
    counts = np.bincount(wrong, minlength=len(CLASSES))
    rejected = int(np.argmax(counts))
    return ("partially_correct" if len(wrong) < len(valid) else "fully_wrong"), rejected


def make_pairs(objects: Sequence[dict[str, Any]], per_object: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """objects: dicts with obj_id, label (index), answers (per order index). Returns (pairs, category counts).

    Each pair: obj_id, category, order (index), chosen, rejected (label names)."""
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(CATEGORIES, 0)
    pairs = []
    for obj in objects:
        cat, rejected = categorize(obj["answers"], obj["label"])
        counts[cat] += 1
        if rejected is None:
            continue
        answers = np.asarray(obj["answers"])
        misled = [int(i) for i in rng.permutation(np.flatnonzero(answers == rejected))]
        others = [int(i) for i in rng.permutation(np.flatnonzero(answers != rejected))]
        for order in (misled + others)[:per_object]:
            pairs.append({"obj_id": obj["obj_id"], "category": cat, "order": order,
                          "chosen": CLASSES[obj["label"]], "rejected": CLASSES[rejected]})
    return pairs, counts
