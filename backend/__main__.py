"""Command line of the engine: ``python -m backend <command> ...``."""
from backend.cli import main

raise SystemExit(main())
