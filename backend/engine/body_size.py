"""The body's size: one shape for a clip, and a known height that fixes its scale.

Seen by one camera, a body k times larger placed k times farther projects almost the same keypoints, so
the 2D evidence hardly tells the size and the depth apart: the depth error of a result follows its size
error.  The built-in regressor guesses the shape per frame; a clip gets one shape (the per-frame guesses
averaged, :func:`clip_betas`).  A user who knows the person's height fixes the scale: the clip's shape
moves along the direction that changes the rest height most (:func:`betas_with_height`) until the rest
body is that tall, and the start moves away from or towards the camera by the same factor
(:func:`rescale_translation`), so its keypoints project where they did.

Why no size is estimated from the clip: on the tuning subjects' real-detector excerpts (15 x 64 frames,
bodies drawn from the shape prior, 1.64-1.95 m) the regressor's clip-mean height correlates 0.06 with the
truth (it stays within 1.69-1.82 m), and fitting one shape to the whole clip's keypoints (with the pose,
per-frame translation and a shape prior) left the median / worst size error at 4.3% / 10.2% (averaged
shape: 5.1% / 10.1%) and the depth error no better: in this shape space proportions do fix the size
exactly, but the keypoints' proportions are lost in the pose's errors.  lab/scripts/bench_body_size.py
measures both cases.

Height: the rest (T-pose, zero pose) mesh's extent along the model's up axis (y), metres.
"""
from __future__ import annotations

import torch

UP_AXIS = 1                  # the body model's frame is Y up
HEIGHT_RANGE_M = (0.8, 2.5)  # heights accepted: outside, most likely a unit slip (centimetres, feet)
HEIGHT_TOLERANCE_M = 1e-4   # betas_with_height stops when the rest height is this close
MAX_STEPS = 8


def rest_height(body_model, betas: torch.Tensor) -> torch.Tensor:
    """Rest-pose mesh height (B,) in metres of betas (B,10) (top of the head to the soles)."""
    b = betas.reshape(-1, betas.shape[-1])
    eye = torch.eye(3, dtype=b.dtype, device=b.device).expand(b.shape[0], 24, 3, 3)
    up = body_model(eye, b).vertices[..., UP_AXIS]
    return up.amax(1) - up.amin(1)


def clip_betas(betas: torch.Tensor) -> torch.Tensor:
    """One shape (10,) for a clip from per-frame shapes (F,10): their mean (as the paper's video mode)."""
    return betas.reshape(-1, betas.shape[-1]).mean(0)


def betas_with_height(body_model, betas: torch.Tensor, height: float) -> torch.Tensor:
    """The shape (10,) nearest to ``betas`` (10,) whose rest body is ``height`` metres tall.

    Newton steps along the gradient of the rest height: the smallest change of the betas (in their
    Euclidean norm, the shape prior's) for the height change asked, so the proportions the evidence gave
    change as little as a height change allows.  Heights outside the shape space's comfortable range
    (1.50-1.95 m is about +-2 SD) still converge: the height is close to linear in the betas."""
    b = betas.detach().reshape(-1).clone()
    for _ in range(MAX_STEPS):
        x = b.clone().requires_grad_(True)
        with torch.enable_grad():
            h = rest_height(body_model, x[None])[0]
            (grad,) = torch.autograd.grad(h, x)
        miss = float(height) - float(h.detach())
        if abs(miss) < HEIGHT_TOLERANCE_M:
            break
        b = b + miss * grad / grad.pow(2).sum()
    return b


def rescale_translation(body_model, transl: torch.Tensor, betas_from: torch.Tensor,
                        betas_to: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """Camera-frame translations (N,3) of bodies that change shape betas_from -> betas_to (10,) and whose
    rest pelvis moves ``factor`` times farther along its ray from the camera (the new size over the old):
    the posed body, scaled about the camera centre, projects where it did.  -> (N,3)."""
    pelvis_from = body_model.shaped(betas_from.reshape(1, -1)).rest_joints[0, 0]
    pelvis_to = body_model.shaped(betas_to.reshape(1, -1)).rest_joints[0, 0]
    return factor * (transl + pelvis_from) - pelvis_to


def with_height(body_model, start: dict, height: float) -> dict:
    """The start {rotmats (N,24,3,3), betas (N,10), transl (N,3), ...} of one person as one shape
    ``height`` metres tall (betas (N,10), all rows equal) and its translations moved by the size change.
    Raises InputError for a height outside HEIGHT_RANGE_M (a typo such as centimetres)."""
    from backend.contract.errors import InputError

    if not HEIGHT_RANGE_M[0] <= height <= HEIGHT_RANGE_M[1]:
        raise InputError(f"height {height} m: expected the person's height in metres, "
                         f"{HEIGHT_RANGE_M[0]}-{HEIGHT_RANGE_M[1]} (e.g. 1.78)")
    before = clip_betas(start["betas"])
    after = betas_with_height(body_model, before, height)
    factor = height / rest_height(body_model, before[None])[0]
    transl = rescale_translation(body_model, start["transl"], before, after, factor)
    return dict(start, betas=after.expand_as(start["betas"]).clone(), transl=transl)
