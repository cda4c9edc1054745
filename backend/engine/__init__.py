"""The ScoreHMR refinement engine: guidance terms, the guided DDIM loop, one module per mode (modes/) and
:class:`backend.engine.api.Engine`, which loads the models and dispatches (the command line is backend/cli.py)."""
