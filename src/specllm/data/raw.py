"""Build the embedded source data/raw: the library behind `make data` (python -m specllm.stages.build_raw,
its main(), and specllm.data.check_bytes).

Reads the raw.* keys of params.yaml and kcorrect's real SDSS galaxy table; writes (the contract):

  galaxies.csv      gal_id, ra, dec, z, flux_u..flux_z (nanomaggies, as measured), ivar_u..ivar_z,
                    extinction_u..extinction_z (mag), mag_u..mag_z (dereddened AB model mags; NaN
                    where the flux is not positive), i_dered
  loglam.npy        float64 [npix]  log10(vacuum wavelength / A), SDSS coadd grid
  spectra_flux.npy  float32 [n_gal, npix]  1e-17 erg/s/cm^2/A, with SDSS-like noise; row k = galaxies.csv row k
  spectra_ivar.npy  float32 [n_gal, npix]  inverse variance of that noise
  catalogue.csv     obj_id, class, u, g, r, i, z, redshift, simulated, source
  manifest.json     counts, params, input sha256, package versions, how each file was made, checks

Same bytes on every run: fixed float formats, JSON with sorted keys and no time stamps, .npy (no
zip, which stores times), seeded streams that do not depend on --limit (the galaxies of a --limit N
build are the first N rows of the full build; the stars and quasars are the first N of theirs).
Writes into a hidden sibling folder and renames it into place only when everything succeeded.

Same bytes on every x86-64 CPU (data/exact.py says how): the fit inputs are rounded to
galaxies.FIT_BITS bits, the fit, the spectra and the noise use only operations that are correctly
rounded on every CPU, and the simulated catalogue values are rounded to catalogue.MAG_STEP/Z_STEP.
Each rounding's smallest distance to a boundary (in grid steps) is printed: a host whose last-bit
noise stays below it writes the same bytes. --perturb REL (for tests only) multiplies the fit inputs
and the simulated magnitudes and redshifts by (1 + REL * N(0, 1)) before rounding, to show that.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from specllm import paths
from specllm.data import catalogue, galaxies, quasars, stars
from specllm.errors import InputError
from specllm.io import atomic_dir, sha256_file

RAW_KEYS = ("raw.seed", "raw.z_min", "raw.z_max", "raw.i_max", "raw.loglam_min", "raw.loglam_max",
            "raw.loglam_step", "raw.snr_r", "raw.n_stars", "raw.n_qso")
CHUNK = 1000  # galaxies per reconstruction step: ~30 MB of float64 model at a time
STREAM_STARS, STREAM_QSO, STREAM_STAR_OBS, STREAM_QSO_OBS = 2, 3, 4, 5  # stream 1: galaxy noise
STREAM_PERTURB = 99  # --perturb's noise (tests only)
# A rounding margin below this many grid steps is printed as a warning: last-bit noise of another CPU
# (~1e-15 relative, ~1e-10 grid steps at the coarsest) could then change the stored bytes.
MARGIN_WARN = 1e-6

DESCRIPTION = {
    "galaxies.csv": "Real SDSS galaxies from kcorrect's test table gst_tests_small.fits (HDU 1: RA, DEC, "
                    "MODELFLUX, MODELFLUX_IVAR, EXTINCTION, Z) passing raw.z_min < z < raw.z_max and dereddened "
                    "i < raw.i_max; fluxes as measured, magnitudes 22.5 - 2.5 log10(flux) - extinction.",
    "spectra_flux.npy": "Photometry-constrained template spectra of real SDSS galaxies: kcorrect's five default v4 "
                        "templates fitted (NNLS) to each galaxy's dereddened ugriz model maggies (SDSS->AB offsets "
                        "of KcorrectSDSS applied; inputs rounded to 16 significant bits; the NNLS solved exactly over all "
                        "template subsets, sparser solution on near-ties) at its SDSS redshift, redshifted as kcorrect does (lam*(1+z), "
                        "flux/(1+z)), on the SDSS coadd grid, in 1e-17 erg/s/cm^2/A, plus seeded SDSS-like noise. "
                        "Galactic-extinction corrected, total (model) flux, continuum-level resolution: "
                        "not measured spectra.",
    "spectra_ivar.npy": "1/sigma^2 of the simulated noise (see noise_model).",
    "loglam.npy": "log10(wavelength/A) of each pixel: raw.loglam_min + k*raw.loglam_step up to raw.loglam_max.",
    "catalogue.csv": "Classification catalogue: the real galaxies of galaxies.csv (class GALAXY, u..z = 22.5 - 2.5 "
                     "log10(MODELFLUX), not dereddened, redshift = SDSS Z, simulated = 0) plus simulated stars "
                     "(empirical SDSS stellar loci: Yuan+2015 dwarfs, Zhang+2021 giants, Kurucz-Vega-anchored A/BHB "
                     "stars, extended M dwarfs; redshift = v_r/c) and simulated quasars (power law + broad lines + "
                     "Madau 1995 IGM through speclite sdss2010 filters), both with resampled real Galactic "
                     "extinction and SDSS-like photometric noise (simulated = 1).",
}
NOISE_MODEL = ("sigma^2 = (max(f,0) + sky(lam) + 10) / (k * T(lam)) per pixel (object + sky Poisson noise and a "
               "read-noise/dark term of 10, in 1e-17 erg/s/cm^2/A); sky = 6*(lam/5500)^2.5 plus Gaussian night-sky lines "
               "at 5577, 5892, 6300, 6364 A; T = logistic blue drop (centre 4200 A, width 200 A; 0.15 at 3850 A) "
               "x logistic red drop (9300 A, 400 A), 1 at 6500 A; k set from every galaxy's r-band photometry so the "
               "median r-band per-pixel S/N is about raw.snr_r; noise ~ N(0, sigma) from default_rng([raw.seed, 1, gal_id]).")


def _fmt(values, fmt: str) -> np.ndarray:
    return np.char.mod(fmt, np.asarray(values))


def write_csv(path: Path, columns: list[tuple[str, np.ndarray, str | None]]) -> None:
    """CSV with one fixed printf format per column (None: already strings), '\\n' line ends."""
    cells = [np.asarray(v, dtype=str) if f is None else _fmt(v, f) for _, v, f in columns]
    lines = [",".join(name for name, _, _ in columns)]
    lines += [",".join(row) for row in zip(*cells)]
    path.write_text("\n".join(lines) + "\n")


def _versions() -> dict[str, str]:
    return {p: metadata.version(p) for p in ("kcorrect", "numpy", "scipy", "astropy", "speclite", "pandas")}


def _inputs(gst_path: Path) -> dict[str, str]:
    files = {"kcorrect/data/test/gst_tests_small.fits" if Path(gst_path) == galaxies.GST_FILE else str(gst_path): Path(gst_path),
             "kcorrect/data/templates/kcorrect-default-v4.fits": galaxies.TEMPLATE_FILE,
             "kcorrect/data/basel/lcbvega.ori": galaxies.kcorrect_file("basel", "lcbvega.ori")}
    for name in galaxies.RESPONSES:
        files[f"kcorrect/data/responses/{name}.dat"] = galaxies.response_file(name)
    import speclite

    for band in galaxies.BANDS:
        files[f"speclite/data/filters/sdss2010-{band}.ecsv"] = Path(speclite.__file__).parent / "data" / "filters" / f"sdss2010-{band}.ecsv"
    return {k: sha256_file(v) for k, v in sorted(files.items())}


def _percentiles(x: np.ndarray) -> dict[str, float]:
    return {"median": round(float(np.median(x)), 6), "p95": round(float(np.percentile(x, 95)), 6), "max": round(float(np.max(x)), 6)}


def perturbed(x: np.ndarray, rel: float, seed: int, stream: int) -> np.ndarray:
    """x * (1 + rel * N(0, 1)) from a seeded stream; x itself when rel is 0 (the real build)."""
    if not rel:
        return x
    return x * (1.0 + rel * np.random.default_rng([seed, STREAM_PERTURB, stream]).standard_normal(np.shape(x)))


def build_galaxies(cat: dict, sel: galaxies.Selection, p: dict, limit: int | None, progress: bool,
                   perturb: float = 0.0) -> dict:
    """Fit, reconstruct and add noise for the kept galaxies (first `limit` of them)."""
    kept = np.flatnonzero(sel.keep)
    idx = kept if limit is None else kept[:limit]
    maggies, ivar = galaxies.dereddened_maggies(cat["modelflux"][kept], cat["modelflux_ivar"][kept], cat["extinction"][kept])
    maggies, ivar = perturbed(maggies, perturb, p["raw.seed"], 0), perturbed(ivar, perturb, p["raw.seed"], 1)
    m_ab, iv_ab, margin = galaxies.fit_inputs(maggies, ivar)  # rounded: the same bits on every CPU
    k = galaxies.exposure_scale(m_ab[:, 2], p["raw.snr_r"])  # from all kept: --limit independent
    m_ab, iv_ab = m_ab[: idx.size], iv_ab[: idx.size]
    z = cat["z"][idx]
    coeffs = galaxies.fit_coeffs_ab(z, m_ab, iv_ab)
    loglam = galaxies.loglam_grid(p["raw.loglam_min"], p["raw.loglam_max"], p["raw.loglam_step"])
    wave = galaxies.wavelengths(loglam)
    terms = galaxies.noise_terms(wave)
    flux = np.empty((idx.size, wave.size), np.float32)
    fivar = np.empty_like(flux)
    synth = np.empty((idx.size, 5))
    snr = np.empty(idx.size)
    rpix = galaxies.r_band_pixels(wave)
    from tqdm import tqdm

    for s in tqdm(range(0, idx.size, CHUNK), desc="galaxy spectra", unit="chunk", disable=not progress, file=sys.stderr):
        sl = slice(s, s + CHUNK)
        model = galaxies.reconstruct(coeffs[sl], z[sl], wave)
        flux[sl], fivar[sl] = galaxies.noisy(model, wave, k, p["raw.seed"], idx[sl], terms)
        synth[sl], covered = galaxies.synthetic_maggies(wave, model)
        snr[sl] = np.median(model[:, rpix] * np.sqrt(fivar[sl][:, rpix]), axis=1)
    rel = np.abs(synth / m_ab - 1.0)
    checks = {
        # a few dozen real galaxies have catastrophic photometry in one band (e.g. gal_id 1205: g - r = 4.5),
        # which no non-negative template mix can follow; counted here, kept in the data as measured
        "galaxies_round_trip_worse_than_10pct_in_gri": int((rel[:, list(galaxies.GRI)] > 0.10).any(axis=1).sum()),
        "photometry_round_trip_abs_rel_error": {b: _percentiles(rel[:, j]) for j, b in enumerate(galaxies.BANDS) if j in galaxies.GRI},
        "band_coverage_of_grid": {b: round(float(c), 6) for b, c in zip(galaxies.BANDS, covered)},
        "exposure_scale_k": round(k, 6),
        "median_r_band_pixel_snr": round(float(np.median(snr)), 4),
    }
    return {"idx": idx, "loglam": loglam, "flux": flux, "ivar": fivar, "checks": checks,
            "margin": float(margin[: idx.size].min(initial=0.5)), "margin_all_kept": float(margin.min(initial=0.5))}


def build_catalogue(cat: dict, idx: np.ndarray, p: dict, limit: int | None, mags: np.ndarray | None = None,
                    perturb: float = 0.0) -> tuple:
    """catalogue.csv frame and its counts. Stars and quasars are always simulated in full (cheap), then cut
    to --limit, so a limited build's rows are a prefix of the full build's. mags: the galaxies' magnitudes
    (galaxies.nanomaggies_to_mag of their fluxes) when already computed."""
    gal, left_out = catalogue.galaxy_block(idx, cat["modelflux"][idx], cat["z"][idx], mags)
    pool = cat["extinction"][np.isfinite(cat["extinction"]).all(axis=1)]
    seed = p["raw.seed"]
    st = stars.simulate(p["raw.n_stars"], np.random.default_rng([seed, STREAM_STARS]))
    qs = quasars.simulate(p["raw.n_qso"], np.random.default_rng([seed, STREAM_QSO]))
    for j, obj in enumerate((st, qs)):
        obj["mags"] = perturbed(obj["mags"], perturb, seed, 10 + 2 * j)
        obj["redshift"] = perturbed(obj["redshift"], perturb, seed, 11 + 2 * j)
    st_mags = catalogue.observe(st["mags"], pool, np.random.default_rng([seed, STREAM_STAR_OBS]))
    qs_mags = catalogue.observe(qs["mags"], pool, np.random.default_rng([seed, STREAM_QSO_OBS]))
    ns = p["raw.n_stars"] if limit is None else min(limit, p["raw.n_stars"])
    nq = p["raw.n_qso"] if limit is None else min(limit, p["raw.n_qso"])
    blocks = [catalogue.simulated_block("S", "STAR", "stellar-locus", st_mags[:ns], st["redshift"][:ns]),
              catalogue.simulated_block("Q", "QSO", "powerlaw-qso", qs_mags[:nq], qs["redshift"][:nq])]
    frame = catalogue.to_frame([gal, *blocks])
    kinds, counts = np.unique(st["kind"][:ns], return_counts=True)
    return frame, {
        "catalogue_galaxies": int(len(gal["redshift"])),
        "catalogue_galaxies_left_out_nonpositive_flux": left_out,
        "stars": int(ns),
        "stars_by_kind": {str(k): int(c) for k, c in zip(kinds, counts)},
        "quasars": int(nq),
        "catalogue_rows": int(len(frame)),
    }, min(b["margin"] for b in blocks)


def write_outputs(folder: Path, cat: dict, built: dict, frame, manifest: dict) -> None:
    idx = built["idx"]
    mags = built["mags"] - cat["extinction"][idx]
    cols: list = [("gal_id", idx, "%d"), ("ra", cat["ra"][idx], "%.8f"), ("dec", cat["dec"][idx], "%.8f"), ("z", cat["z"][idx], "%.9g")]
    for key, prefix, fmt in (("modelflux", "flux", "%.9g"), ("modelflux_ivar", "ivar", "%.9g"), ("extinction", "extinction", "%.9g")):
        cols += [(f"{prefix}_{b}", cat[key][idx, j], fmt) for j, b in enumerate(galaxies.BANDS)]
    cols += [(f"mag_{b}", mags[:, j], "%.6f") for j, b in enumerate(galaxies.BANDS)]
    cols += [("i_dered", mags[:, 3], "%.6f")]
    write_csv(folder / "galaxies.csv", cols)
    np.save(folder / "loglam.npy", built["loglam"])
    np.save(folder / "spectra_flux.npy", built["flux"])
    np.save(folder / "spectra_ivar.npy", built["ivar"])
    write_csv(folder / "catalogue.csv", [
        ("obj_id", frame["obj_id"].to_numpy(), None), ("class", frame["class"].to_numpy(), None),
        *[(b, frame[b].to_numpy(float), "%.5f") for b in "ugriz"],
        ("redshift", frame["redshift"].to_numpy(float), "%.9g"), ("simulated", frame["simulated"].to_numpy(int), "%d"),
        ("source", frame["source"].to_numpy(), None),
    ])
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def replace_atomically(out: Path, fill) -> None:
    """Build into a hidden sibling folder and swap it in only if fill(folder) succeeded."""
    with atomic_dir(out) as tmp:
        fill(tmp)


def build(out: Path, params: dict, limit: int | None = None, gst_path: Path = galaxies.GST_FILE, progress: bool = True,
          perturb: float = 0.0, margins: dict | None = None) -> dict:
    """Build data/raw into `out`; return the manifest. Raises InputError before writing anything.

    perturb (tests only): relative noise on the fit inputs and simulated values before rounding (see the
    module notes). margins: a dict filled with each rounding's smallest distance to a boundary (grid
    steps); not in the manifest, whose bytes must not depend on the host."""
    p = {k: params[k] for k in RAW_KEYS}
    if limit is not None and limit < 1:
        raise InputError("--limit", "limit", f"must be >= 1, got {limit}", "give a positive number of galaxies, or leave --limit out")
    cat = galaxies.read_gst(gst_path)
    sel = galaxies.select(cat, p["raw.z_min"], p["raw.z_max"], p["raw.i_max"])
    if not sel.keep.any():
        raise InputError(paths.PARAMS, "raw.i_max", f"no galaxy of {gst_path} passes the cut ({sel.counts})",
                         "widen raw.z_min/raw.z_max/raw.i_max in params.yaml")
    built = build_galaxies(cat, sel, p, limit, progress, perturb)
    built["mags"] = galaxies.nanomaggies_to_mag(cat["modelflux"][built["idx"]])
    frame, cat_counts, cat_margin = build_catalogue(cat, built["idx"], p, limit, built["mags"], perturb)
    if margins is not None:
        margins.update({"fit_inputs": built["margin_all_kept"], "catalogue_simulated": cat_margin})
    nonpos = int((~(cat["modelflux"][built["idx"]] > 0)).any(axis=1).sum())
    manifest = {
        "counts": {**sel.counts, "galaxies_written": int(built["idx"].size),
                   "galaxies_written_with_nonpositive_flux": nonpos, **cat_counts},
        "params": {**{k.removeprefix("raw."): v for k, v in p.items()}, "limit": limit},
        "inputs_sha256": _inputs(gst_path),
        "versions": _versions(),
        "files": DESCRIPTION,
        "noise_model": NOISE_MODEL,
        "grid": {"npix": int(built["loglam"].size), "wave_min_A": round(float(10 ** built["loglam"][0]), 4),
                 "wave_max_A": round(float(10 ** built["loglam"][-1]), 4)},
        "checks": built["checks"],
        "notes": {
            "u_z_bands": "u (10% inside 3800-9200 A) and z (74% inside) are used in the template fit but not "
                         "in the photometry round trip; g loses 0.1% of its response blueward of 3802 A.",
            "ab_offsets": "fit on AB maggies: SDSS maggies x 10^(-0.4 d), d = (-0.036, 0.012, 0.010, 0.028, 0.040) "
                          "(kcorrect.utils.sdss_ab_correct); CSV magnitudes are SDSS's nominal AB, without d.",
        },
    }
    replace_atomically(Path(out), lambda folder: write_outputs(folder, cat, built, frame, manifest))
    return manifest
