"""The base causal LLM: a tiny random Llama, the converted SmolLM2 GGUF, or hub weights, as safetensors."""

from specllm.model.load import load_base, model_identity

__all__ = ["load_base", "model_identity"]
