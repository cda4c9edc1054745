"""The engine's result file OUT.npz: validated atomic writing, reading back, per-frame JSON export.

OUT.npz (the engine contract):
``global_orient`` (F, 3), ``body_pose`` (F, 69), ``betas`` (F, 10) | (10,),
``transl`` (F, 3) (axis-angle, metres, OpenCV camera frame), ``joints`` (F, 24, 3),
``keypoints3d`` (F, 17, 3) (also (F, 23, 3): COCO-17 + 6 foot points),
``init_joints`` (F, 24, 3), ``reprojection_error_px`` (F,) (NaN where a frame
had no keypoints), ``info`` (JSON object string), and for the add-on
``rest_joints`` (24, 3), ``rest_vertices`` (V, 3), ``faces`` (Fc, 3) int32,
``skin_weights`` (V, 24) float32, ``fps`` (scalar).  Other arrays are kept.

``write_results(path, results, force=False)``  validates, writes a temp file in the
    destination folder and ``os.replace``s it into place, so readers never see
    a half-written file; an existing file is kept unless ``force``.
``read_results(path)``  -> dict of arrays, ``info`` parsed to a dict.
``export_frames_json(results_or_path, json_path, force=False)``  one JSON object
    per frame with the SMPL parameters, joints and reprojection error.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from backend.body.smpl_layout import COCO17_NAMES, FOOT6_NAMES, SMPL_JOINT_NAMES
from backend.io.errors import InputError, describe_shape

__all__ = [
    "CORE_KEYS", "ADDON_KEYS", "JSON_FORMAT",
    "check_writable", "flatten_multiview", "validate_results", "write_results", "read_results", "export_frames_json",
]

CORE_KEYS = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
             "reprojection_error_px", "info")
ADDON_KEYS = ("rest_joints", "rest_vertices", "faces", "skin_weights", "fps")
JSON_FORMAT = "scorehmr-frames/1"
_DECIMALS = 6  # micrometres / micro-radians: far below the estimates' accuracy


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _match(shape: tuple, patterns: list[tuple], dims: dict) -> dict | None:
    """``dims`` extended by the names of the first pattern (ints and names) that ``shape`` fits, else None."""
    for pattern in patterns:
        bound = dict(dims)
        if len(shape) == len(pattern) and all(
                size == want if isinstance(want, int) else bound.setdefault(want, size) == size
                for size, want in zip(shape, pattern)):
            return bound
    return None


# key -> allowed shape patterns (names: F frames, V vertices, C faces, K keypoints).
_SHAPES = {
    "global_orient": [("F", 3)], "body_pose": [("F", 69)], "betas": [("F", 10), (10,)], "transl": [("F", 3)],
    "joints": [("F", 24, 3)], "keypoints3d": [("F", 17, 3), ("F", 23, 3)], "init_joints": [("F", 24, 3)],
    "reprojection_error_px": [("F",)], "rest_joints": [(24, 3)], "rest_vertices": [("V", 3)],
    "faces": [("C", 3)], "skin_weights": [("V", 24)], "fps": [()],
}


def _info_dict(value, path) -> dict:
    if isinstance(value, dict):
        return value
    try:
        text = value.item() if isinstance(value, np.ndarray) else value
        info = json.loads(text)
    except (TypeError, ValueError):
        info = None
    if not isinstance(info, dict):
        raise InputError("field 'info' is not a JSON object string; store info=json.dumps({...})", path)
    return info


def validate_results(results: dict, path="OUT", require_addon: bool = True) -> dict:
    """Checks an OUT dict against the contract; returns arrays (float32, faces int32, fps float64), info as dict."""
    required = CORE_KEYS + (ADDON_KEYS if require_addon else ())
    missing = [k for k in required if k not in results]
    if missing:
        raise InputError(f"has no field '{missing[0]}' (missing: {', '.join(missing)}); write every OUT.npz field "
                         f"of the engine contract", path)
    out, dims = {}, {}
    # Contract keys first, so F is bound by global_orient and V by rest_vertices.
    known = CORE_KEYS + ADDON_KEYS
    order = [k for k in known if k in results] + [k for k in results if k not in known]
    for key in order:
        value = results[key]
        if key == "info":
            out[key] = _info_dict(value, path)
            continue
        arr = np.asarray(value)
        if arr.dtype == object:
            raise InputError(f"field '{key}' is an object array; store plain numeric arrays", path)
        if key in _SHAPES:
            if not np.issubdtype(arr.dtype, np.number):
                raise InputError(f"field '{key}' has dtype {arr.dtype}, expected numbers", path)
            bound = _match(arr.shape, _SHAPES[key], dims)
            if bound is None:
                want = " or ".join(str(tuple(pat)).replace("'", "") for pat in _SHAPES[key])
                per_frame = any("F" in pat for pat in _SHAPES[key])
                fix = "give it one row per frame, like global_orient" if per_frame else "write it in the contract's layout"
                raise InputError(f"field '{key}' has shape {describe_shape(arr)}, expected {want}"
                                 + (f" with F={dims['F']}" if per_frame and "F" in dims else "") + f"; {fix}", path)
            dims = bound
            finite = np.isfinite(arr) if key != "reprojection_error_px" else ~np.isinf(arr)
            if not np.all(finite):
                raise InputError(f"field '{key}' has {int(np.sum(~finite))} NaN/inf values; the result is unusable, "
                                 f"re-run the refinement", path)
        if key == "faces":
            vertices = dims.get("V", np.iinfo(np.int64).max)
            if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() >= vertices)):
                raise InputError(f"field 'faces' must hold integer vertex indices below the vertex count {vertices}; "
                                 f"write the body model's faces array", path)
            arr = arr.astype(np.int32)
        elif key == "fps":
            if not float(arr) > 0:
                raise InputError(f"field 'fps' is {float(arr)}, expected a positive frame rate; pass the footage fps",
                                 path)
            arr = np.float64(arr)
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        out[key] = arr
    return out


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def check_writable(folder) -> Path:
    """Creates ``folder`` if needed and checks that files can be created in it."""
    folder = Path(folder) if str(folder) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InputError("is a file, not a folder; choose an output path inside a folder", folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"output folder cannot be created ({exc.strerror}); choose another --out folder", folder) \
            from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable; choose another --out folder or fix its permissions", folder)
    return folder


def _atomic_write(path, write, force: bool) -> Path:
    """Writes via ``write(binary file)`` to a temp file beside ``path``, then renames it over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name for the output, e.g. out/result.npz", path)
    if path.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it, or choose another --out", path)
    folder = check_writable(path.parent)
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot create a file in the output folder ({exc.strerror}); choose another --out folder",
                         folder) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_results(path, results: dict, force: bool = False, require_addon: bool = True) -> Path:
    """Validates ``results`` (see module docstring) and writes them to ``path`` atomically."""
    arrays = validate_results(results, path, require_addon)
    arrays["info"] = np.array(json.dumps(arrays["info"], sort_keys=True))
    return _atomic_write(path, lambda fh: np.savez(fh, **arrays), force)


