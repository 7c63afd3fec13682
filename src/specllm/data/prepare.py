"""Choose the spectra, split them by redshift, resample and rescale them: the prepare stage's library.

Reads the source folder (data/raw, or data/dr16 for the paper profile), draws train/val/test from
equal-frequency redshift bins (specllm.data.binning) so every split covers the whole redshift range
alike, resamples each spectrum from SDSS's log-lambda grid onto a short linear grid (flux-conserving),
and rescales it so its values use one integer digit (LLMTime-style). specllm.stages.prepare is its
main(); the benchmarks (specllm.bench) prepare their spectra with the same functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from spectres import spectres

from specllm import paths
from specllm.data.binning import equal_frequency_bins
from specllm.errors import InputError
from specllm.io import atomic_dir
from specllm.vocab import SPLITS

REQUIRED_COLUMNS = ("gal_id", "z")


def load_source(folder: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """galaxies.csv, loglam.npy, spectra_flux.npy, spectra_ivar.npy, checked against each other."""
    folder = Path(folder)
    fix = "rebuild the source with `make data` (embedded) or `dvc repro fetch_dr16` (dr16)"
    files = {name: folder / name for name in ("galaxies.csv", "loglam.npy", "spectra_flux.npy", "spectra_ivar.npy")}
    for _name, file in files.items():
        if not file.is_file():
            raise InputError(file, "-", "file not found", fix)
    meta = pd.read_csv(files["galaxies.csv"])
    for column in REQUIRED_COLUMNS:
        if column not in meta.columns:
            raise InputError(files["galaxies.csv"], column, f"column missing (found: {', '.join(meta.columns)})",
                             f"restore the column '{column}' or {fix}")
    if not np.isfinite(meta["z"]).all():
        bad = meta.loc[~np.isfinite(meta["z"]), "gal_id"].tolist()[:5]
        raise InputError(files["galaxies.csv"], "z", f"non-finite redshift for gal_id {bad}", fix)
    try:
        loglam = np.load(files["loglam.npy"])
        flux = np.load(files["spectra_flux.npy"], mmap_mode="r")
        ivar = np.load(files["spectra_ivar.npy"], mmap_mode="r")
    except ValueError as err:
        raise InputError(folder, "*.npy", f"not a readable NumPy file ({err})", fix) from None
    if flux.shape != ivar.shape or flux.shape != (len(meta), loglam.size):
        raise InputError(files["spectra_flux.npy"], "shape",
                         f"flux {flux.shape}, ivar {ivar.shape}, {len(meta)} galaxies, {loglam.size} pixels disagree", fix)
    return meta, loglam, flux, ivar


def split_by_bins(bins: np.ndarray, sizes: dict[str, int], n_bins: int, seed: int,
                  params_file: Path = paths.PARAMS) -> dict[str, np.ndarray]:
    """Each split takes size/n_bins galaxies from every bin (the remainder from the lowest bins).

    Test is drawn first, then validation, then training, from one seeded shuffle per bin, so the
    test set does not change when only n_train or n_val change.
    """
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for b in range(n_bins):
        members = rng.permutation(np.flatnonzero(bins == b))
        start = 0
        for split in ("test", "val", "train"):
            quota = sizes[split] // n_bins + (1 if b < sizes[split] % n_bins else 0)
            if start + quota > members.size:
                raise InputError(params_file, f"data.n_{split}",
                                 f"redshift bin {b} holds {members.size} spectra, fewer than the "
                                 f"{sum(sizes.values()) // n_bins + 1} the three splits need from it",
                                 "lower data.n_train/n_val/n_test or data.z_bins")
            chosen[split].append(members[start:start + quota])
            start += quota
    out = {s: np.sort(np.concatenate(chosen[s])) for s in SPLITS}
    for split, idx in out.items():
        if idx.size == 0:
            raise InputError(params_file, f"data.n_{split}", "the split is empty", "give it at least one spectrum")
    return out


def linear_grid(wave_min: float, wave_max: float, n_points: int) -> np.ndarray:
    """Centres of n_points equal-width pixels spanning [wave_min, wave_max]."""
    edges = np.linspace(wave_min, wave_max, n_points + 1)
    return 0.5 * (edges[1:] + edges[:-1])


def resample(loglam: np.ndarray, flux: np.ndarray, ivar: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Flux-conserving log-to-linear resampling (SpectRes, Carnall 2017).

    Masked native pixels (ivar = 0, as in real SDSS spectra) are first filled by linear
    interpolation from their unmasked neighbours, so a bad pixel cannot bias a wide new pixel.
    """
    native = 10.0 ** loglam
    flux = np.array(flux, dtype=np.float64)
    for row in np.flatnonzero((ivar <= 0).any(axis=1)):
        good = ivar[row] > 0
        if good.sum() >= 2:
            flux[row, ~good] = np.interp(native[~good], native[good], flux[row, good])
    return spectres(wave, native, flux, fill=np.nan, verbose=False)


