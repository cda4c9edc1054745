"""One clip's work, run inside a Ray task (or in this process): detect -> refine -> export into
``OUT/<clip>/``, written in a temp folder inside OUT and renamed into place at the end.

The clip folder holds ``<clip>.npz`` (the engine result, as ``python -m backend refine --out``
writes it), ``<clip>.keypoints.<ext>`` (the detections, or a copy of the keypoints given),
``<clip>.blend`` / ``.bvh`` / ``.fbx`` when asked (build.py's ``--result`` import, run in a Python
with bpy), and ``clip.json`` (the record :func:`process_clip` returns).  A failure of the clip
removes its temp folder and comes back as a ``failed`` record with a one-line message; an interrupt
removes it and propagates.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.batch.clips import Clip

__all__ = ["ClipOptions", "ClipError", "process_clip", "blender_command", "remove_leftovers", "RECORD_NAME"]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "build.py"
RECORD_NAME = "clip.json"
_PARTIAL = re.compile(r"^\.(partial|old)-[0-9a-f]{8}-(?P<name>.+)$")
EXPORT_TIMEOUT_S = 1800


class ClipError(Exception):
    """A clip that cannot be done, with a one-line message."""


@dataclass(frozen=True)
class ClipOptions:
    """What every clip of a batch is refined and exported with (None: the engine's default)."""
    mode: str = "video"                 # frame | video
    device: str | None = None           # cpu | cuda | None (CUDA when available)
    smpl: str | None = None             # SMPL model file (None: the free body model)
    iterations: int | None = None
    fov: float = 55.0                   # degrees, when the keypoints carry no focal length
    fps: float | None = None            # for keypoint files without footage nor fps
    track: int | None = None            # which detected person
    blend: bool = False
    bvh: bool = False
    fbx: bool = False
    retarget: str | None = None         # character .blend for the exports
    preset: str | None = None           # bone preset for retarget
    blender: str | None = None          # a Python with bpy or a Blender executable (None: found)

    def keyed(self) -> dict:
        """The options that change a clip's outputs (``blender``, where exports run, does not)."""
        return {k: v for k, v in asdict(self).items() if k != "blender"}

    @property
    def exports(self) -> bool:
        return self.blend or self.bvh or self.fbx


def blender_command(given: str | None) -> list[str] | None:
    """The command prefix that runs build.py with bpy: ``given`` (a Blender executable, or a Python with
    the bpy module), else this Python when it has bpy, else ``blender`` on PATH; None when none is found
    (or ``given`` is not an executable)."""
    if given:
        if shutil.which(given) is None:
            return None
        name = Path(given).name.lower()
        if name.startswith("blender") and "python" not in name:
            return [given, "-b", "--factory-startup", "-P", str(BUILD_SCRIPT), "--"]
        return [given, str(BUILD_SCRIPT), "--"]
    if importlib.util.find_spec("bpy") is not None:
        return [sys.executable, str(BUILD_SCRIPT), "--"]
    if blender := shutil.which("blender"):
        return [blender, "-b", "--factory-startup", "-P", str(BUILD_SCRIPT), "--"]
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ClipError) or type(exc).__module__.startswith("backend") \
        else f"{type(exc).__name__}: {text}"


