"""The engine's Python API: observations (+ optional initial estimate) in, refined SMPL motion out.

    engine = Engine.load()                        # free body model, committed weights, CPU or GPU
    result = engine.run(obs, init=None, mode="video")

``obs`` is a validated OBS dict (backend.contract.observations), ``init`` an INIT dict or None (then the
built-in regressor makes it).  The result follows the OUT.npz contract (backend.contract.results).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.engine import body_size, frame_fit, gaps, modes, world
from backend.engine.frame_fit import FrameFitOptions
from backend.engine.guidance import project
from backend.engine.polish import PolishOptions, polish, smoothing_factor
from backend.engine.scorehmr import LoopOptions
from backend.engine.views import camera_changes, in_every_view, move_bodies, relative_cameras, rotation_mean
from backend.models.diffusion import cosine_alphas_cumprod
from backend.models.motion import MOTION_PRIOR_PATH
from backend.models.context import build_context
from backend.models.regressor import estimate_initial
from backend.rotations import matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix

NUM_KP = 17


# Loop settings that differ from the paper's single-frame defaults (LoopOptions()).
MODE_LOOPS = {
    # Eq. 13, the authors' settings, without the step bound: tau 100's first guided step is past it
    # (eta * curvature > 2 in the stiffest direction, the keypoints of a limb end), but one scale for
    # all directions then starves the slow ones (view consistency): bounded at 1 (1.9), 4-view
    # PA-MPJPE-14 went 40.2 -> 52.0 (49.8) mm on the tuning subjects.  The unbounded loop is not
    # chaotic: sub-pixel input noise moves no joint by more than 0.005 mm (examples/multiview).  Tried on
    # the tuning subjects (MPJPE-14 change against the per-view start at 2 / 4 / 8 views, one body shape per
    # instant): these settings -2.3% / -20.3% / -19.1%; tau 50, step 5, 4 iterations -6.8 / -19.5 / -22.0;
    # keypoint weight x0.5 -7.2 / -18.5 / -20.6 (x2: +14 / -7 / +1); consistency weight x0.5 no change, x2
    # diverges.  Nothing to normalise by the view count: each view's gradient is its own reprojection's
    # plus 2 (x_v - mean) of Eq. 13, whatever V.
    "multiview": LoopOptions(tau=100, step=10, iterations=2, max_step_curvature=0.0),
    # One body per instant fitted to the triangulation first; its translation stays where the 3D fit put
    # it (Engine._calibrated).  Chosen on the tuning subjects (32 instants; PA-MPJPE-14 / MPJPE-14 at 2 / 4 /
    # 8 views, refined in view 0 only): Eq. 13's loop (tau 100, step 10, 2 iterations, curvature-bounded)
    # 58.6 / 81.3, 39.2 / 44.4, 21.7 / 30.6 against triangulate + fit 65.7 / 90.5, 40.4 / 44.1, 21.9 / 28.9;
    # the bound kept every step at the stiffest keypoint's scale (mean scale 0.3), so the slow directions
    # hardly moved while the prior, conditioned on one view, pulled the neck and head: tau 60, step 10,
    # 10 iterations, unbounded: 51.6 / 74.4, 37.1 / 42.0, 20.7 / 28.7 (tau 50 / 70 / 80 within 1 mm;
    # step 2 or 5 no better at 3-8x the evaluations; a 3D term to the triangulated points or a rigid
    # re-alignment to them after the loop made every view count worse).  Refined in every view and
    # averaged, tau 70: 51.8 / 73.1, 35.6 / 40.6, 20.1 / 28.2.
    "calibrated": LoopOptions(tau=70, step=10, iterations=10, max_step_curvature=0.0, optimise_translation=False),
}

# Uncalibrated views, variant 'ours': Eq. 12 + Eq. 13 guidance without the prior (eps = 0: the loop is then
# gradient descent with the steps sum_t sigma_t (sigma_t - sigma_t')), then the common pose.  The ablation
# (docs/ablation.md: every variant's scale, tau and iterations tuned on the tuning subjects, 96 instants x 5
# seeds, 4 views) found the trained prior worse than a tuned null denoiser there: report subjects PA-MPJPE-14
# / MPJPE-14 32.76 / 64.25 (trained, scale 1, 4 iterations) against 31.48 / 59.58 (null, scale 0.5, 4
# iterations), differences +1.28 [0.98, 1.57] / +4.67 [4.12, 5.22] mm; the bench's tuning draw (32
# instants, 2 / 4 / 8 views, MPJPE-14 against the per-view start): paper loop -2.9% / -21.3% / -20.4%,
# this -4.2% / -27.5% / -27.0%.  The variant 'paper' keeps the prior and MODE_LOOPS['multiview'].
MULTIVIEW_WITHOUT_PRIOR = LoopOptions(tau=100, step=10, iterations=4, guidance_scale=0.5, max_step_curvature=0.0)


def null_denoiser(x: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
    """eps = 0 for x (B,D): in the loop's place of the prior, its moves are then the guidance alone."""
    return torch.zeros_like(x)

