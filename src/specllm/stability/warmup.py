"""Supervised LoRA warm-up: teach the three labels before the order-stability probe.

Without it the small instruction model answers one label (QSO) for every prompt: its label prior
outweighs the object, so PSS measures the prior, not classification. The warm-up shows catalogue objects
that the probe never sees (stability_sample draws them from the rest of the catalogue), each in ONE
fixed feature order (the identity), with the catalogue label as the answer; the loss is the negative
log-probability of the label's tokens after the prompt (the same left-padded scoring DPO uses). The
probe then measures how a model that knows the task reacts to the orders it was not taught.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from specllm.stability.dpo import sequence_logps

WARMUP_ORDER = 0  # index of the identity order in features.make_orders: the one order the warm-up shows


def train_warmup(model, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *, pad: int, lr: float,
                 epochs: int, batch_size: int, seed: int, max_grad_norm: float = 1.0,
                 log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Train the model's LoRA adapter on -log p(target | prompt) (AdamW, constant learning rate, seeded
    shuffles). Returns the per-step history and the time."""
    prompts, targets = list(prompts), list(targets)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (wrap it with a LoRA adapter first)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    history, step, t0 = [], 0, time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = list(range(len(prompts)))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            logp = sequence_logps(model, [prompts[i] for i in idx], [targets[i] for i in idx], pad)
            loss = -logp.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            step += 1
            history.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach())})
            if log:
                log(f"warm-up step {step}: loss {float(loss):.4f}")
    model.eval()
    return {"history": history, "seconds": time.perf_counter() - t0, "n_examples": len(prompts)}
