"""Guidance terms of the ScoreHMR loop: each a small function returning a per-sample loss (B,).

They are evaluated on the clean estimate x0_hat (as rotation matrices / joints) and combined
with weights by the engine.  Shapes: B samples (frames, or windows in video mode), K keypoints.
"""
from __future__ import annotations

import torch

GMOF_SIGMA_PX = 100.0
REFERENCE_IMAGE_PX = 1000.0


def project(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Pinhole projection (OpenCV frame). points (B,K,3), focal (B,) or (B,2), principal (B,2) -> (B,K,2)."""
    f = focal[:, None, None] if focal.dim() == 1 else focal[:, None, :]
    z = points[..., 2:3].clamp_min(1e-3)
    return f * points[..., :2] / z + principal[:, None, :]


def geman_mcclure(residual: torch.Tensor, sigma: float) -> torch.Tensor:
    """Robust penalty sigma^2 r^2 / (sigma^2 + r^2), elementwise."""
    r2 = residual.pow(2)
    return sigma ** 2 * r2 / (sigma ** 2 + r2)


def keypoint_reprojection(points: torch.Tensor, observed: torch.Tensor, focal: torch.Tensor,
                          principal: torch.Tensor, image_size: torch.Tensor,
                          sigma: float = GMOF_SIGMA_PX) -> torch.Tensor:
    """Paper Eq. 12 with full-frame intrinsics: sum over joints and x/y of conf^2 * GM(residual).

    Residuals are measured as if the image were 1000 px on its long side (the paper's weighting
    (1000 / max(H, W))^2), so the weight and sigma mean the same at 480p and 4K.
    points (B,K,3) camera frame, observed (B,K,3) [x_px, y_px, conf], image_size (B,2) [w, h] -> (B,)."""
    scale = REFERENCE_IMAGE_PX / image_size.amax(-1)
    residual = (project(points, focal, principal) - observed[..., :2]) * scale[:, None, None]
    return (observed[..., 2:3] ** 2 * geman_mcclure(residual, sigma)).sum((1, 2))


def multiview_consistency(x0_rot6d: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 13: squared distance of each view's 23 body-joint 6D rotations to their mean.

    x0_rot6d (N,V,24,6) for N instants seen by V views -> (N,); the global orientation is excluded."""
    body = x0_rot6d[:, :, 1:]
    return (body - body.mean(1, keepdim=True)).pow(2).sum((1, 2, 3))


def temporal_smoothness(x: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 14: sum over t of ||x(t+1) - x(t)||^2. x (W,F,D) windows of F frames -> (W,)."""
    return (x[:, 1:] - x[:, :-1]).pow(2).flatten(1).sum(1)
