"""Photometry-constrained template spectra of real SDSS galaxies (the embedded source's spectra).

Input: kcorrect's shipped test table `kcorrect/data/test/gst_tests_small.fits` (HDU 1): real SDSS
model fluxes (nanomaggies, ugriz), their inverse variances, Galactic extinction (mag) and the SDSS
spectroscopic redshift Z of 10,000 galaxies. It is read where kcorrect installed it, never copied.

For each galaxy passing the cut we fit kcorrect's five default (v4) templates to its dereddened
ugriz maggies at its real redshift (non-negative least squares, as `KcorrectSDSS.fit_coeffs` does,
but computed here so that every CPU gets the same bits: see `fit_coeffs` and `exact.py`) and
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

from specllm.data import exact
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
    """Pogson AB magnitude 22.5 - 2.5 log10(nmgy); NaN where the flux is not positive. log10 from
    exact.py: the same bits on every CPU (the i < i_max cut and the stored magnitudes depend on them)."""
    flux = np.asarray(flux, dtype=np.float64)
    pos = flux > 0
    return np.where(pos, 22.5 - 2.5 * exact.log10(np.where(pos, flux, 1.0)), np.nan)


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


def ab_factors() -> np.ndarray:
    """10^(-0.4 d) per band, d = AB_OFFSETS (CPU-independent bits)."""
    return exact.pow10(-0.4 * np.asarray(AB_OFFSETS))


def ab_maggies(maggies: np.ndarray) -> np.ndarray:
    """SDSS-system maggies on the AB scale, exactly as KcorrectSDSS.to_ab does inside fit_coeffs."""
    return maggies * ab_factors()


# ---------------------------------------------------------------- template fit and spectra


@lru_cache(maxsize=4)
def fitter(z_hi: float, sdss_ab: bool = True):
    """kcorrect's own fitter over 0 <= z <= z_hi (A-matrix grid every 0.002 in z). Not used by the build
    (its float32 A matrix and BLAS-backed NNLS give CPU-dependent bits); kept as the reference the
    tests compare `fit_coeffs` and `reconstruct` with."""
    import kcorrect.kcorrect

    nz = max(8, int(np.ceil(z_hi / 0.002)) + 1)
    if sdss_ab:
        return kcorrect.kcorrect.KcorrectSDSS(responses=list(RESPONSES), redshift_range=[0.0, z_hi], nredshift=nz)
    return kcorrect.kcorrect.Kcorrect(responses=list(RESPONSES), redshift_range=[0.0, z_hi], nredshift=nz)


# Fit inputs are rounded to FIT_BITS significant bits (a relative step of 1.5e-5 to 3e-5, i.e. < 3.3e-5 mag,
# 300x below the 1% photometric errors of SDSS model fluxes) before the fit. The fit is ill-conditioned:
# a last-bit change of its inputs moved coefficients by up to 1.5% (numpy's AVX-512 kernels off vs on);
# rounded inputs are the same bits on every CPU as long as a host's last-bit noise (~5e-16 relative,
# i.e. 3e-11 grid steps) is smaller than each value's distance to a rounding boundary (`fit_inputs`
# returns it; tests/test_data_bytes.py checks it on the full build).
FIT_BITS = 16
# A larger template set must lower chi^2 by more than this (relative) to replace a smaller one:
# near-ties between solutions (a band with zero weight leaves more templates than equations) are
# decided by the sparser solution, not by rounding noise.
CHI2_REL_TOL = 1e-9
PIVOT_TOL = 1e-10  # a Cholesky pivot below this share of its diagonal: the template subset is degenerate


def fit_inputs(maggies: np.ndarray, ivar: np.ndarray, sdss_ab: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AB maggies and ivar (SDSS->AB offsets applied when sdss_ab), rounded to FIT_BITS bits, and each
    value's distance to a rounding boundary in grid steps (0.5 = far, 0 = on it)."""
    maggies, ivar = np.asarray(maggies, np.float64), np.asarray(ivar, np.float64)
    if sdss_ab:
        f = ab_factors()
        maggies, ivar = maggies * f, ivar / (f * f)
    m_q, m_margin = exact.quantize_bits(maggies, FIT_BITS)
    iv_q, iv_margin = exact.quantize_bits(ivar, FIT_BITS)
    return m_q, iv_q, np.minimum(m_margin, iv_margin)


