"""Baselines the benchmark compares ScoreHMR with: classical fitting, a score-based fitting prior,
temporal filtering / smoothing for video and triangulation for calibrated views, and :func:`run_baseline`,
any of them behind the engine's contract.

Everything is torch, batch-first, on the tensors the engine uses: observations (B,...)
(backend.engine.problems.Observations) and a start dict with rotmats (B,24,3,3), betas (B,10), transl (B,3)
in the OpenCV camera frame (LoadedModels.start's layout).  Results are dicts with the same three keys plus
per-sample losses.  The fitting they share with the engine's modes (SMPLify's fit and priors, DPoser-style
fitting, the 3D fit) is backend.engine.fitting; loss units and weights are explained there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from backend.engine.fitting import (BEND_INDEX, TORSO_KP, DataTerm, DPoserOptions, Fit3DOptions, bend_prior,
                                    classical_fit, dposer_style, fit_to_3d, reprojection, triangulate_and_fit)
from backend.engine.gmm import MaxMixturePrior
from backend.engine.loaded import LoadedModels
from backend.engine.modes import frame
from backend.engine.options import EngineOptions
from backend.engine.output import assemble
from backend.engine.problems import Observations
from backend.engine.views import in_every_view, relative_cameras
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

# The baselines' own and those they share with the engine (backend.engine.fitting).
__all__ = ["SmplifyOptions", "SmoothOptions", "FilterOptions", "DPoserOptions", "Fit3DOptions", "BEND_INDEX",
           "bend_prior", "reprojection", "smplify", "dposer_style", "temporal_filter", "per_frame_then_filter",
           "smoothness", "temporal_smplify", "fit_to_3d", "triangulate_and_fit", "METHODS", "WHAT_RUNS",
           "run_baseline"]


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
class FilterOptions:
    """A standard temporal filter on 6D pose and translation.  On two 72-frame training-subject clips
    (24 fps, medium noise, our regressor's start) the Gaussian beat Savitzky-Golay; sigma 1/2/3/4 frames
    gave PA-MPJPE-14 45.9/44.5/43.8/43.5 mm and accel 19.8/13.4/12.5/12.3: 3 keeps faster motion."""
    kind: str = "gaussian"        # 'gaussian' | 'savgol'
    sigma: float = 3.0            # gaussian: std in frames
    window: int = 9               # savgol: window length (odd) in frames
    order: int = 2                # savgol: polynomial order


def _torso_only(keypoints: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(keypoints.shape[-2], dtype=keypoints.dtype, device=keypoints.device)
    mask[list(TORSO_KP)] = 1.0
    return torch.cat([keypoints[..., :2], keypoints[..., 2:3] * mask[:, None]], -1)


def _reprojection_term(body_model, obs: Observations) -> DataTerm:
    torso = replace(obs, keypoints=_torso_only(obs.keypoints))

    def data(rotmats, betas, transl, torso_only):
        return reprojection(body_model, rotmats, betas, transl, torso if torso_only else obs)
    return data


# -- single frame ------------------------------------------------------------------------------
def smplify(body_model, prior: MaxMixturePrior, obs: Observations, start: dict,
            opts: SmplifyOptions = SmplifyOptions()) -> dict:
    """SMPLify from an initial estimate: observations obs (B,...), start {rotmats (B,24,3,3), betas (B,10),
    transl (B,3)}.

    Returns rotmats, betas, transl and per-sample reprojection (B,) (Eq. 12 units) and total loss (B,)."""
    data = _reprojection_term(body_model, obs)
    out = classical_fit(data, prior, start, opts, depth_weight=opts.depth)
    out["reprojection"] = out.pop("data")
    return out


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


def per_frame_then_filter(models: LoadedModels, obs: Observations, start: dict,
                          options: EngineOptions | None = None, filt: FilterOptions = FilterOptions()) -> dict:
    """ScoreHMR's loop on every frame of one sequence (frame mode without the fit stage), then
    :func:`temporal_filter`.

    obs (F,...), start as the modes take it (with the prior's context (F,C)); options an EngineOptions
    (default: the engine's).  Returns rotmats (F,24,3,3), betas (F,10), transl (F,3), denoiser_evaluations."""
    settings = replace((options or EngineOptions()).for_mode("frame"), frame_fit=None)
    res = frame.refine(models, obs, start, settings)
    rotmats, transl = temporal_filter(res["rotmats"], res["transl"], filt)
    return dict(rotmats=rotmats, transl=transl, betas=res["betas"], denoiser_evaluations=res["evaluations"])


def smoothness(joints: torch.Tensor, rotmats: torch.Tensor, opts: SmoothOptions) -> torch.Tensor:
    """Temporal SMPLify's smoothness of one sequence: joints (F,24,3), rotmats (F,24,3,3) -> scalar."""
    accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    return opts.joint_accel * accel.pow(2).sum() + opts.pose_velocity * (rotmats[1:] - rotmats[:-1]).pow(2).sum()


def temporal_smplify(body_model, prior: MaxMixturePrior, obs: Observations, start: dict,
                     opts: SmplifyOptions = SmplifyOptions(), smooth: SmoothOptions = SmoothOptions()) -> dict:
    """SMPLify over one sequence of F frames with one body shape and :func:`smoothness` in stage 2.

    Shapes as :func:`smplify` with B = F consecutive frames seen by one camera."""
    data = _reprojection_term(body_model, obs)
    out = classical_fit(data, prior, start, opts, depth_weight=opts.depth,
                        extra=lambda R, body: smoothness(body.joints, R, smooth), shared_betas=True)
    out["reprojection"] = out.pop("data")
    return out


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


def run_baseline(models: LoadedModels, obs: dict, init: dict | None, mode: str, method: str,
                 prior: MaxMixturePrior | None = None, generator: torch.Generator | None = None) -> dict:
    """A baseline instead of ScoreHMR behind the engine's contract: validated OBS and optional INIT dicts in
    (as Engine.run), an OUT dict out (same keys; info.method names what ran).  ``prior``: the GMM prior
    (default: backend/assets/pose_gmm.npz).  See WHAT_RUNS for what each (method, mode) does."""
    import time

    from backend.engine.gmm import GMM

    t0 = time.time()
    kind = "calibrated" if mode == "multiview" and "cam_R" in obs else mode
    if (method, kind) not in WHAT_RUNS:
        runs = ", ".join(f"{m} ({k})" for m, k in WHAT_RUNS)
        raise ValueError(f"method {method!r} does not run in {kind} mode; available: {runs}")
    if prior is None and method == "smplify":
        prior = MaxMixturePrior(GMM.load())
    if prior is not None:
        prior = prior.to(models.device)
    o = models.observations(obs)                                        # (V,F,...)
    v, f = o.focal.shape
    start = models.start(o, init, mode)
    flat = o.reshape(v * f)
    extra = {}
    if method == "smplify" and kind == "video":
        out = temporal_smplify(models.body, prior, flat, start)
    elif method == "smplify" and kind == "calibrated":
        R, t = o.cam_R, o.cam_t
        fit = triangulate_and_fit(models.body, prior, o, start)
        rot, tr = in_every_view(models.body, fit["rotmats"], fit["transl"], fit["betas"], *relative_cameras(R, t))
        out = dict(rotmats=rot, transl=tr, betas=fit["betas"].repeat(v, 1), world_from_view0=(R[0], t[0]))
        extra["triangulated_points"] = int((fit["weights"] > 0).sum())
    elif method == "smplify":
        out = smplify(models.body, prior, flat, start)
    elif method == "dposer":
        out = dposer_style(models.body, models.prior, models.alphas, flat, start["context"], start,
                           generator=generator)
        extra["denoiser_evaluations"] = out["denoiser_evaluations"]
    else:
        out = per_frame_then_filter(models, flat, start, EngineOptions())
        extra["denoiser_evaluations"] = out["denoiser_evaluations"]
    out = {k: out[k] for k in ("rotmats", "transl", "betas", "world_from_view0") if k in out}
    info = dict(mode=mode, method=method, runs=WHAT_RUNS[(method, kind)], init=start["source"],
                device=str(models.device), seconds=round(time.time() - t0, 3), frames=f, views=v,
                focal_source=obs.get("focal_source", "given"), models=models.meta, **extra)
    return assemble(models, out, start, o, info, obs)
