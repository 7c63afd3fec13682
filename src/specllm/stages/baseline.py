"""Stage `baseline`: the non-LLM "dedicated method" rows the LLM is compared with, and the null row.

scikit-learn regressors trained on exactly the rescaled flux vectors the LLM reads (train
split), scored on the validation and test splits with the same metrics as the LLM. The best one is
named on the validation split, never the test split.

The constant predictor (every galaxy gets the training split's median redshift) is the null
baseline: a model "reads redshift" only if it beats it (specllm.claims). It is a row of
results/baseline.json (key `constant`, with its `value`) and of every redshift table, but never
the "best" dedicated method (`best` is chosen among the learned regressors only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from specllm import config, paths
from specllm.errors import InputError
from specllm.io import write_json
from specllm.metrics import redshift_metrics
from specllm.runner import run_main

LABELS = {"knn": "k-nearest neighbours", "random_forest": "Random forest",
          "constant": "Constant (training median)"}
NULL = "constant"  # the null baseline's key in baseline.json


def load_split(folder: Path, split: str) -> tuple[np.ndarray, pd.DataFrame]:
    flux_file, meta_file = Path(folder) / f"{split}_flux.npy", Path(folder) / f"{split}_meta.csv"
    for file in (flux_file, meta_file):
        if not file.is_file():
            raise InputError(file, "-", "file not found", "run `dvc repro prepare` first")
    x, meta = np.load(flux_file), pd.read_csv(meta_file)
    if len(x) == 0:
        raise InputError(flux_file, split, "the split is empty", f"raise data.n_{split} in params.yaml")
    return x, meta


def regressors(p: dict) -> dict:
    depth = p["baseline.max_depth"] or None  # 0 means unlimited
    return {
        # Scaling first: k-NN distances should weigh every pixel alike.
        "knn": make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=p["baseline.n_neighbors"], weights="distance")),
        "random_forest": RandomForestRegressor(n_estimators=p["baseline.n_estimators"], max_depth=depth,
                                               random_state=p["seed"], n_jobs=1),
    }


def _scores(m_va: pd.DataFrame, m_te: pd.DataFrame, z_val, z_test) -> dict:
    """Test metrics at the top level (what the tables print) and the validation ones as val_*."""
    val = redshift_metrics(m_va["z"], z_val)
    return {**{f"val_{k}": val[k] for k in ("mae", "nmad", "outlier_frac")}, **redshift_metrics(m_te["z"], z_test)}


def run_baselines(folder: Path, p: dict) -> tuple[dict, pd.DataFrame]:
    (x_tr, m_tr), (x_va, m_va), (x_te, m_te) = (load_split(folder, s) for s in ("train", "val", "test"))
    methods, predictions = {}, pd.DataFrame({"gal_id": m_te["gal_id"], "z_true": m_te["z"]})
    for name, model in regressors(p).items():
        model.fit(x_tr, m_tr["z"].to_numpy())
        z_pred = model.predict(x_te)
        methods[name] = {"label": LABELS[name], **_scores(m_va, m_te, model.predict(x_va), z_pred)}
        predictions[name] = z_pred
    best = min(methods, key=lambda k: methods[k]["val_mae"])  # among the learned regressors only
    value = float(np.median(m_tr["z"].to_numpy(float)))
    methods[NULL] = {"label": LABELS[NULL], "value": value,
                     **_scores(m_va, m_te, np.full(len(m_va), value), np.full(len(m_te), value))}
    predictions[NULL] = value
    return {"methods": methods, "best": best, "null": NULL, "n_train": int(len(x_tr))}, predictions


def main() -> None:
    p = dict(config.stage_params("baseline"))
    summary, predictions = run_baselines(paths.PREPARED, p)
    write_json(paths.BASELINE, summary)
    predictions.to_csv(paths.BASELINE_PREDICTIONS, index=False, float_format="%.6f")
    for name, m in summary["methods"].items():
        print(f"baseline {name}: test MAE {m['mae']:.4f}, NMAD {m['nmad']:.4f}, outliers {m['outlier_frac']:.3f}")


if __name__ == "__main__":
    run_main(main)
