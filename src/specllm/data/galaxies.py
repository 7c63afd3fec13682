"""Photometry-constrained template spectra of real SDSS galaxies (the embedded source's spectra).

Input: kcorrect's shipped test table `kcorrect/data/test/gst_tests_small.fits` (HDU 1): real SDSS
model fluxes (nanomaggies, ugriz), their inverse variances, Galactic extinction (mag) and the SDSS
spectroscopic redshift Z of 10,000 galaxies. It is read where kcorrect installed it, never copied.

For each galaxy passing the cut we fit kcorrect's five default (v4) templates to its dereddened
ugriz maggies at its real redshift (non-negative least squares, `KcorrectSDSS.fit_coeffs`) and
evaluate templates x coefficients on the SDSS coadd grid, redshifted as kcorrect defines it
(wavelength x (1+z), flux / (1+z): bolometric flux conserved, distance absorbed by the
coefficients). The result is the galaxy's continuum-level SED as its photometry constrains it,
not its measured spectrum; `real_spectra.py` shows how close that is for three real spectra.

Noise: a documented SDSS-like per-pixel sigma (see `pixel_sigma`) with a seeded normal draw per
galaxy. Everything is a pure function of its inputs; the stage (`stages/build_raw.py`) writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from specllm.errors import InputError

BANDS = "ugriz"
RESPONSES = tuple(f"sdss_{b}0" for b in BANDS)  # kcorrect's SDSS 2.5m responses (airmass 1.3)
GRI = (1, 2, 3)  # indices of the bands fully inside the 3800-9200 A spectral grid

FLUX_UNIT = 1e-17  # erg/s/cm^2/A: SDSS spectro unit; spectra are stored as multiples of it
COLUMNS = ("RA", "DEC", "MODELFLUX", "MODELFLUX_IVAR", "EXTINCTION", "Z")
FIX_REINSTALL = "reinstall the pinned kcorrect (pip install --force-reinstall kcorrect==5.1.9)"

# kcorrect's SDSS->AB zero-point offsets (Eisenstein, sdss-calib/1152), as KcorrectSDSS applies them
# with abcorrect=True: m_AB = m_SDSS + offset. We fit AB-corrected maggies so the spectra sit on the
# true AB scale; the magnitude columns we write keep SDSS's own (nominal AB) system.
AB_OFFSETS = (-0.036, 0.012, 0.010, 0.028, 0.040)


def kcorrect_file(*parts: str) -> Path:
    """A file shipped inside the installed kcorrect package (located at run time, never copied)."""
    return Path(str(resources.files("kcorrect").joinpath("data", *parts)))


GST_FILE = kcorrect_file("test", "gst_tests_small.fits")
TEMPLATE_FILE = kcorrect_file("templates", "kcorrect-default-v4.fits")


def response_file(name: str) -> Path:
    return kcorrect_file("responses", f"{name}.dat")


# ---------------------------------------------------------------- reading and selecting


def read_gst(path: Path = GST_FILE) -> dict[str, np.ndarray]:
    """The galaxy table as float64 arrays; InputError naming file and field on any defect."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "-", "kcorrect's galaxy test table not found", FIX_REINSTALL)
    try:
        # astropy only warns about a truncated file ("File may have been truncated"): make it an error
        with warnings.catch_warnings(), fits.open(path, memmap=False) as hdul:
            warnings.simplefilter("error", AstropyUserWarning)
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise InputError(path, "HDU 1", "no binary table in HDU 1", FIX_REINSTALL)
            data = hdul[1].data
            names = set(data.columns.names)
            for col in COLUMNS:
                if col not in names:
                    raise InputError(path, f"HDU 1 column {col}", "column missing", FIX_REINSTALL)
            out = {c.lower(): np.array(data[c], dtype=np.float64) for c in COLUMNS}
    except InputError:
        raise
    except Exception as err:  # astropy raises OSError, ValueError, TypeError... on truncated files
        raise InputError(path, "HDU 1 (GSTTEST table)", f"not a readable FITS file ({type(err).__name__}: {err})", FIX_REINSTALL) from None
    n = len(out["z"])
    for col in ("modelflux", "modelflux_ivar", "extinction"):
        if out[col].shape != (n, 5):
            raise InputError(path, f"HDU 1 column {col.upper()}", f"shape {out[col].shape}, expected ({n}, 5)", FIX_REINSTALL)
    return out


