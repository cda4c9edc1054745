# SPDX-License-Identifier: GPL-3.0-or-later
"""Frames and pose maths of the importer: numpy only, no bpy (tested without Blender).

Frames
    SMPL model frame (``rest_joints``, ``rest_vertices``): metres, Y up, the body
    faces +Z, its left is +X.
    Engine result (``global_orient``, ``transl``, ``joints``): the OpenCV camera
    frame, x right, y down, z forward, metres.
    Blender: Z up.  The rest body goes in with ``MODEL_TO_BLENDER`` C,
    (x, y, z) -> (x, -z, y): it stands along +Z and faces -Y (Blender's front).
    The footage camera is a Blender camera at the world origin looking along +Y
    with +Z up, so a camera-frame point p lands at ``CAMERA_TO_WORLD @ p`` = W p,
    (x, y, z) -> (x, z, -y), in metres.  A body standing upright facing that
    camera (global_orient ~ 180 deg about X) gets an identity root rotation.
    Calibrated multi-view results sit in the user's camera 0 instead: W and the
    pelvis position then come from that camera's pose (``camera_to_world``, a 4x4
    OpenCV-camera -> world transform, :func:`opencv_camera_to_world`).
    A result with a world frame (``*_world`` fields: Y up, floor at Y = 0) is Y up
    like the model frame, so it goes in with the same C (:func:`world_to_blender`):
    the motion is keyed from the world body with "camera_to_world" = C, and its
    camera sits at C (camera_R_world, camera_position) (:func:`world_camera_to_blender`).

Bones (the armature object stays at the world origin, so armature space = world)
    SMPL poses joint j with its local rotation R_j (model frame); R_0 =
    global_orient takes the model frame to the camera frame and G_j = G_parent R_j.
    A point x near joint j goes to G_j (x - J_j) + posed J_j.  In Blender the rest
    point is y = C x, so it goes to (W G_j C^T)(y - C J_j) + W posed J_j: bone j
    deforms by D_j = W G_j C^T = (W R_0 C^T)(C R_1 C^T) ... (C R_j C^T).
    Blender chains a pose bone as D_j = D_parent B_j Q_j B_j^T, with B_j the
    bone's rest rotation (``bone.matrix_local``) and Q_j its rotation_quaternion:
        Q_0 = B_0^T (W R_0 C^T) B_0,    Q_j = B_j^T (C R_j C^T) B_j.
    SMPL rotates the body about the pelvis, which goes to W (J_0 + transl); the
    root bone's head rests at H_0 (= C J_0 on a rig built for this result) and
    its location is in its rest axes:
        location = B_0^T (W (J_0 + transl) - H_0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

# SMPL's skeleton and the rotation helpers: the contract's, shared with the engine.
from backend.contract.layout import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from backend.contract.rotations import axis_angle_to_matrix, continuous_quaternions, matrix_to_quaternion

if TYPE_CHECKING:
    import bpy
    from mathutils import Matrix

JOINT_NAMES, PARENTS = SMPL_JOINT_NAMES, SMPL_PARENTS

# C: Y up (the SMPL model frame, the result's world frame) -> Blender's Z up, (x, y, z) -> (x, -z, y).
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])   # W
# The footage camera object's rotation: Blender cameras look down their local -Z
# with +Y up, i.e. OpenCV axes (x, -y, -z); this turns that into W.
CAMERA_OBJECT_EULER = (np.pi / 2, 0.0, 0.0)
# OpenCV camera axes (x right, y down, z forward) in a Blender camera's local axes.
OPENCV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])


# -- rest skeleton ----------------------------------------------------------------

def bone_tails(heads: np.ndarray, parents: Sequence[int] = PARENTS, leaf_scale: float = 0.6) -> np.ndarray:
    """Bone tails (J, 3) for bone heads (J, 3) at the joints.

    A bone points at its child joint; where a joint branches (pelvis, spine3) at
    the child on the body's mid-line (smallest |x|: the spine).  A leaf (head,
    feet, hands) continues its parent's direction for leaf_scale of that length."""
    heads = np.asarray(heads, dtype=np.float64)
    tails = np.empty_like(heads)
    for j in range(len(heads)):
        children = [c for c, p in enumerate(parents) if p == j]
        if children:
            tails[j] = heads[min(children, key=lambda c: abs(heads[c, 0]))]
        else:
            tails[j] = heads[j] + leaf_scale * (heads[j] - heads[parents[j]])
    return tails


# -- motion -------------------------------------------------------------------------