# The motion prior's loop (docs/motion_prior.md: chosen on the tuning subjects).  Deterministic DDIM
# inversion, as the paper: forward noising ('random') let the prior redraw the motion, and its samples
# were rougher than the start's noise removed (acceleration error 57-75 vs 51 mm/frame^2 of the start).
MOTION_LOOP = LoopOptions(tau=200, step=20, iterations=5)
# The motion prior's temporal and translation weights are 4x the variant's (a smoothing of 4 under the
# user's): tuning PA-MPJPE-14 / accel 34.70 / 18.96 at 1x, 34.43 / 16.99 at 2x, 34.46 / 15.81 at 4x,
# 34.64 / 15.33 at 8x.
MOTION_SMOOTHING = 4.0


@dataclass
class EngineOptions:
    """Everything that changes a result; defaults are the paper's, `variant='ours'` adds the final smoothing
    fit in video mode (backend.engine.polish)."""
    variant: str = "ours"                 # 'paper' | 'ours'
    loop: LoopOptions | None = None       # None: per-mode defaults (multi-view: tau 100, step 10, 2 iterations)
    weights: modes.GuidanceWeights | None = None
    window: int = 64                      # video: frames per window
    overlap: int = 16                     # video: frames shared by neighbouring windows (blended)
    windows_per_batch: int = 16           # video: memory bound (windows refined at once)
    smoothing: float = 1.0                # scales the temporal terms (N-panel "smoothing strength")
    keypoint_trust: float = 1.0           # scales the keypoint term (N-panel "keypoint trust")
    # video: a learned motion prior checkpoint (backend.models.motion); None keeps the per-frame prior.
    # Its windows are the prior's length and its loop MOTION_LOOP; the foot term is off (the contacts are
    # the prior's own channel).  The temporal term stays (MOTION_SMOOTHING): without it the tuning clips'
    # acceleration error was 43.7 instead of 30.9 mm/frame^2 (docs/motion_prior.md).
    motion_prior: str | None = None
    polish: PolishOptions | None = None   # video: the final smoothing fit (None: the variant's; the paper has none)
    # frame: the fit stage for far starts and the built-in regressor's (backend.engine.frame_fit); None: the
    # variant's ('ours': FrameFitOptions(), the paper: none, the loop for every frame)
    frame_fit: FrameFitOptions | None = None
    # video with the per-frame prior: stretches around frames without keypoints are redone by this motion
    # prior checkpoint (its loop from the per-frame result, seen frames anchoring it) before the final fit;
    # None (or a missing file): the interpolated start alone carries the body across.  Tuning subjects,
    # 3 clips, medium noise, gaps of 5 / 10 / 24 frames: error in the gap / elsewhere 0.94 / 1.00 / 1.10x
    # with interpolation, 0.81 / 0.93 / 1.07x with it (the whole clip by the motion prior: 0.96 / 0.99 /
    # 1.06x, but a higher PA-MPJPE-14 without gaps, 66.02 against 65.98).
    gap_motion_prior: str | None = str(MOTION_PRIOR_PATH)
    # The person's known height in metres (backend.engine.body_size): one shape that tall for the whole input,
    # the start moved in depth by the size change.  None: the regressor's shapes, averaged per clip.
    height: float | None = None

    def resolved(self, mode: str) -> tuple[LoopOptions, modes.GuidanceWeights]:
        """Loop and weights of a mode ('frame', 'video', 'multiview' or 'calibrated': multiview with cameras)."""
        motion = mode == "video" and bool(self.motion_prior)
        default = MULTIVIEW_WITHOUT_PRIOR if not self.uses_prior(mode) else MODE_LOOPS.get(mode, LoopOptions())
        loop = self.loop or (MOTION_LOOP if motion else default)
        if mode == "calibrated":   # the translation is the triangulation fit's (Engine._calibrated)
            loop = replace(loop, optimise_translation=False)
        w = self.weights or modes.GuidanceWeights()
        if motion:
            w = replace(w, temporal=w.temporal * MOTION_SMOOTHING)
        w = replace(w, keypoints=w.keypoints * self.keypoint_trust, temporal=w.temporal * self.smoothing)
        return loop, w

    def uses_prior(self, mode: str) -> bool:
        """Whether the mode's loop runs with the learned prior: all but uncalibrated views in variant 'ours'
        (MULTIVIEW_WITHOUT_PRIOR)."""
        return not (mode == "multiview" and self.variant == "ours")

    def resolved_frame_fit(self) -> FrameFitOptions | None:
        """Single frames: the fit stage of backend.engine.frame_fit, or None (the paper: the loop only)."""
        return self.frame_fit or (FrameFitOptions() if self.variant == "ours" else None)

    def resolved_polish(self) -> PolishOptions:
        """The video result's final smoothing fit (backend.engine.polish), scaled like the loop's terms."""
        p = self.polish or (PolishOptions() if self.variant == "ours" else PolishOptions(iterations=0))
        return replace(p, keypoints=p.keypoints * self.keypoint_trust, joint_accel=p.joint_accel * self.smoothing)