def nanomaggies_to_mag(flux: np.ndarray) -> np.ndarray:
    """Pogson AB magnitude 22.5 - 2.5 log10(nmgy); NaN where the flux is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


@dataclass(frozen=True)
class Selection:
    keep: np.ndarray        # bool [n_read]: passes both cuts and has usable g, r, i
    counts: dict[str, int]  # documented in the manifest


def select(cat: dict[str, np.ndarray], z_min: float, z_max: float, i_max: float) -> Selection:
    """The paper's cut z_min < z < z_max, dereddened i < i_max, on galaxies with usable g, r, i.

    Galaxies whose g, r or i flux is non-finite or whose ivar there is not positive cannot
    constrain the fit; they are dropped and counted (never silently), like the cut itself.
    """
    flux, ivar, ext, z = cat["modelflux"], cat["modelflux_ivar"], cat["extinction"], cat["z"]
    gri = list(GRI)
    usable = (np.isfinite(flux[:, gri]) & np.isfinite(ivar[:, gri]) & (ivar[:, gri] > 0)).all(axis=1)
    usable &= np.isfinite(z) & np.isfinite(ext).all(axis=1)
    i_dered = nanomaggies_to_mag(flux[:, 3]) - ext[:, 3]
    in_z = (z > z_min) & (z < z_max)
    in_i = np.nan_to_num(i_dered, nan=np.inf) < i_max
    keep = in_z & in_i & usable
    counts = {
        "galaxies_read": int(len(z)),
        "pass_redshift_cut": int(in_z.sum()),
        "pass_imag_cut": int(in_i.sum()),
        "pass_both_cuts": int((in_z & in_i).sum()),
        "dropped_unusable_gri": int((in_z & in_i & ~usable).sum()),
        "galaxies_kept": int(keep.sum()),
    }
    return Selection(keep, counts)


def dereddened_maggies(flux: np.ndarray, ivar: np.ndarray, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nanomaggies -> maggies, corrected for Galactic extinction (kcorrect expects dereddened input)."""
    scale = 1e-9 * 10.0 ** (0.4 * ext)
    maggies = flux * scale
    # a non-finite u or z flux carries no information: zero weight instead of a NaN in the fit
    good = np.isfinite(maggies) & np.isfinite(ivar) & (ivar > 0)
    return np.where(good, maggies, 0.0), np.where(good, ivar, 0.0) / scale**2


def ab_maggies(maggies: np.ndarray) -> np.ndarray:
    """SDSS-system maggies on the AB scale, exactly as KcorrectSDSS.to_ab does inside fit_coeffs."""
    return maggies * 10.0 ** (-0.4 * np.asarray(AB_OFFSETS))


# ---------------------------------------------------------------- template fit and spectra


@lru_cache(maxsize=4)
def fitter(z_hi: float, sdss_ab: bool = True):
    """A kcorrect fitter over 0 <= z <= z_hi (A-matrix grid every 0.002 in z; linear in between).

    sdss_ab=True: KcorrectSDSS, which converts SDSS-system maggies to AB before fitting (used for
    the gst photometry). sdss_ab=False: plain Kcorrect for maggies that are already AB (synthetic
    photometry of real spectra).
    """
    import kcorrect.kcorrect

    nz = max(8, int(np.ceil(z_hi / 0.002)) + 1)
    if sdss_ab:
        return kcorrect.kcorrect.KcorrectSDSS(responses=list(RESPONSES), redshift_range=[0.0, z_hi], nredshift=nz)
    return kcorrect.kcorrect.Kcorrect(responses=list(RESPONSES), redshift_range=[0.0, z_hi], nredshift=nz)


