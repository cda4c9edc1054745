"""Reading .npz / .npy files with one clear message for files numpy cannot read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from backend.contract.errors import InputError

__all__ = ["read_arrays"]


def _kind(path: Path) -> str:
    """What a file that numpy refused looks like, for the message."""
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return "cannot be read"
    if not head:
        return "is empty"
    if head.startswith(b"PK"):
        return _zip_kind(path)
    if head.startswith(b"\x93NUMPY"):  # a real .npy whose array numpy refused
        return "holds Python objects (object arrays), which are not loaded for safety"
    if head.startswith(b"\x80"):
        return "is a Python pickle, which is not loaded for safety"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a numpy .npz/.npy file (damaged, or another format)"
    return "holds text, not numpy arrays"


def _zip_kind(path: Path) -> str:
    """What a file starting with the zip magic is: an intact .npz of object arrays, or not one at all."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return "is damaged (cut short or corrupted) or not a numpy .npz file"
    if damaged is not None:
        return f"is damaged ({damaged} inside it is corrupted)"
    return "holds Python objects (object arrays), which are not loaded for safety"


def read_arrays(path, fix: str) -> dict:
    """{name: array} of an .npz (or {'': array} of an .npy) at ``path``; InputError naming the file,
    what it holds instead and ``fix`` when numpy cannot read it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found" + (f"; {fix}" if fix else ""), path)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return {"": data}
        with data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        # numpy's own message ("pickled data when allow_pickle=False") is about its loader, not the file.
        raise InputError(f"{_kind(path)}: expected a numpy .npz file of numeric arrays" + (f"; {fix}" if fix else ""),
                         path) from None
