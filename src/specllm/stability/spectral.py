"""Spectral clustering of one object's hidden states over its orders (Ng, Jordan & Weiss 2001).

  affinity     A_ij = exp(-(1 - cos(h_i, h_j)) / sigma)   (A_ii = 1)
  Laplacian    L = I - D^-1/2 A D^-1/2,  D = diag(row sums of A)
  K            the largest eigengap among the smallest max_k + 1 eigenvalues: K = argmax_k (l_k - l_{k-1})
               for k = 1..max_k (eigenvalues ascending, l_0 = 0). K = 1 is allowed: identical or
               near-identical states give one eigenvalue 0 and the rest near 1, so the first gap wins
               (unlike Stable-RAG's code, K >= 2 is not forced).
  labels       k-means (seeded, 10 restarts) on the rows of the K smallest eigenvectors, each row
               normalised to unit length; K = 1 gives every order label 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def affinity(states: np.ndarray, sigma: float) -> np.ndarray:
    x = np.asarray(states, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    cos = np.clip(x @ x.T, -1.0, 1.0)
    return np.exp(-(1.0 - cos) / sigma)


def normalized_laplacian(a: np.ndarray) -> np.ndarray:
    d = a.sum(axis=1)
    inv = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    return np.eye(len(a)) - inv[:, None] * a * inv[None, :]


def eigengap_k(eigvals: np.ndarray, max_k: int) -> int:
    """K at the largest gap between consecutive ascending eigenvalues, K in 1..min(max_k, n - 1) (1 when n = 1)."""
    ev = np.sort(np.asarray(eigvals, dtype=np.float64))
    top = min(max_k, len(ev) - 1)
    if top < 1:
        return 1
    gaps = np.diff(ev[: top + 1])
    return int(np.argmax(gaps)) + 1


def cluster(states: np.ndarray, sigma: float = 0.1, max_k: int = 8, seed: int = 0) -> dict[str, Any]:
    """eigvals (all, ascending), k and labels (one per order) of one object's states [n_orders, hidden]."""
    from sklearn.cluster import KMeans

    a = affinity(states, sigma)
    lap = normalized_laplacian(a)
    eigvals, eigvecs = np.linalg.eigh((lap + lap.T) / 2.0)
    eigvals = np.clip(eigvals, 0.0, None)
    k = eigengap_k(eigvals, max_k)
    if k == 1:
        labels = np.zeros(len(states), dtype=np.int64)
    else:
        emb = eigvecs[:, :k]
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb).astype(np.int64)
    return {"eigvals": eigvals, "k": k, "labels": labels}
