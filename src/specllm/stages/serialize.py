"""Stage `serialize`: prepared spectra -> LLMTime-style text, prompts and targets, with token budgets.

Reads data/prepared/{wavelength.npy, {split}_flux.npy, {split}_meta.csv} and the tokenizer of
models/base; writes data/serialized/{train,val,test}.jsonl (one JSON object per line: gal_id, z,
series, prompt, target, n_tokens) and results/serialization.json. Every sample's prompt + target
must fit in serialize.max_context_share x serialize.context_tokens tokens; otherwise the stage
stops with an InputError before writing anything, and earlier outputs stay as they were.
"""

from __future__ import annotations

from specllm import paths
from specllm.model.serialized import RESULTS_FILE, config_from_params, serialize_splits
from specllm.runner import run_main


def main() -> None:
    from specllm import config

    cfg = config_from_params(config.stage_params("serialize"))
    serialize_splits(paths.PREPARED, paths.BASE_MODEL, paths.SERIALIZED, RESULTS_FILE, cfg)


if __name__ == "__main__":
    run_main(main)