def fit_coeffs(z: np.ndarray, maggies: np.ndarray, ivar: np.ndarray, sdss_ab: bool = True,
               z_hi: float | None = None) -> np.ndarray:
    """Non-negative template coefficients [n, 5] (kcorrect's vectorised NNLS fit).

    z_hi fixes the fitter's redshift grid; the build passes raw.z_max so that a galaxy's coefficients
    never depend on which other galaxies are fitted (a --limit subset has a smaller max z).
    """
    if z_hi is None:
        z_hi = float(np.ceil(max(float(np.max(z)), 0.01) * 10.0) / 10.0)  # few grids -> cache hits
    kc = fitter(float(z_hi), sdss_ab)
    return np.asarray(kc.fit_coeffs(redshift=np.asarray(z, np.float32), maggies=maggies, ivar=ivar), dtype=np.float64)


@lru_cache(maxsize=1)
def templates() -> tuple[np.ndarray, np.ndarray]:
    """kcorrect's default v4 templates: rest wavelength [nw] (A), flux [5, nw] (erg/s/cm^2/A per unit coeff)."""
    from astropy.io import fits

    with fits.open(TEMPLATE_FILE, memmap=False) as hdul:
        row = hdul["FLUX"].data[0]
        wave = np.array(row["wave"], dtype=np.float64).ravel()
        flux = np.array(row["flux"], dtype=np.float64).reshape(-1, wave.size)
    return wave, flux


def loglam_grid(loglam_min: float, loglam_max: float, step: float) -> np.ndarray:
    """SDSS coadd grid: log10(wave/A) = min + k*step; same points as 10**arange(min, max+step/2, step)
    but computed from an integer count so no floating accumulation decides the last pixel."""
    n = int(round((loglam_max - loglam_min) / step)) + 1
    return loglam_min + step * np.arange(n, dtype=np.float64)


