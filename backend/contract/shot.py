"""A shot: what is known about the footage + 2D keypoints, paired into the engine's OBS arrays,
with every mismatch explained.  numpy only: the footage's facts (:class:`FootageInfo`) come from
``backend.io.footage.probe`` on the command line and from Blender's Movie Clip in the add-on.

``load_shot(footage, keypoints, frames=None, ...) -> Shot``

* footage (a FootageInfo, or None for keypoints only) gives the frame count, rate and image size;
  keypoints: a path in any supported format (``backend.contract.keypoints``) or a KeypointSequence;
  an ``.npz`` keypoint file may also carry the OBS fields ``image_size``, ``focal_length``,
  ``principal_point`` and ``fps`` (as ``examples/shot/keypoints.npz`` does).
* Keypoint frame i belongs to footage frame ``first_frame + i`` (``first_frame`` from the keypoint
  file: OpenPose file numbers, COCO frame ids; 0 for arrays; see ``backend.contract.frames``).
  When the keypoints do not cover exactly the footage's frames the shot is refused with the overlap
  spelled out; ``frames`` (a FrameRange of footage frames, or ``"overlap"``) refines a range inside
  the overlap instead.
* A keypoint file's ``fps`` / ``image_size`` that disagree with the footage, keypoints lying mostly
  outside the frame, and detections with no person at all are refused too.  NaN/inf keypoints are
  not fatal: they become missing points (confidence 0), reported in ``Shot.notes``.

Every problem raises InputError: one line naming the file, what is wrong and the fix.  The fix
names the front end's own controls through ``choose_frames(FrameRange) -> str or None`` (the
command line's ``--frames`` by default; the add-on says which scene frames to set; None: no range
to suggest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError
from backend.contract.frames import FrameRange
from backend.contract.keypoints import KeypointSequence, first_number_of, load_keypoints, renumbered
from backend.contract.npz import read_arrays
from backend.contract.observations import DEFAULT_FOV_DEG, Observations, validate_observations

__all__ = ["FootageInfo", "Shot", "load_shot", "keypoint_side_fields", "evidence_gaps", "FPS_TOLERANCE"]

FPS_TOLERANCE = 0.005        # relative: 29.97 vs 30000/1001 agree, 25 vs 24 do not
OUTSIDE_MARGIN = 0.1         # a point further than this fraction of the frame outside counts as outside
MAX_OUTSIDE_FRACTION = 0.5   # more confident points than this outside the frame: wrong resolution
SIDE_FIELDS = ("image_size", "focal_length", "principal_point", "fps")
MIN_EVIDENCE_POINTS = 4      # a frame with fewer confident keypoints than this has little evidence


@dataclass(frozen=True)
class FootageInfo:
    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    fps_fraction: str = ""
    rotation_deg: int = 0
    variable_rate: bool = False
    frame_count_source: str = ""  # "container" (reported and seek-checked), "counted" (decoded), "blender"

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    @property
    def name(self) -> str:
        return Path(self.path).name

    def summary(self) -> str:
        rate = "variable" if self.variable_rate else "constant"
        return (f"{self.name}: {self.frame_count} frames, {self.fps:.6g} fps ({self.fps_fraction}, {rate} "
                f"rate), {self.width}x{self.height}, rotation {self.rotation_deg} deg, {self.duration_s:.3f} s")


@dataclass
class Shot:
    obs: Observations             # validated observations (backend.contract.observations) of the chosen frames
    keypoints: KeypointSequence   # everything read from the keypoint source
    footage: FootageInfo | None
    start: int                    # footage frame of OBS frame 0
    stop: int                     # one past the last footage frame
    notes: list[str] = field(default_factory=list)  # warnings for the user (the reader's, the footage's)

    @property
    def frames(self) -> int:
        return self.stop - self.start


def cli_frames(frames: FrameRange) -> str:
    """How the command line chooses ``frames``."""
    return f"--frames {frames} or --frames overlap"


def keypoint_side_fields(path) -> dict:
    """OBS fields stored beside the keypoints in an .npz (image_size, focal_length, principal_point, fps)."""
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return {}
    try:
        data = read_arrays(p, "")
    except InputError:
        return {}  # the keypoint reader reports unreadable files
    return {k: np.asarray(data[k], np.float64) for k in SIDE_FIELDS if k in data}


def _rate_differs(a: float, b: float) -> bool:
    return abs(a - b) > FPS_TOLERANCE * max(a, b)


def _frame_range(frames, kp_first: int, kp_count: int, footage: FootageInfo | None, kp_path,
                 choose_frames) -> FrameRange:
    """Footage frames to refine, checked against what the footage and keypoints cover."""
    have = FrameRange(kp_first, kp_first + kp_count)
    total = footage.frame_count if footage is not None else None
    both = FrameRange(max(have.start, 0), min(have.stop, total)) if total is not None else have
    if total is not None and both.count <= 0:
        raise InputError(f"the keypoints cover footage frames {have} but {footage.name} has frames 0:{total}: "
                         f"no frame in common; pass the keypoints detected on this footage", kp_path)
    if frames == "overlap":
        return both
    if frames is None:
        if total is not None and have != FrameRange(0, total):
            hint = choose_frames(both)
            raise InputError(
                f"{footage.name} has {total} frames (0:{total}) but the keypoints cover {kp_count} (footage frames "
                f"{have}): they must describe the same frames; re-run the detector on this footage"
                + (f", or refine the frames both cover: {hint}" if hint else ""), kp_path)
        return have
    if frames.count <= 0:
        raise InputError(f"frame range {frames} is empty; choose a range with frames in it, e.g. "
                         f"{choose_frames(both)}")
    if frames.start < both.start or frames.stop > both.stop:
        raise InputError(f"frame range {frames} is outside the frames with both footage and keypoints "
                         f"({both}); pick a range inside it: {choose_frames(both)}", kp_path)
    return frames


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


def _footage_rate(info: FootageInfo, side: dict, fps, keypoints) -> float:
    """The footage's rate, refused when the keypoint file or ``fps`` says another."""
    for name, rate in (("the keypoint file", side.get("fps")), ("--fps", fps)):
        if rate is not None and _rate_differs(float(rate), info.fps):
            fix = "re-run the detector on this footage (or fix the file's fps field)" \
                if name != "--fps" else "leave the rate out: the footage's rate is used"
            raise InputError(f"{name} says {float(rate):g} fps but {info.name} plays at {info.fps:g} fps: the "
                             f"keypoint frames would not line up with the footage; {fix}", keypoints)
    return info.fps


