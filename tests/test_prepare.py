"""Stage `prepare`: equal-frequency split, flux-conserving resampling, rescaling, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from specllm.data import prepare as stage
from specllm.errors import InputError


@pytest.fixture
def p(params) -> dict:
    return {**params, "data.n_train": 60, "data.n_val": 20, "data.n_test": 30, "data.z_bins": 5,
            "spectrum.n_points": 24}


def test_splits_are_disjoint_and_draw_equally_from_every_bin(source, tmp_path, p):
    summary = stage.prepare(source, tmp_path / "out", p)
    metas = {s: pd.read_csv(tmp_path / "out" / f"{s}_meta.csv") for s in stage.SPLITS}
    ids = [set(m["gal_id"]) for m in metas.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for split, meta in metas.items():
        counts = np.bincount(meta["z_bin"], minlength=5)
        assert counts.max() - counts.min() <= 1, (split, counts)
        assert len(meta) == p[f"data.n_{split}"] == summary[f"n_{split}"]
    edges = np.array(summary["bin_edges"])
    assert np.all(np.diff(edges) > 0) and len(edges) == 6


def test_test_set_does_not_move_when_training_set_grows(source, tmp_path, p):
    stage.prepare(source, tmp_path / "a", p)
    stage.prepare(source, tmp_path / "b", {**p, "data.n_train": 90})
    a, b = (pd.read_csv(tmp_path / d / "test_meta.csv") for d in ("a", "b"))
    assert a["gal_id"].tolist() == b["gal_id"].tolist()


def test_resampling_conserves_flux():
    loglam = np.arange(3.58, 3.964, 1e-4)
    native = 10**loglam
    flux = np.exp(-0.5 * ((native - 6563) / 30) ** 2)[None, :] + 1.0  # a narrow line on a continuum
    wave = stage.linear_grid(4000.0, 9000.0, 50)
    out = stage.resample(loglam, flux, np.ones_like(flux), wave)
    native_widths = np.gradient(native)
    inside = (native > 4000) & (native < 9000)
    assert np.isclose((out[0] * 100.0).sum(), (flux[0] * native_widths)[inside].sum(), rtol=2e-3)


def test_masked_pixels_do_not_leak_into_the_resampled_flux():
    loglam = np.arange(3.58, 3.964, 1e-4)
    flux = np.ones((1, loglam.size))
    ivar = np.ones_like(flux)
    flux[0, 1000:1010], ivar[0, 1000:1010] = 1e6, 0.0  # a cosmic ray, masked
    out = stage.resample(loglam, flux, ivar, stage.linear_grid(4000.0, 9000.0, 20))
    assert np.allclose(out, 1.0)


def test_rescaling_puts_the_quantile_at_the_target():
    flux = np.array([np.linspace(1, 100, 101), np.linspace(-3, 3, 101)])
    scaled, scale = stage.rescale(flux, 0.95, 5.0)
    assert np.allclose(np.quantile(np.abs(scaled), 0.95, axis=1), 5.0)
    assert np.allclose(scaled * scale[:, None], flux)


def test_nan_flux_is_named_and_earlier_output_survives(source, tmp_path, p):
    out = tmp_path / "out"
    stage.prepare(source, out, p)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    flux = np.load(source / "spectra_flux.npy")
    flux[:, 10] = np.nan
    np.save(source / "spectra_flux.npy", flux)
    with pytest.raises(InputError) as err:
        stage.prepare(source, out, p)
    assert "spectra_flux.npy" in err.value.file and "NaN" in err.value.problem and "gal_id" in err.value.field
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_renamed_column_is_named(source, tmp_path, p):
    meta = pd.read_csv(source / "galaxies.csv").rename(columns={"z": "redshift"})
    meta.to_csv(source / "galaxies.csv", index=False)
    with pytest.raises(InputError) as err:
        stage.prepare(source, tmp_path / "out", p)
    assert err.value.field == "z" and "galaxies.csv" in err.value.file


def test_corrupt_array_and_missing_file_are_named(source, tmp_path, p):
    (source / "spectra_ivar.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="readable NumPy"):
        stage.prepare(source, tmp_path / "out", p)
    (source / "loglam.npy").unlink()
    with pytest.raises(InputError, match="loglam.npy: -: file not found"):
        stage.prepare(source, tmp_path / "out", p)


def test_too_many_spectra_or_empty_split_fail_before_writing(source, tmp_path, p):
    with pytest.raises(InputError) as err:
        stage.prepare(source, tmp_path / "out", {**p, "data.n_train": 500})
    assert err.value.field.startswith("data.n_") and "lower data.n_train" in err.value.fix
    with pytest.raises(InputError, match="the split is empty"):
        stage.split_by_bins(np.zeros(50, int), {"train": 10, "val": 0, "test": 5}, 1, 0)
    assert not (tmp_path / "out").exists()


def test_summary_is_json_serialisable(source, tmp_path, p):
    json.dumps(stage.prepare(source, tmp_path / "out", p))
