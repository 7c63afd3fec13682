"""Real SDSS spectra shipped with ppxf 8.2.6, and our photometry-constrained reconstruction of each.

This is the paper's honesty check on the embedded spectra: take a real SDSS spectrum, measure its
g, r, i (u and z only where the spectrum covers the band) through kcorrect's SDSS responses, fit the
same five kcorrect templates to those maggies at the galaxy's redshift, and reconstruct a spectrum
on the same pixels exactly as galaxies.py does for the 10^4 galaxies. The report stage plots both.

Files (read from the installed ppxf at run time, never copied):
* NGC3073_SDSS_DR8.fits, NGC3522_SDSS_DR8.fits: HDU 1 binary table (flux [1e-17 erg/s/cm^2/A],
  wavelength [vacuum A], inverse_variance, ...). Redshift: the header keyword Z of HDU 1 (the SDSS
  pipeline redshift; ppxf's examples ppxf_example_gas_sdss_tied.py / ppxf_example_population_gas_sdss.py
  read the same keyword: z = float(hdu[1].header["Z"])).
* NGC4636_SDSS_DR12.fits: a genuine SDSS spec file; COADD (flux, loglam [vacuum], ivar) and SPECOBJ
  whose Z column is the redshift (0.003025; ppxf's kinematics example hard-codes 0.003129 instead).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from specllm.data import galaxies
from specllm.errors import InputError

SPECTRA = {
    "NGC3073": "NGC3073_SDSS_DR8.fits",
    "NGC3522": "NGC3522_SDSS_DR8.fits",
    "NGC4636": "NGC4636_SDSS_DR12.fits",
}
MIN_COVERAGE = 0.99  # a band is synthesised only if the spectrum holds >= 99% of its AB-weighted response
CALIB_FLOOR = 0.02   # fractional error floor on synthetic maggies (SDSS spectrophotometry is good to a few %)
FIX = "reinstall the pinned ppxf (pip install --force-reinstall ppxf==8.2.6)"


def ppxf_file(name: str) -> Path:
    if name not in SPECTRA:
        raise InputError("ppxf/spectra", "name", f"unknown spectrum '{name}'", f"use one of: {', '.join(SPECTRA)}")
    return Path(str(resources.files("ppxf").joinpath("spectra", SPECTRA[name])))


def read_spectrum(name: str) -> dict:
    """wave (vacuum A), flux (1e-17 erg/s/cm^2/A), ivar, z and where z came from."""
    from astropy.io import fits

    path = ppxf_file(name)
    field = "-"
    try:
        with fits.open(path, memmap=False) as hdul:
            if "SPECOBJ" in hdul:
                field = "COADD"
                t = hdul["COADD"].data
                wave, flux, ivar = 10.0 ** np.asarray(t["loglam"], float), np.asarray(t["flux"], float), np.asarray(t["ivar"], float)
                field = "SPECOBJ.Z"
                z, source = float(hdul["SPECOBJ"].data["Z"][0]), "SPECOBJ.Z (SDSS pipeline redshift)"
            else:
                field = "HDU 1"
                t = hdul[1].data
                wave, flux, ivar = (np.asarray(t[c], float) for c in ("wavelength", "flux", "inverse_variance"))
                field = "HDU 1 header Z"
                z, source = float(hdul[1].header["Z"]), "HDU 1 header keyword Z (SDSS pipeline redshift)"
    except Exception as err:
        raise InputError(path, field, f"cannot read ({type(err).__name__}: {err})", FIX) from None
    return {"name": name, "file": str(path), "wave": wave, "flux": flux, "ivar": ivar, "z": z, "z_source": source}


def synthetic_photometry(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AB maggies, their ivar (pixel noise + 2% floor; 0 for a band not covered), and covered fractions."""
    good = np.isfinite(flux) & (ivar > 0)
    # masked pixels (ivar = 0) carry no valid flux: bridge them linearly from their good neighbours
    filled = np.interp(wave, wave[good], flux[good])
    maggies, covered = galaxies.synthetic_maggies(wave, filled)
    maggies = maggies[0]
    var = np.empty(5)
    for b, name in enumerate(galaxies.RESPONSES):
        w, _ = galaxies.band_weights(wave, name)
        var[b] = np.sum(np.where(good, w**2 * (galaxies.FLUX_UNIT**2) / np.where(good, ivar, 1.0), 0.0))
    ok = covered >= MIN_COVERAGE
    m_ivar = np.where(ok, 1.0 / (var + (CALIB_FLOOR * maggies) ** 2), 0.0)
    return np.where(ok, maggies, np.nan), m_ivar, covered


def compare_real_and_reconstructed(name: str) -> dict:
    """Real spectrum and its template reconstruction on the same pixels (see module docstring).

    Returns dict(name, file, wave, real_flux, real_ivar, reconstructed_flux, z, z_source,
    synthetic_maggies {band: AB maggies or NaN}, synthetic_mag {band: AB mag or NaN},
    covered {band: fraction of the band inside the spectrum}, reconstructed_mag {band: AB mag of the
    reconstruction for the bands used}). Fluxes in 1e-17 erg/s/cm^2/A.
    """
    spec = read_spectrum(name)
    wave = spec["wave"]
    maggies, m_ivar, covered = synthetic_photometry(wave, spec["flux"], spec["ivar"])
    coeffs = galaxies.fit_coeffs(np.array([spec["z"]]), np.nan_to_num(maggies)[None, :], m_ivar[None, :], sdss_ab=False)
    recon = galaxies.reconstruct(coeffs, np.array([spec["z"]]), wave)[0]
    rec_maggies, _ = galaxies.synthetic_maggies(wave, recon)
    used = m_ivar > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = -2.5 * np.log10(maggies)
        rec_mag = np.where(used, -2.5 * np.log10(rec_maggies[0]), np.nan)
    bands = galaxies.BANDS
    return {
        "name": name,
        "file": spec["file"],
        "wave": wave,
        "real_flux": spec["flux"],
        "real_ivar": spec["ivar"],
        "reconstructed_flux": recon,
        "z": spec["z"],
        "z_source": spec["z_source"],
        "synthetic_maggies": dict(zip(bands, maggies.tolist())),
        "synthetic_mag": dict(zip(bands, mag.tolist())),
        "covered": dict(zip(bands, covered.tolist())),
        "reconstructed_mag": dict(zip(bands, rec_mag.tolist())),
    }
