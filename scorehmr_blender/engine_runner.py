# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one refinement job: OBS.npz (+ INIT.npz) in a job folder -> OUT.npz.

Nothing heavy loads with this module (no numpy, torch or engine import at
module level), so the panel and the preferences can ask it questions cheaply.

Where the engine runs (:func:`choose_runner`)
    in-process  torch imports in Blender's own Python: the engine package is
                imported on first use and runs in a thread (in the caller's
                thread in background mode).  Cancelling raises
                :class:`Cancelled` from the engine's progress callback.
    worker      ``<worker python> -m backend refine ... --progress-lines`` as a
                subprocess, with the engine package's parent folder as its cwd
                and PYTHONPATH; its ``PROGRESS done/total`` stdout lines drive
                the progress.  Cancelling terminates it.

Where the engine package lives (:func:`backend_root`)
    extension zip   <add-on>/backend (build.py ships it inside the add-on)
    repository      <repo>/backend, next to scorehmr_blender/
Its modules import each other as top-level ``backend.*``, so in Blender it is
registered under that name from its own folder (:func:`backend_module`).  The
numpy-only readers (backend.io) work without torch; the job inputs are written
with them in Blender's Python whichever runner refines.

Job folders live in the extension's user data folder (a temp folder when the
add-on is imported as a plain module, as in tests and build.py).
"""

import contextlib
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
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import bpy

WEIGHT_FILES = ("regressor.pt", "prior.pt")
KEEP_JOBS = 10          # job folders kept on disk (newest first); older ones are removed
WORKER_VENV = "worker-venv"
# One line per query: what the engine's torch would run on.
DEVICE_SCRIPT = ("import torch; print('CUDA GPU: ' + torch.cuda.get_device_name(0) "
                 "if torch.cuda.is_available() else 'CPU (no CUDA GPU visible to torch)')")
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window per subprocess on Windows


class RefineError(Exception):
    """A problem the user can fix; the message is one line naming it and the fix."""


class Cancelled(Exception):
    """Raised from the engine's progress callback once the job is cancelled."""


# -- the engine package ------------------------------------------------------------------------

def backend_root():
    """The folder holding the engine package ``backend/`` (see the module docstring)."""
    here = Path(__file__).resolve().parent
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


def missing_weights(root):
    """Trained weight files the engine needs that are not in ``root``/backend/assets."""
    assets = root / "backend" / "assets"
    return [name for name in WEIGHT_FILES if not (assets / name).is_file()]


_ENGINE = {}  # (root, smpl_path, device) -> the engine loaded last, reused by the next in-process job


def load_engine(root, smpl_path, device):
    """The engine (``Engine.load``) in this Python, kept for the next job with the same body
    model and device; a RefineError when its weights are missing."""
    key = (str(root), smpl_path or "", device or "")
    if key not in _ENGINE:
        if missing := missing_weights(root):
            raise RefineError(f"The engine's trained weights are missing ({', '.join(missing)} in "
                              "backend/assets): reinstall the extension (in a source checkout: "
                              "python -m backend train all)")
        api = backend_module("engine.api", root)
        _ENGINE.clear()  # one engine at a time: let the previous one's memory go
        _ENGINE[key] = api.Engine.load(smpl_path or None, device=device or None)
    return _ENGINE[key]


# -- folders -----------------------------------------------------------------------------------

def user_dir(*parts, create=True):
    """A folder in the extension's user data folder, or in a temp folder when the add-on is
    not installed as an extension; made unless ``create`` is False."""
    try:
        base = Path(bpy.utils.extension_path_user(__package__, create=create))
    except ValueError:  # "does not name an extension": imported as a plain module
        base = Path(tempfile.gettempdir()) / "refine_motion"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def jobs_root():
    return user_dir("jobs")


