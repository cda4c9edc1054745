"""2D keypoint readers: any supported detector output -> (F, 17, 3) COCO-17 [x_px, y_px, confidence].

``load_keypoints(path, format=None, track=None, image_ids=None) -> KeypointSequence``
with ``.keypoints`` (F, 17, 3) float32 in COCO-17 order (``COCO17_NAMES``),
``.feet`` (F, 6, 3) float32 in ``FOOT6_NAMES`` order or None, and ``.report``
(a ``KeypointReport``).  Formats (auto-detected from the path, or ``format=``):

``array``     .npz (field ``keypoints``, or its only array) / .npy holding
              (F, 17, 3) or (F, P, 17, 3) for P people per frame; a person
              whose confidences are all 0 counts as not detected.
``coco``      COCO results JSON: a list of ``{image_id, keypoints: [x, y, v]*17,
              score, category_id?}``.  image_id -> frame: by sorted order
              (default), ``image_ids="frame"`` (the integer image_id *is* the
              frame number, keeping frames without detections), or a dict
              ``{image_id: frame}``.  ``v`` is used as the confidence, clipped
              to [0, 1] (so ground-truth visibility 1/2 reads as 1).
``json``      ``{"keypoints": [frame, ...]}`` or ``[{"keypoints": ..., "frame"?: i}, ...]``,
              each frame (17, 3), 51 numbers, a list of people, or ``[]``/null.
``openpose``  a folder of ``*_keypoints.json`` (frame number = the last number
              in the file name), or one such file; ``people[i].pose_keypoints_2d``
              with 25 (BODY_25, also gives the feet) or 18 (COCO-18) points.
              With ``format="openpose"`` an array file may hold (F, [P,] 25|18, 3).

Frames run from the first to the last frame number found (``report.first_frame``
is the source number of output frame 0).  Frames where the chosen person is not
detected get all-zero rows.  NaN/inf coordinates become all-zero rows (confidence
0), counted in ``report.nonfinite_count``.

Several people per frame: ``select_track`` links detections over time into
tracks by bounding-box IoU and orders the tracks by their total
box-area x mean-confidence over all frames (track 0 = the largest, most
confident, most present person; the default).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from backend.contract.layout import COCO17_NAMES, FOOT6_NAMES
from backend.contract.errors import InputError, describe_shape
from backend.contract.npz import read_arrays

__all__ = [
    "FORMATS", "KeypointReport", "KeypointSequence", "TrackSelection",
    "load_keypoints", "sequence_from_array", "detect_format", "select_track", "first_number_of", "renumbered",
    "BODY25_TO_COCO17", "BODY25_TO_FOOT6", "COCO18_TO_COCO17", "openpose_to_coco17",
]

FORMATS = ("array", "coco", "json", "openpose")
NUM_COCO = len(COCO17_NAMES)
NUM_FEET = len(FOOT6_NAMES)

# OpenPose BODY_25: 0 Nose, 1 Neck, 2 RShoulder, 3 RElbow, 4 RWrist, 5 LShoulder, 6 LElbow, 7 LWrist,
# 8 MidHip, 9 RHip, 10 RKnee, 11 RAnkle, 12 LHip, 13 LKnee, 14 LAnkle, 15 REye, 16 LEye, 17 REar, 18 LEar,
# 19 LBigToe, 20 LSmallToe, 21 LHeel, 22 RBigToe, 23 RSmallToe, 24 RHeel.  Neck and MidHip are unused.
BODY25_TO_COCO17 = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
BODY25_TO_FOOT6 = (19, 22, 20, 23, 21, 24)  # l/r big toe, l/r small toe, l/r heel
# OpenPose COCO-18: 0 Nose, 1 Neck, 2 RShoulder, 3 RElbow, 4 RWrist, 5 LShoulder, 6 LElbow, 7 LWrist,
# 8 RHip, 9 RKnee, 10 RAnkle, 11 LHip, 12 LKnee, 13 LAnkle, 14 REye, 15 LEye, 16 REar, 17 LEar.
COCO18_TO_COCO17 = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)

_SHAPE_HINT = "(F, 17, 3) COCO-17 [x, y, confidence]"
_OPENPOSE_FIX = "read OpenPose BODY_25/COCO-18 with --keypoint-format openpose"
# Points below this confidence do not count towards a person's bounding box.
BOX_MIN_CONF = 0.05
# A detection continues a track when its box overlaps the track's last box by this much.
TRACK_MIN_IOU = 0.1


@dataclass
class KeypointReport:
    source: str
    format: str
    frames: int
    first_frame: int               # source frame number of output frame 0
    people_per_frame: np.ndarray   # (F,) int, detections with at least two confident points
    track: int                     # the chosen track (0 = default, see select_track)
    num_tracks: int
    missing_fraction: float        # share of frames where the chosen track has no detection
    nonfinite_count: int           # keypoints with NaN/inf coordinates, set to confidence 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        multi = int(np.sum(self.people_per_frame > 1))
        text = (f"{Path(self.source).name} ({self.format}): {self.frames} frames from frame {self.first_frame}, "
                f"track {self.track} of {self.num_tracks}, {100 * self.missing_fraction:.1f}% frames missing, "
                f"{multi} frames with several people")
        if self.nonfinite_count:
            text += f", {self.nonfinite_count} NaN/inf keypoints ignored"
        return text


@dataclass
class KeypointSequence:
    keypoints: np.ndarray        # (F, 17, 3) float32 COCO-17 [x_px, y_px, conf]
    feet: np.ndarray | None      # (F, 6, 3) float32 FOOT6_NAMES order, when the source has feet
    report: KeypointReport


@dataclass
class TrackSelection:
    person_index: np.ndarray     # (F,) int: the chosen person's index in each frame, -1 where absent
    track: int
    num_tracks: int


# ---------------------------------------------------------------------------
# Keypoint layouts
# ---------------------------------------------------------------------------

def openpose_to_coco17(points: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(..., 25 | 18, 3) OpenPose BODY_25 / COCO-18 -> ((..., 17, 3), (..., 6, 3) feet or None)."""
    if points.shape[-2] == 25:
        return points[..., BODY25_TO_COCO17, :], points[..., BODY25_TO_FOOT6, :]
    if points.shape[-2] == 18:
        return points[..., COCO18_TO_COCO17, :], None
    raise ValueError(f"OpenPose keypoints need 25 or 18 points, got {points.shape[-2]}")


