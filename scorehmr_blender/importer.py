# SPDX-License-Identifier: GPL-3.0-or-later
"""Import an engine result: SMPL armature, skinned body, action and footage camera,
staged in the scene with a World, light and ground plane where the scene lacks them
(scene_setup.py).  A result with a world frame (video on a static camera: the engine
found the floor) stands on Blender's floor Z = 0 as the engine posed it, its camera
where the engine put it; others go on a floor guessed from the body (staging.py).

Everything is checked first (result file, target rig, footage) and built after;
if building fails, whatever was created is removed again, so a failed import
leaves the file as it was.  The new action is assigned last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bpy
import numpy as np

from . import armature, camera, convert, keyframes, result, retarget_ops, scene_setup, staging

if TYPE_CHECKING:
    from collections.abc import Iterable

# bpy.data collections an import adds to (removed again on failure).
_DATA = ("objects", "armatures", "meshes", "actions", "cameras", "movieclips", "worlds", "lights", "collections")
# Where a result goes: with a world frame, ORIGIN and FLOOR both mean its world (floor at Z = 0, the
# first pelvis above the origin) and CAMERA the camera frame as filmed.  Without one: its lowest
# contact on the floor Z = 0 and its first pelvis above the origin, on the floor only, or in front
# of a camera at the origin (as filmed).
PLACEMENTS = ('ORIGIN', 'FLOOR', 'CAMERA')
# When its keys go: every whole scene frame, the result's own frames (fractional scene frames when
# the rates differ), the result's frames with the scene's rate set to the result's, or every whole
# scene frame from the result frame the footage, retimed to the scene's rate, shows there.
TIMINGS = ('RESAMPLE', 'EXACT', 'SCENE_RATE', 'RETIME')


@dataclass
class Imported:
    armature: bpy.types.Object
    body: bpy.types.Object | None  # None when the action went onto an existing rig
    action: bpy.types.Action
    camera: bpy.types.Object | None
    frames: object  # (F,) scene frame of each result frame
    key_frames: object  # (N,) scene frames keyed (whole frames unless timing='EXACT')
    camera_to_world: object  # (4, 4) OpenCV camera frame of the result -> Blender world
    motion_to_world: object  # (4, 4) frame of the keyed motion (the camera's, or the Y-up world's) -> Blender world
    world: bool = False      # keyed from the result's world frame (on the engine's floor)
    view_cameras: list = field(default_factory=list)  # calibrated multi-view: the cameras of views 1..V-1
    messages: list = field(default_factory=list)  # (report level, text)


def import_result(context: bpy.types.Context, filepath: str, *, shot_name: str = "", frame_start: float | None = None,
                  onto_rig: bpy.types.Object | None = None, add_camera: bool = True, footage_path: str = "",
                  set_resolution: bool = False, update_scene_duration: bool = True,
                  camera_to_world: np.ndarray | None = None, placement: str = 'ORIGIN', timing: str = 'RESAMPLE',
                  prepare_scene: bool = True, set_camera: bool = False) -> Imported:
    """Import ``filepath`` (OUT.npz) into ``context.scene``; returns :class:`Imported`.

    onto_rig: an armature from an earlier import to give the new action to,
    instead of building a new rig and body (it keeps its own rest shape).
    camera_to_world: (4, 4) where the result's camera already is in the world
    (convert.opencv_camera_to_world of a calibrated view 0); the motion is keyed
    there.  Without it a calibrated multi-view result is keyed in its calibration's
    world with a camera per view (unless placement='CAMERA'), a result with a world
    frame stands on its floor at Z = 0 (unless placement='CAMERA'), and
    ``placement`` (one of PLACEMENTS) says where any other goes; the footage camera
    moves with the body.  The rig's rest pose stands on Z = 0 (rest_on_floor).
    timing: one of TIMINGS.  update_scene_duration: set the scene's frame range
    to the keys.  set_resolution / set_camera: make the scene's render size the
    footage's / the footage camera the scene's camera (else only when it has
    none).  prepare_scene: a World and a sun where the scene has none, and a
    ground plane on the floor when the motion was placed on one.
    Raises result.ResultError for a bad result and RuntimeError for a bad rig or
    unreadable footage, leaving the file unchanged."""
    if placement not in PLACEMENTS or timing not in TIMINGS:
        raise ValueError(f"placement must be one of {PLACEMENTS} and timing one of {TIMINGS}")
    res = result.load(filepath)
    if onto_rig is not None and not armature.is_smpl_rig(onto_rig):
        raise RuntimeError(f"'{onto_rig.name}' is not a Refine Motion armature (it needs the 24 SMPL bones)")
    scene = context.scene
    name = shot_name.strip() or Path(filepath).stem
    start = scene.frame_start if frame_start is None else frame_start
    scene_fps = scene.render.fps / scene.render.fps_base
    key_fps = res.fps if timing == 'SCENE_RATE' else scene_fps
    frames = convert.scene_frames(res.num_frames, start, res.fps, key_fps)
    with_camera = add_camera and res.has_camera
    messages = _timing_messages(res.fps, scene_fps, timing, footage_path)
    if add_camera and not res.has_camera:
        messages.append(('WARNING', "No camera added: the result has no image_size and focal_length"))
    if footage_path and not with_camera:
        messages.append(('WARNING', "Footage not shown: it needs the footage camera"))

    calibrated = camera_to_world is None and placement != 'CAMERA' and res.view_cameras is not None
    if calibrated:  # keyed in the calibration's world, every view's camera where the calibration puts it
        camera_to_world = res.view_cameras[0]
        messages.append(('INFO', f"Calibrated multi-view: keyed in the calibration's world with its "
                                 f"{len(res.view_cameras)} cameras"))
    on_floor = camera_to_world is None and placement != 'CAMERA'
    world = res.world if on_floor else None
    motion = (res.global_orient, res.body_pose, res.transl)
    if world is not None:
        motion = (world.global_orient, world.body_pose, world.transl)
        motion_to_world = convert.world_to_blender()
        camera_to_world = convert.world_camera_to_blender(world.camera_R, world.camera_position)
        messages.append(('INFO', _world_text(world, camera_to_world)))
    else:
        if camera_to_world is None:
            camera_to_world = staging.default_camera_to_world()
            if on_floor:
                camera_to_world = staging.floor_placement(res, to_origin=placement == 'ORIGIN') @ camera_to_world
                messages.append(('INFO', ("Placed on a floor guessed from the body's lowest points (Z = 0) with its "
                                          f"camera, which sits at {_xyz(camera_to_world[:3, 3])} m")))
            if res.world is not None:
                messages.append(('INFO', "The result's world frame is not used: Placement is As Filmed"))
            elif res.no_world:
                level, why = res.no_world
                messages.append((level, f"Not on the engine's floor: {why}"))
        motion_to_world = camera_to_world

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
        imported = _build(context, res, name, frames, onto_rig, with_camera, clip, motion, motion_to_world,
                          camera_to_world, timing)
        if clip is not None and timing == 'RETIME':
            retime_footage(clip, res.fps / scene_fps)
        imported.world = world is not None
        if calibrated and with_camera:
            imported.view_cameras = _view_cameras(context, res, name)
        if world is not None and world.foot_contacts is not None:  # where the retarget pins a character's feet
            keyframes.store_contacts(imported.action, frames, world.foot_contacts)
        if prepare_scene:
            M = motion_to_world
            pelvis = (res.rest_joints[0] + motion[2]) @ M[:3, :3].T + M[:3, 3]
            messages += _prepare_scene(context, np.vstack([pelvis, camera_to_world[None, :3, 3]]), on_floor)
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
            if clip is not None and (problem := camera.footage_mismatch(clip.size, res.image_size)):
                messages.append(('WARNING', problem))
        elif problem := camera.resolution_mismatch(scene, res.image_size):
            messages.append(('WARNING', problem))
        if set_camera or scene.camera is None:
            scene.camera = imported.camera
    if timing == 'SCENE_RATE':
        scene.render.fps, scene.render.fps_base = staging.scene_rate(res.fps)
    keyed = imported.key_frames
    if update_scene_duration:
        scene.frame_start, scene.frame_end = math.floor(keyed[0]), math.ceil(keyed[-1])

    retarget_ops.offer_source(scene, rig)
    for obj in context.view_layer.objects:
        obj.select_set(False)
    rig.select_set(True)
    context.view_layer.objects.active = rig

    messages.append(('INFO', (f"Imported '{name}': {res.num_frames} frames, keyed on scene frames "
                              f"{keyed[0]:g}-{keyed[-1]:g}, action '{imported.action.name}'")))
    imported.messages = messages
    return imported


def _timing_messages(result_fps: float, scene_fps: float, timing: str, footage_path: str) -> list[tuple[str, str]]:
    if math.isclose(result_fps, scene_fps, rel_tol=1e-6):
        return []
    rates = f"Footage is {result_fps:g} fps, the scene {scene_fps:g} fps"
    if timing == 'SCENE_RATE':
        return [('INFO', f"{rates}: the scene's frame rate is set to {result_fps:g} fps")]
    if timing == 'RETIME':
        return [('INFO', f"{rates}: the footage and the motion are retimed to the scene's rate (a footage frame "
                         "repeated or skipped where the rates differ)")]
    drift = "; the background footage plays at the scene rate" if footage_path else ""
    how = "resampled onto whole scene frames" if timing == 'RESAMPLE' else "retimed to (fractional) scene frames"
    return [('WARNING', f"{rates}: keys are {how}{drift}")]


def _world_text(world: result.WorldFrame, camera_to_world: np.ndarray) -> str:
    """The INFO line of a world-frame import: where the floor and the camera are."""
    angles = ""
    if world.camera_pitch_deg is not None and world.camera_roll_deg is not None:
        angles = f", pitched {world.camera_pitch_deg:.1f} deg down, rolled {world.camera_roll_deg:.1f} deg"
    return ("On the floor the engine found (Z = 0), in its world frame: the camera sits "
            f"{camera_to_world[2, 3]:.2f} m high at {_xyz(camera_to_world[:3, 3])} m{angles}")


def _xyz(vector: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in vector) + ")"


def rest_on_floor(rest_vertices: np.ndarray) -> np.ndarray:
    """(3,) model-frame shift of the rest body (V, 3) that stands its lowest point on the armature's origin
    height (Blender Z = 0), so Rest Position shows the body on the floor, not a metre under it.  Posed keys
    are unchanged by it: the root bone's keys are taken from where its head rests."""
    up = convert.MODEL_TO_BLENDER.T @ np.array([0.0, 0.0, 1.0])  # Blender's Z in the model frame
    return -float((np.asarray(rest_vertices, dtype=np.float64) @ up).min()) * up