def new_job_folder(name):
    """A fresh job folder named after the time and ``name``; the oldest beyond KEEP_JOBS go."""
    root = jobs_root()
    old = sorted(p for p in root.iterdir() if p.is_dir())
    for folder in old[:max(0, len(old) - KEEP_JOBS + 1)]:
        shutil.rmtree(folder, ignore_errors=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "shot"
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-") + safe + "-", dir=root))


# -- which Python runs the engine --------------------------------------------------------------

@dataclass(frozen=True)
class Runner:
    kind: str          # 'in_process' | 'worker'
    python: str = ""   # the worker's interpreter
    root: Path = None  # folder holding backend/ (default: backend_root())

    def describe(self):
        return "in Blender" if self.kind == "in_process" else f"worker {self.python}"


@functools.cache
def torch_in_blender():
    """Whether ``import torch`` can work in Blender's Python (found, not imported: that is slow)."""
    return importlib.util.find_spec("torch") is not None


def venv_python(venv):
    return Path(venv) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_worker_python():
    """The interpreter of the environment 'Set Up Worker Environment' makes."""
    return venv_python(user_dir(WORKER_VENV, create=False))


def worker_python(setting):
    """The worker interpreter: ``setting`` (a path) when given, else the set-up environment's
    when it exists, else ''."""
    if setting.strip():
        return bpy.path.abspath(setting.strip())
    default = default_worker_python()
    return str(default) if default.is_file() else ""


def choose_runner(location="AUTO", worker_setting=""):
    """The Runner for the preferences' choice: 'AUTO' (in Blender when torch is there, else
    the worker) or 'WORKER'.  RefineError when neither is available."""
    if location == "AUTO" and torch_in_blender():
        return Runner("in_process", root=backend_root())
    python = worker_python(worker_setting)
    if not python:
        raise RefineError("The engine is not set up: install its worker in Preferences > Add-ons > "
                          "Refine Motion (Set Up Worker Environment), or set a Worker Python with torch")
    if not Path(python).is_file():
        raise RefineError(f"Worker Python not found: {python}; fix the path in the add-on preferences")
    return Runner("worker", python=python, root=backend_root())


def runner_summary(location="AUTO", worker_setting=""):
    """(kind, text) for the preferences: kind is 'in_process', 'worker' or 'none'."""
    try:
        runner = choose_runner(location, worker_setting)
    except RefineError as ex:
        return "none", str(ex)
    if runner.kind == "in_process":
        return "in_process", "In Blender (torch imports in Blender's Python)"
    return "worker", f"Worker Python: {runner.python}"


# -- device query (cached per interpreter) -----------------------------------------------------

_DEVICES = {}  # interpreter ('' = Blender's own) -> text, or None while the query runs


def device_text(runner):
    """What ``runner``'s torch runs on ('CUDA GPU: name' / 'CPU ...'), or None while that is
    being found out: the first call starts a background query, answered from a cache after."""
    key = runner.python if runner.kind == "worker" else ""
    if key not in _DEVICES:
        _DEVICES[key] = None
        threading.Thread(target=_query_device, args=(runner, key), daemon=True).start()
    return _DEVICES[key]


def cached_device_text(runner):
    """The device text if already known (no query started), else None."""
    return _DEVICES.get(runner.python if runner.kind == "worker" else "")


def device_query_running():
    return None in _DEVICES.values()


def forget_devices():
    _DEVICES.clear()


def _query_device(runner, key):
    try:
        if runner.kind == "in_process":
            torch = importlib.import_module("torch")
            text = (f"CUDA GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                    else "CPU (no CUDA GPU visible to torch)")
        else:
            proc = subprocess.run([runner.python, "-c", DEVICE_SCRIPT], capture_output=True, text=True,
                                  timeout=300, creationflags=_NO_WINDOW, check=False)
            lines = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
            text = lines[-1] if lines else f"unknown (exit code {proc.returncode})"
            if proc.returncode != 0:
                text = "not usable: " + text
    except Exception as ex:  # noqa: BLE001 -- shown to the user as the device line
        text = f"not usable: {type(ex).__name__}: {ex}"
    _DEVICES[key] = text


# -- job inputs --------------------------------------------------------------------------------

@dataclass
class View:
    """One camera's keypoints and intrinsics.  Keypoint frame i is footage frame i."""
    keypoints: object                  # file / OpenPose folder path, or (F, 17, 3) array [x_px, y_px, conf]
    image_size: tuple                  # (width, height) px
    focal_length: float = None         # px; None: the engine's default field of view
    principal_point: tuple = None      # (cx, cy) px, OpenCV (y down); None: the image centre
    footage_frames: int = None         # the footage's frame count, which the keypoints must match
                                       # (unless Request.partial)


@dataclass
class Request:
    """One refinement.  Frames are indices into the keypoints (0 = the footage's first frame)."""
    views: list                        # View per camera: one (frame, video) or several (multiview), view 0 first
    fps: float
    mode: str = "video"                # engine mode: frame | video | multiview
    cameras: tuple = None              # calibrated multiview: (cam_R (V, 3, 3), cam_t (V, 3)) world -> OpenCV camera
    init: str = ""                     # optional INIT / HMR 2.0 file, one estimate per keypoint frame (one camera)
    frames: tuple = None               # (first, last) inclusive; None: every keypoint frame
    partial: bool = False              # the user chose frames inside the part keypoints and footage both cover
    smpl_path: str = ""                # user SMPL file; '' = the free body model
    smoothing: float = 1.0             # engine scale of the temporal terms
    keypoint_trust: float = 1.0        # engine scale of the keypoint term
    device: str = ""                   # 'cpu' | 'cuda' | '' (CUDA when available)
    iterations: int = None             # outer iterations; None: the engine's default


def write_inputs(request, folder):
    """Check the request and write OBS.npz (and INIT.npz) into ``folder`` with the engine
    package's numpy-only readers in this Python.

    Returns (obs_path, init_path or None).  RefineError for bad input."""
    import numpy as np

    errors = backend_module("io.errors")
    observations = backend_module("io.observations")
    init_io = backend_module("io.init_estimates")
    views = request.views
    try:
        keypoints, totals = [], []
        for index, view in enumerate(views):
            with naming_view(index if len(views) > 1 else None):
                kp, total = _view_keypoints(view, request)
            keypoints.append(kp)
            totals.append(total)
        sizes = np.array([view.image_size for view in views], dtype=np.float64)
        focal = np.array([guess if view.focal_length is None else view.focal_length
                          for view, guess in zip(views, observations.focal_from_fov(sizes))], dtype=np.float64)
        principal = np.array([size / 2 if view.principal_point is None else view.principal_point
                              for view, size in zip(views, sizes)], dtype=np.float64)
        obs = dict(keypoints=np.stack(keypoints), image_size=sizes, focal_length=focal, principal_point=principal)
        if request.mode != "multiview":  # one camera: OBS.npz's (F, 17, 3) layout
            obs = {key: value[0] for key, value in obs.items()}
        obs["fps"] = np.float64(request.fps)
        if request.cameras is not None:
            obs["cam_R"], obs["cam_t"] = (np.asarray(a, dtype=np.float64) for a in request.cameras)
        observations.validate_observations(obs, request.mode, path=_source(views[0].keypoints))
        obs_path = folder / "OBS.npz"
        np.savez(obs_path, **obs)

        init_path = None
        if request.init:
            init_path = folder / "INIT.npz"
            init = init_io.load_init(request.init, image_size=sizes[0], focal_length=float(focal[0]))
            np.savez(init_path, **_sliced_init(request, init, totals[0], len(keypoints[0])))
    except errors.InputError as ex:
        raise RefineError(str(ex)) from None
    return obs_path, init_path


def _sliced_init(request, init, total, count):
    """The initial estimate for the ``count`` frames to refine: given for them, or for all ``total``
    keypoint frames."""
    frames, first = len(init["global_orient"]), request.frames[0] if request.frames else 0
    if frames == total:
        return {key: value if key == "betas" and value.ndim == 1 else value[first:first + count]
                for key, value in init.items()}
    if frames != count:
        raise RefineError(f"{Path(request.init).name} has {frames} frames but the footage has {total} "
                          f"(refining {count}): give one initial estimate per footage frame")
    return init


def _source(keypoints):
    """How messages name a view's keypoints."""
    return Path(keypoints).name if isinstance(keypoints, (str, os.PathLike)) else "tracked markers"


@contextlib.contextmanager
def naming_view(index):
    """RefineErrors raised inside start with 'View <index>: ' (None: one camera, no prefix)."""
    try:
        yield
    except RefineError as ex:
        if index is None:
            raise
        raise RefineError(f"View {index}: {ex}") from None


def _view_keypoints(view, request):
    """``view``'s keypoints (F, 17, 3) for the request's frames, checked against its footage, and
    how many keypoint frames it has in all."""
    import numpy as np

    source = _source(view.keypoints)
    if isinstance(view.keypoints, (str, os.PathLike)):
        try:
            kp = backend_module("io.keypoints").load_keypoints(view.keypoints).keypoints
        except backend_module("io.errors").InputError as ex:
            raise RefineError(str(ex)) from None
    else:
        kp = np.asarray(view.keypoints, dtype=np.float32)
    total = len(kp)
    first, last = request.frames or (0, total - 1)
    if view.footage_frames is not None and total != view.footage_frames:
        both = min(total, view.footage_frames)  # keypoint frame i is footage frame i
        if not request.partial or last >= both:
            raise RefineError(
                f"{source} has {total} frames of keypoints but the footage has {view.footage_frames}: "
                f"use keypoints detected on this footage, one per frame, or refine only the frames both "
                f"cover (footage frames 1-{both}: set the frame range, or build.py --frames overlap)")
    if not 0 <= first <= last < total:
        raise RefineError(f"Frames {first}-{last} are outside the {total} keypoint frames")
    kp = kp[first:last + 1]
    if kp.ndim != 3 or not (kp[..., 2] > 0).any():
        raise RefineError(f"{source}: no keypoints in the frames to refine "
                          f"(footage frames {first + 1}-{last + 1}); choose frames where the person is detected")
    return kp, total


# -- jobs --------------------------------------------------------------------------------------

_ACTIVE = []  # the job whose engine may still be running (at most one)


def active_job():
    """The job still running (including one cancelled whose engine has not stopped yet), or None."""
    if _ACTIVE and _ACTIVE[0].finished:
        _ACTIVE.clear()
    return _ACTIVE[0] if _ACTIVE else None


class Job:
    """One engine run in its own folder.  ``state``: 'ready', 'running', 'done', 'failed' or
    'cancelled'; ``progress`` (done, total) of the engine's iterations; ``error`` one line."""

    def __init__(self, request, runner, name="shot"):
        """Writes the inputs (RefineError if they are bad; nothing is left behind then)."""
        self.request, self.runner = request, runner
        self.root = runner.root or backend_root()
        self.folder = new_job_folder(name)
        try:
            # Written in Blender whichever Python refines.
            self.obs_path, self.init_path = write_inputs(request, self.folder)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.out_path = self.folder / "OUT.npz"
        self.log_path = self.folder / "engine.log"
        self.state = "ready"
        self.progress = (0, 0)
        self.error = ""
        self._cancel = threading.Event()
        self._process = None
        self._thread = None
        self._on_progress = None

    @property
    def finished(self):
        return self.state in ("done", "failed", "cancelled") and not (self._thread and self._thread.is_alive())

    @property
    def cancelling(self):
        """Whether cancel() was called (the engine may still be stopping)."""
        return self._cancel.is_set()

    @property
    def fraction(self):
        done, total = self.progress
        return done / total if total else 0.0

    def start(self):
        """Run in a background thread; poll ``state``."""
        self._begin()
        self._thread = threading.Thread(target=self._run_safely, name="refine-motion-job", daemon=True)
        self._thread.start()

    def run(self, on_progress=None):
        """Run in this thread (background mode); returns the final state.
        on_progress(done, total) is called on each engine iteration."""
        self._on_progress = on_progress
        self._begin()
        try:
            self._run_safely()
        except BaseException:  # KeyboardInterrupt: stop the engine, then let it through
            self.cancel()
            self.state = "cancelled"
            raise
        return self.state

    def cancel(self):
        self._cancel.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _begin(self):
        if self.state != "ready":
            raise RuntimeError("a job runs once")
        self.state = "running"
        _ACTIVE[:] = [self]

    def _run_safely(self):
        try:
            if self.runner.kind == "in_process":
                self._run_in_process()
            else:
                self._run_worker()
            if self._cancel.is_set():
                raise Cancelled
            if not self.out_path.is_file():
                raise RefineError(f"The engine wrote no result; see {self.log_path}")
            self.state = "done"
        except Cancelled:
            self.state = "cancelled"
        except RefineError as ex:
            self.error, self.state = str(ex), "failed"
        except Exception as ex:  # noqa: BLE001 -- any engine failure ends the job with a message
            with open(self.log_path, "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            self.error = f"The engine failed: {type(ex).__name__}: {_one_line(ex)} (log: {self.log_path})"
            self.state = "failed"

    def _progress(self, done, total):
        """The engine's progress callback (in-process); raises Cancelled once cancelled."""
        self._set_progress(done, total)
        if self._cancel.is_set():
            raise Cancelled

    def _set_progress(self, done, total):
        self.progress = (done, total)
        if self._on_progress is not None:
            self._on_progress(done, total)

    # in-process
    def _run_in_process(self):
        request = self.request
        engine = load_engine(self.root, request.smpl_path, request.device)
        if self._cancel.is_set():
            raise Cancelled
        api = backend_module("engine.api", self.root)
        obs = backend_module("io.observations", self.root).load_observations(self.obs_path, request.mode)
        init = None
        if self.init_path is not None:
            init = backend_module("io.init_estimates", self.root).load_init(self.init_path)
        options = api.EngineOptions(smoothing=request.smoothing, keypoint_trust=request.keypoint_trust)
        if request.iterations:
            loop, _ = options.resolved(request.mode)
            options.loop = replace(loop, iterations=request.iterations)
        result = engine.run(obs, init, request.mode, options, progress=self._progress)
        results = backend_module("io.results", self.root)
        if request.mode == "multiview":  # view 0 in the OUT.npz layout, as the CLI writes it
            result = results.flatten_multiview(result)
        results.write_results(self.out_path, result)

    # worker
    def command(self):
        """The worker's command line."""
        request = self.request
        cmd = [self.runner.python, "-m", "backend", "refine", "--observations", str(self.obs_path),
               "--out", str(self.out_path), "--mode", request.mode, "--progress-lines",
               "--smoothing", repr(float(request.smoothing)), "--keypoint-trust", repr(float(request.keypoint_trust))]
        if self.init_path is not None:
            cmd += ["--init", str(self.init_path)]
        if request.smpl_path:
            cmd += ["--smpl", request.smpl_path]
        if request.device:
            cmd += ["--device", request.device]
        if request.iterations:
            cmd += ["--iterations", str(request.iterations)]
        return cmd

    def _run_worker(self):
        if missing := missing_weights(self.root):
            raise RefineError(f"The engine's trained weights are missing ({', '.join(missing)} in "
                              f"{self.root / 'backend' / 'assets'}): reinstall the extension (in a source "
                              "checkout: python -m backend train all)")
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        env["PYTHONPATH"] = str(self.root)  # so `-m backend` finds this add-on's engine package
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "w", encoding="utf-8") as log:
            try:
                self._process = subprocess.Popen(
                    self.command(), cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=log,
                    stdin=subprocess.DEVNULL, text=True, creationflags=_NO_WINDOW)
            except OSError as ex:
                raise RefineError(f"Cannot start the worker Python {self.runner.python} ({ex.strerror or ex}): "
                                  "fix it in the add-on preferences") from None
            if self._cancel.is_set():  # cancelled while starting
                self._process.terminate()
            for line in self._process.stdout:
                if progress := _progress_line(line):
                    self._set_progress(*progress)
                else:
                    log.write(line)
            code = self._process.wait()
        if self._cancel.is_set():
            raise Cancelled
        if code != 0:
            raise RefineError(self._worker_error(code))

    def _worker_error(self, code):
        lines = [line.strip() for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip() and not line.startswith(" ")]
        last = lines[-1] if lines else f"exit code {code}"
        if "No module named 'torch'" in last or "No module named 'numpy'" in last:
            return (f"The worker Python has no engine packages ({last}): run Set Up Worker Environment in "
                    "the add-on preferences, or pick a Python with torch")
        if last.startswith("error: "):
            return last[len("error: "):]
        return f"The engine failed: {last} (log: {self.log_path})"


def _progress_line(line):
    """(done, total) from a worker's 'PROGRESS done/total' line, else None."""
    parts = line.split()
    if len(parts) == 2 and parts[0] == "PROGRESS":
        done, _, total = parts[1].partition("/")
        if done.isdigit() and total.isdigit():
            return int(done), int(total)
    return None


def _one_line(ex):
    return " ".join(str(ex).split()) or type(ex).__name__


# -- worker environment set-up -----------------------------------------------------------------

def requirement_files(root=None):
    """(engine.txt, constraints.txt) shipped next to the engine package."""
    folder = (root or backend_root()) / "requirements"
    files = folder / "engine.txt", folder / "constraints.txt"
    if not all(f.is_file() for f in files):
        raise RefineError(f"The engine's requirement files are missing from {folder}: reinstall the extension")
    return files


def torch_requirement(constraints):
    """The pinned torch line of constraints.txt (e.g. 'torch==2.13.0')."""
    for line in Path(constraints).read_text().splitlines():
        if line.strip().startswith("torch"):
            return line.strip()
    raise RefineError(f"{constraints} pins no torch version: reinstall the extension")


def setup_commands(venv=None, base_python=None):
    """The commands that make the worker environment: a venv, pinned torch first, then the
    engine's pinned requirements (torch kept at its pin)."""
    venv = Path(venv or user_dir(WORKER_VENV, create=False))
    engine_txt, constraints = requirement_files()
    python = str(venv_python(venv))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    return [
        [base_python or sys.executable, "-m", "venv", str(venv)],
        pip + [torch_requirement(constraints)],
        pip + ["-r", str(engine_txt), "-c", str(constraints)],
    ]


def shell_line(cmd):
    """A command as one line to paste into a terminal."""
    if sys.platform == "win32":
        return subprocess.list2cmdline(cmd)
    import shlex
    return shlex.join(cmd)


class SetupTask:
    """Runs :func:`setup_commands` one after another as subprocesses, output to a log file.
    Poll with :meth:`poll` (non-blocking) or run with :meth:`run` (blocking)."""

    def __init__(self, commands, log_path):
        self.commands, self.log_path = list(commands), Path(log_path)
        self.step = 0            # index of the running command
        self.state = "running"   # 'running' | 'done' | 'failed' | 'cancelled'
        self.error = ""
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 -- open across polls, closed by _finish
        self._process = None

    def poll(self):
        """Advance without blocking; returns True once finished."""
        if self.state != "running":
            return True
        if self._process is None:
            self._launch()
        elif (code := self._process.poll()) is not None:
            self._process = None
            if code != 0:
                self._finish("failed", f"Step {self.step + 1} failed (exit code {code}): {self.last_line()}")
            elif self.step + 1 == len(self.commands):
                self._finish("done")
            else:
                self.step += 1
                self._launch()
        return self.state != "running"

    def run(self):
        while not self.poll():
            time.sleep(0.1)
        return self.state

    def cancel(self):
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait()
        self._finish("cancelled", "Cancelled")

    def last_line(self):
        if not self._log.closed:
            self._log.flush()
        lines = [ln.strip() for ln in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
        return lines[-1] if lines else ""

    def _launch(self):
        cmd = self.commands[self.step]
        self._log.write("$ " + shell_line(cmd) + "\n")
        self._log.flush()
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        try:
            self._process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, creationflags=_NO_WINDOW)
        except OSError as ex:
            self._finish("failed", f"Step {self.step + 1} could not start: {ex}")

    def _finish(self, state, error=""):
        self.state, self.error = state, error
        self._log.close()
