"""GPU check: one command for a machine with one Ampere-or-newer GPU, about 10 minutes, that writes
results/gpu_check/gpu_check.json and gpu_check.md:

  preflight     the project's preflight on this device, for the paper profile's workloads
                (Llama-3.1-8B, LoRA r 8 on q/v, batch 8): GPU, capability, driver, memory; the torch build
  matmul        bf16 8192 x 8192 x 8192 matrix products, best of 10: the measured ceiling (FLOP/s)
  probe         the stability probe three ways (bench/probe.py): naive generate() vs batched forward vs
                shared-prefix KV cache, in prompts/s
  train         the project's LoRA training loop (bench/train.py, in a fresh process): tokens/s and MFU,
                4 N FLOPs per token (LoRA with a frozen base, N the non-embedding parameters) over the
                measured bf16 matmul rate
  dpo           the project's DPO (adapter-disabled reference, bench/dpo.py) and, for comparison, a policy
                alone and a second loaded reference: peak CUDA memory (torch.cuda.max_memory_allocated)
                against one copy of the model's weights
  pipeline      (--pipeline, needs DVC) the smoke DAG's stage times (bench/pipeline.py)

Models: --model random-smollm2 (SmolLM2-135M's shapes, random bf16 weights, the project's character
tokenizer: nothing to download or carry), random-llama8b-L<n> (n of Llama-3.1-8B's layers at full width:
MFU at the paper's width), base (models/base) or tiny. Throughput and memory do not depend on the
weights' values. Runs with PYTHONPATH=src and torch, transformers, peft, numpy, pandas alone (no DVC, no
project install); without data/raw it uses synthetic spectra and photometry of the same form.
--quick shrinks everything to seconds on a CPU (the test).

    PYTHONPATH=src python -m specllm.bench.gpu_check --model random-smollm2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from specllm import paths, preflight
from specllm.bench import flops, report
from specllm.bench.common import MODEL_KINDS, model_dir, run_isolated, say

SIZES = {  # GPU sizes fit 10 minutes with random-llama8b-L4 on an A100; quick is seconds on a CPU
    "full": {"matmul_n": 8192, "matmul_repeats": 10,
             "probe": dict(n_per_class=8, n_orders=8, n_naive=16, batch_size=32, max_new_tokens=8),
             "train": dict(n_train=128, steps=12, batch_size=8), "dpo": dict(n_pairs=16, batch_size=4)},
    "quick": {"matmul_n": 256, "matmul_repeats": 3,
              "probe": dict(n_per_class=1, n_orders=2, n_naive=2, batch_size=2, max_new_tokens=2),
              "train": dict(n_train=4, steps=1, batch_size=2), "dpo": dict(n_pairs=2, batch_size=2)},
}
PAPER_PARAMS = {"model.name": "Llama-3.1-8B-Instruct", "model.source": "hub"}  # preflight's paper workloads


def check_preflight() -> dict[str, Any]:
    """The preflight's device checks for the paper profile on this machine (weights, data and disk are
    the pipeline's business, not the device's)."""
    stages = list(preflight.STAGE_KINDS)
    rep = preflight.Report("paper", stages)
    build = preflight.torch_cuda_build()
    rep.add("torch", True, preflight.describe_torch(build))
    workloads = preflight.default_workloads(PAPER_PARAMS, stages, paths.ROOT)
    preflight.check_gpu(rep, preflight.query_gpus(), build, workloads)
    return {"ok": rep.ok, "device": rep.device, "dtype": rep.dtype, "gpu": dataclasses.asdict(rep.gpu) if rep.gpu else None,
            "findings": [dataclasses.asdict(f) for f in rep.findings], "text": rep.text()}


def run_probe(kind: str, work: Path, device: str, dtype: Any, n_params: int, peak: float, sizes: dict) -> dict[str, Any]:
    from specllm.bench import probe
    from specllm.model.load import load_base

    d = model_dir(kind, work)
    model, tok = load_base(d, dtype=dtype)
    model = model.to(device)
    try:
        return probe.run(model, tok, d, n_params=n_params, peak=peak, **sizes)
    finally:
        del model
        _free(device)


def run_train(kind: str, work: Path, peak: float, sizes: dict) -> dict[str, Any]:
    r = run_isolated("train", {"variant": "project", "model_kind": kind, "work": str(work), **sizes})
    rate = flops.model_flops(r["n_params"], r["tokens"], "lora") / r["seconds"]
    r.update(model_flops_per_s=rate, mfu=rate / peak, flops_convention="4 N per token (LoRA, frozen base)")
    return r


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(check, figure, measured) rows of gpu_check.md; a check not run reads "not measured"."""
    out: list[tuple[str, str, str]] = []
    pf = r["preflight"]
    out.append(("preflight", "paper profile on this device", ("passed" if pf["ok"] else "FAILED") + f" ({pf['device']}, {pf['dtype']})"))
    for f in pf["findings"]:
        out.append(("preflight", f["what"], ("ok: " if f["ok"] else "FAIL: ") + f["found"]))
    mm = r["matmul"]
    out.append(("matmul", f"{mm['dtype']} {mm['n']}^3, best of {mm['repeats']}", f"{mm['flops_per_s'] / 1e12:.2f} TFLOP/s"))
    p = r.get("probe")
    for k, label in (("naive", "naive generate(), batch 1"), ("batched", "batched single forward"),
                     ("prefix", "batched + shared-prefix KV cache")):
        out.append(("probe", f"{label}: prompts/s", f"{p[k]['prompts_per_s']:.1f}" if p else "not measured"))
    if p:
        out.append(("probe", "batched / naive; prefix / batched", f"{p['batched_vs_naive']:.1f}x; {p['prefix_vs_batched']:.2f}x"))
    t = r.get("train")
    out.append(("LoRA train", "tokens/s (project loop)", f"{t['tokens_per_s']:,.0f}" if t else "not measured"))
    out.append(("LoRA train", "MFU (4N FLOPs/token over the measured matmul rate)", report.pct(t["mfu"]) if t else "not measured"))
    d = r.get("dpo")
    for k, label in (("policy_only", "policy + adapter + AdamW alone"), ("adapter_ref", "DPO, adapter-disabled reference"),
                     ("second_ref", "DPO, second loaded reference")):
        out.append(("DPO", f"{label}: peak memory / one model copy",
                    f"{report.gib(d[k]['peak_bytes'])} ({d[k]['peak_kind']}) = {d[k]['peak_vs_model']:.2f}x" if d else "not measured"))
    pl = r.get("pipeline")
    out.append(("pipeline", "smoke DAG from scratch", f"{pl['smoke_scratch_s']:.0f} s" if pl else "not measured (--pipeline, needs DVC)"))
    return out


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    head = (f"GPU check: {m['machine']}; model {m['model']} (N = {m['n_params']:,} non-embedding parameters, "
            f"{m['weights']}); torch {m['torch']} ({m['torch_build']}); {m['date']}; {m['wall_s']:.0f} s.\n\n")
    lines = ["| check | figure | measured |", "| --- | --- | --- |"]
    lines += ["| " + " | ".join(report.cell(x) for x in row) + " |" for row in rows(r)]
    errors = "".join(f"\n{name} failed: {text.strip().splitlines()[-1]}\n" for name, text in r.get("errors", {}).items())
    return head + "\n".join(lines) + "\n" + errors


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m specllm.bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random-smollm2",
                    help=f"{', '.join(MODEL_KINDS)} (default random-smollm2: no download)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: seconds on a CPU (the test)")
    ap.add_argument("--skip", nargs="*", default=[], choices=("probe", "train", "dpo"), help="checks to leave out")
    ap.add_argument("--pipeline", action="store_true", help="also time the smoke DAG (needs DVC; ~8 min on a CPU)")
    ap.add_argument("--out", type=Path, default=paths.ROOT / "results" / "gpu_check")
    args = ap.parse_args(argv)

    import torch

    from specllm.bench import dpo
    from specllm.model.load import load_base
    from specllm.precision import choose_device_dtype

    started = time.perf_counter()
    size = SIZES["quick" if args.quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="specllm-gpu-check-"))
    pf = check_preflight()
    print(pf["text"], flush=True)
    dev, dtype = choose_device_dtype()
    device = dev.type
    if device != "cuda":
        say("no CUDA GPU: the figures below are the CPU's (the check's plumbing), not a GPU's")
    mm = flops.matmul_rate(size["matmul_n"], repeats=size["matmul_repeats"], device=device, dtype=dtype)
    mm["repeats"] = size["matmul_repeats"]
    say(f"matmul {mm['dtype']} {mm['n']}^3: {mm['flops_per_s'] / 1e12:.3f} TFLOP/s")
    d = model_dir(args.model, work)
    base, _ = load_base(d)
    n = flops.non_embedding_params(base)
    weights = "random weights" if args.model.startswith("random-") else "real weights"
    del base
    build = preflight.torch_cuda_build()
    results: dict[str, Any] = {
        "meta": {"model": args.model, "n_params": n, "weights": weights, "device": device,
                 "dtype": str(dtype).removeprefix("torch."), "quick": args.quick,
                 "machine": torch.cuda.get_device_name(0) if device == "cuda" else f"{platform.machine()} CPU",
                 "torch": torch.__version__, "torch_build": preflight.describe_torch(build),
                 "python": platform.python_version(), "date": datetime.date.today().isoformat(),
                 "data": paths.rel(paths.RAW) if paths.MANIFEST.is_file() else "synthetic"},
        "preflight": pf, "matmul": mm}
    checks = {"probe": lambda: run_probe(args.model, work, device, dtype, n, mm["flops_per_s"], size["probe"]),
              "train": lambda: run_train(args.model, work, mm["flops_per_s"], size["train"]),
              "dpo": lambda: dpo.run(args.model, work, say=say, **size["dpo"])}
    for name, check in checks.items():
        if name in args.skip:
            continue
        # One failing check must not cost the others' figures (GPU time is scarce): its error is recorded,
        # the table says "not measured" and the exit status is 1.
        try:
            results[name] = check()
        except Exception as err:  # noqa: BLE001
            results.setdefault("errors", {})[name] = "".join(traceback.format_exception(err))[-4000:]
            say(f"{name} FAILED: {type(err).__name__}: {err}")
            _free(device)
    if "probe" in results:
        p = results["probe"]
        say(f"probe: naive {p['naive']['prompts_per_s']:.1f}, batched {p['batched']['prompts_per_s']:.1f}, prefix cache "
            f"{p['prefix']['prompts_per_s']:.1f} prompts/s")
    if "train" in results:
        t = results["train"]
        say(f"train: {t['tokens_per_s']:,.0f} tokens/s, MFU {t['mfu']:.1%} of the measured matmul rate")
    if args.pipeline:
        from specllm.bench import pipeline

        results["pipeline"] = pipeline.run(say)
    results["meta"]["wall_s"] = time.perf_counter() - started
    report.write_json(results, args.out / "gpu_check.json")
    (args.out / "gpu_check.md").write_text(markdown(results))
    print(markdown(results))
    say(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'} in {results['meta']['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    sys.exit(1 if main().get("errors") else 0)