def _trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """w with sum(f * w) = trapezoid integral of f over x (half cells at the ends)."""
    return np.diff(np.concatenate([[x[0]], 0.5 * (x[1:] + x[:-1]), [x[-1]]]))


def _rowsum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis by numpy's fixed pairwise order (elementwise adds: the same on every CPU),
    never through BLAS, whose kernels (and so summation order) depend on the CPU."""
    return np.add.reduce(x, axis=-1)


Z_FIT_MAX = 1.0  # design_matrix's fixed rest-frame integration range covers 0 <= z <= Z_FIT_MAX


def design_matrix(z: np.ndarray, names=RESPONSES) -> np.ndarray:
    """A [n, nbands, ntemplates]: AB maggies of each template redshifted to each galaxy's z (per unit
    coefficient), as kcorrect's Response.project integrates them (trapezoid over the template's own
    fine wavelengths, the response linearly interpolated), in float64 with elementwise operations only
    (kcorrect tabulates A in float32 on a z grid). Integrated in the rest frame:
    int f_rest(l/(1+z))/(1+z) R(l) l dl = (1+z) int f_rest(r) R((1+z) r) r dr, on a fixed set of template
    wavelengths per band, so a galaxy's A does not depend on which others are fitted."""
    tw, tf = templates()
    z = np.atleast_1d(np.asarray(z, np.float64))
    if z.size and not (np.all(z >= 0.0) and np.all(z <= Z_FIT_MAX)):
        raise ValueError(f"design_matrix covers 0 <= z <= {Z_FIT_MAX}; got z in [{z.min()}, {z.max()}]")
    A = np.empty((z.size, len(names), tf.shape[0]))
    for b, name in enumerate(names):
        rw, rr = _response(name)
        fab = 3631e-23 * 2.99792458e18 / (rw * rw)
        denom = float(_rowsum(fab * rr * rw * _trapezoid_weights(rw)))
        inside = np.flatnonzero((tw >= rw[0] / (1.0 + Z_FIT_MAX)) & (tw <= rw[-1]))
        sub = np.arange(max(inside[0] - 1, 0), min(inside[-1] + 2, tw.size))  # one point beyond each end
        wt = tw[sub] * _trapezoid_weights(tw[sub]) / denom
        for s in range(0, z.size, 1000):  # 1000 x ~1000 points at a time
            zs = 1.0 + z[s : s + 1000]
            resp = np.interp(zs[:, None] * tw[sub][None, :], rw, rr, left=0.0, right=0.0)
            for k in range(tf.shape[0]):
                A[s : s + 1000, b, k] = zs * _rowsum(resp * (tf[k, sub] * wt))
    return A


def _subsets(k: int) -> list[tuple[int, ...]]:
    """Non-empty template subsets, smallest first (ties go to the sparser solution)."""
    out = [tuple(j for j in range(k) if m >> j & 1) for m in range(1, 2**k)]
    return sorted(out, key=lambda s: (len(s), s))


def nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||A c - b||, c >= 0, for many small problems at once (A [n, m, k], b [n, m], k <= 6).

    The NNLS optimum is the least-squares solution on its own support, so it is the lowest-chi^2
    strictly positive least-squares solution over all 2^k - 1 supports: each is solved here by a
    Cholesky factorisation of the normal equations written as elementwise operations on [n] arrays in
    a fixed order (no LAPACK/BLAS), so the result has the same bits on every CPU. A support that is
    degenerate (pivot below PIVOT_TOL of its diagonal) is skipped; a larger support replaces a smaller
    one only if it lowers chi^2 by more than CHI2_REL_TOL.
    """
    n, m, k = A.shape
    cols = [[A[:, r, j] for r in range(m)] for j in range(k)]
    rows = [b[:, r] for r in range(m)]

    def dot(x, y):
        s = x[0] * y[0]
        for r in range(1, m):
            s = s + x[r] * y[r]
        return s

    G = [[dot(cols[i], cols[j]) for j in range(k)] for i in range(k)]
    h = [dot(cols[i], rows) for i in range(k)]
    best = np.zeros((n, k))
    best_chi = dot(rows, rows)
    floor = best_chi * CHI2_REL_TOL
    for sub in _subsets(k):
        s = len(sub)
        L = [[None] * s for _ in range(s)]
        ok = np.ones(n, bool)
        for i in range(s):  # Cholesky G_S = L L^T
            for j in range(i + 1):
                acc = G[sub[i]][sub[j]]
                for t in range(j):
                    acc = acc - L[i][t] * L[j][t]
                if i == j:
                    ok &= acc > PIVOT_TOL * G[sub[i]][sub[i]]
                    L[i][i] = np.sqrt(np.where(ok, acc, 1.0))
                else:
                    L[i][j] = acc / L[j][j]
        y = [None] * s
        for i in range(s):  # L y = h_S
            acc = h[sub[i]]
            for t in range(i):
                acc = acc - L[i][t] * y[t]
            y[i] = acc / L[i][i]
        c = [None] * s
        for i in reversed(range(s)):  # L^T c = y
            acc = y[i]
            for t in range(i + 1, s):
                acc = acc - L[t][i] * c[t]
            c[i] = acc / L[i][i]
        for ci in c:
            ok &= ci > 0
        resid = []
        for r in range(m):
            pred = cols[sub[0]][r] * c[0]
            for i in range(1, s):
                pred = pred + cols[sub[i]][r] * c[i]
            resid.append(rows[r] - pred)
        chi = dot(resid, resid)
        better = ok & (chi < best_chi - np.maximum(best_chi * CHI2_REL_TOL, floor))
        best_chi = np.where(better, chi, best_chi)
        best[better] = 0.0
        for i, j in enumerate(sub):
            best[better, j] = c[i][better]
    return best


def fit_coeffs(z: np.ndarray, maggies: np.ndarray, ivar: np.ndarray, sdss_ab: bool = True) -> np.ndarray:
    """Non-negative template coefficients [n, 5]: kcorrect's fit (templates, responses, SDSS->AB offsets,
    chi^2 in maggies weighted by ivar) computed with the same bits on every CPU (see `nnls`), from
    inputs rounded by `fit_inputs`. A galaxy's coefficients depend only on its own z and photometry."""
    m_q, iv_q, _ = fit_inputs(maggies, ivar, sdss_ab)
    return fit_coeffs_ab(z, m_q, iv_q)


def fit_coeffs_ab(z: np.ndarray, maggies_ab: np.ndarray, ivar_ab: np.ndarray) -> np.ndarray:
    """fit_coeffs on AB maggies and ivar already rounded by `fit_inputs`."""
    w = np.sqrt(np.asarray(ivar_ab, np.float64))
    A = design_matrix(z) * w[:, :, None]
    return nnls(A, np.asarray(maggies_ab, np.float64) * w)


@lru_cache(maxsize=1)
def templates() -> tuple[np.ndarray, np.ndarray]:
    """kcorrect's default v4 templates: rest wavelength [nw] (A), flux [5, nw] (erg/s/cm^2/A per unit coeff)."""
    from astropy.io import fits

    with fits.open(TEMPLATE_FILE, memmap=False) as hdul:
        row = hdul["FLUX"].data[0]
        wave = np.array(row["wave"], dtype=np.float64).ravel()
        flux = np.array(row["flux"], dtype=np.float64).reshape(-1, wave.size)
    return wave, flux


def wavelengths(loglam: np.ndarray) -> np.ndarray:
    """10**loglam (A) with the same bits on every CPU (numpy's power differs in the last bit by CPU)."""
    return exact.pow10(loglam)


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
    dl = _trapezoid_weights(wave)
    fab = 3631e-23 * 2.99792458e18 / rw**2  # erg/s/cm^2/A of a 3631 Jy source
    denom = np.trapezoid(fab * rr * rw, rw)
    covered = float(np.sum(r_on_grid / wave * dl)) / float(np.trapezoid(rr / rw, rw))
    return r_on_grid * wave * dl / denom, covered


