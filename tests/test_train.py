"""LoRA training: parameter counts, masking, length-grouped batches, settings checks, the loop's outputs,
seeding, resuming after SIGKILL, and the stage CLI on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from specllm.errors import InputError

# --- a tiny training project (shared with test_train_ddp.py) ------------------------------------------

# The train:/ablation: sections of a tiny project's params.yaml (validated by specllm.schema, as params.yaml).
TRAIN_YAML = """
train:
  lr: 1.0e-4
  rank: 8
  alpha: 16
  dropout: 0.05
  target_modules: [q_proj, v_proj]
  epochs: 2
  batch_size: 8
  grad_accum: 1
  lr_schedule: linear
  warmup_ratio: 0.03
  weight_decay: 0.0
  max_grad_norm: 1.0
  checkpoint_every: 10
  group_by_length_mult: 50

ablation:
  lr: [1.0e-5, 1.0e-3]
  rank: [4, 16]
  epochs: [1, 3]
"""
TRAIN_KEYS = ["seed", *(f"train.{k}" for k in (
    "lr", "rank", "alpha", "dropout", "target_modules", "epochs", "batch_size", "grad_accum", "lr_schedule",
    "warmup_ratio", "weight_decay", "max_grad_norm", "checkpoint_every", "group_by_length_mult"))]
# Runs `python -m specllm.stages.train` (also under torchrun).
LAUNCHER = """
import runpy
runpy.run_module("specllm.stages.train", run_name="__main__", alter_sys=True)
"""
QUIET = {"log": lambda *_: None, "progress": False}


def write_examples(path: Path, tokenizer, n: int, seed: int = 0, min_values: int = 6, max_values: int = 14) -> Path:
    """serialize-stage records whose series have min_values..max_values values (so lengths differ)."""
    from specllm.serialize import SerializerConfig, build_example, encode

    cfg = SerializerConfig()
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i in range(n):
            values = rng.uniform(0, 9.9, int(rng.integers(min_values, max_values + 1)))
            z = float(rng.uniform(0.01, 0.5))
            text = encode(values, cfg).text
            fh.write(json.dumps({"gal_id": i, "z": z, "series": text, **build_example(text, z, cfg, tokenizer),
                                 "n_tokens": 0}) + "\n")
    return path


def make_project(folder: Path, n: int = 48, **train_values) -> Path:
    """A project root: params.yaml (the repo's, plus train/ablation), dvc.yaml with the train stages,
    a tiny models/base, data/serialized/train.jsonl, and launch_train.py."""
    from ruamel.yaml import YAML

    from specllm.model.tiny import build_tiny, build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "params.yaml").read_text()
    if "\ntrain:" not in text:
        text += TRAIN_YAML
    y = YAML()
    tree = y.load(text)
    # fixed test values (whatever params.yaml holds), then the test's own
    for key, value in {**YAML(typ="safe").load(TRAIN_YAML)["train"], **train_values}.items():
        tree["train"][key] = value
    tree["ablation"]["lr"] = [1.0e-5, 1.0e-3]  # around the fixed test lr (a profile's list may hold it)
    with open(folder / "params.yaml", "w") as fh:
        y.dump(tree, fh)
    stages = {"train_default": {"cmd": "python -m specllm.stages.train --run default", "params": TRAIN_KEYS}}
    for axis in ("lr", "rank", "epochs"):
        stages[f"train_{axis}"] = {"foreach": f"${{ablation.{axis}}}", "do": {
            "cmd": f"python -m specllm.stages.train --run {axis}-${{item}} --{axis} ${{item}}", "params": TRAIN_KEYS}}
    (folder / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=1))
    build_tiny(folder / "models" / "base", hidden=16, layers=1, heads=2, seed=0)
    write_examples(folder / "data" / "serialized" / "train.jsonl", build_tokenizer(), n)
    (folder / "launch_train.py").write_text(LAUNCHER)
    return folder


def stage_env(project: Path) -> dict[str, str]:
    """Subprocess environment: the project as root, and this checkout's code first on the path."""
    path = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "SPECLLM_ROOT": str(project), "SPECLLM_NO_PROGRESS": "1", "PYTHONHASHSEED": "0",
            "PYTHONPATH": path}


