"""Stage `serialize`: jsonl + summary from a prepared folder and a model folder; budget failures write nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specllm.errors import InputError
from specllm.model import serialized as stage
from specllm.serialize import BUDGET_FIX, SerializerConfig, decode

N_POINTS = 16
SIZES = {"train": 12, "val": 4, "test": 5}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from specllm.model.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("model") / "base", hidden=16, layers=1, heads=2, seed=0)


@pytest.fixture
def prepared(tmp_path) -> Path:
    """The prepare stage's contract: wavelength grid, rescaled float32 fluxes, meta CSVs."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "prepared"
    folder.mkdir()
    np.save(folder / "wavelength.npy", np.linspace(3850.0, 9150.0, N_POINTS))
    gal_id = 1000
    for split, n in SIZES.items():
        flux = rng.uniform(0, 9.9, (n, N_POINTS)).astype(np.float32)
        if split == "train":
            flux[0, :3] = [12.5, -0.3, -2.0]  # one clipped high, two negatives
            flux[1, 5] = 10.0
        np.save(folder / f"{split}_flux.npy", flux)
        pd.DataFrame({"gal_id": np.arange(gal_id, gal_id + n), "z": rng.uniform(0.01, 0.5, n),
                      "z_bin": rng.integers(0, 5, n), "scale": rng.uniform(1, 2, n)}).to_csv(
            folder / f"{split}_meta.csv", index=False)
        gal_id += n
    return folder


def tree_hashes(*paths: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def test_stage_writes_jsonl_and_summary(prepared, model_dir, tmp_path):
    from transformers import AutoTokenizer

    cfg = SerializerConfig(context_tokens=4096)
    out, results = tmp_path / "serialized", tmp_path / "results" / "serialization.json"
    summary = stage.serialize_splits(prepared, model_dir, out, results, cfg, log=lambda *_: None)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]
    for split, n in SIZES.items():
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        meta = pd.read_csv(prepared / f"{split}_meta.csv")
        flux = np.load(prepared / f"{split}_flux.npy")
        assert len(lines) == n
        for row, line in enumerate(lines):
            rec = json.loads(line)
            assert list(rec) == ["gal_id", "z", "series", "prompt", "target", "n_tokens"]
            assert rec["gal_id"] == meta["gal_id"][row] and rec["z"] == pytest.approx(meta["z"][row])
            assert rec["target"] == f"Redshift: {meta['z'][row]:.3f}"
            assert rec["prompt"].startswith(f"<s>user\n{cfg.prompt} {rec['series']}</s>")
            assert rec["n_tokens"] == len(tok(rec["prompt"] + rec["target"], add_special_tokens=False)["input_ids"])
            back = decode(rec["series"], cfg)
            clipped = np.clip(flux[row].astype(np.float64), cfg.min_value, cfg.max_value)
            assert np.all(np.abs(back - clipped) <= cfg.bin_width / 2 + 1e-6)
    assert json.loads(results.read_text()) == summary
    assert results.read_text() == json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert summary["per_split"]["train"]["n_clipped"] == 2 and summary["per_split"]["train"]["n_negative"] == 2
    assert (summary["n_clipped"], summary["n_negative"]) == (2, 2)
    assert summary["n_points"] == N_POINTS and summary["n_values"] == N_POINTS * sum(SIZES.values())
    assert summary["tokens_per_value"] == 6.0  # character tokenizer: "4|5|6," costs 6 tokens
    lengths = [json.loads(line)["n_tokens"] for s in SIZES for line in (out / f"{s}.jsonl").read_text().splitlines()]
    assert summary["tokens_per_spectrum"] == {"min": min(lengths), "mean": round(float(np.mean(lengths)), 2),
                                              "max": max(lengths)}
    assert summary["max_share_used"] == pytest.approx(max(lengths) / 4096, abs=1e-5)
    assert summary["example_series"] == json.loads((out / "train.jsonl").read_text().splitlines()[0])["series"][:60]
    assert summary["tokenizer"] == "base" and summary["context_tokens"] == 4096
    assert (summary["base"], summary["precision"], summary["digit_sep"], summary["value_sep"]) == (10, 2, "|", ",")


def test_over_budget_fails_before_writing_and_keeps_earlier_outputs(prepared, model_dir, tmp_path):
    out, results = tmp_path / "serialized", tmp_path / "results" / "serialization.json"
    cfg = SerializerConfig(context_tokens=4096)
    stage.serialize_splits(prepared, model_dir, out, results, cfg, log=lambda *_: None)
    before = tree_hashes(out, results)
    tight = SerializerConfig(context_tokens=4096, max_context_share=0.03)  # 122 tokens; samples need ~160
    with pytest.raises(InputError) as err:
        stage.serialize_splits(prepared, model_dir, out, results, tight, log=lambda *_: None)
    assert err.value.file == str(prepared / "train_flux.npy") and err.value.field == "serialize.max_context_share"
    assert "samples need more than 0.03 x 4096" in err.value.problem and "gal_id 10" in err.value.problem
    assert err.value.fix == BUDGET_FIX
    assert tree_hashes(out, results) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["prepared", "results", "serialized"]  # no temp folders


def test_bad_prepared_input_is_refused_before_writing(prepared, model_dir, tmp_path):
    out = tmp_path / "serialized"
    meta = pd.read_csv(prepared / "val_meta.csv")
    meta.iloc[:-1].to_csv(prepared / "val_meta.csv", index=False)
    with pytest.raises(InputError, match="3 rows but val_flux.npy has 4 spectra"):
        stage.serialize_splits(prepared, model_dir, out, None, SerializerConfig(), log=lambda *_: None)
    meta.to_csv(prepared / "val_meta.csv", index=False)
    np.save(prepared / "test_flux.npy", np.zeros((5, N_POINTS + 1), dtype=np.float32))
    with pytest.raises(InputError, match=r"test_flux.npy: shape: expected \[n, 16\]"):
        stage.serialize_splits(prepared, model_dir, out, None, SerializerConfig(), log=lambda *_: None)
    np.save(prepared / "test_flux.npy", np.full((5, N_POINTS), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="row 0: contains NaN"):
        stage.serialize_splits(prepared, model_dir, out, None, SerializerConfig(), log=lambda *_: None)
    assert not out.exists()


def test_config_errors_point_at_params_yaml(params):
    with pytest.raises(InputError, match="serialize: value_sep"):
        stage.config_from_params({**params, "serialize.digit_sep": "|", "serialize.value_sep": "|"})
