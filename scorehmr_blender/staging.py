# SPDX-License-Identifier: GPL-3.0-or-later
"""Staging an imported motion in the scene: numpy only, no bpy (tested without Blender).

Where: a result without a world frame (single frame, video, uncalibrated
multi-view) is keyed in front of a camera at the world origin (convert.py), so
its floor is wherever the camera's height puts it.  :func:`floor_placement`
moves camera and body together (one translation, so the body still lines up
with the footage seen through the camera) to put the clip's lowest contact on
Z = 0 and, optionally, the pelvis of the first frame above the world origin.

When: a result at another frame rate than the scene's lands on fractional scene
frames; :func:`whole_frame_keys` resamples the keys onto whole scene frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backend.contract.rotations import slerp

from .convert import CAMERA_TO_WORLD, PARENTS, local_rotations

if TYPE_CHECKING:
    from .result import MotionResult

# The floor is the 10th percentile of the per-frame lowest body point: a few frames
# whose estimate dips through the floor (or a jump's frames in the air) do not move it.
CONTACT_PERCENTILE = 10.0
_CHUNK_FRAMES = 32  # frames posed at once when looking for the lowest point (bounds memory)


def default_camera_to_world() -> np.ndarray:
    """(4, 4) the footage camera at the world origin looking along +Y (convert.CAMERA_TO_WORLD)."""
    matrix = np.eye(4)
    matrix[:3, :3] = CAMERA_TO_WORLD
    return matrix


def forward_kinematics(global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray,
                       rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rotations G (F, 24, 3, 3) and joint positions P (F, 24, 3) of SMPL's skeleton
    without pose correctives, as the skinned body in Blender deforms: camera frame, metres."""
    R = local_rotations(global_orient, body_pose)
    rest = np.asarray(rest_joints, dtype=np.float64)
    G, P = np.empty_like(R), np.empty(R.shape[:2] + (3,))
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            G[:, j], P[:, j] = R[:, j], rest[j] + np.asarray(transl, dtype=np.float64)
        else:
            G[:, j] = G[:, parent] @ R[:, j]
            P[:, j] = P[:, parent] + G[:, parent] @ (rest[j] - rest[parent])
    return G, P


def lowest_heights(res: MotionResult, camera_to_world: np.ndarray) -> np.ndarray:
    """The lowest point of the skinned body (F,), in world Z, for each frame.

    Linear blend skinning of the rest vertices (what Blender's armature modifier
    shows), only the height: z_v = m . sum_j w_vj (G_j (v - J_j) + P_j) + c, with
    (m, c) the world-Z row of ``camera_to_world`` (4, 4)."""
    G, P = forward_kinematics(res.global_orient, res.body_pose, res.transl, res.rest_joints)
    row = np.asarray(camera_to_world, dtype=np.float64)[2]
    m, c = row[:3], row[3]
    g = np.einsum("fjab,a->fjb", G, m)                             # m . G_j x = g_j . x
    offset = P @ m - np.einsum("fjb,jb->fj", g, res.rest_joints)   # m . (P_j - G_j J_j)
    weights, verts = np.asarray(res.skin_weights, dtype=np.float64), res.rest_vertices
    lowest = np.empty(len(G))
    for s in range(0, len(G), _CHUNK_FRAMES):
        part = slice(s, s + _CHUNK_FRAMES)
        blended = weights @ g[part].transpose(1, 0, 2).reshape(len(weights.T), -1)  # (V, f * 3): one matmul
        heights = (blended.reshape(len(verts), -1, 3) * verts[:, None]).sum(-1).T + offset[part] @ weights.T
        lowest[part] = heights.min(1) + c
    return lowest


def contact_height(lowest: np.ndarray) -> float:
    """The clip's floor height from its per-frame lowest points (F,): a low percentile, robust
    to a few frames through the floor or off it."""
    return float(np.percentile(np.asarray(lowest, dtype=np.float64), CONTACT_PERCENTILE))


def floor_placement(res: MotionResult, to_origin: bool = True, camera_to_world: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) world translation putting the result's lowest contact on Z = 0 and, with
    ``to_origin``, the first frame's pelvis above the world origin (X = Y = 0).

    camera_to_world (4, 4): where the result is keyed before (default: the footage
    camera at the origin).  Apply it as ``placement @ camera_to_world``."""
    before = default_camera_to_world() if camera_to_world is None else np.asarray(camera_to_world, np.float64)
    shift = np.zeros(3)
    shift[2] = -contact_height(lowest_heights(res, before))
    if to_origin:
        pelvis = before[:3, :3] @ (res.rest_joints[0] + res.transl[0]) + before[:3, 3]
        shift[:2] = -pelvis[:2]
    placement = np.eye(4)
    placement[:3, 3] = shift
    return placement


# -- timing ----------------------------------------------------------------------------

def whole_frame_keys(frames: np.ndarray, quaternions: np.ndarray,
                     locations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys resampled onto the whole scene frames inside ``frames``.

    frames (F,) increasing scene frames of the result's frames (fractional when the
    rates differ); quaternions (F, J, 4) sign-continuous, locations (F, L).
    Returns (whole frames (N,), quaternions (N, J, 4) slerped, locations (N, L)
    linearly interpolated); keys already on whole frames come back unchanged."""
    frames = np.asarray(frames, dtype=np.float64)
    whole = np.arange(np.ceil(frames[0] - 1e-6), np.floor(frames[-1] + 1e-6) + 1)
    if len(frames) == len(whole) and np.allclose(frames, whole, atol=1e-6):
        return whole, np.asarray(quaternions, np.float64), np.asarray(locations, np.float64)
    upper = np.clip(np.searchsorted(frames, whole, side="right"), 1, len(frames) - 1)
    lower = upper - 1
    t = np.clip((whole - frames[lower]) / (frames[upper] - frames[lower]), 0.0, 1.0)
    quaternions = np.asarray(quaternions, np.float64)
    q = slerp(quaternions[lower], quaternions[upper], t.reshape((-1,) + (1,) * (quaternions.ndim - 1)))
    loc = locations[lower] + t[:, None] * (locations[upper] - locations[lower])
    return whole, q, loc


def scene_rate(fps: float) -> tuple[int, float]:
    """Blender's (fps, fps_base) for a frame rate: 30000/1001 -> (30, 1.001)."""
    whole = max(1, round(fps))
    return whole, (1.0 if abs(whole - fps) < 1e-6 else whole / fps)
