"""Stage `baseline` and the redshift metrics it shares with the LLM evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from specllm.errors import InputError
from specllm.metrics import redshift_metrics
from specllm.stages import baseline, prepare


def test_metrics_on_known_values():
    z = np.array([0.1, 0.2, 0.3, 0.4])
    m = redshift_metrics(z, z + np.array([0.0, 0.0, 0.0, 0.7]))
    assert m["mae"] == pytest.approx(0.175)
    assert m["outlier_frac"] == pytest.approx(0.25)  # 0.7 / 1.4 = 0.5 > 0.15
    assert m["nmad"] == pytest.approx(0.0)  # three perfect predictions dominate the median
    assert redshift_metrics(z, z)["mae"] == 0.0
    with pytest.raises(ValueError):
        redshift_metrics([], [])


def test_baselines_learn_redshift_from_flux(tmp_path, params):
    # Flux vectors whose shape encodes z: a baseline that learns anything beats predicting the mean.
    rng = np.random.default_rng(1)
    out = tmp_path / "prepared"
    out.mkdir()
    for split, n in (("train", 300), ("val", 60), ("test", 80)):
        z = rng.uniform(0, 0.5, n)
        x = np.sin(np.linspace(0, 3, 24)[None, :] * (1 + 4 * z[:, None])) + rng.normal(0, 0.05, (n, 24))
        np.save(out / f"{split}_flux.npy", x.astype(np.float32))
        import pandas as pd

        pd.DataFrame({"gal_id": np.arange(n), "z": z, "z_bin": 0, "scale": 1.0}).to_csv(out / f"{split}_meta.csv", index=False)
    summary, predictions = baseline.run_baselines(out, {**params, "baseline.n_estimators": 30})
    mean_mae = np.mean(np.abs(predictions["z_true"] - predictions["z_true"].mean()))
    for name in ("knn", "random_forest"):
        assert summary["methods"][name]["mae"] < 0.5 * mean_mae, name
    # the null row: learned methods beat it here, and it is never the "best" dedicated method
    assert summary["methods"]["constant"]["mae"] > 2 * summary["methods"]["knn"]["mae"]
    assert summary["best"] in ("knn", "random_forest") and summary["null"] == "constant"
    assert list(predictions.columns) == ["gal_id", "z_true", "knn", "random_forest", "constant"]


def test_constant_baseline_on_known_input(tmp_path, params):
    # training median 0.2; val z 0.1, 0.3 -> MAE 0.1; test z 0.2, 0.2, 0.6 -> MAE 0.4/3, one outlier
    # (|0.2 - 0.6| / 1.6 = 0.25 > 0.15), NMAD of dz = (0, 0, -0.25): 1.4826 * median(0, 0, 0.25) = 0
    out = tmp_path / "prepared"
    out.mkdir()
    import pandas as pd

    for split, z in (("train", [0.1, 0.2, 0.2, 0.4, 0.5]), ("val", [0.1, 0.3]), ("test", [0.2, 0.2, 0.6])):
        np.save(out / f"{split}_flux.npy", np.ones((len(z), 4), dtype=np.float32) * np.arange(len(z))[:, None])
        pd.DataFrame({"gal_id": np.arange(len(z)), "z": z, "z_bin": 0, "scale": 1.0}).to_csv(
            out / f"{split}_meta.csv", index=False)
    summary, predictions = baseline.run_baselines(out, {**params, "baseline.n_estimators": 3,
                                                        "baseline.n_neighbors": 2})
    c = summary["methods"]["constant"]
    assert c["value"] == pytest.approx(0.2)
    assert c["val_mae"] == pytest.approx(0.1)
    assert c["mae"] == pytest.approx(0.4 / 3) and c["outlier_frac"] == pytest.approx(1 / 3)
    assert c["nmad"] == pytest.approx(0.0) and c["n"] == 3
    assert predictions["constant"].tolist() == pytest.approx([0.2, 0.2, 0.2])


def test_missing_split_is_named(tmp_path, params):
    with pytest.raises(InputError, match="train_flux.npy: -: file not found"):
        baseline.run_baselines(tmp_path, params)


def test_runs_on_prepared_output(source, tmp_path, params):
    p = {**params, "data.n_train": 60, "data.n_val": 20, "data.n_test": 30, "data.z_bins": 5,
         "spectrum.n_points": 24, "baseline.n_estimators": 10}
    prepare.prepare(source, tmp_path / "prepared", p)
    summary, _ = baseline.run_baselines(tmp_path / "prepared", p)
    assert summary["n_train"] == 60 and summary["methods"]["knn"]["n"] == 30