def nearest_frame_keys(frames: np.ndarray, quaternions: np.ndarray,
                       locations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys on the whole scene frames inside ``frames`` (F,) (evenly spaced, fractional), each from the
    result frame nearest in time, as the retimed footage shows it (:func:`retime_footage`): (whole frames
    (N,), quaternions (N, J, 4), locations (N, L))."""
    frames = np.asarray(frames, dtype=np.float64)
    whole = np.arange(np.ceil(frames[0] - 1e-6), np.floor(frames[-1] + 1e-6) + 1)
    step = frames[1] - frames[0] if len(frames) > 1 else 1.0
    index = np.clip(np.floor((whole - frames[0]) / step + 0.5).astype(int), 0, len(frames) - 1)
    return whole, np.asarray(quaternions)[index], np.asarray(locations)[index]


def retime_footage(clip: bpy.types.MovieClip, ratio: float) -> None:
    """Play ``clip`` at the scene's rate from its Start Frame: at scene frame s it shows footage frame
    floor((s - start) * ratio + 0.5) (``ratio`` = footage fps / scene fps), through a driver on its Frame
    Offset, which only changes which file frame is read (Blender shows file frame s - start + offset).
    Call again after moving the clip's Start Frame."""
    clip.driver_remove("frame_offset")
    driver = clip.driver_add("frame_offset").driver
    driver.type = 'SCRIPTED'
    since = f"(frame - {clip.frame_start})"
    # A simple expression (no Python needed, so it runs without Auto Run Python Scripts).
    driver.expression = f"floor({since} * {float(ratio)!r} + 0.5) - {since}"


def _build(context: bpy.types.Context, res: result.MotionResult, name: str, frames: np.ndarray,
           rig: bpy.types.Object | None, with_camera: bool, clip: bpy.types.MovieClip | None,
           motion: tuple[np.ndarray, np.ndarray, np.ndarray], motion_to_world: np.ndarray | None,
           camera_to_world: np.ndarray | None, timing: str) -> Imported:
    """Create the rig and body (unless ``rig`` is given), the action and the camera.

    motion: (global_orient (F, 3), body_pose (F, 69), transl (F, 3)) in the frame that
    ``motion_to_world`` (4, 4) takes to Blender's world; camera_to_world (4, 4) the camera's pose."""
    global_orient, body_pose, transl = motion
    collection = context.collection
    body = None
    if rig is None:
        lift = rest_on_floor(res.rest_vertices)
        rig = armature.new_armature(context, name, res.rest_joints + lift, collection)
        body = armature.new_body(name + "_body", res.rest_vertices + lift, res.faces, res.skin_weights, rig)
        collection.objects.link(body)

    rest = armature.bone_rest_rotations(rig)
    quaternions = convert.pose_quaternions(global_orient, body_pose, rest, motion_to_world)
    root_head = rig.data.bones[convert.JOINT_NAMES[0]].head_local
    locations = convert.root_locations(transl, res.rest_joints[0], rest[0], root_head, motion_to_world)
    key_frames = frames
    if timing == 'RESAMPLE':
        key_frames, quaternions, locations = staging.whole_frame_keys(frames, quaternions, locations)
    elif timing == 'RETIME':
        key_frames, quaternions, locations = nearest_frame_keys(frames, quaternions, locations)
    action = keyframes.new_action(name, rig, key_frames, quaternions, locations)

    cam = None
    if with_camera:
        cam = camera.new_camera(name + "_camera", res.image_size, res.focal_length, res.principal_point,
                                camera_to_world)
        collection.objects.link(cam)
        if clip is not None:
            camera.show_footage(cam, clip, round(frames[0]))
    return Imported(rig, body, action, cam, frames, key_frames, camera_to_world, motion_to_world)


def _view_cameras(context: bpy.types.Context, res: result.MotionResult, name: str) -> list[bpy.types.Object]:
    """Cameras of views 1..V-1 of a calibrated multi-view result where its calibration puts them, each with
    its own lens (view 0's in files without per-view intrinsics), linked to the context's collection."""
    cameras = []
    for index, pose in enumerate(res.view_cameras[1:], 1):
        image_size, focal_length, principal_point = res.view_lenses[index]
        cam = camera.new_camera(f"{name}_camera_view{index}", image_size, focal_length, principal_point, pose)
        context.collection.objects.link(cam)
        cameras.append(cam)
    return cameras


def _prepare_scene(context: bpy.types.Context, points: np.ndarray, on_floor: bool) -> list[tuple[str, str]]:
    """World, sun and ground plane (covering ``points`` (N, 3), world) where missing (scene_setup);
    returns INFO messages."""
    scene = context.scene
    made = []
    if scene_setup.ensure_world(scene) is not None:
        made.append("a grey World")
    if scene_setup.ensure_light(scene, context.collection) is not None:
        made.append(f"a sun ('{scene_setup.LIGHT_NAME}')")
    if on_floor:
        if scene_setup.ensure_ground(scene, points) is not None:
            made.append(f"a ground plane (collection '{scene_setup.GROUND_NAME}', hide it there)")
    return [('INFO', "Added " + ", ".join(made))] if made else []
