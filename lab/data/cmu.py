"""Reading the compact CMU mocap release and its numpy forward kinematics.

The data (``<repo>/../shared/data/cmu`` or ``$REFINE_MOTION_CMU``) is the cgspeed
43-joint skeleton: ``skeleton.json``, ``clips/<subject>.npz`` with per clip
``SS_TT__root_cm`` (F,3) and ``SS_TT__euler_deg`` (F,17,3), and ``clips.tsv``.
Positions returned here are in metres in the world frame (Y up), see the
folder's README for the conventions.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.contract.rotations import matrix_to_quaternion, quaternion_to_matrix, slerp

ENV_VAR = "REFINE_MOTION_CMU"
REPO_ROOT = Path(__file__).resolve().parents[2]


def cmu_root() -> Path:
    """The data folder: ``$REFINE_MOTION_CMU`` or ``<repo>/../shared/data/cmu``; fails clearly if absent."""
    root = Path(os.environ.get(ENV_VAR) or REPO_ROOT.parent / "shared" / "data" / "cmu")
    if not (root / "skeleton.json").is_file() or not (root / "clips.tsv").is_file():
        raise FileNotFoundError(
            f"CMU mocap data not found at {root} (expected skeleton.json, clips.tsv, clips/). "
            f"Set {ENV_VAR} or place the data at <repo>/../shared/data/cmu.")
    return root


@dataclass(frozen=True)
class Skeleton:
    names: tuple[str, ...]
    parents: np.ndarray         # (43,) int, -1 for the hip; parents come before children
    offsets_cm: np.ndarray      # (43,3) rest local translations in the parent's frame
    rest_euler_deg: np.ndarray  # (43,3) static joints' constant rotations; moving joints: the T-pose
    moving: np.ndarray          # (17,) indices of the animated joints, in euler_deg order
    armature: np.ndarray        # (3,3) file (Z up) -> world (Y up)

    def index(self, name: str) -> int:
        return self.names.index(name)


@lru_cache(maxsize=4)
def load_skeleton(root: Path | None = None) -> Skeleton:
    sk = json.loads((Path(root or cmu_root()) / "skeleton.json").read_text())
    return Skeleton(
        names=tuple(sk["joint_names"]),
        parents=np.asarray(sk["parents"], dtype=np.int64),
        offsets_cm=np.asarray(sk["offsets_cm"], dtype=np.float64),
        rest_euler_deg=np.asarray(sk["rest_euler_deg"], dtype=np.float64),
        moving=np.asarray(sk["moving_joint_indices"], dtype=np.int64),
        armature=euler_to_matrix(np.asarray(sk["armature"]["rotation_euler_deg"], dtype=np.float64)),
    )


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    subject: int
    frames: int
    real_time_scale: float | None   # 1: stored at real speed (24 fps); 2: plays 2x fast; None: unknown
    floor_offset_cm: float
    glitch: bool
    description: str


def _float_or_none(s: str) -> float | None:
    return float(s) if s.strip() else None


def read_clips(root: Path | None = None) -> list[ClipInfo]:
    """The rows of clips.tsv, in file order."""
    with open(Path(root or cmu_root()) / "clips.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [ClipInfo(r["clip_id"], int(r["subject"]), int(r["frames"]), _float_or_none(r["real_time_scale"]),
                     float(r["floor_offset_cm"] or 0.0), r["glitch"] == "1", r["description"]) for r in rows]


def load_subject(subject: int, root: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """clip_id -> (root_cm (F,3), euler_deg (F,17,3)) as float64, for one subject's file."""
    path = Path(root or cmu_root()) / "clips" / f"{subject:02d}.npz"
    out: dict[str, list] = {}
    with np.load(path) as z:
        for key in z.files:
            clip, kind = key.split("__")
            out.setdefault(clip, [None, None])[0 if kind == "root_cm" else 1] = z[key].astype(np.float64)
    return {k: (v[0], v[1]) for k, v in out.items()}


def euler_to_matrix(e_deg: np.ndarray) -> np.ndarray:
    """XYZ Euler angles in degrees (...,3) -> (...,3,3), R = Rz(z) @ Ry(y) @ Rx(x)."""
    x, y, z = np.moveaxis(np.radians(np.asarray(e_deg, dtype=np.float64)), -1, 0)
    cx, cy, cz, sx, sy, sz = np.cos(x), np.cos(y), np.cos(z), np.sin(x), np.sin(y), np.sin(z)
    R = np.stack([
        cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
        sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
        -sy, cy * sx, cy * cx,
    ], axis=-1)
    return R.reshape(*R.shape[:-1], 3, 3)


def local_rotations(sk: Skeleton, euler_deg: np.ndarray) -> np.ndarray:
    """(F,17,3) moving-joint Euler angles -> (F,43,3,3) local rotations of every joint."""
    eul = np.broadcast_to(sk.rest_euler_deg, (euler_deg.shape[0], *sk.rest_euler_deg.shape)).copy()
    eul[:, sk.moving] = euler_deg
    return euler_to_matrix(eul)


def fk(sk: Skeleton, root_cm: np.ndarray, local_R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics over frames.

    root_cm (F,3) hip translation in file axes, local_R (F,43,3,3) -> world joint positions (F,43,3)
    in metres and world rotations (F,43,3,3), world = Y up (the armature applied)."""
    n = root_cm.shape[0]
    G_R = np.empty((n, len(sk.names), 3, 3))
    G_p = np.empty((n, len(sk.names), 3))
    for j, p in enumerate(sk.parents):
        if p < 0:
            G_p[:, j] = root_cm @ sk.armature.T
            G_R[:, j] = sk.armature @ local_R[:, j]
        else:
            G_p[:, j] = G_p[:, p] + G_R[:, p] @ sk.offsets_cm[j]
            G_R[:, j] = G_R[:, p] @ local_R[:, j]
    return G_p / 100.0, G_R


def fk_euler(sk: Skeleton, root_cm: np.ndarray, euler_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fk() from the stored arrays: root_cm (F,3), euler_deg (F,17,3)."""
    return fk(sk, np.asarray(root_cm, np.float64), local_rotations(sk, np.asarray(euler_deg, np.float64)))


def rest_pose(sk: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """The skeleton's T-pose (hip at the origin): positions (43,3) m and world rotations (43,3,3)."""
    p, R = fk(sk, np.zeros((1, 3)), euler_to_matrix(sk.rest_euler_deg)[None])
    return p[0], R[0]


def resample(root_cm: np.ndarray, local_R: np.ndarray, real_time_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a clip stored at 24 nominal fps to 24 real frames/s.

    root_cm (F,3), local_R (F,J,3,3).  A clip with real_time_scale s has real frame spacing s/24 s, so
    its F frames become floor((F-1) s) + 1 (2F-1 for s = 2): linear for the translation, quaternion
    slerp for the rotations.  s = 1 returns the inputs unchanged."""
    if real_time_scale == 1.0:
        return root_cm, local_R
    n = root_cm.shape[0]
    t = np.arange(int(np.floor((n - 1) * real_time_scale + 1e-9)) + 1) / real_time_scale  # in stored frames
    i0 = np.minimum(np.floor(t).astype(np.int64), n - 2)
    w = t - i0
    root = root_cm[i0] * (1 - w[:, None]) + root_cm[i0 + 1] * w[:, None]
    q = matrix_to_quaternion(local_R)
    return root, quaternion_to_matrix(slerp(q[i0], q[i0 + 1], w[:, None, None]))
