"""A video of the footage with the detections drawn, written frame by frame while detecting.

``DetectionPreview(path, fps, size, force)`` is a context manager and an ``on_frame(index, bgr,
person)`` callback for ``detect_footage``: the detected COCO-17 skeleton (confident points only)
and rings at the points (``backend.io.preview``'s drawing), small rings at the feet, and a note in
frames without the person.  It writes to a temp file beside ``path`` and renames it into place
when the block ends normally; on an error the temp file is removed and ``path`` is untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from backend.detect.blazepose import Person, to_layouts
from backend.contract.errors import InputError
from backend.io.preview import CODECS, _draw_detections, _draw_skeleton, _target, _Window

__all__ = ["DetectionPreview", "MIN_DRAWN_CONF"]

MIN_DRAWN_CONF = 0.3   # bones between points at least this confident are drawn


class DetectionPreview:
    def __init__(self, path, fps: float, size: tuple[int, int], force: bool = False):
        self.path = _target(path, force)
        self.fps, self.size = float(fps), (int(size[0]), int(size[1]))
        self._tmp: str | None = None
        self._writer = None

    def __enter__(self):
        import cv2

        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()]),
                                       self.fps, self.size)
        if not self._writer.isOpened():
            self._discard()
            raise InputError(f"OpenCV cannot write {self.path.suffix} video here (no encoder); name the preview "
                             f".avi instead", self.path)
        return self

    def __call__(self, index: int, bgr: np.ndarray, person: Person | None) -> None:
        self._writer.write(draw_detection(bgr, person))

    def __exit__(self, kind, value, tb):
        self._writer.release()
        if kind is None:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self._tmp, 0o666 & ~mask)  # mkstemp makes 0600 files
            os.replace(self._tmp, self.path)
        else:
            self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def draw_detection(bgr: np.ndarray, person: Person | None) -> np.ndarray:
    """A copy of the frame with ``person``'s detections drawn (or 'no person')."""
    import cv2

    img = bgr.copy()
    window = _Window(0, 0, img.shape[1], img.shape[0], 1.0)
    if person is None:
        cv2.putText(img, "no person", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (40, 40, 230), 2, cv2.LINE_AA)
        return img
    coco, feet = to_layouts(person.image)
    uv = np.where(coco[:, 2:] >= MIN_DRAWN_CONF, coco[:, :2], np.nan)
    _draw_skeleton(img, uv, window)
    _draw_detections(img, coco, window)
    for x, y, c in feet:
        if c > 0:
            cv2.circle(img, (round(float(x)), round(float(y))), max(2, img.shape[0] // 150), (60, 230, 255), 1,
                       cv2.LINE_AA)
    return img

