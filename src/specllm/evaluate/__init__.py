"""Evaluation of the adapted LLM: redshift accuracy, language retention, selection, demonstration.

- `parse`: read ``"Redshift: <number>"`` out of a generation (unparseable outputs are counted, never dropped).
- `generate`: load base (+ LoRA adapter), batched greedy decoding with left padding, optional
  constrained decoding of the number.
- `redshift`: predictions of a split and their metrics (overall and per redshift bin).
- `probes`: multiple-choice probe files (schema, validation, ARC/SciQ/MMLU converter).
- `loglik`: option log-likelihood scoring as lm-evaluation-harness does it.
- `retention`: adapted/base accuracy with a paired bootstrap CI.
- `select`: the ablation table and the best run, chosen on the validation split only.
- `run`: one evaluation run (the evaluate stages' library): decode val and test, score, write.
- `demo`: one galaxy's redshift and a natural-language follow-up in one chat session.
"""
