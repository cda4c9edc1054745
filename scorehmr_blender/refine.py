# SPDX-License-Identifier: GPL-3.0-or-later
"""The Refine operator's Blender side: the scene's settings -> an engine request
(:func:`plan`), and the engine's OUT.npz -> armature, body, action and camera
(:func:`import_result`).  Used by the operator and by build.py's batch mode.

Frames: footage frame i (0-based) sits at scene frame ``start + i``, where
``start`` is the Movie Clip's Start Frame, or the scene's start frame for a video
file.  The frame range is in those scene frames (clamped to the footage).
Everything is checked before the engine runs; nothing in bpy.data changes
until :func:`import_result`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import bpy

from .engine_runner import RefineError, Request

# COCO-17 keypoint order (as backend/body/smpl_layout.py; the add-on reads it without the engine).
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
ENGINE_MODES = {'SINGLE_FRAME': "frame", 'VIDEO': "video"}
DEVICES = {'AUTO': "", 'CPU': "cpu", 'CUDA': "cuda"}
# The panel's smoothing / keypoint trust value that means the engine's default weight (scale 1).
DEFAULT_FACTOR = 0.5
_REENCODE = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4"


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
    first_frame: int    # scene frame of the first refined frame
    messages: list = field(default_factory=list)  # (report level, text)


def footage_of(context, settings):
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


def _clip_footage(clip, scene, start, path, keep):
    width, height = clip.size
    if clip.frame_duration < 1 or width < 1 or height < 1:
        raise RefineError(f"Blender cannot read {clip.name} as a video (no frames); {_REENCODE}")
    # Image sequences have no rate of their own: they play at the scene's.
    fps = clip.fps if clip.fps > 0 else scene.render.fps / scene.render.fps_base
    return Footage(Path(bpy.path.abspath(path)).stem or clip.name, clip.frame_duration, float(fps),
                   (width, height), start, path, keep)


def _normalised(name):
    return "_".join(name.strip().lower().replace("-", " ").replace(".", " ").split())


def clip_keypoints(clip):
    """(F, 17, 3) float32 [x_px, y_px, confidence] from the clip's tracks named after COCO
    joints (any tracking object); a frame without an enabled marker has confidence 0.

    Markers sit at clip frames 1..F, in normalised coordinates with y up."""
    import numpy as np

    tracks = {}
    for obj in clip.tracking.objects:
        for track in obj.tracks:
            name = _normalised(track.name)
            if name in COCO17_NAMES:
                if name in tracks:
                    raise RefineError(f"Two tracks of {clip.name} are named '{name}': rename one")
                tracks[name] = track
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


def _frame_range(scene, settings, footage):
    """(first, last) footage frames to refine, and a message when the range was clamped."""
    start, count = footage.start, footage.frame_count
    end = start + count - 1
    if settings.mode == 'SINGLE_FRAME':
        frame = scene.frame_current
        if not start <= frame <= end:
            raise RefineError(f"Frame {frame} is outside the footage (scene frames {start}-{end}): "
                              "go to a frame of the footage")
        return (frame - start,) * 2, None
    first, last = max(settings.frame_start, start), min(settings.frame_end, end)
    if first > last:
        raise RefineError(f"Frames {settings.frame_start}-{settings.frame_end} miss the footage "
                          f"(scene frames {start}-{end}): set Frame Start/End inside it")
    clamped = (first, last) != (settings.frame_start, settings.frame_end)
    note = (f"Frame range {settings.frame_start}-{settings.frame_end} clamped to the footage: refining "
            f"frames {first}-{last}") if clamped else None
    return (first - start, last - start), note


def _intrinsics(settings, footage):
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


def _existing_file(path, what, fix):
    path = bpy.path.abspath(path.strip())
    if not Path(path).exists():
        raise RefineError(f"{what} not found: {path}; {fix}")
    return path


def plan(context, settings, *, smpl_file="", iterations=None):
    """Check the settings (``scene.refine_motion``) and make the engine request.

    smpl_file: the preferences' SMPL model file ('' = the free body model).
    Raises RefineError naming the problem and the fix."""
    if settings.mode not in ENGINE_MODES:
        raise RefineError("Multi-View is not supported in the panel yet: run `python -m backend refine "
                          "--mode multiview` on your views, then File > Import > Refined Motion")
    scene = context.scene
    footage = footage_of(context, settings)

    if settings.keypoints_source == 'TRACKS':
        if footage.clip is None:
            raise RefineError("Keypoints from Clip Tracks need the footage as a Movie Clip: "
                              "switch Footage to Movie Clip")
        keypoints = clip_keypoints(footage.clip)
    elif not settings.keypoints_path.strip():
        raise RefineError("No keypoints: choose a keypoint file or OpenPose folder in the Refine Motion panel")
    else:
        keypoints = _existing_file(settings.keypoints_path, "Keypoint file",
                                   "check the Keypoint File path (a file, or an OpenPose folder)")

    smpl_path = (_existing_file(smpl_file, "SMPL model file", "fix or clear the path in the add-on preferences")
                 if smpl_file.strip() else "")
    init = (_existing_file(settings.init_path, "Initial SMPL file", "check the Initial SMPL path")
            if settings.init_path.strip() else "")

    frames, note = _frame_range(scene, settings, footage)
    focal, principal = _intrinsics(settings, footage)
    request = Request(
        keypoints=keypoints, image_size=footage.size, fps=footage.fps, mode=ENGINE_MODES[settings.mode],
        focal_length=focal, principal_point=principal, init=init, frames=frames,
        footage_frames=footage.frame_count, partial=frames != (0, footage.frame_count - 1), smpl_path=smpl_path,
        smoothing=settings.smoothing / DEFAULT_FACTOR, keypoint_trust=settings.keypoint_trust / DEFAULT_FACTOR,
        device=DEVICES[settings.device], iterations=iterations or None,
    )
    name = footage.clip.name if footage.clip is not None else footage.name
    return Plan(request, footage, Path(name).stem or name, footage.start + frames[0],
                [('INFO', note)] if note else [])


def import_result(context, plan, out_path):
    """Import the engine's OUT.npz for ``plan``: a new armature, body, action and footage camera,
    keyed from the first refined frame.  Nothing is left behind on failure (see importer)."""
    from . import importer

    footage = plan.footage
    imported = importer.import_result(
        context, str(out_path), shot_name=plan.name, frame_start=plan.first_frame, add_camera=True,
        footage_path=footage.path, update_scene_duration=True)
    if imported.camera is not None:
        # The importer starts the clip at the first refined frame; footage frame 0 sits at footage.start.
        for background in imported.camera.data.background_images:
            if background.clip is not None:
                background.clip.frame_start = footage.start
    imported.messages[:0] = plan.messages
    return imported
