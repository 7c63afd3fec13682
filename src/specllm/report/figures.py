"""One function per figure of the paper; each writes <stem>.pdf (for LaTeX) and <stem>.png.

Determinism: Agg backend, fixed rcParams (svg.hashsalt, pdf.fonttype 42, fixed fonts and sizes),
PDFs saved without CreationDate/ModDate, PNGs without the Software tag, and no randomness in
any plot (the inputs fix the order of every point). Same inputs -> byte-identical files.

Sizes: single-column figures are 3.4 in wide, double-column (figure*) 7.0 in.
Each figure's caption in the paper links this file (\\LinkFigure<Stem>, written by the provenance stage
from the figure's row in specllm.artifacts.REGISTRY, which names the function).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from specllm.metrics import OUTLIER_DZ  # noqa: E402  (the baseline table's f_out and the figures' outlier lines)

SINGLE = 3.4  # inches, one column of the two-column paper
DOUBLE = 7.0

RC = {
    "svg.hashsalt": "specllm",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "pdf.compression": 6,
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.labelsize": 7.5,
    "axes.titlesize": 7.5,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "axes.linewidth": 0.6,
    "lines.linewidth": 0.9,
    "savefig.dpi": 200,
    "figure.dpi": 100,
    "path.simplify": False,
    "image.interpolation": "nearest",
}

# Okabe & Ito's colour-blind-safe palette (blue, vermillion, bluish green) for the three classes. verify
# compares these figures by their data files (specllm.artifacts), so a colour is no reported value.
CLASS_COLOURS = {"GALAXY": "#0072B2", "STAR": "#D55E00", "QSO": "#009E73"}
SPLIT_COLOURS = {"train": "#1b6ca8", "val": "#e39b2d", "test": "#2a9d3f"}
METHOD_COLOURS = ("#1b6ca8", "#d1495b", "#2a9d3f", "#7b4ea3", "#e39b2d")


def _style():
    return plt.rc_context(RC)


def save(fig, stem: Path) -> list[Path]:
    """Write stem.pdf and stem.png deterministically; close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    fig.savefig(png, format="png", dpi=RC["savefig.dpi"], metadata={"Software": None})
    plt.close(fig)
    return [pdf, png]


def redshift_distribution(z_by_split: Mapping[str, Sequence[float]], bin_edges: Sequence[float],
                          stem: Path) -> list[Path]:
    """Redshift density of each split, histogrammed in the equal-frequency bins themselves
    (edges as grey lines): stratified splits trace the same steps."""
    from matplotlib.lines import Line2D

    edges = np.asarray(bin_edges, dtype=float)
    with _style():
        fig, ax = plt.subplots(figsize=(SINGLE, 2.0), layout="constrained")
        for edge in edges:
            ax.axvline(edge, color="0.82", lw=0.5, zorder=0)
        handles = []
        for k, (name, z) in enumerate(z_by_split.items()):
            z = np.asarray(z, dtype=float)
            colour = SPLIT_COLOURS.get(name, METHOD_COLOURS[k % len(METHOD_COLOURS)])
            ax.hist(z, bins=edges, density=True, histtype="step", lw=1.0, color=colour,
                    ls=("-", "--", ":")[k % 3])
            handles.append(Line2D([], [], color=colour, ls=("-", "--", ":")[k % 3], label=f"{name} ({len(z)})"))
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("spectroscopic redshift $z$")
        ax.set_ylabel("density")
        ax.legend(handles=handles, frameon=False, loc="upper right")
        return save(fig, stem)