def synthetic_maggies(wave: np.ndarray, flux_1e17: np.ndarray, names=RESPONSES) -> tuple[np.ndarray, np.ndarray]:
    """AB maggies [n, nbands] of spectra in 1e-17 units, and each band's covered fraction."""
    w, cov = zip(*(band_weights(wave, n) for n in names))
    flux = np.atleast_2d(flux_1e17) * FLUX_UNIT
    # a row sum per band, not a matrix product: BLAS kernels (and their summation order) depend on the CPU
    return np.stack([_rowsum(flux * wb) for wb in w], axis=1), np.array(cov)


# ---------------------------------------------------------------- noise model


SKY_LINES = ((5577.3, 30.0), (5891.6, 8.0), (6300.3, 10.0), (6363.8, 4.0))  # [OI], NaD, [OI] (air-ish A, relative strength)


def throughput(wave: np.ndarray) -> np.ndarray:
    """Relative SDSS-like spectrograph throughput, 1 at 6500 A: a logistic blue drop to ~0.15 at 3850 A
    (atmosphere, fibre and blue-CCD losses; SDSS's total throughput falls from ~25% to a few % there)
    and a milder red drop to ~0.5 at 9200 A (red CCD quantum efficiency)."""
    def raw(lam):
        lam = np.asarray(lam, np.float64)
        return 1.0 / (1.0 + exact.exp(-(lam - 4200.0) / 200.0)) / (1.0 + exact.exp((lam - 9300.0) / 400.0))

    return raw(wave) / raw(6500.0)


def sky(wave: np.ndarray) -> np.ndarray:
    """Sky-like background per pixel in 1e-17 units: a continuum rising to the red as lam^2.5
    (airglow, OH forest unresolved) of ~6 at 5500 A (V~21.5 mag/arcsec^2 in a 3" fibre), plus the
    strongest night-sky lines as 1.5 A-sigma Gaussians, whose residuals make SDSS's noise spikes."""
    wave = np.asarray(wave, np.float64)
    cont = 6.0 * exact.power(wave / 5500.0, 2.5)
    lines = sum(a * 6.0 * exact.exp(-0.5 * ((wave - c) / 1.5) ** 2) for c, a in SKY_LINES)
    return cont + lines


READ_NOISE = 10.0  # read noise + dark current per pixel, as an equivalent flux (1e-17 units) at peak throughput


def sigma_shape(model: np.ndarray, wave: np.ndarray, terms: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per-pixel sigma for unit exposure: Poisson noise of object + sky counts plus detector noise, all
    through the throughput T: sigma^2 = (f + sky + READ_NOISE) / T. Where T is low (blue end) the
    detector term dominates, as in SDSS. The exposure scale k (sigma / sqrt(k)) is set by `exposure_scale`.
    terms: noise_terms(wave), when already computed (they cost ~1 s for the full grid)."""
    bg, t = noise_terms(wave) if terms is None else terms
    return np.sqrt((np.clip(model, 0.0, None) + bg) / t)


def noise_terms(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sky + READ_NOISE, throughput) on `wave`: the model-independent parts of sigma_shape."""
    return sky(wave) + READ_NOISE, throughput(wave)


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
    ratio = float(snr_r / np.median(snr_unit))
    return ratio * ratio  # a product, not pow(): libm's pow need not be correctly rounded


def noisy(model: np.ndarray, wave: np.ndarray, k: float, seed: int, gal_ids: np.ndarray,
          terms: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flux + noise, ivar) as float32. Each galaxy's noise comes from its own stream
    default_rng([seed, 1, gal_id]), so a galaxy's noise does not depend on which others are built."""
    sigma = sigma_shape(model, wave, terms) / np.sqrt(k)
    noise = np.stack([np.random.default_rng([seed, 1, int(g)]).standard_normal(wave.size) for g in gal_ids])
    return (model + sigma * noise).astype(np.float32), (1.0 / sigma**2).astype(np.float32)
