# SPDX-License-Identifier: GPL-3.0-or-later
"""An engine result file (OUT.npz) for the importer: read and checked by the contract's one
validator (``backend.contract.results``, the rules the engine writes by), numpy only, no bpy.

Every problem is a :class:`ResultError` with a one-line message naming the field,
raised before anything is created in Blender.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError
from backend.contract.npz import read_arrays
from backend.contract.results import CAMERA_FIELDS, IMPORT_KEYS, WORLD_BODY_KEYS, Result

ResultError = InputError  # the contract's error: one line naming the file and field


@dataclass(frozen=True)
class WorldFrame:
    """The result's world on the floor (Y up, floor at Y = 0, metres): the body posed there and the
    footage camera's pose (backend.engine.world, video mode on a static camera)."""
    global_orient: np.ndarray   # (F, 3) axis-angle, world frame
    body_pose: np.ndarray       # (F, 69) (legs planted on the floor)
    transl: np.ndarray          # (F, 3) metres, world frame
    joints: np.ndarray          # (F, 24, 3) posed joints, world frame
    camera_R: np.ndarray        # (3, 3) OpenCV camera axes -> world
    camera_position: np.ndarray  # (3,) world
    foot_contacts: np.ndarray | None  # (F, 4) bool: left/right ankle, left/right ball of the foot
    camera_height: float | None = None     # m above the floor
    camera_pitch_deg: float | None = None  # > 0 looking down
    camera_roll_deg: float | None = None


@dataclass(frozen=True)
class MotionResult:
    global_orient: np.ndarray   # (F, 3) axis-angle, camera frame
    body_pose: np.ndarray       # (F, 69) axis-angle of joints 1..23
    transl: np.ndarray          # (F, 3) metres, camera frame
    betas: np.ndarray           # (F, 10) or (10,)
    joints: np.ndarray          # (F, 24, 3) posed joints, camera frame
    rest_joints: np.ndarray     # (24, 3) model frame, zero pose, result's shape
    rest_vertices: np.ndarray   # (V, 3) model frame
    faces: np.ndarray           # (T, 3) vertex indices
    skin_weights: np.ndarray    # (V, 24), rows sum to 1
    fps: float                  # footage frame rate
    info: dict
    image_size: tuple | None = None       # (width, height) px
    focal_length: float | None = None     # px
    principal_point: tuple | None = None  # (cx, cy) px
    world: WorldFrame | None = None       # the world frame on the floor, when the engine made one
    no_world: tuple = ()                  # (report level, why there is none) for the user, when world is None
    view_cameras: np.ndarray | None = None  # (V, 4, 4) calibrated multi-view: each view's OpenCV camera -> the
                                            # calibration's world (view 0 first), from its joints there
    view_lenses: tuple = ()  # per view of view_cameras: (image_size, focal_length, principal_point) like view 0's

    @property
    def num_frames(self) -> int:
        return len(self.transl)

    @property
    def has_camera(self) -> bool:
        return self.image_size is not None and self.focal_length is not None


def load(path: str | os.PathLike) -> MotionResult:
    """Read and validate ``path``; returns a :class:`MotionResult`."""
    path = Path(path)
    arrays = read_arrays(path, "choose the OUT.npz the refinement wrote")
    return from_arrays(arrays, path.name)


def from_arrays(arrays: Mapping, name: str | None = None) -> MotionResult:
    """Validate a dict of arrays laid out as OUT.npz (messages start with ``name`` when given);
    returns a :class:`MotionResult`."""
    checked = Result.from_arrays(arrays, name, required=IMPORT_KEYS)
    camera = {key: getattr(checked, key) for key in CAMERA_FIELDS}
    pair = {key: None if camera[key] is None else tuple(float(v) for v in camera[key])
            for key in ("image_size", "principal_point")}
    world, no_world = world_frame(checked)
    poses = view_cameras(checked)
    return MotionResult(
        **{key: getattr(checked, key) for key in IMPORT_KEYS if key != "fps"},
        fps=float(checked.fps), info=checked.info,
        focal_length=None if camera["focal_length"] is None else float(camera["focal_length"]), **pair,
        world=world, no_world=no_world, view_cameras=poses,
        view_lenses=() if poses is None else view_lenses(checked, len(poses)),
    )


