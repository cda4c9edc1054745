# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the engine package ``backend/`` is found: the one place that decides it for the add-on.

    installed extension   <add-on>/backend (build.py stages it inside the add-on package)
    repository            <repo>/backend, next to scorehmr_blender/
    worker                ``<python> -m backend ...`` with the folder holding backend/ as its working
                          folder and PYTHONPATH (:func:`worker_environment`)

In Blender's Python the add-on's ``__init__`` calls :func:`import_backend` before importing any of its
modules: the folder is registered as the top-level package ``backend`` (its modules import each other
as ``backend.*``), so every add-on module reaches the contract and the service with ordinary imports
(``from backend.contract import frames``) that IDEs and type checkers follow to the repository's
``backend/``.  The add-on imports only the numpy-only contract at module level; the engine proper
(torch) loads inside an in-process job (:func:`load_engine`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


class RefineError(Exception):
    """A problem the user can fix; the message is one line naming it and the fix."""


@functools.cache
def backend_root() -> Path:
    """The folder holding the engine package ``backend/`` (see the module docstring); found once."""
    here = Path(__file__).resolve().parent.parent
    for root in (here, here.parent):
        if (root / "backend" / "__init__.py").is_file():
            return root
    raise RefineError("The engine package (backend/) is missing from the add-on: reinstall the extension")


def import_backend() -> ModuleType:
    """The package ``backend`` of :func:`backend_root`, registered under that top-level name in this
    Python (only its ``__init__`` runs: nothing heavy).  RefineError when another add-on's package of
    that name is loaded already: its modules would answer this add-on's imports."""
    package_dir = backend_root() / "backend"
    loaded = sys.modules.get("backend")
    if loaded is None:
        spec = importlib.util.spec_from_file_location(
            "backend", package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["backend"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["backend"]
            raise
        return module
    where = next(iter(getattr(loaded, "__path__", [])), None)
    if where is None or Path(where).resolve() != package_dir.resolve():
        raise RefineError(f"Another Python package named 'backend' is loaded ({where or loaded!r}): "
                          "disable the add-on that brings it, or restart Blender")
    return loaded


def worker_environment(root: Path) -> dict[str, str]:
    """The environment of a worker process running ``python -m backend`` from the engine package in
    ``root``: this process's, without Blender's Python settings, ``root`` first on the module path."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def load_engine(smpl_path: str, device: str):
    """The engine (``backend.service.load_engine``) in this Python, kept for the next job with the same
    body model and device; RefineError for a wrong body model file or missing trained weights."""
    from backend import service
    from backend.body.smpl_files import SMPLFileError
    from backend.contract.errors import InputError

    try:
        return service.load_engine(smpl_path or None, device or None)
    except (InputError, SMPLFileError) as ex:
        raise RefineError(str(ex)) from None
