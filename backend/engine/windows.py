"""One clip in overlapping windows, blended back together: the loop that video, the motion prior (and
with it the bridging of gaps) and the final smoothing fit all run through.

A clip of F frames is cut into windows of a fixed length (the last one ends at the last frame); each
batch of windows is refined by the caller, and every frame's result is the weighted sum of the windows
that hold it (the weights ramp linearly across overlaps and sum to one per frame).  Rotations are
blended as 6D vectors and turned back into rotation matrices (Gram-Schmidt) at the end.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

# refine_batch(ids (w,window) long frame indices) -> dict: rotmats (w,window,24,3,3), transl (w,window,3),
# optionally contacts (w,window,4) (blended like transl), iterations (w,) and evaluations (int).
RefineBatch = Callable[[torch.Tensor], dict]


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Window starts covering 0..frames-1; the last window ends at the last frame."""
    if frames <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def blend_weights(frames: int, window: int, starts: list[int], overlap: int) -> np.ndarray:
    """(W, window) weights that ramp linearly across overlaps and sum to one per frame."""
    length = min(window, frames)
    ramp = np.ones(length)
    if overlap > 0 and len(starts) > 1:
        r = (np.arange(overlap) + 1) / (overlap + 1)
        ramp[:overlap], ramp[-overlap:] = np.minimum(ramp[:overlap], r), np.minimum(ramp[-overlap:], r[::-1])
    w = np.zeros((len(starts), frames))
    for i, s in enumerate(starts):
        w[i, s:s + length] = ramp
        if i == 0:
            w[i, :overlap] = 1.0 * (w[i, :overlap] > 0)
        if i == len(starts) - 1:
            w[i, s + length - overlap:s + length] = 1.0
    w /= w.sum(0, keepdims=True)
    return np.stack([w[i, s:s + length] for i, s in enumerate(starts)])


def window_index(frames: int, window: int, starts: list[int], device: torch.device | str) -> torch.Tensor:
    """(W,window) frame indices of each window; a clip shorter than the window repeats its last frame."""
    idx = torch.as_tensor(starts, device=device)[:, None] + torch.arange(window, device=device)
    return idx.clamp(max=frames - 1)


def refine_in_windows(frames: int, window: int, overlap: int, per_batch: int, refine_batch: RefineBatch,
                      device: torch.device | str) -> dict:
    """A clip of ``frames`` frames refined in windows of ``window`` frames overlapping by ``overlap``,
    ``per_batch`` windows per call of ``refine_batch``, and blended.  A window longer than the clip holds
    the clip with its last frame repeated (weight 0 on the repeats).

    Returns rotmats (F,24,3,3), transl (F,3), contacts (F,4) if the batches gave any, iterations (W,) (empty
    if they gave none) and evaluations (their sum)."""
    starts = window_starts(frames, window, overlap)
    idx = window_index(frames, window, starts, device)                                   # (W,window)
    blend = torch.zeros(len(starts), window, device=device)
    blend[:, :min(window, frames)] = torch.as_tensor(blend_weights(frames, window, starts, overlap),
                                                     dtype=torch.float32, device=device)
    x6 = torch.zeros(frames, 24, 6, device=device)
    blended = dict(transl=torch.zeros(frames, 3, device=device))
    iterations, evaluations = [], 0
    for b in range(0, len(starts), per_batch):
        ids, wts = idx[b:b + per_batch], blend[b:b + per_batch]
        res = refine_batch(ids)
        x6.index_add_(0, ids.reshape(-1), (matrix_to_rot6d(res["rotmats"]) * wts[..., None, None]).reshape(-1, 24, 6))
        for key in ("transl", "contacts"):
            if key in res:
                part = res[key]
                total = blended.setdefault(key, torch.zeros(frames, part.shape[-1], device=device))
                total.index_add_(0, ids.reshape(-1), (part * wts[..., None]).reshape(-1, part.shape[-1]))
        if "iterations" in res:
            iterations.append(res["iterations"])
        evaluations += res.get("evaluations", 0)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return dict(blended, rotmats=rot6d_to_matrix(x6), iterations=torch.cat(iterations) if iterations else empty,
                evaluations=evaluations)