def _from_openpose(people: list[np.ndarray]) -> list[np.ndarray]:
    """Per-frame (P, 25|18, 3) -> per-frame (P, 17 [+ 6], 3), feet appended for BODY_25."""
    out = []
    for p in people:
        body, feet = openpose_to_coco17(p)
        out.append(body if feet is None else np.concatenate([body, feet], axis=1))
    return out


# ---------------------------------------------------------------------------
# Tracking
# ---------------------------------------------------------------------------

def _boxes(people: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, K, 3) -> boxes (P, 4) [x0, y0, x1, y1] of the confident points, weights (P,) = area * mean conf,
    and a mask (P,) of the people with at least two confident points (the others have no box)."""
    body = people[:, :NUM_COCO]
    ok = (body[..., 2] >= BOX_MIN_CONF) & np.isfinite(body[..., :2]).all(-1)
    valid = ok.sum(axis=1) >= 2
    x = np.where(ok, body[..., 0], np.inf)
    y = np.where(ok, body[..., 1], np.inf)
    boxes = np.stack([x.min(1), y.min(1), np.where(ok, x, -np.inf).max(1), np.where(ok, y, -np.inf).max(1)], 1)
    boxes[~valid] = 0.0
    return boxes, _area(boxes) * body[..., 2].mean(axis=1), valid


def _area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes -> (N,) areas, at least 1 px per side (collinear points still have a size)."""
    return np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0), axis=-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) boxes -> (N, M) intersection over union."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    return inter / (_area(a)[:, None] + _area(b)[None, :] - inter)


