"""A learned motion prior: diffusion over windows of W frames of whole-body motion.

Per frame the state has ``CHANNELS`` = 152 channels, in a heading-normalised, Y-up world (the floor
at y = 0, as the converted CMU data):

* 0:144  6D rotations of the 24 SMPL joints; the global orientation with the first frame's yaw
  removed (so a window means the same whichever way the person faces);
* 144:147 root velocity: the translation's per-frame difference (frame 0: zero), in that heading frame;
* 147    root height: the translation's y (the pelvis sits a constant rest offset above it);
* 148:152 foot contact labels (0/1) of backend.engine.world.FOOT_JOINTS (the truth's rule:
  :func:`contact_labels`).

The network sees the channels standardised by training statistics (``MotionDenoiser.mean/std``,
stored in its checkpoint) and flattened to (B, W*152), so the diffusion helpers, the DDIM loops and
the ScoreHMR loop of the per-frame prior apply unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.models.denoiser import DiffusionNet, timestep_embedding
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

POSE6D = slice(0, 144)
VELOCITY = slice(144, 147)
HEIGHT = 147
CONTACT = slice(148, 152)
CHANNELS = 152
DEFAULT_FRAMES = 32
# The trained prior shipped with the engine (docs/motion_prior.md); an option, not the default method.
MOTION_PRIOR_PATH = Path(__file__).resolve().parent.parent / "assets" / "motion_prior.pt"
# Standardisation floors: a 6D entry that never moves in the data (SMPL's hands in CMU) must not get
# a tiny std, which would blow up any guidance gradient along it.
STD_FLOOR_POSE = 0.05
STD_FLOOR_OTHER = 1e-3


def rot_y(angle: torch.Tensor) -> torch.Tensor:
    """Rotations about +Y by ``angle`` (...,) radians -> (...,3,3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*angle.shape, 3, 3)


def heading(global_orient: torch.Tensor) -> torch.Tensor:
    """Yaw (...,) of the body's forward axis (its +z) about world +Y. global_orient (...,3,3)."""
    forward = global_orient[..., :, 2]
    return torch.atan2(forward[..., 0], forward[..., 2])


def encode(rotmats: torch.Tensor, transl: torch.Tensor, contacts: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Windows of motion -> unstandardised state (B,W,152) and the anchor that :func:`decode` needs.

    rotmats (B,W,24,3,3) Y-up world (joint 0 the global orientation), transl (B,W,3) metres,
    contacts (B,W,4) in [0,1].  anchor: ``to_heading`` (B,3,3) removes the first frame's yaw,
    ``start`` (B,3) the first translation."""
    to_heading = rot_y(-heading(rotmats[:, 0, 0]))                                  # (B,3,3)
    root = to_heading[:, None] @ rotmats[:, :, 0]                                   # (B,W,3,3)
    pose = torch.cat([matrix_to_rot6d(root)[:, :, None], matrix_to_rot6d(rotmats[:, :, 1:])], 2)
    step = transl[:, 1:] - transl[:, :-1]
    velocity = torch.cat([torch.zeros_like(transl[:, :1]), step], 1) @ to_heading.transpose(1, 2)
    x = torch.cat([pose.flatten(2), velocity, transl[..., 1:2], contacts.to(transl)], -1)
    return x, dict(to_heading=to_heading, start=transl[:, 0])


def decode(x: torch.Tensor, anchor: dict) -> dict:
    """Inverse of :func:`encode`: x (B,W,152) -> rotmats (B,W,24,3,3), transl (B,W,3), contacts (B,W,4).

    The horizontal translation integrates the velocity from the anchor's start; its height is the
    height channel."""
    b, w = x.shape[:2]
    R = rot6d_to_matrix(x[..., POSE6D].reshape(b, w, 24, 6))
    from_heading = anchor["to_heading"].transpose(1, 2)
    root = from_heading[:, None] @ R[:, :, 0]
    rotmats = torch.cat([root[:, :, None], R[:, :, 1:]], 2)
    transl = anchor["start"][:, None] + torch.cumsum(x[..., VELOCITY], 1) @ anchor["to_heading"]
    transl = torch.cat([transl[..., :1], x[..., HEIGHT:HEIGHT + 1], transl[..., 2:]], -1)
    return dict(rotmats=rotmats, transl=transl, contacts=x[..., CONTACT])


def contact_labels(feet: np.ndarray, fps: float, offsets=None) -> np.ndarray:
    """Foot contacts (F,4) bool of one clip's foot joints (F,4,3) in the Y-up world (floor y = 0),
    by the rule the benchmark uses for the truth (backend.engine.world.foot_contacts)."""
    from backend.engine import world

    return world.foot_contacts(feet, fps, world.DEFAULT_SOLE_OFFSETS_M if offsets is None else offsets)


def std_floor(device=None) -> torch.Tensor:
    floor = torch.full((CHANNELS,), STD_FLOOR_OTHER, device=device)
    floor[POSE6D] = STD_FLOOR_POSE
    return floor


class MotionDenoiser(DiffusionNet):
    """eps(x (B, W*152) standardised, t (B,) or scalar, c ignored) -> (B, W*152).

    A small transformer over the W frames with a learned position per frame and the timestep as
    an extra token (as in MDM).  ``mean``/``std`` (152,) standardise the channels; they are
    buffers, so the checkpoint carries them."""

    def __init__(self, frames: int = DEFAULT_FRAMES, width: int = 256, layers: int = 4, heads: int = 4,
                 parameterisation: str = "v"):
        super().__init__(parameterisation)
        self.config = dict(frames=frames, width=width, layers=layers, heads=heads, parameterisation=parameterisation)
        self.frames, self.width = frames, width
        self.register_buffer("mean", torch.zeros(CHANNELS))
        self.register_buffer("std", torch.ones(CHANNELS))
        self.inp = nn.Linear(CHANNELS, width)
        self.position = nn.Parameter(torch.randn(1, frames, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, CHANNELS)

    @property
    def dim(self) -> int:
        return self.frames * CHANNELS

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(torch.maximum(std, std_floor(std.device)))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """(B,W,152) state -> (B, W*152) network input."""
        return ((x - self.mean) / self.std).flatten(1)

    def unstandardise(self, z: torch.Tensor) -> torch.Tensor:
        """(B, W*152) network space -> (B,W,152) state."""
        return z.reshape(z.shape[0], self.frames, CHANNELS) * self.std + self.mean

    def net(self, x, t, c):
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        temb = self.time_mlp(timestep_embedding(t, self.width).to(x.dtype)).expand(b, -1)
        h = self.inp(x.reshape(b, self.frames, CHANNELS)) + self.position
        h = self.encoder(torch.cat([temb[:, None], h], 1))
        return self.out(self.norm(h[:, 1:])).reshape(b, -1)


def load_motion_prior(path: str | Path, device="cpu") -> tuple[MotionDenoiser, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = MotionDenoiser(**ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval(), ck.get("meta", {})


def random_motion_prior(frames: int = DEFAULT_FRAMES, seed: int = 0, **config) -> MotionDenoiser:
    """An untrained model (for tests and for checking the engine path before training)."""
    torch.manual_seed(seed)
    return MotionDenoiser(frames, **config).eval()

