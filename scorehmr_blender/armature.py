# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the SMPL armature and its skinned body mesh (Blender glue; maths in convert.py).

The armature object sits at the world origin: its armature space is Blender world
space.  Bones are named after SMPL's joints, their heads at the rest joints
(converted with MODEL_TO_BLENDER), so the rest pose is the result's body shape in
its zero pose (a T-pose facing -Y).
"""

from __future__ import annotations

import bpy
import numpy as np

from .convert import JOINT_NAMES, MODEL_TO_BLENDER, PARENTS, bone_tails


def new_armature(context: bpy.types.Context, name: str, rest_joints: np.ndarray,
                 collection: bpy.types.Collection) -> bpy.types.Object:
    """An armature object named ``name`` with the 24 SMPL bones, linked to ``collection``.

    Bones can only be made in edit mode, which needs the object in the view layer."""
    heads = np.asarray(rest_joints, dtype=np.float64) @ MODEL_TO_BLENDER.T
    tails = bone_tails(heads)

    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    try:
        bones = []
        for j, bone_name in enumerate(JOINT_NAMES):
            bone = data.edit_bones.new(bone_name)
            bone.head, bone.tail, bone.roll = heads[j], tails[j], 0.0
            if PARENTS[j] >= 0:
                bone.parent = bones[PARENTS[j]]
                bone.use_connect = np.allclose(bone.parent.tail, bone.head)
            bones.append(bone)
    finally:
        bpy.ops.object.mode_set(mode='OBJECT')
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = 'QUATERNION'
    return obj


def is_smpl_rig(obj: bpy.types.Object | None) -> bool:
    """Whether ``obj`` is an armature with the 24 SMPL bones (one this add-on made)."""
    return obj is not None and obj.type == 'ARMATURE' and all(n in obj.data.bones for n in JOINT_NAMES)


def bone_rest_rotations(obj: bpy.types.Object) -> np.ndarray:
    """Each bone's rest rotation B_j (24, 3, 3) in armature space, in SMPL joint order."""
    bones = obj.data.bones
    return np.array([bones[name].matrix_local.to_3x3() for name in JOINT_NAMES])


def new_body(name: str, rest_vertices: np.ndarray, faces: np.ndarray, skin_weights: np.ndarray,
             armature_obj: bpy.types.Object) -> bpy.types.Object:
    """The skinned body mesh object: vertices in Blender axes, one vertex group
    per bone from skin_weights (V, 24), deformed by ``armature_obj``."""
    verts = np.asarray(rest_vertices, dtype=np.float64) @ MODEL_TO_BLENDER.T
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts.tolist(), [], np.asarray(faces).tolist())
    mesh.shade_smooth()
    mesh.update()

    obj = bpy.data.objects.new(name, mesh)
    weights = np.asarray(skin_weights)
    for j, bone_name in enumerate(JOINT_NAMES):
        group = obj.vertex_groups.new(name=bone_name)
        for v in np.nonzero(weights[:, j] > 0)[0].tolist():
            group.add((v,), float(weights[v, j]), 'REPLACE')

    obj.parent = armature_obj
    modifier = obj.modifiers.new("Armature", 'ARMATURE')
    modifier.object = armature_obj
    return obj
