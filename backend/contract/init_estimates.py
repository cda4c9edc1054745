"""Initial SMPL estimates from outside regressors -> the engine's INIT layout.

INIT layout (the engine contract): ``global_orient`` (F, 3), ``body_pose`` (F, 69),
``betas`` (F, 10) or (10,), ``transl`` (F, 3); axis-angle, metres, OpenCV camera
frame (x right, y down, z forward), float32.

``load_init(path, image_size=None, focal_length=None) -> dict`` reads

* an ``.npz`` already in the INIT layout (rotation matrices (F, 1|23, 3, 3) are
  accepted for the poses too);
* a 4D-Humans / HMR 2.0 style ``.npz`` or ``.pkl`` (``.pkl`` only when that
  path is given: it is unpickled with a numpy-only whitelist) holding
  ``global_orient`` (F, 1, 3, 3) | (F, 3), ``body_pose`` (F, 23, 3, 3) | (F, 69),
  ``betas`` (F, 10), and either ``pred_cam_t_full`` (F, 3) or the weak-perspective
  crop camera ``pred_cam`` (F, 3) = [s, tx, ty] with ``box_center`` (F, 2) and
  ``box_size`` (F,) in pixels (and optionally ``img_size`` [W, H],
  ``focal_length``).  The poses may also sit in a nested ``pred_smpl_params``
  dict, as HMR 2.0's model output has them.  HMR 2.0's SMPL output is in the
  OpenCV camera frame already, so the poses pass through unchanged.

``cam_crop_to_full`` is HMR 2.0's conversion (hmr2/utils/renderer.py) with the
principal point at the image centre.  The focal length must be the one the
refinement uses (OBS ``focal_length``); the default is HMR 2.0's own,
``hmr2_focal_length`` = 5000 / 256 * max(W, H).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError, describe_shape
from backend.contract.frames import FrameRange
from backend.contract.npz import read_arrays
from backend.contract.rotations import matrix_to_axis_angle

__all__ = [
    "INIT_KEYS", "HMR2_FOCAL_LENGTH", "HMR2_IMAGE_SIZE",
    "load_init", "validate_init", "slice_init", "cam_crop_to_full", "hmr2_focal_length",
]

INIT_KEYS = ("global_orient", "body_pose", "betas", "transl")
NUM_BETAS = 10
HMR2_FOCAL_LENGTH = 5000.0   # HMR 2.0 config EXTRA.FOCAL_LENGTH, for its MODEL.IMAGE_SIZE crop
HMR2_IMAGE_SIZE = 256
_ROTATION_TOL = 1e-2


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------

def hmr2_focal_length(image_size) -> float:
    """HMR 2.0's full-image focal length in px for an image of ``image_size`` [W, H]."""
    return HMR2_FOCAL_LENGTH / HMR2_IMAGE_SIZE * float(np.max(image_size))


def cam_crop_to_full(pred_cam, box_center, box_size, image_size, focal_length) -> np.ndarray:
    """Weak-perspective crop camera -> full-image perspective translation (F, 3) float64.

    pred_cam (F, 3) [s, tx, ty], box_center (F, 2) px, box_size (F,) px,
    image_size (2,) or (F, 2) [W, H], focal_length scalar or (F,) px.  With
    ``bs = box_size * s``:  tz = 2 f / bs,  tx_full = tx + 2 (cx - W/2) / bs,
    ty_full = ty + 2 (cy - H/2) / bs.
    """
    cam = np.asarray(pred_cam, dtype=np.float64)
    center = np.asarray(box_center, dtype=np.float64)
    size = np.asarray(box_size, dtype=np.float64).reshape(-1)
    wh = np.broadcast_to(np.asarray(image_size, dtype=np.float64), center.shape)
    bs = size * cam[:, 0]
    tz = 2.0 * np.asarray(focal_length, dtype=np.float64) / bs
    tx = cam[:, 1] + 2.0 * (center[:, 0] - wh[:, 0] / 2.0) / bs
    ty = cam[:, 2] + 2.0 * (center[:, 1] - wh[:, 1] / 2.0) / bs
    return np.stack([tx, ty, np.broadcast_to(tz, tx.shape)], axis=-1)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array/dtype/scalar reconstruction globals; anything else is refused."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    })

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            import importlib

            try:
                return getattr(importlib.import_module(module), name)
            except ImportError:  # numpy 1.x <-> 2.x module names
                alt = module.replace("numpy._core", "numpy.core") if "_core" in module \
                    else module.replace("numpy.core", "numpy._core")
                return getattr(importlib.import_module(alt), name)
        if (module == "numpy" and isinstance(getattr(np, name, None), type)
                and issubclass(getattr(np, name), np.generic)):
            return getattr(np, name)  # scalar types such as numpy.float32
        if module == "_codecs" and name == "encode":
            return _latin1_encode  # protocol <= 2 stores array bytes as latin-1 text
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed")
    return text.encode("latin1")


