# SPDX-License-Identifier: GPL-3.0-or-later
"""One refinement: the request (:class:`View`, :class:`Request`), its inputs checked by the contract,
and the engine run in Blender or in the worker (:class:`Job`).

The path of a keypoint array (README, Layout): the user's file is read by
``backend.contract.keypoints`` and paired with the footage's facts (frame count, rate, size from
Blender's Movie Clip) and validated by ``backend.contract.shot`` / ``observations`` once, in
:func:`prepare_inputs`.  In Blender that validated dict goes to ``backend.service.refine``; for the
worker it is written as OBS.npz and read by the same contract in ``python -m backend refine``.

Keypoints to detect (:class:`Detect`, the panel's "Detect from Footage", the batch without keypoints)
are a first stage of the same job: BlazePose (``backend.detect``) runs where
``placement.detector_python`` says (Blender's Python when mediapipe imports there, else the worker's
``python -m backend detect``), writes ``view<i>.keypoints.npz`` in the job folder, and only then
are the inputs checked and written; a problem there ends the job with its one-line ``error``.

Job folders (view<i>.keypoints.npz, OBS.npz, INIT.npz, OUT.npz, engine.log) live in this process's
folder of the extension's user data folder (``placement.process_dir``; a temp folder when the add-on is
imported as a plain module, as in tests and build.py): another Blender process never prunes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from backend.contract.errors import InputError
from backend.contract.frames import FrameRange, to_scene

from .engine import RefineError, backend_root, load_engine, worker_environment
from .placement import NO_WINDOW, Runner, detector_python, process_dir

if TYPE_CHECKING:  # numpy-backed contract types: not loaded when the panel imports this module
    from backend.contract.keypoints import KeypointSequence
    from backend.contract.observations import Observations
    from backend.contract.shot import Shot

KEEP_JOBS = 10  # this process's job folders kept on disk (newest first); its older ones are removed


class Cancelled(Exception):
    """The job was cancelled: the engine stopped, nothing was imported."""


@dataclass(frozen=True)
class Detect:
    """Keypoints not given but to be detected in ``footage`` (a video file) by the job's first stage."""
    footage: str


@dataclass
class View:
    """One camera's keypoints and intrinsics.  Keypoint frame i is footage frame ``first_frame + i``,
    the first frame number read from the keypoint file (OpenPose file numbers; 0 for arrays) less
    ``first_number``."""
    keypoints: object                  # file / OpenPose folder path, (F, 17, 3) array [x_px, y_px, conf], or Detect
    image_size: tuple[float, float]    # (width, height) px
    focal_length: float | None = None  # px; None: the engine's default field of view
    principal_point: tuple[float, float] | None = None  # (cx, cy) px, OpenCV (y down); None: the image centre
    footage_frames: int | None = None  # the footage's frame count (None: not checked against footage)
    footage_name: str = "the footage"  # how messages name the footage
    first_number: object = "auto"      # the keypoint file's number of footage frame 0, or "auto" (contract.shot)


@dataclass
class Request:
    """One refinement.  ``frames`` is a ``backend.contract.frames.FrameRange`` of footage frames
    (0-based, stop excluded) inside what footage and keypoints both cover, or ``"overlap"`` (all of
    that part); None: every footage frame, which the keypoints must cover exactly.  The first
    refined frame is the job's ``inputs.frames.start``."""
    views: list[View]                  # View per camera: one (frame, video) or several (multiview), view 0 first
    fps: float                         # the footage's rate (a keypoint file's own fps must agree)
    mode: str = "video"                # engine mode: frame | video | multiview
    cameras: tuple | None = None       # calibrated multiview: (cam_R (V, 3, 3), cam_t (V, 3)) world -> OpenCV camera
    init: str = ""                     # optional INIT / HMR 2.0 file: one estimate per refined or per keypoint frame
    frames: FrameRange | str | None = None  # FrameRange, "overlap" or None (see above)
    smpl_path: str = ""                # user SMPL file; '' = the free body model
    smoothing: float = 1.0             # engine scale of the temporal terms
    keypoint_trust: float = 1.0        # engine scale of the keypoint term
    height: float = None               # the person's known height in metres; None: unknown
    device: str = ""                   # 'cpu' | 'cuda' | '' (CUDA when available)
    iterations: int | None = None      # outer iterations; None: the engine's default
    footage_start: int = 0             # scene frame of footage frame 0 (messages name scene frames)
    frames_option: str = ""            # how messages say to pick frames: '' the panel's Frame Start/End,
                                       # else that command-line option (build.py: '--frames')


