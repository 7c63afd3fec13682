"""Language retention: accuracy of the adapted model over that of the base model, on the same items.

Both models answer every item of a probe set (option log-likelihood, see `loglik`). Retention is
``acc(adapted) / acc(base)``; its 95% confidence interval is a seeded paired bootstrap: the items
are resampled with replacement, the same draw for both models, and the ratio is recomputed per
draw; the interval is the 2.5th and 97.5th percentile. Draws where the base accuracy is 0 have
no ratio; they are counted (``n_undefined``) and left out of the percentiles.

A ratio of raw accuracies flatters a model near chance (a model that guesses keeps 100% of a
guessing base model), so retention above chance is reported beside it:
``(acc(adapted) - chance) / (acc(base) - chance)``, with chance = mean over items of
1 / (number of options), and its interval from the same paired draws (``acc_above_chance``).
Draws where the base model is not above chance have no value (``n_undefined``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CHUNK = 256  # bootstrap draws per block (keeps the index matrix small for large benchmarks)


def paired_bootstrap_ratio(adapted: Sequence[float], base: Sequence[float], *, n_boot: int, seed: int,
                           level: float = 0.95, chance: Sequence[float] | None = None) -> dict[str, Any]:
    """Point estimate mean(adapted) / mean(base) and its paired-bootstrap percentile interval; with
    `chance` (per item, e.g. 1 / options), (mean(adapted) - mean(chance)) / (mean(base) - mean(chance))."""
    a, b = np.asarray(adapted, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal, non-empty 1-D arrays, got {a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    c = np.zeros_like(a) if chance is None else np.asarray(chance, dtype=np.float64)
    if c.shape != a.shape:
        raise ValueError(f"chance has shape {c.shape}, the scores {a.shape}")
    point = float((a.mean() - c.mean()) / (b.mean() - c.mean())) if b.mean() > c.mean() else None
    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        idx = rng.integers(0, a.size, size=(k, a.size))
        chance_k = c[idx].mean(axis=1)
        num, den = a[idx].mean(axis=1) - chance_k, b[idx].mean(axis=1) - chance_k
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
    chance = np.array([1.0 / len(item["choices"]) for item in items])
    out["chance"] = float(chance.mean())
    out["retention"] = {
        "acc": paired_bootstrap_ratio(adapted["correct"], base["correct"], n_boot=n_boot, seed=seed),
        "acc_above_chance": paired_bootstrap_ratio(adapted["correct"], base["correct"], n_boot=n_boot, seed=seed,
                                                   chance=chance),
        "acc_norm": paired_bootstrap_ratio(adapted["correct_norm"], base["correct_norm"], n_boot=n_boot, seed=seed),
    }
    out["changed_answers"] = int(np.sum(base["pred"] != adapted["pred"]))
    return out
