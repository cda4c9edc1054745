"""A shot from files: the footage probed with OpenCV (``backend.io.footage``), then paired with its
keypoints by the contract (``backend.contract.shot``, which documents the rules)."""
from __future__ import annotations

from backend.contract import shot as contract_shot
from backend.io.footage import probe

__all__ = ["load_shot"]


def load_shot(footage, keypoints, frames=None, **options) -> contract_shot.Shot:
    """``footage`` (a video path, or None for keypoints only) probed, then
    ``backend.contract.shot.load_shot(info, keypoints, frames, **options)``."""
    info = probe(footage) if footage is not None else None
    return contract_shot.load_shot(info, keypoints, frames, **options)
