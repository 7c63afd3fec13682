"""Stage `make data`: build the embedded source data/raw (python -m specllm.stages.build_raw).

The build and its contract (files, same bytes on every run and every x86-64 CPU, --perturb) are
specllm.data.raw's; this is its command line, which prints the rounding margins and the counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from specllm import config, paths
from specllm.data import galaxies
from specllm.data.raw import MARGIN_WARN, build
from specllm.runner import run_main


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m specllm.stages.build_raw", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=paths.RAW, help=f"output folder (default: {paths.rel(paths.RAW)})")
    ap.add_argument("--limit", type=int, default=None, help="build only the first N galaxies (and at most N stars, N quasars)")
    ap.add_argument("--params", type=Path, default=None, help="parameter file (default: ./params.yaml)")
    ap.add_argument("--gst-file", type=Path, default=galaxies.GST_FILE, help="galaxy table (default: kcorrect's; for tests)")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="tests only: relative noise on the fit inputs and simulated values before rounding (e.g. 1e-12)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    margins: dict = {}
    manifest = build(args.out, config.load(args.params), args.limit, args.gst_file, perturb=args.perturb, margins=margins)
    print("rounding margins (grid steps to the nearest boundary; another CPU's last-bit noise is ~1e-10): "
          + ", ".join(f"{k} {v:.3g}" for k, v in sorted(margins.items())), file=sys.stderr)
    for name, m in sorted(margins.items()):
        if m < MARGIN_WARN:
            print(f"WARNING: a {name} value lies {m:.2g} grid steps from a rounding boundary: another CPU may "
                  "store it differently (report this with the params)", file=sys.stderr)
    c = manifest["counts"]
    print(f"{args.out}: {c['galaxies_written']} galaxy spectra ({c['galaxies_kept']} pass the cut of {c['galaxies_read']}), "
          f"catalogue {c['catalogue_rows']} rows ({c['catalogue_galaxies']} galaxies, {c['stars']} stars, {c['quasars']} quasars); "
          f"{folder_size(args.out) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    run_main(main)
