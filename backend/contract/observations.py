"""The engine's OBS.npz: keypoints and camera intrinsics (and extrinsics for calibrated views).

Validated into one layout for every mode, an :class:`Observations` value: keypoints (V,F,17,3) with
V = 1 for a single camera, image_size (V,2), focal_length (V,), principal_point (V,2), optional
cam_R (V,3,3) / cam_t (V,3), fps.  Missing focal lengths are estimated from a field of view;
non-finite keypoints become missing points (confidence 0) rather than errors.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError, describe_shape
from backend.contract.npz import read_arrays

DEFAULT_FOV_DEG = 55.0  # horizontal-ish field of view of a typical phone/camcorder lens (~35 mm equivalent)


def focal_from_fov(image_size: np.ndarray, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Focal length (px) giving ``fov_deg`` across the long side of each image. image_size (V,2) -> (V,)."""
    return image_size.max(-1) / (2 * math.tan(math.radians(fov_deg) / 2))


@dataclass(frozen=True, eq=False)
class Observations(Mapping):
    """Validated observations of V cameras over F frames (:func:`validate_observations` makes them).

    Also a read-only mapping of its fields that are set (``obs["keypoints"]``, ``"cam_R" in obs``), the
    validated OBS dict the engine's modes read."""
    keypoints: np.ndarray                # (V, F, 17, 3) COCO-17 [x_px, y_px, confidence], missing points 0
    image_size: np.ndarray               # (V, 2) [width, height] px
    focal_length: np.ndarray             # (V,) px
    principal_point: np.ndarray          # (V, 2) px, OpenCV (y down)
    missing_points: int = 0              # non-finite keypoints made missing (confidence 0)
    focal_source: str = "given"          # 'given' or how the focal length was estimated
    fps: float | None = None             # the footage's rate, when known
    cam_R: np.ndarray | None = None      # (V, 3, 3) world -> OpenCV camera, calibrated views only
    cam_t: np.ndarray | None = None      # (V, 3)

    @property
    def num_views(self) -> int:
        return self.keypoints.shape[0]

    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[1]

    @property
    def calibrated(self) -> bool:
        return self.cam_R is not None

    def file_arrays(self, mode: str) -> dict[str, np.ndarray]:
        """The arrays OBS.npz stores (``numpy.savez(path, **arrays)``): one camera without the view axis,
        bookkeeping fields (missing_points, focal_source) left out."""
        keep = PER_VIEW_FIELDS + ("cam_R", "cam_t")
        arrays = {key: self[key] if mode == "multiview" else self[key][0] for key in keep if key in self}
        if self.fps is not None:
            arrays["fps"] = np.float64(self.fps)
        return arrays

    def __getitem__(self, key: str):
        value = getattr(self, key, None) if key in _FIELD_NAMES else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in _FIELD_NAMES if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FIELD_NAMES = tuple(f.name for f in fields(Observations))


def _per_view(value, name: str, v: int, tail: tuple, path) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape == tail:
        return np.broadcast_to(a, (v,) + tail).copy()
    if a.shape == (v,) + tail:
        return a
    want = " or ".join(str(s) for s in (tail, (v,) + tail))
    raise InputError(f"field '{name}' has shape {describe_shape(a)}, expected {want}", path=path)


def validate_observations(data: Mapping, mode: str, path="OBS",
                          fov_deg: float = DEFAULT_FOV_DEG) -> Observations:
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
                             "[x_px, y_px, confidence]"
                             + ("; several views need --mode multiview" if kp.ndim == 4 else ""),
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
    return Observations(**out)


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


def combine_views(views: list[Observations], cameras: tuple | None = None, path="views") -> Observations:
    """Multi-view observations from validated one-camera ones (each V = 1, the same frames, view 0
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
    return Observations(**out)


def load_observations(path, mode: str, fov_deg: float = DEFAULT_FOV_DEG, **overrides) -> Observations:
    """Reads and validates OBS.npz; ``overrides`` (e.g. focal_length, principal_point; None = keep the
    file's) replace fields of the file before validation."""
    path = Path(path)
    data = read_arrays(path, "write the observations with numpy.savez (see README, OBS.npz)")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_observations(data, mode, path=path, fov_deg=fov_deg)
