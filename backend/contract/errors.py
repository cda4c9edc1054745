"""The one exception type the io readers and writers raise for bad user input."""

from __future__ import annotations

import os

__all__ = ["InputError", "describe_shape"]


class InputError(ValueError):
    """A user-facing problem with an input or output file.

    The message is one line that names the file, the field, what is wrong and
    how to fix it, e.g. ``keypoints.npz: field 'keypoints' has shape (10, 18, 3),
    expected (F, 17, 3) COCO-17 [x, y, confidence]; ...``.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(" ".join(str(message).split()))


def describe_shape(value) -> str:
    """Shape of an array-like as text, e.g. ``(10, 18, 3)``; ``scalar`` / type name otherwise."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    return "scalar" if shape == () else str(tuple(int(s) for s in shape))
