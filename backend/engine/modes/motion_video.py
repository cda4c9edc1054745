"""Video with the learned motion prior (backend.models.motion) in the ScoreHMR loop (EngineOptions.motion_prior;
the video mode also bridges its gaps with it).

Each window of W frames becomes one sample of the loop: the starting estimate is moved into a
gravity-aligned world (the floor fitted by backend.engine.world, or the camera's own up when no
floor is found), encoded as the prior's window state, DDIM-inverted to tau and sampled back with
the same keypoint reprojection guidance as the per-frame prior.  The prior owns the pose: the
joint rotations and the orientation relative to the window's first frame (turned back into the
camera frame for the guidance); the translation stays the per-frame pipeline's (the loop's Adam
step, as for the per-frame prior), and the contact channel gives the result's foot contacts.  Windows
of the prior's length overlap by the options' overlap (at most half a window) and are blended
(backend.engine.windows); the final smoothing fit follows unless the options have none.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.engine import problems, world
from backend.engine.loaded import Denoiser, LoadedModels, Progress
from backend.engine.options import ModeOptions
from backend.engine.polish import polish_clip
from backend.engine.problems import Observations
from backend.engine.scorehmr import LoopOptions, Problem
from backend.engine.scorehmr import refine as refine_loop
from backend.engine.windows import refine_in_windows
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
    transl_w = (pelvis + transl) @ frame.R.T + frame.t - pelvis
    return torch.cat([root[..., None, :, :], rotmats[..., 1:, :, :]], -3), transl_w


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


def refine(models: LoadedModels, obs: Observations, start: dict, options: ModeOptions,
           progress: Progress | None = None, denoiser: Denoiser | None = None) -> dict:
    """One clip with the motion prior options.motion_prior: obs (F,...), start rotmats (F,24,3,3), transl (F,3),
    betas (F,10) (no context: the prior conditions on nothing but its window).  ``denoiser`` replaces the
    prior's network in the loop (its state space and decoding stay the prior's)."""
    prior, prior_meta = models.motion_prior(options.motion_prior)
    f, window = obs.focal.shape[0], prior.frames
    overlap = min(options.overlap, window // 2)
    betas = start["betas"].mean(0, keepdim=True).expand(f, 10)
    joints = models.body.joints_fast(start["rotmats"], betas, start["transl"]).joints
    frame = world_frame(joints, obs.fps)
    pelvis = models.body.shaped(betas[:1]).rest_joints[0, 0]
    rot_w, transl_w = to_world(frame, start["rotmats"], start["transl"], pelvis)

    def refine_batch(ids: torch.Tensor) -> dict:
        loss = problems.video_loss(models.body, obs[ids], betas[ids], options.weights)
        world_start = dict(rotmats=rot_w[ids], transl=transl_w[ids], contacts=frame.contacts[ids])
        return refine_windows(prior, models.alphas, loss, world_start, start["transl"][ids], frame, options.loop,
                              progress=progress, denoiser=denoiser)

    out = refine_in_windows(f, window, overlap, options.windows_per_batch, refine_batch, models.device)
    rotmats, transl = out["rotmats"], out["transl"]
    if options.polish is not None:   # the final smoothing fit as after the per-frame prior ('ours'; none for 'paper')
        rotmats, transl = polish_clip(models.body, obs, betas, rotmats, transl, options.polish)
    return dict(rotmats=rotmats, transl=transl, betas=betas, iterations=out["iterations"],
                evaluations=out["evaluations"], contacts=(out["contacts"] > 0.5).cpu().numpy(),
                motion=dict(path=str(options.motion_prior), command=prior_meta.get("command"), frames=window,
                            overlap=overlap, world=frame.source))


def refine_windows(prior: motion.MotionDenoiser, alphas: torch.Tensor, loss_fn, world_start: dict,
                   transl_cam: torch.Tensor, frame: WorldFrame, opts: LoopOptions, *, progress: Progress | None = None,
                   denoiser: Denoiser | None = None) -> dict:
    """One batch of windows: the start in the world, world_start rotmats (G,W,24,3,3), transl (G,W,3),
    contacts (G,W,4), and its camera transl (G,W,3) (what the loop optimises).  Returns camera-frame rotmats
    (G,W,24,3,3), transl (G,W,3), contacts (G,W,4) in [0,1] (the prior's channel) and the loop's counts."""
    state, anchor = motion.encode(world_start["rotmats"], world_start["transl"], world_start["contacts"])
    decode = make_decoder(prior, anchor["to_heading"], frame)
    x0 = prior.standardise(state)[:, None]
    context = x0.new_zeros(x0.shape[0], 1, 0)
    problem = Problem(x0, transl_cam, context, loss_fn, decode=decode)
    out = refine_loop(prior if denoiser is None else denoiser, alphas, problem, opts, progress)
    groups = torch.arange(x0.shape[0], device=x0.device)
    with torch.no_grad():
        rotmats = decode(out["x0"], groups)
        contact = prior.unstandardise(out["x0"][:, 0])[..., motion.CONTACT].clamp(0, 1)
    return dict(rotmats=rotmats, transl=out["transl"], contacts=contact, iterations=out["iterations"],
                evaluations=out["denoiser_evaluations"] * prior.frames)
