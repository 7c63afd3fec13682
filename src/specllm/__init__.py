"""specllm: a reproducible paper on teaching a causal LLM to read SDSS spectra."""

__version__ = "0.1.0"
