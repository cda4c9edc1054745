# SPDX-License-Identifier: GPL-3.0-or-later
"""Headless batch refinement (``build.py``'s batch mode): shots -> .blend files (+ BVH / FBX).

One shot is footage + keypoints refined by the engine (without ``--keypoints`` the job detects
them first, :class:`runner.job.Detect`), or an engine result (OUT.npz) imported as it is
(``--result``; the demo's .blend is made so).  The run has two passes:

1. :func:`check_shots` checks EVERY argument of every shot before any engine work: outputs,
   the character and its bone preset, footage, and keypoints, frame rates and frame ranges
   through the job's own input check (:func:`runner.job.prepare_inputs`, the contract's
   ``load_shot``); it builds each shot's :class:`refine.Plan` with the same :class:`Request` the
   Refine operator makes from the panel, built here directly from the options.
2. :func:`run_shot` runs each job (:class:`runner.job.Job`) and imports its OUT.npz with
   :func:`refine.import_result` (the operator's import), retargets, exports and saves.

Frames: footage frame i (0-based) is scene frame 1 + i; ``--frames START:STOP`` are footage
frames, STOP excluded.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import bpy
import numpy as np

from . import export, refine, result, retarget, retarget_presets, staging
# Everything the batch takes from the engine runner, in one place.
from backend.contract import observations
from backend.contract.batch_options import preset_error, ray_options_given, runner_arguments
from backend.contract.frames import FrameRange
from backend.contract.shot import FPS_TOLERANCE, keypoint_side_fields

from .runner.engine import RefineError, backend_root, worker_environment
from .runner.job import Detect, Job, Request, View, prepare_inputs, progress_text
from .runner.placement import choose_runner, detector_python

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from .runner.placement import Runner

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".mts", ".mxf"}
KEYPOINT_SUFFIXES = (".npz", ".npy", ".json")
INIT_SUFFIXES = (".npz", ".pkl")
EXPORTS = ("bvh", "fbx")
DETECTIONS_SUFFIX = ".keypoints.npz"  # a shot's detections: <out>.keypoints.npz beside its .blend
# Options that only mean something when the engine runs (not with --result).
ENGINE_OPTIONS = ("keypoints", "init", "smpl", "frames", "iterations", "device", "smoothing", "keypoint_trust",
                  "height", "focal_length", "fov", "worker")


class BatchError(Exception):
    """A problem with the batch's arguments: one line naming it and the fix."""


@dataclass
class Options:
    """The batch's options (build.py's command line; None = not given)."""
    footage: list = None            # video files or folders of videos
    keypoints: list = None          # keypoint files / OpenPose folders, or one folder of them (None: detected)
    result: list = None             # engine results (OUT.npz) to import instead of refining
    init: list = None               # initial SMPL estimates, paired like keypoints
    smpl: str = None                # SMPL model file (default: the free body model)
    out: str = None                 # .blend file (one shot) or folder
    bvh: str = None
    fbx: str = None
    retarget: str = None            # character .blend: its first armature receives the motion
    preset: str = None              # bone-name preset for retarget
    in_place: bool = False          # retarget in place (only the height follows the motion)
    mode: str = "video"             # video | frame
    frames: object = None           # FrameRange of footage frames, 'overlap' or None (all)
    first_frame: object = "auto"    # the keypoint files' number of footage frame 0, or "auto" (contract.shot)
    iterations: int = None
    device: str = None              # cpu | cuda | None (CUDA when available)
    smoothing: float = None         # engine scale of the temporal terms (None: 1)
    keypoint_trust: float = None    # engine scale of the keypoint term (None: 1)
    height: float = None            # the person's known height in metres (None: unknown)
    focal_length: float = None      # px
    fov: float = None               # degrees across the long side of the image
    worker: str = None              # worker Python (default: here when torch imports)
    force: bool = False             # overwrite existing outputs
    absolute_paths: bool = False    # store the footage's absolute path in the .blend (default: relative to it)
    ray: bool = False               # hand the clips to python -m backend batch's runner (run_on_ray)
    ray_address: str = None         # join this Ray cluster (implies ray; None: a local one for the run)
    num_cpus: int = None            # CPUs of the local Ray cluster (None: all of this machine's)
    cpus_per_clip: float = 1.0      # CPUs (torch threads) of each clip's Ray task
    clips_per_gpu: int = 1          # with --device cuda: Ray tasks sharing one GPU


