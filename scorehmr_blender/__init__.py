# SPDX-License-Identifier: GPL-3.0-or-later
"""Refine Motion: refine 3D human motion from 2D keypoints in Blender.

Blender glue only. The refinement engine (``backend``) is imported lazily by
the code that needs it, never at add-on import time, so enabling the add-on
stays fast and works without torch installed.  Likewise the numpy-based
importer modules (result, convert, armature, keyframes, camera, importer) load
when an operator first runs.
"""

import bpy

from . import operators, panel, preferences, properties, retarget_ops

classes = (
    *properties.classes,
    *preferences.classes,
    *operators.classes,
    *retarget_ops.classes,
    *panel.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.attach()
    operators.attach()
    retarget_ops.attach()


def unregister():
    retarget_ops.detach()
    operators.detach()
    properties.detach()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