def stage_cmd(project: Path, *args: str) -> list[str]:
    return [sys.executable, str(project / "launch_train.py"), *args]


def read_adapter(folder: Path) -> dict:
    from specllm.train.loop import read_adapter as read

    return read(folder)


def run_paths(root: Path, run: str) -> dict[str, Path]:
    return {"model_dir": root / "models" / "base", "train_file": root / "data" / "serialized" / "train.jsonl",
            "out_dir": root / "models" / "lora" / run, "results_dir": root / "results" / "train" / run,
            "ckpt_dir": root / "models" / "lora" / f"{run}.ckpt"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("train") / "proj")


def settings(**kw):
    from specllm.train.settings import TrainSettings

    base = {"seed": 7, "epochs": 2, "batch_size": 8, "checkpoint_every": 4, "lr": 1e-2, "warmup_ratio": 0.0}
    return TrainSettings(**{**base, **kw})


# --- pure functions --------------------------------------------------------------------------------


def test_lora_param_count_llama31_8b_is_the_papers_3_4m():
    from specllm.train.lora import LLAMA_31_8B, lora_param_count

    shape = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "head_dim": 128}
    assert lora_param_count(shape, 8, ["q_proj", "v_proj"]) == 3_407_872
    assert lora_param_count(LLAMA_31_8B, 16, ["q_proj", "v_proj"]) == 2 * 3_407_872
    assert lora_param_count(shape, 8, ["q_proj"]) == 32 * 8 * (4096 + 4096)
    with pytest.raises(ValueError, match="unknown module 'qkv'"):
        lora_param_count(shape, 8, ["qkv"])
    with pytest.raises(ValueError, match="rank"):
        lora_param_count(shape, 0, ["q_proj"])


def test_lora_param_count_matches_peft_with_grouped_query_attention():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from specllm.train.lora import count_parameters, lora_param_count, make_lora_model

    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    with torch.random.fork_rng():
        model = make_lora_model(LlamaForCausalLM(config), settings(rank=4, target_modules=modules))
    trainable, total = count_parameters(model)
    assert trainable == lora_param_count(config, 4, modules) == lora_param_count(config.to_dict(), 4, modules)
    assert total > trainable > 0


def test_example_has_loss_on_the_target_and_eos_only():
    from specllm.model.tiny import build_tokenizer
    from specllm.train.data import IGNORE, collate, encode_example

    tok = build_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "1|2|3"}], add_generation_prompt=True, tokenize=False)
    ex = encode_example(prompt, "Redshift: 0.123", tok)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex.labels[:n_prompt] == (IGNORE,) * n_prompt
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert ex.input_ids[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[n_prompt:-1]) == "Redshift: 0.123"
    assert ex.n_target == len("Redshift: 0.123") + 1
    short = encode_example("ab", "Redshift: 0.1", tok)
    batch = collate([ex, short], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(ex))
    assert batch["attention_mask"][1].sum() == len(short)
    assert (batch["labels"][1, len(short):] == IGNORE).all()
    assert (batch["input_ids"][1, len(short):] == tok.pad_token_id).all()


def test_length_grouped_batches_cover_each_example_once_deterministically_with_little_padding():
    from specllm.train.data import length_grouped_batches, padding_share, split_batch

    lengths = np.random.default_rng(0).integers(100, 600, 1003)
    b0 = length_grouped_batches(lengths, 8, seed=1, epoch=0, mult=50)
    assert sorted(i for b in b0 for i in b) == list(range(1003))
    assert [len(b) for b in b0].count(8) == len(b0) - 1  # one partial batch (1003 = 125 x 8 + 3)
    assert b0 == length_grouped_batches(lengths, 8, seed=1, epoch=0, mult=50)
    assert b0 != length_grouped_batches(lengths, 8, seed=1, epoch=1, mult=50)
    assert b0 != length_grouped_batches(lengths, 8, seed=2, epoch=0, mult=50)
    assert lengths[b0[0]].max() == lengths.max()  # the longest batch runs first
    grouped = padding_share(b0, lengths)
    random_order = np.random.default_rng(1).permutation(1003)
    ungrouped = padding_share([random_order[i:i + 8] for i in range(0, 1003, 8)], lengths)
    assert grouped < 0.10 < ungrouped
    assert split_batch([5, 4, 3, 2, 1], 2) == [[5, 4, 3], [2, 1]]
    with pytest.raises(ValueError):
        split_batch([1], 2)