def evidence_gaps(keypoints: np.ndarray, min_points: int = MIN_EVIDENCE_POINTS) -> list[FrameRange]:
    """Runs of frames with fewer than ``min_points`` confident keypoints: (F, 17, 3) -> FrameRanges of
    indices into ``keypoints``.  There the refined body follows the priors, not the footage."""
    weak = (np.asarray(keypoints)[..., 2] > 0).sum(-1) < min_points
    edges = np.flatnonzero(np.diff(np.concatenate([[0], weak.astype(np.int8), [0]])))
    return [FrameRange(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def load_shot(footage: FootageInfo | None, keypoints, frames=None, *, mode: str = "video",
              fps: float | None = None, focal_length: float | None = None, principal_point=None,
              fov_deg: float = DEFAULT_FOV_DEG, keypoint_format: str | None = None, track: int | None = None,
              image_size=None, choose_frames=cli_frames, first_number: int | str = "auto") -> Shot:
    """Pairs ``footage`` with ``keypoints`` (a path, or a KeypointSequence already read); see the module
    docstring.

    ``fps`` / ``focal_length`` / ``principal_point`` override what the files say (a footage rate
    cannot be overridden: it is what the frames are); ``image_size`` (width, height) stands in for
    the footage's when there is none.  ``choose_frames(FrameRange) -> str`` says how the user picks
    frames, for the messages.  ``first_number``: the keypoint file's number of footage frame 0, or "auto"
    (``keypoints.first_number_of``: 1 for OpenPose files numbered 1..F over F footage frames, else 0)."""
    if mode not in ("frame", "video"):
        raise InputError(f"a shot is one camera: use mode 'frame' or 'video', not {mode!r}")
    if isinstance(keypoints, KeypointSequence):
        seq, side, keypoints = keypoints, {}, keypoints.report.source
    else:
        side = keypoint_side_fields(keypoints)
        seq = load_keypoints(keypoints, format=keypoint_format, track=track)
    auto = first_number == "auto"
    if auto:
        first_number = first_number_of(seq, footage.frame_count if footage is not None else None)
    seq = renumbered(seq, first_number)
    _check_people(seq, keypoints)
    notes = list(seq.report.notes)
    if auto and first_number:
        notes.append(f"{Path(seq.report.source).name}: numbered {first_number}-{first_number + seq.report.frames - 1} "
                     f"over {seq.report.frames} footage frames: number {first_number} taken as the first footage frame")
    if seq.report.missing_fraction > 0:
        notes.append(f"{Path(seq.report.source).name}: {100 * seq.report.missing_fraction:.1f}% frames missing "
                     "(no person detected there)")

    if footage is not None:
        size = np.array([footage.width, footage.height], np.float64)
        if "image_size" in side and not np.allclose(side["image_size"].reshape(-1)[:2], size, atol=0.5):
            w, h = side["image_size"].reshape(-1)[:2]
            raise InputError(f"the keypoint file says its image is {w:.0f}x{h:.0f} but {footage.name} is "
                             f"{footage.width}x{footage.height}; detect on this footage, or fix the file's image_size",
                             keypoints)
        rate = _footage_rate(footage, side, fps, keypoints)
        if footage.variable_rate:
            notes.append(f"{footage.name} has a variable frame rate; frames are taken in order at its "
                         f"mean rate {footage.fps:g} fps")
    else:
        if image_size is None and "image_size" not in side:
            raise InputError("no footage and the keypoint file has no image_size; pass the footage (or store "
                             "image_size [width, height] in the keypoint .npz)", keypoints)
        size = np.asarray(image_size if image_size is not None else side["image_size"], np.float64).reshape(-1)[:2]
        rate = fps if fps is not None else (float(side["fps"]) if "fps" in side else None)

    if isinstance(frames, tuple):  # (start, stop), as FrameRange
        frames = FrameRange(*frames)
    chosen = _frame_range(frames, seq.report.first_frame, seq.report.frames, footage, keypoints, choose_frames)
    first = seq.report.first_frame
    data = dict(keypoints=seq.keypoints[chosen.start - first:chosen.stop - first], image_size=size)
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
    return Shot(obs=obs, keypoints=seq, footage=footage, start=chosen.start, stop=chosen.stop, notes=notes)
