"""Simulated stars for the classification catalogue: ugriz drawn on published SDSS stellar loci.

Why loci and not synthetic spectra: kcorrect 5.1.9 ships only two BaSeL spectra (Kurucz Vega and
Sun, `kcorrect/data/basel/lcb{vega,sun}.ori`) plus the parameter list `models.dat`; the 8,315 model
fluxes (lcb*.ori/cor) are not in the wheel, and no installed package has a stellar library. So the
stars' colours come from empirical fits to millions of SDSS stars, which is closer to what SDSS17
contains than synthetic photometry would be:

* F/G/K dwarfs: Yuan et al. 2015 (ApJ 799, 134), Table 1: u-g, g-r, r-i, i-z as polynomials in
  x = g-i and y = [Fe/H]; valid for 0.3 < g-i < 1.6 and -2 < [Fe/H] < 0.
* G/K giants: Zhang et al. 2021 (RAA 21, 319), Table 1: same form, 0.55 < g-i < 1.2, -2.5 < [Fe/H] < -0.3.
* A/BHB stars (g-i < 0.3): a straight line in colour space from the synthetic ugriz of the Kurucz
  Vega model (A0V, computed here through kcorrect's SDSS responses) to the dwarf locus at g-i = 0.3.
* M dwarfs (g-i > 1.6): the dwarf locus at g-i = 1.6 continued with the saturation SDSS shows for M
  dwarfs (Covey et al. 2007, AJ 134, 2398; West et al. 2011, AJ 141, 97): u-g stays put, g-r grows
  slowly (0.18 per mag of g-i), r-i takes the rest, i-z grows by 0.5 per mag of r-i. Approximate:
  colours good to ~0.1 mag, enough for a classification catalogue, not for stellar astrophysics.

Class mix (SDSS spectroscopic stars are mostly F/G/K, with M dwarfs and A/BHB stars): 8% A/BHB,
72% F/G/K dwarfs, 8% G/K giants, 12% M dwarfs. [Fe/H]: 60% thin/thick disc N(-0.5, 0.25), 40% halo
N(-1.4, 0.35) for dwarfs; giants and BHB stars N(-1.3, 0.5) (SEGUE targets many halo stars).
r ~ N(18, 1.6) truncated to 14-21 (SDSS/SEGUE spectroscopic range). Radial velocity: 70% N(0, 40),
30% N(0, 150) km/s truncated to |v| < 500 km/s; redshift = v/c (so |z| < 0.0017, negative allowed).
Intrinsic locus scatter: 0.04 mag in u-g, 0.02 in the others (Yuan et al. report 0.02-0.05).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

from specllm.data import galaxies

C_KMS = 299792.458
CLASS_MIX = (("A/BHB", 0.08), ("FGK dwarf", 0.72), ("GK giant", 0.08), ("M dwarf", 0.12))

# Yuan et al. 2015, Table 1. u-g: b0..b14 of
# b0 + b1 y + b2 y^2 + b3 y^3 + b4 y^4 + b5 x + b6 xy + b7 xy^2 + b8 xy^3 + b9 x^2 + b10 x^2 y
#    + b11 x^2 y^2 + b12 x^3 + b13 x^3 y + b14 x^4          (x = g-i, y = [Fe/H])
_YUAN_UG = (1.5003, 0.0011, 0.1741, 0.0910, 0.0181, -3.2190, 1.1675, 0.0875, 0.0031, 7.9725,
            -0.8190, -0.0439, -5.2923, 0.1339, 1.1459)
# g-r, r-i, i-z: a0..a9 of a0 + a1 y + a2 y^2 + a3 y^3 + a4 x + a5 xy + a6 xy^2 + a7 x^2 + a8 x^2 y + a9 x^3
_YUAN_GR = (0.0596, 0.0348, 0.0239, 0.0044, 0.6070, 0.0261, -0.0044, 0.1532, -0.0136, -0.0613)
_YUAN_RI = (-0.0596, -0.0348, -0.0239, -0.0044, 0.3930, -0.0261, 0.0044, -0.1532, 0.0136, 0.0613)
_YUAN_IZ = (-0.1060, -0.0357, -0.0123, -0.0017, 0.2543, -0.0010, -0.0050, -0.0381, -0.0071, 0.0030)
# Zhang et al. 2021, Table 1 (red giants): u-g, g-r, r-i, i-z, all in the 10-term form above
_ZHANG = (
    (1.4630, 0.3132, -0.0105, -0.0224, -1.5851, -0.2423, -0.0372, 2.8655, 0.0958, -0.7469),
    (0.0957, 0.0370, 0.0120, 0.0020, 0.5272, -0.0026, 0.0019, 0.1645, 0.0057, -0.0488),
    (-0.0957, -0.0370, -0.0120, -0.0020, 0.4728, 0.0026, -0.0019, -0.1645, -0.0057, 0.0488),
    (-0.0551, -0.0229, -0.0165, -0.0033, 0.0762, -0.0365, -0.0006, 0.1899, 0.0244, -0.0805),
)


def _poly10(a, x, y):
    return (a[0] + a[1] * y + a[2] * y**2 + a[3] * y**3 + a[4] * x + a[5] * x * y + a[6] * x * y**2
            + a[7] * x**2 + a[8] * x**2 * y + a[9] * x**3)


def dwarf_locus(gi, feh) -> np.ndarray:
    """Yuan et al. 2015 main-sequence colours [..., 4] = (u-g, g-r, r-i, i-z)."""
    x, y, b = np.asarray(gi, float), np.asarray(feh, float), _YUAN_UG
    ug = (b[0] + b[1] * y + b[2] * y**2 + b[3] * y**3 + b[4] * y**4 + b[5] * x + b[6] * x * y
          + b[7] * x * y**2 + b[8] * x * y**3 + b[9] * x**2 + b[10] * x**2 * y + b[11] * x**2 * y**2
          + b[12] * x**3 + b[13] * x**3 * y + b[14] * x**4)
    return np.stack([ug, _poly10(_YUAN_GR, x, y), _poly10(_YUAN_RI, x, y), _poly10(_YUAN_IZ, x, y)], axis=-1)


def giant_locus(gi, feh) -> np.ndarray:
    """Zhang et al. 2021 red-giant colours [..., 4]."""
    x, y = np.asarray(gi, float), np.asarray(feh, float)
    return np.stack([_poly10(a, x, y) for a in _ZHANG], axis=-1)


@lru_cache(maxsize=1)
def vega_colours() -> np.ndarray:
    """(u-g, g-r, r-i, i-z, g-i) of kcorrect's Kurucz Vega model through kcorrect's SDSS responses."""
    import kcorrect.utils

    _, wave_nm, fnu = kcorrect.utils.read_basel(str(galaxies.kcorrect_file("basel", "lcbvega.ori")))
    wave = wave_nm.astype(np.float64) * 10.0
    keep = (wave > 2500.0) & (wave < 12000.0)
    flam = fnu[0].astype(np.float64) * 2.99792458e18 / wave**2  # f_nu -> f_lambda
    maggies, _ = galaxies.synthetic_maggies(wave[keep], flam[keep][None, :] / galaxies.FLUX_UNIT)
    mag = -2.5 * np.log10(maggies[0])
    return np.array([*(mag[:-1] - mag[1:]), mag[1] - mag[3]])


def m_dwarf_locus(gi, feh) -> np.ndarray:
    """Dwarf locus at g-i = 1.6 continued with the M-dwarf colour saturation (see module notes)."""
    gi = np.asarray(gi, float)
    base = dwarf_locus(np.full_like(gi, 1.6), feh)
    d = gi - 1.6
    gr = base[..., 1] + 0.18 * d
    ri = gi - gr
    iz = base[..., 3] + 0.5 * (ri - base[..., 2])
    return np.stack([base[..., 0], gr, ri, iz], axis=-1)


def a_star_locus(gi, feh) -> np.ndarray:
    """Straight line from Vega's colours to the dwarf locus at g-i = 0.3."""
    gi = np.asarray(gi, float)
    vega = vega_colours()
    end = dwarf_locus(np.full_like(gi, 0.3), feh)
    t = ((gi - vega[4]) / (0.3 - vega[4]))[..., None]
    return vega[:4] + t * (end - vega[:4])


