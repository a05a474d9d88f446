"""atoma-proxy: an OpenAI-compatible gateway to a network of inference nodes."""
