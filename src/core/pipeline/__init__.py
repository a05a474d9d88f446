"""The inference pipeline: one request context, explicit stages (README "Architecture")."""