@dataclass
class Inputs:
    """What the contract made of a request: validated observations, the INIT dict and what the user should know."""
    obs: Observations
    init: dict | None = None
    frames: FrameRange | None = None   # the footage frames refined
    warnings: list[str] = field(default_factory=list)  # one line each: the reader's notes, frames without evidence
    gaps: list[FrameRange] = field(default_factory=list)  # footage frames with little or no evidence


def scene_frames_text(frames: FrameRange, footage_start: int) -> str:
    """'a-b' scene frames (as Blender's timeline shows them) of a FrameRange of footage frames."""
    first, last = to_scene(frames, footage_start)
    return f"{first}-{last}" if last > first else f"{first}"


def _keypoint_source(view: View) -> str | os.PathLike | KeypointSequence:
    """A view's keypoints for the contract: a path, or the tracked markers' array as a sequence."""
    from backend.contract.keypoints import sequence_from_array

    if isinstance(view.keypoints, (str, os.PathLike)):
        return view.keypoints
    return sequence_from_array(view.keypoints, "tracked markers")


def _view_shot(view: View, request: Request, mode: str) -> Shot:
    """The contract's Shot for one view: keypoints read, paired with the footage's facts, checked."""
    from backend.contract import shot

    footage = None
    if view.footage_frames is not None:
        footage = shot.FootageInfo(view.footage_name, view.footage_frames, float(request.fps), *view.image_size,
                                   frame_count_source="blender")

    # The fix in the user's terms; none when that is every footage frame.
    def choose_frames(frames: FrameRange) -> str | None:
        if request.frames_option:
            return f"{request.frames_option} {frames} or {request.frames_option} overlap"
        if frames.start == 0 and frames.stop == view.footage_frames:
            return None
        return f"set Frame Start/End to scene frames {scene_frames_text(frames, request.footage_start)}"

    return shot.load_shot(footage, _keypoint_source(view), request.frames, mode=mode,
                          fps=None if footage is not None else request.fps, focal_length=view.focal_length,
                          principal_point=view.principal_point, image_size=view.image_size,
                          choose_frames=choose_frames, first_number=view.first_number)


def prepare_inputs(request: Request) -> Inputs:
    """Check the request with the contract: Inputs, or RefineError naming the problem and the fix."""
    from backend.contract import init_estimates
    from backend.contract.observations import combine_views
    from backend.contract.shot import evidence_gaps

    single = request.mode != "multiview"
    try:
        shots = []
        for index, view in enumerate(request.views):
            with naming_view(None if single else index):
                try:
                    shots.append(_view_shot(view, request, request.mode if single else "video"))
                except InputError as ex:
                    raise RefineError(str(ex)) from None
        obs = shots[0].obs if single else combine_views([s.obs for s in shots], request.cameras)
        main = shots[0]
        first = main.keypoints.report.first_frame
        frames = FrameRange(main.start, main.stop)
        init = None
        if request.init:
            init = init_estimates.load_init(request.init, image_size=obs.image_size[0],
                                            focal_length=float(obs.focal_length[0]))
            init = init_estimates.slice_init(init, FrameRange(main.start - first, main.stop - first),
                                             main.keypoints.report.frames, Path(request.init).name)
    except InputError as ex:
        raise RefineError(str(ex)) from None
    warnings = [note if single else f"View {i}: {note}" for i, s in enumerate(shots) for note in s.notes]
    gaps = [FrameRange(g.start + frames.start, g.stop + frames.start) for g in evidence_gaps(obs.keypoints[0])]
    if gaps:
        where = ", ".join(scene_frames_text(g, request.footage_start) for g in gaps)
        warnings.append(f"Few or no keypoints in scene frames {where}: the body there is guessed from the "
                        "frames around it (marked in the timeline); check it")
    return Inputs(obs, init, frames, warnings, gaps)


@contextlib.contextmanager
def naming_view(index: int | None) -> Iterator[None]:
    """RefineErrors raised inside start with 'View <index>: ' (None: one camera, no prefix)."""
    try:
        yield
    except RefineError as ex:
        if index is None:
            raise
        raise RefineError(f"View {index}: {ex}") from None


# -- folders -----------------------------------------------------------------------------------

