"""The clips of a batch (paths only) and the key that says whether a finished clip is still current.

A clip is a video (its keypoints from ``--keypoints-dir``, else detected) or a keypoint file
refined without footage; a folder stands for its videos, or when it has none its keypoint files.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from backend.contract.errors import InputError

__all__ = ["VIDEO_SUFFIXES", "KEYPOINT_SUFFIXES", "Clip", "find_clips", "clip_key"]

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".mts", ".mxf"})
KEYPOINT_SUFFIXES = (".npz", ".json", ".npy")


@dataclass(frozen=True)
class Clip:
    """One clip: its name (the output folder's), footage (None: keypoints only) and keypoints (None:
    detected in the footage)."""
    name: str
    footage: Path | None
    keypoints: Path | None


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def _is_keypoint_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in KEYPOINT_SUFFIXES


def _clip_name(path: Path) -> str:
    name = path.name[:-len(".keypoints.npz")] if path.name.endswith(".keypoints.npz") else path.stem
    return name


def _expand(path: Path) -> list[Path]:
    """The clip files ``path`` stands for: itself, or a folder's videos (else its keypoint files)."""
    if path.is_dir():
        entries = sorted(path.iterdir())
        found = [p for p in entries if _is_video(p)] or [p for p in entries if _is_keypoint_file(p)]
        if not found:
            raise InputError("has no videos and no keypoint files (.npz/.json/.npy)", path)
        return found
    if _is_video(path) or _is_keypoint_file(path):
        return [path]
    if path.is_file():
        raise InputError(f"is neither a video ({', '.join(sorted(VIDEO_SUFFIXES))}) nor a keypoint file "
                         f"({'/'.join(KEYPOINT_SUFFIXES)})", path)
    raise InputError("not found", path)


def keypoints_for(name: str, keypoints_dir: Path) -> Path | None:
    """``name``'s keypoints in ``keypoints_dir``: NAME.keypoints.npz, NAME.npz/.json/.npy or an OpenPose
    folder NAME/; None when there are none."""
    candidates = [keypoints_dir / f"{name}.keypoints.npz", *(keypoints_dir / (name + s) for s in KEYPOINT_SUFFIXES),
                  keypoints_dir / name]
    return next((c for c in candidates if c.exists()), None)


def find_clips(paths: list[str], keypoints_dir: str | None = None) -> list[Clip]:
    """The clips of the command line's CLIPS_OR_FOLDERS, in order; InputError for a missing path, an
    empty folder or two clips with one name (their output folders would collide).  A video without
    keypoints in ``keypoints_dir`` keeps keypoints=None (the clip then says so, see clip.py)."""
    folder = Path(keypoints_dir) if keypoints_dir else None
    if folder is not None and not folder.is_dir():
        raise InputError("--keypoints-dir is not a folder", folder)
    clips = []
    for path in (p for given in paths for p in _expand(Path(given))):
        name = _clip_name(path)
        if _is_video(path):
            clips.append(Clip(name, path, keypoints_for(name, folder) if folder else None))
        else:
            clips.append(Clip(name, None, path))
    names = [clip.name for clip in clips]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise InputError(f"two clips are named {twice[0]!r}: each clip writes OUT/<name>/, rename one")
    return clips


def _stat(path: Path | None) -> list:
    """[path, size, mtime_ns] of a file, of every file inside a folder, or None."""
    if path is None:
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()]


def clip_key(clip: Clip, options: dict, extra_inputs: tuple = ()) -> str:
    """sha256 over the clip's input files (size and mtime), ``extra_inputs`` (e.g. the retarget rig) and
    the ``options`` that change its outputs: a finished clip with the same key is skipped."""
    described = dict(name=clip.name, footage=_stat(clip.footage), keypoints=_stat(clip.keypoints),
                     extra=[_stat(Path(p)) for p in extra_inputs if p], options=options)
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()
