"""Fitting below both the engine's modes and the baselines: Eq. 12 on a posed body, SMPLify's priors and its
two-stage Adam fit, DPoser-style fitting with the diffusion prior as a regulariser (the single-frame fit stage,
backend.engine.frame_fit) and the body fitted to triangulated keypoints (calibrated views).

Everything is torch, batch-first: observations (B,...) (backend.engine.problems.Observations) and a start
dict with rotmats (B,24,3,3), betas (B,10), transl (B,3) in the OpenCV camera frame.

Loss units: every fitting loss is in the units of :func:`guidance.keypoint_reprojection` (squared
pixels at the 1000-px reference resolution, Geman-McClure sigma 100 px), so the prior weights of
SMPLify, DPoser-style fitting and the 3D fit can be compared.  The classical prior weights are SPIN's /
ProHMR's SMPLify weights (pose 4.78^2, bending 15.2^2, shape 5^2): a sweep of one common factor over
0.01-10 on 48 training-subject frames (medium detector noise, our regressor and the weak start) was best
at 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from backend.body.body_model import ShapedBody
from backend.engine import guidance
from backend.engine.conditioned import condition
from backend.engine.gmm import MaxMixturePrior
from backend.engine.problems import Observations
from backend.engine.views import triangulate
from backend.models.diffusion import predict_x0
from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix

NUM_KP = 17
TORSO_KP = (5, 6, 11, 12)  # COCO shoulders and hips: SMPLify's camera stage fits these only
# SMPLify's bending prior: body_pose entries (axis-angle, 69-d) of the elbows' Y and knees' X
# rotations with the sign that makes hyper-extension positive (left elbow bends by -Y, right by +Y,
# knees by +X; see backend.body.example_poses): penalty exp(sign * angle)^2.
BEND_INDEX = (52, 55, 9, 12)
BEND_SIGN = (1.0, -1.0, -1.0, -1.0)


@dataclass
class DPoserOptions:
    """DPoser-style fitting: Adam on the 6D pose and translation, a diffusion prior as regulariser."""
    steps: int = 100
    lr: float = 1e-2
    t_range: tuple[int, int] = (10, 100)  # truncated timesteps (of 1000): the low-noise score only
    keypoint_weight: float = 0.003        # the ScoreHMR reprojection weight (Eq. 12)
    # x 0.5 ||x0 - sg(x0_hat(x_t))||^2, gradient w(t) (eps_phi - eps); swept over 0-100 on 48 training-subject
    # frames (medium noise, our regressor and the weak start): 30 best.
    prior_weight: float = 30.0
    lr_end: float | None = None           # None: lr throughout; else a cosine decay from lr to lr_end


@dataclass
class Fit3DOptions:
    """Fit of the body's COCO keypoints to triangulated 3D points, with SMPLify's priors."""
    camera_steps: int = 30        # stage 1: orientation and translation on the torso points
    steps: int = 100
    lr: float = 1e-2
    camera_orient: bool = True
    px_per_m: float = 1000.0      # 3D residuals in 'pixels' (1 mm = 1 px) so the priors keep their SMPLify weights
    pose_prior: float = 4.78 ** 2
    bend_prior: float = 15.2 ** 2
    shape_prior: float = 5.0 ** 2


def bend_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """SMPLify's elbow/knee hyper-extension penalty. body_pose (B,69) axis-angle -> (B,)."""
    sign = torch.tensor(BEND_SIGN, dtype=body_pose.dtype, device=body_pose.device)
    return torch.exp(body_pose[:, list(BEND_INDEX)] * sign).pow(2).sum(1)


def reprojection(body_model, rotmats: torch.Tensor, betas: "torch.Tensor | ShapedBody", transl: torch.Tensor,
                 obs: Observations) -> tuple:
    """Eq. 12 per sample (B,) and the posed body (BodyOutput) for rotmats (B,24,3,3), betas (B,10) (or their
    ShapedBody, body_model.shaped(betas)), transl (B,3) against observations obs (B,...)."""
    out = body_model.joints_fast(rotmats, betas, transl)
    loss = guidance.keypoint_reprojection(out.keypoints[:, :NUM_KP], obs.keypoints, obs.focal, obs.principal,
                                          obs.image_size)
    return loss, out


# A data term: (rotmats (B,24,3,3), betas (B,10), transl (B,3), torso_only) -> (loss (B,), BodyOutput)
DataTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], tuple]


