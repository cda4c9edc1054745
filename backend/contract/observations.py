"""The engine's OBS.npz: keypoints and camera intrinsics (and extrinsics for calibrated views).

Validated into one layout for every mode: keypoints (V,F,17,3) with V = 1 for a single camera,
image_size (V,2), focal_length (V,), principal_point (V,2), optional cam_R (V,3,3) / cam_t (V,3),
fps.  Missing focal lengths are estimated from a field of view; non-finite keypoints become
missing points (confidence 0) rather than errors.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError, describe_shape
from backend.contract.npz import read_arrays

DEFAULT_FOV_DEG = 55.0  # horizontal-ish field of view of a typical phone/camcorder lens (~35 mm equivalent)


def focal_from_fov(image_size: np.ndarray, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Focal length (px) giving ``fov_deg`` across the long side of each image. image_size (V,2) -> (V,)."""
    return image_size.max(-1) / (2 * math.tan(math.radians(fov_deg) / 2))


def _per_view(value, name: str, v: int, tail: tuple, path) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape == tail:
        return np.broadcast_to(a, (v,) + tail).copy()
    if a.shape == (v,) + tail:
        return a
    want = " or ".join(str(s) for s in (tail, (v,) + tail))
    raise InputError(f"field '{name}' has shape {describe_shape(a)}, expected {want}", path=path)


def validate_observations(data: dict, mode: str, path="OBS", fov_deg: float = DEFAULT_FOV_DEG) -> dict:
    """Check and normalise OBS arrays for ``mode`` ('frame' | 'video' | 'multiview')."""
    if "keypoints" not in data:
        raise InputError("missing field 'keypoints': expected (F, 17, 3) COCO-17 [x_px, y_px, confidence]", path=path)
    kp = np.asarray(data["keypoints"], dtype=np.float64)
    if mode == "multiview":
        if kp.ndim != 4 or kp.shape[2:] != (17, 3) or kp.shape[0] < 2:
            raise InputError(f"field 'keypoints' has shape {describe_shape(kp)}, expected (V, F, 17, 3) with V >= 2 "
                             "views for --mode multiview", path=path)
    else:
        if kp.ndim != 3 or kp.shape[1:] != (17, 3):
            raise InputError(f"field 'keypoints' has shape {describe_shape(kp)}, expected (F, 17, 3) COCO-17 "
                             "[x_px, y_px, confidence]" + ("; several views need --mode multiview" if kp.ndim == 4 else ""),
                             path=path)
        kp = kp[None]
    v, f = kp.shape[:2]
    if f == 0:
        raise InputError("field 'keypoints' has no frames", path=path)
    bad = ~np.isfinite(kp).all(-1)
    kp = np.where(bad[..., None], 0.0, kp)
    kp[..., 2] = np.clip(kp[..., 2], 0.0, 1.0)
    if not (kp[..., 2] > 0).any():
        raise InputError("every keypoint has confidence 0: nothing to fit; check the detector output or the "
                         "confidence column", path=path)
    if "image_size" not in data:
        raise InputError("missing field 'image_size': expected (2,) [width, height] in pixels", path=path)
    size = _per_view(data["image_size"], "image_size", v, (2,), path)
    if not (np.isfinite(size).all() and (size > 0).all()):
        raise InputError(f"field 'image_size' must be positive [width, height], got {size.tolist()}", path=path)
    out = dict(keypoints=kp, image_size=size, missing_points=int(bad.sum()))
    if "focal_length" in data:
        out["focal_length"] = _per_view(data["focal_length"], "focal_length", v, (), path)
        out["focal_source"] = "given"
    else:
        out["focal_length"] = focal_from_fov(size, fov_deg)
        out["focal_source"] = f"estimated from a {fov_deg:g} degree field of view"
    if not (np.isfinite(out["focal_length"]).all() and (out["focal_length"] > 0).all()):
        raise InputError("field 'focal_length' must be positive (pixels)", path=path)
    out["principal_point"] = (_per_view(data["principal_point"], "principal_point", v, (2,), path)
                              if "principal_point" in data else size / 2)
    if "fps" in data:
        fps = float(np.asarray(data["fps"]))
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"field 'fps' must be positive, got {fps}", path=path)
        out["fps"] = fps
    out.update(_calibration(data, v, path))
    return out


def _calibration(data: dict, v: int, path) -> dict:
    """{'cam_R' (V, 3, 3), 'cam_t' (V, 3)} world -> OpenCV camera when ``data`` has them, else {}."""
    if ("cam_R" in data) != ("cam_t" in data):
        raise InputError("calibrated views need both 'cam_R' (V, 3, 3) and 'cam_t' (V, 3)", path=path)
    if "cam_R" in data:
        R, t = np.asarray(data["cam_R"], np.float64), np.asarray(data["cam_t"], np.float64)
        if R.shape != (v, 3, 3) or t.shape != (v, 3):
            raise InputError(f"fields 'cam_R'/'cam_t' have shapes {describe_shape(R)}/{describe_shape(t)}, "
                             f"expected ({v}, 3, 3)/({v}, 3) world-to-camera", path=path)
        if np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() > 1e-4:
            raise InputError("field 'cam_R' must hold rotation matrices", path=path)
        return {"cam_R": R, "cam_t": t}
    return {}


PER_VIEW_FIELDS = ("keypoints", "image_size", "focal_length", "principal_point")


def combine_views(views: list[dict], cameras=None, path="views") -> dict:
    """One multi-view OBS dict from validated one-camera OBS dicts (each V = 1, the same frames, view 0
    first); ``cameras`` = (cam_R (V, 3, 3), cam_t (V, 3)) world -> OpenCV camera for calibrated views."""
    frames = {obs["keypoints"].shape[1] for obs in views}
    if len(frames) != 1:
        raise InputError(f"the views have different frame counts ({', '.join(str(n) for n in sorted(frames))}); "
                         "give every view the same frames", path)
    out = {key: np.concatenate([obs[key] for obs in views]) for key in PER_VIEW_FIELDS}
    out["missing_points"] = sum(obs["missing_points"] for obs in views)
    out["focal_source"] = views[0]["focal_source"]
    if "fps" in views[0]:
        out["fps"] = views[0]["fps"]
    if cameras is not None:
        out.update(_calibration(dict(cam_R=cameras[0], cam_t=cameras[1]), len(views), path))
    return out


def file_arrays(obs: dict, mode: str) -> dict:
    """A validated OBS dict as OBS.npz stores it (``numpy.savez(path, **arrays)``): one camera without
    the view axis, bookkeeping fields (missing_points, focal_source) left out."""
    keep = PER_VIEW_FIELDS + ("cam_R", "cam_t")
    arrays = {key: obs[key] if mode == "multiview" else obs[key][0] for key in keep if key in obs}
    if "fps" in obs:
        arrays["fps"] = np.float64(obs["fps"])
    return arrays


def load_observations(path, mode: str, fov_deg: float = DEFAULT_FOV_DEG, **overrides) -> dict:
    """Reads and validates OBS.npz; ``overrides`` (e.g. focal_length, principal_point; None = keep the
    file's) replace fields of the file before validation."""
    path = Path(path)
    data = read_arrays(path, "write the observations with numpy.savez (see README, OBS.npz)")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_observations(data, mode, path=path, fov_deg=fov_deg)