def _read_file(path: Path) -> dict:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError("initial-estimate file not found; check the path", path)
    if suffix == ".npz":
        return read_arrays(path, "save the arrays with numpy.savez")
    if suffix in (".pkl", ".pickle"):
        try:
            with open(path, "rb") as fh:
                data = _NumpyOnlyUnpickler(fh).load()
        except pickle.UnpicklingError as exc:
            raise InputError(f"pickle holds more than numpy arrays ({exc}); convert tensors with .cpu().numpy() "
                             f"or save the arrays with numpy.savez", path) from None
        except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise InputError(f"cannot read as a pickle ({type(exc).__name__}: {exc}); save the arrays with "
                             f"numpy.savez", path) from None
        if not isinstance(data, dict):
            raise InputError(f"pickle holds a {type(data).__name__}, expected a dict of arrays; save "
                             f"{{'global_orient': ..., 'body_pose': ..., ...}}", path)
        return data
    raise InputError(f"unknown initial-estimate file type '{suffix}'; use .npz (or an explicit .pkl)", path)


def _flatten(data: dict) -> dict:
    """Lifts HMR 2.0's nested ``pred_smpl_params`` dict to the top level."""
    out = {k: v for k, v in data.items() if not isinstance(v, dict)}
    nested = data.get("pred_smpl_params", data.get("smpl_params"))
    if isinstance(nested, dict):
        out.update(nested)
    return out


def _array(data: dict, key: str, path) -> np.ndarray:
    if key not in data:
        raise InputError(f"has no field '{key}' (fields: {', '.join(sorted(data)) or 'none'}); add it", path)
    try:
        arr = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"field '{key}' is not a numeric array; store it as a float numpy array", path) from None
    if not np.all(np.isfinite(arr)):
        raise InputError(f"field '{key}' has NaN/inf values in {int(np.sum(~np.isfinite(arr)))} entries; "
                         f"re-run the estimator or drop those frames", path)
    return arr


def _pose(data: dict, key: str, joints: int, path) -> np.ndarray:
    """(F, J, 3, 3) | (F, 3, 3) [J = 1] | (F, J, 3) | (F, 3 J) -> (F, 3 J) axis-angle."""
    arr = _array(data, key, path)
    if arr.shape[-2:] == (3, 3) and ((arr.ndim == 4 and arr.shape[1] == joints) or (arr.ndim == 3 and joints == 1)):
        mats = arr.reshape(arr.shape[0], joints, 3, 3)
        err = np.abs(np.swapaxes(mats, -1, -2) @ mats - np.eye(3)).max(initial=0.0)
        if err > _ROTATION_TOL or np.any(np.linalg.det(mats) <= 0):
            raise InputError(f"field '{key}' holds matrices that are not rotations (|R^T R - I| up to {err:.3g}); "
                             f"store rotation matrices or axis-angle", path)
        return matrix_to_axis_angle(mats).reshape(arr.shape[0], 3 * joints)
    if (arr.ndim == 3 and arr.shape[1:] == (joints, 3)) or (arr.ndim == 2 and arr.shape[1] == 3 * joints):
        return arr.reshape(arr.shape[0], 3 * joints)
    raise InputError(f"field '{key}' has shape {describe_shape(arr)}, expected (F, {joints}, 3, 3) rotation "
                     f"matrices or (F, {3 * joints}) axis-angle; reshape it to one of those", path)


