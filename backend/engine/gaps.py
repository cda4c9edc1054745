"""Bridging frames without evidence in the video start (the refinement's initial estimate).

A frame where the detector saw (almost) nothing gives the regressor nothing to read: its estimate
is a fixed pose at a default depth, so a gap of a few frames turned the body to face away and
the refinement, with no keypoints to pull it back, kept it.  Here every such frame's start is
interpolated from the nearest frames with evidence on both sides: joint rotations by slerp,
translation and body shape linearly, and the denoiser's context (the regressor's features)
linearly too, so the prior is conditioned on the neighbours' evidence rather than on an empty
image.  At the clip's ends the nearest seen frame is held.  The keypoint guidance already ignores
confidence-0 points, so nothing pulls the bridged frames away from their neighbours.
"""
from __future__ import annotations

import torch

from backend.rotations import matrix_to_quaternion, quaternion_to_matrix

MIN_VISIBLE = 4   # fewer confident keypoints than this: the frame cannot place the body


def empty_frames(keypoints: torch.Tensor) -> torch.Tensor:
    """(F,K,3) [x, y, conf] -> (F,) bool: frames with fewer than MIN_VISIBLE confident keypoints."""
    return (keypoints[..., 2] > 0).sum(-1) < MIN_VISIBLE


def neighbours(empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every frame, the nearest seen frame before (or at) and after (or at) it and the blend
    weight of the later one: (F,) long, (F,) long, (F,) float.  Seen frames map to themselves."""
    f = empty.shape[0]
    idx = torch.arange(f, device=empty.device)
    seen = ~empty
    before = torch.where(seen, idx, torch.full_like(idx, -1)).cummax(0).values
    after = torch.where(seen, idx, torch.full_like(idx, f)).flip(0).cummin(0).values.flip(0)
    # Clip ends: hold the nearest seen frame.
    before = torch.where(before < 0, after, before)
    after = torch.where(after >= f, before, after)
    span = (after - before).clamp_min(1)
    w = torch.where(after == before, torch.zeros(f, device=empty.device), (idx - before) / span)
    return before, after, w.float()


def slerp(q0: torch.Tensor, q1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of unit quaternions (...,4) with weights w broadcast to (...,1)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)                 # the short way round
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    s = torch.sin(theta)
    small = s < 1e-6
    a = torch.where(small, 1 - w, torch.sin((1 - w) * theta) / s.clamp_min(1e-6))
    b = torch.where(small, w, torch.sin(w * theta) / s.clamp_min(1e-6))
    q = a * q0 + b * q1
    return q / q.norm(dim=-1, keepdim=True)


def bridge(start: dict, context: torch.Tensor, keypoints: torch.Tensor,
           bridge_start: bool = True) -> tuple[dict, torch.Tensor]:
    """Start (rotmats (F,24,3,3), betas (F,10), transl (F,3), ...) and context (F,C) with every
    empty frame of keypoints (F,K,3) interpolated from its seen neighbours; unchanged when no
    frame is empty or none is seen.  ``bridge_start=False`` bridges the context only (a start
    given by the caller is their estimate for every frame and stays)."""
    empty = empty_frames(keypoints)
    if not empty.any() or empty.all():
        return start, context
    before, after, w = neighbours(empty)
    lerp = lambda x: x[before] + w.view(-1, *([1] * (x.dim() - 1))).to(x.dtype) * (x[after] - x[before])
    keep = (~empty).view(-1, 1)
    context = torch.where(keep, context, lerp(context))
    if not bridge_start:
        return start, context
    q = matrix_to_quaternion(start["rotmats"])
    rot = quaternion_to_matrix(slerp(q[before], q[after], w.view(-1, 1, 1).to(q.dtype))).to(start["rotmats"].dtype)
    bridged = dict(start, rotmats=torch.where(keep[:, :, None, None], start["rotmats"], rot),
                   transl=torch.where(keep, start["transl"], lerp(start["transl"])),
                   betas=torch.where(keep, start["betas"], lerp(start["betas"])))
    return bridged, context


def gap_stretches(empty: torch.Tensor, frames: int, pad: int) -> list[tuple[int, int]]:
    """Stretches [start, stop) of a clip around its runs of empty frames (F,) bool: each run with
    ``pad`` seen frames on both sides, widened to at least ``frames`` (the motion prior's window),
    clamped to the clip; stretches that touch are merged.  None when nothing or everything is empty."""
    f = empty.shape[0]
    if not empty.any() or empty.all():
        return []
    edges = torch.diff(torch.cat([empty.new_zeros(1), empty, empty.new_zeros(1)]).to(torch.int8))
    runs = zip(torch.nonzero(edges == 1).flatten().tolist(), torch.nonzero(edges == -1).flatten().tolist())
    out: list[tuple[int, int]] = []
    for a, b in runs:
        grow = max(pad, (frames - (b - a) + 1) // 2)
        s, e = max(a - grow, 0), min(b + grow, f)
        s, e = max(min(s, e - frames), 0), min(max(e, s + frames), f)
        if out and s <= out[-1][1]:
            s = out[-1][0]
            out.pop()
        out.append((s, e))
    return out


def stretch_weights(empty: torch.Tensor, start: int, stop: int, hold: int) -> torch.Tensor:
    """(stop-start,) weights of a stretch's gap filling: 1 on its empty frames and ``hold`` frames
    around them, easing linearly to 0 at the stretch's ends (the rest stays the caller's)."""
    part = empty[start:stop].float()
    n = stop - start
    idx = torch.arange(n, device=empty.device, dtype=torch.float32)
    gap = torch.nonzero(part > 0).flatten()
    lo, hi = float(gap.min()) - hold, float(gap.max()) + hold
    up = ((idx + 1) / max(lo + 1, 1.0)).clamp(0, 1) if start > 0 else torch.ones(n, device=empty.device)
    down = ((n - idx) / max(n - hi, 1.0)).clamp(0, 1) if stop < empty.shape[0] else torch.ones(n, device=empty.device)
    return torch.minimum(up, down)
