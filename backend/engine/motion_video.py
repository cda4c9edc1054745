"""Video refinement with the learned motion prior (backend.models.motion) in the ScoreHMR loop.

Each window of W frames becomes one sample of the loop: the starting estimate is moved into a
gravity-aligned world (the floor fitted by backend.engine.world, or the camera's own up when no
floor is found), encoded as the prior's window state, DDIM-inverted to tau and sampled back with
the same keypoint reprojection guidance as the per-frame prior.  The prior owns the pose: the
joint rotations and the orientation relative to the window's first frame (turned back into the
camera frame for the guidance); the translation stays the per-frame pipeline's (the loop's Adam
step, as for the per-frame prior), and the contact channel gives the result's foot contacts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.engine import world
from backend.engine.scorehmr import LoopOptions, Problem, refine
from backend.models import motion
from backend.rotations import rot6d_to_matrix

# Camera (OpenCV: y down, z forward) to a Y-up world when no floor could be fitted: the camera's
# own up, level.
LEVEL_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass
class WorldFrame:
    """X_world = R X_cam + t (Y up, floor y = 0) and the start's foot contacts (F,4) in it."""
    R: torch.Tensor          # (3,3)
    t: torch.Tensor          # (3,)
    contacts: torch.Tensor   # (F,4) float 0/1
    source: str              # 'floor' or 'level camera'


def world_frame(joints: torch.Tensor, fps: float) -> WorldFrame:
    """The world of camera-frame joints (F,24,3) of the starting estimate."""
    j = joints.detach().cpu().double().numpy()
    est = world.estimate_world(j, fps, plant=False) if len(j) >= 8 else dict(status="too short")
    if est["status"] == "ok":
        R, t, contacts, source = est["world_R"], est["world_t"], est["contacts"], "floor"
    else:
        R = LEVEL_CAMERA
        feet = j[:, list(world.FOOT_JOINTS)] @ R.T
        t = np.array([0.0, -(feet[..., 1] - np.asarray(world.DEFAULT_SOLE_OFFSETS_M)).min(), 0.0])
        contacts = world.estimated_contacts(feet + t, fps, world.DEFAULT_SOLE_OFFSETS_M)
        source = "level camera"
    as_t = lambda x: torch.as_tensor(np.asarray(x, np.float64), dtype=joints.dtype, device=joints.device)
    return WorldFrame(as_t(R), as_t(t), as_t(contacts), source)


def to_world(frame: WorldFrame, rotmats: torch.Tensor, transl: torch.Tensor, pelvis: torch.Tensor):
    """Camera-frame SMPL rotmats (...,24,3,3) / transl (...,3) -> world ones; the body turns about its
    rest pelvis (3,), so transl_w = R (pelvis + transl) + t - pelvis (as world.world_smpl)."""
    root = frame.R @ rotmats[..., 0, :, :]
    return torch.cat([root[..., None, :, :], rotmats[..., 1:, :, :]], -3), (pelvis + transl) @ frame.R.T + frame.t - pelvis


def window_index(frames: int, window: int, starts: list[int], device) -> torch.Tensor:
    """(W,window) frame indices of each window; a clip shorter than the window repeats its last frame."""
    idx = torch.as_tensor(starts, device=device)[:, None] + torch.arange(window, device=device)
    return idx.clamp(max=frames - 1)


def make_decoder(prior: motion.MotionDenoiser, to_heading: torch.Tensor, frame: WorldFrame):
    """decode(x (g,1,W*152) network space, groups (g,)) -> camera-frame rotmats (g,W,24,3,3):
    the pose channels with the window's heading and the world turned back."""
    back = frame.R.T @ to_heading.transpose(1, 2)                               # (G,3,3) heading -> camera

    def decode(x, groups):
        state = prior.unstandardise(x[:, 0])
        R = rot6d_to_matrix(state[..., motion.POSE6D].reshape(*state.shape[:2], 24, 6))
        root = back[groups][:, None] @ R[:, :, 0]
        return torch.cat([root[:, :, None], R[:, :, 1:]], 2)
    return decode


def refine_windows(prior: motion.MotionDenoiser, alphas: torch.Tensor, loss_fn, rotmats_w: torch.Tensor,
                   transl_w: torch.Tensor, contacts: torch.Tensor, transl_cam: torch.Tensor, frame: WorldFrame,
                   opts: LoopOptions, progress=None) -> dict:
    """One batch of windows: world rotmats (G,W,24,3,3), world transl (G,W,3), contacts (G,W,4) of the
    start, camera transl (G,W,3) (what the loop optimises).  Returns camera-frame rotmats (G,W,24,3,3),
    transl (G,W,3), contacts (G,W,4) in [0,1] (the prior's channel) and the loop's counts."""
    state, anchor = motion.encode(rotmats_w, transl_w, contacts)
    decode = make_decoder(prior, anchor["to_heading"], frame)
    x0 = prior.standardise(state)[:, None]
    context = x0.new_zeros(x0.shape[0], 1, 0)
    out = refine(prior, alphas, Problem(x0, transl_cam, context, loss_fn, decode=decode), opts, progress)
    groups = torch.arange(x0.shape[0], device=x0.device)
    with torch.no_grad():
        rotmats = decode(out["x0"], groups)
        contact = prior.unstandardise(out["x0"][:, 0])[..., motion.CONTACT].clamp(0, 1)
    return dict(rotmats=rotmats, transl=out["transl"], contacts=contact, iterations=out["iterations"],
                evaluations=out["denoiser_evaluations"] * prior.frames)
