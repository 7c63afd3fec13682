"""Diagnostics of the probe: what the label logits depend on, how K depends on sigma, and the
representative (cluster-centre) answer of Stable-RAG.

variance_decomposition   two-way ANOVA (objects x orders, one prompt per cell) of each label's logit:
                         SS_total = SS_order + SS_object + SS_residual, with
                         SS_order = n_objects * sum_j (mean over objects at order j - grand mean)^2 and
                         SS_object = n_orders * sum_i (mean over orders of object i - grand mean)^2;
                         shares = SS / SS_total. `centred` does the same on the logits minus their mean over
                         the labels of the same prompt (what decides the answer; the common level drops out).
k_scan                   K (the eigengap choice of spectral.eigengap_k) of every object at each sigma.
representative           per object, the cluster with the most orders (ties: the lowest cluster label) is
                         dominant; its centre is the mean of its members' last-token states (the final
                         norm's outputs) and the representative answer is the label whose LM-head row scores
                         the centre highest. The head is linear without bias, so these scores equal the mean of
                         the members' label logits: computed from those (tests/test_stability_units.py checks
                         the identity on a model's real head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from specllm.stability import spectral
from specllm.stability.features import CLASSES


def logit_cube(rows: pd.DataFrame, obj_ids: Sequence[str]) -> np.ndarray:
    """Label logits as [objects (obj_ids order), orders, labels] from probe rows (logit_<label> columns)."""
    n_ord = int(rows["order"].max()) + 1
    cube = np.full((len(obj_ids), n_ord, len(CLASSES)), np.nan)
    pos = {o: i for i, o in enumerate(obj_ids)}
    for j, lab in enumerate(CLASSES):
        cube[rows["obj_id"].map(pos).to_numpy(int), rows["order"].to_numpy(int), j] = rows[f"logit_{lab}"].to_numpy(float)
    if np.isnan(cube).any():
        raise ValueError("probe rows do not cover every (object, order)")
    return cube


def anova_shares(x: np.ndarray) -> dict[str, float]:
    """Shares of the order, object and residual sums of squares of a complete [objects, orders] table."""
    grand = x.mean()
    total = float(((x - grand) ** 2).sum())
    ss_order = float(x.shape[0] * ((x.mean(axis=0) - grand) ** 2).sum())
    ss_object = float(x.shape[1] * ((x.mean(axis=1) - grand) ** 2).sum())
    if total <= 0:
        return {"order": float("nan"), "object": float("nan"), "residual": float("nan"), "ss_total": 0.0}
    return {"order": ss_order / total, "object": ss_object / total,
            "residual": max(0.0, 1.0 - (ss_order + ss_object) / total), "ss_total": total}


def _pooled(cube: np.ndarray) -> dict[str, float]:
    """Order/object/residual shares with the sums of squares added over the labels."""
    parts = [anova_shares(cube[:, :, j]) for j in range(cube.shape[2])]
    total = sum(p["ss_total"] for p in parts)
    if total <= 0:
        return {"order": float("nan"), "object": float("nan"), "residual": float("nan")}
    return {k: sum(p[k] * p["ss_total"] for p in parts) / total for k in ("order", "object", "residual")}


def variance_decomposition(cube: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Per label and pooled (raw and centred over labels), with bootstrap intervals (over objects) of the pooled shares."""
    centred = cube - cube.mean(axis=2, keepdims=True)
    out: dict[str, Any] = {"per_label": {lab: anova_shares(cube[:, :, j]) for j, lab in enumerate(CLASSES)},
                           "n_objects": int(cube.shape[0]), "n_orders": int(cube.shape[1])}
    rng = np.random.default_rng(seed)
    for name, c in (("raw", cube), ("centred", centred)):
        point = _pooled(c)
        boots = [_pooled(c[rng.integers(0, len(c), len(c))]) for _ in range(n_boot if len(c) > 1 else 0)]
        out[name] = {k: {"share": point[k],
                         "ci_low": float(np.nanpercentile([b[k] for b in boots], 2.5)) if boots else float("nan"),
                         "ci_high": float(np.nanpercentile([b[k] for b in boots], 97.5)) if boots else float("nan")}
                     for k in ("order", "object", "residual")}
    return out


def k_scan(hidden: np.ndarray, sigmas: Sequence[float], max_k: int) -> list[dict[str, Any]]:
    """For each sigma: K of every object ([objects, orders, H] states), the counts per K and summary shares."""
    out = []
    for sigma in sigmas:
        ks = []
        for states in hidden:
            lap = spectral.normalized_laplacian(spectral.affinity(states, float(sigma)))
            ks.append(spectral.eigengap_k(np.clip(np.linalg.eigvalsh((lap + lap.T) / 2.0), 0.0, None), max_k))
        ks = np.asarray(ks)
        out.append({"sigma": float(sigma), "k": ks.tolist(),
                    "k_counts": {str(int(k)): int((ks == k).sum()) for k in np.unique(ks)},
                    "share_k1": float((ks == 1).mean()), "share_k2": float((ks == 2).mean()),
                    "mean_k": float(ks.mean())})
    return out


def dominant_cluster(labels: Sequence[int]) -> int:
    """The cluster label with the most members (ties: the lowest label)."""
    lab = np.asarray(labels, dtype=np.int64)
    return int(np.argmax(np.bincount(lab)))


def representative(cube: np.ndarray, clusters: Mapping[str, Mapping[str, Any]], obj_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per object: the dominant cluster, its size, the centre's label scores and the representative answer
    (label index; -1 on a tie)."""
    out = []
    for i, oid in enumerate(obj_ids):
        labels = np.asarray(clusters[oid]["labels"])
        dom = dominant_cluster(labels)
        scores = cube[i, labels == dom].mean(axis=0)
        top = scores.max()
        answer = -1 if (scores == top).sum() > 1 else int(scores.argmax())
        out.append({"obj_id": oid, "cluster": dom, "size": int((labels == dom).sum()),
                    "scores": [float(s) for s in scores], "answer": answer})
    return out