def _link_tracks(people_per_frame: list[np.ndarray]) -> list[dict[int, int]]:
    """Greedy IoU tracker: list of tracks, each {frame: person index}, ordered by total weight (desc).

    A track keeps its last box while its person is missing, so it picks the
    person up again after a gap when they reappear where they were.
    """
    tracks: list[dict[int, int]] = []
    last_box: list[np.ndarray] = []
    weight: list[float] = []
    for f, people in enumerate(people_per_frame):
        if len(people) == 0:
            continue
        boxes, w, valid = _boxes(people)
        free = set(np.flatnonzero(valid).tolist())
        if tracks:
            iou = _iou(np.stack(last_box), boxes)
            for t, p in sorted(np.ndindex(iou.shape), key=lambda tp: -iou[tp]):
                if iou[t, p] < TRACK_MIN_IOU:
                    break
                if p in free and f not in tracks[t]:
                    tracks[t][f] = p
                    last_box[t], weight[t] = boxes[p], weight[t] + float(w[p])
                    free.discard(p)
        for p in sorted(free):
            tracks.append({f: p})
            last_box.append(boxes[p])
            weight.append(float(w[p]))
    order = sorted(range(len(tracks)), key=lambda t: -weight[t])
    return [tracks[t] for t in order]


def select_track(people_per_frame: list[np.ndarray], track: int | None = None) -> TrackSelection:
    """Picks one person per frame from ``people_per_frame`` (list over frames of (P_f, K, 3) arrays).

    Detections are linked over time by bounding-box IoU with the track's last
    box (gaps allowed); tracks are ordered by their total box area x mean
    confidence, so ``track=None`` (= 0) is the largest, most confident person
    over the clip and ``track=i`` the i-th.  People with fewer than two
    points of confidence >= ``BOX_MIN_CONF`` are never chosen.
    """
    tracks = _link_tracks(people_per_frame)
    chosen = 0 if track is None else int(track)
    if (tracks and not 0 <= chosen < len(tracks)) or (not tracks and chosen != 0):
        raise InputError(f"track {chosen} does not exist: the keypoints hold {len(tracks)} tracks; "
                         f"pick --track between 0 and {max(len(tracks) - 1, 0)}")
    index = np.full(len(people_per_frame), -1, dtype=np.int64)
    if tracks:
        for f, p in tracks[chosen].items():
            index[f] = p
    return TrackSelection(person_index=index, track=chosen, num_tracks=len(tracks))


# ---------------------------------------------------------------------------
# Shared cleaning and assembly
# ---------------------------------------------------------------------------

def _clean_people(people: np.ndarray) -> tuple[np.ndarray, int]:
    """(P, K, 3) -> (P', K, 3) float32 without NaN/inf rows (zeroed) and without undetected people.

    Returns the cleaned array and the number of non-finite keypoints.
    """
    people = np.asarray(people, dtype=np.float64).copy()
    bad = ~np.isfinite(people).all(axis=-1)
    people[bad] = 0.0
    people[..., 2] = np.clip(people[..., 2], 0.0, 1.0)
    detected = (people[:, :NUM_COCO, 2] >= BOX_MIN_CONF).sum(axis=1) >= 2
    return people[detected].astype(np.float32), int(bad.sum())


def _assemble(source, fmt: str, frames: dict[int, np.ndarray], track: int | None,
              notes: list[str] | None = None) -> KeypointSequence:
    """{frame number: (P, 17 [+ 6], 3)} -> KeypointSequence over frames min..max."""
    if not frames:
        raise InputError("holds no frames of keypoints; check that the detector wrote its output here", source)
    first, last = min(frames), max(frames)
    (k,) = {p.shape[1] for p in frames.values()}  # 17, or 17 + 6 feet; the readers never mix them
    people, nonfinite = [], 0
    for f in range(first, last + 1):
        cleaned, bad = _clean_people(frames.get(f, np.zeros((0, k, 3))))
        people.append(cleaned)
        nonfinite += bad
    sel = select_track(people, track)
    n = len(people)
    out = np.zeros((n, k, 3), dtype=np.float32)
    present = sel.person_index >= 0
    for f in np.flatnonzero(present):
        out[f] = people[f][sel.person_index[f]]
    notes = list(notes or [])
    if nonfinite:
        notes.append(f"{nonfinite} keypoints had NaN/inf coordinates and were given confidence 0")
    report = KeypointReport(
        source=str(source), format=fmt, frames=n, first_frame=int(first),
        people_per_frame=np.array([len(p) for p in people], dtype=np.int64),
        track=sel.track, num_tracks=sel.num_tracks, missing_fraction=float(1.0 - present.mean()),
        nonfinite_count=nonfinite, notes=notes,
    )
    feet = out[:, NUM_COCO:] if k == NUM_COCO + NUM_FEET else None
    return KeypointSequence(keypoints=np.ascontiguousarray(out[:, :NUM_COCO]), feet=feet, report=report)


