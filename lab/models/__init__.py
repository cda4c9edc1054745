"""Training of the engine's learned models, and the report on them (the engine loads them:
backend.models.checkpoints)."""