def rescale(flux: np.ndarray, quantile: float, to: float) -> tuple[np.ndarray, np.ndarray]:
    """Divide by the chosen quantile of |flux| and multiply by `to`; return values and the divisor."""
    scale = np.quantile(np.abs(flux), quantile, axis=1) / to
    return flux / scale[:, None], scale


def prepare(source: Path, out: Path, p: dict, params_file: Path = paths.PARAMS) -> dict:
    """Core of the stage, with plain inputs so tests can call it; returns the summary."""
    meta, loglam, flux, ivar = load_source(source)
    lo, hi = 10.0 ** loglam[0], 10.0 ** loglam[-1]
    if p["spectrum.wave_min"] < lo or p["spectrum.wave_max"] > hi:
        raise InputError(params_file, "spectrum.wave_min/wave_max",
                         f"[{p['spectrum.wave_min']}, {p['spectrum.wave_max']}] A leaves the source's coverage "
                         f"[{lo:.1f}, {hi:.1f}] A", "choose a linear grid inside the native wavelength range")
    z = meta["z"].to_numpy(dtype=float)
    edges, bins = equal_frequency_bins(z, p["data.z_bins"])  # over the whole source
    sizes = {s: p[f"data.n_{s}"] for s in SPLITS}
    splits = split_by_bins(bins, sizes, p["data.z_bins"], p["seed"], params_file)
    wave = linear_grid(p["spectrum.wave_min"], p["spectrum.wave_max"], p["spectrum.n_points"])

    results = {}
    for split, idx in splits.items():
        raw = np.asarray(flux[idx], dtype=np.float64)
        bad = ~np.isfinite(raw).all(axis=1)
        if bad.any():
            gal = meta["gal_id"].iloc[idx[bad]].tolist()[:5]
            raise InputError(Path(source) / "spectra_flux.npy", f"gal_id {gal}",
                             f"{int(bad.sum())} spectra hold NaN or infinite flux",
                             "rebuild the source (`make data`), or drop these galaxies from galaxies.csv")
        lin = resample(loglam, raw, np.asarray(ivar[idx]), wave)
        scaled, scale = rescale(lin, p["spectrum.rescale_quantile"], p["spectrum.rescale_to"])
        if not np.isfinite(scaled).all() or (scale <= 0).any():
            gal = meta["gal_id"].iloc[idx[~np.isfinite(scaled).all(axis=1) | (scale <= 0)]].tolist()[:5]
            raise InputError(Path(source) / "spectra_flux.npy", f"gal_id {gal}",
                             "flux is zero or undefined over the linear grid", "drop these galaxies from the source")
        results[split] = (idx, scaled.astype(np.float32), scale)

    with atomic_dir(out) as tmp:  # nothing is written until every split passed its checks
        np.save(tmp / "wavelength.npy", wave)
        for split, (idx, scaled, scale) in results.items():
            np.save(tmp / f"{split}_flux.npy", scaled)
            pd.DataFrame({"gal_id": meta["gal_id"].iloc[idx].to_numpy(), "z": z[idx], "z_bin": bins[idx],
                          "scale": scale}).to_csv(tmp / f"{split}_meta.csv", index=False, float_format="%.8g")
    return {
        "profile": p["profile"], "source": p["data.source"], "n_source": int(len(meta)),
        **{f"n_{s}": int(results[s][0].size) for s in SPLITS},
        "z_bins": int(p["data.z_bins"]), "bin_edges": [float(e) for e in edges],
        "z_min": float(z.min()), "z_max": float(z.max()),
        "wave_min": float(p["spectrum.wave_min"]), "wave_max": float(p["spectrum.wave_max"]),
        "n_points": int(p["spectrum.n_points"]),
    }
