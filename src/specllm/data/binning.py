"""Equal-frequency redshift bins: the one definition the DR16 sample, the prepare split and the per-bin
metrics use.

Edges are numpy quantiles of z at 0, 1/K, ..., 1; a bin is left-closed, [edge_k, edge_k+1), with the top
edge in the last bin and anything outside the edges clipped into the first or last bin. Equivalently, a
value's bin is the number of interior edges at or below it (how the prepare stage used to write it:
searchsorted(edges[1:-1], z, side="right")); tests/test_binning.py checks the two forms agree, ties and
repeated edges included, so data/raw, data/dr16 and data/prepared keep their bytes.
"""

from __future__ import annotations

import numpy as np


def equal_frequency_edges(z: np.ndarray, n_bins: int) -> np.ndarray:
    """K+1 bin edges at the 0, 1/K, ..., 1 quantiles of z."""
    return np.quantile(np.asarray(z, dtype=np.float64), np.linspace(0.0, 1.0, int(n_bins) + 1))


def assign_bins(z: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index 0..K-1 of every z (left-closed bins; the top edge belongs to the last bin)."""
    k = len(edges) - 1
    return np.clip(np.searchsorted(edges, np.asarray(z, dtype=np.float64), side="right") - 1, 0, k - 1)


def equal_frequency_bins(z: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges, each value's bin) for K equal-frequency bins over z."""
    edges = equal_frequency_edges(z, n_bins)
    return edges, assign_bins(z, edges)
