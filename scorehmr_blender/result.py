# SPDX-License-Identifier: GPL-3.0-or-later
"""An engine result file (OUT.npz) for the importer: read and checked by the contract's one
validator (``backend.contract.results``, the rules the engine writes by), numpy only, no bpy.

Every problem is a :class:`ResultError` with a one-line message naming the field,
raised before anything is created in Blender.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runner.engine import contract

ResultError = contract("errors").InputError  # the contract's error: one line naming the file and field


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

    @property
    def num_frames(self):
        return len(self.transl)

    @property
    def has_camera(self):
        return self.image_size is not None and self.focal_length is not None


def load(path):
    """Read and validate ``path``; returns a :class:`MotionResult`."""
    path = Path(path)
    arrays = contract("npz").read_arrays(path, "choose the OUT.npz the refinement wrote")
    return from_arrays(arrays, path.name)


def from_arrays(arrays, name=None):
    """Validate a dict of arrays laid out as OUT.npz (messages start with ``name`` when given);
    returns a :class:`MotionResult`."""
    results = contract("results")
    checked = results.validate_results(arrays, name, required=results.IMPORT_KEYS)
    camera = {key: checked.get(key) for key in results.CAMERA_FIELDS}
    pair = {key: None if camera[key] is None else tuple(float(v) for v in camera[key])
            for key in ("image_size", "principal_point")}
    return MotionResult(
        **{key: checked[key] for key in results.IMPORT_KEYS if key != "fps"},
        fps=float(checked["fps"]), info=checked["info"],
        focal_length=None if camera["focal_length"] is None else float(camera["focal_length"]), **pair,
    )
