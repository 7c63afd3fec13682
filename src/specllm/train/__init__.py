"""LoRA fine-tuning of the base model on the serialized spectra (after arXiv 2508.10075).

settings    TrainSettings: the `train.*` parameters plus a run's command-line overrides, validated
lora        the adapter: seeding, dtype/device choice, target-module checks, trainable-parameter counts
data        tokenised examples (loss on the target only), length-grouped batches, padding share
checkpoint  resumable, atomically written checkpoints (adapter, optimizer, scheduler, RNG, data position)
loop        the training loop: one process or several (torch.distributed DDP under torchrun)
"""
