"""Pilot of the stability warm-up's adapter shape (2026-12-01, CPU): does a LoRA warm-up teach SmolLM2 the
three labels so that it answers held-out objects in orders it was never taught?

    python profiles/pilot/warmup_pilot.py RUN LR TARGETS STEPS [CHUNKS]

RUN is a folder where the small profile ran (models/base, data/raw/catalogue.csv,
results/stability/objects.csv). The warm-up objects and orders are the stage's (features.sample_warmup,
features.warmup_orders: 60 per class, 3 orders each); the held-out set is 20 other catalogue objects per
class, each in one seeded order that is never probed. Training is the stage's loss and optimiser
(dpo.optimise on -log p(label | prompt), batch 8, AdamW at a constant LR, rank 8, alpha 16) on seeded
subsamples, with the held-out accuracy and answer counts after each of CHUNKS chunks. Results: warmup.md.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

root, lr, targets, steps = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
chunks = int(sys.argv[5]) if len(sys.argv) > 5 else 4
sys.path.insert(0, str(root / "src"))
from specllm.evaluate.generate import pad_id  # noqa: E402
from specllm.stability import features, prompts  # noqa: E402
from specllm.stability.dpo import optimise, sequence_logps  # noqa: E402
from specllm.stability.probe import probe  # noqa: E402
from specllm.stability.runtime import build_prompts, load_model  # noqa: E402
from specllm.train.lora import make_lora_model  # noqa: E402

SEED, BATCH = 20250814, 8
cat = pd.read_csv(root / "data/raw/catalogue.csv", dtype={"obj_id": str})
probed = pd.read_csv(root / "results/stability/objects.csv", dtype={"obj_id": str})
warm = features.sample_warmup(cat, probed, 60, SEED, "catalogue")
rest = cat[~cat.obj_id.isin(set(warm.obj_id) | set(probed.obj_id))]
held = pd.concat([rest[rest["class"] == c].sample(20, random_state=1) for c in features.CLASSES])
base = root / "models/base"
model, tok, _ = load_model(base)
probed_orders = features.make_orders(15, SEED)


def encoded(objects, per_object):
    recs = [r for k, o in enumerate(per_object) for r in build_prompts(tok, objects.iloc[k:k + 1], o, 3, base)]
    return recs, [prompts.encode(tok, r["prompt"]) for r in recs]


recs, enc = encoded(warm, features.warmup_orders(len(warm), 3, probed_orders, SEED))
tgt = [prompts.label_ids_full(tok, r["class"]) for r in recs]
held_orders = features.warmup_orders(len(held), 1, probed_orders, 99)  # never probed (taught: 540 of 10! orders)
hrecs, henc = encoded(held, held_orders)
truth = np.array([features.CLASSES.index(r["class"]) for r in hrecs])
label_ids = prompts.label_token_ids(tok, features.CLASSES, base)
model = make_lora_model(model, SimpleNamespace(rank=8, alpha=16, dropout=0.0, target_modules=targets, seed=0))


def held_out():
    answer = probe(model, tok, henc, label_ids, batch_size=16, prefix_cache=True)["answer"]
    return f"accuracy {(answer == truth).mean():.3f}, answers {np.bincount(answer[answer >= 0], minlength=3).tolist()}"


print("before:", held_out(), flush=True)
n = steps // chunks
for chunk in range(chunks):
    sub = np.random.default_rng(chunk).permutation(len(enc))[: n * BATCH].tolist()
    hist, _ = optimise(model, len(sub), lambda idx, sub=sub: (-sequence_logps(
        model, [enc[sub[i]] for i in idx], [tgt[sub[i]] for i in idx], pad_id(tok)).mean(), {}),
        lr=lr, epochs=1, batch_size=BATCH, seed=chunk, max_grad_norm=1.0)
    model.train(False)
    print(f"step {(chunk + 1) * n}: loss {np.mean([h['loss'] for h in hist[-5:]]):.3f},", held_out(), flush=True)
