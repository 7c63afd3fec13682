"""The training loop: LoRA on the serialized spectra, one process or several (DDP), resumable.

One code path for every setting: with one process the loss module runs as is; under `torchrun`
(WORLD_SIZE > 1) it is wrapped in torch's DistributedDataParallel (gloo on CPU, NCCL on GPUs).

Batches. `batch_size` is the number of spectra per optimizer step, all processes and accumulation
micro-batches together; every process builds the same epoch plan (data.length_grouped_batches from
seed and epoch) and takes its share of each step's batch. The loss is the sum of the target tokens'
cross-entropy divided by the number of target tokens in the whole step's batch (scaled by the number
of processes, which DDP's gradient averaging divides out again), so one process and N processes
compute the same gradient up to floating-point summation order.

Only the logits of positions that predict a target token are computed (`logits_to_keep`): with a
~530-token prompt and a ~10-token target that skips almost all of the language-model head.

Checkpoints (checkpoint.py) every `checkpoint_every` optimizer steps hold everything the rest of the
run depends on, so a run killed at any moment and restarted ends with the same adapter as an
uninterrupted one (bit for bit on CPU with the same number of processes and threads).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import inspect
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specllm.errors import InputError
from specllm.io import sha256_file, write_json, write_text
from specllm.machine import peak_memory
from specllm.precision import choose_device_dtype
from specllm.serialize import read_serialized
from specllm.train import checkpoint as ckpt
from specllm.train.data import (
    IGNORE,
    collate,
    encode_records,
    length_grouped_batches,
    split_batch,
)
from specllm.train.lora import (
    LLAMA_31_8B,
    count_parameters,
    lora_param_count,
    make_lora_model,
    save_adapter,
)
from specllm.train.settings import TrainSettings

LOSS_COLUMNS = ("step", "epoch", "loss", "lr", "tokens")


def dist_info() -> tuple[int, int, int]:
    """(world_size, rank, local_rank) from the environment torchrun sets; (1, 0, 0) otherwise."""
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))


def _loss_module(model):
    import torch
    import torch.nn.functional as F

    base = model.get_base_model()
    keeps = "logits_to_keep" in inspect.signature(base.forward).parameters

    class TargetLoss(torch.nn.Module):
        """Sum of the cross-entropy over target tokens; the module DDP wraps."""

        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, input_ids, attention_mask, labels):
            shifted = labels[:, 1:]  # logits at position j predict token j + 1
            if keeps:
                keep = (shifted != IGNORE).any(0).nonzero().squeeze(1)
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
                logits, target = out.logits, shifted[:, keep]
            else:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
                logits, target = out.logits[:, :-1], shifted
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                   ignore_index=IGNORE, reduction="sum")

    return TargetLoss(model)


def _model_fingerprint(model_dir: Path) -> str:
    """Cheap identity of a model folder: config.json and each weight file's name, size and safetensors header."""
    from specllm.model.load import weight_files

    h = hashlib.sha256((model_dir / "config.json").read_bytes())
    for f in weight_files(model_dir):
        with open(f, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            h.update(f.name.encode() + str(f.stat().st_size).encode() + fh.read(min(size, 1 << 24)))
    return h.hexdigest()


def _loss_csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOSS_COLUMNS)
    for step, epoch, loss, lr, tokens in rows:
        w.writerow([step, f"{epoch:.4f}", f"{loss:.6f}", f"{lr:.6g}", tokens])
    return buf.getvalue()


