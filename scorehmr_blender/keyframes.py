# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the motion as a new Action on the armature (Blender glue; maths in convert.py).

Blender 4.4 made actions layered ("slotted"): F-curves live in a channelbag of a
keyframe strip, per slot; 5.0 removed the legacy ``Action.fcurves``.  Both
layouts are handled in :func:`fcurve_factory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np

from .convert import JOINT_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable

LAYERED_ACTIONS = bpy.app.version >= (4, 4, 0)


def new_action(name: str, armature_obj: bpy.types.Object, frames: np.ndarray, quaternions: np.ndarray,
               root_locations: np.ndarray) -> bpy.types.Action:
    """A new Action keying every bone's rotation_quaternion and the root bone's
    location at ``frames``, for ``armature_obj`` (see :func:`assign`).

    It is named ``name``, or ``name.001`` etc. when taken: existing actions are
    never touched.  frames (F,) scene frames; quaternions (F, 24, 4) (w, x, y, z);
    root_locations (F, 3)."""
    action = bpy.data.actions.new(name)
    new_fcurve = fcurve_factory(action, armature_obj)
    pose_bones = armature_obj.pose.bones
    for j, bone_name in enumerate(JOINT_NAMES):
        path = pose_bones[bone_name].path_from_id("rotation_quaternion")
        for axis in range(4):
            fill_fcurve(new_fcurve(path, axis, bone_name), frames, quaternions[:, j, axis])
    path = pose_bones[JOINT_NAMES[0]].path_from_id("location")
    for axis in range(3):
        fill_fcurve(new_fcurve(path, axis, JOINT_NAMES[0]), frames, root_locations[:, axis])
    return action


def assign(obj: bpy.types.Object, action: bpy.types.Action) -> None:
    """Make an action from :func:`new_action` animate ``obj``."""
    anim = obj.animation_data_create()
    anim.action = action
    if LAYERED_ACTIONS:
        anim.action_slot = action.slots[0]  # the only slot new_action makes


def fcurve_factory(action: bpy.types.Action, obj: bpy.types.Object) -> Callable[[str, int, str], bpy.types.FCurve]:
    """``new_fcurve(data_path, index, group_name)`` for a fresh action."""
    if not LAYERED_ACTIONS:
        return lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)
    slot = action.slots.new(id_type='OBJECT', name=obj.name)
    bag = action.layers.new("Layer").strips.new(type='KEYFRAME').channelbags.new(slot)
    groups = {}

    def new_fcurve(path: str, index: int, group: str) -> bpy.types.FCurve:
        # fcurves.new() has no group_name argument in 4.4; assigning .group works everywhere.
        fcurve = bag.fcurves.new(path, index=index)
        if group not in groups:
            groups[group] = bag.groups.new(group)
        fcurve.group = groups[group]
        return fcurve
    return new_fcurve


def fill_fcurve(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    """Key ``values`` at ``frames`` in one go (add + foreach_set, not keyframe_insert)."""
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    fcurve.keyframe_points.add(len(frames))
    fcurve.keyframe_points.foreach_set("co", co)
    fcurve.update()  # sorts keys and computes the (auto-clamped) handles


# The result's foot contacts kept on the imported action (ID properties: they save with the file).
CONTACT_FRAMES, CONTACTS = "refine_motion_contact_frames", "refine_motion_foot_contacts"


def store_contacts(action: bpy.types.Action, frames: np.ndarray, contacts: np.ndarray) -> None:
    """Keep the result's foot contacts (F, 4) bool at scene ``frames`` (F,) on ``action``."""
    action[CONTACT_FRAMES] = [float(f) for f in frames]
    action[CONTACTS] = [int(c) for c in np.asarray(contacts, dtype=bool).ravel()]


def stored_contacts(action: bpy.types.Action, frames: np.ndarray) -> np.ndarray | None:
    """The contacts (F, 4) bool stored on ``action`` at the stored frames nearest ``frames``
    (F,), or None when it has none."""
    if CONTACT_FRAMES not in action or CONTACTS not in action:
        return None
    stored = np.asarray(action[CONTACT_FRAMES], dtype=np.float64)
    contacts = np.asarray(action[CONTACTS], dtype=bool).reshape(len(stored), -1)
    nearest = np.abs(np.asarray(frames, dtype=np.float64)[:, None] - stored[None]).argmin(axis=1)
    return contacts[nearest]
