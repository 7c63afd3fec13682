"""Language retention: accuracy of the adapted model over that of the base model, on the same items.

Both models answer every item of a probe set (option log-likelihood, see `loglik`). Retention is
``acc(adapted) / acc(base)``; its 95% confidence interval is a seeded paired bootstrap: the items
are resampled with replacement, the same draw for both models, and the ratio is recomputed per
draw; the interval is the 2.5th and 97.5th percentile. Draws where the base accuracy is 0 have
no ratio; they are counted (``n_undefined``) and left out of the percentiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CHUNK = 256  # bootstrap draws per block (keeps the index matrix small for large benchmarks)


def paired_bootstrap_ratio(adapted: Sequence[float], base: Sequence[float], *, n_boot: int, seed: int,
                           level: float = 0.95) -> dict[str, Any]:
    """Point estimate mean(adapted) / mean(base) and its paired-bootstrap percentile interval."""
    a, b = np.asarray(adapted, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal, non-empty 1-D arrays, got {a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    point = float(a.mean() / b.mean()) if b.mean() > 0 else None
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        idx = rng.integers(0, a.size, size=(k, a.size))
        num, den = a[idx].mean(axis=1), b[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:start + k] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    valid = ratios[np.isfinite(ratios)]
    tail = (1.0 - level) / 2.0
    lo, hi = (float(np.quantile(valid, tail)), float(np.quantile(valid, 1.0 - tail))) if valid.size else (None, None)
    return {"ratio": point, "ci_low": lo, "ci_high": hi, "level": level, "n_boot": int(n_boot), "seed": int(seed),
            "n_undefined": int(n_boot - valid.size)}


def per_topic(items: Sequence[dict[str, Any]], correct: np.ndarray) -> dict[str, dict[str, float]]:
    topics: dict[str, list[float]] = {}
    for item, c in zip(items, correct):
        topics.setdefault(item["topic"], []).append(float(c))
    return {t: {"n": len(v), "acc": float(np.mean(v))} for t, v in sorted(topics.items())}


def summarize_set(items: Sequence[dict[str, Any]], base: dict[str, np.ndarray], adapted: dict[str, np.ndarray], *,
                  n_boot: int, seed: int) -> dict[str, Any]:
    """Accuracies of both models and the retention ratios (acc and acc_norm) with their CIs."""
    out: dict[str, Any] = {"n_items": len(items)}
    for name, scores in (("base", base), ("adapted", adapted)):
        out[name] = {"acc": float(scores["correct"].mean()), "acc_norm": float(scores["correct_norm"].mean()),
                     "per_topic": per_topic(items, scores["correct"])}
    out["retention"] = {
        "acc": paired_bootstrap_ratio(adapted["correct"], base["correct"], n_boot=n_boot, seed=seed),
        "acc_norm": paired_bootstrap_ratio(adapted["correct_norm"], base["correct_norm"], n_boot=n_boot, seed=seed),
    }
    out["changed_answers"] = int(np.sum(base["pred"] != adapted["pred"]))
    return out
