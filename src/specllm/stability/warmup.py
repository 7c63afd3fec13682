"""Supervised LoRA warm-up: teach the three labels before the order-stability probe.

Without it the small instruction model answers one label (QSO) for every prompt: its label prior
outweighs the object, so PSS measures the prior, not classification. The warm-up shows catalogue objects
that the probe never sees (stability_sample draws them from the rest of the catalogue), each in
stability.warmup_orders seeded random feature orders that are never probed (features.warmup_orders),
with the catalogue label as the answer; the loss is the negative log-probability of the label's tokens
after the prompt (the same left-padded scoring DPO uses). The probe then measures how a model that
knows the task reacts to orders it was not taught.

Why several orders: taught in one fixed order (the identity), SmolLM2 learned the label in that order
(33% -> 65% on the warm-up objects) but still answered QSO for all 18 probed objects in the other
orders: the probe again read a prior, now one tied to the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from specllm.stability.dpo import optimise, sequence_logps


def train_warmup(model, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *, pad: int, lr: float,
                 epochs: int, batch_size: int, seed: int, max_grad_norm: float = 1.0,
                 log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Train the model's LoRA adapter on -log p(target | prompt) (dpo.optimise: AdamW, constant learning rate,
    seeded shuffles). Returns the per-step history and the time."""
    prompts, targets = list(prompts), list(targets)

    def batch_loss(idx: list[int]):
        return -sequence_logps(model, [prompts[i] for i in idx], [targets[i] for i in idx], pad).mean(), {}

    history, seconds = optimise(model, len(prompts), batch_loss, lr=lr, epochs=epochs, batch_size=batch_size,
                                seed=seed, max_grad_norm=max_grad_norm, log=log, tag="warm-up step")
    return {"history": history, "seconds": seconds, "n_examples": len(prompts)}
