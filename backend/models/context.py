"""The diffusion prior's context: one place that turns keypoints (and the camera) into what the denoiser sees.

Used by training (lab.models.train) and by the engine, so both build the same vector.  A prior
checkpoint records its ``layout``; checkpoints without one are "features" (the original layout).

Layouts (C = the regressor's feature size):
  "features"          standardised regressor features (C,); dropped context = zeros (the mean).
  "features+camera"   CLIFF-style: the features, then where the person's box sits in the camera,
                      standardised (CAMERA_DIM,), then one presence flag per part (2,).  A missing
                      part (no intrinsics, or dropped in training) is zeros with its flag 0.
"""
from __future__ import annotations

import torch

from backend.models.regressor import keypoint_box, normalise_keypoints, virtual_view

LAYOUTS = ("features", "features+camera")
CAMERA_DIM = 4          # box centre - principal point (2) / focal, box size / focal, log(focal / 1000 px)
REFERENCE_FOCAL = 1000.0


def camera_part(kp: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Where the keypoint box sits in the camera. kp (B,K,3) px, focal (B,), principal (B,2) -> (B,4).

    Offsets and size over the focal length are the box's viewing direction and angular size (CLIFF)."""
    centre, size = keypoint_box(kp)
    f = focal.to(kp)[:, None]
    return torch.cat([(centre - principal.to(kp)) / f, size[:, None] / f,
                      torch.log(f / REFERENCE_FOCAL)], dim=-1)


def raw_parts(regressor, kp: torch.Tensor, focal: torch.Tensor | None, principal: torch.Tensor | None,
              layout: str, virtual_camera: bool = False) -> torch.Tensor:
    """Unstandardised context parts (B,D): the regressor's features, plus the camera part if the layout has one.

    ``virtual_camera`` (with a known camera): the features of the person turned onto the optical axis
    (backend.models.regressor.virtual_view), as the engine's start is regressed; the camera part still
    says where the box sits in the real camera."""
    seen = virtual_view(kp, focal.to(kp), principal.to(kp))[0] if virtual_camera and focal is not None \
        and principal is not None else kp
    feats = regressor(normalise_keypoints(seen))["features"]
    if layout == "features":
        return feats
    if focal is None or principal is None:
        return torch.cat([feats, feats.new_zeros(len(feats), CAMERA_DIM)], -1)
    return torch.cat([feats, camera_part(kp, focal, principal).to(feats)], -1)


def assemble(raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, layout: str,
             keep_features: torch.Tensor | None = None, keep_camera: torch.Tensor | None = None) -> torch.Tensor:
    """Standardise raw (B,D) with mean/std (D,) and drop parts where keep_* (B,) is False -> (B,context_dim)."""
    z = (raw - mean.to(raw)) / std.to(raw)
    b = len(raw)
    kf = raw.new_ones(b) if keep_features is None else keep_features.to(raw)
    if layout == "features":
        return z * kf[:, None]
    kc = raw.new_ones(b) if keep_camera is None else keep_camera.to(raw)
    c = z.shape[1] - CAMERA_DIM
    return torch.cat([z[:, :c] * kf[:, None], z[:, c:] * kc[:, None], kf[:, None], kc[:, None]], -1)


def context_dim(raw_dim: int, layout: str) -> int:
    return raw_dim + (2 if layout == "features+camera" else 0)


@torch.no_grad()
def build_context(regressor, kp: torch.Tensor, focal: torch.Tensor | None, principal: torch.Tensor | None,
                  mean: torch.Tensor, std: torch.Tensor, layout: str = "features",
                  virtual_camera: bool = False) -> torch.Tensor:
    """The denoiser's context for keypoints (B,K,3) px seen with focal (B,) and principal (B,2) px
    (None: camera unknown, that part is marked missing) -> (B,context_dim).  ``virtual_camera``: see
    :func:`raw_parts` (needs the camera; without it the keypoints are used as they are)."""
    if layout not in LAYOUTS:
        raise ValueError(f"context layout must be one of {LAYOUTS}, not {layout!r}")
    raw = raw_parts(regressor, kp, focal, principal, layout, virtual_camera)
    missing_cam = None if focal is not None and principal is not None else raw.new_zeros(len(raw), dtype=torch.bool)
    return assemble(raw, mean, std, layout, keep_camera=missing_cam)
