"""Direct preference optimisation (Rafailov et al. 2023) with LoRA, one model copy in memory.

The DPO loss is written here instead of using TRL's DPOTrainer: TRL is not in the hashed locks
(requirements.lock, requirements/cuda.lock), which cannot be regenerated offline, and its releases pin
transformers/peft ranges that would have to be checked against the pinned transformers 5.23.0 and
peft 0.21.2. The loss is a few lines:

    loss = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

with log pi(y|x) the summed log-probability of the completion's tokens. The reference model is the
same base with the LoRA adapter disabled (peft's `disable_adapter()`), and its log-probabilities
are computed once, before the first step: never a second copy of the weights.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean DPO loss over a batch of summed log-probabilities, and reward statistics."""
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    return loss, {"margin": float(margin.detach().mean()), "reward_acc": float((margin.detach() > 0).float().mean())}


def sequence_logps(model, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    """Summed log-probability of each completion given its prompt ([n]).

    The batch is left-padded (position ids from the mask), so every completion ends in the last
    column and only the last max(len(completion)) + 1 positions need logits (`logits_to_keep`):
    full-vocabulary logits over whole prompts were most of DPO's peak memory (49,152 floats per
    token for SmolLM2), and the completions are a few tokens long."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
    dev = next(model.parameters()).device
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
    width = max(len(s) for s in seqs)
    keep = max(len(c) for c in completions) + 1
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    target_mask = torch.zeros((len(seqs), keep - 1), dtype=torch.bool)  # over the kept columns that are predicted
    for row, (s, c) in enumerate(zip(seqs, completions)):
        ids[row, width - len(s):] = torch.tensor(s)
        mask[row, width - len(s):] = 1
        if len(c):
            target_mask[row, keep - 1 - len(c):] = True
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions, target_mask = ids.to(dev), mask.to(dev), positions.to(dev), target_mask.to(dev)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=keep).logits
    logits = logits[:, -keep:-1].float()  # column width-keep+j predicts token width-keep+j+1
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, width - keep + 1:, None]).squeeze(-1)
    return (logp * target_mask).sum(dim=-1)


@torch.no_grad()
def reference_logps(model, prompts, chosen, rejected, pad: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference log-probabilities of chosen and rejected completions with the adapter disabled (computed once)."""
    was_training = model.training
    model.eval()
    out_c, out_r = [], []
    with model.disable_adapter():
        for s in range(0, len(prompts), batch_size):
            sl = slice(s, s + batch_size)
            out_c.append(sequence_logps(model, prompts[sl], chosen[sl], pad).cpu())
            out_r.append(sequence_logps(model, prompts[sl], rejected[sl], pad).cpu())
    model.train(was_training)
    return torch.cat(out_c), torch.cat(out_r)


def optimise(model, n_examples: int, batch_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]], *,
             lr: float, epochs: int, batch_size: int, seed: int, max_grad_norm: float = 1.0,
             log: Callable[[str], Any] | None = None, tag: str = "step") -> tuple[list[dict[str, Any]], float]:
    """The adapter's training loop shared by DPO and the supervised warm-up: AdamW (constant learning rate,
    no weight decay) over the trainable parameters, seeded shuffles of the example indices each epoch,
    gradient clipping. batch_loss(indices) -> (loss, statistics). Returns (per-step history, seconds)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (wrap it with a LoRA adapter first)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    history = []
    step = 0
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = list(range(n_examples))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            loss, stats = batch_loss(order[s:s + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            step += 1
            history.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach()), **stats})
            if log:
                log(f"{tag} {step}: loss {history[-1]['loss']:.4f}")
    model.eval()
    return history, time.perf_counter() - t0


def train_dpo(model, prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]], rejected: Sequence[Sequence[int]],
              *, pad: int, beta: float, lr: float, epochs: int, batch_size: int, seed: int, max_grad_norm: float = 1.0,
              log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Train the model's LoRA adapter with DPO (AdamW, constant learning rate). Returns per-step history."""
    prompts, chosen, rejected = list(prompts), list(chosen), list(rejected)
    ref_c, ref_r = reference_logps(model, prompts, chosen, rejected, pad, batch_size)

    def batch_loss(idx: list[int]):
        both = sequence_logps(model, [prompts[i] for i in idx] * 2,
                              [chosen[i] for i in idx] + [rejected[i] for i in idx], pad)
        pc, pr = both[:len(idx)], both[len(idx):]
        return dpo_loss(pc, pr, ref_c[idx].to(pc.device), ref_r[idx].to(pc.device), beta)

    history, seconds = optimise(model, len(prompts), batch_loss, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                                max_grad_norm=max_grad_norm, log=log, tag="dpo step")
    return {"history": history, "seconds": seconds, "n_pairs": len(prompts),
            "ref_chosen_mean": float(ref_c.mean()) if len(ref_c) else None,
            "ref_rejected_mean": float(ref_r.mean()) if len(ref_r) else None}


def model_bytes(model) -> int:
    """Bytes of the model's own weights (adapter excluded)."""
    return int(sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n))


def adapter_bytes(model) -> int:
    return int(sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" in n))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