def classical_fit(data: DataTerm, prior: MaxMixturePrior, start: dict, opts, *, depth_weight: float = 0.0,
                  extra: Callable | None = None, shared_betas: bool = False) -> dict:
    """SMPLify's two stages on axis-angle parameters with Adam; samples are independent unless
    ``shared_betas`` (one body for the batch, as in a video) or ``extra`` couples them.

    extra(rotmats, body_output) -> scalar added in stage 2.  Returns rotmats, betas, transl, data (B,), total (B,)."""
    aa = matrix_to_axis_angle(start["rotmats"].detach())
    b = aa.shape[0]
    orient = aa[:, 0].clone().requires_grad_(True)
    pose = aa[:, 1:].reshape(b, 69).clone().requires_grad_(True)
    betas0 = start["betas"].detach().reshape(-1, 10)
    betas = (betas0.mean(0, keepdim=True) if shared_betas else betas0.expand(b, 10)).clone().requires_grad_(True)
    transl = start["transl"].detach().clone().requires_grad_(True)
    tz0 = transl[:, 2].detach().clone()
    rot = lambda: axis_angle_to_matrix(torch.cat([orient[:, None], pose.reshape(b, 23, 3)], 1))
    full_betas = lambda: betas.expand(b, 10)
    priors = lambda: (opts.pose_prior * prior(pose) + opts.bend_prior * bend_prior(pose)
                      + opts.shape_prior * full_betas().pow(2).sum(1))

    with torch.enable_grad():
        opt = torch.optim.Adam([transl] + ([orient] if opts.camera_orient else []), lr=opts.lr)
        for _ in range(opts.camera_steps):
            loss, _ = data(rot(), full_betas(), transl, True)
            total = loss + depth_weight * (transl[:, 2] - tz0).pow(2)
            opt.zero_grad()
            total.sum().backward()
            opt.step()

        opt = torch.optim.Adam([orient, pose, betas, transl], lr=opts.lr)
        for _ in range(opts.steps):
            R = rot()
            loss, out = data(R, full_betas(), transl, False)
            total = (loss + priors()).sum() + (extra(R, out) if extra else 0.0)
            opt.zero_grad()
            total.backward()
            opt.step()

    with torch.no_grad():
        R = rot()
        loss, _ = data(R, full_betas(), transl, False)
        total = loss + priors()
    return dict(rotmats=R.detach(), betas=full_betas().detach().clone(), transl=transl.detach().clone(),
                data=loss.detach(), total=total.detach())


def cosine_rate(start: float, end: float, step: int, steps: int) -> float:
    """Learning rate at ``step`` of ``steps`` decaying from ``start`` to ``end`` along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / steps))


def dposer_style(body_model, eps_model, alphas_cumprod: torch.Tensor, obs: Observations, context: torch.Tensor,
                 start: dict, opts: DPoserOptions = DPoserOptions(), *, generator: torch.Generator | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Optimisation with our diffusion prior as a score-based regulariser (DPoser-like).

    Each Adam step draws t ~ U[t_range] and noise eps per sample, noises the current (re-orthonormalised)
    6D pose x0 (B,144) to x_t and adds the surrogate 0.5 ||x0 - sg(x0_hat)||^2 whose gradient is
    x0 - x0_hat = w(t) (eps_phi(x_t, t, c) - eps) with w(t) = sqrt((1 - a_t) / a_t): score distillation,
    the denoiser is never differentiated.  Betas stay at the start (as in ScoreHMR).
    obs (B,...) observations, context (B,C) standardised regressor features, start {rotmats (B,24,3,3),
    betas (B,10), transl (B,3)}.  progress(done, total) is called after every step (the engine's progress
    and cancellation hook).
    Returns rotmats, betas, transl, reprojection (B,) (Eq. 12 units, before the weight) and its start value."""
    keypoints = obs.keypoints
    b = keypoints.shape[0]
    a = alphas_cumprod.to(keypoints)
    x = matrix_to_rot6d(start["rotmats"].detach()).reshape(b, 144).clone().requires_grad_(True)
    transl = start["transl"].detach().clone().requires_grad_(True)
    betas = start["betas"].detach().reshape(-1, 10).expand(b, 10)
    dev = keypoints.device
    gen_dev = generator.device if generator is not None else dev
    shaped = body_model.shaped(betas)                 # betas stay: the shape terms once, not per step
    reproj = lambda R, tr: reprojection(body_model, R, shaped, tr, obs)[0]
    eps_of = condition(eps_model, context)            # one context for every step
    with torch.no_grad():
        start_reproj = reproj(start["rotmats"], start["transl"])
    opt = torch.optim.Adam([x, transl], lr=opts.lr)
    with torch.enable_grad():
        for step in range(opts.steps):
            if opts.lr_end is not None:
                opt.param_groups[0]["lr"] = cosine_rate(opts.lr, opts.lr_end, step, opts.steps)
            R = rot6d_to_matrix(x.reshape(b, 24, 6))
            x_n = matrix_to_rot6d(R).reshape(b, 144)
            with torch.no_grad():
                lo, hi = opts.t_range
                t = torch.randint(lo, hi + 1, (b,), generator=generator, device=gen_dev).to(dev)
                noise = torch.randn(x_n.shape, generator=generator, device=gen_dev, dtype=x_n.dtype).to(dev)
                a_t = a[t][:, None]
                x_t = a_t.sqrt() * x_n + (1 - a_t).sqrt() * noise
                x0_hat = predict_x0(x_t, eps_of(x_t, t), a_t)
            prior_term = 0.5 * (x_n - x0_hat).pow(2).sum(1)
            total = opts.keypoint_weight * reproj(R, transl) + opts.prior_weight * prior_term
            opt.zero_grad()
            total.sum().backward()
            opt.step()
            if progress:
                progress(step + 1, opts.steps)
    with torch.no_grad():
        R = rot6d_to_matrix(x.reshape(b, 24, 6))
        final = reproj(R, transl)
    return dict(rotmats=R.detach(), betas=betas.clone(), transl=transl.detach().clone(), reprojection=final,
                start_reprojection=start_reproj, denoiser_evaluations=opts.steps * b)


