# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene refinement settings, stored as ``scene.refine_motion``."""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty

MODE_ITEMS = (
    ('SINGLE_FRAME', "Single Frame", "Refine the pose of the current frame only"),
    ('VIDEO', "Video", "Refine a frame range of one camera, with temporal smoothing"),
    ('MULTI_VIEW', "Multi-View", "Refine using keypoints from several calibrated cameras"),
)


def _clamp_frame_end(self, _context):
    if self.frame_end < self.frame_start:
        self.frame_end = self.frame_start


def _clamp_frame_start(self, _context):
    if self.frame_start > self.frame_end:
        self.frame_start = self.frame_end


class RefineMotionSettings(bpy.types.PropertyGroup):
    mode: EnumProperty(
        name="Mode",
        description="What the refinement works on",
        items=MODE_ITEMS,
        default='VIDEO',
    )
    smoothing: FloatProperty(
        name="Smoothing",
        description="Strength of temporal smoothing between frames (0 = none)",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype='FACTOR',
    )
    keypoint_trust: FloatProperty(
        name="Keypoint Trust",
        description="How strongly the 2D keypoints pull on the result, "
                    "relative to the learned motion prior",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype='FACTOR',
    )
    frame_start: IntProperty(
        name="Start",
        description="First frame to refine",
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


classes = (RefineMotionSettings,)


def attach():
    bpy.types.Scene.refine_motion = PointerProperty(type=RefineMotionSettings)


def detach():
    del bpy.types.Scene.refine_motion