def example_spectrum(wave: Sequence[float], series: Sequence[float], text: str, stem: Path, *,
                     flux: Sequence[float] | None = None, z: float | None = None,
                     excerpt_chars: int = 300) -> list[Path]:
    """The serialized series of one spectrum on the linear grid, and its text (an excerpt).

    series: the values decoded from the text itself (so the plot shows what the model reads);
    flux: optionally the unrounded rescaled flux of the same spectrum, drawn underneath.
    """
    wave = np.asarray(wave, dtype=float)
    series = np.asarray(series, dtype=float)
    if len(series) != len(wave):
        raise ValueError(f"{len(series)} serialized values for a grid of {len(wave)} pixels")
    excerpt = text if len(text) <= excerpt_chars else text[:excerpt_chars] + " ..."
    lines = textwrap.wrap(excerpt.replace("\n", " / "), width=66, break_on_hyphens=False)
    with _style():
        fig = plt.figure(figsize=(SINGLE, 1.75 + 0.095 * len(lines)))
        text_h = (0.1 + 0.095 * len(lines)) / fig.get_figheight()
        ax = fig.add_axes((0.14, text_h + 0.17, 0.83, 0.80 - text_h - 0.17 + 0.08))
        if flux is not None:
            ax.plot(wave, np.asarray(flux, dtype=float), color="0.6", lw=0.8, label="rescaled flux")
        ax.step(wave, series, where="mid", color="#1b6ca8", lw=0.9, label="serialized values")
        ax.set_xlabel(r"observed wavelength [$\mathrm{\AA}$]", labelpad=1)
        ax.set_ylabel("rescaled flux")
        ax.set_xlim(wave[0], wave[-1])
        label = f"z = {z:.3f}" if z is not None else None
        ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, borderaxespad=0.1,
                  handlelength=1.5, title=None)
        if label:
            ax.text(1.0, 1.02, label, transform=ax.transAxes, ha="right", va="bottom")
        fig.text(0.02, text_h - 0.02, "\n".join(lines), family="DejaVu Sans Mono", fontsize=5.3,
                 va="top", ha="left")
        return save(fig, stem)


def real_vs_reconstructed(comparisons: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                          stem: Path) -> list[Path]:
    """Real SDSS spectra next to their photometry-constrained template reconstructions.

    Each comparison is a dict with wave, real_flux, reconstructed_flux, z and name (one panel
    each, side by side). Fluxes are drawn as given (the producer puts them on one scale).
    """
    if isinstance(comparisons, Mapping):
        comparisons = [comparisons]
    n = len(comparisons)
    if n == 0:
        raise ValueError("no comparisons to plot")
    with _style():
        fig, axes = plt.subplots(1, n, figsize=(DOUBLE, 2.1), layout="constrained", squeeze=False)
        for ax, comp in zip(axes[0], comparisons, strict=True):
            wave = np.asarray(comp["wave"], dtype=float)
            ax.plot(wave, np.asarray(comp["real_flux"], dtype=float), color="0.35", lw=0.5, label="SDSS spectrum")
            ax.plot(wave, np.asarray(comp["reconstructed_flux"], dtype=float), color="#d1495b", lw=0.8,
                    label="reconstruction")
            name = str(comp.get("name", "")).replace("_", " ")
            ax.set_title(f"{name} (z = {float(comp['z']):.4f})" if name else f"z = {float(comp['z']):.4f}")
            ax.set_xlabel(r"observed wavelength [$\mathrm{\AA}$]")
            ax.set_xlim(wave.min(), wave.max())
        axes[0][0].set_ylabel("flux (arbitrary units)")
        axes[0][0].legend(frameon=False, loc="best")
        return save(fig, stem)


