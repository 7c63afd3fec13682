"""Order stability of STAR/GALAXY/QSO classifications (after Stable-RAG, arXiv:2601.02993).

features  objects, their ten feature lines and the feature orders
prompts   chat prompts and the labels' first tokens
probe     one batched forward pass per prompt: label logits and last-token hidden states
spectral  spectral clustering of an object's hidden states over its orders
analysis  PSS, summaries, quality checks, before/after comparison
pairs     preference-pair categories and pairs
dpo       DPO loss and training loop (reference = the same model with the adapter disabled)
files     where the stability stages read and write
"""
