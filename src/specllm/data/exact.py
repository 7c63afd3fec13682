"""CPU-independent arithmetic for the embedded data build: the same bits on every x86-64 CPU.

Why: numpy picks its transcendental kernels (exp, log10, power) by CPU feature at run time (AVX-512
hosts use other implementations than AVX2 hosts, differing in the last bit), and OpenBLAS picks its
kernels by CPU too. A last-bit difference in an input of an ill-conditioned step (the template fit)
moved fitted coefficients by up to 1.5% and model spectra by up to 7e-6 (measured with numpy's
AVX-512 dispatch switched off), so data/raw's bytes depended on the host. The build therefore
uses only:

* IEEE-754 basic operations (+ - * / sqrt), elementwise, in a fixed order: correctly rounded, so
  identical on every CPU whatever the SIMD width (no BLAS, no reductions whose order a kernel picks);
* transcendental functions evaluated here with Python's `decimal` (pure integer arithmetic in
  libmpdec, the same on every machine) and rounded once to float64;
* `quantize`: values that come out of CPU-dependent code (numpy's power/exp in the dereddening,
  scipy's samplers) are rounded to a grid far coarser than their last-bit noise before anything
  stored depends on them. `margin` says how far each value was from a rounding boundary, in grid
  units: a host whose values differ by less than that stores the same bits.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

PREC = 24  # decimal digits: float64 needs 17; the extra digits make the final rounding to float64 correct
# almost always, and it is deterministic always (what matters here)


def _apply(fn, x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    with localcontext(prec=PREC):
        out = [float(fn(Decimal(v))) for v in arr.ravel().tolist()]
    return np.array(out, dtype=np.float64).reshape(arr.shape)


def log10(x) -> np.ndarray:
    """log10 of positive values (float64), the same bits on every CPU."""
    return _apply(lambda d: d.log10(), x)


def exp(x) -> np.ndarray:
    return _apply(lambda d: d.exp(), x)


def pow10(x) -> np.ndarray:
    """10**x, the same bits on every CPU."""
    with localcontext(prec=PREC):
        ln10 = Decimal(10).ln()
    return _apply(lambda d: (d * ln10).exp(), x)


def power(x, p: float) -> np.ndarray:
    """x**p for positive x, the same bits on every CPU."""
    dp = Decimal(p)
    return _apply(lambda d: (d.ln() * dp).exp(), x)


def quantize_bits(x, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Round each value to `bits` significant bits (relative grid 2^-bits..2^(1-bits)), exactly (frexp/ldexp
    are exact; rint rounds half to even). Returns (rounded, margin): margin is the distance of each scaled
    value from the nearest rounding boundary in grid units (0.5 = on the grid, 0 = on a boundary); zeros
    and non-finite values stay as they are, with margin 0.5."""
    x = np.asarray(x, dtype=np.float64)
    mant, expo = np.frexp(x)
    scaled = np.ldexp(mant, bits)
    ok = np.isfinite(x) & (x != 0)
    q = np.where(ok, np.ldexp(np.rint(scaled), expo - bits), x)
    with np.errstate(invalid="ignore"):  # inf - inf where x is not finite (margin 0.5 there)
        frac = np.abs(scaled - np.floor(scaled))
    return q, np.where(ok, np.abs(frac - 0.5), 0.5)


def quantize_step(x, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Round to a fixed absolute grid (e.g. 1e-4 mag); (rounded, margin in grid units) as quantize_bits."""
    x = np.asarray(x, dtype=np.float64)
    scaled = x / step
    ok = np.isfinite(x)
    q = np.where(ok, np.rint(scaled) * step, x)
    with np.errstate(invalid="ignore"):
        frac = np.abs(scaled - np.floor(scaled))
    return q, np.where(ok, np.abs(frac - 0.5), 0.5)