def view_lenses(checked: Result, views: int) -> tuple:
    """((width, height), focal_px, (cx, cy)) of each of ``views`` views: the result's ``view_image_size``
    (V, 2), ``view_focal_length`` (V,), ``view_principal_point`` (V, 2), or view 0's camera where a file
    has none of a field (made before the engine wrote them) or a view count that differs."""
    def field(name: str, index: int):
        per_view, value = checked.get(f"view_{name}"), getattr(checked, name)
        if per_view is not None and len(per_view) == views:
            value = per_view[index]
        return None if value is None else float(value) if np.ndim(value) == 0 else tuple(float(v) for v in value)

    return tuple(tuple(field(name, index) for name in CAMERA_FIELDS) for index in range(views))


def view_cameras(checked: Result) -> np.ndarray | None:
    """(V, 4, 4) each view's OpenCV camera -> world pose of a calibrated multi-view result, or None: the
    rigid motion taking ``joints_world`` (F, 24, 3) onto each view's ``view_joints`` (V, F, 24, 3), inverted
    (least squares, exact for the engine's output: it poses one body in every calibrated view)."""
    world, views = checked.get("joints_world"), checked.get("view_joints")
    if world is None or views is None or np.ndim(views) != 4 or np.shape(views)[1:] != np.shape(world):
        return None
    return np.stack([_camera_pose(np.reshape(world, (-1, 3)), np.reshape(view, (-1, 3))) for view in views])


def _camera_pose(world: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(4, 4) camera -> world of the rigid motion with camera ~= R @ world + t: points (N, 3) both (Kabsch)."""
    world, camera = np.asarray(world, np.float64), np.asarray(camera, np.float64)
    mw, mc = world.mean(0), camera.mean(0)
    u, _, vt = np.linalg.svd((camera - mc).T @ (world - mw))
    d = np.sign(np.linalg.det(u @ vt))
    R = u @ np.diag([1.0, 1.0, d]) @ vt
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R.T, mw - R.T @ mc
    return pose


def world_frame(checked: Result) -> tuple[WorldFrame | None, tuple]:
    """(WorldFrame, ()) or (None, (report level, why not)) of a validated result.  A moving camera is a
    finding about the footage (a warning), the rest notes."""
    if all(getattr(checked, key) is not None for key in WORLD_BODY_KEYS):
        contacts = checked.foot_contacts
        scalar = lambda value: None if value is None else float(value)
        return WorldFrame(
            global_orient=checked.global_orient_world, body_pose=checked.body_pose_world,
            transl=checked.transl_world, joints=checked.joints_world, camera_R=checked.camera_R_world,
            camera_position=checked.camera_position,
            foot_contacts=None if contacts is None else np.asarray(contacts, dtype=bool),
            camera_height=scalar(checked.camera_height), camera_pitch_deg=scalar(checked.camera_pitch_deg),
            camera_roll_deg=scalar(checked.camera_roll_deg)), ()
    engine = checked.info.get("world")
    if isinstance(engine, dict) and engine.get("status") == "too little floor evidence":
        return None, ('INFO', f"the engine saw too little of the feet on the floor for a world frame "
                              f"({engine.get('floor_points', '?')} slow foot points; "
                              "a clip of at least a second is needed)")
    if isinstance(engine, dict) and engine.get("status", "ok") != "ok":
        return None, ('WARNING', f"the engine found no steady floor ({engine['status']}: the floor fitted over "
                                 f"the clip drifts {engine.get('drift_deg', '?')} deg / "
                                 f"{engine.get('drift_m', '?')} m)")
    if checked.joints_world is not None:
        return None, ('INFO', "it has joints_world only (calibrated multi-view: the calibration's world, not a floor)")
    return None, ('INFO', "it has no world frame (single frames, multi-view, or made before world frames existed)")
