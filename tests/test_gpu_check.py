"""make gpu-check (specllm.bench.gpu_check) on the CPU: the random-weight models have the real models'
shapes, and the whole check runs with only what the GPU machine has (no DVC, no project install, no
data/raw: synthetic spectra), writing its JSON and Markdown. Figures are the CPU's; only their presence
and consistency are asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from specllm.bench import common, gpu_check
from specllm.model.load import load_base

# Modules the GPU machine lacks (the project's data, DVC and paper stack); importing any of them fails.
# (Not the test tools: torch._dynamo probes for hypothesis with find_spec, which a blocker cannot answer.)
MISSING_THERE = ("dvc", "ruamel", "spectres", "astropy", "kcorrect", "speclite", "ppxf", "gguf", "matplotlib",
                 "requests")


def test_random_smollm2_has_smollm2s_shapes_and_a_local_tokenizer(tmp_path):
    d = common.model_dir("random-smollm2-L2", tmp_path)  # two of its 30 layers: seconds on a CPU
    model, tok = load_base(d)
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == \
        (576, 1536, 9, 3, 49152)
    assert c.num_hidden_layers == 2 and c.tie_word_embeddings
    assert str(next(model.parameters()).dtype) == "torch.bfloat16"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    again = load_base(common.model_dir("random-smollm2-L2", tmp_path / "again"))[0]
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values()))  # seeded
    assert common.RANDOM_SHAPES["random-llama8b"]["hidden_size"] == 4096
    with pytest.raises(ValueError, match="unknown model"):
        common.model_dir("random-gpt5", tmp_path)


def test_markdown_says_not_measured_for_what_did_not_run():
    pf = {"ok": False, "device": "cpu", "dtype": "fp32", "findings": [{"what": "GPU", "ok": False, "found": "none"}]}
    r = {"meta": {"machine": "m", "model": "tiny", "n_params": 1, "weights": "random weights", "torch": "t",
                  "torch_build": "b", "date": "d", "wall_s": 1.0},
         "preflight": pf, "matmul": {"dtype": "bfloat16", "n": 8192, "repeats": 10, "flops_per_s": 7.5e14}}
    md = gpu_check.markdown(r)
    assert "750.00 TFLOP/s" in md and "FAIL: none" in md
    assert md.count("not measured") == 9  # three probe rates, tokens/s, MFU, three DPO rows, the pipeline
    assert "| pipeline | smoke DAG from scratch | not measured" in md


@pytest.mark.slow
def test_gpu_check_runs_with_only_what_the_gpu_machine_has(tmp_path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        f"    names = {MISSING_THERE!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ImportError(f'{name} is not installed on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n")
    project = tmp_path / "project"  # the code alone: no data/raw, no models, no DVC
    project.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT / "src")]), "SPECLLM_ROOT": str(project)}
    out = tmp_path / "gpu_check"
    proc = subprocess.run([sys.executable, "-m", "specllm.bench.gpu_check", "--model", "tiny", "--quick", "--out", str(out)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["meta"]["data"] == "synthetic" and r["meta"]["device"] == "cpu"
    assert not r["preflight"]["ok"] and any(f["what"] == "GPU" and not f["ok"] for f in r["preflight"]["findings"])
    assert r["matmul"]["flops_per_s"] > 0
    p = r["probe"]
    assert p["n_prompts"] == 6 and all(p[k]["prompts_per_s"] > 0 for k in ("naive", "batched", "prefix"))
    t = r["train"]
    assert t["tokens"] > 0 and t["mfu"] == pytest.approx(4 * t["n_params"] * t["tokens"] / t["seconds"] / r["matmul"]["flops_per_s"])
    d = r["dpo"]
    for k in ("policy_only", "adapter_ref", "second_ref"):
        assert d[k]["peak_kind"] == "rss" and d[k]["peak_vs_model"] == pytest.approx(d[k]["peak_bytes"] / d[k]["model_bytes"])
    md = (out / "gpu_check.md").read_text()
    assert "MFU" in md and "prompts/s" in md and "peak memory / one model copy" in md
    assert Path(project / "results").exists() is False  # --out was elsewhere: nothing written into the project
