"""Baselines the benchmark compares ScoreHMR with: classical fitting, a score-based fitting prior,
temporal filtering / smoothing for video and triangulation for calibrated views.

Everything is torch, batch-first, on the tensors the Engine uses: keypoints (B,17,3) [x_px, y_px,
conf], focal (B,), principal (B,2), image_size (B,2) [w, h], and a start dict with rotmats
(B,24,3,3), betas (B,10), transl (B,3) in the OpenCV camera frame (Engine._init_tensors' layout).
Results are dicts with the same three keys plus per-sample losses.

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

import numpy as np
import torch

from backend.engine import guidance
from backend.engine.gmm import MaxMixturePrior
from backend.engine.modes import Observations
from backend.engine.views import in_every_view, relative_cameras, triangulate
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
class SmplifyOptions:
    """SMPLify (Bogo et al. 2016, as re-implemented by SPIN/ProHMR): a camera stage, then everything."""
    camera_steps: int = 30        # stage 1: camera translation (+ global orientation) on the torso keypoints
    steps: int = 100              # stage 2: pose, shape, global orientation and translation
    lr: float = 1e-2              # Adam, both stages (SPIN's value)
    camera_orient: bool = True    # stage 1 also turns the body, as SMPLify does
    pose_prior: float = 4.78 ** 2  # x GMM negative log-likelihood (min over components)
    bend_prior: float = 15.2 ** 2  # x sum exp(sign * angle)^2 over elbows and knees
    shape_prior: float = 5.0 ** 2  # x ||betas||^2
    depth: float = 100.0 ** 2     # stage 1: x (tz - tz_start)^2 in m^2, keeps the camera from drifting away


@dataclass
class SmoothOptions:
    """Extra terms of temporal SMPLify over a sequence (F frames, one shared body shape).  Weights from a
    sweep on two 72-frame training-subject clips (medium noise, our regressor's start)."""
    joint_accel: float = 1e4      # x sum ||J(t-1) - 2 J(t) + J(t+1)||^2 (camera-frame joints, metres)
    pose_velocity: float = 1e4    # x sum ||R(t+1) - R(t)||_F^2 over the 24 joint rotations


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
class FilterOptions:
    """A standard temporal filter on 6D pose and translation.  On two 72-frame training-subject clips
    (24 fps, medium noise, our regressor's start) the Gaussian beat Savitzky-Golay; sigma 1/2/3/4 frames
    gave PA-MPJPE-14 45.9/44.5/43.8/43.5 mm and accel 19.8/13.4/12.5/12.3: 3 keeps faster motion."""
    kind: str = "gaussian"        # 'gaussian' | 'savgol'
    sigma: float = 3.0            # gaussian: std in frames
    window: int = 9               # savgol: window length (odd) in frames
    order: int = 2                # savgol: polynomial order


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


# -- shared terms --------------------------------------------------------------------------------
def bend_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """SMPLify's elbow/knee hyper-extension penalty. body_pose (B,69) axis-angle -> (B,)."""
    sign = torch.tensor(BEND_SIGN, dtype=body_pose.dtype, device=body_pose.device)
    return torch.exp(body_pose[:, list(BEND_INDEX)] * sign).pow(2).sum(1)


def reprojection(body_model, rotmats, betas, transl, keypoints, focal, principal, image_size):
    """Eq. 12 per sample (B,) and the posed body (BodyOutput) for rotmats (B,24,3,3)."""
    out = body_model.joints_fast(rotmats, betas, transl)
    loss = guidance.keypoint_reprojection(out.keypoints[:, :NUM_KP], keypoints, focal, principal, image_size)
    return loss, out


def _torso_only(keypoints: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(keypoints.shape[-2], dtype=keypoints.dtype, device=keypoints.device)
    mask[list(TORSO_KP)] = 1.0
    return torch.cat([keypoints[..., :2], keypoints[..., 2:3] * mask[:, None]], -1)


# A data term: (rotmats (B,24,3,3), betas (B,10), transl (B,3), torso_only) -> (loss (B,), BodyOutput)
DataTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], tuple]


