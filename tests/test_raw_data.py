"""The embedded source data/raw: contract, determinism, physics sanity and bad-input handling.

One module-scoped build of the first LIMIT galaxies (a few seconds) serves most tests; nothing here
needs the full 10^4-galaxy build, which `make data` does.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specllm import config
from specllm.data import catalogue, galaxies, quasars, real_spectra, stars
from specllm.data import raw as rawlib
from specllm.errors import InputError
from specllm.runner import run_main
from specllm.stages import build_raw

LIMIT = 300
PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
GALAXY_COLUMNS = (["gal_id", "ra", "dec", "z"] + [f"flux_{b}" for b in "ugriz"] + [f"ivar_{b}" for b in "ugriz"]
                  + [f"extinction_{b}" for b in "ugriz"] + [f"mag_{b}" for b in "ugriz"] + ["i_dered"])
FILES = ("galaxies.csv", "loglam.npy", "spectra_flux.npy", "spectra_ivar.npy", "catalogue.csv", "manifest.json")


def _sha(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def params():
    return config.load(PARAMS_FILE)


@pytest.fixture(scope="module")
def built(tmp_path_factory, params):
    out = tmp_path_factory.mktemp("raw") / "raw"
    manifest = rawlib.build(out, params, limit=LIMIT, progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def gal(built):
    return pd.read_csv(built[0] / "galaxies.csv")


@pytest.fixture(scope="module")
def cat(built):
    return pd.read_csv(built[0] / "catalogue.csv")


@pytest.fixture(scope="module")
def truncated_fits(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "gst_truncated.fits"
    path.write_bytes(galaxies.GST_FILE.read_bytes()[:50_000])
    return path


# ---------------------------------------------------------------- contract


def test_output_files_and_columns(built, gal, cat):
    out, _ = built
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert list(gal.columns) == GALAXY_COLUMNS
    assert list(cat.columns) == list(catalogue.COLUMNS)
    flux, ivar, loglam = (np.load(out / f) for f in ("spectra_flux.npy", "spectra_ivar.npy", "loglam.npy"))
    assert flux.dtype == np.float32 and ivar.dtype == np.float32 and loglam.dtype == np.float64
    assert flux.shape == ivar.shape == (len(gal), loglam.size) and len(gal) == LIMIT
    assert np.isfinite(flux).all() and (ivar > 0).all() and np.isfinite(ivar).all()


def test_loglam_is_the_sdss_coadd_grid(built, params):
    loglam = np.load(built[0] / "loglam.npy")
    step = params["raw.loglam_step"]
    expected = np.arange(params["raw.loglam_min"], params["raw.loglam_max"] + step / 2, step)
    assert loglam.size == expected.size == 3841
    np.testing.assert_allclose(loglam, expected, rtol=0, atol=1e-12)


def test_galaxy_rows_are_the_real_kcorrect_rows(gal):
    raw = galaxies.read_gst()
    ids = gal["gal_id"].to_numpy()
    np.testing.assert_allclose(gal["ra"], raw["ra"][ids], atol=1e-8)
    np.testing.assert_array_equal(gal["z"].to_numpy(np.float32), raw["z"][ids].astype(np.float32))
    np.testing.assert_array_equal(gal["flux_r"].to_numpy(np.float32), raw["modelflux"][ids, 2].astype(np.float32))
    expected = 22.5 - 2.5 * np.log10(raw["modelflux"][ids, 3]) - raw["extinction"][ids, 3]
    np.testing.assert_allclose(gal["i_dered"], expected, atol=2e-6)
    assert (gal["i_dered"] < 18.0).all() and ((gal["z"] > 0) & (gal["z"] < 0.5)).all()


# ---------------------------------------------------------------- the cut and its counts


def test_cut_count_on_full_file_equals_manifest(built, params):
    sel = galaxies.select(galaxies.read_gst(), params["raw.z_min"], params["raw.z_max"], params["raw.i_max"])
    counts = built[1]["counts"]
    assert int(sel.keep.sum()) == counts["galaxies_kept"] == 9980  # the number the paper states
    assert counts["galaxies_read"] == 10000 and counts["galaxies_written"] == LIMIT


def test_unusable_gri_are_dropped_and_counted():
    raw = {k: v[:50] for k, v in galaxies.read_gst().items()}
    base = galaxies.select(raw, 0.0, 0.5, 18.0)
    rows = np.flatnonzero(base.keep)[:3]
    cat = {k: v.copy() for k, v in raw.items()}
    cat["modelflux"][rows[0], 1] = np.nan    # non-finite g
    cat["modelflux_ivar"][rows[1], 2] = 0.0  # no weight in r
    cat["modelflux"][rows[2], 3] = np.inf    # non-finite i
    sel = galaxies.select(cat, 0.0, 0.5, 18.0)
    assert sel.counts["dropped_unusable_gri"] == 3 and base.counts["dropped_unusable_gri"] == 0
    assert not sel.keep[rows].any()
    assert sel.counts["galaxies_kept"] == base.counts["galaxies_kept"] - 3


# ---------------------------------------------------------------- spectra


def test_photometry_round_trip(gal):
    """Synthetic g, r, i of the noise-free reconstruction reproduce the input (AB-corrected) fluxes:
    median |rel. error| < 1% and 95th percentile < 3% (template-fit residuals); against kcorrect's own
    reconstruct() of the same coefficients < 0.3% (our redshifting, grid and integration)."""
    raw = galaxies.read_gst()
    ids = gal["gal_id"].to_numpy()
    m, iv = galaxies.dereddened_maggies(raw["modelflux"][ids], raw["modelflux_ivar"][ids], raw["extinction"][ids])
    z = raw["z"][ids]
    coeffs = galaxies.fit_coeffs(z, m, iv)
    wave = 10.0 ** galaxies.loglam_grid(3.58, 3.964, 1e-4)
    synth, covered = galaxies.synthetic_maggies(wave, galaxies.reconstruct(coeffs, z, wave))
    gri = list(galaxies.GRI)
    rel = np.abs(synth / galaxies.ab_maggies(m) - 1.0)[:, gri]
    assert (np.median(rel, axis=0) < 0.01).all(), np.median(rel, axis=0)
    assert (np.percentile(rel, 95, axis=0) < 0.03).all(), np.percentile(rel, 95, axis=0)
    kc = galaxies.fitter(0.5)
    ref = kc.reconstruct(redshift=z.astype(np.float32), coeffs=coeffs.astype(np.float32))
    assert np.max(np.abs(synth / ref - 1.0)[:, gri]) < 0.003
    assert covered[0] < 0.2 and covered[4] < 0.8 and (covered[gri] > 0.998).all()


def test_band_weights_match_kcorrect_project():
    import kcorrect.response

    tw, tf = galaxies.templates()
    keep = (tw > 3000) & (tw < 11000)
    wave, flux = tw[keep], tf[0, keep]
    rd = kcorrect.response.ResponseDict()
    for _j, name in enumerate(galaxies.RESPONSES):
        rd.load_response(name)
        ours, _ = galaxies.synthetic_maggies(wave, flux[None, :] / galaxies.FLUX_UNIT, names=(name,))
        assert ours[0, 0] == pytest.approx(float(rd[name].project(wave=wave, flux=flux)), rel=2e-3)


def test_noise_level_and_model(built, params):
    checks = built[1]["checks"]
    assert abs(checks["median_r_band_pixel_snr"] - params["raw.snr_r"]) < 0.2 * params["raw.snr_r"]
    flux, ivar = (np.load(built[0] / f) for f in ("spectra_flux.npy", "spectra_ivar.npy"))
    wave = 10.0 ** np.load(built[0] / "loglam.npy")
    sigma = 1.0 / np.sqrt(ivar)
    blue, mid = wave < 3900, (wave > 6000) & (wave < 6500)
    sky_line = np.argmin(np.abs(wave - 5577.3))
    # a blue throughput drop and a sky line make sigma larger there than in the clean red continuum
    assert np.median(sigma[:, blue]) > 1.5 * np.median(sigma[:, mid])
    assert np.median(sigma[:, sky_line]) > 1.5 * np.median(sigma[:, sky_line - 20])


# ---------------------------------------------------------------- determinism


def test_byte_identical_rebuild(built, params, tmp_path):
    again = tmp_path / "raw"
    rawlib.build(again, params, limit=LIMIT, progress=False)
    assert _sha(again) == _sha(built[0])


def test_limited_build_is_a_prefix(built, params, tmp_path):
    small = tmp_path / "raw"
    rawlib.build(small, params, limit=40, progress=False)
    np.testing.assert_array_equal(np.load(small / "spectra_flux.npy"), np.load(built[0] / "spectra_flux.npy")[:40])
    big_lines = (built[0] / "galaxies.csv").read_text().splitlines()
    assert (small / "galaxies.csv").read_text().splitlines() == big_lines[:41]
    small_cat, big_cat = pd.read_csv(small / "catalogue.csv"), pd.read_csv(built[0] / "catalogue.csv")
    for cls in ("STAR", "QSO"):
        a, b = small_cat[small_cat["class"] == cls], big_cat[big_cat["class"] == cls]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.head(len(a)).reset_index(drop=True))


# ---------------------------------------------------------------- catalogue


def test_catalogue_class_counts(built, cat):
    counts = cat["class"].value_counts().to_dict()
    m = built[1]["counts"]
    assert counts == {"GALAXY": m["catalogue_galaxies"], "STAR": min(LIMIT, 2500), "QSO": min(LIMIT, 2000)}
    assert m["catalogue_galaxies"] + m["catalogue_galaxies_left_out_nonpositive_flux"] == LIMIT
    assert set(cat.loc[cat["class"] == "GALAXY", "simulated"]) == {0}
    assert set(cat.loc[cat["class"] != "GALAXY", "simulated"]) == {1}
    assert cat["obj_id"].is_unique
    st = cat[cat["class"] == "STAR"]
    assert (st["redshift"].abs() < 500 / 299792.458).all() and (st["redshift"] < 0).any()
    assert st["r"].between(13.5, 21.8).all()


def test_galaxy_colours_equal_input_flux_colours(gal, cat):
    g = cat[cat["class"] == "GALAXY"].set_index("obj_id")
    rows = gal.set_index(gal["gal_id"].map(lambda k: f"G{k:05d}")).loc[g.index]
    for a, b in ("ug", "gr", "ri", "iz"):
        expected = -2.5 * np.log10(rows[f"flux_{a}"] / rows[f"flux_{b}"])
        np.testing.assert_allclose((g[a] - g[b]).to_numpy(), expected.to_numpy(), atol=2e-5)
    np.testing.assert_allclose(g["redshift"].to_numpy(), rows["z"].to_numpy(), rtol=1e-7)


def _locus_curve() -> np.ndarray:
    """(u-g, g-r, ...) along the whole simulated sequence, A stars to late M dwarfs."""
    a = stars.a_star_locus(np.linspace(stars.vega_colours()[4], 0.3, 50), -1.3)
    d = stars.dwarf_locus(np.linspace(0.3, 1.6, 200), -0.5)
    m = stars.m_dwarf_locus(np.linspace(1.6, 3.4, 100), -0.3)
    return np.concatenate([a, d, m])


def _distance_to_locus(ug: np.ndarray, gr: np.ndarray) -> np.ndarray:
    curve = _locus_curve()
    return np.min(np.hypot(gr[:, None] - curve[None, :, 1], ug[:, None] - curve[None, :, 0]), axis=1)


def test_stars_lie_on_the_stellar_locus_and_quasars_off_it(params):
    pool = galaxies.read_gst()["extinction"]
    st = catalogue.observe(stars.simulate(2000, np.random.default_rng(1))["mags"], pool, np.random.default_rng(2))
    d = _distance_to_locus(st[:, 0] - st[:, 1], st[:, 1] - st[:, 2])
    assert np.mean(d < 0.25) > 0.9
    qso = quasars.simulate(600, np.random.default_rng(3))
    low = qso["redshift"] < 2.2
    qm = catalogue.observe(qso["mags"], pool, np.random.default_rng(4))[low]
    assert np.mean(qm[:, 0] - qm[:, 1] < 0.6) > 0.9  # UV excess of low-z quasars
    assert np.median(_distance_to_locus(qm[:, 0] - qm[:, 1], qm[:, 1] - qm[:, 2])) > 0.4


def test_dwarf_locus_matches_the_kurucz_sun():
    """Transcription check of the Yuan et al. coefficients against an independent physical model:
    the Kurucz solar spectrum shipped with kcorrect, through kcorrect's SDSS responses. Kurucz models
    are ~0.15 mag too blue in u-g (the empirical solar u-g is 1.43), hence the looser u-g tolerance."""
    import kcorrect.utils

    _, wave_nm, fnu = kcorrect.utils.read_basel(str(galaxies.kcorrect_file("basel", "lcbsun.ori")))
    wave = wave_nm.astype(float) * 10.0
    keep = (wave > 2500) & (wave < 12000)
    flam = fnu[0].astype(float) * 2.99792458e18 / wave**2
    m, _ = galaxies.synthetic_maggies(wave[keep], flam[keep][None, :] / galaxies.FLUX_UNIT)
    mag = -2.5 * np.log10(m[0])
    sun = mag[:-1] - mag[1:]
    locus = stars.dwarf_locus(mag[1] - mag[3], 0.0)
    assert abs(sun[0] - locus[0]) < 0.2
    np.testing.assert_allclose(sun[1:], locus[1:], atol=0.03)
    # the empirical solar colours (Holmberg, Flynn & Portinari 2006: u-g 1.43, g-r 0.44, r-i 0.11, i-z 0.03;
    # solar u-g estimates scatter by ~0.05, hence 0.1 there)
    diff = np.abs(stars.dwarf_locus(0.55, 0.0) - [1.43, 0.44, 0.11, 0.03])
    assert (diff < [0.1, 0.02, 0.02, 0.02]).all(), diff


def test_loci_are_self_consistent():
    """Yuan/Zhang's g-r and r-i fits are built to add up to g-i: a transcription typo breaks that."""
    gi, feh = np.meshgrid(np.linspace(0.3, 1.6, 14), np.linspace(-2.0, 0.0, 9))
    for locus in (stars.dwarf_locus, stars.giant_locus, stars.m_dwarf_locus):
        c = locus(gi, feh)
        np.testing.assert_allclose(c[..., 1] + c[..., 2], gi, atol=1e-9)


