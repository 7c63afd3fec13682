"""The classification catalogue (catalogue.csv): real galaxies plus simulated stars and quasars.

Columns, like the Kaggle "Stellar Classification Dataset - SDSS17" (fiber-less subset):
obj_id, class (GALAXY / STAR / QSO), u, g, r, i, z (AB model magnitudes, *not* corrected for
Galactic extinction), redshift, simulated (0 real / 1 simulated), source.

* GALAXY rows: the galaxies of galaxies.csv, u..z = 22.5 - 2.5 log10(MODELFLUX nanomaggies) exactly as
  measured (no offsets, no noise), redshift = their SDSS Z. A galaxy with a non-positive flux in any
  band has no Pogson magnitude there; it stays in galaxies.csv (with NaN magnitude) but is left out of
  the catalogue and counted in the manifest.
* STAR / QSO rows: intrinsic magnitudes from stars.py / quasars.py, then (1) Galactic extinction: the
  5-band EXTINCTION vector of a randomly drawn real gst galaxy, so simulated objects see the same dust
  as the real ones in the SDSS footprint, and (2) photometric noise N(0, sigma_m) with
  sigma_m = sqrt(0.01^2 + (0.217 * 10^(0.4 (m - m5)))^2), capped at 0.5 mag, where m5 = 22.0, 22.2, 22.2,
  21.3, 20.5 (u..z) is SDSS's single-epoch depth (S/N = 5 gives 0.217 mag); the cap keeps a faint
  u-dropout magnitude finite, as SDSS's asinh magnitudes are.
* obj_id: G<gal_id>, S<n>, Q<n> (5 digits). Rows come in blocks: galaxies, stars, quasars.
* Simulated values are rounded to MAG_STEP (1e-4 mag, 100x below the 0.01 mag noise floor) and
  Z_STEP (1e-6 in z, 0.3 km/s): the samplers use numpy/scipy kernels whose last bit depends on the
  CPU, and the grid keeps that from reaching the stored bytes (see data/exact.py). Galaxy magnitudes
  are computed with exact.log10 and need no grid.
"""

from __future__ import annotations

import numpy as np

from specllm.data import exact

MAG_STEP, Z_STEP = 1e-4, 1e-6
M5 = np.array([22.0, 22.2, 22.2, 21.3, 20.5])
FLOOR, CAP = 0.01, 0.5
COLUMNS = ("obj_id", "class", "u", "g", "r", "i", "z", "redshift", "simulated", "source")


def mag_sigma(mags: np.ndarray) -> np.ndarray:
    return np.minimum(np.sqrt(FLOOR**2 + (0.217 * 10.0 ** (0.4 * (mags - M5))) ** 2), CAP)


def observe(mags: np.ndarray, extinction_pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add Galactic extinction (resampled real vectors) and photometric noise to intrinsic magnitudes."""
    ext = extinction_pool[rng.integers(0, len(extinction_pool), len(mags))]
    seen = mags + ext
    return seen + rng.standard_normal(seen.shape) * mag_sigma(seen)


def galaxy_block(gal_id: np.ndarray, flux: np.ndarray, z: np.ndarray, mags: np.ndarray | None = None) -> tuple[dict, int]:
    """Catalogue rows of real galaxies with positive flux in all bands, and how many were left out.
    mags: galaxies.nanomaggies_to_mag(flux) when the caller has it already (it costs ~2 s)."""
    from specllm.data import galaxies

    ok = (flux > 0).all(axis=1) & np.isfinite(flux).all(axis=1)
    mags = galaxies.nanomaggies_to_mag(flux[ok]) if mags is None else np.asarray(mags)[ok]
    ids = np.asarray(gal_id)[ok]
    return {
        "obj_id": np.array([f"G{g:05d}" for g in ids], dtype=object),
        "class": np.full(ok.sum(), "GALAXY", dtype=object),
        "mags": mags,
        "redshift": np.asarray(z, float)[ok],
        "simulated": np.zeros(ok.sum(), int),
        "source": np.full(ok.sum(), "kcorrect-gst", dtype=object),
    }, int((~ok).sum())


def simulated_block(prefix: str, cls: str, source: str, mags: np.ndarray, redshift: np.ndarray) -> dict:
    """Rows of simulated objects, values rounded to MAG_STEP / Z_STEP; "margin": the smallest distance
    of a value to a rounding boundary, in grid steps (a host differing by less stores the same bytes)."""
    n = len(mags)
    mags, m_margin = exact.quantize_step(mags, MAG_STEP)
    redshift, z_margin = exact.quantize_step(redshift, Z_STEP)
    return {
        "obj_id": np.array([f"{prefix}{k:05d}" for k in range(n)], dtype=object),
        "class": np.full(n, cls, dtype=object),
        "mags": mags,
        "redshift": redshift,
        "margin": float(min(m_margin.min(initial=0.5), z_margin.min(initial=0.5))),
        "simulated": np.ones(n, int),
        "source": np.full(n, source, dtype=object),
    }


def to_frame(blocks: list[dict]):
    """One pandas DataFrame with the catalogue.csv columns, blocks in order."""
    import pandas as pd

    cat = {k: np.concatenate([b[k] for b in blocks]) for k in ("obj_id", "class", "mags", "redshift", "simulated", "source")}
    frame = pd.DataFrame({"obj_id": cat["obj_id"], "class": cat["class"]})
    for j, band in enumerate("ugriz"):
        frame[band] = cat["mags"][:, j]
    frame["redshift"] = cat["redshift"]
    frame["simulated"] = cat["simulated"]
    frame["source"] = cat["source"]
    return frame[list(COLUMNS)]