def _classical_fit(data: DataTerm, prior: MaxMixturePrior, start: dict, opts, depth_weight: float = 0.0,
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


def _reprojection_term(body_model, keypoints, focal, principal, image_size) -> DataTerm:
    torso = _torso_only(keypoints)

    def data(rotmats, betas, transl, torso_only):
        return reprojection(body_model, rotmats, betas, transl, torso if torso_only else keypoints,
                            focal, principal, image_size)
    return data


# -- single frame ------------------------------------------------------------------------------
def smplify(body_model, prior: MaxMixturePrior, keypoints: torch.Tensor, focal: torch.Tensor,
            principal: torch.Tensor, image_size: torch.Tensor, start: dict,
            opts: SmplifyOptions = SmplifyOptions()) -> dict:
    """SMPLify from an initial estimate: keypoints (B,17,3), focal (B,), principal (B,2), image_size (B,2),
    start {rotmats (B,24,3,3), betas (B,10), transl (B,3)}.

    Returns rotmats, betas, transl and per-sample reprojection (B,) (Eq. 12 units) and total loss (B,)."""
    data = _reprojection_term(body_model, keypoints, focal, principal, image_size)
    out = _classical_fit(data, prior, start, opts, depth_weight=opts.depth)
    out["reprojection"] = out.pop("data")
    return out


def cosine_rate(start: float, end: float, step: int, steps: int) -> float:
    """Learning rate at ``step`` of ``steps`` decaying from ``start`` to ``end`` along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / steps))


def dposer_style(body_model, eps_model, alphas_cumprod: torch.Tensor, context: torch.Tensor,
                 keypoints: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor, image_size: torch.Tensor,
                 start: dict, opts: DPoserOptions = DPoserOptions(),
                 generator: torch.Generator | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Optimisation with our diffusion prior as a score-based regulariser (DPoser-like).

    Each Adam step draws t ~ U[t_range] and noise eps per sample, noises the current (re-orthonormalised)
    6D pose x0 (B,144) to x_t and adds the surrogate 0.5 ||x0 - sg(x0_hat)||^2 whose gradient is
    x0 - x0_hat = w(t) (eps_phi(x_t, t, c) - eps) with w(t) = sqrt((1 - a_t) / a_t): score distillation,
    the denoiser is never differentiated.  Betas stay at the start (as in ScoreHMR).
    context (B,C) standardised regressor features; other shapes as :func:`smplify`.  progress(done, total) is
    called after every step (the engine's progress and cancellation hook).
    Returns rotmats, betas, transl, reprojection (B,) (Eq. 12 units, before the weight) and its start value."""
    b = keypoints.shape[0]
    a = alphas_cumprod.to(keypoints)
    x = matrix_to_rot6d(start["rotmats"].detach()).reshape(b, 144).clone().requires_grad_(True)
    transl = start["transl"].detach().clone().requires_grad_(True)
    betas = start["betas"].detach().reshape(-1, 10).expand(b, 10)
    dev = keypoints.device
    gen_dev = generator.device if generator is not None else dev
    reproj = lambda R, tr: reprojection(body_model, R, betas, tr, keypoints, focal, principal, image_size)[0]
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
                x0_hat = predict_x0(x_t, eps_model(x_t, t, context), a_t)
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


# -- video ---------------------------------------------------------------------------------------
def temporal_filter(rotmats: torch.Tensor, transl: torch.Tensor, opts: FilterOptions = FilterOptions()):
    """Low-pass filter over frames of the 6D pose and the translation, then back to rotations.

    rotmats (F,24,3,3), transl (F,3) -> the same shapes.  Gram-Schmidt in rot6d_to_matrix
    re-orthonormalises the filtered 6D vectors."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import savgol_filter

    f = rotmats.shape[0]
    x = np.concatenate([matrix_to_rot6d(rotmats).reshape(f, 144).cpu().double().numpy(),
                        transl.cpu().double().numpy()], 1)
    if opts.kind == "gaussian":
        y = gaussian_filter1d(x, opts.sigma, axis=0, mode="nearest")
    elif opts.kind == "savgol":
        window = min(opts.window, f if f % 2 else f - 1)
        y = savgol_filter(x, window, min(opts.order, window - 1), axis=0, mode="interp") if window >= 3 else x
    else:
        raise ValueError(f"unknown filter {opts.kind!r}: use gaussian or savgol")
    y = torch.as_tensor(y, dtype=rotmats.dtype, device=rotmats.device)
    return rot6d_to_matrix(y[:, :144].reshape(f, 24, 6)), y[:, 144:].contiguous()


def per_frame_then_filter(engine, keypoints: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor,
                          image_size: torch.Tensor, start: dict, options=None,
                          filt: FilterOptions = FilterOptions()) -> dict:
    """ScoreHMR frame mode on every frame of one sequence, then :func:`temporal_filter`.

    keypoints (F,17,3) etc. as :func:`smplify`; options an EngineOptions (default: the engine's).
    Returns rotmats (F,24,3,3), betas (F,10), transl (F,3), denoiser_evaluations."""
    from backend.engine.api import EngineOptions

    loop, weights = (options or EngineOptions()).resolved("frame")
    ctx = engine.context(keypoints, focal, principal)
    res = engine._frames(Observations(keypoints, focal, principal, image_size), start, ctx, loop, weights)
    rotmats, transl = temporal_filter(res["rotmats"], res["transl"], filt)
    return dict(rotmats=rotmats, transl=transl, betas=res["betas"], denoiser_evaluations=res["evaluations"])


def smoothness(joints: torch.Tensor, rotmats: torch.Tensor, opts: SmoothOptions) -> torch.Tensor:
    """Temporal SMPLify's smoothness of one sequence: joints (F,24,3), rotmats (F,24,3,3) -> scalar."""
    accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    return opts.joint_accel * accel.pow(2).sum() + opts.pose_velocity * (rotmats[1:] - rotmats[:-1]).pow(2).sum()


def temporal_smplify(body_model, prior: MaxMixturePrior, keypoints: torch.Tensor, focal: torch.Tensor,
                     principal: torch.Tensor, image_size: torch.Tensor, start: dict,
                     opts: SmplifyOptions = SmplifyOptions(), smooth: SmoothOptions = SmoothOptions()) -> dict:
    """SMPLify over one sequence of F frames with one body shape and :func:`smoothness` in stage 2.

    Shapes as :func:`smplify` with B = F consecutive frames seen by one camera."""
    data = _reprojection_term(body_model, keypoints, focal, principal, image_size)
    out = _classical_fit(data, prior, start, opts, depth_weight=opts.depth,
                         extra=lambda R, body: smoothness(body.joints, R, smooth), shared_betas=True)
    out["reprojection"] = out.pop("data")
    return out


# -- calibrated multi-view -------------------------------------------------------------------------
def fit_to_3d(body_model, prior: MaxMixturePrior, points: torch.Tensor, weights: torch.Tensor, start: dict,
              opts: Fit3DOptions = Fit3DOptions()) -> dict:
    """Fit pose, shape and translation to 3D keypoints with the GMM, bending and shape priors.

    points (B,17,3) (COCO-17, in the frame of the start, e.g. view 0's camera), weights (B,17) (0 = unseen),
    start as :func:`smplify`.  Data term: sum weight^2 GM(px_per_m * residual) per axis.
    Returns rotmats, betas, transl, residual_mm (B,) (weighted mean 3D distance) and total loss (B,)."""
    keep = torch.zeros_like(weights)
    keep[:, list(TORSO_KP)] = 1.0
    w_torso = weights * keep

    def data(rotmats, betas, transl, torso_only):
        out = body_model.joints_fast(rotmats, betas, transl)
        w = w_torso if torso_only else weights
        r = (out.keypoints[:, :NUM_KP] - points) * opts.px_per_m
        return (w[..., None] ** 2 * guidance.geman_mcclure(r, guidance.GMOF_SIGMA_PX)).sum((1, 2)), out

    out = _classical_fit(data, prior, start, opts)
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


# -- the engine's contract ---------------------------------------------------------------------------
METHODS = ("smplify", "dposer", "per-frame-filter")
WHAT_RUNS = {  # (method, mode) -> what runs; calibrated multi-view is 'multiview' with cam_R / cam_t in OBS
    ("smplify", "frame"): "SMPLify per frame",
    ("smplify", "video"): "temporal SMPLify over the clip",
    ("smplify", "multiview"): "SMPLify per view",
    ("smplify", "calibrated"): "triangulation + 3D fit",
    ("dposer", "frame"): "DPoser-style fitting per frame",
    ("dposer", "video"): "DPoser-style fitting per frame",
    ("dposer", "multiview"): "DPoser-style fitting per view",
    ("per-frame-filter", "video"): "ScoreHMR frame mode + temporal filter",
}


def run_baseline(engine, obs: dict, init: dict | None, mode: str, method: str, prior: MaxMixturePrior | None = None,
                 generator: torch.Generator | None = None) -> dict:
    """A baseline instead of ScoreHMR behind the engine's contract: validated OBS and optional INIT dicts in
    (as Engine.run), an OUT dict out (same keys; info.method names what ran).  ``prior``: the GMM prior
    (default: backend/assets/pose_gmm.npz).  See WHAT_RUNS for what each (method, mode) does."""
    import time

    from backend.engine.api import EngineOptions
    from backend.engine.gmm import GMM

    t0 = time.time()
    kind = "calibrated" if mode == "multiview" and "cam_R" in obs else mode
    if (method, kind) not in WHAT_RUNS:
        runs = ", ".join(f"{m} ({k})" for m, k in WHAT_RUNS)
        raise ValueError(f"method {method!r} does not run in {kind} mode; available: {runs}")
    if prior is None and method == "smplify":
        prior = MaxMixturePrior(GMM.load())
    if prior is not None:
        prior = prior.to(engine.device)
    o = engine.observations(obs)                                        # (V,F,...)
    v, f = o.focal.shape
    start = engine.start(o, init, mode)
    flat = o.reshape(v * f)
    args = (flat.keypoints, flat.focal, flat.principal, flat.image_size)
    extra = {}
    if method == "smplify" and kind == "video":
        out = temporal_smplify(engine.body, prior, *args, start)
    elif method == "smplify" and kind == "calibrated":
        R, t = o.cam_R, o.cam_t
        fit = triangulate_and_fit(engine.body, prior, o, start)
        rot, tr = in_every_view(engine.body, fit["rotmats"], fit["transl"], fit["betas"], *relative_cameras(R, t))
        out = dict(rotmats=rot, transl=tr, betas=fit["betas"].repeat(v, 1), world_from_view0=(R[0], t[0]))
        extra["triangulated_points"] = int((fit["weights"] > 0).sum())
    elif method == "smplify":
        out = smplify(engine.body, prior, *args, start)
    elif method == "dposer":
        out = dposer_style(engine.body, engine.prior, engine.alphas, engine.context(*args[:3]), *args, start,
                           generator=generator)
        extra["denoiser_evaluations"] = out["denoiser_evaluations"]
    else:
        out = per_frame_then_filter(engine, *args, start, EngineOptions())
        extra["denoiser_evaluations"] = out["denoiser_evaluations"]
    out = {k: out[k] for k in ("rotmats", "transl", "betas", "world_from_view0") if k in out}
    info = dict(mode=mode, method=method, runs=WHAT_RUNS[(method, kind)], init=start["source"],
                device=str(engine.device), seconds=round(time.time() - t0, 3), frames=f, views=v,
                focal_source=obs.get("focal_source", "given"), models=engine.meta, **extra)
    return engine._assemble(out, start, o, info, obs)