def fit_to_3d(body_model, prior: MaxMixturePrior, points: torch.Tensor, weights: torch.Tensor, start: dict,
              opts: Fit3DOptions = Fit3DOptions()) -> dict:
    """Fit pose, shape and translation to 3D keypoints with the GMM, bending and shape priors.

    points (B,17,3) (COCO-17, in the frame of the start, e.g. view 0's camera), weights (B,17) (0 = unseen),
    start {rotmats (B,24,3,3), betas (B,10), transl (B,3)}.  Data term: sum weight^2 GM(px_per_m * residual) per axis.
    Returns rotmats, betas, transl, residual_mm (B,) (weighted mean 3D distance) and total loss (B,)."""
    keep = torch.zeros_like(weights)
    keep[:, list(TORSO_KP)] = 1.0
    w_torso = weights * keep

    def data(rotmats, betas, transl, torso_only):
        out = body_model.joints_fast(rotmats, betas, transl)
        w = w_torso if torso_only else weights
        r = (out.keypoints[:, :NUM_KP] - points) * opts.px_per_m
        return (w[..., None] ** 2 * guidance.geman_mcclure(r, guidance.GMOF_SIGMA_PX)).sum((1, 2)), out

    out = classical_fit(data, prior, start, opts)
    with torch.no_grad():
        kp = body_model.joints_fast(out["rotmats"], out["betas"], out["transl"]).keypoints[:, :NUM_KP]
        dist = (kp - points).norm(dim=-1)
        out["residual_mm"] = 1000 * (dist * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    out.pop("data")
    return out


def triangulate_and_fit(body_model, prior: MaxMixturePrior, o: Observations, start: dict,
                        opts: Fit3DOptions = Fit3DOptions()) -> dict:
    """Calibrated views: triangulate the keypoints, then fit the body to the 3D points from ``start``.

    o (V,F,...) with cam_R (V,3,3) / cam_t (V,3); start rotmats/betas/transl (F,...) (view 0's estimate).
    Everything is in view 0's camera frame.  Returns :func:`fit_to_3d`'s dict plus the triangulated
    points (F,17,3) and their weights (F,17) (0: not triangulated)."""
    v, f = o.focal.shape
    R, t = o.cam_R, o.cam_t
    by_frame = o.transpose01()
    pts, wts = triangulate(by_frame.keypoints, by_frame.focal, by_frame.principal, R.expand(f, v, 3, 3),
                           t.expand(f, v, 3))
    points = pts @ R[0].T + t[0]                                        # world -> view 0's camera
    fit = fit_to_3d(body_model, prior, points, wts, {k: start[k][:f] for k in ("rotmats", "betas", "transl")}, opts)
    return dict(fit, points=points, weights=wts)
