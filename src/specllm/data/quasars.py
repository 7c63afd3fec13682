"""Simulated quasars for the classification catalogue: a documented parametric spectrum through SDSS filters.

Rest-frame model (all quasars are independent draws):

* continuum f_nu ~ nu^alpha with alpha ~ N(-0.5, 0.3) (Vanden Berk et al. 2001, AJ 122, 549 find
  -0.44 for the SDSS composite; individual slopes scatter by ~0.3);
* broad lines as Gaussians in wavelength with FWHM = 4000 km/s x 10^N(0, 0.12) and rest equivalent
  widths near the SDSS composite's (Vanden Berk et al. 2001, Table 2, rounded), each scaled by
  10^N(0, 0.2): Ly-alpha 70 A, N V 15 A, C IV 25 A, C III] 20 A, Mg II 30 A, H-beta 45 A, H-alpha 190 A;
  no Fe II pseudo-continuum, Balmer continuum or host galaxy (stated as a simplification);
* intergalactic H I absorption blueward of Ly-alpha: Madau 1995 (ApJ 441, 18) mean effective optical
  depth, Lyman-series blanketing (eqs. 12 and 15: A = 3.6e-3, 1.7e-3, 1.2e-3, 9.3e-4 for Ly-alpha..delta,
  tau = A (lam_obs/lam_j)^3.46) plus the photoelectric Lyman-continuum term (his footnote 3 fit).

Redshifts mimic SDSS DR16Q (Lyke et al. 2020): 4% at 0.1-0.5, 81% in a broad peak N(1.8, 0.6)
truncated to 0.5-3.0, 15% in a tail 2.2 + Exp(0.7) truncated at 5.2. r ~ N(19.5, 0.9) truncated to 17-21.
The observed spectrum is integrated through speclite's `sdss2010-*` responses (Doi et al. 2010) and
shifted so its r magnitude equals the drawn r.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

C_KMS = 299792.458
LINES = (  # name, vacuum rest wavelength (A), typical rest EW (A)
    ("Lya", 1215.67, 70.0), ("NV", 1240.14, 15.0), ("CIV", 1549.06, 25.0), ("CIII]", 1908.73, 20.0),
    ("MgII", 2798.75, 30.0), ("Hb", 4862.68, 45.0), ("Ha", 6564.61, 190.0),
)
LYMAN = ((1215.67, 3.6e-3), (1025.72, 1.7e-3), (972.54, 1.2e-3), (949.74, 9.3e-4))  # Madau 1995
OBS_WAVE = np.arange(2900.0, 11402.0, 2.0)  # covers sdss2010 u (2939 A) .. z (11141 A)


@lru_cache(maxsize=1)
def sdss_filters():
    import speclite.filters

    return speclite.filters.load_filters("sdss2010-*")


def madau_transmission(lam_obs: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean IGM transmission exp(-tau) [n, nwave] (Madau 1995)."""
    lam = np.asarray(lam_obs, float)[None, :]
    zem = 1.0 + np.asarray(z, float)[:, None]
    tau = np.zeros(np.broadcast_shapes(lam.shape, zem.shape))
    for lam_j, a_j in LYMAN:
        tau += np.where(lam < lam_j * zem, a_j * (lam / lam_j) ** 3.46, 0.0)
    xc = lam / 911.75
    lyc = (0.25 * xc**3 * (zem**0.46 - xc**0.46) + 9.4 * xc**1.5 * (zem**0.18 - xc**0.18)
           - 0.7 * xc**3 * (xc**-1.32 - zem**-1.32) - 0.023 * (zem**1.68 - xc**1.68))
    tau += np.where(xc < zem, np.clip(lyc, 0.0, None), 0.0)
    return np.exp(-tau)


def observed_spectra(z, alpha, ew_scale, fwhm_kms, lam_obs=OBS_WAVE) -> np.ndarray:
    """f_lambda [n, nwave] (arbitrary normalisation) of the model quasars at lam_obs."""
    z, alpha = np.asarray(z, float), np.asarray(alpha, float)
    rest = lam_obs[None, :] / (1.0 + z[:, None])
    cont = (rest / 1450.0) ** (-(2.0 + alpha[:, None]))  # f_nu ~ nu^a  <=>  f_lambda ~ lam^-(2+a)
    flux = cont.copy()
    for j, (_, lam0, ew) in enumerate(LINES):
        sigma = fwhm_kms[:, j : j + 1] / C_KMS * lam0 / 2.3548
        c0 = (lam0 / 1450.0) ** (-(2.0 + alpha[:, None]))
        area = ew * ew_scale[:, j : j + 1] * c0
        flux += area * np.exp(-0.5 * ((rest - lam0) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    return flux * madau_transmission(lam_obs, z) / (1.0 + z[:, None])


def draw_redshifts(n: int, rng: np.random.Generator) -> np.ndarray:
    part = rng.choice(3, size=n, p=[0.04, 0.81, 0.15])
    low = rng.uniform(0.1, 0.5, n)
    peak = stats.truncnorm.rvs((0.5 - 1.8) / 0.6, (3.0 - 1.8) / 0.6, loc=1.8, scale=0.6, size=n, random_state=rng)
    # exponential tail above z = 2.2 truncated at 5.2 (inverse CDF, so no pile-up at the cap)
    tail = 2.2 - 0.7 * np.log1p(-rng.random(n) * -np.expm1(-3.0 / 0.7))
    return np.choose(part, [low, peak, tail])


def simulate(n: int, rng: np.random.Generator, chunk: int = 500) -> dict[str, np.ndarray]:
    """n quasars: intrinsic (extinction-free, noise-free) ugriz, redshift, alpha."""
    z = draw_redshifts(n, rng)
    alpha = rng.normal(-0.5, 0.3, n)
    ew_scale = 10.0 ** rng.normal(0.0, 0.2, (n, len(LINES)))
    fwhm = 4000.0 * 10.0 ** rng.normal(0.0, 0.12, (n, len(LINES)))
    r = stats.truncnorm.rvs((17.0 - 19.5) / 0.9, (21.0 - 19.5) / 0.9, loc=19.5, scale=0.9, size=n, random_state=rng)
    mags = np.empty((n, 5))
    filters = sdss_filters()
    for s in range(0, n, chunk):  # 500 x 4251 pixels at a time keeps memory small
        sl = slice(s, s + chunk)
        spec = observed_spectra(z[sl], alpha[sl], ew_scale[sl], fwhm[sl])
        table = filters.get_ab_maggies(spec, OBS_WAVE)
        maggies = np.stack([np.asarray(table[name], float) for name in filters.names], axis=1)
        with np.errstate(divide="ignore"):
            m = -2.5 * np.log10(np.clip(maggies, 1e-300, None))
        mags[sl] = m - m[:, 2:3] + r[sl, None]
    # a z > 4 quasar is a u (and g) dropout: keep it faint but finite, as SDSS photometry would
    return {"mags": np.minimum(mags, 30.0), "redshift": z, "alpha": alpha}
