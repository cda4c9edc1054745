"""The engine's result file OUT.npz: validated atomic writing, reading back, per-frame JSON export.

OUT.npz (the engine contract):
``global_orient`` (F, 3), ``body_pose`` (F, 69), ``betas`` (F, 10) | (10,),
``transl`` (F, 3) (axis-angle, metres, OpenCV camera frame), ``joints`` (F, 24, 3),
``keypoints3d`` (F, 17, 3) (also (F, 23, 3): COCO-17 + 6 foot points),
``init_joints`` (F, 24, 3), ``reprojection_error_px`` (F,) (NaN where a frame
had no keypoints), ``info`` (JSON object string), and for the add-on
``rest_joints`` (24, 3), ``rest_vertices`` (V, 3), ``faces`` (Fc, 3) int32,
``skin_weights`` (V, 24) float32, ``fps`` (scalar).  Optional world frame (Y up, floor at 0):
``joints_world`` (F, 24, 3), ``global_orient_world``, ``body_pose_world``, ``transl_world``,
``foot_contacts`` (F, 4) bool, ``camera_R_world`` (3, 3), ``camera_position`` (3,),
``camera_height``, ``camera_pitch_deg``, ``camera_roll_deg``.  A multi-view result: view 0 in the
layout above plus ``view_*`` arrays (:func:`flatten_multiview`), with every view's camera in the
optional ``view_image_size`` (N, 2), ``view_focal_length`` (N,), ``view_principal_point`` (N, 2).
Other arrays are kept.

``Result``  the fields above as one value (the engine's ``Engine.run`` returns one):
    ``Result.from_arrays(arrays)`` validates, ``result.to_arrays()`` gives OUT.npz's arrays,
    ``Result.read(path)`` / ``result.write(path, force=False)``.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from backend.contract.layout import COCO17_NAMES, FOOT6_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from backend.contract.errors import InputError, describe_shape
from backend.contract.npz import read_arrays

__all__ = [
    "Result", "CORE_KEYS", "ADDON_KEYS", "ENGINE_KEYS", "IMPORT_KEYS", "WORLD_BODY_KEYS", "CAMERA_FIELDS",
    "VIEW_CAMERA_FIELDS", "JSON_FORMAT",
    "check_writable", "flatten_multiview", "validate_results", "write_results", "read_results", "export_frames_json",
]

CORE_KEYS = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
             "reprojection_error_px", "info")
ADDON_KEYS = ("rest_joints", "rest_vertices", "faces", "skin_weights", "fps")
ENGINE_KEYS = CORE_KEYS + ADDON_KEYS  # what the engine writes
# What the add-on's importer needs: the motion, the rest body and the rate.
IMPORT_KEYS = ("global_orient", "body_pose", "betas", "transl", "joints") + ADDON_KEYS
# The world frame an importer stands on the floor (video on a static camera, backend.engine.world):
# the body posed in the Y-up world and the camera's pose there.  Calibrated multi-view results have
# joints_world only (the calibration's world, not a floor).
WORLD_BODY_KEYS = ("joints_world", "global_orient_world", "body_pose_world", "transl_world", "camera_R_world",
                   "camera_position")
# Footage intrinsics for the camera: top-level arrays, or keys of the info JSON.
CAMERA_FIELDS = ("image_size", "focal_length", "principal_point")
# Every view's camera of a multi-view result (optional: older files have view 0's CAMERA_FIELDS only).
VIEW_CAMERA_FIELDS = tuple(f"view_{name}" for name in CAMERA_FIELDS)
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


# key -> allowed shape patterns (names: F frames, V vertices, C faces, N views).
_SHAPES = {
    "global_orient": [("F", 3)], "body_pose": [("F", 69)], "betas": [("F", 10), (10,)], "transl": [("F", 3)],
    "joints": [("F", 24, 3)], "keypoints3d": [("F", 17, 3), ("F", 23, 3)], "init_joints": [("F", 24, 3)],
    "reprojection_error_px": [("F",)], "rest_joints": [(24, 3)], "rest_vertices": [("V", 3)],
    "faces": [("C", 3)], "skin_weights": [("V", 24)], "fps": [()],
    "image_size": [(2,)], "focal_length": [()], "principal_point": [(2,)],
    # Optional world frame (video on a static camera: backend.engine.world; calibrated views: joints_world).
    "joints_world": [("F", 24, 3)], "global_orient_world": [("F", 3)], "body_pose_world": [("F", 69)],
    "transl_world": [("F", 3)], "camera_R_world": [(3, 3)], "camera_position": [(3,)],
    "camera_height": [()], "camera_pitch_deg": [()], "camera_roll_deg": [()],
    # Optional per-view intrinsics of a multi-view result (flatten_multiview), N views.
    "view_image_size": [("N", 2)], "view_focal_length": [("N",)], "view_principal_point": [("N", 2)],
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


def validate_results(results: dict, path="OUT", required=ENGINE_KEYS) -> dict:
    """Checks an OUT dict against the contract (``required`` fields present, every field's shape and
    values); returns arrays (float32, faces int32, fps float64), info as a dict ({} when absent), the
    footage intrinsics (``CAMERA_FIELDS``) taken from the info JSON when not top-level arrays."""
    missing = [k for k in required if k not in results]
    if missing:
        raise InputError(f"has no field '{missing[0]}' (missing: {', '.join(missing)}); write every OUT.npz field "
                         f"of the engine contract", path)
    out, dims = {"info": {}}, {}
    # Contract keys first, so F is bound by global_orient and V by rest_vertices.
    order = [k for k in ENGINE_KEYS if k in results] + [k for k in results if k not in ENGINE_KEYS]
    for key in order:
        value = results[key]
        if key == "info":
            out[key] = _info_dict(value, path)
            continue
        out[key] = _checked_field(key, np.asarray(value), dims, path)
    if dims.get("F") == 0:
        raise InputError("the result has no frames; re-run the refinement on frames with keypoints", path)
    for name in CAMERA_FIELDS:
        if name not in out and name in out["info"]:
            out[name] = _checked_field(name, np.asarray(out["info"][name]), dims, path)
    _check_body(out, path)
    return out


def _checked_field(key: str, arr: np.ndarray, dims: dict, path) -> np.ndarray:
    """One field checked (dtype, shape against ``_SHAPES`` binding ``dims``, finite values) and converted."""
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
            known = sorted({d for pat in _SHAPES[key] for d in pat if isinstance(d, str) and d in dims})
            sizes = " with " + ", ".join(f"{d}={dims[d]}" for d in known) if known else ""
            raise InputError(f"field '{key}' has shape {describe_shape(arr)}, expected {want}{sizes}; {fix}", path)
        dims.update(bound)
        finite = np.isfinite(arr) if key != "reprojection_error_px" else ~np.isinf(arr)
        if not np.all(finite):
            raise InputError(f"field '{key}' has {int(np.sum(~finite))} NaN/inf values; the result is unusable, "
                             f"re-run the refinement", path)
    if key == "faces":
        vertices = dims.get("V", np.iinfo(np.int64).max)
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() >= vertices)):
            raise InputError(f"field 'faces' must hold integer vertex indices below the vertex count {vertices}; "
                             f"write the body model's faces array", path)
        return arr.astype(np.int32)
    if key in ("fps", "focal_length", "image_size", "view_focal_length", "view_image_size"):
        if not np.all(arr > 0):
            raise InputError(f"field '{key}' is {arr.tolist()}, expected positive numbers"
                             + ("; pass the footage fps" if key == "fps" else ""), path)
        return np.float64(arr) if key == "fps" else arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    return arr


def _check_body(out: dict, path) -> None:
    """The rest body an importer builds a rig from: skin weights that blend, bones of some length."""
    if "skin_weights" in out:
        weights = out["skin_weights"]
        bad = np.flatnonzero((weights < 0).any(1) | (np.abs(weights.sum(1) - 1) > 1e-3))
        if len(bad):
            raise InputError(f"field 'skin_weights' of vertex {bad[0]} are negative or do not sum to 1; write "
                             "the body model's weights", path)
    if "rest_joints" in out:
        rest = out["rest_joints"]
        for j, p in enumerate(SMPL_PARENTS[1:], start=1):
            if np.linalg.norm(rest[j] - rest[p]) < 1e-4:
                raise InputError(f"field 'rest_joints': {SMPL_JOINT_NAMES[j]} sits on its parent "
                                 f"{SMPL_JOINT_NAMES[p]}; write the body's rest joints", path)


# ---------------------------------------------------------------------------
# The result as a value
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Result(Mapping):
    """A validated engine result: the OUT.npz fields (module docstring), None where a field is absent.

    A multi-view run keeps its leading view axis (V, F, ...) on the per-view fields; its OUT.npz holds
    view 0 in the (F, ...) layout plus ``view_*`` arrays (:func:`flatten_multiview`, :meth:`to_arrays`).
    Also a read-only mapping of its arrays (``result["joints"]``, ``info`` as its JSON text), the
    engine's result dict of before."""
    global_orient: np.ndarray                       # (F, 3) axis-angle, OpenCV camera frame
    body_pose: np.ndarray                           # (F, 69) axis-angle of joints 1..23
    betas: np.ndarray                               # (F, 10) | (10,)
    transl: np.ndarray                              # (F, 3) metres, camera frame
    joints: np.ndarray                              # (F, 24, 3) posed joints, camera frame
    keypoints3d: np.ndarray | None = None           # (F, 17, 3) | (F, 23, 3)
    init_joints: np.ndarray | None = None           # (F, 24, 3) the starting estimate's joints
    reprojection_error_px: np.ndarray | None = None  # (F,) NaN where a frame had no keypoints
    info: dict = field(default_factory=dict)        # how the result was made (JSON object in the file)
    rest_joints: np.ndarray | None = None           # (24, 3) model frame, zero pose
    rest_vertices: np.ndarray | None = None         # (V, 3)
    faces: np.ndarray | None = None                 # (Fc, 3) int32
    skin_weights: np.ndarray | None = None          # (V, 24) float32
    fps: np.ndarray | None = None                   # () float64
    image_size: np.ndarray | None = None            # (2,) footage [width, height] px
    focal_length: np.ndarray | None = None          # () px
    principal_point: np.ndarray | None = None       # (2,) px
    joints_world: np.ndarray | None = None          # (F, 24, 3) world frame (Y up, floor at 0)
    global_orient_world: np.ndarray | None = None   # (F, 3)
    body_pose_world: np.ndarray | None = None       # (F, 69)
    transl_world: np.ndarray | None = None          # (F, 3)
    foot_contacts: np.ndarray | None = None         # (F, 4) bool
    camera_R_world: np.ndarray | None = None        # (3, 3) OpenCV camera axes -> world
    camera_position: np.ndarray | None = None       # (3,) world
    camera_height: np.ndarray | None = None         # () m above the floor
    camera_pitch_deg: np.ndarray | None = None      # ()
    camera_roll_deg: np.ndarray | None = None       # ()
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)  # every other array, kept as given

    @classmethod
    def from_arrays(cls, arrays: Mapping, path="OUT", required: tuple = ENGINE_KEYS, *,
                    per_view: bool = False) -> Result:
        """Validated ``arrays`` laid out as OUT.npz, or with ``per_view`` as the engine's multi-view result
        (V, F, ...) (checked in the OUT.npz layout, kept as given).  InputError naming the field otherwise."""
        if per_view:
            info = validate_results(flatten_multiview(arrays), path, required)["info"]
            checked = {key: np.asarray(value) for key, value in arrays.items() if key != "info"}
            checked["info"] = info
        else:
            checked = validate_results(arrays, path, required)
        known = {key: value for key, value in checked.items() if key in _RESULT_FIELDS}
        return cls(**known, extras={key: value for key, value in checked.items() if key not in _RESULT_FIELDS})

    @classmethod
    def read(cls, path, required: tuple = ENGINE_KEYS) -> Result:
        """An OUT.npz read and validated."""
        p = Path(path)
        arrays = read_arrays(p, "give the OUT.npz the refinement wrote (python -m backend refine ... --out)")
        return cls.from_arrays(arrays, p, required)

    @property
    def views(self) -> int:
        """1, or V of a multi-view run (its per-view fields are (V, F, ...))."""
        return 1 if self.global_orient.ndim == 2 else self.global_orient.shape[0]

    @property
    def num_frames(self) -> int:
        return self.global_orient.shape[-2]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays OUT.npz holds (``numpy.savez(path, **arrays)``), ``info`` as its JSON text."""
        return flatten_multiview(self) if self.views > 1 else dict(self)

    def write(self, path, force: bool = False) -> Path:
        """OUT.npz at ``path``, validated and written atomically (:func:`write_results`)."""
        return write_results(path, self.to_arrays(), force)

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "info":
            return np.array(json.dumps(self.info, sort_keys=True))
        value = getattr(self, key, None) if key in _RESULT_FIELDS else self.extras.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        yield from (name for name in _RESULT_FIELDS if name == "info" or getattr(self, name) is not None)
        yield from self.extras

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other: object) -> bool:
        """The same fields with the same values (NaN equal to NaN) and the same info."""
        if not isinstance(other, Result):
            return NotImplemented
        if set(self) != set(other) or self.info != other.info:
            return False
        return all(_same_array(self[key], other[key]) for key in self if key != "info")

    __hash__ = None


_RESULT_FIELDS = tuple(f.name for f in fields(Result) if f.name != "extras")


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))


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


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp"):
    """A temporary file name beside ``path`` (in a checked folder); when the block ends without an
    error the file takes ``path``'s place (with ``path``'s mode, else the umask's: mkstemp makes
    0600 files), otherwise it is removed.  Readers never see a half-written ``path``."""
    folder = check_writable(path.parent)
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    except OSError as exc:
        raise InputError(f"cannot create a file in the output folder ({exc.strerror}); choose another --out folder",
                         folder) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_write(path, write, force: bool) -> Path:
    """Writes via ``write(binary file)`` to a temp file beside ``path``, then renames it over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name for the output, e.g. out/result.npz", path)
    if path.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it, or choose another --out", path)
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def write_results(path, results: dict, force: bool = False, required=ENGINE_KEYS) -> Path:
    """Validates ``results`` (see module docstring) and writes them to ``path`` atomically."""
    arrays = validate_results(results, path, required)
    arrays["info"] = np.array(json.dumps(arrays["info"], sort_keys=True))
    return _atomic_write(path, lambda fh: np.savez(fh, **arrays), force)


