"""The built-in regressor: COCO-17 keypoints -> SMPL pose (6D), betas; camera translation in closed form.

Its penultimate features are the context c of the diffusion prior (the paper takes c from a frozen
regressor backbone).  Keypoints are normalised to the person's box, so the network never sees the
image size; the full-perspective translation is then solved from the real intrinsics.

The network was trained on people on the optical axis.  With ``virtual_camera`` it sees an
off-centre person through a virtual camera: the real one turned about its centre so that the ray
through the person's box centre becomes the optical axis (same focal length and principal point).
For a pinhole camera that is exact: the virtual image is the homography K R_v K^-1 of the real one,
and the estimate is turned back by R_v^T (:func:`virtual_view`, ``body_model.move_body``).
"""
from __future__ import annotations

import torch
from torch import nn

from backend.body.body_model import move_body
from backend.rotations import rot6d_to_matrix, smallest_rotation

NUM_KEYPOINTS = 17
BOX_SCALE = 1.2  # the box is the keypoints' extent enlarged by 20%, as detectors' crops are
BOX_MIN_CONF = 0.05  # keypoints at or below this confidence do not shape the box


def keypoint_box(kp: torch.Tensor, min_conf: float = BOX_MIN_CONF) -> tuple[torch.Tensor, torch.Tensor]:
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


def warp_keypoints(kp: torch.Tensor, R: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Keypoints (B,K,3) px seen by a camera turned by R (B,3,3) about its centre (same intrinsics):
    the homography K R K^-1.  Confidences are kept; missing points (conf 0) stay (0, 0, 0)."""
    f, pp = focal[:, None, None], principal[:, None]
    rays = torch.cat([(kp[..., :2] - pp) / f, torch.ones_like(kp[..., :1])], -1) @ R.transpose(1, 2)
    # Rays stay in front (turns are far below 90 degrees); the clamp only keeps degenerate input finite.
    xy = rays[..., :2] / rays[..., 2:].clamp_min(1e-6) * f + pp
    seen = kp[..., 2:] > 0
    return torch.cat([xy * seen, kp[..., 2:]], -1)


def virtual_view(kp: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The person's box centre moved onto the optical axis: kp (B,K,3) px, focal (B,), principal (B,2)
    -> keypoints in the virtual camera (B,K,3) and R_v (B,3,3) (X_virtual = R_v X_real)."""
    centre, _ = keypoint_box(kp)
    # A frame without keypoints has no box: its virtual camera is the real one.
    centre = torch.where((kp[..., 2] > BOX_MIN_CONF).any(1, keepdim=True), centre, principal)
    ray = torch.cat([(centre - principal) / focal[:, None], torch.ones_like(centre[:, :1])], -1)
    R_v = smallest_rotation(ray, torch.zeros_like(ray) + ray.new_tensor([0.0, 0.0, 1.0]))
    return warp_keypoints(kp, R_v, focal, principal), R_v


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
                     principal: torch.Tensor, virtual_camera: bool = False) -> dict[str, torch.Tensor]:
    """Initial SMPL estimate in the camera frame from pixel keypoints (B,17,3).

    ``virtual_camera``: regress in the virtual camera of :func:`virtual_view` and turn the estimate
    back (features are the virtual view's).  Returns rotmats (B,24,3,3), betas (B,10), transl (B,3),
    features (B,F)."""
    turn = None
    if virtual_camera:
        kp, turn = virtual_view(kp, focal, principal)
    out = regressor(normalise_keypoints(kp))
    rotmats = rot6d_to_matrix(out["pose6d"].reshape(-1, 24, 6))
    posed = body_model.joints_fast(rotmats, out["betas"]).keypoints[:, :NUM_KEYPOINTS]
    transl = solve_translation(posed, kp[..., :2], kp[..., 2].clamp(0, 1) ** 2, focal, principal)
    if turn is not None:
        pelvis = body_model.shaped(out["betas"]).rest_joints[:, 0]
        root, transl = move_body(rotmats[:, 0], transl, pelvis, turn.transpose(1, 2))
        rotmats = torch.cat([root[:, None], rotmats[:, 1:]], 1)
    return dict(rotmats=rotmats, betas=out["betas"], transl=transl, features=out["features"])
