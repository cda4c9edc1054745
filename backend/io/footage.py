"""Video footage: probe its timing/geometry and iterate its frames (OpenCV/FFmpeg).

``probe(path) -> FootageInfo``
    frame_count   verified: counted by decoding when the container reports 0 or
                  when the reported count fails a seek check; else the
                  container's number (see ``FootageInfo.frame_count_source``).
    fps           float; NTSC rates are snapped to their exact value
                  (29.97 -> 30000/1001 = 29.97002997...), also given as the
                  fraction string ``fps_fraction`` ("30000/1001").  FFmpeg's
                  average rate, so for variable rate footage the mean rate.
    width/height  of the frames as ``iter_frames`` yields them, i.e. *after*
                  OpenCV applied the rotation metadata (display orientation).
    rotation_deg  the container's rotation metadata (0/90/180/270), the
                  clockwise turn applied to the coded frames for display.
    variable_rate True when the timestamps of the first ``timing_frames``
                  frames are irregular (see ``is_variable_rate``).
    duration_s    frame_count / fps.

``iter_frames(path, start=0, stop=None)`` yields ``(index, frame)`` with frame a
BGR uint8 (H, W, 3) array, lazily and in order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError
from backend.contract.shot import FootageInfo

__all__ = ["FootageInfo", "probe", "iter_frames", "fps_fraction", "is_variable_rate"]

TIMING_FRAMES = 120
# Frame intervals further than this from the median interval mean variable rate.
# Container time bases (1/90000 s, ms rounding) jitter far less than this.
VFR_TOLERANCE = 0.15
# NTSC-style rates are stored as 29.97 etc. by many containers and OpenCV.
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))

_REENCODE_FIX = "re-encode it, e.g. ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p OUTPUT.mp4"


def fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate for a float rate: 29.97 -> 30000/1001, 25.0 -> 25, 12.5 -> 25/2."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"frame rate must be positive and finite, got {fps}")
    for ntsc in _NTSC_RATES:
        # Containers round these to 2-3 decimals (29.97, 23.976, 59.94).
        if abs(fps - float(ntsc)) < 0.005:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def is_variable_rate(timestamps_ms, tolerance: float = VFR_TOLERANCE) -> bool | None:
    """Whether per-frame timestamps (ms, in decode order) have irregular intervals.

    ``None`` when they cannot tell (fewer than 3 frames, or timestamps that do
    not increase, as some raw streams report).
    """
    ts = np.asarray(timestamps_ms, dtype=np.float64)
    if ts.size < 3 or not np.all(np.isfinite(ts)):
        return None
    deltas = np.diff(ts)
    if np.any(deltas <= 0):
        return None
    median = float(np.median(deltas))
    return bool(np.max(np.abs(deltas - median)) > tolerance * median)


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError("video file not found; check the path (relative paths start from the working folder)", p)
    if not p.is_file():
        raise InputError("is not a file; pass a video file (for image folders extract a video first)", p)
    if p.stat().st_size == 0:
        raise InputError("video file is empty (0 bytes); export or copy the footage again", p)
    if not os.access(p, os.R_OK):
        raise InputError("video file is not readable; fix its permissions (chmod u+r)", p)
    return p


def _open(path):
    import cv2

    p = _check_file(path)
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"OpenCV/FFmpeg cannot open this as a video (corrupt file or unsupported codec); "
                         f"{_REENCODE_FIX}", p)
    return p, cap


def _pos_ms(cap) -> float:
    import cv2

    return float(cap.get(cv2.CAP_PROP_POS_MSEC))


def _count_rest(cap, counted: int) -> int:
    """Grabs to the end; returns the total number of frames."""
    while cap.grab():
        counted += 1
    return counted


def _seek_check(cap, reported: int) -> bool:
    """Whether frame ``reported - 1`` exists and is the last one."""
    import cv2

    if not cap.set(cv2.CAP_PROP_POS_FRAMES, reported - 1) or not cap.grab():
        return False
    return not cap.grab()


def probe(path, timing_frames: int = TIMING_FRAMES, count_frames: bool = False) -> FootageInfo:
    """Reads the footage's timing and geometry (see module docstring).

    ``count_frames=True`` always counts frames by decoding the whole file
    (slow for long footage) instead of trusting a seek-checked container count.
    """
    import cv2

    p, cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"video has no decodable frames (empty or broken stream); {_REENCODE_FIX}", p)
        height, width = frame.shape[:2]
        rotation = round(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360 \
            if hasattr(cv2, "CAP_PROP_ORIENTATION_META") else 0
        # FFmpeg's average rate (frames / stream duration), so also right on average for variable rate.
        container_fps = float(cap.get(cv2.CAP_PROP_FPS))
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))

        # grab() decodes without the colour conversion: the cheap way to walk frames.
        stamps = [_pos_ms(cap)]
        at_end = False
        while len(stamps) < max(timing_frames, 1):
            if not cap.grab():
                at_end = True
                break
            stamps.append(_pos_ms(cap))

        if at_end:
            frame_count, source = len(stamps), "counted"
        elif count_frames or reported <= len(stamps):
            # No usable container count: keep decoding from here.
            frame_count, source = _count_rest(cap, len(stamps)), "counted"
        elif _seek_check(cap, reported):
            frame_count, source = reported, "container"
        else:
            # The container's count is wrong; seeking back is unreliable then, so decode a fresh capture.
            cap.release()
            _, cap = _open(p)
            frame_count, source = _count_rest(cap, 0), "counted"
    finally:
        cap.release()

    deltas = np.diff(np.asarray(stamps, dtype=np.float64))
    if container_fps > 0 and math.isfinite(container_fps):
        rate = fps_fraction(container_fps)
    elif deltas.size and np.all(deltas > 0):
        rate = fps_fraction(1000.0 / float(np.median(deltas)))
    else:
        raise InputError("video has no frame rate in its metadata or timestamps; re-encode it with an explicit "
                         "rate, e.g. ffmpeg -i INPUT -r 30 -c:v libx264 OUTPUT.mp4", p)
    return FootageInfo(
        path=str(p), frame_count=int(frame_count), fps=float(rate), fps_fraction=f"{rate.numerator}/{rate.denominator}",
        width=int(width), height=int(height), rotation_deg=rotation, variable_rate=bool(is_variable_rate(stamps)),
        frame_count_source=source,
    )


def iter_frames(path, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(index, frame)`` for frames ``start <= index < stop`` (BGR uint8 (H, W, 3)), in order.

    The path and range are checked at once (InputError); the file is opened on
    the first ``next()`` and closed when the iterator ends or is closed.
    Frames before ``start`` are decoded and skipped rather than seeked to:
    seeking is not frame-exact for every codec.
    """
    if start < 0 or (stop is not None and stop < start):
        raise InputError(f"frame range start={start}, stop={stop} is invalid; use 0 <= start <= stop")
    return _frames(_check_file(path), start, stop)


def _frames(path: Path, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
    _, cap = _open(path)
    try:
        index = 0
        while stop is None or index < stop:
            if index < start:
                if not cap.grab():
                    return
            else:
                ok, frame = cap.read()
                if not ok:
                    return
                yield index, frame
            index += 1
    finally:
        cap.release()