def reconstruct(coeffs: np.ndarray, z: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Observed-frame f_lambda [n, npix] in units of 1e-17 erg/s/cm^2/A.

    kcorrect's redshifting (template.SED.set_redshift): f_obs(lam) = f_rest(lam/(1+z)) / (1+z).
    Linear interpolation is enough: the templates are sampled every 0.037% in wavelength, and a
    per-template sum (not a BLAS product) keeps the result bit-identical across thread counts.
    """
    tw, tf = templates()
    coeffs = np.atleast_2d(coeffs)
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    rest = wave[None, :] / (1.0 + z[:, None])
    out = np.zeros(rest.shape, dtype=np.float64)
    for k in range(tf.shape[0]):
        out += coeffs[:, k : k + 1] * np.interp(rest, tw, tf[k], left=0.0, right=0.0)
    return out / (1.0 + z[:, None]) / FLUX_UNIT


# ---------------------------------------------------------------- synthetic photometry


@lru_cache(maxsize=8)
def _response(name: str) -> tuple[np.ndarray, np.ndarray]:
    import kcorrect.response

    rd = kcorrect.response.ResponseDict()
    rd.load_response(name)
    return np.asarray(rd[name].wave, np.float64), np.asarray(rd[name].response, np.float64)


def band_weights(wave: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """Weights w with maggies = (f_lambda[erg/s/cm^2/A] on `wave`) @ w, and the covered fraction.

    AB maggies = int f R lam dlam / int f_AB R lam dlam with f_AB = 3631 Jy c/lam^2 (kcorrect's
    Response.project). Hand-written as one weight vector because it integrates all 10^4 spectra
    in a single matrix product; project() would spline-interpolate each spectrum again. The
    trapezoid weights use the spectrum's own pixels; the denominator is integrated on the full
    response, so a band that sticks out of the grid (u, z; a sliver of g) comes out low by
    exactly (1 - covered): that is what `covered` reports.
    """
    rw, rr = _response(name)
    r_on_grid = np.interp(wave, rw, rr, left=0.0, right=0.0)
    # trapezoid rule on a non-uniform grid written as one weight per pixel (half-cells at the ends)
    dl = np.diff(np.concatenate([[wave[0]], 0.5 * (wave[1:] + wave[:-1]), [wave[-1]]]))
    fab = 3631e-23 * 2.99792458e18 / rw**2  # erg/s/cm^2/A of a 3631 Jy source
    denom = np.trapezoid(fab * rr * rw, rw)
    covered = float(np.sum(r_on_grid / wave * dl)) / float(np.trapezoid(rr / rw, rw))
    return r_on_grid * wave * dl / denom, covered


def synthetic_maggies(wave: np.ndarray, flux_1e17: np.ndarray, names=RESPONSES) -> tuple[np.ndarray, np.ndarray]:
    """AB maggies [n, nbands] of spectra in 1e-17 units, and each band's covered fraction."""
    w, cov = zip(*(band_weights(wave, n) for n in names))
    return np.atleast_2d(flux_1e17) * FLUX_UNIT @ np.stack(w, axis=1), np.array(cov)


# ---------------------------------------------------------------- noise model


SKY_LINES = ((5577.3, 30.0), (5891.6, 8.0), (6300.3, 10.0), (6363.8, 4.0))  # [OI], NaD, [OI] (air-ish A, relative strength)


def throughput(wave: np.ndarray) -> np.ndarray:
    """Relative SDSS-like spectrograph throughput, 1 at 6500 A: a logistic blue drop to ~0.15 at 3850 A
    (atmosphere, fibre and blue-CCD losses; SDSS's total throughput falls from ~25% to a few % there)
    and a milder red drop to ~0.5 at 9200 A (red CCD quantum efficiency)."""
    def raw(lam):
        return 1.0 / (1.0 + np.exp(-(lam - 4200.0) / 200.0)) / (1.0 + np.exp((lam - 9300.0) / 400.0))

    return raw(wave) / raw(6500.0)


def sky(wave: np.ndarray) -> np.ndarray:
    """Sky-like background per pixel in 1e-17 units: a continuum rising to the red as lam^2.5
    (airglow, OH forest unresolved) of ~6 at 5500 A (V~21.5 mag/arcsec^2 in a 3" fibre), plus the
    strongest night-sky lines as 1.5 A-sigma Gaussians, whose residuals make SDSS's noise spikes."""
    cont = 6.0 * (wave / 5500.0) ** 2.5
    lines = sum(a * 6.0 * np.exp(-0.5 * ((wave - c) / 1.5) ** 2) for c, a in SKY_LINES)
    return cont + lines


READ_NOISE = 10.0  # read noise + dark current per pixel, as an equivalent flux (1e-17 units) at peak throughput


def sigma_shape(model: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Per-pixel sigma for unit exposure: Poisson noise of object + sky counts plus detector noise, all
    through the throughput T: sigma^2 = (f + sky + READ_NOISE) / T. Where T is low (blue end) the
    detector term dominates, as in SDSS. The exposure scale k (sigma / sqrt(k)) is set by `exposure_scale`."""
    return np.sqrt((np.clip(model, 0.0, None) + sky(wave) + READ_NOISE) / throughput(wave))


def r_band_pixels(wave: np.ndarray) -> np.ndarray:
    """Pixels inside the r response's FWHM (kcorrect's sdss_r0: 5600-6749 A)."""
    import kcorrect.response

    rd = kcorrect.response.ResponseDict()
    rd.load_response("sdss_r0")
    return (wave >= rd["sdss_r0"].fwhm_low) & (wave <= rd["sdss_r0"].fwhm_high)


def exposure_scale(r_maggies_ab: np.ndarray, snr_r: float) -> float:
    """Exposure scale k so that the median r-band S/N per pixel of the sample is about snr_r.

    Computed from photometry alone (r-band flux density at the band's effective wavelength) over
    every galaxy passing the cut, so it is the same whatever --limit builds; S/N scales as sqrt(k).
    The achieved median over the written spectra is reported in the manifest.
    """
    lam = np.array([6156.25])  # kcorrect sdss_r0 effective wavelength (A)
    f = r_maggies_ab * 3631e-23 * 2.99792458e18 / lam**2 / FLUX_UNIT
    snr_unit = f / sigma_shape(f[:, None], lam)[:, 0]
    return float((snr_r / np.median(snr_unit)) ** 2)


def noisy(model: np.ndarray, wave: np.ndarray, k: float, seed: int, gal_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux + noise, ivar) as float32. Each galaxy's noise comes from its own stream
    default_rng([seed, 1, gal_id]), so a galaxy's noise does not depend on which others are built."""
    sigma = sigma_shape(model, wave) / np.sqrt(k)
    noise = np.stack([np.random.default_rng([seed, 1, int(g)]).standard_normal(wave.size) for g in gal_ids])
    return (model + sigma * noise).astype(np.float32), (1.0 / sigma**2).astype(np.float32)