def _as_people(value, source, where: str, openpose: bool = False) -> np.ndarray:
    """One frame's keypoints (None, [], 51 numbers, (17, 3), (P, 51) or (P, 17, 3)) -> (P, K, 3)."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return np.zeros((0, NUM_COCO, 3))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where} is not a numeric array (ragged lists or text); "
                         f"write each person as 17 [x, y, confidence] triplets", source) from None
    counts = (25, 18) if openpose else (NUM_COCO,)
    shape = describe_shape(arr)
    if arr.ndim == 1 and arr.size in [3 * c for c in counts]:
        arr = arr.reshape(1, -1, 3)
    elif arr.ndim == 2 and arr.shape[1] in [3 * c for c in counts]:
        arr = arr.reshape(arr.shape[0], -1, 3)
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] not in [(c, 3) for c in counts]:
        if not openpose and arr.ndim >= 2 and arr.shape[-2] in (25, 18) and arr.shape[-1] == 3:
            fix = _OPENPOSE_FIX
        elif arr.ndim >= 2 and arr.shape[-1] == 2:
            fix = "add a confidence column (1.0 where the point was detected, 0.0 where not)"
        else:
            fix = "write each person as 17 [x, y, confidence] triplets in COCO order"
        expected = "(P, 25|18, 3) OpenPose" if openpose else "(17, 3) or (P, 17, 3) COCO-17 [x, y, confidence]"
        raise InputError(f"{where} has shape {shape}, "
                         f"expected {expected}; {fix}", source)
    return arr


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------

def _read_array(path: Path, track, openpose: bool) -> KeypointSequence:
    data = read_arrays(path, "save the keypoints with numpy.savez(path, keypoints=array)")
    if "keypoints" not in data and len(data) != 1:
        raise InputError(f"has no field 'keypoints' (fields: {', '.join(data) or 'none'}); "
                         f"save the (F, 17, 3) array as numpy.savez(path, keypoints=array)", path)
    name = "keypoints" if "keypoints" in data or "" in data else next(iter(data))
    arr = data[name if name in data else ""]
    counts = (25, 18) if openpose else (NUM_COCO,)
    if not np.issubdtype(arr.dtype, np.number) or arr.ndim not in (3, 4) or arr.shape[-1] != 3 \
            or arr.shape[-2] not in counts:
        if not openpose and arr.ndim in (3, 4) and arr.shape[-2] in (25, 18) and arr.shape[-1] == 3:
            fix = _OPENPOSE_FIX
        elif arr.ndim in (3, 4) and arr.shape[-1] == 2:
            fix = "add a confidence column (1.0 where detected, 0.0 where not) to make [x, y, confidence]"
        else:
            fix = "store frames first, then (people,) 17 points, then [x, y, confidence]"
        expected = "(F, [P,] 25|18, 3) OpenPose" if openpose else _SHAPE_HINT + " or (F, P, 17, 3)"
        dtype = "" if np.issubdtype(arr.dtype, np.number) else f" of {arr.dtype}"
        raise InputError(f"field '{name}' has shape {describe_shape(arr)}{dtype}, expected {expected}; {fix}", path)
    arr = arr.astype(np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
    frames = {f: arr[f] for f in range(arr.shape[0])}
    if openpose:
        frames = dict(zip(frames, _from_openpose(list(frames.values()))))
    return _assemble(path, "openpose" if openpose else "array", frames, track)


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc}); re-export it from the detector", path) from None


def _natural_key(value):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(value))]


def _read_coco(path: Path, data, track, image_ids) -> KeypointSequence:
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise InputError("is not a COCO results file (expected a JSON list of {image_id, keypoints, score} "
                         "objects); choose the right keypoint format (command line: --keypoint-format)", path)
    dets = [d for d in data if d.get("category_id", 1) == 1]  # persons only
    for i, d in enumerate(dets):
        for key in ("image_id", "keypoints"):
            if key not in d:
                raise InputError(f"result {i} has no field '{key}'; each result needs image_id and keypoints "
                                 f"[x, y, v] * 17", path)
    ids = list(dict.fromkeys(d["image_id"] for d in dets))
    notes = []
    if isinstance(image_ids, dict):
        lookup = {str(k): int(v) for k, v in image_ids.items()}
        unknown = [i for i in ids if str(i) not in lookup]
        if unknown:
            raise InputError(f"field 'image_id' value {unknown[0]!r} is not in the image_ids mapping; "
                             f"add it to the mapping (image_id -> frame index)", path)
        frame_of = {i: lookup[str(i)] for i in ids}
    elif image_ids == "frame":
        if not all(isinstance(i, int) for i in ids):
            raise InputError("field 'image_id' is not an integer frame number everywhere; use the default sorted "
                             "order or pass an image_id -> frame mapping", path)
        frame_of = {i: i for i in ids}
    elif image_ids is None:
        ordered = sorted(ids, key=(lambda v: v) if all(isinstance(i, int) for i in ids) else _natural_key)
        frame_of = {i: f for f, i in enumerate(ordered)}
        if ordered and all(isinstance(i, int) for i in ordered) and ordered[-1] - ordered[0] + 1 != len(ordered):
            notes.append("image_id values have gaps; frames are numbered by sorted order, so frames without any "
                         "detection are skipped. If image_id is the frame number, pass image_ids='frame'")
    else:
        raise InputError(f"image_ids={image_ids!r} is not supported; pass None, 'frame' or a dict "
                         f"{{image_id: frame}}")
    frames: dict[int, list[np.ndarray]] = {f: [] for f in frame_of.values()}
    for i, d in enumerate(dets):
        frames[frame_of[d["image_id"]]].append(_as_people(d["keypoints"], path, f"result {i} field 'keypoints'"))
    stacked = {f: np.concatenate(p) if p else np.zeros((0, NUM_COCO, 3)) for f, p in frames.items()}
    return _assemble(path, "coco", stacked, track, notes)


def _read_plain_json(path: Path, data, track) -> KeypointSequence:
    if isinstance(data, dict) and "keypoints" in data:
        if not isinstance(data["keypoints"], list):
            raise InputError("field 'keypoints' is not a list over frames; write {\"keypoints\": [frame0, frame1, "
                             "...]}", path)
        items = list(enumerate(data["keypoints"]))
    elif isinstance(data, list) and all(isinstance(d, dict) and "keypoints" in d for d in data):
        items = [(int(d.get("frame", d.get("frame_index", i))), d["keypoints"]) for i, d in enumerate(data)]
    else:
        raise InputError("has no field 'keypoints'; write {\"keypoints\": [[[x, y, c] * 17] per frame]} or "
                         "choose the right keypoint format (command line: --keypoint-format)", path)
    frames = {}
    for f, value in items:
        if f in frames:
            raise InputError(f"frame {f} appears twice; give every frame object a unique 'frame'", path)
        frames[f] = _as_people(value, path, f"frame {f} field 'keypoints'")
    return _assemble(path, "json", frames, track)


_OPENPOSE_NAME = re.compile(r"(\d+)\D*_keypoints\.json$")


def _openpose_people(path: Path, data) -> np.ndarray:
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise InputError("has no 'people' list; is this an OpenPose --write_json file?", path)
    people = []
    for i, person in enumerate(data["people"]):
        values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if values is None:
            raise InputError(f"people[{i}] has no field 'pose_keypoints_2d'; run OpenPose with body keypoints on",
                             path)
        if len(values) == 0:
            continue
        people.append(_as_people(values, path, f"people[{i}] field 'pose_keypoints_2d'", openpose=True))
    if not people:
        return np.zeros((0, 25, 3))
    if len({p.shape[1] for p in people}) > 1:
        raise InputError("mixes BODY_25 and COCO-18 people; run OpenPose with one --model_pose", path)
    return np.concatenate(people)


def _read_openpose(path: Path, track) -> KeypointSequence:
    files = sorted(path.glob("*_keypoints.json")) if path.is_dir() else [path]
    if not files:
        raise InputError("folder has no *_keypoints.json files; point at OpenPose's --write_json folder", path)
    numbers = [_OPENPOSE_NAME.search(f.name) for f in files]
    if path.is_dir() and all(numbers):
        index = [int(m.group(1)) for m in numbers]
        if len(set(index)) != len(index):
            raise InputError("two *_keypoints.json files have the same frame number; keep one video's output per "
                             "folder", path)
    else:
        files = sorted(files, key=lambda f: _natural_key(f.name))
        index = list(range(len(files)))
    frames = {}
    counts = set()
    for f, file in zip(index, files):
        people = _openpose_people(file, _load_json(file))
        frames[f] = people
        if len(people):
            counts.add(people.shape[1])
    if len(counts) > 1:
        raise InputError("mixes BODY_25 and COCO-18 files; run OpenPose with one --model_pose", path)
    k = counts.pop() if counts else 25
    frames = {f: p if len(p) else np.zeros((0, k, 3)) for f, p in frames.items()}
    return _assemble(path, "openpose", dict(zip(frames, _from_openpose(list(frames.values())))), track)


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

def detect_format(path) -> str:
    """'openpose' | 'coco' | 'json' | 'array' from the path (and a JSON file's structure)."""
    p = Path(path)
    if not p.exists():
        raise InputError("keypoint file or folder not found; check the path", p)
    if p.is_dir():
        if any(p.glob("*_keypoints.json")):
            return "openpose"
        raise InputError("folder has no *_keypoints.json files; point at OpenPose's --write_json folder or at a "
                         "keypoint file", p)
    suffix = p.suffix.lower()
    if suffix in (".npz", ".npy"):
        return "array"
    if suffix == ".json":
        data = _load_json(p)
        if isinstance(data, list) and data and isinstance(data[0], dict) and "image_id" in data[0]:
            return "coco"
        if isinstance(data, dict) and "people" in data:
            return "openpose"
        return "json"
    raise InputError(f"unknown keypoint file type '{suffix}'; use .npz/.npy, .json or an OpenPose folder, "
                     f"or choose the format (command line: --keypoint-format {'|'.join(FORMATS)})", p)


def sequence_from_array(keypoints, source: str) -> KeypointSequence:
    """A KeypointSequence (first frame 0) of an in-memory (F, 17, 3) array [x_px, y_px, confidence],
    e.g. markers tracked in Blender; cleaned and reported like a file's."""
    arr = np.asarray(keypoints, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_COCO, 3):
        raise InputError(f"has shape {describe_shape(arr)}, expected {_SHAPE_HINT}", source)
    return _assemble(source, "array", {f: arr[f][None] for f in range(len(arr))}, None)


def first_number_of(seq: KeypointSequence, footage_frames: int | None) -> int:
    """The source frame number of footage frame 0 for ``first_number="auto"``: 1 when an OpenPose folder's
    file numbers run 1..F over a footage of exactly F frames (a tool that numbers images from 1 wrote
    every frame), else 0 (the numbers are footage frames, as OpenPose numbers a video's frames)."""
    report = seq.report
    from_one = report.format == "openpose" and report.first_frame == 1 and report.frames == footage_frames
    return 1 if from_one else 0


def renumbered(seq: KeypointSequence, first_number: int) -> KeypointSequence:
    """``seq`` with its frames counted from ``first_number``: source frame ``first_number`` becomes footage
    frame 0 (``report.first_frame`` is then a footage frame)."""
    if first_number == 0:
        return seq
    report = replace(seq.report, first_frame=seq.report.first_frame - int(first_number))
    return replace(seq, report=report)


def load_keypoints(path, format: str | None = None, track: int | None = None,
                   image_ids=None) -> KeypointSequence:
    """Reads 2D keypoints from ``path`` (see module docstring) into a KeypointSequence."""
    p = Path(path)
    fmt = detect_format(p) if format is None else format
    if fmt not in FORMATS:
        raise InputError(f"unknown keypoint format '{fmt}'; use one of {', '.join(FORMATS)}")
    if not p.exists():
        raise InputError("keypoint file or folder not found; check the path", p)
    if fmt == "openpose" and p.suffix.lower() in (".npz", ".npy"):
        return _read_array(p, track, openpose=True)
    if fmt == "openpose":
        return _read_openpose(p, track)
    if fmt == "array":
        return _read_array(p, track, openpose=False)
    if p.is_dir():
        raise InputError(f"is a folder but format '{fmt}' needs a .json file; pass the file", p)
    data = _load_json(p)
    if fmt == "coco":
        return _read_coco(p, data, track, image_ids)
    return _read_plain_json(p, data, track)
