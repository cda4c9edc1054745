# SPDX-License-Identifier: GPL-3.0-or-later
"""Export an animated armature as BVH or FBX through Blender's own exporters.

Both exporters work on the context (the active object for BVH, the selected
objects for FBX) and bake the scene's frame range, so the calls here run under
``context.temp_override`` with the armature active and selected, over the frame
range of its action; the scene's frame range and frame are restored after.
Neither writes over an existing file unless asked to.
"""

import math
from contextlib import contextmanager
from pathlib import Path

import addon_utils
import bpy


def action_frame_range(armature_obj):
    """(first, last) whole scene frames covering the armature's action."""
    action = armature_obj.animation_data.action if armature_obj.animation_data else None
    if action is None:
        raise ValueError(f"'{armature_obj.name}' has no action to export")
    start, end = action.frame_range
    return math.floor(start), math.ceil(end)


def export_bvh(armature_obj, path, *, overwrite=False, frame_start=None, frame_end=None, global_scale=1.0,
               rotate_mode='NATIVE', root_transform_only=False):
    """Write ``armature_obj``'s animation to the BVH file ``path``; returns the Path.

    Frames default to the action's range.  Blender's exporter writes armature
    space as it is (Z up, object transform left out): import it back with
    axis_forward='Y', axis_up='Z'.  Raises FileExistsError for an existing file
    unless ``overwrite``, ValueError without an armature or action."""
    path = _target_path(path, overwrite)
    first, last = _frames(armature_obj, frame_start, frame_end)
    _ensure_addon("io_anim_bvh", "export_anim", "bvh")
    with _exporting(armature_obj, [armature_obj]) as override, bpy.context.temp_override(**override):
        result = bpy.ops.export_anim.bvh(filepath=str(path), check_existing=False, frame_start=first,
                                         frame_end=last, global_scale=global_scale,
                                         rotate_mode=rotate_mode, root_transform_only=root_transform_only)
    return _written(result, path, "BVH")


def export_fbx(armature_obj, path, *, overwrite=False, frame_start=None, frame_end=None, include_meshes=True,
               add_leaf_bones=False, **fbx_options):
    """Write ``armature_obj`` and its animation to the FBX file ``path``; returns the Path.

    The armature's child meshes (its skinned body) go along with include_meshes.
    Only the assigned action is baked, over the action's frame range (or
    frame_start/frame_end).  fbx_options pass on to bpy.ops.export_scene.fbx.
    Raises FileExistsError for an existing file unless ``overwrite``, ValueError
    without an armature or action."""
    path = _target_path(path, overwrite)
    first, last = _frames(armature_obj, frame_start, frame_end)
    _ensure_addon("io_scene_fbx", "export_scene", "fbx")
    meshes = [c for c in armature_obj.children if c.type == 'MESH'] if include_meshes else []
    options = {"use_selection": True, "object_types": {'ARMATURE', 'MESH'} if meshes else {'ARMATURE'},
               "bake_anim": True, "bake_anim_use_all_actions": False, "bake_anim_use_nla_strips": False,
               "add_leaf_bones": add_leaf_bones, **fbx_options}
    scene = bpy.context.scene
    kept = scene.frame_start, scene.frame_end
    with _exporting(armature_obj, [armature_obj, *meshes]) as override:
        scene.frame_start, scene.frame_end = first, last  # the exporter bakes the scene's range
        try:
            with bpy.context.temp_override(**override):
                result = bpy.ops.export_scene.fbx(filepath=str(path), check_existing=False, **options)
        finally:
            scene.frame_start, scene.frame_end = kept
    return _written(result, path, "FBX")


def _target_path(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: turn on Overwrite to replace it (overwrite=True in a script)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    return path


def _frames(armature_obj, frame_start, frame_end):
    if armature_obj is None or armature_obj.type != 'ARMATURE':
        raise ValueError("export needs an armature object")
    first, last = action_frame_range(armature_obj)
    first = first if frame_start is None else int(frame_start)
    last = last if frame_end is None else int(frame_end)
    if last < first:
        raise ValueError(f"empty frame range {first}-{last}")
    return first, last


def _ensure_addon(module, category, name):
    """Enable Blender's bundled exporter add-on if this session lacks its operator."""
    try:
        getattr(getattr(bpy.ops, category), name).get_rna_type()
    except KeyError:
        addon_utils.enable(module, default_set=False)


@contextmanager
def _exporting(active, selected):
    """Object mode, ``selected`` selected and ``active`` active in the view layer while
    exporting (yields temp_override arguments); selection, active object and the
    scene frame come back after."""
    context = bpy.context
    view_layer = context.view_layer
    if active.name not in view_layer.objects:
        raise ValueError(f"'{active.name}' is not in the view layer '{view_layer.name}'")
    scene = context.scene
    kept_frame = scene.frame_current, scene.frame_subframe
    kept_active = view_layer.objects.active
    kept_selected = [o for o in view_layer.objects if o.select_get()]
    if context.mode != 'OBJECT' and kept_active is not None:
        bpy.ops.object.mode_set(mode='OBJECT')
    try:
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active
        yield {"active_object": active, "object": active, "selected_objects": list(selected),
               "selected_editable_objects": list(selected)}
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in kept_selected)
        view_layer.objects.active = kept_active
        scene.frame_set(kept_frame[0], subframe=kept_frame[1])


def _written(result, path, kind):
    if result != {'FINISHED'} or not path.is_file():
        raise RuntimeError(f"Blender's {kind} exporter did not write {path}")
    return path
