"""Benchmarks (not timed tests): `python -m specllm.bench` runs every workload in one process, side by
side, and writes results/bench/bench.json and bench.md. One module per workload:

  flops.py      model-FLOP accounting, the machine's measured matrix-product rate, the A100 extrapolation
  common.py     the model (tiny or SmolLM2), the spectra and objects every workload shares, subprocess runs
  probe.py      stability probe: naive generate() per prompt vs batched single forward pass vs shared-prefix KV cache
  train.py      LoRA training: the project's loop vs a default Hugging Face Trainer on the same data
  dpo.py        DPO peak memory: adapter-disabled reference vs a second loaded reference model
  serial.py     tokens per spectrum for each serialization setting and the training time it costs
  pipeline.py   (optional, --pipeline) smoke DAG from scratch, no-op dvc repro, restore from a warm remote
  report.py     JSON and Markdown writers
"""
