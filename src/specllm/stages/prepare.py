"""Stage `prepare`: choose the spectra, split them by redshift, resample and rescale them.

Reads the source folder (data/raw, or data/dr16 for the paper profile), draws train/val/test
from equal-frequency redshift bins so every split covers the whole redshift range alike,
resamples each spectrum from SDSS's log-lambda grid onto a short linear grid (flux-conserving),
and rescales it so its values use one integer digit (LLMTime-style). Writes data/prepared/ and
results/data_summary.json.
"""

from __future__ import annotations

from specllm import config, paths
from specllm.data.prepare import prepare
from specllm.io import write_json
from specllm.runner import run_main


def main() -> None:
    p = config.stage_params("prepare")
    source = paths.RAW if p["data.source"] == "embedded" else paths.DR16_SOURCE
    summary = prepare(source, paths.PREPARED, dict(p))
    write_json(paths.DATA_SUMMARY, summary)
    print(f"prepare: {summary['n_train']}/{summary['n_val']}/{summary['n_test']} spectra "
          f"(train/val/test) from {summary['n_source']} in {summary['z_bins']} redshift bins")


if __name__ == "__main__":
    run_main(main)
