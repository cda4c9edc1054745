"""Video: a final smoothing fit of the ScoreHMR result (the default variant's last stage).

The guided DDIM loop takes a fixed number of gradient steps whose size is bounded by the stiffest
direction of the whole guidance loss, so a temporal term strong enough to remove the frame-to-frame
shake starves the keypoint term (issue 13): the loop's result follows the detector's jitter.  This
stage solves the smoothing problem properly instead, with a quasi-Newton method, over windows of the
blended clip:

    min  w_kp * Eq. 12 reprojection + w_accel * sum ||J(t-1) - 2 J(t) + J(t+1)||^2
         + w_pose(t) * sum ||x6(t) - x6_ref(t)||^2

over the 6D pose x6 (S,24,6) and camera translation (S,3) of each window, J the camera-frame
joints (metres).  The ScoreHMR result x6_ref is the anchor: the prior's pose, kept up to what the
reprojection and the smoothness ask for.  The translation starts from the loop's, held to it by a weak
anchor (PolishOptions.transl_anchor).

Weights chosen on the tuning subjects: docs/tuning.md#polish-weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from backend.engine import guidance
from backend.engine.gaps import empty_frames
from backend.engine.problems import Observations
from backend.engine.windows import refine_in_windows
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

# A clip is fitted over stretches of this many frames (overlapping by POLISH_OVERLAP, blended).
POLISH_WINDOW, POLISH_OVERLAP = 240, 40


@dataclass
class PolishOptions:
    """Weights in Eq. 12 units (squared pixels at 1000 px, like temporal SMPLify's)."""
    iterations: int = 40          # L-BFGS iterations (0: no polish)
    keypoints: float = 1.0        # x Eq. 12 reprojection per frame
    joint_accel: float = 3e5      # x ||second difference of camera-frame joints||^2 (m^2)
    pose_anchor: float = 3e3      # x ||x6 - x6_ref||^2 (6D pose, 24 joints)
    precondition: float = 10.0    # c of the change of variables (I + c D2'D2)^(-1/2) over frames (0: none)
    # x ||transl - transl_ref||^2 (m^2): the depth of a stretch is weakly held by its keypoints, and without an
    # anchor float32 rounding decided where L-BFGS left it (1.6 mm apart after a sub-pixel input change).
    # Chosen on the tuning subjects: docs/tuning.md#polish-translation-anchor
    transl_anchor: float = 1e3
    # pose_anchor x this in frames without keypoints (gaps.empty_frames): with no evidence there the
    # smoothness alone carried a neighbour's error into the gap.
    # Chosen on the tuning subjects: docs/tuning.md#polish-unseen-anchor
    unseen_anchor: float = 100.0
    # joint_accel is for keypoint tracks as jittery as the medium simulation; smoother tracks (a detector
    # with its own temporal filter, as BlazePose in video mode) get it x (jitter / jitter_reference_px)^2,
    # down to x min_smoothing: see keypoint_jitter_px and smoothing_factor.
    jitter_reference_px: float = 6.0
    min_smoothing: float = 0.1

    def as_dict(self) -> dict:
        return asdict(self)


def polish_loss(body_model, shaped, obs, x6_ref: torch.Tensor, transl_ref: torch.Tensor, opts: PolishOptions):
    """The objective over x6 (W,S,24,6) and transl (W,S,3) -> scalar (summed over windows).

    shaped: body_model.shaped(betas) flattened (W*S,...); obs: Observations (W,S,...); x6_ref (W,S,24,6) and
    transl_ref (W,S,3) the anchors."""
    kp_obs = obs.keypoints.flatten(0, 1)
    unseen = empty_frames(obs.keypoints).to(x6_ref.dtype)                      # (W,S)
    anchor = (opts.pose_anchor * (1 + (opts.unseen_anchor - 1) * unseen))[..., None, None]
    focal, principal, size = obs.focal.flatten(0, 1), obs.principal.flatten(0, 1), obs.image_size.flatten(0, 1)

    def loss(x6: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        w, s = x6.shape[:2]
        rot = rot6d_to_matrix(x6.reshape(w * s, 24, 6))
        out = body_model.joints_fast(rot, shaped, transl.reshape(w * s, 3))
        reproj = guidance.keypoint_reprojection(out.keypoints[:, : kp_obs.shape[-2]], kp_obs, focal, principal, size)
        joints = out.joints.reshape(w, s, 24, 3)
        accel = joints[:, 2:] - 2 * joints[:, 1:-1] + joints[:, :-2]
        return (opts.keypoints * reproj.sum() + opts.joint_accel * accel.pow(2).sum()
                + (anchor * (x6 - x6_ref).pow(2)).sum() + opts.transl_anchor * (transl - transl_ref).pow(2).sum())
    return loss


def polish(body_model, obs, betas: torch.Tensor, rotmats: torch.Tensor, transl: torch.Tensor,
           opts: PolishOptions = PolishOptions()) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth windows of a result: obs Observations (W,S,...), betas (W,S,10), rotmats (W,S,24,3,3),
    transl (W,S,3) -> polished rotmats, transl (same shapes).

    L-BFGS with a strong-Wolfe line search, a fixed number of iterations, no randomness: sub-pixel input
    changes move no output joint by a millimetre (tests/test_engine_api.py)."""
    if opts.iterations <= 0:
        return rotmats, transl
    w, s = rotmats.shape[:2]
    x6_ref = matrix_to_rot6d(rotmats).reshape(w, s, 24, 6).detach()
    shaped = body_model.shaped(betas.reshape(w * s, -1))
    loss = polish_loss(body_model, shaped, obs, x6_ref, transl.detach(), opts)
    basis = smoothing_basis(s, opts.precondition, rotmats)
    u6 = torch.zeros_like(x6_ref, requires_grad=True)
    ut = torch.zeros_like(transl, requires_grad=True)
    x6 = lambda: x6_ref + torch.einsum("ts,wsc->wtc", basis, u6.flatten(2)).reshape(u6.shape)
    tr = lambda: transl.detach() + torch.einsum("ts,wsc->wtc", basis, ut)
    solver = torch.optim.LBFGS([u6, ut], lr=1.0, max_iter=opts.iterations, history_size=20,
                               line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        solver.zero_grad()
        value = loss(x6(), tr())
        value.backward()
        return value

    with torch.enable_grad():
        solver.step(closure)
    with torch.no_grad():
        return rot6d_to_matrix(x6()), tr()


def polish_clip(body_model, obs: Observations, betas: torch.Tensor, rotmats: torch.Tensor, transl: torch.Tensor,
                opts: PolishOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`polish` over overlapping stretches of one clip, blended (backend.engine.windows), its accel
    weight scaled by :func:`smoothing_factor`: obs (F,...), betas (F,10), rotmats (F,24,3,3), transl (F,3)
    -> polished rotmats, transl."""
    if opts.iterations <= 0:
        return rotmats, transl
    opts = replace(opts, joint_accel=opts.joint_accel * smoothing_factor(obs.keypoints, obs.image_size, opts))
    f = rotmats.shape[0]

    def polish_window(ids: torch.Tensor) -> dict:
        R, t = polish(body_model, obs[ids], betas[ids], rotmats[ids], transl[ids], opts)
        return dict(rotmats=R, transl=t)

    res = refine_in_windows(f, min(POLISH_WINDOW, f), POLISH_OVERLAP, 1, polish_window, rotmats.device)
    return res["rotmats"], res["transl"]


def keypoint_jitter_px(keypoints: torch.Tensor, image_size: torch.Tensor) -> float:
    """Median length of the keypoints' second difference over frames, in px at 1000 px (as Eq. 12 measures).

    keypoints (F,K,3) [x, y, conf] of one clip, image_size (F,2) -> a float (NaN if no point is seen in three
    frames running).  For a slow motion it is the detector's frame-to-frame noise (white noise of std s gives
    a median of ~2.9 s); the median keeps a few fast limbs or detector glitches from setting it."""
    kp = keypoints.detach().double()
    d2 = (kp[2:, :, :2] - 2 * kp[1:-1, :, :2] + kp[:-2, :, :2]).norm(dim=-1)
    d2 = d2 * (1000.0 / image_size.detach().double()[1:-1].amax(-1))[:, None]
    seen = (kp[2:, :, 2] > 0) & (kp[1:-1, :, 2] > 0) & (kp[:-2, :, 2] > 0)
    return float(d2[seen].median()) if seen.any() else float("nan")


def smoothing_factor(keypoints: torch.Tensor, image_size: torch.Tensor, opts: PolishOptions) -> float:
    """The factor on joint_accel for one clip: min(1, (jitter / reference)^2), at least opts.min_smoothing.

    The smoothness weight stands for the ratio of keypoint noise to motion (a MAP weight scales with the
    noise variance): at the reference (the median jitter of the medium simulation, 4.7-9.6 px on the tuning
    clips) it is the tuned weight; BlazePose's own detections, already filtered, measure 0.8-6.9 px.  Tuning
    subjects, PA-MPJPE-14 (accel) of the final fit: 15 excerpts of BlazePose on renders 63.88 (15.1) with
    the fixed weight, 62.94 (16.1) with this factor (the paper's loop alone 62.50 (30.9)); simulated medium
    32.24 -> 32.27, high 41.85 -> 41.85 (its jitter is above the reference: the factor stays 1; letting it rise
    above 1 cost high noise 0.26 mm)."""
    jitter = keypoint_jitter_px(keypoints, image_size)
    if not jitter == jitter:      # NaN: nothing to measure, keep the weight
        return 1.0
    return max(opts.min_smoothing, min(1.0, (jitter / opts.jitter_reference_px) ** 2))


def smoothing_basis(frames: int, c: float, like: torch.Tensor) -> torch.Tensor:
    """(S,S) matrix B with B B' = (I + c D2' D2)^-1, D2 the second-difference operator over S frames.

    The unknowns are changes B u of the reference: the Hessian of the smoothness term in u is then
    close to the identity, so L-BFGS spends its few iterations on the reprojection instead of on the
    stiff high-frequency directions of the smoothness (example shot: c = 10 reached a lower loss in
    10 iterations than c = 0 in 40)."""
    eye = torch.eye(frames, dtype=torch.float64, device=like.device)
    d2 = torch.diff(eye, n=2, dim=0)                                   # (S-2,S)
    L = torch.linalg.cholesky(eye + c * d2.T @ d2)
    return torch.linalg.solve_triangular(L.T, eye, upper=True).to(like.dtype)