@dataclass
class Shot:
    """One shot's inputs and outputs (paths), and once checked its plan."""
    name: str
    footage: Path = None
    keypoints: Path = None          # None: detected in the footage by the job
    init: Path = None
    result: Path = None             # an OUT.npz to import (no engine run)
    blend: Path = None
    bvh: Path = None
    fbx: Path = None
    detections: Path = None         # <out>.keypoints.npz: the keypoints the job detects (when not given)
    plan: refine.Plan = None        # set by check_shots
    notes: list = field(default_factory=list)  # lines for the per-shot report (e.g. the focal length used)


# -- pairing shots and outputs (paths only) ---------------------------------------------------------------

def _videos(paths: Iterable[str]) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise BatchError(f"--footage {path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            found += videos
        elif path.is_file():
            found.append(path)
        else:
            raise BatchError(f"--footage {path}: not found")
    return found


def _existing_files(option: str, paths: Iterable[str]) -> list[Path]:
    for path in map(Path, paths):
        if not path.is_file():
            raise BatchError(f"{option} {path}: not found")
    return [Path(p) for p in paths]


def _paired(option: str, given: Sequence[str | Path], names: Sequence[str], suffixes: Sequence[str]) -> list[Path]:
    """One path per shot name from ``given``: as many paths as shots, or one folder looked up by name."""
    given = [Path(p) for p in given]
    folder = given[0] if len(given) == 1 and given[0].is_dir() else None
    openpose = folder is not None and any(folder.glob("*_keypoints.json"))
    if len(given) == len(names) and not (folder and not openpose):
        return given
    if folder is None:
        raise BatchError(f"{option}: give one per footage ({len(names)}) or one folder")
    paired = []
    for name in names:
        candidates = [folder / (name + suffix) for suffix in suffixes] + [folder / name]
        match = next((c for c in candidates if c.exists()), None)
        if match is None:
            raise BatchError(f"{option} {folder}: nothing for shot '{name}' (looked for "
                             f"{name}{'/'.join(suffixes)} or {name}/)")
        paired.append(match)
    return paired


def _output(option: str, value: str, name: str, suffix: str, several: bool) -> Path:
    """The output file of shot ``name`` for an option naming a file (one shot) or a folder."""
    path = Path(value)
    if several or path.is_dir() or value.endswith(("/", os.sep)):
        return path / (name + suffix)
    if path.suffix.lower() != suffix:
        raise BatchError(f"{option} {value}: expected a {suffix} file")
    return path


def _blocked_by_a_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is a regular file (then nothing can be written there)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def _check_outputs(shots: list[Shot], force: bool) -> None:
    outputs = [getattr(s, kind) for s in shots for kind in ("blend", "detections", *EXPORTS)
               if getattr(s, kind) is not None]
    if len(set(outputs)) != len(outputs):
        raise BatchError("two outputs have the same path; give each shot its own outputs")
    for out in outputs:
        if blocker := _blocked_by_a_file(out):
            raise BatchError(f"cannot write {out}: {blocker} is a file, not a folder; choose outputs inside a folder")
    existing = [str(out) for out in outputs if out.exists()]
    if existing and not force:
        raise BatchError(f"output exists: {', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}; "
                         "pass --force to overwrite or choose other outputs")


def _check_option_combinations(options: Options) -> None:
    if message := preset_error(options.preset, options.retarget):
        raise BatchError(message)
    if given := ray_options_given(options):
        raise BatchError(f"{given[0]} goes with --ray (the clips handed to the Ray runner)")
    if options.in_place and not options.retarget:
        raise BatchError("--in-place goes with --retarget")
    if options.focal_length is not None and options.fov is not None:
        raise BatchError("give --focal-length or --fov, not both")
    if options.result:
        given = [name for name in ENGINE_OPTIONS if getattr(options, name) is not None]
        if given:
            raise BatchError(f"--result imports an engine result as it is: --{given[0].replace('_', '-')} "
                             "would change nothing; leave it out (or refine with --keypoints instead)")
    if not options.result and not options.footage:
        raise BatchError("give --footage to refine (its keypoints are detected unless --keypoints gives them), or "
                         "--result OUT.npz to import a result")


def shots(options: Options) -> list[Shot]:
    """The :class:`Shot` list of ``options``, their outputs checked (paths only, no Blender data)."""
    _check_option_combinations(options)
    if options.result:
        results = _existing_files("--result", options.result)
        footage = _videos(options.footage) if options.footage else [None] * len(results)
        if len(footage) != len(results):
            raise BatchError(f"--footage: give one per --result ({len(results)}) or none")
        found = [Shot((video or out).stem, footage=video, result=out) for video, out in zip(footage, results)]
    else:
        footage = _videos(options.footage)
        names = [video.stem for video in footage]
        keypoints = (_paired("--keypoints", options.keypoints, names, KEYPOINT_SUFFIXES) if options.keypoints
                     else [None] * len(names))
        inits = _paired("--init", options.init, names, INIT_SUFFIXES) if options.init else [None] * len(names)
        found = [Shot(video.stem, footage=video, keypoints=kp, init=init)
                 for video, kp, init in zip(footage, keypoints, inits)]
    names = [shot.name for shot in found]
    if len(set(names)) != len(names):
        raise BatchError("two shots have the same name; outputs are named after the footage, rename one")
    several = len(found) > 1
    for shot in found:
        default = (shot.footage or shot.result).with_name(shot.name + ".blend")
        shot.blend = _output("--out", options.out, shot.name, ".blend", several) if options.out else default
        if shot.result is None and shot.keypoints is None:  # kept beside the .blend, reusable with --keypoints
            shot.detections = shot.blend.with_name(shot.blend.stem + DETECTIONS_SUFFIX)
        for kind in EXPORTS:
            value = getattr(options, kind)
            if value == "":  # the option without a path: beside the .blend
                setattr(shot, kind, shot.blend.with_suffix(f".{kind}"))
            elif value is not None:
                setattr(shot, kind, _output(f"--{kind}", value, shot.name, f".{kind}", several))
    _check_outputs(found, options.force)
    return found


# -- checking each shot before any engine work (Blender data) ------------------------------------------

def _footage(context: bpy.types.Context, path: Path) -> refine.Footage:
    """refine.footage_of for a video file (the panel's Video File source), placed at scene frame 1; its
    path absolute, so it does not depend on the folder the batch ran in."""
    settings = SimpleNamespace(footage_source='FILE', footage_path=str(Path(path).absolute()))
    return replace(refine.footage_of(context, settings), start=1)


def _rates_differ(a: float, b: float) -> bool:
    return not math.isclose(a, b, rel_tol=FPS_TOLERANCE)


def _focal_length(options: Options, side: Mapping[str, np.ndarray], size: Sequence[float],
                  keypoints_name: str) -> tuple[float, str]:
    """(focal length px, where it comes from): --focal-length, --fov, the keypoint file's (``side``: its
    stored OBS fields), else the engine's default field of view."""
    if options.focal_length is not None:
        return float(options.focal_length), "--focal-length"
    if options.fov is not None:
        return float(observations.focal_from_fov(np.asarray(size, float), options.fov)), f"--fov {options.fov:g}"
    if "focal_length" in side:
        return float(side["focal_length"].reshape(-1)[0]), keypoints_name
    fov = observations.DEFAULT_FOV_DEG
    return float(observations.focal_from_fov(np.asarray(size, float), fov)), f"default {fov:g} deg field of view"


def _check_detectable(options: Options, footage: refine.Footage, runner: Runner | None) -> None:
    """What can be checked of a shot whose keypoints the job will detect: a detector to run them, and
    --frames inside the footage."""
    try:
        detector_python(runner)
    except RefineError as ex:
        raise RefineError(f"{ex} (or pass --worker PYTHON)") from None
    frames = options.frames
    if frames not in (None, "overlap") and frames.stop > footage.frame_count:
        raise RefineError(f"--frames {frames} is outside {footage.name}'s {footage.frame_count} frames; give "
                          f"START:STOP with STOP <= {footage.frame_count}")


def _refine_plan(context: bpy.types.Context, options: Options, shot: Shot, runner: Runner | None) -> refine.Plan:
    """The plan of a shot to refine: the Refine operator's Request, from the options, checked by the
    contract (keypoints readable, their rate, image size and frames agreeing with the footage's), or
    for keypoints still to detect by :func:`_check_detectable`."""
    footage = _footage(context, shot.footage)
    detect = shot.keypoints is None
    side = {} if detect else keypoint_side_fields(shot.keypoints)
    focal, focal_from = _focal_length(options, side, footage.size, "" if detect else shot.keypoints.name)
    keypoints = Detect(str(shot.footage.absolute())) if detect else str(shot.keypoints)
    request = Request(
        views=[View(keypoints, footage.size, focal, None, footage.frame_count, footage.name,
                    first_number=0 if detect else options.first_frame)],
        fps=footage.fps, mode=options.mode, init=str(shot.init or ""), frames=options.frames,
        smpl_path=str(options.smpl or ""), smoothing=1.0 if options.smoothing is None else options.smoothing,
        keypoint_trust=1.0 if options.keypoint_trust is None else options.keypoint_trust, height=options.height,
        device=options.device or "", iterations=options.iterations, footage_start=footage.start,
        frames_option="--frames")
    if detect:
        _check_detectable(options, footage, runner)
    else:
        prepare_inputs(request)  # the job's own input checks, before any engine runs
    shot.notes.append(f"focal length {focal:.1f} px ({focal_from})")
    return refine.Plan(request, footage, shot.name)


def _import_plan(context: bpy.types.Context, shot: Shot) -> refine.Plan:
    """The plan of a shot importing an existing result: its frames from scene frame 1."""
    res = result.load(shot.result)
    if shot.footage is None:
        size = tuple(int(x) for x in res.image_size) if res.has_camera else (0, 0)
        footage = refine.Footage(shot.name, res.num_frames, res.fps, size, 1, "")
    else:
        footage = _footage(context, shot.footage)
        if _rates_differ(res.fps, footage.fps):
            raise RefineError(f"{shot.result.name} is {res.fps:g} fps but {shot.footage.name} plays at "
                              f"{footage.fps:g} fps: give the footage the result was refined from")
        if res.num_frames > footage.frame_count:
            raise RefineError(f"{shot.result.name} has {res.num_frames} frames but {shot.footage.name} only "
                              f"{footage.frame_count}: give the footage the result was refined from")
    return refine.Plan(None, footage, shot.name)


def _given_result(path: str | Path) -> SimpleNamespace:
    """An engine result given as it is (--result), standing in for a finished Job in
    :func:`refine.import_result`: all its frames from footage frame 0, no warnings, no gaps."""
    frames = FrameRange(0, result.load(path).num_frames)
    return SimpleNamespace(out_path=Path(path), inputs=SimpleNamespace(frames=frames), warnings=[], gaps=[],
                           detections={})


def load_character(path: str) -> bpy.types.Object:
    """Link the character of a .blend into the scene: its armature (the one that deforms a mesh, the
    one with most bones of those) and the meshes it deforms; the rest of the file (a Rigify rig's
    widgets, its metarig) is loaded as data only.  Returns the armature object, its world matrix
    evaluated (a Mixamo FBX import is turned and scaled by its object)."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"--retarget {path}: file not found")
    try:
        with bpy.data.libraries.load(str(path), link=False) as (source, loaded):
            loaded.objects = list(source.objects)
    except OSError as ex:
        raise BatchError(f"--retarget {path.name}: not a .blend file Blender can read ({ex})") from None
    objects = [obj for obj in loaded.objects if obj is not None]
    armatures = [obj for obj in objects if obj.type == 'ARMATURE']
    if not armatures:
        raise BatchError(f"--retarget {path.name}: has no armature object")
    meshes = {arm: retarget.deformed_meshes(arm, objects) for arm in armatures}
    character = max(armatures, key=lambda arm: (bool(meshes[arm]), len(arm.data.bones)))
    parents = []
    while (parent := (parents or [character])[-1].parent) is not None:  # a rig under an Empty keeps it
        parents.append(parent)
    for obj in (*parents, character, *meshes[character]):
        bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.update()  # world matrices are identity until the view layer is evaluated
    return character


def bone_mapping(character: bpy.types.Object, preset: str | None) -> dict[str, str]:
    """The retarget bone mapping onto ``character`` ({SMPL joint: bone}); BatchError when the preset is
    unknown or maps no bone of it."""
    try:
        mapping, _ = retarget.build_mapping(character, preset)
    except ValueError as ex:
        raise BatchError(f"--preset: {ex}") from None
    how = f"the preset '{preset}'" if preset else "automatic mapping"
    if not mapping:
        raise BatchError(f"--retarget {character.name}: {how} maps none of its bones; try another --preset")
    if missing := retarget_presets.unmapped_limbs(mapping):
        raise BatchError(f"--retarget {character.name}: {how} leaves {', '.join(missing)} unmapped "
                         f"({len(mapping)} bone{'s' * (len(mapping) != 1)} mapped); try another --preset")
    return mapping


def _export_functions(options: Options) -> dict[str, Callable[..., Path]]:
    """The export functions the options need (checked before any shot runs)."""
    functions = {}
    for kind in EXPORTS:
        if getattr(options, kind) is not None:
            functions[kind] = getattr(export, f"export_{kind}", None)
            if functions[kind] is None:
                raise BatchError(f"--{kind} is not available: scorehmr_blender.export.export_{kind} is missing")
    return functions


def check_shots(context: bpy.types.Context, options: Options, shots_: list[Shot],
                runner: Runner | None = None) -> dict[str, str]:
    """Check every shot before any engine work: sets each shot's plan; returns {shot name: error} of
    those that cannot run.  ``runner``: the engine's (where keypoints are detected)."""
    failed = {}
    for shot in shots_:
        try:
            shot.plan = (_import_plan(context, shot) if shot.result
                         else _refine_plan(context, options, shot, runner))
        except (RefineError, result.ResultError, BatchError, OSError) as ex:
            failed[shot.name] = str(ex)
    return failed


def check_character(options: Options) -> None:
    """Check --retarget / --preset on the character (loaded into the current scene, which the first shot
    replaces)."""
    if options.retarget:
        bone_mapping(load_character(options.retarget), options.preset)


# -- running -----------------------------------------------------------------------------------------------

def fresh_scene(footage: refine.Footage) -> bpy.types.Scene:
    """An empty scene at the footage's rate, size and frames (scene frame 1 = footage frame 0)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = staging.scene_rate(footage.fps)
    if min(footage.size) > 0:
        scene.render.resolution_x, scene.render.resolution_y = footage.size
    scene.frame_start, scene.frame_end = 1, footage.frame_count
    scene.frame_current = 1
    return scene


def store_paths(blend: Path, absolute: bool = False) -> None:
    """Point the Movie Clips' files (the footage) at their absolute paths, or with ``absolute`` False
    relative to where ``blend`` will be saved (Blender's '//...'), so the saved file finds them from
    any working folder; a file on another drive than ``blend`` (Windows) stays absolute."""
    folder = str(Path(blend).absolute().parent)
    for clip in bpy.data.movieclips:
        path = str(Path(bpy.path.abspath(clip.filepath)).absolute())
        if not absolute:
            try:
                path = bpy.path.relpath(path, start=folder)
            except ValueError:  # another drive: no relative path exists
                pass
        clip.filepath = path


def keep_detections(detected: Path, out: Path, camera: bpy.types.Object) -> None:
    """The job's detections (a keypoint .npz in its job folder) copied to ``out`` (reusable with
    --keypoints), and written as tracking markers of the footage clip behind ``camera``, with the panel
    set to refine from that clip's tracks once they are corrected (Keypoints: Clip Tracks)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(detected, out)
    clips = [bg.clip for bg in camera.data.background_images if bg.clip is not None] if camera else []
    if not clips:
        return
    with np.load(out) as data:
        refine.write_clip_markers(clips[0], data["keypoints"])
    settings = bpy.context.scene.refine_motion
    settings.footage_source, settings.footage_clip, settings.keypoints_source = 'CLIP', clips[0], 'TRACKS'


def _progress_printer(job: Job) -> Callable[[int, int], None]:
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.time() - last[0] > 5 or done == total:
            last[0] = time.time()
            print(f"  {progress_text(job)}", flush=True)

    return progress


def refine_result(plan: refine.Plan, runner: Runner) -> Job:
    """Run the engine on ``plan``'s request; returns the finished :class:`Job` (its ``warnings``: the
    keypoint reader's notes and frames without evidence)."""
    job = Job(plan.request, runner, plan.name)
    print(f"  engine: {runner.describe()}, job folder {job.folder}", flush=True)
    if job.run(on_progress=_progress_printer(job)) != "done":
        raise RefineError(job.error or f"the engine run was {job.state}")
    return job


def _mean_reprojection_error(out_path: Path) -> float | None:
    """The result's mean reprojection error (px), or None when it does not say."""
    with np.load(out_path) as out:
        return float(np.nanmean(out["reprojection_error_px"])) if "reprojection_error_px" in out.files else None


def run_shot(context: bpy.types.Context, options: Options, shot: Shot, runner: Runner | None,
             exporters: dict[str, Callable[..., Path]]) -> tuple[str, list[str]]:
    """Refine (or take the result of) one checked shot in a fresh scene, import it, retarget, export and
    save.  Returns (summary line, warnings)."""
    started = time.time()
    fresh_scene(shot.plan.footage)
    if shot.result is None:
        job = refine_result(shot.plan, runner)
    else:
        job = _given_result(shot.result)
    imported = refine.import_result(context, shot.plan, job)
    if job.detections:
        keep_detections(job.detections[0], shot.detections, imported.camera)
    warnings = [text for level, text in imported.messages if level == 'WARNING']  # the job's warnings too
    error = _mean_reprojection_error(job.out_path)
    exported = imported.armature
    if options.retarget:
        exported = load_character(options.retarget)
        mapping = bone_mapping(exported, options.preset)
        try:
            retarget.retarget(imported.armature, exported, mapping=mapping, in_place=options.in_place)
        except ValueError as ex:
            raise RefineError(f"retarget onto {exported.name}: {ex}") from None
        warnings += retarget.mapping_warnings(exported, mapping)
    written = [shot.blend]
    for kind, write_file in exporters.items():
        path = getattr(shot, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_file(exported, str(path.absolute()), overwrite=options.force)
        except (ValueError, FileExistsError, RuntimeError) as ex:
            raise RefineError(f"{kind.upper()} export: {ex}") from None
        written.append(path)
    shot.blend.parent.mkdir(parents=True, exist_ok=True)
    store_paths(shot.blend, absolute=options.absolute_paths)
    # Absolute: Blender resolves a relative path from $PWD, which a caller's chdir does not update.
    if bpy.ops.wm.save_as_mainfile(filepath=str(shot.blend.absolute())) != {'FINISHED'}:
        raise RefineError(f"could not save {shot.blend}")
    numbers = [f"{imported.frames.size} frames", *shot.notes]
    numbers += [f"detections {shot.detections}"] if job.detections else []
    numbers += [f"reprojection error {error:.1f} px"] if error is not None else []
    if shot.plan.camera_to_world is None:  # else keyed in the calibrated cameras' world
        numbers.append("on the engine's floor (world frame)" if imported.world else "on a floor guessed from the body")
    line = f"{', '.join(numbers)}, {time.time() - started:.0f} s -> {', '.join(str(p) for p in written)}"
    return line, warnings


def _runner(options: Options, shots_: list[Shot]) -> Runner | None:
    """The engine's runner when any shot refines (None when all import results)."""
    if all(shot.result is not None for shot in shots_):
        return None
    return _engine_runner(options)


def _engine_runner(options: Options) -> Runner:
    """The Python that runs the engine: --worker, else this one when torch imports, else the worker environment."""
    try:
        return choose_runner("WORKER" if options.worker else "AUTO", options.worker or "")
    except RefineError as ex:
        raise BatchError(f"{ex} (or pass --worker PYTHON)") from None


def run(options: Options) -> int:
    """The batch: check everything, then refine / import shot after shot.  Prints a line per shot and a
    summary (with each shot's warnings); returns the exit code (1 if any shot failed).  With --ray (or
    --ray-address) the clips go to the Ray runner instead (:func:`run_on_ray`)."""
    if options.ray or options.ray_address:
        return run_on_ray(options)
    found = shots(options)
    exporters = _export_functions(options)
    context = bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)
    check_character(options)
    runner = _runner(options, found)
    failed = check_shots(context, options, found, runner)
    count = len(found)
    for number, shot in enumerate(found, 1):
        if shot.name in failed:
            print(f"[{number}/{count}] {shot.name}: FAILED: {failed[shot.name]}", file=sys.stderr, flush=True)
    if failed:
        print(f"summary: 0 of {count} shots {'imported' if options.result else 'refined'}; failed: {', '.join(failed)} "
              "(checked before any engine work: nothing was refined)", flush=True)
        return 1

    warnings = {}
    for number, shot in enumerate(found, 1):
        what = (f"importing {shot.result}" if shot.result else
                f"refining {shot.footage} with {shot.keypoints or 'keypoints detected in it (BlazePose)'}")
        print(f"[{number}/{count}] {shot.name}: {what}", flush=True)
        try:
            line, warnings[shot.name] = run_shot(context, options, shot, runner, exporters)
            print(f"[{number}/{count}] {shot.name}: {line}", flush=True)
        except (BatchError, RefineError, result.ResultError, RuntimeError, OSError) as ex:
            failed[shot.name] = str(ex)
            print(f"[{number}/{count}] {shot.name}: FAILED: {ex}", file=sys.stderr, flush=True)
    done = "imported" if options.result else "refined"
    print(f"summary: {count - len(failed)} of {count} shots {done}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    for name, lines in warnings.items():
        for line in lines:
            print(f"  {name}: warning: {line}", flush=True)
    return 1 if failed else 0


# -- handing the clips to the Ray runner (--ray) ------------------------------------------------------------
# ``python -m backend batch`` runs in the worker Python (torch and ray are there, never in the add-on): it
# refines every clip as a Ray task and exports it with this very batch's --result import (build.py in a
# subprocess of this Blender), so the .blend / BVH / FBX come from one code path either way.

# build.py options the runner has no counterpart for (it refines each clip whole, with the keypoint file's
# focal length else its default field of view, and keeps finished clips instead of overwriting them).
NOT_WITH_RAY = ("result", "init", "frames", "focal_length", "fov", "smoothing", "keypoint_trust", "height",
                "in_place", "absolute_paths", "force")


def _keypoints_dir(given: Sequence[str] | None) -> Path | None:
    """The one folder --ray looks each clip's keypoints up in by name (None: detected), or BatchError."""
    if not given:
        return None
    folder = Path(given[0])
    if len(given) != 1 or not folder.is_dir() or any(folder.glob("*_keypoints.json")):
        raise BatchError("--ray finds each clip's keypoints by its name in one folder: give --keypoints FOLDER "
                         "holding <clip>.npz/.json/.npy, <clip>.keypoints.npz or an OpenPose folder <clip>/")
    return folder


def check_ray_options(options: Options) -> None:
    """What --ray refuses, before anything runs: build.py options the runner lacks, outputs that are not
    the runner's OUT/<clip>/ layout."""
    if given := [name for name in NOT_WITH_RAY if getattr(options, name) not in (None, False)]:
        raise BatchError(f"--{given[0].replace('_', '-')} is not available with --ray (python -m backend batch has "
                         "no such option): leave it out, or refine without --ray")
    if options.first_frame != "auto":
        raise BatchError("--first-frame is not available with --ray: leave it out, or refine without --ray")
    if message := preset_error(options.preset, options.retarget):
        raise BatchError(message)
    if not options.footage:
        raise BatchError("--ray refines footage: give --footage VIDEOS_OR_FOLDERS")
    if not options.out or Path(options.out).suffix.lower() == ".blend" or Path(options.out).is_file():
        raise BatchError("--ray writes OUT/<clip>/ for every clip and OUT/summary.json: give --out FOLDER")
    for kind in EXPORTS:
        if getattr(options, kind):
            raise BatchError(f"--ray exports into OUT/<clip>/<clip>.{kind}: give --{kind} without a path")


def _absolute(path: str | None) -> str | None:
    return str(Path(path).absolute()) if path else path


def ray_command(options: Options, python: str) -> list[str]:
    """``python -m backend batch`` for the clips of ``options`` (checked by :func:`check_ray_options`): every
    path absolute (it runs in the engine's folder), a .blend per clip (as build.py always writes) and the
    exports made by this Blender (or Python with bpy)."""
    footage = [str(video.absolute()) for video in _videos(options.footage)]
    keypoints = _keypoints_dir(options.keypoints)
    handed = replace(options, smpl=_absolute(options.smpl), retarget=_absolute(options.retarget))
    command = [python, "-m", "backend", "batch", *footage, "--out", _absolute(options.out), "--blend"]
    command += ["--keypoints-dir", str(keypoints.absolute())] if keypoints else []
    command += [f"--{kind}" for kind in EXPORTS if getattr(options, kind) is not None]
    return command + runner_arguments(handed) + ["--blender", bpy.app.binary_path or sys.executable]


def run_on_ray(options: Options) -> int:
    """Hand the clips to the Ray runner in the engine's Python (the one without --ray would refine in: this
    one when torch imports here) and wait for it; its progress bar and report show here.  Returns its exit
    code (0 all done or skipped, 1 any failed, 2 bad arguments, 130 interrupted)."""
    check_ray_options(options)
    runner = _engine_runner(options)
    command = ray_command(options, runner.python if runner.kind == "worker" else sys.executable)
    root = backend_root()
    print(f"handing {len(_videos(options.footage))} clip(s) to the Ray runner: {' '.join(command)}", flush=True)
    process = subprocess.Popen(command, cwd=root, env=worker_environment(root))
    try:
        return process.wait()
    except KeyboardInterrupt:  # the runner got it too: it cancels its tasks and writes the summary first
        return process.wait()
