# SPDX-License-Identifier: GPL-3.0-or-later
"""Which Python runs the engine, and on which device.

    in-process  torch imports in Blender's own Python: the engine package is imported on first
                use and runs in a thread (in the caller's thread in background mode).
    worker      ``<worker python> -m backend refine ... --progress-lines`` as a subprocess, with
                the engine package's parent folder as its cwd and PYTHONPATH.

What the panel and the preferences draw comes from caches (:func:`engine_status`,
:func:`device_text`), refreshed by :func:`forget_devices` ("Check Again", after a set-up), so
no ``draw()`` touches the disk.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from .engine import RefineError, backend_root

WORKER_VENV = "worker-venv"
# One line per query: what the engine's torch would run on.
DEVICE_SCRIPT = ("import torch; print('CUDA GPU: ' + torch.cuda.get_device_name(0) "
                 "if torch.cuda.is_available() else 'CPU (no CUDA GPU visible to torch)')")
NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window per subprocess on Windows
ADDON_PACKAGE = __package__.rpartition(".")[0]


def user_dir(*parts: str, create: bool = True) -> Path:
    """A folder in the extension's user data folder, or in a temp folder when the add-on is
    not installed as an extension; made unless ``create`` is False."""
    try:
        base = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=create))
    except ValueError:  # "does not name an extension": imported as a plain module
        base = Path(tempfile.gettempdir()) / "refine_motion"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# This process's own folder under the user data folder (job folders, the set-up log): another Blender
# process never prunes or overwrites them.  The start time tells a later process with the same id apart.
PROCESS_FOLDER = f"{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}"
STALE_PROCESS_DAYS = 7  # other processes' folders untouched this long are removed (those processes are gone)


def process_dir(*parts: str) -> Path:
    """A folder of this process in the user data folder (made); the first call removes other processes'
    folders left untouched for STALE_PROCESS_DAYS."""
    root = user_dir("processes")
    own = root / PROCESS_FOLDER
    if not own.is_dir():
        _remove_stale(root, time.time() - STALE_PROCESS_DAYS * 86400)
    path = own.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _remove_stale(root: Path, before: float) -> None:
    """Remove the folders in ``root`` whose newest entry (or themselves) changed before ``before`` (epoch s)."""
    for folder in root.iterdir():
        if folder.is_dir() and folder.name != PROCESS_FOLDER:
            times = [folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")]
            if max(times) < before:
                shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Runner:
    kind: str          # 'in_process' | 'worker'
    python: str = ""   # the worker's interpreter ('' none); an in-process runner keeps the configured one
                       # for the detector when mediapipe does not import in Blender (detector_python)
    root: Path | None = None  # folder holding backend/ (default: backend_root()); the worker's PYTHONPATH

    def describe(self) -> str:
        return "in Blender" if self.kind == "in_process" else f"worker {self.python}"


@functools.cache
def torch_in_blender() -> bool:
    """Whether ``import torch`` can work in Blender's Python (found, not imported: that is slow)."""
    return importlib.util.find_spec("torch") is not None


def venv_python(venv: str | Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_worker_python() -> Path:
    """The interpreter of the environment 'Set Up Worker Environment' makes."""
    return venv_python(user_dir(WORKER_VENV, create=False))


def worker_python(setting: str) -> str:
    """The worker interpreter: ``setting`` (a path) when given, else the set-up environment's
    when it exists, else ''."""
    if setting.strip():
        return bpy.path.abspath(setting.strip())
    default = default_worker_python()
    return str(default) if default.is_file() else ""


def choose_runner(location: str = "AUTO", worker_setting: str = "") -> Runner:
    """The Runner for the preferences' choice: 'AUTO' (in Blender when torch is there, else
    the worker) or 'WORKER'.  RefineError when neither is available."""
    if location == "AUTO" and torch_in_blender():
        return Runner("in_process", python=worker_python(worker_setting), root=backend_root())
    python = worker_python(worker_setting)
    if not python:
        raise RefineError("The engine is not set up: install its worker in Preferences > Add-ons > "
                          "Refine Motion (Set Up Worker Environment), or set a Worker Python with torch")
    if not Path(python).is_file():
        raise RefineError(f"Worker Python not found: {python}; fix the path in the add-on preferences")
    return Runner("worker", python=python, root=backend_root())


@functools.cache
def detector_in_blender() -> bool:
    """Whether the detector's mediapipe imports in Blender's Python (imported to know: a wheel can be
    found yet miss what it imports; Blender 5.1+'s Python 3.13 has no legacy mediapipe at all)."""
    try:
        importlib.import_module("mediapipe.python.solutions.pose")
    except Exception:  # any import failure means: detect in the worker
        return False
    return True


def detector_python(runner: Runner) -> str | None:
    """Where a job detects keypoints: None for Blender's own Python (in-process runner, mediapipe
    imports here), else the worker interpreter.  RefineError when neither can."""
    if runner.kind == "in_process" and detector_in_blender():
        return None
    if runner.python:
        return runner.python
    raise RefineError("Detect from Footage needs the detector (mediapipe), which does not import in Blender's "
                      "Python: run Set Up Worker Environment in the add-on preferences, or set a Worker Python "
                      "with the engine's packages")


_STATUS = {}  # (location, worker setting) -> (kind, text, Runner or None)


def engine_status(location: str = "AUTO", worker_setting: str = "") -> tuple[str, str, Runner | None]:
    """(kind, text, runner) for the panel and the preferences, cached: kind is 'in_process',
    'worker' or 'none' (then runner is None and text says why)."""
    key = (location, worker_setting)
    if key not in _STATUS:
        try:
            runner = choose_runner(location, worker_setting)
        except RefineError as ex:
            _STATUS[key] = ("none", str(ex), None)
        else:
            text = ("In Blender (torch imports in Blender's Python)" if runner.kind == "in_process"
                    else f"Worker Python: {runner.python}")
            _STATUS[key] = (runner.kind, text, runner)
    return _STATUS[key]


# -- device query (cached per interpreter) -----------------------------------------------------

_DEVICES = {}  # interpreter ('' = Blender's own) -> text, or None while the query runs


def device_text(runner: Runner) -> str | None:
    """What ``runner``'s torch runs on ('CUDA GPU: name' / 'CPU ...'), or None while that is
    being found out: the first call starts a background query, answered from a cache after."""
    key = runner.python if runner.kind == "worker" else ""
    if key not in _DEVICES:
        _DEVICES[key] = None
        threading.Thread(target=_query_device, args=(runner, key), daemon=True).start()
    return _DEVICES[key]


def cached_device_text(runner: Runner) -> str | None:
    """The device text if already known (no query started), else None."""
    return _DEVICES.get(runner.python if runner.kind == "worker" else "")


def device_query_running() -> bool:
    return None in _DEVICES.values()


def forget_devices() -> None:
    """Ask again: which Python runs the engine and on which device."""
    _DEVICES.clear()
    _STATUS.clear()


def _query_device(runner: Runner, key: str) -> None:
    try:
        if runner.kind == "in_process":
            torch = importlib.import_module("torch")
            text = (f"CUDA GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                    else "CPU (no CUDA GPU visible to torch)")
        else:
            proc = subprocess.run([runner.python, "-c", DEVICE_SCRIPT], capture_output=True, text=True,
                                  timeout=300, creationflags=NO_WINDOW, check=False)
            lines = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
            text = lines[-1] if lines else f"unknown (exit code {proc.returncode})"
            if proc.returncode != 0:
                text = "not usable: " + text
    except Exception as ex:  # shown to the user as the device line
        text = f"not usable: {type(ex).__name__}: {ex}"
    _DEVICES[key] = text
