"""Stage `stability_probe`: every object under every order through the base model, one forward pass each.

    python -m specllm.stages.stability_probe

Reads results/stability/{objects.csv, orders.json}, models/base and models/stability_warmup (merged into
the base weights: the probed model is the warmed-up one). The shared prompt prefix's key/value cache is
computed once (stability.probe.probe_prefix_cached). Writes results/stability/:
probe.csv (obj_id, class, split, order, order_name, answer, answer_label, tied, logit_<label>),
hidden.npz (obj_ids, hidden [objects, orders, hidden size] float16: last layer, last token),
decode.csv (the free-text subsample: obj_id, order, text, free_answer, logit_answer, agree) and
probe.json (throughput, tied and unparseable counts, free-text agreement, label tokens).
"""

from __future__ import annotations

from specllm.runner import run_main


def main() -> None:
    import numpy as np
    import pandas as pd

    from specllm import config, preflight
    from specllm.io import write_json
    from specllm.stability import features
    from specllm.stability.files import layout
    from specllm.stability.probe import agreement, decode_answers, parse_answer
    from specllm.stability.runtime import load_model, probe_set, read_csv, read_orders, workload

    p = config.stage_params("stability_probe")
    files = layout()
    objects = read_csv(files["objects"], ["obj_id", "class", "split", *features.BANDS, "redshift"])
    orders = read_orders(files["orders"])
    preflight.require("inference", workload("inference", p["stability.batch_size"]), root=files["root"])
    model, tokenizer, device = load_model(files["base_model"], files["warmup_adapter"])
    rows, hidden, timing, recs = probe_set(model, tokenizer, objects, orders, decimals=p["stability.decimals"],
                                           batch_size=p["stability.batch_size"], model_dir=files["base_model"])
    n_dec = min(p["stability.decode_prompts"], len(recs))
    rng = np.random.default_rng(p["seed"])
    pick = np.sort(rng.choice(len(recs), n_dec, replace=False)) if n_dec else np.array([], dtype=int)
    texts = decode_answers(model, tokenizer, [recs[i]["prompt"] for i in pick], batch_size=p["stability.batch_size"],
                           max_new_tokens=p["stability.max_new_tokens"]) if n_dec else []
    free = [parse_answer(t, features.CLASSES) for t in texts]
    logit = rows["answer"].to_numpy()[pick]
    dec = pd.DataFrame({"obj_id": rows["obj_id"].to_numpy()[pick], "order": rows["order"].to_numpy()[pick],
                        "text": texts, "free_answer": [features.CLASSES[a] if a >= 0 else "" for a in free],
                        "logit_answer": [features.CLASSES[a] if a >= 0 else "" for a in logit],
                        "agree": [int(a >= 0 and a == b) for a, b in zip(free, logit)]})
    files["results"].mkdir(parents=True, exist_ok=True)
    rows.to_csv(files["probe"], index=False, lineterminator="\n")
    dec.to_csv(files["decode"], index=False, lineterminator="\n")
    np.savez_compressed(files["hidden"], obj_ids=objects["obj_id"].to_numpy(str), hidden=hidden.astype(np.float16))
    summary = {**timing, "device": device.type, "n_objects": int(len(objects)), "n_orders": len(orders),
               "n_tied": int(rows["tied"].sum()), "hidden_size": int(hidden.shape[-1]),
               "free_text": {**agreement(free, logit), "max_new_tokens": p["stability.max_new_tokens"]},
               "answer_counts": {lab: int((rows["answer_label"] == lab).sum()) for lab in features.CLASSES}}
    write_json(files["probe_json"], summary)
    print(f"stability_probe: {timing['n_prompts']} prompts at {timing['prompts_per_s']:.2f}/s, "
          f"{summary['n_tied']} tied, free-text agreement {summary['free_text']['agreement']}")


if __name__ == "__main__":
    run_main(main)