# ---------------------------------------------------------------------------
# Reading and export
# ---------------------------------------------------------------------------

def read_results(path, require_addon: bool = True) -> dict:
    """Reads and validates an OUT.npz; ``info`` comes back as a dict."""
    p = Path(path)
    if not p.is_file():
        raise InputError("result file not found; run `python -m backend refine ... --out` first or fix the path", p)
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read as .npz ({exc}); the file is damaged, run the refinement again", p) from None
    return validate_results(arrays, p, require_addon)


def _rounded(arr):
    """Array -> nested lists of Python floats, NaN as None (JSON has no NaN)."""
    a = np.round(np.asarray(arr, dtype=np.float64), _DECIMALS)
    return np.where(np.isnan(a), None, a).tolist() if np.isnan(a).any() else a.tolist()


def export_frames_json(results, json_path, force: bool = False) -> Path:
    """Writes one object per frame (SMPL params, joints, 3D keypoints, reprojection error) to ``json_path``.

    ``results`` is an OUT dict or the path of an OUT.npz.  Layout:
    ``{"format", "fps", "joint_names", "keypoint_names", "info", "frames": [{"frame", "time_s",
    "global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "reprojection_error_px"}]}``;
    ``time_s`` is null without an fps.
    """
    r = read_results(results, require_addon=False) if isinstance(results, (str, os.PathLike)) \
        else validate_results(results, "results", require_addon=False)
    frames = r["global_orient"].shape[0]
    fps = float(r["fps"]) if "fps" in r else None
    betas = r["betas"] if r["betas"].ndim == 2 else np.broadcast_to(r["betas"], (frames, 10))
    k = r["keypoints3d"].shape[1]
    doc = {
        "format": JSON_FORMAT,
        "fps": fps,
        "joint_names": list(SMPL_JOINT_NAMES),
        "keypoint_names": list(COCO17_NAMES) + (list(FOOT6_NAMES) if k > len(COCO17_NAMES) else []),
        "info": r["info"],
        "frames": [
            {
                "frame": f,
                "time_s": None if fps is None else round(f / fps, _DECIMALS),
                "global_orient": _rounded(r["global_orient"][f]),
                "body_pose": _rounded(r["body_pose"][f]),
                "betas": _rounded(betas[f]),
                "transl": _rounded(r["transl"][f]),
                "joints": _rounded(r["joints"][f]),
                "keypoints3d": _rounded(r["keypoints3d"][f]),
                "reprojection_error_px": _rounded(r["reprojection_error_px"][f]),
            }
            for f in range(frames)
        ],
    }
    text = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return _atomic_write(json_path, lambda fh: fh.write(text), force)


def flatten_multiview(result: dict) -> dict:
    """A multi-view engine result (V,F,...) -> OUT.npz arrays: view 0 in the contract's (F,...) layout,
    plus ``view_joints`` (V,F,24,3), ``view_keypoints3d``, ``view_init_joints``,
    ``view_reprojection_error_px`` (V,F) and ``joints_world`` (F,24,3) when calibrated."""
    per_view = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
                "reprojection_error_px", "init_reprojection_error_px")
    out = {k: v for k, v in result.items() if k not in per_view}
    for k in per_view:
        out[k] = np.asarray(result[k])[0]
    for k in ("joints", "keypoints3d", "init_joints", "reprojection_error_px"):
        out[f"view_{k}"] = np.asarray(result[k])
    return out
