"""Tokens per spectrum for each serialization setting, and what they cost in training time.

The paper writes 4.56 as `4|5|6`; a tokenizer that already splits digits into single tokens (SmolLM2's,
Llama-3's splits runs of up to three) spends one token per separator for nothing. The table counts the
tokens of whole training examples (chat prompt + target + eos) for the same spectra. Training cost is
derived from the measured training rate (seconds per token of the project's loop): time is taken as
proportional to tokens (the attention term, quadratic in length, is ignored, so savings are understated).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SETTINGS = (("4|5|6 (paper)", "|"), ("456", ""), ("4 5 6", " "))


def token_table(tokenizer, n: int = 16, n_points: int = 48) -> list[dict[str, Any]]:
    from specllm.bench.common import spectra_records
    from specllm.serialize import SerializerConfig
    from specllm.train.data import encode_records

    rows = []
    for name, sep in SETTINGS:
        cfg = SerializerConfig(digit_sep=sep)
        lengths = [len(e) for e in encode_records(spectra_records(tokenizer, n, n_points, cfg), tokenizer)]
        rows.append({"setting": name, "digit_sep": sep, "n_points": n_points,
                     "tokens_per_spectrum": float(np.mean(lengths)), "tokens_min": int(min(lengths)),
                     "tokens_max": int(max(lengths))})
    ref = rows[0]["tokens_per_spectrum"]
    for r in rows:
        r["relative_to_paper"] = r["tokens_per_spectrum"] / ref
    return rows


def with_cost(rows: list[dict[str, Any]], tokens_per_s: float, n_train: int, epochs: int = 2) -> list[dict[str, Any]]:
    """Add the training time of n_train spectra x epochs at the measured rate (time proportional to tokens)."""
    for r in rows:
        r["train_s_per_spectrum"] = r["tokens_per_spectrum"] / tokens_per_s
        r["train_s_run"] = r["train_s_per_spectrum"] * n_train * epochs
        r["run_n_train"], r["run_epochs"] = n_train, epochs
    return rows
