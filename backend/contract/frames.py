"""Frame ranges: one type, one parser, one conversion to Blender's scene frames.

Convention: 0-based footage frame numbers, half-open ``start:stop`` (stop
excluded).  A keypoint file's frame numbers are footage frame numbers (OpenPose
file numbers, COCO frame ids; an array starts at 0): keypoint frame i of a file
whose first number is ``first_frame`` is footage frame ``first_frame + i``.
In Blender, footage frame f sits at scene frame ``footage_start + f``
(:func:`to_scene` / :func:`from_scene`).
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.contract.errors import InputError

__all__ = ["FrameRange", "parse_frames", "from_scene", "to_scene"]


@dataclass(frozen=True)
class FrameRange:
    """Footage frames ``start`` .. ``stop - 1`` (0-based, stop excluded)."""
    start: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        return f"{self.start}:{self.stop}"

    def __iter__(self):
        """``start, stop = frames``, as for a (start, stop) pair."""
        return iter((self.start, self.stop))


def parse_frames(text: str | None):
    """'START:STOP' -> FrameRange; 'overlap' -> 'overlap'; None -> None (the command line's --frames)."""
    if text is None or text == "overlap":
        return text
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"frame range {text!r} is not START:STOP (footage frames from 0, STOP excluded), "
                         f"e.g. 0:96, or 'overlap'") from None
    return FrameRange(start, stop)


def from_scene(first: int, last: int, footage_start: int) -> FrameRange:
    """Scene frames ``first``..``last`` (inclusive, as Blender shows them) -> footage frames."""
    return FrameRange(first - footage_start, last - footage_start + 1)


def to_scene(frames: FrameRange, footage_start: int) -> tuple[int, int]:
    """Footage frames -> (first, last) scene frames, inclusive."""
    return footage_start + frames.start, footage_start + frames.stop - 1
