"""bench.json (every figure) and bench.md (the table the README shows)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def gib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB"


def pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def cell(text: str) -> str:
    """A Markdown table cell: a literal '|' (as in the separator `4|5|6`) is escaped so the row keeps its columns."""
    return str(text).replace("|", "\\|")


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=float) + "\n")
    return path


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(workload, figure, value, target / verdict) rows from the results, in a fixed order."""
    out: list[tuple[str, str, str, str]] = []
    mm = results.get("matmul")
    if mm:
        out.append(("machine", f"{mm['dtype']} {mm['n']}x{mm['n']} matmul ({mm['threads']} threads)",
                    f"{mm['flops_per_s'] / 1e9:.1f} GFLOP/s", "the ceiling (100%)"))
        for name, rate in mm.get("before", {}).items():
            out.append(("machine", f"matmul again, right before {name}", f"{rate / 1e9:.1f} GFLOP/s",
                        "the ceiling is the highest rate so far"))
    p = results.get("probe")
    if p:
        for k, label in (("naive", "naive generate(), batch 1"), ("batched", "batched single forward"),
                         ("prefix", "batched + shared-prefix KV cache")):
            out.append(("probe", f"{label}: prompts/s", f"{_num(p[k]['prompts_per_s'])} ({pct(p[k]['share_of_matmul'])} of matmul)",
                        ">= 70% of matmul" if k == "batched" else ""))
        out.append(("probe", "batched / naive", f"{p['batched_vs_naive']:.1f}x", "> 1x (GPU: >= 100x)"))
        out.append(("probe", "prefix cache / batched", f"{p['prefix_vs_batched']:.2f}x", ""))
        a = p["agreement_naive_batched"]
        out.append(("probe", "naive vs batched: classes, max |dh|",
                    f"{'same' if a['same_classes'] else str(a['n_class_differ']) + ' differ'}, {a['hidden_max_abs_diff']:.1e} "
                    f"(rel {a['hidden_max_rel_diff']:.1e})", "same; rel < 1e-2"))
    t = results.get("train")
    if t:
        for k, label in (("project", "project loop"), ("hf_trainer", "HF Trainer (defaults)")):
            r = t[k]
            out.append(("LoRA train", f"{label}: tokens/s", f"{_num(r['tokens_per_s'])} ({pct(r['share_of_matmul'])} of matmul)",
                        ">= 70% of matmul" if k == "project" else ""))
            out.append(("LoRA train", f"{label}: padding share, peak RSS", f"{pct(r['padding_share'])}, {gib(r['peak_rss_bytes'])}",
                        "padding < 10%" if k == "project" else ""))
        out.append(("LoRA train", "project / HF Trainer", f"{t['speedup_vs_hf']:.2f}x tokens/s, {t['memory_vs_hf']:.2f}x memory", ""))
    d = results.get("dpo")
    if d:
        for k, label in (("policy_only", "single model + adapter + AdamW"), ("adapter_ref", "DPO, adapter-disabled reference"),
                         ("second_ref", "DPO, second loaded reference")):
            extra = "" if k == "policy_only" else f" ({d[k + '_vs_single']:.2f}x single)"
            out.append(("DPO", f"{label}: peak RSS", gib(d[k]["peak_rss_bytes"]) + extra,
                        "< 1.5x single" if k == "adapter_ref" else ""))
    for r in results.get("serialization", []):
        cost = f", {r['train_s_run']:.0f} s per {r['run_n_train']} x {r['run_epochs']} epochs" if "train_s_run" in r else ""
        out.append(("serialization", f"`{r['setting']}`: tokens per spectrum ({r['n_points']} values)",
                    f"{r['tokens_per_spectrum']:.1f} ({r['relative_to_paper']:.2f}x){cost}", ""))
    x = results.get("extrapolation")
    if x:
        out.append(("A100 extrapolation", f"Llama-3.1-8B LoRA, {x['T_tokens']:,.0f} tokens, MFU {x['mfu']:.0%}",
                    f"{x['a100_hours']:.2f} A100-h (original: {x['original_a100_hours']:.0f})", "extrapolation, not measured"))
    pl = results.get("pipeline")
    if pl:
        for k, label, target in (("smoke_scratch_s", "smoke DAG from scratch", "< 600 s"), ("noop_repro_s", "no-op dvc repro", "< 5 s"),
                                 ("restore_s", "full restore from a warm remote", "")):
            if k in pl:
                out.append(("pipeline", label, f"{pl[k]:.1f} s", target))
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results.get("meta", {})
    head = (f"Machine: {m.get('machine', 'n/a')}; model {m.get('model', 'n/a')} (N = {_num(m.get('n_params'))} non-embedding "
            f"parameters); {m.get('date', '')}; torch {m.get('torch', '')}, {m.get('threads', '')} threads.\n\n")
    lines = ["| workload | figure | measured | target |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows(results)]
    verdicts = results.get("targets", [])
    tail = ""
    if verdicts:
        tail = "\n\n| target | measured | met |\n| --- | --- | --- |\n" + "\n".join(
            f"| {cell(v['target'])} | {cell(v['measured'])} | {'yes' if v['met'] else 'no'} |" for v in verdicts)
    return head + "\n".join(lines) + tail + "\n"


def write_markdown(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(results))
    return path