# ---------------------------------------------------------------------------
# Reading and export
# ---------------------------------------------------------------------------

def read_results(path, required=ENGINE_KEYS) -> dict:
    """Reads and validates an OUT.npz; ``info`` comes back as a dict."""
    p = Path(path)
    arrays = read_arrays(p, "give the OUT.npz the refinement wrote (python -m backend refine ... --out)")
    return validate_results(arrays, p, required)


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
    r = read_results(results, required=CORE_KEYS) if isinstance(results, (str, os.PathLike)) \
        else validate_results(results, "results", required=CORE_KEYS)
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


def flatten_multiview(result: Mapping) -> dict:
    """A multi-view engine result (V,F,...) -> OUT.npz arrays: view 0 in the contract's (F,...) layout,
    plus ``view_joints`` (V,F,24,3), ``view_keypoints3d``, ``view_init_joints``,
    ``view_reprojection_error_px`` (V,F) and ``joints_world`` (F,24,3) when calibrated; the result's
    ``view_image_size`` (V,2), ``view_focal_length`` (V,), ``view_principal_point`` (V,2) pass through."""
    per_view = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
                "reprojection_error_px", "init_reprojection_error_px")
    out = {k: v for k, v in result.items() if k not in per_view}
    for k in per_view:
        out[k] = np.asarray(result[k])[0]
    for k in ("joints", "keypoints3d", "init_joints", "reprojection_error_px"):
        out[f"view_{k}"] = np.asarray(result[k])
    return out
