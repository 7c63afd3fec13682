"""Stage `stability_dpo`: preference pairs from the alignment set and DPO with LoRA on them.

    python -m specllm.stages.stability_dpo

Reads results/stability/{objects.csv, orders.json, probe.csv}, models/base and models/stability_warmup
(merged into the weights first: DPO's policy starts from, and its reference is, the warmed-up model). Categorises every
alignment-set object (fully correct / partially correct / fully wrong / unanswerable), shows each pair
under stability.pair_orders of its orders, and trains a LoRA adapter with the DPO loss; the
reference is the same model with the adapter disabled, its log-probabilities computed once.
Writes models/stability_dpo/ (the adapter), results/stability/pairs.csv, dpo_loss.csv (a DVC plot)
and dpo.json (categories, loss, peak memory against the model's own size, time).
"""

from __future__ import annotations

from types import SimpleNamespace

from specllm.runner import run_main


def main() -> None:
    import pandas as pd

    from specllm import config, preflight
    from specllm.evaluate.generate import pad_id
    from specllm.io import write_json
    from specllm.machine import peak_memory, peak_rss_bytes
    from specllm.stability import dpo, features, pairs, prompts
    from specllm.stability.files import layout
    from specllm.stability.runtime import build_prompts, load_model, read_csv, read_orders, workload
    from specllm.train.lora import count_parameters, make_lora_model, save_adapter

    p = config.stage_params("stability_dpo")
    files = layout()
    objects = read_csv(files["objects"], ["obj_id", "class", "split", *features.BANDS, "redshift"])
    orders = read_orders(files["orders"])
    rows = read_csv(files["probe"], ["obj_id", "order", "answer"])
    align = objects[objects["split"] == "alignment"]
    items = [{"obj_id": o["obj_id"], "label": features.CLASSES.index(o["class"]),
              "answers": rows[rows["obj_id"] == o["obj_id"]].sort_values("order")["answer"].tolist()}
             for _, o in align.iterrows()]
    pair_rows, counts = pairs.make_pairs(items, p["stability.pair_orders"], p["seed"])
    targets = list(p["dpo.target_modules"])
    preflight.require("dpo", workload("dpo", p["dpo.batch_size"], p["dpo.rank"], targets), root=files["root"])
    rss_before = peak_rss_bytes()
    model, tokenizer, device = load_model(files["base_model"], files["warmup_adapter"])
    size = dpo.model_bytes(model)
    recs = {}
    for pr in pair_rows:
        if pr["obj_id"] not in recs:
            sub = align[align["obj_id"] == pr["obj_id"]]
            recs[pr["obj_id"]] = build_prompts(tokenizer, sub, orders, p["stability.decimals"], files["base_model"])
        pr["prompt"] = recs[pr["obj_id"]][pr["order"]]["prompt"]
    settings = SimpleNamespace(rank=p["dpo.rank"], alpha=p["dpo.alpha"], dropout=p["dpo.dropout"],
                               target_modules=targets, seed=p["seed"])
    model = make_lora_model(model, settings, where=(str(files["params"]), "dpo.target_modules")).to(device)
    trainable, total = count_parameters(model)
    enc = lambda s: prompts.encode(tokenizer, s)  # noqa: E731
    result = dpo.train_dpo(model, [enc(pr["prompt"]) for pr in pair_rows],
                           [prompts.label_ids_full(tokenizer, pr["chosen"]) for pr in pair_rows],
                           [prompts.label_ids_full(tokenizer, pr["rejected"]) for pr in pair_rows],
                           pad=pad_id(tokenizer), beta=p["dpo.beta"], lr=p["dpo.lr"], epochs=p["dpo.epochs"],
                           batch_size=p["dpo.batch_size"], seed=p["seed"]) if pair_rows else \
        {"history": [], "seconds": 0.0, "n_pairs": 0}
    peak, how = peak_memory(device)
    save_adapter(model, files["adapter"], files["base_model"])
    files["results"].mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{k: pr[k] for k in ("obj_id", "category", "order", "chosen", "rejected")} for pr in pair_rows],
                 columns=["obj_id", "category", "order", "chosen", "rejected"]).to_csv(files["pairs"], index=False,
                                                                                      lineterminator="\n")
    pd.DataFrame(result["history"], columns=["step", "epoch", "loss", "margin", "reward_acc"]).to_csv(
        files["dpo_loss"], index=False, float_format="%.6f", lineterminator="\n")
    hist = result["history"]
    adapter = dpo.adapter_bytes(model)
    optimizer = 2 * trainable * 4  # AdamW: two fp32 moments per trainable parameter
    write_json(files["dpo"], {
        "categories": counts, "n_alignment_objects": int(len(align)), "n_pairs": len(pair_rows),
        "pair_orders": p["stability.pair_orders"], "steps": len(hist), "seconds": round(result["seconds"], 3),
        "loss_first": hist[0]["loss"] if hist else None, "loss_last": hist[-1]["loss"] if hist else None,
        "reward_acc_last": hist[-1]["reward_acc"] if hist else None,
        "trainable_params": int(trainable), "total_params": int(total),
        "model_bytes": size, "adapter_bytes": adapter, "optimizer_bytes": optimizer,
        "peak_memory_bytes": int(peak), "peak_memory_kind": how, "device": device.type,
        "rss_before_load_bytes": int(rss_before) if device.type == "cpu" else None,
        "peak_over_model": round(peak / size, 4) if size else None,
        "reference": "same base model with the LoRA adapter disabled; log-probabilities precomputed once",
        "settings": {"beta": p["dpo.beta"], "lr": p["dpo.lr"], "epochs": p["dpo.epochs"],
                     "batch_size": p["dpo.batch_size"], "rank": p["dpo.rank"], "alpha": p["dpo.alpha"],
                     "dropout": p["dpo.dropout"], "target_modules": targets}})
    print(f"stability_dpo: {len(pair_rows)} pairs, {len(hist)} steps, peak memory {peak / 2**20:.0f} MiB "
          f"({how}), model {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    run_main(main)
