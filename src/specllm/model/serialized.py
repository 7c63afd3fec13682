"""The prepared spectra as LLMTime-style text, prompts and targets, tokenised with the base model's
tokenizer and checked against the context budget: the serialize stage's library (specllm.stages.serialize
is its main(); bench.pilot serialises its variants with it). The text format itself is specllm.serialize.

Reads data/prepared/{wavelength.npy, {split}_flux.npy, {split}_meta.csv} and the tokenizer of
models/base; writes data/serialized/{train,val,test}.jsonl (one JSON object per line: gal_id, z,
series, prompt, target, n_tokens) and results/serialization.json. Every sample's prompt + target
must fit in serialize.max_context_share x serialize.context_tokens tokens; otherwise it stops with an
InputError before writing anything, and earlier outputs stay as they were.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import paths
from specllm.errors import InputError
from specllm.io import atomic_dir, write_json
from specllm.serialize import SerializerConfig, build_example, check_budget, encode, token_counts
from specllm.vocab import SPLITS

RESULTS_FILE = paths.SERIALIZATION
PREPARE_FIX = "rerun the prepare stage (`dvc repro prepare`)"
EXAMPLE_CHARS = 60


def _read_split(prepared: Path, split: str, n_points: int) -> tuple[np.ndarray, pd.DataFrame]:
    flux_file, meta_file = prepared / f"{split}_flux.npy", prepared / f"{split}_meta.csv"
    for f in (flux_file, meta_file):
        if not f.is_file():
            raise InputError(f, "-", "file not found", PREPARE_FIX)
    flux = np.load(flux_file, allow_pickle=False)
    if flux.ndim != 2 or flux.shape[1] != n_points:
        raise InputError(flux_file, "shape",
                         f"expected [n, {n_points}] (n_points from wavelength.npy), got {list(flux.shape)}",
                         PREPARE_FIX)
    if not np.all(np.isfinite(flux)):
        row = int(np.flatnonzero(~np.all(np.isfinite(flux), axis=1))[0])
        raise InputError(flux_file, f"row {row}", "contains NaN or infinite flux", PREPARE_FIX)
    meta = pd.read_csv(meta_file)
    missing = [c for c in ("gal_id", "z") if c not in meta.columns]
    if missing:
        raise InputError(meta_file, ", ".join(missing), "missing column", PREPARE_FIX)
    if len(meta) != len(flux):
        raise InputError(meta_file, "rows", f"{len(meta)} rows but {flux_file.name} has {len(flux)} spectra",
                         PREPARE_FIX)
    if not np.all(np.isfinite(meta["z"].to_numpy(dtype=float))):
        raise InputError(meta_file, "z", "contains missing or non-finite redshifts", PREPARE_FIX)
    return flux, meta


def _stats(values: np.ndarray) -> dict[str, float | int]:
    if values.size == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2), "max": int(values.max())}


def _tokenizer_name(model_dir: Path, tokenizer) -> str:
    provenance = model_dir / "specllm_model.json"
    if provenance.is_file():
        name = json.loads(provenance.read_text()).get("name")
        if name:
            return str(name)
    return Path(str(getattr(tokenizer, "name_or_path", "") or model_dir)).name


def serialize_splits(prepared: str | Path, model_dir: str | Path, out_dir: str | Path,
                     results_file: str | Path | None, cfg: SerializerConfig, log=print) -> dict[str, Any]:
    """Serialise every split; check the token budget of all samples first; write outputs atomically.

    Returns the summary that goes to results_file (sorted keys)."""
    from specllm.model.load import load_tokenizer

    started = time.perf_counter()
    prepared, model_dir, out_dir = Path(prepared), Path(model_dir), Path(out_dir)
    wave_file = prepared / "wavelength.npy"
    if not wave_file.is_file():
        raise InputError(wave_file, "-", "file not found", PREPARE_FIX)
    wave = np.load(wave_file, allow_pickle=False)
    if wave.ndim != 1 or wave.size < 1:
        raise InputError(wave_file, "shape", f"expected a 1-D grid, got {list(wave.shape)}", PREPARE_FIX)
    n_points = int(wave.size)
    tokenizer = load_tokenizer(model_dir)

    records: dict[str, list[dict[str, Any]]] = {}
    per_split: dict[str, dict[str, Any]] = {}
    series_tokens: list[np.ndarray] = []
    budget = None
    for split in SPLITS:
        flux, meta = _read_split(prepared, split, n_points)
        rows, n_clipped, n_negative = [], 0, 0
        for gal_id, z, values in zip(meta["gal_id"].tolist(), meta["z"].astype(float).tolist(), flux, strict=True):
            enc = encode(values, cfg)
            n_clipped += enc.n_clipped
            n_negative += enc.n_negative
            rows.append({"gal_id": gal_id, "z": z, "series": enc.text, **build_example(enc.text, z, cfg, tokenizer)})
        counts = token_counts([r["prompt"] + r["target"] for r in rows], tokenizer)
        budget = check_budget(counts, cfg.context_tokens, cfg.max_context_share, prepared / f"{split}_flux.npy",
                              names=[f"gal_id {r['gal_id']}" for r in rows])
        for r, c in zip(rows, counts.tolist(), strict=True):
            r["n_tokens"] = c
        series_tokens.append(token_counts([r["series"] + cfg.value_sep for r in rows], tokenizer))
        records[split] = rows
        per_split[split] = {"n_spectra": len(rows), "tokens_per_spectrum": _stats(counts),
                            "n_clipped": n_clipped, "n_negative": n_negative}
        if n_clipped or n_negative:
            bound = f"+-{cfg.max_value:g}" if cfg.signed else f"{cfg.max_value:g}"
            log(f"serialize: {split}: {n_clipped} values clipped to {bound}, "
                f"{n_negative} negative values clipped to 0 (of {flux.size})")

    all_counts = np.concatenate([np.array([r["n_tokens"] for r in records[s]], dtype=np.int64) for s in SPLITS])
    all_series = np.concatenate(series_tokens)
    n_values = sum(len(records[s]) for s in SPLITS) * n_points
    summary = {
        "base": cfg.base, "precision": cfg.precision, "int_digits": cfg.int_digits,
        "digit_sep": cfg.digit_sep, "value_sep": cfg.value_sep, "signed": cfg.signed,
        "target_decimals": cfg.target_decimals, "prompt": cfg.prompt,
        "n_points": n_points, "n_values": n_values,
        "n_clipped": sum(v["n_clipped"] for v in per_split.values()),
        "n_negative": sum(v["n_negative"] for v in per_split.values()),
        "max_value": cfg.max_value, "min_value": cfg.min_value,
        "context_tokens": cfg.context_tokens, "max_context_share": cfg.max_context_share,
        "budget_tokens": round(cfg.max_context_share * cfg.context_tokens, 2),
        "max_share_used": round(float(all_counts.max()) / cfg.context_tokens, 5) if all_counts.size else 0.0,
        "tokens_per_spectrum": _stats(all_counts),
        "tokens_per_value": round(float(all_series.sum()) / max(n_values, 1), 4),
        "per_split": per_split,
        "example_series": records["train"][0]["series"][:EXAMPLE_CHARS] if records["train"] else "",
        "tokenizer": _tokenizer_name(model_dir, tokenizer),
        "tokenizer_vocab_size": len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
    assert budget is not None
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as fh:
                for r in records[split]:
                    fh.write(json.dumps({k: r[k] for k in ("gal_id", "z", "series", "prompt", "target", "n_tokens")},
                                        ensure_ascii=False, allow_nan=False) + "\n")
    if results_file is not None:
        write_json(results_file, summary)
    log(f"serialize: {all_counts.size} spectra, tokens per spectrum {summary['tokens_per_spectrum']}, "
        f"{summary['tokens_per_value']} tokens per value, max share {summary['max_share_used']:.2%} of "
        f"{cfg.context_tokens} -> {out_dir} in {time.perf_counter() - started:.1f} s")
    return summary


def config_from_params(p: Mapping[str, Any]) -> SerializerConfig:
    try:
        return SerializerConfig.from_params(p)
    except ValueError as err:
        raise InputError(paths.PARAMS, "serialize", str(err), "correct the serialize.* values in params.yaml") from None