def test_quasar_redshifts_look_like_dr16q():
    z = quasars.draw_redshifts(20000, np.random.default_rng(5))
    assert 1.5 < np.median(z) < 2.2 and z.max() <= 5.2 and z.max() > 4.5
    assert 0.01 < np.mean(z < 0.5) < 0.08 and np.mean((z > 1.0) & (z < 3.0)) > 0.7


def test_igm_suppresses_blueward_of_lyman_alpha():
    lam = np.array([3000.0, 4000.0, 6000.0])
    t = quasars.madau_transmission(lam, np.array([3.0]))[0]  # Ly-alpha at 4863 A
    assert t[2] == 1.0 and t[1] < 0.8 and t[0] < t[1]


# ---------------------------------------------------------------- real spectra


def test_real_spectra_comparison_is_fast_and_consistent():
    expected_z = {"NGC3073": 0.00376266, "NGC3522": 0.00401801, "NGC4636": 0.00302509}
    t0 = time.perf_counter()
    for name, z in expected_z.items():
        d = real_spectra.compare_real_and_reconstructed(name)
        assert d["z"] == pytest.approx(z, rel=1e-5)
        assert d["wave"].shape == d["real_flux"].shape == d["reconstructed_flux"].shape
        assert np.isnan(d["synthetic_mag"]["u"]) and np.isnan(d["synthetic_mag"]["z"])  # not covered
        for b in "gri":
            assert abs(d["reconstructed_mag"][b] - d["synthetic_mag"][b]) < 0.01
        good = d["real_ivar"] > 0
        assert abs(np.median(d["reconstructed_flux"][good] / d["real_flux"][good]) - 1.0) < 0.1
    assert time.perf_counter() - t0 < 5.0


