"""A shot: footage + 2D keypoints paired into the engine's OBS arrays, with every mismatch explained.

``load_shot(footage, keypoints, frames=None, ...) -> Shot``

* footage (a video, or None for keypoints only) gives the frame count, rate and image size
  (``backend.io.footage.probe``); keypoints in any supported format (``backend.io.keypoints``);
  an ``.npz`` keypoint file may also carry the OBS fields ``image_size``, ``focal_length``,
  ``principal_point`` and ``fps`` (as ``examples/shot/keypoints.npz`` does).
* Keypoint frame i belongs to footage frame ``first_frame + i`` (``first_frame`` from the keypoint
  file: OpenPose file numbers, COCO frame ids; 0 for arrays).  When the keypoints do not cover
  exactly the footage's frames the shot is refused with the overlap spelled out; ``frames``
  = (start, stop) footage frames (or ``"overlap"``) refines a range inside the overlap instead.
* A keypoint file's ``fps`` / ``image_size`` that disagree with the footage, keypoints lying mostly
  outside the frame, and detections with no person at all are refused too.  NaN/inf keypoints are
  not fatal: they become missing points (confidence 0), reported in ``Shot.notes``.

Every problem raises InputError: one line naming the file, what is wrong and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.io.errors import InputError
from backend.io.footage import FootageInfo, probe
from backend.io.keypoints import KeypointSequence, load_keypoints
from backend.io.observations import DEFAULT_FOV_DEG, validate_observations

__all__ = ["Shot", "load_shot", "parse_frames", "keypoint_side_fields", "FPS_TOLERANCE"]

FPS_TOLERANCE = 0.005        # relative: 29.97 vs 30000/1001 agree, 25 vs 24 do not
OUTSIDE_MARGIN = 0.1         # a point further than this fraction of the frame outside counts as outside
MAX_OUTSIDE_FRACTION = 0.5   # more confident points than this outside the frame: wrong resolution
SIDE_FIELDS = ("image_size", "focal_length", "principal_point", "fps")


@dataclass
class Shot:
    obs: dict                     # validated OBS arrays (backend.io.observations) of the chosen frames
    keypoints: KeypointSequence   # everything read from the keypoint source
    footage: FootageInfo | None
    start: int                    # footage frame of OBS frame 0
    stop: int                     # one past the last footage frame
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.stop - self.start


def parse_frames(text: str | None):
    """'START:STOP' -> (start, stop); 'overlap' -> 'overlap'; None -> None (command-line helper)."""
    if text is None or text == "overlap":
        return text
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"frame range {text!r} is not START:STOP (footage frames, STOP excluded), "
                         f"e.g. 0:96, or 'overlap'") from None
    return start, stop


def keypoint_side_fields(path) -> dict:
    """OBS fields stored beside the keypoints in an .npz (image_size, focal_length, principal_point, fps)."""
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return {}
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: np.asarray(z[k], np.float64) for k in SIDE_FIELDS if k in z.files}
    except (OSError, ValueError):
        return {}  # the keypoint reader reports unreadable files


def _rate_differs(a: float, b: float) -> bool:
    return abs(a - b) > FPS_TOLERANCE * max(a, b)


def _frame_range(frames, kp_first: int, kp_count: int, footage: FootageInfo | None, kp_path) -> tuple[int, int]:
    """(start, stop) footage frames to refine, checked against what the footage and keypoints cover."""
    have = (kp_first, kp_first + kp_count)
    total = footage.frame_count if footage is not None else None
    lo, hi = (max(have[0], 0), min(have[1], total)) if total is not None else have
    cover = f"footage frames {have[0]}-{have[1] - 1}"
    if total is not None and lo >= hi:
        raise InputError(f"the keypoints cover {cover} but {Path(footage.path).name} has frames 0-{total - 1}: "
                         f"no frame in common; pass the keypoints detected on this footage", kp_path)
    if frames == "overlap":
        return lo, hi
    if frames is None:
        if total is not None and have != (0, total):
            raise InputError(
                f"{Path(footage.path).name} has {total} frames (0-{total - 1}) but the keypoints cover {kp_count} "
                f"({cover}): they must describe the same frames; re-run the detector on this footage, or refine "
                f"the frames both cover with --frames {lo}:{hi} (or --frames overlap)", kp_path)
        return have
    start, stop = (int(x) for x in frames)
    if stop <= start:
        raise InputError(f"frame range {start}:{stop} is empty; give --frames START:STOP with START < STOP "
                         f"(footage frames, STOP excluded), e.g. --frames {lo}:{hi}")
    if start < lo or stop > hi:
        raise InputError(f"frame range {start}:{stop} is outside the frames with both footage and keypoints "
                         f"({lo}:{hi}); pick a range inside it, e.g. --frames {lo}:{hi}")
    return start, stop


def _check_people(seq: KeypointSequence, path) -> None:
    if seq.report.num_tracks == 0:
        raise InputError("holds no detected person in any frame (every 'people' list is empty or no point is "
                         "confident); run the detector on footage where the person is visible", path)


def _check_inside(kp: np.ndarray, size: np.ndarray, path) -> None:
    """Refuses keypoints that mostly fall outside the frame: detected on another resolution or crop."""
    seen = kp[..., 2] > 0
    if not seen.any():
        return
    lo, hi = -OUTSIDE_MARGIN * size, (1 + OUTSIDE_MARGIN) * size
    outside = ((kp[..., :2] < lo) | (kp[..., :2] > hi)).any(-1) & seen
    frac = outside.sum() / seen.sum()
    if frac > MAX_OUTSIDE_FRACTION:
        raise InputError(f"{100 * frac:.0f}% of the keypoints lie outside the {int(size[0])}x{int(size[1])} frame: "
                         f"were they detected on another resolution or a crop? Detect on this footage, or scale "
                         f"the keypoints to its pixels", path)


def load_shot(footage, keypoints, frames=None, *, mode: str = "video", fps: float | None = None,
              focal_length: float | None = None, principal_point=None, fov_deg: float = DEFAULT_FOV_DEG,
              keypoint_format: str | None = None, track: int | None = None) -> Shot:
    """Pairs ``footage`` (path or None) with ``keypoints`` (path); see the module docstring.

    ``fps`` / ``focal_length`` / ``principal_point`` override what the files say (a footage rate
    cannot be overridden: it is what the frames are)."""
    if mode not in ("frame", "video"):
        raise InputError(f"a shot is one camera: use mode 'frame' or 'video', not {mode!r}")
    info = probe(footage) if footage is not None else None
    side = keypoint_side_fields(keypoints)
    seq = load_keypoints(keypoints, format=keypoint_format, track=track)
    _check_people(seq, keypoints)
    notes = list(seq.report.notes)

    if info is not None:
        size = np.array([info.width, info.height], np.float64)
        if "image_size" in side and not np.allclose(side["image_size"].reshape(-1)[:2], size, atol=0.5):
            w, h = side["image_size"].reshape(-1)[:2]
            raise InputError(f"the keypoint file says its image is {w:.0f}x{h:.0f} but {Path(info.path).name} is "
                             f"{info.width}x{info.height}; detect on this footage, or fix the file's image_size",
                             keypoints)
        for name, rate in (("the keypoint file", side.get("fps")), ("--fps", fps)):
            if rate is not None and _rate_differs(float(rate), info.fps):
                fix = "re-run the detector on this footage (or fix the file's fps field)" \
                    if name != "--fps" else "leave the rate out: the footage's rate is used"
                raise InputError(f"{name} says {float(rate):g} fps but {Path(info.path).name} plays at "
                                 f"{info.fps:g} fps: the keypoint frames would not line up with the footage; {fix}",
                                 keypoints)
        rate = info.fps
        if info.variable_rate:
            notes.append(f"{Path(info.path).name} has a variable frame rate; frames are taken in order at its "
                         f"mean rate {info.fps:g} fps")
    else:
        if "image_size" not in side:
            raise InputError("no footage and the keypoint file has no image_size; pass the footage (or store "
                             "image_size [width, height] in the keypoint .npz)", keypoints)
        size = side["image_size"].reshape(-1)[:2]
        rate = fps if fps is not None else (float(side["fps"]) if "fps" in side else None)

    start, stop = _frame_range(frames, seq.report.first_frame, seq.report.frames, info, keypoints)
    first = seq.report.first_frame
    kp = seq.keypoints[start - first:stop - first]
    data = dict(keypoints=kp, image_size=size)
    focal = focal_length if focal_length is not None else side.get("focal_length")
    pp = principal_point if principal_point is not None else side.get("principal_point")
    if focal is not None:
        data["focal_length"] = np.asarray(focal, np.float64).reshape(())
    if pp is not None:
        data["principal_point"] = np.asarray(pp, np.float64).reshape(2)
    if rate is not None:
        if not (math.isfinite(float(rate)) and float(rate) > 0):
            raise InputError(f"frame rate {rate} is not a positive number; pass the footage or a positive --fps")
        data["fps"] = float(rate)
    obs = validate_observations(data, mode, path=keypoints, fov_deg=fov_deg)
    _check_inside(obs["keypoints"][0], size, keypoints)
    return Shot(obs=obs, keypoints=seq, footage=info, start=start, stop=stop, notes=notes)
