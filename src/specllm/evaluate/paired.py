"""Paired comparisons of two predictors on the same objects: the difference of their mean absolute
errors with a seeded percentile bootstrap interval (objects resampled with replacement, the same draw
for both), which is what every "X is better than Y" sentence of the paper is decided by.

An interval that excludes zero decides the comparison; one that includes zero says the two cannot be
told apart with these objects (see specllm.claims).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LEVEL = 0.95
CHUNK = 256  # bootstrap draws per block (keeps the index matrix small)


def paired_mean_diff(a: Sequence[float], b: Sequence[float], *, n_boot: int, seed: int,
                     level: float = LEVEL) -> dict[str, Any]:
    """mean(a - b) over paired values (e.g. absolute errors of two runs on the same galaxies) and its
    paired-bootstrap percentile interval. Pairs where either value is not finite are dropped first."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equal 1-D arrays, got {a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    out: dict[str, Any] = {"n": int(d.size), "level": level, "n_boot": int(n_boot), "seed": int(seed)}
    if d.size == 0:
        return {**out, "mean_diff": None, "ci_low": None, "ci_high": None}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        means[start:start + k] = d[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return {**out, "mean_diff": float(d.mean()), "ci_low": float(np.quantile(means, tail)),
            "ci_high": float(np.quantile(means, 1.0 - tail))}


def excludes_zero(diff: dict[str, Any] | None) -> bool:
    """True when the interval lies entirely on one side of zero."""
    if not diff or diff.get("ci_low") is None or diff.get("ci_high") is None:
        return False
    return diff["ci_high"] < 0 or diff["ci_low"] > 0
