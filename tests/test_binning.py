"""specllm.data.binning is the one equal-frequency binning: the DR16 sample, the prepare split and the
per-bin metrics used three spellings of it; they agree on every value, so nothing they wrote changes."""

from __future__ import annotations

import numpy as np
import pytest

from specllm.data.binning import assign_bins, equal_frequency_bins, equal_frequency_edges


def _prepare_before(z, n_bins):  # stages/prepare.py before issue 15: interior edges at or below z
    edges = np.quantile(z, np.linspace(0.0, 1.0, n_bins + 1))
    return edges, np.searchsorted(edges[1:-1], z, side="right")


@pytest.mark.parametrize("seed, n, k", [(0, 1000, 10), (1, 37, 5), (2, 12, 4), (3, 200, 1)])
def test_one_convention_for_every_caller(seed, n, k):
    rng = np.random.default_rng(seed)
    z = np.round(rng.gamma(2.0, 0.1, n), 2)  # rounded: ties, and repeated edges
    z[:3] = z.min(), z.max(), np.median(z)
    edges, bins = equal_frequency_bins(z, k)
    old_edges, old_bins = _prepare_before(z, k)
    assert np.array_equal(edges, old_edges) and np.array_equal(bins, old_bins)
    assert np.array_equal(bins, assign_bins(z, equal_frequency_edges(z, k)))  # data/dr16.py's spelling
    assert bins.min() >= 0 and bins.max() <= k - 1 and bins[1] == k - 1  # the top edge is in the last bin
    outside = assign_bins(np.array([z.min() - 1, z.max() + 1]), edges)
    assert outside.tolist() == [0, k - 1]