def _die_with_parent() -> None:
    """In the export subprocess: get SIGKILL when the worker that started it dies (a cancelled task), so
    nothing writes into the clip's temp folder after it was removed."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _keypoints(clip: Clip, options: ClipOptions, folder: Path) -> tuple[Path, float]:
    """(the clip's keypoints, seconds spent detecting): detected with BlazePose into
    ``folder/<clip>.keypoints.npz`` (as ``refine --footage`` does), or the given ones copied there."""
    started = time.perf_counter()
    if clip.keypoints is None:
        from backend.detect import detect_footage, write_keypoint_file

        data, _ = detect_footage(clip.footage, track=options.track)
        return write_keypoint_file(folder / f"{clip.name}.keypoints.npz", data), time.perf_counter() - started
    source = clip.keypoints
    copy = folder / f"{clip.name}.keypoints{'' if source.is_dir() else source.suffix.lower()}"
    if source.is_dir():  # an OpenPose folder
        shutil.copytree(source, copy)
    else:
        shutil.copy2(source, copy)
    return source, 0.0


def _refine(clip: Clip, keypoints: Path, options: ClipOptions, out: Path, seconds: dict) -> tuple[int, dict]:
    """Refine the clip as ``python -m backend refine --footage CLIP --keypoints KP --out OUT`` does
    (``seconds``' load / refine set); returns (frames, mean reprojection errors px before / after)."""
    import numpy as np

    from backend import service
    from backend.io.shot import load_shot

    started = time.perf_counter()
    shot = load_shot(clip.footage, keypoints, None, mode=options.mode, fps=options.fps, fov_deg=options.fov,
                     track=options.track if clip.keypoints is not None else None)
    engine = service.load_engine(options.smpl, options.device)  # once per worker process, then kept
    loaded = time.perf_counter()
    engine_options = service.engine_options(options.mode, iterations=options.iterations)
    result = service.refine(engine, shot.obs, None, options.mode, engine_options, out)
    seconds.update(load=loaded - started, refine=time.perf_counter() - loaded)
    errors = dict(initial=float(np.nanmean(result["init_reprojection_error_px"])),
                  refined=float(np.nanmean(result["reprojection_error_px"])))
    return shot.stop - shot.start, errors


def _export(clip: Clip, options: ClipOptions, command: list[str], result: Path, folder: Path) -> list[str]:
    """The .blend / BVH / FBX asked for, by build.py's ``--result`` import in a Python with bpy; the
    names written."""
    blend = folder / (f"{clip.name}.blend" if options.blend else ".scratch.blend")
    args = ["--result", str(result), "--out", str(blend)]
    args += ["--footage", str(clip.footage)] if clip.footage is not None else []
    for kind in ("bvh", "fbx"):
        args += [f"--{kind}", str(folder / f"{clip.name}.{kind}")] if getattr(options, kind) else []
    args += ["--retarget", options.retarget] if options.retarget else []
    args += ["--preset", options.preset] if options.preset else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=EXPORT_TIMEOUT_S,
                          preexec_fn=_die_with_parent if sys.platform == "linux" else None, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ClipError(f"export failed: {lines[-1].strip() if lines else f'build.py exited {done.returncode}'}")
    if not options.blend:
        blend.unlink(missing_ok=True)
    return [p.name for p in (folder / f"{clip.name}.{kind}" for kind in ("blend", "bvh", "fbx")) if p.exists()]


def _publish(partial: Path, final: Path) -> None:
    """Put the finished ``partial`` folder at ``final`` (an older one there is replaced)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{uuid.uuid4().hex[:8]}-{final.name}")
        os.rename(final, old)
    os.rename(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(out_dir: Path, names: set[str] | None = None) -> list[str]:
    """Remove the temp folders of unfinished clips (of ``names``, or all) in ``out_dir``; an older finished
    folder caught between its two renames is put back.  Returns the names removed."""
    removed = []
    for path in Path(out_dir).iterdir() if Path(out_dir).is_dir() else []:
        match = _PARTIAL.match(path.name)
        if match is None or (names is not None and match["name"] not in names):
            continue
        final = path.with_name(match["name"])
        if match[1] == "old" and not final.exists():
            os.rename(path, final)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def _record(clip: Clip, status: str, key: str, message: str = "", **fields) -> dict:
    return dict(clip=clip.name, status=status, message=message, key=key,
                footage=str(clip.footage) if clip.footage else None,
                keypoints=str(clip.keypoints) if clip.keypoints else None,
                node=socket.gethostname(), pid=os.getpid(), **fields)


def process_clip(clip: Clip, options: ClipOptions, out_dir: str, key: str, threads: int | None = None) -> dict:
    """Detect (when no keypoints are given), refine and export ``clip`` into ``out_dir/<clip>/``; returns
    its record (status ``done`` or ``failed`` with a one-line message, timings in seconds: wall per
    step and ``cpu``, this process's CPU time, the export subprocess's not counted).  ``threads``
    sets torch's thread count (a Ray task's CPUs)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    started, cpu_started = time.perf_counter(), time.process_time()
    seconds = dict(detect=0.0, load=0.0, refine=0.0, export=0.0)
    partial = Path(out_dir) / f".partial-{uuid.uuid4().hex[:8]}-{clip.name}"
    partial.mkdir(parents=True)
    try:
        command = blender_command(options.blender) if options.exports else None
        if options.exports and command is None:
            where = (f"--blender {options.blender} is not an executable" if options.blender else
                     "no Python with the bpy module here and no `blender` on PATH")
            raise ClipError(f"--blend/--bvh/--fbx need Blender: {where}; pass --blender PATH (a Blender, or a "
                            "Python with the bpy module: requirements/dev.txt)")
        keypoints, seconds["detect"] = _keypoints(clip, options, partial)
        frames, errors = _refine(clip, keypoints, options, partial / f"{clip.name}.npz", seconds)
        tick = time.perf_counter()
        exported = _export(clip, options, command, partial / f"{clip.name}.npz", partial) if command else []
        seconds["export"] = time.perf_counter() - tick
        seconds.update(total=time.perf_counter() - started, cpu=time.process_time() - cpu_started)
        record = _record(clip, "done", key, frames=frames, reprojection_error_px=errors, seconds=seconds,
                         outputs=sorted(p.name for p in partial.iterdir()) + [RECORD_NAME], exported=exported)
        (partial / RECORD_NAME).write_text(json.dumps(record, indent=1))
        _publish(partial, Path(out_dir) / clip.name)
        return record
    except Exception as exc:  # the clip fails alone: one line for the summary
        shutil.rmtree(partial, ignore_errors=True)
        seconds["total"] = time.perf_counter() - started
        return _record(clip, "failed", key, _one_line(exc), seconds=seconds)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
