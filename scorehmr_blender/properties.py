# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene refinement settings, stored as ``scene.refine_motion``."""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

MODE_ITEMS = (
    ('SINGLE_FRAME', "Single Frame", "Refine the pose of the current frame only"),
    ('VIDEO', "Video", "Refine a frame range of one camera, with temporal smoothing"),
    ('MULTI_VIEW', "Multi-View", ("Refine a frame range filmed by several cameras at once (the footage above is "
                                  "view 0, the Views list the others); calibrated when every view has a Blender "
                                  "camera")),
)
FOOTAGE_ITEMS = (
    ('FILE', "Video File", "A video file on disk"),
    ('CLIP', "Movie Clip", "A Movie Clip loaded in this file (its Start Frame places the footage in the scene)"),
)
KEYPOINT_ITEMS = (
    ('FILE', "File", ("2D keypoints from a detector: COCO-17 .npz/.npy/.json (COCO results or per-frame "
                      "lists) or an OpenPose --write_json folder (BODY_25 or COCO-18)")),
    ('TRACKS', "Clip Tracks", ("Tracking markers of the Movie Clip named after COCO joints (nose, left_eye, "
                               "right_eye, left_ear, right_ear, left_shoulder, ..., right_ankle); "
                               "frames without a marker count as not detected")),
    ('DETECT', "Detect from Footage", ("Find the person in the footage with the built-in detector (MediaPipe "
                                       "BlazePose) as the first stage of the refinement")),
)
INTRINSICS_ITEMS = (
    ('ESTIMATE', "Estimate", "Assume a 55 degree field of view (a typical phone or camcorder lens)"),
    ('CLIP', "Clip Camera",
     "The Movie Clip's tracking camera (focal length, optical center), e.g. after a camera solve"),
    ('MANUAL', "Focal Length", "A focal length in pixels"),
)
DEVICE_ITEMS = (
    ('AUTO', "Automatic", "The CUDA GPU when torch sees one, else the CPU"),
    ('CPU', "CPU", "Always the CPU"),
    ('CUDA', "CUDA GPU", "The CUDA GPU (fails when torch sees none)"),
)

SCALE_MAX = 2.0  # Smoothing and Keypoint Trust: 0 .. twice the engine's default weight, as build.py takes them


def _clamp_frame_end(self: "RefineMotionSettings", _context: bpy.types.Context) -> None:
    self.use_footage_range = False  # a range was chosen
    if self.frame_end < self.frame_start:
        self.frame_end = self.frame_start


def _clamp_frame_start(self: "RefineMotionSettings", _context: bpy.types.Context) -> None:
    self.use_footage_range = False
    if self.frame_start > self.frame_end:
        self.frame_start = self.frame_end


