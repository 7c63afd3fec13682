"""Stage `stability_reprobe`: the evaluation set through the DPO-aligned model; PSS and accuracy before/after.

    python -m specllm.stages.stability_reprobe

Reads results/stability/{objects.csv, orders.json, per_object.csv}, models/base,
models/stability_warmup and models/stability_dpo (both merged, in that order; prefix-cached probe).
Writes results/stability/reprobe.csv (the evaluation objects' answers after alignment, as probe.csv)
and reprobe.json (PSS, share stable and accuracy before and after, overall and per class, each with a
paired bootstrap 95% interval and a sign-flip p-value; the answers' label shares after alignment and
whether they are constant; throughput).
"""

from __future__ import annotations

from specllm.errors import InputError
from specllm.runner import run_main


def main() -> None:
    from specllm import config, preflight
    from specllm.io import write_json
    from specllm.stability import analysis, baselines, features
    from specllm.stability.files import layout
    from specllm.stability.runtime import load_model, probe_set, read_csv, read_orders, workload

    p = config.stage_params("stability_reprobe")
    files = layout()
    objects = read_csv(files["objects"], ["obj_id", "class", "split", *features.BANDS, "redshift"])
    orders = read_orders(files["orders"])
    before = read_csv(files["per_object"], ["obj_id", "class", "split", "pss", "correct"])
    ev = objects[objects["split"] == "evaluation"].reset_index(drop=True)
    if not len(ev):
        raise InputError(files["params"], "stability.eval_share", "the evaluation set is empty",
                         "raise stability.eval_share or stability.n_per_class")
    preflight.require("inference", workload("inference", p["stability.batch_size"]), root=files["root"])
    model, tokenizer, device = load_model(files["base_model"], files["warmup_adapter"], files["adapter"])
    rows, _hidden, timing, _ = probe_set(model, tokenizer, ev, orders, decimals=p["stability.decimals"],
                                         batch_size=p["stability.batch_size"], model_dir=files["base_model"])
    rows.to_csv(files["reprobe"], index=False, lineterminator="\n")
    after = analysis.per_object_table(ev, rows)
    b = before[before["split"] == "evaluation"]
    cmp = analysis.before_after(b, after, p["stability.n_boot"], p["seed"])
    write_json(files["reprobe_json"], {"comparison": cmp, "timing": {**timing, "device": device.type},
                                       "n_objects": int(len(ev)), "n_tied_after": int(rows["tied"].sum()),
                                       "answers_after": baselines.answer_profile(rows),
                                       "after": {"overall": analysis.summary(after),
                                                 "per_class": {c: analysis.summary(after[after["class"] == c])
                                                               for c in features.CLASSES}}})
    a = cmp["all"]
    print(f"stability_reprobe: PSS {a['pss_before']:.3f} -> {a['pss_after']:.3f}, "
          f"accuracy {a['accuracy_before']:.3f} -> {a['accuracy_after']:.3f} on {len(ev)} objects")


if __name__ == "__main__":
    run_main(main)