def colour_colour(catalogue: pd.DataFrame, stem: Path) -> list[Path]:
    """u-g against g-r of the classification catalogue, coloured by class;
    real objects as filled dots, simulated ones as open circles."""
    with _style():
        fig, ax = plt.subplots(figsize=(SINGLE, 2.9), layout="constrained")
        ug = catalogue["u"].to_numpy(float) - catalogue["g"].to_numpy(float)
        gr = catalogue["g"].to_numpy(float) - catalogue["r"].to_numpy(float)
        sim = catalogue["simulated"].to_numpy(bool)
        classes = [c for c in ("GALAXY", "STAR", "QSO") if c in set(catalogue["class"])]
        classes += sorted(set(catalogue["class"]) - set(classes))
        for cls in classes:
            sel = catalogue["class"].to_numpy() == cls
            colour = CLASS_COLOURS.get(cls, "0.3")
            for simulated in (False, True):
                m = sel & (sim == simulated)
                if not m.any():
                    continue
                name = {"GALAXY": "galaxy", "STAR": "star", "QSO": "quasar"}.get(cls, cls.lower())
                label = f"{name} ({'simulated' if simulated else 'real'}, {int(m.sum())})"
                kw = ({"facecolors": "none", "edgecolors": colour, "linewidths": 0.3} if simulated
                      else {"c": colour, "linewidths": 0})
                ax.scatter(gr[m], ug[m], s=1.5, alpha=0.6, label=label, rasterized=True, **kw)
        finite = np.isfinite(gr) & np.isfinite(ug)
        if finite.any():
            ax.set_xlim(*np.quantile(gr[finite], [0.002, 0.998]) + np.array([-0.2, 0.2]))
            ax.set_ylim(*np.quantile(ug[finite], [0.002, 0.998]) + np.array([-0.2, 0.2]))
        ax.set_xlabel("$g-r$ [mag]")
        ax.set_ylabel("$u-g$ [mag]")
        ax.legend(frameon=False, loc="upper left", markerscale=4, handletextpad=0.2)
        return save(fig, stem)


def baseline_predictions(predictions: pd.DataFrame, methods: Mapping[str, str], best: str,
                         stem: Path) -> list[Path]:
    """Predicted against true redshift, one panel per method (keys of `methods`, in order),
    with the 1:1 line and the outlier limits |dz|/(1+z) = 0.15. One column wide."""
    z_true = predictions["z_true"].to_numpy(float)
    hi = float(max(z_true.max(), *(predictions[k].to_numpy(float).max() for k in methods))) * 1.05
    lo = min(0.0, float(min(predictions[k].to_numpy(float).min() for k in methods)))
    grid = np.linspace(lo, hi, 50)
    n = len(methods)
    with _style():
        fig, axes = plt.subplots(1, n, figsize=(SINGLE, SINGLE / n + 0.55), layout="constrained",
                                 squeeze=False, sharex=True, sharey=True)
        for i, (ax, (key, label)) in enumerate(zip(axes[0], methods.items(), strict=True)):
            z_pred = predictions[key].to_numpy(float)
            ax.plot(grid, grid, color="0.2", lw=0.6)
            for s in (1, -1):
                ax.plot(grid, grid + s * OUTLIER_DZ * (1 + grid), color="0.6", lw=0.5, ls="--")
            ax.scatter(z_true, z_pred, s=2, color=METHOD_COLOURS[i % len(METHOD_COLOURS)], linewidths=0,
                       alpha=0.7, rasterized=True)
            ax.set_title(label + (" (best)" if key == best else ""))
            ax.set_xlabel(r"true $z$")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal")
        axes[0][0].set_ylabel(r"predicted $z$")
        return save(fig, stem)


def _outlier_guides(ax, grid) -> None:
    ax.plot(grid, grid, color="0.2", lw=0.6)
    for s in (1, -1):
        ax.plot(grid, grid + s * OUTLIER_DZ * (1 + grid), color="0.6", lw=0.5, ls="--")


