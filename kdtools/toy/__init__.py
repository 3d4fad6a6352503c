"""The embedded toy world: generated content, tokenizer and tiny Llama models."""
