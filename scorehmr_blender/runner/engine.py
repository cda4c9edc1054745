# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine package ``backend/`` seen from Blender's Python.

Where it lives (:func:`backend_root`)
    extension zip   <add-on>/backend (build.py ships it inside the add-on)
    repository      <repo>/backend, next to scorehmr_blender/
Its modules import each other as top-level ``backend.*``, so in Blender it is registered under
that name from its own folder (:func:`backend_module`).  The add-on itself uses only the numpy-only
contract (:func:`contract`); the engine proper (torch) loads only for in-process jobs
(:func:`load_engine`).
"""

import functools
import importlib
import importlib.util
import sys
from pathlib import Path


class RefineError(Exception):
    """A problem the user can fix; the message is one line naming it and the fix."""


@functools.cache
def backend_root():
    """The folder holding the engine package ``backend/`` (see the module docstring); found once."""
    here = Path(__file__).resolve().parent.parent
    for root in (here, here.parent):
        if (root / "backend" / "__init__.py").is_file():
            return root
    raise RefineError("The engine package (backend/) is missing from the add-on: reinstall the extension")


def backend_module(name, root=None):
    """Import ``backend.<name>`` in this Python, the package taken from ``root`` (default
    :func:`backend_root`).  Modules that need torch fail here without it."""
    package_dir = (root or backend_root()) / "backend"
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
    elif Path(next(iter(loaded.__path__))).resolve() != package_dir.resolve():
        raise RefineError(f"Another Python package named 'backend' is loaded ({next(iter(loaded.__path__))}): "
                          "disable the add-on that brings it, or restart Blender")
    return importlib.import_module(f"backend.{name}")


def contract(name):
    """``backend.contract.<name>``: the numpy-only contract shared with the engine."""
    return backend_module(f"contract.{name}")


def load_engine(root, smpl_path, device):
    """The engine (``backend.service.load_engine``) in this Python, kept for the next job with the same
    body model and device; RefineError for a wrong body model file or missing trained weights."""
    service = backend_module("service", root)
    problems = (contract("errors").InputError, backend_module("body.smpl_files", root).SMPLFileError)
    try:
        return service.load_engine(smpl_path or None, device or None)
    except problems as ex:
        raise RefineError(str(ex)) from None
