# SPDX-License-Identifier: GPL-3.0-or-later
"""Refine Motion: refine 3D human motion from 2D keypoints in Blender.

Blender glue only. What the add-on reads and writes goes through the engine
package's numpy-only contract (``backend.contract``), imported like any package
once ``runner/engine.py`` has said where it is; the engine itself (torch)
is imported only inside an in-process refinement (``runner/``), never at add-on
import time, so enabling the add-on stays fast and works without torch
installed.  Likewise the numpy-based importer modules (result, convert,
armature, keyframes, camera, importer) load when an operator first runs.
"""

import bpy

from .runner.engine import import_backend

import_backend()  # first: the modules below import the engine package as ``backend`` (runner/engine.py)

# After import_backend(), so that their ``backend.contract`` imports find this add-on's engine package.
from . import operators, panel, preferences, properties, retarget_ops  # noqa: E402 -- after import_backend(), which they need

classes = (
    *properties.classes,
    *preferences.classes,
    *operators.classes,
    *retarget_ops.classes,
    *panel.classes,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.attach()
    operators.attach()
    retarget_ops.attach()


def unregister() -> None:
    retarget_ops.detach()
    operators.detach()
    properties.detach()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