def ablation_predictions(predictions: pd.DataFrame, run: str, stem: Path) -> list[Path]:
    """The chosen LoRA run's parsed predictions against true redshift, validation and test, with
    the 1:1 line and the outlier limits; unparsed answers are drawn as ticks below the axis so
    they are never dropped silently. One column wide."""
    df = predictions.copy()
    df["parsed"] = df["parsed"].astype(str).str.lower().isin(("true", "1"))
    z_true = df["z_true"].to_numpy(float)
    z_pred = pd.to_numeric(df["z_pred"], errors="coerce").to_numpy(float)
    ok = df["parsed"].to_numpy() & np.isfinite(z_pred)
    hi = float(np.nanmax(np.concatenate([z_true, z_pred[ok]]))) * 1.05 if len(df) else 1.0
    lo = min(0.0, float(np.nanmin(z_pred[ok]))) if ok.any() else 0.0
    grid = np.linspace(lo, hi, 50)
    with _style():
        fig, ax = plt.subplots(figsize=(SINGLE, SINGLE * 0.8), layout="constrained")
        _outlier_guides(ax, grid)
        for split, colour in (("val", SPLIT_COLOURS["val"]), ("test", SPLIT_COLOURS["test"])):
            m = (df["split"] == split).to_numpy()
            n_bad = int((m & ~ok).sum())
            ax.scatter(z_true[m & ok], z_pred[m & ok], s=5, color=colour, linewidths=0, alpha=0.8,
                       label=f"{split}: {int((m & ok).sum())} parsed, {n_bad} unparsed")
            if n_bad:
                ax.plot(z_true[m & ~ok], np.full(n_bad, lo), "|", color=colour, ms=6, clip_on=False)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(r"true $z$")
        ax.set_ylabel(r"predicted $z$")
        ax.set_title(f"LoRA run {run} (chosen on validation)")
        ax.legend(frameon=False, loc="upper left")
        return save(fig, stem)


def ablation_per_bin(per_bin: pd.DataFrame, run: str, baseline: pd.DataFrame, baseline_label: str,
                     bin_edges: Sequence[float], stem: Path) -> list[Path]:
    """Test MAE per redshift bin for the chosen LoRA run (and the default run when it differs) and
    the best non-language baseline on the same spectra; below, the share of unparsed answers."""
    edges = np.asarray(bin_edges, float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    zb = np.clip(np.digitize(baseline["z_true"].to_numpy(float), edges[1:-1]), 0, len(centres) - 1)
    err = np.abs(baseline["z_pred"].to_numpy(float) - baseline["z_true"].to_numpy(float))
    base_mae = np.array([err[zb == b].mean() if (zb == b).any() else np.nan for b in range(len(centres))])
    test = per_bin[per_bin["split"] == "test"]
    shown = [run] + (["default"] if run != "default" and "default" in set(test["run"]) else [])
    with _style():
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(SINGLE, SINGLE * 0.85), layout="constrained", sharex=True,
                                      height_ratios=(3, 1))
        ax.plot(centres, base_mae, "s-", color="0.45", ms=3, label=baseline_label)
        for i, name in enumerate(shown):
            t = test[test["run"] == name].sort_values("z_bin")
            x = centres[t["z_bin"].to_numpy(int)]
            mae = pd.to_numeric(t["mae"], errors="coerce").to_numpy(float)
            colour = METHOD_COLOURS[i % len(METHOD_COLOURS)]
            ax.plot(x, mae, "o-", color=colour, ms=3, label=f"LoRA {name}" + (" (chosen)" if name == run else ""))
            share = t["n_unparsed"].to_numpy(float) / np.maximum(t["n"].to_numpy(float), 1)
            ax2.plot(x, share, "o-", color=colour, ms=3)
        ax.set_ylabel("test MAE")
        ax.legend(frameon=False)
        ax2.set_ylabel("unparsed")
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_xlabel(r"true $z$ (bin centre)")
        return save(fig, stem)


def loss_curves(losses: Mapping[str, pd.DataFrame], best: str, stem: Path) -> list[Path]:
    """Training loss (answer tokens only) against epoch for every LoRA run; the chosen one thicker."""
    with _style():
        fig, ax = plt.subplots(figsize=(SINGLE, SINGLE * 0.7), layout="constrained")
        for i, (name, df) in enumerate(losses.items()):
            ax.plot(df["epoch"].to_numpy(float), df["loss"].to_numpy(float), color=METHOD_COLOURS[i % len(METHOD_COLOURS)]
                    if i < len(METHOD_COLOURS) else f"C{i}", lw=1.6 if name == best else 0.7,
                    label=name + (" (chosen)" if name == best else ""))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.legend(frameon=False, ncol=2)
        return save(fig, stem)

