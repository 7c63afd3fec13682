"""Base model: tiny Llama round trip and determinism, identity, hub errors and local folders, GGUF conversion."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from specllm.errors import InputError
from specllm.model import load_base, model_identity
from specllm.model.tiny import build_tiny
from specllm.stages.model import build_base

ROOT = Path(__file__).resolve().parents[1]
TINY = {"seed": 7, "model.source": "tiny", "model.name": "tiny-random-llama", "model.hub_id": "",
        "model.revision": "main", "model.tiny_hidden": 32, "model.tiny_layers": 2, "model.tiny_heads": 4}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", hidden=32, layers=2, heads=4, seed=7)


def test_tiny_model_loads_like_any_hf_model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 32
    text = "Redshift: 0.123\n4|5|6,0|7|0"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text  # one token per character, lossless
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert tok("é", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                   tokenize=False) == "<s>user\nhi</s>\n<s>assistant\n"
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()
    loaded, loaded_tok = load_base(tiny_dir)
    assert loaded.dtype == torch.float32 and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded_tok.get_vocab() == tok.get_vocab()
    assert load_base(tiny_dir, dtype=torch.bfloat16)[0].dtype == torch.bfloat16


def test_tiny_model_bytes_depend_only_on_seed_and_sizes(tmp_path, tiny_dir):
    again = build_tiny(tmp_path / "again", hidden=32, layers=2, heads=4, seed=7)
    assert folder_hashes(again) == folder_hashes(tiny_dir)
    other = build_tiny(tmp_path / "other", hidden=32, layers=2, heads=4, seed=8)
    assert sha(other / "model.safetensors") != sha(tiny_dir / "model.safetensors")
    assert sha(other / "tokenizer.json") == sha(tiny_dir / "tokenizer.json")


def test_stage_writes_identity_and_keeps_old_model_on_failure(tmp_path):
    out, results = tmp_path / "models" / "base", tmp_path / "results" / "model.json"
    identity = build_base(TINY, out, results, log=lambda *_: None)
    assert json.loads(results.read_text()) == identity
    assert list(json.loads(results.read_text())) == sorted(identity)  # sorted keys
    model, _ = load_base(out)
    assert identity["name"] == "tiny-random-llama" and identity["source"] == "tiny"
    assert identity["sha256"] == sha(out / "model.safetensors")
    assert identity["n_params"] == sum(p.numel() for p in model.parameters())
    assert (identity["dtype"], identity["vocab_size"], identity["context_length"]) == ("float32", 100, 8192)
    assert identity["revision"] == "random init, seed 7"
    assert model_identity(out) == identity
    before, results_before = folder_hashes(out), results.read_text()
    with pytest.raises(InputError, match="model.tiny_heads"):
        build_base({**TINY, "model.tiny_heads": 3, "seed": 8}, out, results, log=lambda *_: None)
    assert folder_hashes(out) == before and results.read_text() == results_before
    assert sorted(p.name for p in out.parent.iterdir()) == ["base"]  # no temporary folders left behind


def test_load_refuses_folders_without_safetensors(tmp_path, tiny_dir):
    with pytest.raises(InputError, match="not found"):
        load_base(tmp_path / "missing")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InputError, match=r"no \*\.safetensors weight file \(found pytorch_model\.bin"):
        load_base(pickled)


def test_hub_source_accepts_a_local_folder(tmp_path, tiny_dir):
    out = tmp_path / "base"
    identity = build_base({**TINY, "model.source": "hub", "model.hub_id": str(tiny_dir), "model.name": "local"},
                          out, None, log=lambda *_: None)
    assert identity["source"] == "hub" and identity["hub_id"] == str(tiny_dir.resolve())
    assert identity["sha256"] == sha(tiny_dir / "model.safetensors")
    model, tok = load_base(out)
    assert tok.chat_template and model.config.hidden_size == 32
    with pytest.raises(InputError, match="folder ./no/such/folder not found"):
        build_base({**TINY, "model.source": "hub", "model.hub_id": "./no/such/folder"}, tmp_path / "x", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no \\*.safetensors"):
        build_base({**TINY, "model.source": "hub", "model.hub_id": str(empty)}, tmp_path / "y", None)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_hub_weights_that_cannot_be_had_stop_the_stage_with_a_fix(tmp_path):
    """The real entry point, offline, with a bogus id: exit 2 at once, a message with the fix, old model intact."""
    from ruamel.yaml import YAML

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "dvc.yaml", project)
    y = YAML()
    tree = y.load((ROOT / "params.yaml").read_text())
    tree["model"]["source"], tree["model"]["hub_id"] = "hub", "specllm-tests/no-such-model"
    with open(project / "params.yaml", "w") as fh:
        y.dump(tree, fh)
    old = project / "models" / "base"
    old.mkdir(parents=True)
    (old / "marker").write_text("earlier model")
    env = {**os.environ, "SPECLLM_ROOT": str(project), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_TOKEN": ""}
    run = subprocess.run([sys.executable, "-m", "specllm.stages.model"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    message = run.stderr
    assert "model.hub_id" in message and "specllm-tests/no-such-model" in message
    assert "accept the licence on https://huggingface.co/specllm-tests/no-such-model" in message
    assert "HF_TOKEN" in message and "set model.hub_id to that folder" in message
    assert "Traceback" not in message
    assert [p.name for p in old.iterdir()] == ["marker"] and not (project / "results" / "model.json").exists()


@pytest.mark.slow
def test_gguf_conversion_gives_a_working_smollm2(tmp_path):
    """The embedded SmolLM2-135M-Instruct: converted once to fp32 safetensors, it still answers sensibly."""
    from specllm.model.sources import smollm2_gguf
    from specllm.serialize import SerializerConfig, tokens_per_value

    out = tmp_path / "base"
    identity = build_base({**TINY, "model.source": "gguf", "model.name": "SmolLM2-135M-Instruct"}, out, None,
                          log=lambda *_: None)
    assert identity["gguf_sha256"] == sha(smollm2_gguf())
    assert identity["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (identity["n_params"], identity["dtype"], identity["vocab_size"], identity["context_length"]) == \
        (134_515_008, "float32", 49152, 8192)
    model, tok = load_base(out)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, tokenize=False, enable_thinking=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        answer = model.generate(**ids, max_new_tokens=12, do_sample=False)
    text = tok.decode(answer[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text, text
    # SmolLM2 writes every digit as its own token: the paper's format costs 6 tokens per value, 4 without '|'
    values = torch.linspace(0, 9.99, 96).double().numpy()
    assert tokens_per_value(values, SerializerConfig(), tok) == 6.0
    assert tokens_per_value(values, SerializerConfig(digit_sep=""), tok) == 4.0


def test_gguf_header_names_the_quantization():
    # the paper discloses that the embedded model was de-quantized from this 4-bit file type
    from specllm.model.sources import gguf_quantization, smollm2_gguf

    q = gguf_quantization(smollm2_gguf())
    assert q["gguf_quantization"] == "Q4_1" and q["gguf_bits"] == 4
    assert q["gguf_tensor_types"]["Q4_1"] > q["gguf_tensor_types"].get("F32", 0)
