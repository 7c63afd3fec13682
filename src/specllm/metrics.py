"""Redshift accuracy as astronomers report it; used by the baseline and the LLM evaluation alike.

dz = (z_pred - z_true) / (1 + z_true) is the usual scaled error (photo-z literature, e.g.
Ilbert et al. 2006): NMAD = 1.4826 * median(|dz - median(dz)|) is a robust scatter, and an
outlier is |dz| > 0.15.
"""

from __future__ import annotations

import numpy as np

OUTLIER_DZ = 0.15


def redshift_metrics(z_true, z_pred) -> dict[str, float]:
    z_true = np.asarray(z_true, dtype=float)
    z_pred = np.asarray(z_pred, dtype=float)
    if z_true.shape != z_pred.shape or z_true.size == 0:
        raise ValueError(f"need equal, non-empty arrays, got {z_true.shape} and {z_pred.shape}")
    dz = (z_pred - z_true) / (1.0 + z_true)
    return {
        "mae": float(np.mean(np.abs(z_pred - z_true))),
        "nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
        "outlier_frac": float(np.mean(np.abs(dz) > OUTLIER_DZ)),
        "bias": float(np.median(dz)),
        "n": int(z_true.size),
    }
