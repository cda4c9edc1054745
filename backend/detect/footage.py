"""Footage in, 2D keypoints out: BlazePose run over streamed frames, one chosen person followed.

``detect_footage(path, frames=None, track=None, progress=None, cancel=None, on_frame=None)
-> (keypoints dict, DetectReport)``

Frames are decoded one at a time (``backend.io.footage.iter_frames``) and dropped after
detection, so memory grows with the clip only by the per-frame results (under 1 KB a frame: 33
landmarks x [x, y, confidence] and x [x, y, z] in float32).

The keypoint dict (``write_keypoint_file`` saves it as .npz; ``backend.contract.keypoints.load_keypoints``
and ``--observations`` read it):
  ``keypoints``        (F, 17, 3) float32 COCO-17 [x_px, y_px, confidence]; confidence = BlazePose's
                       visibility x presence; every point 0 in frames without the person.
  ``image_size``       (2,) [width, height] of the frames as displayed (rotation metadata applied).
  ``fps``              () the footage's (mean) frame rate.
  ``first_frame``      () footage frame of keypoint frame 0 (the start of ``frames``).
  ``feet``             (F, 6, 3) float32 FOOT6 order [x_px, y_px, confidence]: big toes from
                       BlazePose's foot_index, heels from its heels; the small toes are missing (0).
  ``world_landmarks``  (F, 33, 3) float32 BlazePose's metric 3D landmarks (metres, origin between the
                       hips, x left->right of the image, y down, z away from the camera), in
                       ``landmark_names`` order; NaN in frames without the person.
  ``landmark_names``   (33,) str.
  ``detector``         () str: detector, version and model.
No ``focal_length``: video files do not record it (the refinement estimates it from a field of view).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.detect.blazepose import (LANDMARK_NAMES, MODEL_COMPLEXITY, BlazePose, Person, describe_detector,
                                      to_layouts)
from backend.detect.tracking import MAX_PEOPLE, PersonTracker
from backend.contract.errors import InputError
from backend.io.footage import FootageInfo, iter_frames, probe

__all__ = ["DetectReport", "DetectionCancelled", "detect_footage", "write_keypoint_file", "check_footage"]


class DetectionCancelled(Exception):
    """``cancel()`` returned True; nothing was written."""


@dataclass
class DetectReport:
    source: str
    first_frame: int              # footage frame of keypoint frame 0
    frames: int                   # frames read and detected
    missed: int                   # frames without the tracked person (confidence 0)
    track: int
    most_people: int              # most people found in one frame when the detector searched
    searches: int                 # frames where the person had to be looked for (start, loss, jump)
    reacquired: int               # times the person was picked up again by a search
    seconds: float                # wall-clock time of the detection (decoding included)
    cpu_seconds: float            # CPU time of this process meanwhile (all its threads)
    footage: FootageInfo
    notes: list[str] = field(default_factory=list)

    @property
    def missed_fraction(self) -> float:
        return self.missed / max(self.frames, 1)

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def summary(self) -> str:
        last = self.first_frame + self.frames - 1
        return (f"{Path(self.source).name}: frames {self.first_frame}-{last}, person found in "
                f"{self.frames - self.missed} of {self.frames} ({self.missed} missed, "
                f"{100 * self.missed_fraction:.1f}%), track {self.track}, at most {self.most_people} "
                f"{'person' if self.most_people == 1 else 'people'} seen at once, {self.frames_per_second:.1f} "
                f"frames/s")


def check_footage(path) -> FootageInfo:
    """Probes ``path`` as a video (InputError for what cannot be one, e.g. a still image)."""
    import cv2

    p = Path(path)
    if p.is_file() and p.stat().st_size and cv2.haveImageReader(str(p)):
        raise InputError("is a still image, not a video: the detector follows a person through footage; pass a "
                         "video file (for a single picture, make a one-frame video, e.g. ffmpeg -i IMAGE "
                         "OUT.mp4)", p)
    return probe(p)


def _frame_range(frames, info: FootageInfo) -> tuple[int, int]:
    total = info.frame_count
    if frames is None:
        return 0, total
    if isinstance(frames, str):
        raise InputError(f"frame range {frames!r} is not START:STOP footage frames (STOP excluded)")
    start, stop = (int(x) for x in frames)
    if not 0 <= start < stop <= total:
        raise InputError(f"frame range {start}:{stop} is outside {Path(info.path).name}'s frames 0-{total - 1}; "
                         f"give START:STOP with 0 <= START < STOP <= {total}")
    return start, stop


def _no_person_message(report: DetectReport, tracker: PersonTracker) -> str:
    if tracker.most_people and tracker.track >= tracker.most_people:
        return (f"track {tracker.track} was never seen: at most {tracker.most_people} "
                f"{'person' if tracker.most_people == 1 else 'people'} in one frame; pick --track between 0 and "
                f"{tracker.most_people - 1}")
    return (f"no person found in any of the {report.frames} frames "
            f"{report.first_frame}-{report.first_frame + report.frames - 1}; the detector needs a person's body "
            f"visible (at least the torso), lit and not tiny in the frame")


def detect_footage(path, frames=None, track: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None,
                   on_frame: Callable[[int, np.ndarray, Person | None], None] | None = None,
                   complexity: int = MODEL_COMPLEXITY) -> tuple[dict, DetectReport]:
    """Detects the person ``track`` (0/None = the largest) in footage frames ``frames`` = (start, stop).

    ``path``: the video, or its ``check_footage`` result (not probed twice).

    ``progress(done, total)`` after each frame; ``cancel()`` is asked before each frame (True raises
    DetectionCancelled); ``on_frame(index, bgr, person or None)`` sees each frame (previews).
    Returns the keypoint dict (module docstring) and a DetectReport.  Bad footage, a frame range
    outside it, an unknown track or no person at all raise InputError; a missing mediapipe raises
    DetectorUnavailable.
    """
    import cv2

    info = path if isinstance(path, FootageInfo) else check_footage(path)
    start, stop = _frame_range(frames, info)
    if track is not None and not 0 <= int(track) < MAX_PEOPLE:
        raise InputError(f"--track {track} is out of range: the detector tells apart up to {MAX_PEOPLE} people; "
                         f"pick a track between 0 and {MAX_PEOPLE - 1}")
    total = stop - start
    notes = []
    if info.variable_rate:
        notes.append(f"{Path(info.path).name} has a variable frame rate; frames are taken in order at its mean "
                     f"rate {info.fps:g} fps")
    image, world = [], []
    with BlazePose(static=False, complexity=complexity) as follow, \
            BlazePose(static=True, complexity=complexity) as find:
        tracker = PersonTracker(follow, find, track)
        started, cpu_started = time.perf_counter(), time.process_time()  # without building the graphs
        for index, bgr in iter_frames(info.path, start, stop):
            if cancel is not None and cancel():
                raise DetectionCancelled(f"detection cancelled at frame {index}")
            person = tracker.step(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            image.append(person.image if person is not None else np.zeros((len(LANDMARK_NAMES), 3), np.float32))
            world.append(person.world if person is not None else np.full((len(LANDMARK_NAMES), 3), np.nan,
                                                                         np.float32))
            if on_frame is not None:
                on_frame(index, bgr, person)
            if progress is not None:
                progress(len(image), total)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if len(image) < total:
        notes.append(f"the footage ended after {start + len(image)} frames although its container reports "
                     f"{info.frame_count}; the keypoints stop there")
    landmarks = np.stack(image) if image else np.zeros((0, len(LANDMARK_NAMES), 3), np.float32)
    found = landmarks[..., 2].max(-1, initial=0.0) > 0 if len(landmarks) else np.zeros(0, bool)
    report = DetectReport(
        source=info.path, first_frame=start, frames=len(image), missed=int((~found).sum()), track=tracker.track,
        most_people=tracker.most_people, searches=tracker.searches, reacquired=tracker.reacquired,
        seconds=seconds, cpu_seconds=cpu_seconds, footage=info, notes=notes)
    if not found.any():
        raise InputError(_no_person_message(report, tracker), info.path)
    coco, feet = to_layouts(landmarks)
    data = dict(
        keypoints=coco, feet=feet, world_landmarks=np.stack(world),
        image_size=np.array([info.width, info.height], np.float64), fps=np.float64(info.fps),
        first_frame=np.int64(start), landmark_names=np.array(LANDMARK_NAMES), detector=np.array(describe_detector()),
    )
    return data, report


def write_keypoint_file(path, data: dict, force: bool = False) -> Path:
    """Saves a ``detect_footage`` dict as .npz, atomically (temp file, then rename); an existing file is kept
    unless ``force``."""
    from backend.contract.results import _atomic_write

    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError("the keypoint file is written as .npz (what --keypoints and --observations read); "
                         "name it .npz", path)
    return _atomic_write(path, lambda fh: np.savez(fh, **data), force)

