# SPDX-License-Identifier: GPL-3.0-or-later
"""The Refine operator's Blender side: the scene's settings -> an engine request
(:func:`plan`), and the engine's OUT.npz -> armature, body, action and camera
(:func:`import_result`).  Used by the operator and by build.py's batch mode.

Frames: footage frame i (0-based) sits at scene frame ``start + i``, where
``start`` is the Movie Clip's Start Frame, or the scene's start frame for a video
file (``backend.contract.frames``: ``from_scene`` / ``to_scene``).  A keypoint
file's frame numbers are footage frame numbers: an OpenPose folder numbered from 1
starts at scene frame ``start + 1``.  The frame range is in scene frames (clamped
to the footage).  Everything is checked before the engine runs (by the contract,
in ``runner.job.prepare_inputs``); nothing in bpy.data changes until
:func:`import_result`, which also marks frames without evidence in the timeline.

Multi-View: the main footage is view 0, the Views list views 1..V-1, all filming
the same frames (frame i of every view is the same moment).  When every view has
a Blender camera the views are calibrated: world -> OpenCV camera from each
camera's transform, intrinsics from its lens, and view 0's refined body is keyed
in that world; otherwise view 0's body comes in front of a new footage camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bpy
import numpy as np

from backend.contract.frames import from_scene, to_scene
from backend.contract.layout import COCO17_NAMES

from . import convert
from .runner.engine import RefineError
from .runner.job import Detect, Request, View, naming_view, scene_frames_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from backend.contract.frames import FrameRange

    from . import importer
    from .properties import RefineMotionSettings, ShotInputs
    from .runner.job import Job

GAP_MARKER = "no keypoints"  # timeline markers at frames with little or no evidence: "<shot>: no keypoints ..."
ENGINE_MODES = {'SINGLE_FRAME': "frame", 'VIDEO': "video", 'MULTI_VIEW': "multiview"}
DEVICES = {'AUTO': "", 'CPU': "cpu", 'CUDA': "cuda"}
TIMINGS = {'SET_SCENE': 'SCENE_RATE', 'RETIME': 'RETIME'}  # the panel's Frame Rate -> importer timing
_REENCODE = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4"
# A detection becomes a tracking marker from this confidence on (BlazePose's own drawing threshold on its
# visibility); a marker reads back as a sure point (confidence 1), a point below it as not detected.
MARKER_MIN_CONFIDENCE = 0.5


@dataclass
class Footage:
    name: str
    frame_count: int
    fps: float
    size: tuple         # (width, height) px
    start: int          # scene frame of footage frame 0
    path: str           # file path, for the camera's background
    clip: object = None  # the Movie Clip datablock, when the footage is one


@dataclass
class Plan:
    request: Request
    footage: Footage
    name: str           # of the new armature and action
    messages: list = field(default_factory=list)  # (report level, text)
    camera_to_world: object = None  # calibrated multi-view: view 0's camera (4, 4), where the motion is keyed
    timing: str = 'SCENE_RATE'  # importer.TIMINGS: the scene set to the footage's rate, or 'RETIME' (keep the scene's)
    marker_clips: dict = field(default_factory=dict)  # view index -> Movie Clip that receives its detections


def footage_of(context: bpy.types.Context, settings: RefineMotionSettings) -> Footage:
    """The footage's frame count, rate and size, from the Movie Clip or by loading the
    video file as a clip for a moment (removed again)."""
    scene = context.scene
    if settings.footage_source == 'CLIP':
        clip = settings.footage_clip
        if clip is None:
            raise RefineError("No footage: choose a Movie Clip (or switch Footage to Video File) "
                              "in the Refine Motion panel")
        return _clip_footage(clip, scene, clip.frame_start, clip.filepath, keep=clip)

    path = bpy.path.abspath(settings.footage_path.strip()) if settings.footage_path.strip() else ""
    if not path:
        raise RefineError("No footage: choose a video file (or a Movie Clip) in the Refine Motion panel")
    if not Path(path).is_file():
        raise RefineError(f"Footage not found: {path}; check the Video File path")
    before = set(bpy.data.movieclips)
    try:
        clip = bpy.data.movieclips.load(path, check_existing=True)
    except RuntimeError as ex:
        raise RefineError(f"Blender cannot read {Path(path).name} as a video ({ex}); {_REENCODE}") from None
    try:
        return _clip_footage(clip, scene, scene.frame_start, path, keep=None)
    finally:
        if clip not in before:
            bpy.data.movieclips.remove(clip)


def _clip_footage(clip: bpy.types.MovieClip, scene: bpy.types.Scene, start: int, path: str, keep: bool) -> Footage:
    width, height = clip.size
    if clip.frame_duration < 1 or width < 1 or height < 1:
        raise RefineError(f"Blender cannot read {clip.name} as a video (no frames); {_REENCODE}")
    # Image sequences have no rate of their own: they play at the scene's.
    fps = clip.fps if clip.fps > 0 else scene.render.fps / scene.render.fps_base
    return Footage(Path(bpy.path.abspath(path)).stem or clip.name, clip.frame_duration, float(fps),
                   (width, height), start, path, keep)


def _normalised(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").replace(".", " ").split())


def clip_keypoints(clip: bpy.types.MovieClip) -> np.ndarray:
    """(F, 17, 3) float32 [x_px, y_px, confidence] from the clip's tracks named after COCO
    joints (any tracking object); a frame without an enabled marker has confidence 0.

    Markers sit at clip frames 1..F, in normalised coordinates with y up."""
    import numpy as np

    tracks = _coco_tracks(clip)
    if not tracks:
        raise RefineError(f"{clip.name} has no tracks named after COCO joints (nose, left_shoulder, "
                          "right_knee, ...): rename the tracks, or use a keypoint file")
    frames = clip.frame_duration
    width, height = clip.size
    kp = np.zeros((frames, len(COCO17_NAMES), 3), dtype=np.float32)
    for j, name in enumerate(COCO17_NAMES):
        for marker in tracks[name].markers if name in tracks else ():
            i = marker.frame - 1
            if not marker.mute and 0 <= i < frames:
                kp[i, j] = (marker.co[0] * width, (1.0 - marker.co[1]) * height, 1.0)
    return kp


def _coco_tracks(clip: bpy.types.MovieClip) -> dict[str, bpy.types.MovieTrackingTrack]:
    """{COCO joint name: the clip's track of that (normalised) name}, from any tracking object."""
    tracks = {}
    for obj in clip.tracking.objects:
        for track in obj.tracks:
            name = _normalised(track.name)
            if name in COCO17_NAMES:
                if name in tracks:
                    raise RefineError(f"Two tracks of {clip.name} are named '{name}': rename one")
                tracks[name] = track
    return tracks


def write_clip_markers(clip: bpy.types.MovieClip, keypoints: np.ndarray) -> None:
    """The inverse of :func:`clip_keypoints`: keypoints (F, 17, 3) [x_px, y_px, confidence] of footage
    frames 0..F-1 as markers of the clip's tracks named after COCO joints (made where missing, their old
    markers replaced); a point below MARKER_MIN_CONFIDENCE gets no marker (a muted one where Blender
    keeps a track's last marker)."""
    tracks = _coco_tracks(clip)
    width, height = clip.size
    for j, name in enumerate(COCO17_NAMES):
        track = tracks.get(name) or clip.tracking.tracks.new(name=name, frame=1)
        seen = np.flatnonzero(keypoints[:, j, 2] >= MARKER_MIN_CONFIDENCE)
        for i in seen:
            x, y = keypoints[i, j, :2]
            marker = track.markers.insert_frame(int(i) + 1, co=(float(x) / width, 1.0 - float(y) / height))
            marker.mute = False
        keep = set((seen + 1).tolist())
        for frame in [marker.frame for marker in track.markers if marker.frame not in keep]:
            track.markers.delete_frame(frame)
        for marker in track.markers:
            marker.mute = marker.frame not in keep


def _frame_range(scene: bpy.types.Scene, settings: RefineMotionSettings,
                 footage: Footage) -> tuple[FrameRange | None, str | None]:
    """(FrameRange of footage frames to refine, or None for all of them; a message when the range was
    clamped)."""
    start, count = footage.start, footage.frame_count
    end = start + count - 1
    if settings.mode == 'SINGLE_FRAME':
        frame = scene.frame_current
        if not start <= frame <= end:
            raise RefineError(f"Frame {frame} is outside the footage (scene frames {start}-{end}): "
                              "go to a frame of the footage")
        return from_scene(frame, frame, start), None
    if settings.use_footage_range:
        return None, None
    first, last = max(settings.frame_start, start), min(settings.frame_end, end)
    if first > last:
        raise RefineError(f"Frames {settings.frame_start}-{settings.frame_end} miss the footage "
                          f"(scene frames {start}-{end}): set Frame Start/End inside it")
    clamped = (first, last) != (settings.frame_start, settings.frame_end)
    note = (f"Frame range {settings.frame_start}-{settings.frame_end} clamped to the footage: refining "
            f"frames {first}-{last}") if clamped else None
    whole = (first, last) == (start, end)
    return None if whole else from_scene(first, last, start), note


def _intrinsics(settings: RefineMotionSettings, footage: Footage) -> tuple[float | None, tuple[float, float] | None]:
    """(focal_length px or None, principal point (cx, cy) px OpenCV or None)."""
    if settings.intrinsics == 'MANUAL':
        return settings.focal_length, None
    if settings.intrinsics == 'CLIP':
        if footage.clip is None:
            raise RefineError("Camera 'Clip Camera' needs the footage as a Movie Clip: "
                              "switch Footage to Movie Clip, or Camera to Estimate")
        camera = footage.clip.tracking.camera
        cx, cy = camera.principal_point_pixels
        return camera.focal_length_pixels, (cx, footage.size[1] - cy)  # Blender's y is up
    return None, None


def _existing_file(path: str, what: str, fix: str) -> str:
    path = bpy.path.abspath(path.strip())
    if not Path(path).exists():
        raise RefineError(f"{what} not found: {path}; {fix}")
    return path


def _keypoints(inputs: ShotInputs, footage: Footage) -> str | Detect | np.ndarray:
    """A view's keypoints: a file or OpenPose folder path, or the clip's tracked markers (array)."""
    if inputs.keypoints_source == 'DETECT':
        if inputs.detect_markers and footage.clip is None:
            raise RefineError("Write Tracking Markers needs the footage as a Movie Clip: switch Footage to Movie "
                              "Clip (or turn the option off)")
        return Detect(_existing_file(footage.path, "Footage", "detection needs the video file on disk"))
    if inputs.keypoints_source == 'TRACKS':
        if footage.clip is None:
            raise RefineError("Keypoints from Clip Tracks need the footage as a Movie Clip: "
                              "switch Footage to Movie Clip")
        return clip_keypoints(footage.clip)
    if not inputs.keypoints_path.strip():
        raise RefineError("No keypoints: set Keypoints to Detect from Footage to find the person in the footage, "
                          "or choose a keypoint file or OpenPose folder")
    return _existing_file(inputs.keypoints_path, "Keypoint file",
                          "check the Keypoint File path (a file, or an OpenPose folder)")


def _view(settings: RefineMotionSettings, inputs: ShotInputs, footage: Footage,
          camera: bpy.types.Object | None) -> View:
    """One camera's View: its keypoints, and intrinsics from its Blender camera's lens or the
    panel's Camera setting."""
    keypoints = _keypoints(inputs, footage)
    if camera is None:
        focal, principal = _intrinsics(settings, footage)
    elif camera.data.type != 'PERSP':
        raise RefineError(f"Blender camera '{camera.name}' is {camera.data.type.lower()}: "
                          "calibrated views need perspective cameras")
    else:
        focal, principal = convert.camera_intrinsics(camera.data, footage.size)
    first = "auto" if inputs.keypoints_first_auto else inputs.keypoints_first_number
    return View(keypoints, footage.size, focal, principal, footage.frame_count, footage.name,
                first_number=first if inputs.keypoints_source == 'FILE' else 0)


def _views(context: bpy.types.Context, settings: RefineMotionSettings, footage: Footage
           ) -> list[tuple[View, bpy.types.Object | None, bpy.types.MovieClip | None]]:
    """(View, Blender camera or None, Movie Clip for its detections' markers or None) per camera: the main
    shot, then in Multi-View the Views list, whose footage must have the main footage's frames.  Errors
    name the view."""
    if settings.mode != 'MULTI_VIEW':
        return [(_view(settings, settings, footage, None), None, _marker_clip(settings, footage))]
    if not settings.views:
        raise RefineError("Multi-View needs the other cameras: add each one's footage and keypoints to the "
                          "Views list (+)")
    views = []
    for index, inputs in enumerate((settings, *settings.views)):
        with naming_view(index):
            shot = footage if index == 0 else footage_of(context, inputs)
            if shot.frame_count != footage.frame_count:
                raise RefineError(f"{shot.name} has {shot.frame_count} frames but the main footage has "
                                  f"{footage.frame_count}: give every view the same frames (trim the clips to "
                                  "the same take)")
            views.append((_view(settings, inputs, shot, inputs.camera_object), inputs.camera_object,
                          _marker_clip(inputs, shot)))
    return views


def _marker_clip(inputs: ShotInputs, footage: Footage) -> bpy.types.MovieClip | None:
    """The Movie Clip that receives a view's detections as tracking markers, or None."""
    detecting = inputs.keypoints_source == 'DETECT' and inputs.detect_markers
    return footage.clip if detecting else None


def _calibration(cameras: Sequence[bpy.types.Object | None]) -> np.ndarray | None:
    """Each view's OpenCV camera -> world transform (V, 4, 4) from its Blender camera, or None when
    no view has one."""
    missing = [str(i) for i, camera in enumerate(cameras) if camera is None]
    if len(missing) == len(cameras):
        return None
    if missing:
        views = f"View {missing[0]} has" if len(missing) == 1 else f"Views {', '.join(missing)} have"
        raise RefineError(f"{views} no Blender camera but other views do: give every view a Blender camera "
                          "(calibrated) or none (uncalibrated)")
    for i, camera in enumerate(cameras):
        if camera in cameras[:i]:
            raise RefineError(f"Views {cameras.index(camera)} and {i} share the Blender camera '{camera.name}': "
                              "give each view its own camera")
    return np.stack([convert.opencv_camera_to_world(camera.matrix_world) for camera in cameras])


def _world_to_cameras(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cam_R (V, 3, 3), cam_t (V, 3)) world -> camera: the inverses of ``poses`` (V, 4, 4)."""
    R = poses[:, :3, :3].transpose(0, 2, 1)
    return R, -(R @ poses[:, :3, 3, None])[..., 0]


def plan(context: bpy.types.Context, settings: RefineMotionSettings, *, smpl_file: str = "",
         iterations: int | None = None) -> Plan:
    """Check the settings (``scene.refine_motion``) and make the engine request.

    smpl_file: the preferences' SMPL model file ('' = the free body model).
    Raises RefineError naming the problem and the fix."""
    scene = context.scene
    footage = footage_of(context, settings)
    views = _views(context, settings, footage)
    poses = _calibration([camera for _, camera, _ in views]) if len(views) > 1 else None

    smpl_path = (_existing_file(smpl_file, "SMPL model file", "fix or clear the path in the add-on preferences")
                 if smpl_file.strip() else "")
    init = (_existing_file(settings.init_path, "Initial SMPL file", "check the Initial SMPL path")
            if settings.init_path.strip() else "")
    if init and len(views) > 1:
        raise RefineError("Initial SMPL is for one camera: clear it for Multi-View (the built-in regressor "
                          "starts every view)")

    frames, note = _frame_range(scene, settings, footage)
    request = Request(
        views=[view for view, _, _ in views], fps=footage.fps, mode=ENGINE_MODES[settings.mode],
        cameras=_world_to_cameras(poses) if poses is not None else None, init=init, frames=frames,
        smpl_path=smpl_path, smoothing=settings.smoothing,
        keypoint_trust=settings.keypoint_trust, device=DEVICES[settings.device],
        height=settings.height or None,
        iterations=iterations or None, footage_start=footage.start,
    )
    name = footage.clip.name if footage.clip is not None else footage.name
    messages = [('INFO', note)] if note else []
    if len(views) > 1:
        messages.append(('INFO', "Multi-View (calibrated): the body is keyed in the world of the views' Blender "
                                 "cameras" if poses is not None else
                                 "Multi-View (uncalibrated): view 0's body, in front of a new camera for the main "
                                 "footage"))
    return Plan(request, footage, Path(name).stem or name, messages=messages, timing=TIMINGS[settings.footage_rate],
                camera_to_world=poses[0] if poses is not None else None,
                marker_clips={i: clip for i, (_, _, clip) in enumerate(views) if clip is not None})


def active_rig(context: bpy.types.Context) -> bpy.types.Object:
    """The active object as the armature Refine keys onto ('Onto Active Rig'); RefineError naming the fix."""
    from . import armature

    obj = context.active_object
    if not armature.is_smpl_rig(obj):
        what = f"'{obj.name}' is not a Refine Motion armature" if obj is not None else "no object is active"
        raise RefineError(f"Onto Active Rig: {what}; select the rig of an earlier import or refinement, or turn "
                          "Onto Active Rig off")
    return obj


def import_result(context: bpy.types.Context, plan: Plan, job: Job,
                  onto_rig: bpy.types.Object | None = None) -> importer.Imported:
    """Import the OUT.npz of the finished ``job`` for ``plan``: a new armature, body, action and
    footage camera (none in calibrated multi-view), keyed from the first refined frame, or the action
    onto ``onto_rig`` (an earlier import's armature); the job's frames with little or no evidence get
    timeline markers.  Nothing is left behind on failure (see importer)."""
    from . import importer

    footage = plan.footage
    placed = plan.camera_to_world is not None  # the user's cameras are there: no new one
    scene = context.scene
    ratio = footage.fps / (scene.render.fps / scene.render.fps_base) if plan.timing == 'RETIME' else 1.0
    first_frame = footage.start + job.inputs.frames.start / ratio  # footage frame n at start + n / ratio
    single = job.inputs.frames.count == 1  # one frame keyed: the scene keeps its range (not 5-5)
    imported = importer.import_result(
        context, str(job.out_path), shot_name=plan.name, frame_start=first_frame, onto_rig=onto_rig,
        add_camera=not placed, footage_path="" if placed else footage.path, update_scene_duration=not single,
        set_resolution=True, set_camera=True, camera_to_world=plan.camera_to_world, timing=plan.timing)
    if imported.camera is not None:
        # The importer starts the clip at the first refined frame; footage frame 0 sits at footage.start.
        for background in imported.camera.data.background_images:
            if background.clip is not None:
                background.clip.frame_start = footage.start
                if plan.timing == 'RETIME':
                    importer.retime_footage(background.clip, ratio)
    imported.messages[:0] = plan.messages + [('WARNING', warning) for warning in job.warnings]
    mark_gaps(context.scene, imported.armature.name, job.gaps, footage.start)
    imported.messages += write_detection_markers(plan, job)
    return imported


def write_detection_markers(plan: Plan, job: Job) -> list[tuple[str, str]]:
    """The job's detections as tracking markers of the clips the plan names (Write Tracking Markers);
    returns the report lines saying where they went."""
    messages = []
    for index, clip in plan.marker_clips.items():
        with np.load(job.detections[index]) as detections:
            write_clip_markers(clip, detections["keypoints"])
        messages.append(('INFO', f"Detections written as tracking markers of {clip.name}: correct them in the "
                                 "Movie Clip Editor, then refine with Keypoints set to Clip Tracks"))
    return messages


def mark_gaps(scene: bpy.types.Scene, name: str, gaps: Iterable[FrameRange], footage_start: int) -> None:
    """A timeline marker '<name>: no keypoints <a>-<b>' at the first scene frame of each run of
    footage frames ``gaps`` (FrameRanges) with little or no evidence."""
    for gap in gaps:
        first, _ = to_scene(gap, footage_start)
        scene.timeline_markers.new(f"{name}: {GAP_MARKER} {scene_frames_text(gap, footage_start)}", frame=first)
