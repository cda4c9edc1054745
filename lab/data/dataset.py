"""The converted CMU dataset on disk: split rule, file layout and loader helpers.

``cache/dataset/cmu_smpl_{train,val}.npz`` (written by ``python -m lab.data.convert``) hold
per-frame SMPL parameters of our body model at 24 real frames/s, in the body-model frame (Y up,
metres, feet on the floor y = 0):

* per frame: global_orient (N,3), body_pose (N,69) axis-angle, transl (N,3) float32,
  clip_index (N,) and frame_index (N,) int32;
* per clip: clip_ids (C,) str, clip_start, clip_length, subject (C,) int32, residual_mm (C,)
  (mean fit residual), residual_p95_mm (C,), ground_shift_mm (C,);
* betas (10,) shared by every frame, fps = 24, meta (JSON string: data version, command,
  counts, skipped clips with reasons, residual statistics, calibration).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lab.data.cmu import REPO_ROOT

FPS = 24
DEFAULT_DIR = REPO_ROOT / "cache" / "dataset"
SPLITS = ("train", "val")
PER_FRAME = ("global_orient", "body_pose", "transl", "clip_index", "frame_index")

# Validation subjects, fixed: the first 9 (~10 %) of
# np.random.default_rng(0).permutation(sorted usable subjects) on the shared data (91 subjects with
# usable clips).  Written out so that the split never changes with the data or numpy.
VAL_SUBJECTS = (8, 17, 24, 31, 106, 108, 115, 132, 135)


def split_of(subject: int) -> str:
    """'val' for the validation subjects, else 'train' (subject-disjoint by construction)."""
    return "val" if int(subject) in VAL_SUBJECTS else "train"


def split_path(split: str, root: str | Path | None = None) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(root or DEFAULT_DIR) / f"cmu_smpl_{split}.npz"


def save_split(path: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write one split (uncompressed: loads fast, the float data barely compresses)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays, meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def load_split(split: str, root: str | Path | None = None) -> dict:
    """All arrays of one split as a dict; ``meta`` parsed from JSON."""
    path = split_path(split, root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `python -m lab.data.convert --out {path.parent}`")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def window_starts(data: dict, length: int, stride: int) -> np.ndarray:
    """(W,) absolute start frames of every window of ``length`` frames, ``stride`` apart, inside one clip.

    Clips shorter than ``length`` give no window."""
    starts = [s + np.arange(0, n - length + 1, stride)
              for s, n in zip(data["clip_start"], data["clip_length"]) if n >= length]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


def iter_windows(data: dict, length: int, stride: int) -> Iterator[dict]:
    """Windows of consecutive frames that never cross a clip boundary.

    Yields dicts of views: global_orient (L,3), body_pose (L,69), transl (L,3), clip_index (L,),
    frame_index (L,), plus ``start`` (absolute first frame)."""
    for s in window_starts(data, length, stride):
        window = {k: data[k][s:s + length] for k in PER_FRAME}
        window["start"] = int(s)
        yield window
