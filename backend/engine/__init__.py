"""The ScoreHMR refinement engine: guidance terms, the guided DDIM loop, modes and CLI."""
