"""Built-in 2D keypoint detection: footage -> COCO-17 keypoints (MediaPipe BlazePose), see docs/detector.md.

``detect_footage(path, frames=None, track=None, progress=None, cancel=None) -> (dict, DetectReport)``
and ``write_keypoint_file(path, dict, force=False)``; the command line is ``python -m backend detect``
(``backend.detect.cli``).  mediapipe is imported only when a detector is built.
"""
from backend.detect.blazepose import DetectorUnavailable
from backend.detect.footage import DetectionCancelled, DetectReport, detect_footage, write_keypoint_file

__all__ = ["DetectorUnavailable", "DetectionCancelled", "DetectReport", "detect_footage", "write_keypoint_file"]
