"""Stage `fetch_dr16`: real SDSS DR16 spectra for the paper profile, in data/raw's format.

With data.source = dr16 it queries SkyServer for galaxies passing the paper's cuts, draws them in
equal-frequency redshift bins, downloads their spec-lite files into the resumable cache
data/external/dr16 and writes data/dr16 (galaxies.csv, loglam.npy, spectra_*.npy) on the same
log-lambda grid as the embedded source. With the embedded source it only writes a note, so the
DAG is the same for every profile.
"""

from __future__ import annotations

import numpy as np

from specllm import config, paths
from specllm.io import atomic_dir, write_json
from specllm.runner import run_main


def main() -> None:
    p = config.stage_params("fetch_dr16")
    if p["data.source"] != "dr16":
        with atomic_dir(paths.DR16_SOURCE) as tmp:
            write_json(tmp / "NOT_USED.json", {"data.source": p["data.source"],
                                               "note": f"data.source is not dr16: the prepare stage reads {paths.rel(paths.RAW)}"})
        print(f"fetch_dr16: data.source is {p['data.source']}; nothing to fetch")
        return
    from specllm.data import dr16

    n_total = p["data.n_train"] + p["data.n_val"] + p["data.n_test"]
    loglam = np.arange(p["raw.loglam_min"], p["raw.loglam_max"] + p["raw.loglam_step"] / 2, p["raw.loglam_step"])
    dr16.fetch_and_build(n=n_total, n_bins=p["data.z_bins"], seed=p["seed"], z_min=p["raw.z_min"],
                         z_max=p["raw.z_max"], i_max=p["raw.i_max"], cache=paths.DR16, out=paths.DR16_SOURCE,
                         loglam=loglam)


if __name__ == "__main__":
    run_main(main)
