"""MediaPipe BlazePose (legacy ``solutions.pose``, full model) as a function of one RGB frame.

``BlazePose(static)`` wraps one ``mediapipe`` Pose graph; calling it with an RGB uint8 (H, W, 3)
frame returns a ``Person`` or None.  ``static=False`` is BlazePose's video mode: it follows the
person it found in earlier frames (region from the previous landmarks) and runs its person
detector again only after a loss.  ``static=True`` detects afresh in every frame.  MediaPipe's
landmark smoothing is off: the refinement smooths over time itself (a filter's lag would bias
fast motion), and without it the example shot's error is lower (3.24 vs 3.42 px mean).

Only ``model_complexity=1`` is offered: its ``pose_detection.tflite`` and
``pose_landmark_full.tflite`` ship inside the mediapipe wheel, whereas complexity 0 (lite) and
2 (heavy) download their model from the internet on first use.

Layouts (module constants):
  ``LANDMARK_NAMES``  BlazePose's 33 landmarks, in its order.
  ``COCO17_FROM_BLAZEPOSE`` (17,) landmark index of each COCO-17 point (all 17 exist by name).
  ``FOOT6_FROM_BLAZEPOSE``  (6,) landmark index of each FOOT6 point, -1 where BlazePose has none:
      big toe <- foot_index (BlazePose's toe-tip point, between the first and second toes),
      heel <- heel; the small toes have no BlazePose counterpart and stay missing (confidence 0).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contract.layout import COCO17_NAMES, FOOT6_NAMES

__all__ = ["LANDMARK_NAMES", "COCO17_FROM_BLAZEPOSE", "FOOT6_FROM_BLAZEPOSE", "MODEL_COMPLEXITY",
           "MEDIAPIPE_VERSION", "DetectorUnavailable", "Person", "BlazePose", "person_box", "to_layouts",
           "describe_detector", "check_complexity"]

LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)
COCO17_FROM_BLAZEPOSE = np.array([LANDMARK_NAMES.index(n) for n in COCO17_NAMES])
_FOOT6_SOURCE = {"left_big_toe": "left_foot_index", "right_big_toe": "right_foot_index",
                 "left_heel": "left_heel", "right_heel": "right_heel"}
FOOT6_FROM_BLAZEPOSE = np.array([LANDMARK_NAMES.index(_FOOT6_SOURCE[n]) if n in _FOOT6_SOURCE else -1
                                 for n in FOOT6_NAMES])

MODEL_COMPLEXITY = 1            # the full model: the only one inside the wheel
MEDIAPIPE_VERSION = "0.10.14"   # requirements/detect.txt
# Landmarks at least this confident span a person's box (tracking, "largest person").
BOX_MIN_CONF = 0.3
_MODEL_FILES = ("modules/pose_detection/pose_detection.tflite", "modules/pose_landmark/pose_landmark_full.tflite")
_INSTALL = "pip install --no-deps -r requirements/detect.txt (scripts/setup_venv.sh does it)"


class DetectorUnavailable(RuntimeError):
    """mediapipe is missing or incomplete, or a model that would need a download was asked for."""


@dataclass(frozen=True)
class Person:
    """One detected person: ``image`` (33, 3) [x_px, y_px, confidence], ``world`` (33, 3) metres
    (BlazePose's metric landmarks, origin between the hips, y down)."""
    image: np.ndarray
    world: np.ndarray

    @property
    def box(self) -> np.ndarray:
        return person_box(self.image)


def person_box(points: np.ndarray) -> np.ndarray:
    """(K, 3) [x, y, conf] -> (4,) [x0, y0, x1, y1] of the confident points (all points if < 2 are)."""
    sure = points[points[:, 2] >= BOX_MIN_CONF]
    xy = (sure if len(sure) >= 2 else points)[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def to_layouts(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 33, 3) BlazePose [x, y, conf] -> ((..., 17, 3) COCO-17, (..., 6, 3) FOOT6; missing points 0)."""
    feet = image[..., np.maximum(FOOT6_FROM_BLAZEPOSE, 0), :].copy()
    feet[..., FOOT6_FROM_BLAZEPOSE < 0, :] = 0.0
    return image[..., COCO17_FROM_BLAZEPOSE, :].copy(), feet


def describe_detector() -> str:
    return f"MediaPipe BlazePose {MEDIAPIPE_VERSION} (legacy solutions.pose, model_complexity={MODEL_COMPLEXITY})"


def check_complexity(complexity: int) -> None:
    """Refuses the lite (0) and heavy (2) models: mediapipe would download them from the internet."""
    if complexity != MODEL_COMPLEXITY:
        name = {0: "lite", 2: "heavy"}.get(complexity, "unknown")
        raise DetectorUnavailable(
            f"BlazePose model_complexity={complexity} ({name}) is not offered: mediapipe downloads that model "
            f"from the internet on first use; use model_complexity=1 (the full model shipped inside the wheel)")


def _solutions_pose():
    """mediapipe's legacy pose module, checked to hold the bundled full model (never downloads)."""
    try:
        import mediapipe
        from mediapipe.python.solutions import pose
    except ImportError as exc:
        raise DetectorUnavailable(f"the detector needs mediapipe=={MEDIAPIPE_VERSION} ({exc}); {_INSTALL}") \
            from None
    root = Path(mediapipe.__file__).parent
    missing = [f for f in _MODEL_FILES if not (root / f).is_file()]
    if missing:
        raise DetectorUnavailable(f"mediapipe at {root} lacks {', '.join(missing)}; reinstall it: {_INSTALL}")
    return pose


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences the C++ side's start-up chatter (TFLite/absl lines written straight to fd 2)."""
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BlazePose:
    """One BlazePose graph; ``self(rgb) -> Person | None`` (see module docstring). Close it (or use
    ``with``) to free the graph."""

    def __init__(self, static: bool, complexity: int = MODEL_COMPLEXITY, min_detection: float = 0.5,
                 min_tracking: float = 0.5):
        check_complexity(complexity)
        pose = _solutions_pose()
        self._graph = pose.Pose(static_image_mode=static, model_complexity=complexity, smooth_landmarks=False,
                                min_detection_confidence=min_detection, min_tracking_confidence=min_tracking)
        with _quiet_native_stderr():
            # The graph initialises (and logs) on its first frame; a blank one leaves no one tracked.
            self._run(np.zeros((64, 64, 3), np.uint8))

    def _run(self, rgb: np.ndarray):
        from mediapipe.python.solution_base import SolutionBase

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf's GetPrototype deprecation, per frame
            # SolutionBase.process rather than Pose.process: the latter clears each landmark's
            # presence (is it inside the frame), which the confidence below needs.
            return SolutionBase.process(self._graph, {"image": rgb})

    def __call__(self, rgb: np.ndarray) -> Person | None:
        result = self._run(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        lm = result.pose_landmarks.landmark
        # Confidence: visible (BlazePose's visibility) and inside the image (its presence).
        image = np.array([(p.x * w, p.y * h, p.visibility * p.presence) for p in lm], np.float32)
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark], np.float32)
        return Person(image=image, world=world)

    def close(self) -> None:
        self._graph.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
