"""Inference nodes: registry, health, selection and the HTTP transport to them."""
