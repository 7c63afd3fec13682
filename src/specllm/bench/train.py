"""LoRA training: the project's loop (specllm.train.loop.train: length-grouped batches, loss on the target
tokens only, LM head only where a target is predicted) against a plain Hugging Face Trainer with default
settings (random batches of 8 padded to the longest, full logits and the model's own loss over the same
-100-masked labels) on the same spectra, model, LoRA adapter (r 8, alpha 16, q/v) and learning rate.
Each runs in its own subprocess (`isolated`), so its peak RSS is its own."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def _records(model_kind: str, work: str, n_train: int):
    from specllm.bench.common import model_dir, spectra_records
    from specllm.model.load import load_base

    d = model_dir(model_kind, Path(work))
    _, tok = load_base(d)
    return d, tok, spectra_records(tok, n_train)


def isolated(variant: str, model_kind: str, work: str, n_train: int, steps: int, batch_size: int) -> dict[str, Any]:
    import torch

    from specllm.bench.common import write_records
    from specllm.bench.flops import non_embedding_params

    d, tok, records = _records(model_kind, work, n_train)
    tmp = Path(tempfile.mkdtemp(dir=work))
    if variant == "project":
        from specllm.train.loop import train
        from specllm.train.settings import TrainSettings

        settings = TrainSettings(run="bench", batch_size=batch_size, epochs=1, checkpoint_every=0)
        s = train(settings, d, write_records(records, tmp / "train.jsonl"), tmp / "out", tmp / "res", tmp / "ckpt",
                  max_steps=steps, log=lambda m: print(f"[bench]   {m}", flush=True), progress=False)
        from specllm.model.load import load_base

        n = non_embedding_params(load_base(d)[0])
        return {"variant": variant, "steps": s["steps"], "tokens": s["tokens"], "seconds": s["train_loop_s"],
                "tokens_per_s": s["tokens"] / s["train_loop_s"], "padding_share": s["padding_share"], "n_params": n,
                "threads": torch.get_num_threads()}
    if variant == "hf_trainer":
        from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

        from specllm.model.load import load_base
        from specllm.train.data import encode_records
        from specllm.train.lora import make_lora_model
        from specllm.train.settings import TrainSettings

        model, _ = load_base(d)
        n = non_embedding_params(model)
        model = make_lora_model(model, TrainSettings())
        model.train()
        data = [{"input_ids": list(e.input_ids), "attention_mask": [1] * len(e), "labels": list(e.labels)}
                for e in encode_records(records, tok)]
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        inner = DataCollatorForSeq2Seq(tok, padding=True)
        counts = {"tokens": 0, "padded": 0}

        def collate(features):
            batch = inner(features)
            counts["tokens"] += int(batch["attention_mask"].sum())
            counts["padded"] += int(batch["attention_mask"].numel())
            return batch

        args = TrainingArguments(output_dir=str(tmp / "hf"), max_steps=steps, per_device_train_batch_size=batch_size,
                                 learning_rate=1e-4, report_to="none", save_strategy="no", disable_tqdm=True,
                                 logging_strategy="no", seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        return {"variant": variant, "steps": steps, "tokens": counts["tokens"], "seconds": seconds,
                "tokens_per_s": counts["tokens"] / seconds,
                "padding_share": 1 - counts["tokens"] / counts["padded"] if counts["padded"] else 0.0,
                "n_params": n, "threads": torch.get_num_threads()}
    raise ValueError(variant)


def run(model_kind: str, work: Path, *, n_train: int, steps: int, batch_size: int, peak: float, say) -> dict[str, Any]:
    from specllm.bench.common import run_isolated
    from specllm.bench.flops import model_flops

    out: dict[str, Any] = {"n_train": n_train, "steps": steps, "batch_size": batch_size,
                           "flops_convention": "4 N per token (LoRA, frozen base), N = non-embedding parameters"}
    for variant in ("project", "hf_trainer"):
        r = run_isolated("train", {"variant": variant, "model_kind": model_kind, "work": str(work), "n_train": n_train,
                                   "steps": steps, "batch_size": batch_size})
        rate = model_flops(r["n_params"], r["tokens"], "lora") / r["seconds"]
        r.update(model_flops_per_s=rate, share_of_matmul=rate / peak)
        out[variant] = r
        say(f"train {variant}: {r['tokens_per_s']:.1f} tokens/s, padding {r['padding_share']:.1%}, "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB, {r['share_of_matmul']:.0%} of the matmul rate")
    out["speedup_vs_hf"] = out["project"]["tokens_per_s"] / out["hf_trainer"]["tokens_per_s"]
    out["memory_vs_hf"] = out["project"]["peak_rss_bytes"] / out["hf_trainer"]["peak_rss_bytes"]
    return out
