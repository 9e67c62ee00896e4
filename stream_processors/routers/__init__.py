"""HTTP routers of the stream processors' configuration (alert rules)."""