def _truncnorm(rng, mean, sd, lo, hi, n):
    return stats.truncnorm.rvs((lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd, size=n, random_state=rng)


def simulate(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n stars: intrinsic (extinction-free, noise-free) ugriz, redshift, class label, [Fe/H], g-i."""
    names = np.array([c for c, _ in CLASS_MIX])
    kind = rng.choice(len(CLASS_MIX), size=n, p=[w for _, w in CLASS_MIX])
    gi = np.empty(n)
    feh = np.empty(n)
    colours = np.empty((n, 4))
    draws = {
        0: (lambda m: rng.uniform(vega_colours()[4], 0.3, m), lambda m: _truncnorm(rng, -1.3, 0.5, -2.0, 0.0, m), a_star_locus),
        1: (lambda m: np.where(rng.random(m) < 0.55, _truncnorm(rng, 0.65, 0.12, 0.3, 1.6, m), rng.uniform(0.3, 1.6, m)),
            lambda m: np.where(rng.random(m) < 0.6, _truncnorm(rng, -0.5, 0.25, -2.0, 0.0, m), _truncnorm(rng, -1.4, 0.35, -2.0, 0.0, m)),
            dwarf_locus),
        2: (lambda m: rng.uniform(0.55, 1.2, m), lambda m: _truncnorm(rng, -1.3, 0.5, -2.5, -0.3, m), giant_locus),
        3: (lambda m: np.minimum(1.6 + rng.exponential(0.6, m), 3.4), lambda m: _truncnorm(rng, -0.3, 0.2, -1.0, 0.0, m), m_dwarf_locus),
    }
    for k, (draw_gi, draw_feh, locus) in draws.items():
        sel = np.flatnonzero(kind == k)
        gi[sel], feh[sel] = draw_gi(sel.size), draw_feh(sel.size)
        colours[sel] = locus(gi[sel], feh[sel])
    colours += rng.normal(0.0, 1.0, (n, 4)) * np.array([0.04, 0.02, 0.02, 0.02])
    r = _truncnorm(rng, 18.0, 1.6, 14.0, 21.0, n)
    g = r + colours[:, 1]
    mags = np.stack([g + colours[:, 0], g, r, r - colours[:, 2], r - colours[:, 2] - colours[:, 3]], axis=1)
    v = np.where(rng.random(n) < 0.7, _truncnorm(rng, 0.0, 40.0, -500.0, 500.0, n), _truncnorm(rng, 0.0, 150.0, -500.0, 500.0, n))
    return {"mags": mags, "redshift": v / C_KMS, "kind": names[kind], "feh": feh, "gi": gi}