def _is_camera(_owner: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    return obj.type == 'CAMERA'


class ShotInputs:
    """One camera's footage, keypoints and optional Blender camera: the main shot's (view 0)
    and each entry of the Views list (multi-view)."""
    footage_source: EnumProperty(
        name="Footage",
        description="Where the footage comes from (its frame count, rate and size)",
        items=FOOTAGE_ITEMS,
        default='FILE',
    )
    footage_path: StringProperty(
        name="Video File",
        description="The footage the keypoints were detected on; its first frame goes to the scene's start frame",
        subtype='FILE_PATH',
    )
    footage_clip: PointerProperty(
        name="Movie Clip",
        description="The footage as a Movie Clip",
        type=bpy.types.MovieClip,
    )
    keypoints_source: EnumProperty(
        name="Keypoints",
        description="Where the 2D keypoints come from",
        items=KEYPOINT_ITEMS,
        default='FILE',
    )
    keypoints_path: StringProperty(
        name="Keypoint File",
        description="COCO-17 keypoints (.npz/.npy/.json) or an OpenPose --write_json folder, one entry per "
                    "footage frame",
        subtype='FILE_PATH',
    )
    keypoints_first_auto: BoolProperty(
        name="Auto First Frame Number",
        description="Find the number of the footage's first frame from the file names: files numbered 1..N "
                    "over a footage of N frames start at 1, others at 0 (as OpenPose numbers a video)",
        default=True,
    )
    keypoints_first_number: IntProperty(
        name="First Frame Number",
        description="The keypoint file's number of the footage's first frame (OpenPose file names; 1 for "
                    "tools that number images from 1)",
        default=0,
        min=0,
    )
    detect_markers: BoolProperty(
        name="Write Tracking Markers",
        description="Write the detections as tracking markers of the Movie Clip (tracks named after COCO "
                    "joints), to inspect and correct them there; Keypoints set to Clip Tracks then refines "
                    "from the corrected markers",
        default=False,
    )
    camera_object: PointerProperty(
        name="Blender Camera",
        description="Multi-View: a Blender camera placed and set like this view's real camera; its transform "
                    "and lens calibrate the view (give every view one, or none)",
        type=bpy.types.Object,
        poll=_is_camera,
    )


class RefineMotionView(ShotInputs, bpy.types.PropertyGroup):
    """A further camera of a multi-view shot, filming the same frames as the main footage."""


class RefineMotionSettings(ShotInputs, bpy.types.PropertyGroup):
    # -- refine inputs (the Refine sub-panel); the footage and keypoints come from ShotInputs --
    views: CollectionProperty(type=RefineMotionView)
    active_view: IntProperty(name="Active View")
    init_path: StringProperty(
        name="Initial SMPL",
        description="Optional initial SMPL estimate (.npz in the engine's INIT layout, or HMR 2.0 .npz/.pkl), "
                    "one per footage frame (Single Frame and Video). Empty: the built-in regressor",
        subtype='FILE_PATH',
    )
    intrinsics: EnumProperty(
        name="Camera",
        description="The footage camera's intrinsics (Multi-View: every view's, except that a view with a "
                    "Blender camera uses that camera's lens)",
        items=INTRINSICS_ITEMS,
        default='ESTIMATE',
    )
    focal_length: FloatProperty(
        name="Focal Length (px)",
        description="Focal length of the footage camera in pixels",
        default=1000.0,
        min=1.0,
    )
    device: EnumProperty(
        name="Device",
        description="Where the engine computes",
        items=DEVICE_ITEMS,
        default='AUTO',
    )
    footage_rate: EnumProperty(
        name="Frame Rate",
        description="When the footage's frame rate differs from the scene's",
        items=(('SET_SCENE', "Set Scene to Footage", "Set the scene's frame rate to the footage's: a key per footage "
                                                     "frame, the footage plays frame by frame (as the batch does)"),
               ('RETIME', "Keep Scene Rate", "Keep the scene's frame rate: the footage is retimed to it and each "
                                             "scene frame keys the footage frame shown there")),
        default='SET_SCENE',
    )
    use_active_rig: BoolProperty(
        name="Onto Active Rig",
        description="Give the refined motion to the active armature from an earlier import or refinement "
                    "instead of adding a new rig and body (its previous action is kept with a fake user)",
        default=False,
    )
    # -- refinement settings --
    mode: EnumProperty(
        name="Mode",
        description="What the refinement works on",
        items=MODE_ITEMS,
        default='VIDEO',
    )
    # One scale with the batch's --smoothing / --keypoint-trust and the engine's: 1 = its default weight.
    smoothing: FloatProperty(
        name="Smoothing",
        description="Strength of temporal smoothing between frames (0 = none, 1 = the engine's default, "
                    "2 = twice that; the batch's --smoothing)",
        default=1.0,
        min=0.0,
        max=SCALE_MAX,
    )
    keypoint_trust: FloatProperty(
        name="Keypoint Trust",
        description="How strongly the 2D keypoints pull on the result, relative to the learned motion prior "
                    "(1 = the engine's default, 2 = twice that; the batch's --keypoint-trust)",
        default=1.0,
        min=0.0,
        max=SCALE_MAX,
    )
    use_footage_range: BoolProperty(
        name="Whole Footage",
        description="Refine every frame of the footage (off: the frames from Frame Start to End; setting "
                    "either turns this off)",
        default=True,
    )
    height: FloatProperty(
        name="Height",
        description="The person's height, if known: it fixes the body's size and so its distance from the "
                    "camera (0 = unknown: guessed from the keypoints)",
        default=0.0,
        min=0.0,
        soft_max=2.5,
        subtype='DISTANCE',
    )
    frame_start: IntProperty(
        name="Start",
        description="First frame to refine (the scene frame of a footage frame: the footage starts at the "
                    "clip's Start Frame, or at the scene's start for a video file)",
        default=1,
        min=0,
        update=_clamp_frame_end,
    )
    frame_end: IntProperty(
        name="End",
        description="Last frame to refine",
        default=250,
        min=0,
        update=_clamp_frame_start,
    )


classes = (RefineMotionView, RefineMotionSettings)


def attach() -> None:
    bpy.types.Scene.refine_motion = PointerProperty(type=RefineMotionSettings)


def detach() -> None:
    del bpy.types.Scene.refine_motion
