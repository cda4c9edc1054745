# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and check an engine result file (OUT.npz): numpy only, no bpy.

Every problem is a :class:`ResultError` with a one-line message naming the field,
raised before anything is created in Blender.
"""

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .convert import JOINT_NAMES, NUM_JOINTS, PARENTS

# Required arrays and their shapes; letters are sizes shared between fields
# (F frames, V vertices, T triangles).
SHAPES = {
    "global_orient": ("F", 3),
    "body_pose": ("F", (NUM_JOINTS - 1) * 3),
    "transl": ("F", 3),
    "joints": ("F", NUM_JOINTS, 3),
    "rest_joints": (NUM_JOINTS, 3),
    "rest_vertices": ("V", 3),
    "faces": ("T", 3),
    "skin_weights": ("V", NUM_JOINTS),
}
REQUIRED = (*SHAPES, "betas", "fps")
# Footage intrinsics for the camera: top-level arrays, or keys of the info JSON.
CAMERA_FIELDS = ("image_size", "focal_length", "principal_point")


class ResultError(ValueError):
    """A result the importer cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class MotionResult:
    global_orient: np.ndarray   # (F, 3) axis-angle, camera frame
    body_pose: np.ndarray       # (F, 69) axis-angle of joints 1..23
    transl: np.ndarray          # (F, 3) metres, camera frame
    betas: np.ndarray           # (F, B) or (B,)
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
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ResultError(f"{path.name}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as ex:
        raise ResultError(f"{path.name}: not a readable .npz result ({ex})") from None
    try:
        return from_arrays(arrays)
    except ResultError as ex:
        raise ResultError(f"{path.name}: {ex}") from None


def from_arrays(arrays):
    """Validate a dict of arrays laid out as OUT.npz; returns a :class:`MotionResult`."""
    for name in REQUIRED:
        if name not in arrays:
            raise ResultError(f"field '{name}' is missing")
    sizes = {}
    fields = {name: _checked(name, arrays[name], shape, sizes) for name, shape in SHAPES.items()}
    frames, verts = sizes["F"], sizes["V"]
    if frames == 0:
        raise ResultError("the result has no frames")

    faces = fields["faces"]
    if faces.dtype.kind not in "iu":
        raise ResultError(f"'faces' must hold integers, not {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= verts):
        raise ResultError(f"'faces' has vertex indices outside 0..{verts - 1}")

    weights = fields["skin_weights"]
    bad = np.nonzero((weights < 0).any(1) | (np.abs(weights.sum(1) - 1) > 1e-3))[0]
    if len(bad):
        raise ResultError(f"'skin_weights' of vertex {bad[0]} are negative or do not sum to 1")

    rest = fields["rest_joints"]
    for j, p in enumerate(PARENTS[1:], start=1):
        if np.linalg.norm(rest[j] - rest[p]) < 1e-4:
            raise ResultError(f"'rest_joints': {JOINT_NAMES[j]} sits on its parent {JOINT_NAMES[p]}")

    betas = _float_array("betas", arrays["betas"])
    if not (betas.ndim == 1 or (betas.ndim == 2 and len(betas) == frames)):
        raise ResultError(f"'betas' has shape {betas.shape}, expected (B,) or ({frames}, B)")

    fps = _positive_scalar("fps", arrays["fps"])
    info = _info(arrays.get("info"))
    camera = {name: arrays[name] if name in arrays else info.get(name) for name in CAMERA_FIELDS}
    image_size = _optional_pair("image_size", camera["image_size"])
    if image_size is not None and min(image_size) <= 0:
        raise ResultError(f"'image_size' must be positive, got {image_size}")
    focal = camera["focal_length"]
    focal = None if focal is None else _positive_scalar("focal_length", focal)

    return MotionResult(
        **{name: fields[name] for name in SHAPES},
        betas=betas, fps=fps, info=info, image_size=image_size, focal_length=focal,
        principal_point=_optional_pair("principal_point", camera["principal_point"]),
    )


def _float_array(name, value):
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ResultError(f"'{name}' is not numeric") from None
    if not np.isfinite(array).all():
        raise ResultError(f"'{name}' contains NaN or infinite values")
    return array


def _checked(name, value, shape, sizes):
    """The array, after checking its shape against ``shape`` (binding size letters)."""
    value = np.asarray(value)
    ok = value.ndim == len(shape) and all(
        size == sizes.setdefault(dim, size) if isinstance(dim, str) else size == dim
        for dim, size in zip(shape, value.shape))
    if not ok:
        expected = ", ".join(str(sizes.get(dim, dim)) for dim in shape)
        raise ResultError(f"'{name}' has shape {value.shape}, expected ({expected})")
    return value if name == "faces" else _float_array(name, value)


def _positive_scalar(name, value):
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise ResultError(f"'{name}' must be one number, got shape {array.shape}")
    number = float(array.reshape(()))
    if not (math.isfinite(number) and number > 0):
        raise ResultError(f"'{name}' must be a positive number, got {number}")
    return number


def _optional_pair(name, value):
    if value is None:
        return None
    array = _float_array(name, value)
    if array.shape != (2,):
        raise ResultError(f"'{name}' has shape {array.shape}, expected (2,)")
    return tuple(float(v) for v in array)


def _info(value):
    """The info JSON as a dict ({} when absent)."""
    if value is None:
        return {}
    text = np.asarray(value).reshape(()).item() if np.asarray(value).size == 1 else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        info = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict):
        raise ResultError("'info' is not a JSON object string")
    return info
