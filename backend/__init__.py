"""ScoreHMR engine: torch/numpy backend of the add-on (never imports bpy)."""