# Video with options.gap_motion_prior: a gap's stretch has this many seen frames on each side (at least),
# and the motion prior's result is kept whole over the gap and this many frames around it.
GAP_MOTION_PAD, GAP_MOTION_HOLD = 12, 4
# Video: the final smoothing fit runs over stretches of this many frames (overlapping, blended).
POLISH_WINDOW, POLISH_OVERLAP = 240, 40


def _as_dict(options) -> dict | None:
    return None if options is None else options.as_dict()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Window starts covering 0..frames-1; the last window ends at the last frame."""
    if frames <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def blend_weights(frames: int, window: int, starts: list[int], overlap: int) -> np.ndarray:
    """(W, window) weights that ramp linearly across overlaps and sum to one per frame."""
    length = min(window, frames)
    ramp = np.ones(length)
    if overlap > 0 and len(starts) > 1:
        r = (np.arange(overlap) + 1) / (overlap + 1)
        ramp[:overlap], ramp[-overlap:] = np.minimum(ramp[:overlap], r), np.minimum(ramp[-overlap:], r[::-1])
    w = np.zeros((len(starts), frames))
    for i, s in enumerate(starts):
        w[i, s:s + length] = ramp
        if i == 0:
            w[i, :overlap] = 1.0 * (w[i, :overlap] > 0)
        if i == len(starts) - 1:
            w[i, s + length - overlap:s + length] = 1.0
    w /= w.sum(0, keepdims=True)
    return np.stack([w[i, s:s + length] for i, s in enumerate(starts)])


class Engine:
    def __init__(self, body_model: BodyModel, regressor, prior, context_mean, context_std,
                 device: torch.device | str = "cpu", meta: dict | None = None, context_layout: str = "features",
                 virtual_camera: bool = True):
        self.device = torch.device(device)
        self.body = body_model.to(self.device)
        self.regressor = regressor.to(self.device).eval()
        self.prior = prior.to(self.device).eval()
        self.context_mean, self.context_std = context_mean.to(self.device), context_std.to(self.device)
        self.alphas = cosine_alphas_cumprod().float().to(self.device)
        self.meta = meta or {}
        self.context_layout = context_layout
        # The regressor (start and the prior's context) sees each person turned onto the optical axis
        # (backend.models.regressor.virtual_view): it was trained on centred people.
        # Off-centre frames (bench off_centre, report subjects): the start's orientation error 15.3 -> 12.1 deg,
        # MPJPE-14 96.7 -> 86.1 mm; centred frames unchanged (+0.15 mm).
        self.virtual_camera = virtual_camera

    @classmethod
    def load(cls, smpl_path=None, device=None, prior_path=None) -> "Engine":
        from backend.models.train import load_prior, load_regressor

        reg, reg_meta = load_regressor()
        prior, mean, std, prior_meta = load_prior(*([prior_path] if prior_path else []))
        return cls(BodyModel.load(smpl_path), reg, prior, mean, std, device or default_device(),
                   dict(regressor=reg_meta.get("command"), prior=prior_meta.get("command")),
                   context_layout=prior_meta["context_layout"])

    def _t(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def context(self, kp: torch.Tensor, focal: torch.Tensor | None = None,
                principal: torch.Tensor | None = None) -> torch.Tensor:
        """The prior's context for keypoints (N,17,3) px seen with focal (N,) and principal (N,2) px
        (None: unknown camera, marked missing in layouts that use it, and no virtual camera) -> (N,C)."""
        return build_context(self.regressor, kp, focal, principal, self.context_mean, self.context_std,
                             self.context_layout, self.virtual_camera)

    @torch.no_grad()
    def initial(self, kp, focal, principal) -> dict:
        """Built-in regressor estimate for keypoints (N,17,3) px; focal (N,), principal (N,2)."""
        return estimate_initial(self.regressor, self.body, kp, focal, principal, self.virtual_camera)

    def _init_tensors(self, init: dict | None, kp, focal, pp) -> dict:
        if init is None:
            est = self.initial(kp, focal, pp)
            return dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"], source="built-in regressor")
        n = kp.shape[0]
        betas = self._t(init["betas"]).reshape(-1, 10).expand(n, 10)
        return dict(rotmats=pose_to_rotmats(self._t(init["global_orient"]), self._t(init["body_pose"])),
                    betas=betas.clone(), transl=self._t(init["transl"]).reshape(n, 3), source="given")

    def observations(self, obs: dict) -> modes.Observations:
        """A validated OBS dict as tensors laid out (V,F,...) (per-view intrinsics repeated over frames)."""
        kp = self._t(obs["keypoints"])                        # (V,F,17,3)
        v, f = kp.shape[:2]
        cams = dict(cam_R=self._t(obs["cam_R"]), cam_t=self._t(obs["cam_t"])) if "cam_R" in obs else {}
        return modes.Observations(kp, self._t(obs["focal_length"])[:, None].expand(v, f),
                                  self._t(obs["principal_point"])[:, None].expand(v, f, 2),
                                  self._t(obs["image_size"])[:, None].expand(v, f, 2), **cams)

    def start(self, o: modes.Observations, init: dict | None, mode: str) -> dict:
        """The starting estimate for observations (V,F,...): ``init`` (multi-view: one row per view and
        frame) or the built-in regressor's; tensors (V*F,...) view-major, plus its 'source'."""
        v, f = o.focal.shape
        if mode == "multiview" and init is not None:
            init = {k: np.asarray(x).reshape(v * f, -1) if k != "betas" else x for k, x in init.items()}
        flat = o.reshape(v * f)
        return self._init_tensors(init, flat.keypoints, flat.focal, flat.principal)

    # -- modes ---------------------------------------------------------------------------------
    def run(self, obs: dict, init: dict | None = None, mode: str = "video", options: EngineOptions | None = None,
            progress=None) -> dict:
        options = options or EngineOptions()
        t0 = time.time()
        o = self.observations(obs)
        loop, weights = options.resolved("calibrated" if mode == "multiview" and o.cam_R is not None else mode)
        v, f = o.focal.shape
        start = self.start(o, init, mode)
        if options.height:
            start = body_size.with_height(self.body, start, options.height)
        flat = o.reshape(v * f)
        ctx = self.context(flat.keypoints, flat.focal, flat.principal)
        if mode == "video":  # frames without keypoints start from their seen neighbours (a given init stays)
            start, ctx = gaps.bridge(start, ctx, o.keypoints[0], bridge_start=init is None)
        if mode == "frame":
            out = self._frames(o[0], start, ctx, loop, weights, progress, fit=options.resolved_frame_fit())
        elif mode == "video" and options.motion_prior:
            out = self._video_motion(o[0], start, loop, weights, options, float(obs.get("fps", 30.0)), progress)
        elif mode == "video":
            out = self._video(o[0], start, ctx, loop, weights, options, progress, fps=float(obs.get("fps", 30.0)))
        elif mode == "multiview" and o.cam_R is not None:
            out = self._calibrated(o, start, ctx, loop, weights, progress, height=options.height)
        elif mode == "multiview":
            out = self._multiview(o, start, ctx, loop, weights, progress,
                                  prior=None if options.uses_prior("multiview") else null_denoiser)
        else:
            raise ValueError(f"unknown mode {mode!r}: use frame, video or multiview")
        info = dict(mode=mode, variant=options.variant, init=start["source"], device=str(self.device),
                    seconds=round(time.time() - t0, 3), frames=f, views=v,
                    iterations_mean=float(out.pop("iterations").float().mean()),
                    denoiser_evaluations=int(out.pop("evaluations")),
                    options=dict(loop=loop.as_dict(), weights=weights.__dict__, window=options.window,
                                 overlap=options.overlap, smoothing=options.smoothing,
                                 keypoint_trust=options.keypoint_trust, motion_prior=options.motion_prior,
                                 gap_motion_prior=options.gap_motion_prior, height=options.height,
                                 **(dict(polish=options.resolved_polish().as_dict()) if mode == "video" else {}),
                                 **(dict(frame_fit=_as_dict(options.resolved_frame_fit())) if mode == "frame" else {})),
                    focal_source=obs.get("focal_source", "given"), models=self.meta)
        if "fitted" in out:
            info["fitted_frames"] = int(out.pop("fitted").sum())
        if "motion" in out:
            info["motion_prior"] = out.pop("motion")
        contacts = out.pop("contacts", None)
        result = self._assemble(out, start, o, info, obs)
        if mode == "video":  # the world frame on the floor (backend.engine.world), or why not
            fields, info["world"] = world.out_fields(result, contacts)
            result.update(fields, info=np.array(json.dumps(info)))
        return result

    def _frames(self, o: modes.Observations, start, ctx, loop, w, progress=None, prior=None,
                fit: FrameFitOptions | None = None):
        """Independent frames: o (F,...), start tensors (F,...) (+ its 'source'), ctx (F,C).  ``prior``:
        another denoiser eps(x, t, c) in place of the engine's (the ablation's variants).  ``fit``: the
        variant 'ours' fit stage (backend.engine.frame_fit) for the starts it chooses, the loop for the
        others; None: the loop for every frame (the paper)."""
        eps_model = prior or self.prior
        chosen = torch.zeros(ctx.shape[0], dtype=torch.bool, device=self.device)
        reference = None
        if fit is not None:
            chosen, reference = self._needs_fit(o, start, fit)
        rotmats, transl = start["rotmats"].clone(), start["transl"].clone()
        iterations = torch.zeros(ctx.shape[0], dtype=torch.long, device=self.device)
        evaluations = 0
        if chosen.any():
            sub = {k: start[k][chosen] for k in ("rotmats", "betas", "transl")}
            res = frame_fit.fit(self.body, eps_model, self.alphas, ctx[chosen], *(x[chosen] for x in (
                o.keypoints, o.focal, o.principal, o.image_size)), sub, fit, progress)
            rotmats[chosen], transl[chosen] = res["rotmats"], res["transl"]
            evaluations += res["evaluations"]
        loop_ids = (~chosen).nonzero()[:, 0]
        if len(loop_ids):
            sub = o[loop_ids]
            done = None
            if reference is not None and fit.discrepancy > 0:
                done = frame_fit.discrepancy_stop(self.body, sub.keypoints, sub.focal, sub.principal,
                                                  start["betas"][loop_ids], reference[loop_ids], fit.discrepancy)
            res = modes.run(eps_model, self.alphas,
                            modes.frame_loss(self.body, sub.map(lambda x, n: x[:, None]), start["betas"][loop_ids, None], w),
                            start["rotmats"][loop_ids, None], start["transl"][loop_ids, None], ctx[loop_ids, None],
                            loop, progress, done)
            rotmats[loop_ids], transl[loop_ids] = res["rotmats"][:, 0], res["transl"][:, 0]
            iterations[loop_ids] = res["iterations"]
            evaluations += res["denoiser_evaluations"]
        return dict(rotmats=rotmats, transl=transl, betas=start["betas"], iterations=iterations,
                    evaluations=evaluations, fitted=chosen)

    @torch.no_grad()
    def _needs_fit(self, o: modes.Observations, start, fit: FrameFitOptions) -> tuple:
        """frame_fit.needs_fit for frames o (F,...) and their start: the start's keypoint residual against
        the built-in regressor's on the same keypoints (computed only for a given start).  Returns the
        choice (F,) bool and that reference residual (F,) (None for the regressor's own start)."""
        residual = lambda s: frame_fit.start_residual(
            self.body.joints_fast(s["rotmats"], s["betas"], s["transl"]).keypoints[:, :NUM_KP],
            o.keypoints, o.focal, o.principal)
        own = start.get("source") == frame_fit.REGRESSOR_SOURCE
        reference = None if own else residual(self.initial(o.keypoints, o.focal, o.principal))
        return frame_fit.needs_fit(residual(start), reference, start.get("source"), fit), reference

    def _video(self, o: modes.Observations, start, ctx, loop, w, options, progress=None, fps: float = 30.0):
        """One clip seen by one camera: o (F,...), in overlapping windows blended back together; with
        options.gap_motion_prior, the stretches around frames without keypoints redone by it."""
        f = o.focal.shape[0]
        window = min(options.window, f)
        starts = window_starts(f, window, options.overlap)
        blend = torch.as_tensor(blend_weights(f, window, starts, options.overlap), dtype=torch.float32,
                                device=self.device)
        betas = start["betas"].mean(0, keepdim=True).expand(f, 10)  # one body over the clip, as in the paper
        idx = torch.stack([torch.arange(s, s + window, device=self.device) for s in starts])  # (W,window)
        x6 = torch.zeros(f, 24, 6, device=self.device)
        transl = torch.zeros(f, 3, device=self.device)
        iters, evals = [], 0
        for b in range(0, len(starts), options.windows_per_batch):
            ids = idx[b:b + options.windows_per_batch]
            res = modes.run(self.prior, self.alphas, modes.video_loss(self.body, o[ids], betas[ids], w),
                            start["rotmats"][ids], start["transl"][ids], ctx[ids], loop, progress)
            wts = blend[b:b + options.windows_per_batch]
            x6.index_add_(0, ids.reshape(-1), (matrix_to_rot6d(res["rotmats"]) * wts[..., None, None]).reshape(-1, 24, 6))
            transl.index_add_(0, ids.reshape(-1), (res["transl"] * wts[..., None]).reshape(-1, 3))
            iters.append(res["iterations"])
            evals += res["denoiser_evaluations"]
        rotmats = rot6d_to_matrix(x6)
        if options.gap_motion_prior and Path(options.gap_motion_prior).is_file():
            rotmats, transl, more = self._gaps_by_motion(o, betas, rotmats, transl, options, fps, progress)
            evals += more
        rotmats, transl = self._polish(o, betas, rotmats, transl, options.resolved_polish())
        return dict(rotmats=rotmats, transl=transl, betas=betas, iterations=torch.cat(iters), evaluations=evals)

    def _gaps_by_motion(self, o: modes.Observations, betas, rotmats, transl, options, fps: float, progress=None):
        """The stretches of a clip around its frames without keypoints (gaps.gap_stretches) refined by the
        motion prior options.gap_motion_prior, starting from rotmats (F,24,3,3) / transl (F,3), and blended
        in (gaps.stretch_weights).  Returns rotmats, transl and the denoiser evaluations spent."""
        empty = gaps.empty_frames(o.keypoints)
        mopts = replace(options, motion_prior=options.gap_motion_prior)
        mloop, mw = mopts.resolved("video")
        frames = self.motion_prior(options.gap_motion_prior)[0].frames
        evals = 0
        for s, e in gaps.gap_stretches(empty, frames, GAP_MOTION_PAD):
            part = slice(s, e)
            res = self._video_motion(o[part], dict(rotmats=rotmats[part], transl=transl[part], betas=betas[part]),
                                     mloop, mw, mopts, fps, progress, polish=False)
            wt = gaps.stretch_weights(empty, s, e, GAP_MOTION_HOLD)
            x6 = matrix_to_rot6d(rotmats[part])
            x6 = x6 + wt[:, None, None] * (matrix_to_rot6d(res["rotmats"]) - x6)
            rotmats = torch.cat([rotmats[:s], rot6d_to_matrix(x6), rotmats[e:]])
            transl = torch.cat([transl[:s], transl[part] + wt[:, None] * (res["transl"] - transl[part]), transl[e:]])
            evals += res["evaluations"]
        return rotmats, transl, evals

    def _polish(self, o: modes.Observations, betas, rotmats, transl, opts: PolishOptions):
        """backend.engine.polish over overlapping stretches of a clip, blended: o (F,...), betas (F,10),
        rotmats (F,24,3,3), transl (F,3) -> polished rotmats, transl."""
        if opts.iterations <= 0:
            return rotmats, transl
        opts = replace(opts, joint_accel=opts.joint_accel * smoothing_factor(o.keypoints, o.image_size, opts))
        f = rotmats.shape[0]
        window = min(POLISH_WINDOW, f)
        starts = window_starts(f, window, POLISH_OVERLAP)
        blend = torch.as_tensor(blend_weights(f, window, starts, POLISH_OVERLAP), dtype=torch.float32,
                                device=self.device)
        x6, tr = torch.zeros(f, 24, 6, device=self.device), torch.zeros(f, 3, device=self.device)
        for s, wts in zip(starts, blend):
            part = slice(s, s + window)
            R, t = polish(self.body, o[part].map(lambda x, n: x[None]), betas[None, part], rotmats[None, part],
                          transl[None, part], opts)
            x6[part] += matrix_to_rot6d(R[0]) * wts[:, None, None]
            tr[part] += t[0] * wts[:, None]
        return rot6d_to_matrix(x6), tr

    def motion_prior(self, path: str):
        """The motion prior checkpoint at ``path`` on this engine's device, loaded once."""
        from backend.models.motion import load_motion_prior

        cache = self.__dict__.setdefault("_motion_priors", {})
        if path not in cache:
            cache[path] = load_motion_prior(path, self.device)
        return cache[path]

    def _video_motion(self, o: modes.Observations, start, loop, w, options, fps: float, progress=None,
                      polish: bool = True):
        """One clip with the motion prior (backend.engine.motion_video): windows of the prior's length,
        overlapping by options.overlap (at most half a window), blended as in :meth:`_video`; the final
        smoothing fit unless ``polish`` is False."""
        from backend.engine import motion_video

        prior, prior_meta = self.motion_prior(options.motion_prior)
        f, window = o.focal.shape[0], prior.frames
        overlap = min(options.overlap, window // 2)
        starts = window_starts(f, window, overlap)
        idx = motion_video.window_index(f, window, starts, self.device)                 # (W,window)
        blend = torch.zeros(len(starts), window, device=self.device)
        blend[:, :min(window, f)] = torch.as_tensor(blend_weights(f, min(window, f), starts, overlap),
                                                    dtype=torch.float32, device=self.device)
        betas = start["betas"].mean(0, keepdim=True).expand(f, 10)
        joints = self.body.joints_fast(start["rotmats"], betas, start["transl"]).joints
        frame = motion_video.world_frame(joints, fps)
        pelvis = self.body.shaped(betas[:1]).rest_joints[0, 0]
        rot_w, transl_w = motion_video.to_world(frame, start["rotmats"], start["transl"], pelvis)
        x6 = torch.zeros(f, 24, 6, device=self.device)
        transl = torch.zeros(f, 3, device=self.device)
        contacts = torch.zeros(f, 4, device=self.device)
        iters, evals = [], 0
        for b in range(0, len(starts), options.windows_per_batch):
            ids = idx[b:b + options.windows_per_batch]
            res = motion_video.refine_windows(
                prior, self.alphas, modes.video_loss(self.body, o[ids], betas[ids], w), rot_w[ids], transl_w[ids],
                frame.contacts[ids], start["transl"][ids], frame, loop, progress)
            wts = blend[b:b + options.windows_per_batch]
            x6.index_add_(0, ids.reshape(-1), (matrix_to_rot6d(res["rotmats"]) * wts[..., None, None]).reshape(-1, 24, 6))
            transl.index_add_(0, ids.reshape(-1), (res["transl"] * wts[..., None]).reshape(-1, 3))
            contacts.index_add_(0, ids.reshape(-1), (res["contacts"] * wts[..., None]).reshape(-1, 4))
            iters.append(res["iterations"])
            evals += res["evaluations"]
        # The final smoothing fit as after the per-frame prior ('ours'; none for 'paper').
        rotmats = rot6d_to_matrix(x6)
        if polish:
            rotmats, transl = self._polish(o, betas, rotmats, transl, options.resolved_polish())
        return dict(rotmats=rotmats, transl=transl, betas=betas, iterations=torch.cat(iters),
                    evaluations=evals, contacts=(contacts > 0.5).cpu().numpy(),
                    motion=dict(path=str(options.motion_prior), command=prior_meta.get("command"), frames=window,
                                overlap=overlap, world=frame.source))

    def _multiview(self, o: modes.Observations, start, ctx, loop, w, progress=None, prior=None):
        """Uncalibrated views: o (V,F,...), start/ctx (V*F,...) view-major; per instant one body pose, seen
        from each view with that view's global orientation and translation.

        After Eq. 13's loop every view gets the same body pose (joints 1-23: the chordal mean over views,
        weighted by each view's mean keypoint confidence); each keeps its own global orientation and
        translation (the cameras are unknown).  Eq. 13 only pulls the views together; on the tuning subjects
        (32 instants, MPJPE-14 change against the per-view start at 2 / 4 / 8 views) the loop alone gave
        -2.3% / -20.3% / -19.1%, with the common pose -2.8% / -21.2% / -20.5%.  ``prior``: another denoiser
        in place of the engine's (the ablation's variants)."""
        v, f = o.focal.shape
        per = lambda x: x.reshape(v, f, *x.shape[1:]).transpose(0, 1)   # (V*F,...) -> (F,V,...)
        betas = start["betas"].mean(0, keepdim=True).expand(f, v, 10)
        res = modes.run(prior or self.prior, self.alphas, modes.multiview_loss(self.body, o.transpose01(), betas, w),
                        per(start["rotmats"]), per(start["transl"]), per(ctx), loop, progress)
        rotmats = res["rotmats"].transpose(0, 1)                                       # (V,F,24,3,3)
        trust = o.keypoints[..., 2].mean(-1)                                            # (V,F)
        pose = rotation_mean(rotmats[:, :, 1:], trust[..., None].expand(v, f, 23))
        rotmats = torch.cat([rotmats[:, :, :1], pose[None].expand(v, -1, -1, -1, -1)], 2)
        back = lambda x: x.transpose(0, 1).reshape(v * f, *x.shape[2:])
        return dict(rotmats=rotmats.reshape(v * f, 24, 3, 3), transl=back(res["transl"]), betas=back(betas),
                    iterations=res["iterations"], evaluations=res["denoiser_evaluations"])

    def _calibrated(self, o: modes.Observations, start, ctx, loop, w, progress=None, height: float | None = None):
        """Calibrated views: o (V,F,...) with cam_R/cam_t; one body per instant, returned in every view.

        Starts from the body fitted to the triangulated keypoints (view 0's estimate as the fit's start).
        That body is refined once per view, in that view's camera frame with that view's context for the
        prior, by the prior and the reprojection into every view; the V results, brought back to view 0,
        are averaged (joint rotations: chordal mean weighted by each view's mean keypoint confidence).
        Refining in view 0 alone lets one single-view context pull the whole result: on the tuning
        subjects (32 instants, PA-MPJPE-14 / MPJPE-14) 2 / 4 / 8 views gave 51.6 / 74.4, 37.1 / 42.0,
        20.7 / 28.7 mm in view 0 alone against 51.5 / 73.5, 36.0 / 40.8, 20.4 / 28.3 averaged over views
        (same loop).  The translation stays the fit's (EngineOptions.resolved turns its optimisation off:
        the triangulation fixes it better than an Adam step on the reprojection, which pushed it away).
        ``height``: the person's known height (metres), given to the fitted shape (body_size.betas_with_height)."""
        from backend.engine.baselines import triangulate_and_fit

        v, f = o.focal.shape
        R, t = o.cam_R, o.cam_t
        rel_R, rel_t = relative_cameras(R, t)
        fit = triangulate_and_fit(self.body, self.pose_gmm(), o, start)
        # One body for the clip (the paper averages shape over views and frames; an armature has one rest
        # shape, so per-instant shapes would put the keyed rig centimetres off joints_world).
        betas = fit["betas"].mean(0, keepdim=True).expand(f, -1)
        if height:  # the cameras fix the distance; a known height still fixes the shape the fit found
            betas = body_size.betas_with_height(self.body, betas[0], height).expand(f, -1)
        each = lambda x: x.repeat_interleave(f, 0)                                  # (V,...) -> (V*F,...) view-major
        cams_R, cams_t = camera_changes(R, t)                                        # (V,V,...) view a -> view b
        rot_v, tr_v = in_every_view(self.body, fit["rotmats"], fit["transl"], betas, rel_R, rel_t)
        by_frame = o.transpose01().map(lambda x, n: x.repeat(v, *([1] * (x.dim() - 1))))   # (V*F,V,...)
        betas_v = betas.repeat(v, 1)
        res = modes.run(self.prior, self.alphas,
                        modes.calibrated_loss(self.body, by_frame, betas_v[:, None], each(cams_R), each(cams_t), w),
                        rot_v[:, None], tr_v[:, None], ctx[:, None], loop, progress)
        back_R, back_t = each(cams_R[:, 0]), each(cams_t[:, 0])                    # view a -> view 0
        rot0, tr0 = move_bodies(self.body, res["rotmats"][:, 0], res["transl"][:, 0], betas_v, back_R, back_t)
        trust = o.keypoints[..., 2].mean(-1)                                         # (V,F)
        rot0 = rotation_mean(rot0.reshape(v, f, 24, 3, 3), trust[..., None].expand(v, f, 24))
        tr0 = tr0.reshape(v, f, 3).mean(0)                                           # the fit's: each view kept it
        rotmats, transl = in_every_view(self.body, rot0, tr0, betas, rel_R, rel_t)
        return dict(rotmats=rotmats, transl=transl, betas=betas.repeat(v, 1), iterations=res["iterations"],
                    evaluations=res["denoiser_evaluations"], world_from_view0=(R[0], t[0]))

    def pose_gmm(self):
        """SMPLify's pose prior (backend/assets/pose_gmm.npz) for the triangulation fit, loaded once."""
        if getattr(self, "_pose_gmm", None) is None:
            from backend.engine.gmm import GMM, MaxMixturePrior

            self._pose_gmm = MaxMixturePrior(GMM.load()).to(self.device)
        return self._pose_gmm

    # -- output ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _assemble(self, out, start, o: modes.Observations, info, obs) -> dict:
        """The OUT dict (backend.contract.results) of a mode's output for observations o (V,F,...)."""
        v, f = o.focal.shape
        kp, focal, pp = o.keypoints, o.focal, o.principal
        body = self.body.joints_fast(out["rotmats"], out["betas"], out["transl"])
        init_body = self.body.joints_fast(start["rotmats"], start["betas"], start["transl"])
        obs_kp = kp.reshape(v * f, NUM_KP, 3)
        err = self._reprojection(body, obs_kp, focal, pp)
        aa = matrix_to_axis_angle(out["rotmats"]).reshape(v * f, 72)
        shape = (v, f) if v > 1 else (f,)
        np_ = lambda x, *tail: x.detach().cpu().numpy().astype(np.float32).reshape(*shape, *tail)
        betas_mean = out["betas"].mean(0)
        rest = self.body(torch.eye(3, device=self.device).expand(1, 24, 3, 3), betas_mean)
        result = dict(
            global_orient=np_(aa[:, :3], 3), body_pose=np_(aa[:, 3:], 69), betas=np_(out["betas"], 10),
            transl=np_(out["transl"], 3), joints=np_(body.joints, 24, 3),
            keypoints3d=np_(body.keypoints[:, :NUM_KP], NUM_KP, 3), init_joints=np_(init_body.joints, 24, 3),
            reprojection_error_px=np_(err), init_reprojection_error_px=np_(self._reprojection(init_body, obs_kp, focal, pp)),
            info=np.array(json.dumps(info)),
            rest_joints=rest.joints[0].cpu().numpy().astype(np.float32),
            rest_vertices=rest.vertices[0].cpu().numpy().astype(np.float32),
            faces=self.body.faces.astype(np.int32),
            skin_weights=self.body.smpl.lbs_weights.cpu().numpy().astype(np.float32),
            fps=np.float32(obs.get("fps", 30.0)),
            # The footage camera (view 0), so the add-on can build a matching Blender camera.
            image_size=np.asarray(obs["image_size"][0], np.float32),
            focal_length=np.float32(obs["focal_length"][0]),
            principal_point=np.asarray(obs["principal_point"][0], np.float32),
        )
        if "world_from_view0" in out:
            R0, t0 = out["world_from_view0"]
            j = body.joints.reshape(v, f, 24, 3)[0]
            result["joints_world"] = ((j - t0) @ R0).cpu().numpy().astype(np.float32)
        return result

    def _reprojection(self, body, obs_kp, focal, pp) -> torch.Tensor:
        """Mean reprojection error (px) over seen keypoints per sample (N,), NaN where none is seen."""
        kp2d = project(body.keypoints[:, :NUM_KP], focal.reshape(-1), pp.reshape(-1, 2))
        seen = obs_kp[..., 2] > 0
        err = ((kp2d - obs_kp[..., :2]).norm(dim=-1) * seen).sum(1) / seen.sum(1).clamp_min(1)
        return torch.where(seen.any(1), err, torch.full_like(err, float("nan")))