def _hmr2_transl(data: dict, path, image_size, focal_length) -> np.ndarray:
    if "pred_cam_t_full" in data:
        return _array(data, "pred_cam_t_full", path)
    cam = _array(data, "pred_cam", path)
    center = _array(data, "box_center", path)
    size = _array(data, "box_size", path).reshape(-1)
    if cam.ndim != 2 or cam.shape[1] != 3:
        raise InputError(f"field 'pred_cam' has shape {describe_shape(cam)}, expected (F, 3) [s, tx, ty]; "
                         f"store one weak-perspective camera per frame", path)
    frames = cam.shape[0]
    if center.shape != (frames, 2):
        raise InputError(f"field 'box_center' has shape {describe_shape(center)}, expected ({frames}, 2) px, "
                         f"one box centre per pred_cam row", path)
    if size.shape != (frames,) or np.any(size <= 0):
        raise InputError(f"field 'box_size' has shape {describe_shape(size)} or non-positive sizes, expected "
                         f"({frames},) positive px, one square box size per pred_cam row", path)
    if np.any(cam[:, 0] <= 0):
        raise InputError(f"field 'pred_cam' has a non-positive scale s in {int(np.sum(cam[:, 0] <= 0))} frames; "
                         f"drop those frames or re-run the estimator", path)
    if image_size is None:
        if "img_size" not in data:
            raise InputError("has 'pred_cam' but no 'img_size'; pass the footage size (--image-size W H) to convert "
                             "the crop camera to the full frame", path)
        image_size = _array(data, "img_size", path)
    wh = np.asarray(image_size, dtype=np.float64)
    if wh.shape not in ((2,), (frames, 2)) or np.any(wh <= 0):
        raise InputError(f"image size has shape {describe_shape(wh)}, expected (2,) or ({frames}, 2) positive "
                         f"[W, H] px; pass the footage size", path)
    if focal_length is None:
        focal_length = data["focal_length"] if "focal_length" in data else hmr2_focal_length(wh.max())
    return cam_crop_to_full(cam, center, size, wh, focal_length)


def validate_init(init: dict, path="INIT") -> dict:
    """Checks and returns an INIT dict as float32 arrays (global_orient, body_pose, betas, transl)."""
    go = _pose(init, "global_orient", 1, path)
    bp = _pose(init, "body_pose", 23, path)
    betas = _array(init, "betas", path)
    transl = _array(init, "transl", path)
    frames = go.shape[0]
    if bp.shape[0] != frames:
        raise InputError(f"field 'body_pose' has {bp.shape[0]} frames but 'global_orient' has {frames}; give both "
                         f"the same frames", path)
    if betas.shape not in ((NUM_BETAS,), (frames, NUM_BETAS)):
        raise InputError(f"field 'betas' has shape {describe_shape(betas)}, expected ({frames}, {NUM_BETAS}) or "
                         f"({NUM_BETAS},) SMPL shape coefficients; keep the first 10 (betas[..., :10])", path)
    if transl.shape != (frames, 3):
        raise InputError(f"field 'transl' has shape {describe_shape(transl)}, expected ({frames}, 3) camera-frame "
                         f"metres, one per frame", path)
    behind = int(np.sum(transl[:, 2] <= 0))
    if behind:
        raise InputError(f"field 'transl' puts the body at or behind the camera (z <= 0) in {behind} frames; INIT is "
                         f"in the OpenCV camera frame (z forward), check the camera conversion", path)
    out = {"global_orient": go, "body_pose": bp, "betas": betas, "transl": transl}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def load_init(path, image_size=None, focal_length=None) -> dict:
    """Reads an initial estimate (see module docstring) -> validated INIT dict, float32 axis-angle.

    image_size [W, H] px and focal_length px are used only to convert an HMR
    2.0 crop camera; they default to the file's ``img_size`` / ``focal_length``,
    then to ``hmr2_focal_length``.
    """
    p = Path(path)
    data = _flatten(_read_file(p))
    if "transl" not in data:
        if "pred_cam" not in data and "pred_cam_t_full" not in data:
            raise InputError(f"has neither 'transl' (INIT layout) nor 'pred_cam' (HMR 2.0 crop camera); fields: "
                             f"{', '.join(sorted(data)) or 'none'}; add the camera translation", p)
        data["transl"] = _hmr2_transl(data, p, image_size, focal_length)
    return validate_init(data, p)


def slice_init(init: dict, frames: FrameRange, keypoint_frames: int, path="INIT") -> dict:
    """The initial estimate for ``frames`` (indices into the ``keypoint_frames`` keypoint frames):
    ``init`` as it is when it has one estimate per chosen frame, its rows ``frames`` when it has one
    per keypoint frame (betas (10,) are kept); InputError otherwise."""
    have = len(init["global_orient"])
    if have == frames.count:
        return init
    if have != keypoint_frames:
        raise InputError(f"has {have} frames but the keypoints have {keypoint_frames} (refining {frames.count}): "
                         "give one initial estimate per keypoint frame, or per refined frame", path)
    return {key: value[frames.start:frames.stop] if np.ndim(value) == 2 and len(value) == have else value
            for key, value in init.items()}