def jobs_root() -> Path:
    """This process's job folders (another Blender process has its own)."""
    return process_dir("jobs")


def new_job_folder(name: str) -> Path:
    """A fresh job folder named after the time and ``name``; this process's oldest beyond KEEP_JOBS go."""
    root = jobs_root()
    old = sorted(p for p in root.iterdir() if p.is_dir())
    for folder in old[:max(0, len(old) - KEEP_JOBS + 1)]:
        shutil.rmtree(folder, ignore_errors=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "shot"
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-") + safe + "-", dir=root))


def write_inputs(inputs: Inputs, mode: str, folder: Path) -> tuple[Path, Path | None]:
    """OBS.npz (and INIT.npz) in ``folder`` as the command line reads them: (obs_path, init_path or None)."""
    import numpy as np

    obs_path = folder / "OBS.npz"
    np.savez(obs_path, **inputs.obs.file_arrays(mode))
    init_path = None
    if inputs.init is not None:
        init_path = folder / "INIT.npz"
        np.savez(init_path, **inputs.init)
    return obs_path, init_path


# -- jobs --------------------------------------------------------------------------------------

_ACTIVE = []  # the job whose engine may still be running (at most one)
LAST_WARNINGS = []  # the latest job's warnings, shown in the panel until the next job


def active_job() -> Job | None:
    """The job still running (including one cancelled whose engine has not stopped yet), or None."""
    if _ACTIVE and _ACTIVE[0].finished:
        _ACTIVE.clear()
    return _ACTIVE[0] if _ACTIVE else None


class Job:
    """One engine run in its own folder.  ``state``: 'ready', 'running', 'done', 'failed' or
    'cancelled'; ``progress`` (done, total) of the engine's iterations; ``error`` one line;
    ``warnings`` one line each (the keypoint reader's notes, frames without evidence); ``gaps``
    FrameRanges of footage frames with little or no evidence."""

    def __init__(self, request: Request, runner: Runner, name: str = "shot") -> None:
        """Checks the inputs and writes them (RefineError if they are bad; nothing is left behind then).
        Keypoints still to detect are checked and written by the job's detection stage instead."""
        self.request, self.runner = request, runner
        self.root = runner.root or backend_root()
        self.to_detect = {i: view.keypoints.footage for i, view in enumerate(request.views)
                          if isinstance(view.keypoints, Detect)}
        self.detections = {}  # view index -> the keypoint file the detection stage wrote
        self.inputs, self.warnings, self.gaps = None, [], []
        LAST_WARNINGS.clear()
        if not self.to_detect:
            self._take_inputs(prepare_inputs(request))
        self.folder = new_job_folder(name)
        self.out_path = self.folder / "OUT.npz"
        self.log_path = self.folder / "engine.log"
        if not self.to_detect:
            try:
                self._write_inputs()
            except BaseException:  # nothing is left behind
                shutil.rmtree(self.folder, ignore_errors=True)
                raise
        self.state = "ready"
        self.stage = "detect" if self.to_detect else "refine"  # what ``progress`` counts: frames or iterations
        self.progress = (0, 0)
        self.error = ""
        self._cancel = threading.Event()
        self._process = None
        self._thread = None
        self._on_progress = None

    def _take_inputs(self, inputs: Inputs) -> None:
        self.inputs, self.warnings, self.gaps = inputs, inputs.warnings, inputs.gaps
        LAST_WARNINGS[:] = self.warnings

    def _write_inputs(self) -> None:
        self.obs_path, self.init_path = write_inputs(self.inputs, self.request.mode, self.folder)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled") and not (self._thread and self._thread.is_alive())

    @property
    def cancelling(self) -> bool:
        """Whether cancel() was called (the engine may still be stopping)."""
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        done, total = self.progress
        return done / total if total else 0.0

    def start(self) -> None:
        """Run in a background thread; poll ``state``."""
        self._begin()
        self._thread = threading.Thread(target=self._run_safely, name="refine-motion-job", daemon=True)
        self._thread.start()

    def run(self, on_progress: Callable[[int, int], None] | None = None) -> str:
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

    def cancel(self) -> None:
        self._cancel.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _begin(self) -> None:
        if self.state != "ready":
            raise RuntimeError("a job runs once")
        self.state = "running"
        _ACTIVE[:] = [self]

    def _run_safely(self) -> None:
        try:
            if self.to_detect:
                self._detect_all()
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
        except Exception as ex:  # any engine failure ends the job with a message
            with open(self.log_path, "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            self.error = f"The engine failed: {type(ex).__name__}: {_one_line(ex)} (log: {self.log_path})"
            self.state = "failed"

    def _set_progress(self, done: int, total: int) -> None:
        self.progress = (done, total)
        if self._on_progress is not None:
            self._on_progress(done, total)

    # detection stage
    def _detect_all(self) -> None:
        """Detect every view's keypoints, then check and write the inputs as if they had been given."""
        python = detector_python(self.runner)
        views = list(self.request.views)
        for index, footage in self.to_detect.items():
            out = self.folder / f"view{index}.keypoints.npz"
            if python is None:
                self._detect_in_process(footage, out)
            else:
                self._run_worker([python, "-m", "backend", "detect", "--footage", footage, "--out", str(out),
                                  "--progress-lines", "--force"])
            if self._cancel.is_set():
                raise Cancelled
            self.detections[index] = out
            views[index] = replace(views[index], keypoints=str(out))
        self._take_inputs(prepare_inputs(replace(self.request, views=views)))
        self._write_inputs()
        self.stage, self.progress = "refine", (0, 0)

    def _detect_in_process(self, footage: str, out: Path) -> None:
        from backend import detect

        try:
            data, _ = detect.detect_footage(footage, progress=self._set_progress, cancel=self._cancel.is_set)
        except detect.DetectionCancelled:
            raise Cancelled from None
        except (InputError, detect.DetectorUnavailable) as ex:
            raise RefineError(_one_line(ex)) from None
        detect.write_keypoint_file(out, data, force=True)

    # in-process
    def _run_in_process(self) -> None:
        from backend import service

        request = self.request
        engine = load_engine(request.smpl_path, request.device)
        if self._cancel.is_set():
            raise Cancelled
        options = service.engine_options(request.mode, smoothing=request.smoothing,
                                         keypoint_trust=request.keypoint_trust, iterations=request.iterations,
                                         height=request.height)
        try:
            service.refine(engine, self.inputs.obs, self.inputs.init, request.mode, options, self.out_path,
                           progress=self._set_progress, cancelled=self._cancel.is_set)
        except service.Cancelled:
            raise Cancelled from None
        except InputError as ex:
            raise RefineError(str(ex)) from None

    # worker
    def command(self) -> list[str]:
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
        if request.height:
            cmd += ["--height", repr(float(request.height))]
        return cmd

    def _run_worker(self, command: list[str] | None = None) -> None:
        """Run ``command`` (default: the refinement's) in the worker; its PROGRESS lines set ``progress``."""
        env = worker_environment(self.root)  # so `-m backend` finds this add-on's engine package
        with open(self.log_path, "a", encoding="utf-8") as log:
            try:
                self._process = subprocess.Popen(
                    command or self.command(), cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=log,
                    stdin=subprocess.DEVNULL, text=True, creationflags=NO_WINDOW)
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

    def _worker_error(self, code: int) -> str:
        lines = [line.strip() for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip() and not line.startswith(" ")]
        last = lines[-1] if lines else f"exit code {code}"
        if any(f"No module named '{name}" in last for name in ("torch", "numpy", "mediapipe")):
            return (f"The worker Python has no engine packages ({last}): run Set Up Worker Environment in "
                    "the add-on preferences, or pick a Python with torch")
        if last.startswith("error: "):
            return last[len("error: "):]
        return f"The engine failed: {last} (log: {self.log_path})"


def progress_text(job: Job) -> str:
    """What a running job is doing, for the panel and the status bar."""
    done, total = job.progress
    if not total:
        return "Starting the detector..." if job.stage == "detect" else "Starting the engine..."
    if job.stage == "detect":
        return f"Detecting the person: frame {done}/{total}"
    return f"Refining: iteration {done}/{total}"


def _progress_line(line: str) -> tuple[int, int] | None:
    """(done, total) from a worker's 'PROGRESS done/total' line, else None."""
    parts = line.split()
    if len(parts) == 2 and parts[0] == "PROGRESS":
        done, _, total = parts[1].partition("/")
        if done.isdigit() and total.isdigit():
            return int(done), int(total)
    return None


def _one_line(ex: BaseException) -> str:
    return " ".join(str(ex).split()) or type(ex).__name__
