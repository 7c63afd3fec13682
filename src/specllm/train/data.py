"""Training examples and their batches.

An example is the chat-formatted prompt's tokens, then the target's tokens ("Redshift: 0.123"),
then the end-of-sequence token; labels are -100 on the prompt, so the loss is on the target (and
the eos that ends it) only. Prompt and target are tokenised separately, exactly as generation sees
them (the prompt is fed, the target is generated after it).

Batches are length-grouped: each epoch's order is a permutation drawn from (seed, epoch); it is cut
into mega-batches of `mult x batch_size` examples, each sorted by length (longest first) and cut into
batches, and the batches are shuffled with the same generator (the one holding the longest example
first, so memory runs out at once if it does). Examples of similar length share a batch, so little
of each padded batch is padding; `padding_share` measures it on the micro-batches actually run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE = -100  # label of tokens without loss (prompt, padding); torch's cross_entropy ignore_index


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def n_target(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(prompt: str, target: str, tokenizer) -> Example:
    """Token ids of prompt + target + eos, with labels -100 on the prompt."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tokenizer(target, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; the model could not learn where a target ends")
    t = [*t, tokenizer.eos_token_id]
    return Example(tuple(p + t), tuple([IGNORE] * len(p) + t))


def encode_records(records: Sequence[dict[str, Any]], tokenizer) -> list[Example]:
    return [encode_example(r["prompt"], r["target"], tokenizer) for r in records]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mult: int = 50) -> list[list[int]]:
    """One epoch's batches (lists of example indices), deterministic in (seed, epoch).

    Every index appears exactly once; all batches have batch_size examples except possibly one."""
    lengths = np.asarray(lengths)
    n = lengths.size
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    mega = batch_size * mult
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        group = perm[start:start + mega]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches.extend(group[i:i + batch_size].tolist() for i in range(0, group.size, batch_size))
    order = rng.permutation(len(batches))
    batches = [batches[k] for k in order]
    if batches:  # longest batch first: an out-of-memory shows at the first step, not hours in
        longest = max(range(len(batches)), key=lambda k: (int(lengths[batches[k]].max()), -k))
        batches.insert(0, batches.pop(longest))
    return batches


def split_batch(batch: Sequence[int], parts: int) -> list[list[int]]:
    """Cut a (length-sorted) batch into `parts` contiguous micro-batches of near-equal size, none empty."""
    if len(batch) < parts:
        raise ValueError(f"a batch of {len(batch)} cannot be split into {parts} non-empty micro-batches")
    return [list(map(int, x)) for x in np.array_split(np.asarray(batch, dtype=np.int64), parts)]


def collate(examples: Sequence[Example], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on the padding)."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def padding_share(micro_batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padding among all tokens of the padded micro-batches."""
    lengths = np.asarray(lengths)
    total = padded = 0
    for mb in micro_batches:
        ls = lengths[list(mb)]
        padded += int(ls.max()) * ls.size
        total += int(ls.sum())
    return (padded - total) / padded if padded else 0.0
