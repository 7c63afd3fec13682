"""Stage `stability_warmup`: teach the three labels with a short supervised LoRA run before the probe.

    python -m specllm.stages.stability_warmup

Reads results/stability/{warmup_objects.csv, orders.json} and models/base. Shows every warm-up object
(never a probed one) in stability.warmup_orders seeded random orders, none of them a probed order
(orders.json), with its catalogue label as the answer and trains a LoRA
adapter (stability.warmup_target_modules; dpo.rank/alpha/dropout) on the label tokens' negative log-probability for
stability.warmup_epochs epochs at stability.warmup_lr. The probe, DPO and the re-probe merge this adapter
into the base weights, so the study measures how a model that knows the task reacts to other orders.
Writes models/stability_warmup/ (the adapter), results/stability/warmup_loss.csv (a DVC plot) and
warmup.json (sizes, loss, the warm-up objects' accuracy before and after, time).
With stability.warmup_per_class = 0 the adapter is the identity (B = 0): no warm-up.
"""

from __future__ import annotations

from types import SimpleNamespace

from specllm.runner import run_main


def main() -> None:
    import numpy as np
    import pandas as pd

    from specllm import config, preflight
    from specllm.evaluate.generate import pad_id
    from specllm.io import write_json
    from specllm.stability import features, prompts, warmup
    from specllm.stability.files import layout
    from specllm.stability.probe import probe
    from specllm.stability.runtime import build_prompts, load_model, read_csv, read_orders, workload
    from specllm.train.lora import count_parameters, make_lora_model, save_adapter

    p = config.stage_params("stability_warmup")
    files = layout()
    objects = read_csv(files["warmup_objects"], ["obj_id", "class", "split", *features.BANDS, "redshift"])
    probed = read_orders(files["orders"])
    per_object = features.warmup_orders(len(objects), p["stability.warmup_orders"], probed, p["seed"],
                                        (str(files["params"]), "stability.warmup_orders"))
    targets = list(p["stability.warmup_target_modules"])
    preflight.require("sft", workload("sft", p["stability.warmup_batch_size"], p["dpo.rank"], targets),
                      root=files["root"])
    model, tokenizer, device = load_model(files["base_model"])
    recs = [r for k, orders in enumerate(per_object)
            for r in build_prompts(tokenizer, objects.iloc[k:k + 1], orders, p["stability.decimals"], files["base_model"])]
    enc = [prompts.encode(tokenizer, r["prompt"]) for r in recs]
    label_ids = prompts.label_token_ids(tokenizer, features.CLASSES, files["base_model"])
    first = [i for i, r in enumerate(recs) if r["order"] == 0]  # each object once, in its first warm-up order
    truth = np.array([features.CLASSES.index(recs[i]["class"]) for i in first], dtype=np.int64)

    def accuracy() -> float | None:  # the warm-up objects' own accuracy (first warm-up order), logit reading
        if not first:
            return None
        out = probe(model, tokenizer, [enc[i] for i in first], label_ids, batch_size=p["stability.batch_size"],
                    prefix_cache=True)
        return float((out["answer"] == truth).mean())

    def every_tenth_step(message: str) -> None:  # "warm-up step N: loss L"
        if int(message.split()[2].rstrip(":")) % 10 == 0:
            print(message, flush=True)

    acc_before = accuracy()
    settings = SimpleNamespace(rank=p["dpo.rank"], alpha=p["dpo.alpha"], dropout=p["dpo.dropout"],
                               target_modules=targets, seed=p["seed"])
    model = make_lora_model(model, settings, where=(str(files["params"]), "stability.warmup_target_modules")).to(device)
    trainable, _ = count_parameters(model)
    result = warmup.train_warmup(model, enc, [prompts.label_ids_full(tokenizer, r["class"]) for r in recs],
                                 pad=pad_id(tokenizer), lr=p["stability.warmup_lr"],
                                 epochs=p["stability.warmup_epochs"], batch_size=p["stability.warmup_batch_size"],
                                 seed=p["seed"], log=every_tenth_step) if len(enc) else {"history": [], "seconds": 0.0, "n_examples": 0}
    acc_after = accuracy()
    save_adapter(model, files["warmup_adapter"], files["base_model"])
    hist = result["history"]
    pd.DataFrame(hist, columns=["step", "epoch", "loss"]).to_csv(files["warmup_loss"], index=False, float_format="%.6f",
                                                                 lineterminator="\n")
    taught = {perm for orders in per_object for _, perm in orders}
    write_json(files["warmup"], {
        "n_objects": int(len(objects)), "per_class": p["stability.warmup_per_class"],
        "orders_per_object": p["stability.warmup_orders"], "n_prompts": len(enc),
        "distinct_orders": len(taught), "probed_orders_taught": len(taught & {perm for _, perm in probed}),
        "mean_prompt_tokens": round(float(np.mean([len(e) for e in enc])), 2) if enc else None,
        "steps": len(hist), "seconds": round(result["seconds"], 3),
        "loss_first": hist[0]["loss"] if hist else None, "loss_last": hist[-1]["loss"] if hist else None,
        "accuracy_before": acc_before, "accuracy_after": acc_after, "trainable_params": int(trainable),
        "device": device.type,
        "settings": {"lr": p["stability.warmup_lr"], "epochs": p["stability.warmup_epochs"],
                     "orders_per_object": p["stability.warmup_orders"],
                     "batch_size": p["stability.warmup_batch_size"], "rank": p["dpo.rank"], "alpha": p["dpo.alpha"],
                     "target_modules": targets}})
    print(f"stability_warmup: {len(objects)} objects x {p['stability.warmup_orders']} orders, {len(hist)} steps "
          f"in {result['seconds']:.0f} s, "
          f"accuracy on them {acc_before} -> {acc_after}")


if __name__ == "__main__":
    run_main(main)
