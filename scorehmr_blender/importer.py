# SPDX-License-Identifier: GPL-3.0-or-later
"""Import an engine result: SMPL armature, skinned body, action and footage camera.

Everything is checked first (result file, target rig, footage) and built after;
if building fails, whatever was created is removed again, so a failed import
leaves the file as it was.  The new action is assigned last.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import armature, camera, convert, keyframes, result

# bpy.data collections an import adds to (removed again on failure).
_DATA = ("objects", "armatures", "meshes", "actions", "cameras", "movieclips")


@dataclass
class Imported:
    armature: bpy.types.Object
    body: bpy.types.Object | None  # None when the action went onto an existing rig
    action: bpy.types.Action
    camera: bpy.types.Object | None
    frames: object  # (F,) scene frame of each result frame
    messages: list = field(default_factory=list)  # (report level, text)


def import_result(context, filepath, *, shot_name="", frame_start=None, onto_rig=None, add_camera=True,
                  footage_path="", set_resolution=False, update_scene_duration=True, camera_to_world=None):
    """Import ``filepath`` (OUT.npz) into ``context.scene``; returns :class:`Imported`.

    onto_rig: an armature from an earlier import to give the new action to,
    instead of building a new rig and body (it keeps its own rest shape).
    camera_to_world: (4, 4) where the result's camera already is in the world
    (convert.opencv_camera_to_world of a calibrated view 0); the motion is keyed
    there.  Default: in front of a camera at the world origin (the one add_camera adds).
    Raises result.ResultError for a bad result and RuntimeError for a bad rig or
    unreadable footage, leaving the file unchanged."""
    res = result.load(filepath)
    if onto_rig is not None and not armature.is_smpl_rig(onto_rig):
        raise RuntimeError(f"'{onto_rig.name}' is not a Refine Motion armature (it needs the 24 SMPL bones)")
    scene = context.scene
    name = shot_name.strip() or Path(filepath).stem
    start = scene.frame_start if frame_start is None else frame_start
    scene_fps = scene.render.fps / scene.render.fps_base
    frames = convert.scene_frames(res.num_frames, start, res.fps, scene_fps)
    with_camera = add_camera and res.has_camera
    messages = []
    if not math.isclose(res.fps, scene_fps, rel_tol=1e-6):
        drift = "; the background footage plays at the scene rate" if footage_path else ""
        messages.append(('WARNING', (f"Footage is {res.fps:g} fps, the scene {scene_fps:g} fps: "
                                     f"keys are retimed to scene frames{drift}")))
    if add_camera and not res.has_camera:
        messages.append(('WARNING', "No camera added: the result has no image_size and focal_length"))
    if footage_path and not with_camera:
        messages.append(('WARNING', "Footage not shown: it needs the footage camera"))

    before = {kind: set(getattr(bpy.data, kind)) for kind in _DATA}
    if context.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    try:
        clip = None
        if footage_path and with_camera:
            try:
                clip = camera.load_clip(footage_path)
            except RuntimeError as ex:
                raise RuntimeError(f"Cannot load the footage: {ex}") from None
        imported = _build(context, res, name, frames, onto_rig, with_camera, clip, camera_to_world)
    except BaseException:
        bpy.data.batch_remove([item for kind in _DATA for item in getattr(bpy.data, kind)
                               if item not in before[kind]])
        raise

    rig = imported.armature
    previous = rig.animation_data.action if rig.animation_data else None
    if previous is not None and not previous.use_fake_user:
        previous.use_fake_user = True  # unassigned, it would be lost on save
        messages.append(('INFO', f"Kept the rig's previous action '{previous.name}' (fake user)"))
    keyframes.assign(rig, imported.action)

    if imported.camera is not None:
        if set_resolution:
            camera.set_resolution(scene, res.image_size)
        elif problem := camera.resolution_mismatch(scene, res.image_size):
            messages.append(('WARNING', problem))
        if scene.camera is None:
            scene.camera = imported.camera
    if update_scene_duration and frames[-1] > scene.frame_end:
        scene.frame_end = math.ceil(frames[-1])

    for obj in context.view_layer.objects:
        obj.select_set(False)
    rig.select_set(True)
    context.view_layer.objects.active = rig

    messages.append(('INFO', (f"Imported '{name}': {res.num_frames} frames at scene frames "
                              f"{frames[0]:g}-{frames[-1]:g}, action '{imported.action.name}'")))
    imported.messages = messages
    return imported


def _build(context, res, name, frames, rig, with_camera, clip, camera_to_world):
    """Create the rig and body (unless ``rig`` is given), the action and the camera."""
    collection = context.collection
    body = None
    if rig is None:
        rig = armature.new_armature(context, name, res.rest_joints, collection)
        body = armature.new_body(name + "_body", res.rest_vertices, res.faces, res.skin_weights, rig)
        collection.objects.link(body)

    rest = armature.bone_rest_rotations(rig)
    quaternions = convert.pose_quaternions(res.global_orient, res.body_pose, rest, camera_to_world)
    root_head = rig.data.bones[convert.JOINT_NAMES[0]].head_local
    locations = convert.root_locations(res.transl, res.rest_joints[0], rest[0], root_head, camera_to_world)
    action = keyframes.new_action(name, rig, frames, quaternions, locations)

    cam = None
    if with_camera:
        cam = camera.new_camera(name + "_camera", res.image_size, res.focal_length, res.principal_point)
        collection.objects.link(cam)
        if clip is not None:
            camera.show_footage(cam, clip, round(frames[0]))
    return Imported(rig, body, action, cam, frames)
