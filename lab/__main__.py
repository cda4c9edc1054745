"""Research command line: ``python -m lab <command> ...``."""
from lab.cli import main

raise SystemExit(main())
