# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: where the body model and the worker Python live."""

import os

import bpy
from bpy.props import StringProperty

DEFAULT_BODY_MODEL = "Free default (Anny-based SMPL format)"


class RefineMotionPreferences(bpy.types.AddonPreferences):
    # As an extension this is "bl_ext.<repo>.refine_motion"; never hard-code it.
    bl_idname = __package__

    smpl_path: StringProperty(
        name="SMPL Model File",
        description="Optional SMPL model file (.pkl or .npz) you have a license for. "
                    "Leave empty to use the free default body model",
        subtype='FILE_PATH',
    )
    worker_python: StringProperty(
        name="Worker Python",
        description="Python interpreter with torch installed, used to run the "
                    "refinement outside Blender. Leave empty to use the default",
        subtype='FILE_PATH',
    )

    def draw(self, _context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "smpl_path")
        layout.prop(self, "worker_python")


classes = (RefineMotionPreferences,)


def get(context):
    """This add-on's preferences, or None while it is not enabled as an add-on
    (for instance when registered directly from a script or a test)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def body_model_label(prefs):
    """Human-readable name of the body model that refinement will use."""
    path = prefs.smpl_path.strip() if prefs is not None else ""
    if path:
        return "User SMPL: " + os.path.basename(path)
    return DEFAULT_BODY_MODEL
