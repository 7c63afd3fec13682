"""Redshift predictions of a split and their metrics, overall and per redshift bin.

Unparseable generations are kept in the predictions (``parsed`` false, ``z_pred`` empty) and
counted in ``n_unparsed``; the metrics (specllm.metrics.redshift_metrics: MAE, NMAD, outlier
fraction, bias) are computed over the parsed predictions only, and ``failure_frac`` counts
outliers and unparsed outputs together over all galaxies. When nothing parses, the metrics are null.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm.data.binning import equal_frequency_bins
from specllm.evaluate.parse import parse_redshift
from specllm.metrics import OUTLIER_DZ, redshift_metrics
from specllm.serialize import read_serialized as read_split  # noqa: F401 - the evaluation stages' reader
from specllm.vocab import EVAL_SPLITS as SPLITS  # noqa: F401 - the splits the evaluation scores

PRED_COLUMNS = ["split", "gal_id", "z_true", "z_pred", "raw_output", "parsed"]
METRIC_KEYS = ("mae", "nmad", "outlier_frac", "bias")


def predictions_frame(split: str, records: Sequence[dict], outputs: Sequence[str]) -> pd.DataFrame:
    """One row per galaxy: split, gal_id, z_true, z_pred (NaN when unparsed), raw_output, parsed."""
    if len(records) != len(outputs):
        raise ValueError(f"{len(records)} records but {len(outputs)} outputs")
    values = [parse_redshift(o) for o in outputs]
    return pd.DataFrame({
        "split": split,
        "gal_id": [r["gal_id"] for r in records],
        "z_true": [float(r["z"]) for r in records],
        "z_pred": [np.nan if v is None else v for v in values],
        "raw_output": list(outputs),
        "parsed": [v is not None for v in values],
    }, columns=PRED_COLUMNS)


def metrics(df: pd.DataFrame) -> dict[str, Any]:
    """Counts and redshift metrics of one group of predictions (unparsed excluded from the metrics)."""
    n = int(len(df))
    ok = df[df["parsed"].astype(bool)]
    out: dict[str, Any] = {"n": n, "n_parsed": int(len(ok)), "n_unparsed": n - int(len(ok)),
                           "unparsed_frac": (n - len(ok)) / n if n else None}
    if len(ok):
        m = redshift_metrics(ok["z_true"].to_numpy(float), ok["z_pred"].to_numpy(float))
        out.update({k: m[k] for k in METRIC_KEYS})
        dz = (ok["z_pred"].to_numpy(float) - ok["z_true"].to_numpy(float)) / (1 + ok["z_true"].to_numpy(float))
        out["failure_frac"] = float((np.sum(np.abs(dz) > OUTLIER_DZ) + (n - len(ok))) / n)
    else:
        out.update({k: None for k in METRIC_KEYS})
        out["failure_frac"] = 1.0 if n else None
    return out


def assign_bins(df: pd.DataFrame, meta: pd.DataFrame | None, n_bins: int = 10) -> pd.Series:
    """z_bin of each prediction: from the prepare stage's meta (by gal_id) when given and complete,
    else equal-frequency bins of z_true recomputed over these predictions."""
    if meta is not None and {"gal_id", "z_bin"} <= set(meta.columns):
        bins = df["gal_id"].map(dict(zip(meta["gal_id"], meta["z_bin"])))
        if bins.notna().all():
            return bins.astype(int).rename("z_bin")
    z = df["z_true"].to_numpy(float)
    k = max(1, min(n_bins, len(np.unique(z))))
    return pd.Series(equal_frequency_bins(z, k)[1], index=df.index, name="z_bin")


def per_bin(df: pd.DataFrame, bins: pd.Series) -> list[dict[str, Any]]:
    """The metrics per redshift bin, with each bin's observed z range."""
    rows = []
    for b, group in df.groupby(bins.to_numpy(), sort=True):
        rows.append({"z_bin": int(b), "z_lo": float(group["z_true"].min()), "z_hi": float(group["z_true"].max()),
                     **metrics(group)})
    return rows


def summarize(df: pd.DataFrame, meta: pd.DataFrame | None = None) -> dict[str, Any]:
    """Overall metrics of one split plus the per-bin table."""
    return {**metrics(df), "per_bin": per_bin(df, assign_bins(df, meta))}


def read_meta(prepared: str | Path, split: str) -> pd.DataFrame | None:
    file = Path(prepared) / f"{split}_meta.csv"
    return pd.read_csv(file) if file.is_file() else None
