"""Order stability of STAR/GALAXY/QSO classifications (after Stable-RAG, arXiv:2601.02993).

features  objects, their ten feature lines and the feature orders
prompts   chat prompts and the labels' first tokens
warmup    supervised LoRA warm-up teaching the labels on objects never probed, one fixed order
probe     one batched forward pass per prompt (shared-prefix KV cache): label logits, last-token hidden states
spectral  spectral clustering of an object's hidden states over its orders
analysis  PSS, summaries, quality checks, before/after comparison, what the sentences may claim
baselines classification null baselines (majority class, prior-only), bootstrap intervals, constant answers
diagnostics  order-vs-object variance decomposition, K over sigma, representative (cluster-centre) answers
verdicts  the SCSE attempt's claims: supported / contradicted / not testable at this scale
pairs     preference-pair categories and pairs
dpo       DPO loss and training loop (reference = the same model with the adapter disabled)
files     where the stability stages read and write
"""