def train(settings: TrainSettings, model_dir: str | Path, train_file: str | Path, out_dir: str | Path,
          results_dir: str | Path, ckpt_dir: str | Path, *, max_steps: int | None = None,
          log: Callable[[str], Any] = print, progress: bool = True, throttle_s: float = 0.0) -> dict[str, Any]:
    """Train one LoRA run; write the adapter to out_dir, loss.csv and train.json to results_dir.

    Resumes from the last checkpoint in ckpt_dir when it belongs to the same settings, data and model;
    removes ckpt_dir when the run completes. max_steps stops early (timing only: the schedule still
    spans the whole run, and the outputs say complete: false). throttle_s sleeps after each step
    (tests use it so that a kill lands mid-run). Returns the train.json summary.
    """
    import torch
    import torch.distributed as dist
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from specllm.model.load import check_model_folder, load_base

    started = time.perf_counter()
    model_dir, train_file, out_dir = Path(model_dir), Path(train_file), Path(out_dir)
    results_dir, ckpt_dir = Path(results_dir), Path(ckpt_dir)
    world, rank, local_rank = dist_info()
    per_process = settings.check_world(world)
    parts = world * settings.grad_accum
    check_model_folder(model_dir)
    records = read_serialized(train_file)

    device, dtype = choose_device_dtype(local_rank)
    own_group = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        own_group = True
    say = log if rank == 0 else (lambda *_: None)

    try:
        model, tokenizer = load_base(model_dir, dtype=dtype)
        examples = encode_records(records, tokenizer)
        lengths = [len(e) for e in examples]
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if len(examples) < parts:
            raise InputError(train_file, "-", f"{len(examples)} examples cannot fill {parts} micro-batches "
                             f"({world} processes x grad_accum {settings.grad_accum})", "use more training spectra")

        model = make_lora_model(model, settings, where=settings.where("target_modules")).to(device)
        model.train()
        trainable, total = count_parameters(model)
        try:
            formula = lora_param_count(model.config, settings.rank, settings.target_modules)
        except ValueError:
            formula = None
        mods = ", ".join(settings.target_modules)
        say(f"train {settings.run}: LoRA r={settings.rank} alpha={settings.alpha:g} on {mods}: {trainable:,} trainable "
            f"of {total:,} parameters ({trainable / total:.3%}); from the config: "
            f"{'n/a' if formula is None else f'{formula:,}'}; the same adapter on Llama-3.1-8B would have "
            f"{lora_param_count(LLAMA_31_8B, settings.rank, settings.target_modules):,}")
        if formula is not None and formula != trainable:
            say(f"train {settings.run}: warning: the config formula ({formula:,}) differs from the model ({trainable:,})")

        engine = _loss_module(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            engine = DDP(engine, device_ids=[device] if device.type == "cuda" else None)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

        def epoch_batches(epoch: int) -> list[list[int]]:
            batches = length_grouped_batches(lengths, settings.batch_size, settings.seed, epoch,
                                             settings.group_by_length_mult)
            return [b for b in batches if len(b) >= parts]  # a last batch too small to split is left out

        steps_per_epoch = len(epoch_batches(0))
        total_steps = steps_per_epoch * settings.epochs
        warmup = math.ceil(settings.warmup_ratio * total_steps)
        schedule = {"constant": "constant_with_warmup"}.get(settings.lr_schedule, settings.lr_schedule)
        scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
        fingerprint = settings.fingerprint(sha256_file(train_file), _model_fingerprint(model_dir))

        # resume
        step, epoch0, batch0, history, counts = 0, 0, 0, [], {"tokens": 0, "padded": 0}
        resumed_from = None
        found = ckpt.checkpoints(ckpt_dir)
        if found:
            state = ckpt.read_state(found[-1])
            if state.get("fingerprint") != fingerprint:
                say(f"train {settings.run}: ignoring {found[-1]} (written for other settings, data or model)")
            elif state["world_size"] != world:
                raise InputError(found[-1] / ckpt.STATE, "world_size",
                                 f"checkpoint written by {state['world_size']} processes, this run has {world}",
                                 f"resume with {state['world_size']} processes, or delete {ckpt_dir} to start over")
            else:
                rngs = ckpt.load(found[-1], model, optimizer, scheduler, device)
                step, epoch0, batch0 = state["step"], state["epoch"], state["batch"]
                history, counts = state["history"], state["counts"]
                resumed_from = step
                ckpt.set_rng_state(rngs[rank])
                say(f"train {settings.run}: resumed from {found[-1]} (step {step} of {total_steps})")

        say(f"train {settings.run}: {len(examples)} spectra, {steps_per_epoch} steps/epoch x {settings.epochs} epochs, "
            f"batch {settings.batch_size} = {world} process(es) x {settings.grad_accum} x {per_process}, "
            f"{device.type} {str(dtype).removeprefix('torch.')}")
        bar = tqdm(total=total_steps, initial=step, desc=f"train {settings.run}", unit="step",
                   disable=not progress or rank != 0, dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        loop_start, run_tokens, stop = time.perf_counter(), 0, False
        for epoch in range(epoch0, settings.epochs):
            batches = epoch_batches(epoch)
            for b in range(batch0 if epoch == epoch0 else 0, len(batches)):
                batch = batches[b]
                micro = split_batch(batch, parts)
                n_target = sum(examples[i].n_target for i in batch)
                local = torch.zeros((), dtype=torch.float64, device=device)
                for k, mb in enumerate(micro[rank * settings.grad_accum:(rank + 1) * settings.grad_accum]):
                    inputs = {n: t.to(device) for n, t in collate([examples[i] for i in mb], pad_id).items()}
                    last = k == settings.grad_accum - 1
                    with engine.no_sync() if world > 1 and not last else contextlib.nullcontext():
                        loss_sum = engine(**inputs)
                        (loss_sum * (world / n_target)).backward()
                    local += loss_sum.detach().double()
                if settings.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                lr_now = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if world > 1:
                    dist.all_reduce(local)
                step += 1
                n_tokens = sum(lengths[i] for i in batch)
                run_tokens += n_tokens
                counts["tokens"] += n_tokens
                counts["padded"] += sum(max(lengths[i] for i in mb) * len(mb) for mb in micro)
                loss = float(local) / n_target
                history.append([step, epoch + (b + 1) / len(batches), loss, lr_now, counts["tokens"]])
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr_now:.2e}")
                if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < total_steps:
                    position = (epoch, b + 1) if b + 1 < len(batches) else (epoch + 1, 0)
                    rngs = [ckpt.rng_state()]
                    if world > 1:
                        gathered = [None] * world if rank == 0 else None
                        dist.gather_object(rngs[0], gathered, dst=0)
                        rngs = gathered
                    if rank == 0:
                        ckpt.save(ckpt_dir, step, model, optimizer, scheduler, rngs,
                                  {"epoch": position[0], "batch": position[1], "world_size": world,
                                   "fingerprint": fingerprint, "history": history, "counts": counts})
                    if world > 1:
                        dist.barrier()
                if throttle_s:
                    time.sleep(throttle_s)
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
            if stop:
                break
        bar.close()
        loop_s = time.perf_counter() - loop_start
        peak, peak_kind = peak_memory(device)
        if world > 1:
            t = torch.tensor([peak], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            peak = int(t.item())

        complete = step >= total_steps
        summary = {
            "run": settings.run, "complete": complete, "settings": settings.as_dict(), "seed": settings.seed,
            "trainable_params": trainable, "total_params": total, "trainable_share": trainable / total,
            "lora_param_count_config": formula,
            "llama31_8b_lora_param_count": lora_param_count(LLAMA_31_8B, settings.rank, settings.target_modules),
            "n_train": len(examples), "steps": step, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
            "warmup_steps": warmup, "epochs": settings.epochs, "world_size": world,
            "per_process_batch": per_process,
            "tokens": counts["tokens"], "tokens_per_example": {"min": min(lengths), "max": max(lengths)},
            "padding_share": round(1 - counts["tokens"] / counts["padded"], 6) if counts["padded"] else 0.0,
            "final_loss": history[-1][2] if history else None,
            "tokens_per_s": round(run_tokens / loop_s, 2) if loop_s > 0 else None,
            "s_per_step": round(loop_s / max(step - (resumed_from or 0), 1), 4),
            "train_loop_s": round(loop_s, 2), "wall_s": round(time.perf_counter() - started, 2),
            "resumed_from_step": resumed_from,
            "peak_memory_bytes": peak, "peak_memory_kind": peak_kind,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
            "dtype": str(dtype).removeprefix("torch."),
            "max_steps": max_steps,
        }
        if rank == 0:
            save_adapter(model, out_dir, model_dir)
            write_text(results_dir / "loss.csv", _loss_csv(history))
            write_json(results_dir / "train.json", summary)
            if complete:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
            say(f"train {settings.run}: {step} steps, final loss {summary['final_loss']:.4f}, "
                f"{summary['tokens_per_s']:,.0f} tokens/s, padding {summary['padding_share']:.2%}, "
                f"peak memory {peak / 2**30:.2f} GiB, {summary['wall_s']:.1f} s -> {out_dir}")
        if world > 1:
            dist.barrier()
        return summary
    finally:
        if own_group and dist.is_initialized():
            # DDP's Reducer holds the process group, and pybind frees a Reducer with the GIL held: were it the group's
            # last holder (the group destroyed first, DDP freed when this frame goes), ProcessGroupGloo's destructor
            # would join its worker threads under the GIL while one of them waits for the GIL to free a finished
            # collective's tensors, and the process would never exit (seen under torchrun on the CPU:
            # tests/test_train_ddp.py; pytorch/pytorch#56297). So DDP goes first, cycles included, while the group
            # is still registered, and the group's own binding, which releases the GIL, frees it.
            engine = None
            gc.collect()
            dist.destroy_process_group()


def read_adapter(folder: str | Path) -> dict[str, Any]:
    """The adapter tensors saved in a run's output folder (adapter_model.safetensors), by name."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))