def test_dtype_is_chosen_by_compute_capability(monkeypatch):
    import torch

    from specllm.precision import choose_device_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device_dtype() == (torch.device("cpu"), torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for capability, dtype in (((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16), ((7, 5), torch.float32)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_a, c=capability: c)
        assert choose_device_dtype() == (torch.device("cuda", 0), dtype)


def test_settings_name_the_source_of_a_bad_value():
    from specllm.train.settings import TrainSettings

    params = {"seed": 1, **{f"train.{k}": v for k, v in {
        "lr": 1e-4, "rank": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "epochs": 2,
        "batch_size": 8, "grad_accum": 1, "lr_schedule": "linear", "warmup_ratio": 0.03, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "checkpoint_every": 10, "group_by_length_mult": 50}.items()}}
    s = TrainSettings.from_params(params, {"lr": 1e-3, "rank": None}, run="lr-0.001", params_file="p.yaml")
    assert (s.lr, s.rank, s.target_modules, s.run) == (1e-3, 8, ("q_proj", "v_proj"), "lr-0.001")
    with pytest.raises(InputError) as err:
        TrainSettings.from_params(params, {"rank": 0})
    assert (err.value.file, err.value.field) == ("command line", "--rank")
    with pytest.raises(InputError) as err:
        TrainSettings.from_params({**params, "train.rank": -2}, params_file="p.yaml")
    assert (err.value.file, err.value.field) == ("p.yaml", "train.rank")
    for bad in ({"train.target_modules": []}, {"train.dropout": 1.0}, {"train.lr": 0}, {"train.lr_schedule": "step"}):
        with pytest.raises(InputError) as err:
            TrainSettings.from_params({**params, **bad})
        assert err.value.field == next(iter(bad))
    with pytest.raises(InputError, match="run name"):
        TrainSettings.from_params(params, run="../x")
    with pytest.raises(InputError, match="divisible"):
        TrainSettings.from_params(params).check_world(3)
    assert s.fingerprint("d") == s.fingerprint("d") != s.fingerprint("e")
    assert s.fingerprint() != TrainSettings.from_params(params).fingerprint()


# --- the loop on the tiny model ----------------------------------------------------------------------


def test_bad_inputs_stop_before_training(project, tmp_path):
    from specllm.train.loop import train

    p = run_paths(project, "bad")
    with pytest.raises(InputError) as err:
        train(settings(target_modules=("q_proj", "query")), **p, **QUIET)
    assert err.value.field == "train.target_modules" and "'query'" in err.value.problem
    assert "k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in err.value.fix
    with pytest.raises(InputError, match="not found"):
        train(settings(), **{**p, "model_dir": tmp_path / "no_model"}, **QUIET)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="the split is empty") as err:
        train(settings(), **{**p, "train_file": empty}, **QUIET)
    assert err.value.file == str(empty)
    with pytest.raises(InputError, match="file not found"):
        train(settings(), **{**p, "train_file": tmp_path / "nope.jsonl"}, **QUIET)
    assert not p["out_dir"].exists() and not p["results_dir"].exists()


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_train_writes_adapter_loss_curve_and_summary_and_is_seeded(project, tmp_path):
    import torch
    from peft import PeftModel

    from specllm.model.load import load_base
    from specllm.train.loop import LOSS_COLUMNS, train

    roots = {name: tmp_path / name for name in ("a", "b", "c")}
    s = settings(epochs=3)
    summary = train(s, **{**run_paths(project, "a"), "out_dir": roots["a"], "results_dir": roots["a"] / "res"}, **QUIET)
    out = roots["a"]
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    rows = (out / "res" / "loss.csv").read_text().splitlines()
    assert rows[0] == ",".join(LOSS_COLUMNS)
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert len(losses) == summary["steps"] == 3 * 6  # 48 spectra / batch 8, 3 epochs
    assert np.mean(losses[-6:]) < np.mean(losses[:6])  # it learns the fixed "Redshift: 0." part
    tokens = [int(r.split(",")[4]) for r in rows[1:]]
    assert tokens == sorted(tokens) and tokens[-1] == summary["tokens"]
    saved = json.loads((out / "res" / "train.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["trainable_params"] == saved["lora_param_count_config"] == 1 * 8 * 2 * (16 + 16)
    assert saved["llama31_8b_lora_param_count"] == 3_407_872
    assert saved["complete"] and saved["device"].startswith("cpu") and saved["dtype"] == "float32"
    assert 0 < saved["padding_share"] < 0.10 and saved["tokens_per_s"] > 0 and saved["peak_memory_bytes"] > 2**20
    assert not run_paths(project, "a")["ckpt_dir"].exists()  # removed once the run completed
    # the adapter loads onto the base model with peft and changes its output
    base, tok = load_base(project / "models" / "base")
    ids = tok("Redshift", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, out)(ids).logits
    assert not torch.allclose(before, after)
    # same seed -> bitwise the same adapter; another seed -> another one
    train(s, **{**run_paths(project, "b"), "out_dir": roots["b"]}, **QUIET)
    train(settings(epochs=3, seed=8), **{**run_paths(project, "c"), "out_dir": roots["c"]}, **QUIET)
    a, b, c = (read_adapter(roots[k]) for k in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_in_process_and_stale_checkpoints(project, tmp_path):
    import torch

    from specllm.train import checkpoint as ckpt
    from specllm.train.loop import train

    full = {**run_paths(project, "full"), "out_dir": tmp_path / "full"}
    part = {**run_paths(project, "part"), "out_dir": tmp_path / "part", "results_dir": tmp_path / "part_res"}
    train(settings(), **full, **QUIET)
    partial = train(settings(), **part, max_steps=6, **QUIET)  # checkpoint at step 4; steps 5-6 are lost
    assert not partial["complete"]
    assert [p.name for p in ckpt.checkpoints(part["ckpt_dir"])] == ["step-0000004"]
    (part["ckpt_dir"] / ".step-0000008.tmp-x").mkdir()  # a write killed half-way: ignored, later removed
    resumed = train(settings(), **part, **QUIET)
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 12
    a, b = read_adapter(full["out_dir"]), read_adapter(part["out_dir"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (part["results_dir"] / "loss.csv").read_text() == (full["results_dir"] / "loss.csv").read_text()
    assert not part["ckpt_dir"].exists()
    # a checkpoint of other settings is not resumed
    train(settings(), **part, max_steps=5, **QUIET)
    again = train(settings(lr=5e-3), **part, **QUIET)
    assert again["resumed_from_step"] is None


def test_adapter_folder_bytes_do_not_depend_on_where_the_project_lies(tmp_path, monkeypatch):
    """DVC hashes models/lora/<run>/ as a folder: a path of the clone in any file (peft's model card
    names the base model by the path it was loaded from) would change the hash on every other machine
    and rerun everything downstream instead of restoring it from the run cache."""
    from specllm import paths
    from specllm.train.loop import train

    folders = {}
    for where in ("here", "somewhere/else/deeper"):
        root = make_project(tmp_path / where / "proj", n=16)
        monkeypatch.setattr(paths, "ROOT", root)
        run = run_paths(root, "default")
        train(settings(epochs=1), **run, **QUIET)
        out = run["out_dir"]
        folders[where] = {f.relative_to(out).as_posix(): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
        assert str(tmp_path).encode() not in b"".join(folders[where].values())
    assert sorted(folders["here"]) == ["adapter_config.json", "adapter_model.safetensors"]  # no model card
    assert folders["here"] == folders["somewhere/else/deeper"]
    assert json.loads(folders["here"]["adapter_config.json"])["base_model_name_or_path"] == "models/base"


# Saves a fresh adapter of the tiny model under the project root given as argv[1].
SAVE_ADAPTER = """
import sys
from pathlib import Path
from types import SimpleNamespace

from specllm import paths
from specllm.model.tiny import build_model
from specllm.train.lora import make_lora_model, save_adapter

root = paths.ROOT = Path(sys.argv[1])
settings = SimpleNamespace(target_modules=["q_proj", "v_proj"], seed=0, rank=2, alpha=4, dropout=0.0)
save_adapter(make_lora_model(build_model(16, 1, 2, seed=0, vocab_size=32), settings), root / "out", root / "models" / "base")
"""


def test_adapter_config_bytes_do_not_depend_on_the_string_hash_seed(tmp_path):
    """peft writes LoraConfig's target_modules set as list(set), whose order follows PYTHONHASHSEED;
    a bare `dvc repro` (no `make`, so no PYTHONHASHSEED=0) would then hash the adapter folder
    differently and rerun evaluation for nothing. Seeds 0 and 3 give the two orders of [q_proj, v_proj]
    (as params.yaml lists them; a set's order also follows insertion where hashes collide)."""
    configs = {}
    for seed in ("0", "3"):
        root = tmp_path / seed
        subprocess.run([sys.executable, "-c", SAVE_ADAPTER, str(root)], check=True,
                       env={**stage_env(root), "PYTHONHASHSEED": seed}, cwd=tmp_path)
        configs[seed] = (root / "out" / "adapter_config.json").read_bytes()
    assert configs["0"] == configs["3"]
    assert json.loads(configs["0"])["target_modules"] == ["q_proj", "v_proj"]


def test_stage_cli_reads_declared_params_and_overrides(project, monkeypatch):
    from specllm import config, paths
    from specllm.stages import train as stage

    for name, value in {"ROOT": project, "PARAMS": project / "params.yaml", "DVC_YAML": project / "dvc.yaml",
                        "BASE_MODEL": project / "models" / "base", "SERIALIZED": project / "data" / "serialized",
                        "LORA": project / "models" / "lora", "TRAIN_RESULTS": project / "results" / "train"}.items():
        monkeypatch.setattr(paths, name, value)
    seen = {}
    monkeypatch.setattr("specllm.train.loop.train", lambda s, **kw: seen.update(settings=s, **kw))
    stage.main(["--run", "rank-4", "--rank", "4"])
    assert seen["settings"].rank == 4 and seen["settings"].lr == 1e-4 and seen["settings"].run == "rank-4"
    assert seen["out_dir"] == project / "models" / "lora" / "rank-4"
    assert seen["results_dir"] == project / "results" / "train" / "rank-4"
    assert seen["settings"].sources["rank"] == "--rank"
    stage.main(["--run", "default"])
    assert seen["settings"].rank == 8 and seen["settings"].seed == config.load(project / "params.yaml")["seed"]
    with pytest.raises(SystemExit):
        stage.main(["--run", "x", "--rank", "4", "--lr", "0.1"])  # two axes need --stage
    with pytest.raises(InputError, match="no such stage"):
        stage.main(["--run", "x", "--rank", "4", "--stage", "train_width"])


@pytest.mark.slow
def test_sigkilled_stage_resumes_to_the_same_adapter(tmp_path):
    """Start the stage, SIGKILL it once a checkpoint exists, start it again: the adapter equals an
    uninterrupted run's bit for bit (CPU, same thread count)."""
    import torch

    from specllm.train import checkpoint as ckpt
    from specllm.train.loop import train
    from specllm.train.settings import TrainSettings

    project = make_project(tmp_path / "proj", n=48, checkpoint_every=3, epochs=2, lr=1.0e-2)
    ckpt_dir = project / "models" / "lora" / "default.ckpt"
    out = project / "models" / "lora" / "default"
    proc = subprocess.Popen(stage_cmd(project, "--run", "default", "--throttle", "0.3"), cwd=project,
                            env=stage_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.checkpoints(ckpt_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = ckpt.read_state(ckpt.checkpoints(ckpt_dir)[-1])["step"] if ckpt.checkpoints(ckpt_dir) else None
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.communicate()[0]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and killed_at is not None and not out.exists()
    resumed = subprocess.run(stage_cmd(project, "--run", "default"), cwd=project, env=stage_env(project),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    summary = json.loads((project / "results" / "train" / "default" / "train.json").read_text())
    assert summary["resumed_from_step"] >= killed_at and summary["complete"] and not ckpt_dir.exists()
    # the uninterrupted reference, in this process
    from specllm import config

    ref = TrainSettings.from_params(config.load(project / "params.yaml"), run="default")
    train(ref, **{**run_paths(project, "ref")}, **QUIET)
    a, b = read_adapter(out), read_adapter(project / "models" / "lora" / "ref")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
