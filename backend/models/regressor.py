"""The built-in regressor: COCO-17 keypoints -> SMPL pose (6D), betas; camera translation in closed form.

Its penultimate features are the context c of the diffusion prior (the paper takes c from a frozen
regressor backbone).  Keypoints are normalised to the person's box, so the network never sees the
image size; the full-perspective translation is then solved from the real intrinsics.
"""
from __future__ import annotations

import torch
from torch import nn

from backend.rotations import rot6d_to_matrix

NUM_KEYPOINTS = 17
BOX_SCALE = 1.2  # the box is the keypoints' extent enlarged by 20%, as detectors' crops are


def keypoint_box(kp: torch.Tensor, min_conf: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Square box around the confident keypoints. kp (B,K,3) -> centre (B,2), size (B,) in pixels."""
    valid = kp[..., 2] > min_conf
    big = torch.finfo(kp.dtype).max
    lo = torch.where(valid[..., None], kp[..., :2], big).amin(1)
    hi = torch.where(valid[..., None], kp[..., :2], -big).amax(1)
    any_valid = valid.any(1)
    centre = torch.where(any_valid[:, None], (lo + hi) / 2, torch.zeros_like(lo))
    size = torch.where(any_valid, (hi - lo).amax(1) * BOX_SCALE, torch.ones_like(lo[:, 0])).clamp_min(1.0)
    return centre, size


def normalise_keypoints(kp: torch.Tensor) -> torch.Tensor:
    """Pixels -> box coordinates in [-1, 1] with confidences; missing points (conf 0) are zeroed. (B,K,3)."""
    centre, size = keypoint_box(kp)
    xy = (kp[..., :2] - centre[:, None]) / (size[:, None, None] / 2)
    conf = kp[..., 2:3].clamp(0, 1)
    return torch.cat([xy * (conf > 0), conf], dim=-1)


def solve_translation(points: torch.Tensor, kp2d: torch.Tensor, weights: torch.Tensor,
                      focal: torch.Tensor, principal: torch.Tensor, prior_depth: float = 5.0) -> torch.Tensor:
    """Camera translation t so that points + t project onto kp2d (weighted linear least squares).

    points (B,K,3) in the camera's orientation, kp2d (B,K,2) px, weights (B,K), focal (B,) px,
    principal (B,2) px -> t (B,3).  Linearised pinhole: f (X + tx) = (u - cx)(Z + tz).  A weak pull
    towards depth ``prior_depth`` keeps frames with fewer than two keypoints well posed."""
    f = focal[:, None]
    du, dv = kp2d[..., 0] - principal[:, :1], kp2d[..., 1] - principal[:, 1:]
    zero, one = torch.zeros_like(du), torch.ones_like(du)
    # Rows: [f, 0, -du] t = du Z - f X   and   [0, f, -dv] t = dv Z - f Y.
    A = torch.cat([torch.stack([f * one, zero, -du], -1), torch.stack([zero, f * one, -dv], -1)], dim=1)
    b = torch.cat([du * points[..., 2] - f * points[..., 0], dv * points[..., 2] - f * points[..., 1]], dim=1)
    w = torch.cat([weights, weights], dim=1)[..., None]
    eps = 1e-6 * (f[:, :, None] ** 2) * torch.eye(3, dtype=points.dtype, device=points.device)
    AtA = (A * w).transpose(1, 2) @ A + eps
    Atb = ((A * w).transpose(1, 2) @ b[..., None])[..., 0]
    Atb = Atb + eps[:, 2, 2:3] * torch.tensor([0.0, 0.0, prior_depth], dtype=points.dtype, device=points.device)
    return torch.linalg.solve(AtA, Atb)


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, h):
        return h + self.net(h)


class KeypointRegressor(nn.Module):
    """Normalised keypoints (B,17,3) -> pose6d (B,144) camera-frame, betas (B,10), features (B,F)."""

    def __init__(self, width: int = 512, blocks: int = 3, feature_dim: int = 256, num_betas: int = 10):
        super().__init__()
        self.config = dict(width=width, blocks=blocks, feature_dim=feature_dim, num_betas=num_betas)
        self.backbone = nn.Sequential(
            nn.Linear(NUM_KEYPOINTS * 3, width), *[_ResBlock(width) for _ in range(blocks)],
            nn.LayerNorm(width), nn.Linear(width, feature_dim), nn.GELU(),
        )
        self.pose_head = nn.Linear(feature_dim, 24 * 6)
        self.betas_head = nn.Linear(feature_dim, num_betas)
        # Start from identity joint rotations (6D of the identity) and the mean shape.
        nn.init.zeros_(self.pose_head.weight)
        with torch.no_grad():
            self.pose_head.bias.copy_(torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(24))
        nn.init.zeros_(self.betas_head.weight)
        nn.init.zeros_(self.betas_head.bias)

    def forward(self, normalised_kp: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(normalised_kp.flatten(1))
        return dict(pose6d=self.pose_head(feats), betas=self.betas_head(feats), features=feats)


@torch.no_grad()
def estimate_initial(regressor: KeypointRegressor, body_model, kp: torch.Tensor, focal: torch.Tensor,
                     principal: torch.Tensor) -> dict[str, torch.Tensor]:
    """Initial SMPL estimate in the camera frame from pixel keypoints (B,17,3).

    Returns rotmats (B,24,3,3), betas (B,10), transl (B,3), features (B,F)."""
    out = regressor(normalise_keypoints(kp))
    rotmats = rot6d_to_matrix(out["pose6d"].reshape(-1, 24, 6))
    posed = body_model.joints_fast(rotmats, out["betas"]).keypoints[:, :NUM_KEYPOINTS]
    transl = solve_translation(posed, kp[..., :2], kp[..., 2].clamp(0, 1) ** 2, focal, principal)
    return dict(rotmats=rotmats, betas=out["betas"], transl=transl, features=out["features"])