def test_unknown_real_spectrum_names_the_choices():
    with pytest.raises(InputError, match="NGC3073"):
        real_spectra.compare_real_and_reconstructed("M31")


# ---------------------------------------------------------------- bad input


def test_truncated_fits_names_file_and_fix(truncated_fits):
    with pytest.raises(InputError) as err:
        galaxies.read_gst(truncated_fits)
    assert err.value.file == str(truncated_fits) and err.value.field.startswith("HDU 1")
    assert str(truncated_fits) in str(err.value) and "truncated" in str(err.value) and "kcorrect==5.1.9" in str(err.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        galaxies.read_gst(tmp_path / "absent.fits")


def test_missing_column_names_file_and_field(tmp_path):
    from astropy.io import fits

    with fits.open(galaxies.GST_FILE) as hdul:
        cols = fits.ColDefs([c for c in hdul[1].columns if c.name != "EXTINCTION"])
        bad = tmp_path / "no_extinction.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(bad)
    with pytest.raises(InputError) as err:
        galaxies.read_gst(bad)
    assert err.value.file == str(bad) and "EXTINCTION" in err.value.field


def test_failed_build_leaves_existing_output_untouched(tmp_path, truncated_fits, monkeypatch, params):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "sentinel.txt").write_text("previous build")
    # 1) bad input: InputError before anything is written, exit status 2 from the entry point
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: build_raw.main(["--out", str(out), "--gst-file", str(truncated_fits), "--params", str(PARAMS_FILE)]))
    assert exit_.value.code == 2
    # 2) a failure half-way through writing: the partial folder is discarded, the old one stays
    def half_write(folder, *args):
        (folder / "galaxies.csv").write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(rawlib, "write_outputs", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        rawlib.build(out, params, limit=5, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["sentinel.txt"]
    assert (out / "sentinel.txt").read_text() == "previous build"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no hidden temporary folder left behind