def local_rotations(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """SMPL local rotations (F, 24, 3, 3) from axis-angle (F, 3) and (F, 69)."""
    aa = np.concatenate([global_orient, body_pose], -1).reshape(len(global_orient), NUM_JOINTS, 3)
    return axis_angle_to_matrix(aa)


def pose_quaternions(global_orient: np.ndarray, body_pose: np.ndarray, bone_rest: np.ndarray,
                     camera_to_world: np.ndarray | None = None) -> np.ndarray:
    """Pose-bone quaternions (F, 24, 4), sign-continuous over frames.

    global_orient (F, 3), body_pose (F, 69): the result's axis-angles (camera frame).
    bone_rest (24, 3, 3): each bone's rest rotation B_j in armature space.
    camera_to_world (4, 4): where the result's camera is (default: the footage camera, W)."""
    R = local_rotations(global_orient, body_pose)
    C, W = MODEL_TO_BLENDER, _camera_to_world(camera_to_world)[:3, :3]
    L = C @ R @ C.T
    L[:, 0] = W @ R[:, 0] @ C.T
    B = np.asarray(bone_rest, dtype=np.float64)
    Q = np.swapaxes(B, -1, -2) @ L @ B
    return continuous_quaternions(matrix_to_quaternion(Q))


def root_locations(transl: np.ndarray, rest_pelvis: np.ndarray, root_rest: np.ndarray,
                   root_head: np.ndarray | None = None, camera_to_world: np.ndarray | None = None) -> np.ndarray:
    """Root-bone locations (F, 3) in its rest axes.

    transl (F, 3) camera frame; rest_pelvis (3,) the result's, model frame;
    root_rest (3, 3) B_0; root_head (3,) the root bone's rest head in armature
    space, C @ rest_pelvis unless the rig was built for another body shape;
    camera_to_world as in :func:`pose_quaternions`."""
    pelvis = np.asarray(rest_pelvis, dtype=np.float64)
    M = _camera_to_world(camera_to_world)
    posed = (np.asarray(transl, dtype=np.float64) + pelvis) @ M[:3, :3].T + M[:3, 3]
    head = MODEL_TO_BLENDER @ pelvis if root_head is None else np.asarray(root_head, dtype=np.float64)
    return (posed - head) @ np.asarray(root_rest, dtype=np.float64)


def world_to_blender() -> np.ndarray:
    """(4, 4) the result's Y-up world frame (floor Y = 0) -> Blender's Z-up world (floor Z = 0): C."""
    matrix = np.eye(4)
    matrix[:3, :3] = MODEL_TO_BLENDER
    return matrix


def world_camera_to_blender(camera_R_world: np.ndarray, camera_position: np.ndarray) -> np.ndarray:
    """(4, 4) OpenCV camera -> Blender world of the result's world camera: rotation (3, 3) camera
    axes -> Y-up world and position (3,) in that world, turned Z up by C."""
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = camera_R_world, camera_position
    return world_to_blender() @ pose


def _camera_to_world(matrix: np.ndarray | None) -> np.ndarray:
    if matrix is None:
        matrix = np.eye(4)
        matrix[:3, :3] = CAMERA_TO_WORLD
    return np.asarray(matrix, dtype=np.float64)


def scene_frames(num_frames: int, start: float, footage_fps: float, scene_fps: float) -> np.ndarray:
    """Scene frame of each result frame: start + i * scene_fps / footage_fps."""
    return start + np.arange(num_frames) * (scene_fps / footage_fps)


# -- camera ---------------------------------------------------------------------------

def camera_settings(image_size: Sequence[float], focal_px: float, principal_point: Sequence[float] | None = None,
                    sensor_width: float = 36.0) -> dict:
    """Blender camera data settings for pinhole intrinsics in pixels.

    The sensor is fitted to the image width, so lens / sensor_width = focal_px / width;
    Blender's lens shift is in units of the fitted dimension (the width) and moves
    the view, i.e. against the principal point's offset from the image centre."""
    width, height = (float(v) for v in image_size)
    cx, cy = principal_point if principal_point is not None else (width / 2, height / 2)
    return {
        "sensor_fit": 'HORIZONTAL',
        "sensor_width": sensor_width,
        "lens": focal_px * sensor_width / width,
        "shift_x": (width / 2 - cx) / width,
        "shift_y": (cy - height / 2) / width,
    }


def camera_intrinsics(data: bpy.types.Camera, image_size: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """(focal px, (cx, cy) px OpenCV) of Blender camera data seen on an image of ``image_size``:
    the inverse of :func:`camera_settings` for any sensor fit.

    The sensor (sensor_height for a VERTICAL fit, else sensor_width) spans the fitted
    side, AUTO fitting the longer one; the lens shift is in units of that side."""
    width, height = (float(v) for v in image_size)
    fit = data.sensor_fit if data.sensor_fit != 'AUTO' else ('HORIZONTAL' if width >= height else 'VERTICAL')
    side = width if fit == 'HORIZONTAL' else height
    sensor = data.sensor_height if data.sensor_fit == 'VERTICAL' else data.sensor_width
    return data.lens * side / sensor, (width / 2 - data.shift_x * side, height / 2 + data.shift_y * side)


def opencv_camera_to_world(matrix_world: Matrix | np.ndarray) -> np.ndarray:
    """4x4 OpenCV camera -> world transform of a Blender camera object's ``matrix_world``
    (its scale left out): Blender cameras look down local -Z with +Y up."""
    M = np.array(matrix_world, dtype=np.float64)
    rotation = M[:3, :3] / np.linalg.norm(M[:3, :3], axis=0)
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation @ OPENCV_TO_BLENDER_CAMERA, M[:3, 3]
    return out
