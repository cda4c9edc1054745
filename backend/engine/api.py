"""The engine's Python API: observations (+ optional initial estimate) in, refined SMPL motion out.

    engine = Engine.load()                        # free body model, committed weights, CPU or GPU
    result = engine.run(obs, init=None, mode="video")

``obs`` is a validated OBS dict (backend.io.observations), ``init`` an INIT dict or None (then the
built-in regressor makes it).  The result follows the OUT.npz contract (backend.io.results).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.engine import gaps, modes, world
from backend.engine.guidance import project
from backend.engine.scorehmr import LoopOptions
from backend.engine.views import in_every_view, relative_cameras, triangulate
from backend.models.diffusion import cosine_alphas_cumprod
from backend.models.regressor import estimate_initial, normalise_keypoints
from backend.rotations import matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix

NUM_KP = 17
HIP_KP = (11, 12)  # COCO left/right hip


@dataclass
class EngineOptions:
    """Everything that changes a result; defaults are the paper's, `variant='ours'` adds our video terms."""
    variant: str = "ours"                 # 'paper' | 'ours'
    loop: LoopOptions | None = None       # None: per-mode defaults (multi-view: tau 100, step 10, 2 iterations)
    weights: modes.GuidanceWeights | None = None
    window: int = 64                      # video: frames per window
    overlap: int = 16                     # video: frames shared by neighbouring windows (blended)
    windows_per_batch: int = 16           # video: memory bound (windows refined at once)
    smoothing: float = 1.0                # scales the temporal terms (N-panel "smoothing strength")
    keypoint_trust: float = 1.0           # scales the keypoint term (N-panel "keypoint trust")
    extra: dict = field(default_factory=dict)

    def resolved(self, mode: str) -> tuple[LoopOptions, modes.GuidanceWeights]:
        loop = self.loop or (LoopOptions(tau=100, step=10, iterations=2) if mode == "multiview" else LoopOptions())
        w = self.weights or (modes.ours_weights() if self.variant == "ours" else modes.paper_weights())
        w = modes.GuidanceWeights(keypoints=w.keypoints * self.keypoint_trust, temporal=w.temporal * self.smoothing,
                                  multiview=w.multiview, translation=w.translation * self.smoothing,
                                  foot_skating=w.foot_skating * self.smoothing)
        return loop, w


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
                 device: torch.device | str = "cpu", meta: dict | None = None):
        self.device = torch.device(device)
        self.body = body_model.to(self.device)
        self.regressor = regressor.to(self.device).eval()
        self.prior = prior.to(self.device).eval()
        self.context_mean, self.context_std = context_mean.to(self.device), context_std.to(self.device)
        self.alphas = cosine_alphas_cumprod().float().to(self.device)
        self.meta = meta or {}

    @classmethod
    def load(cls, smpl_path=None, device=None) -> "Engine":
        from backend.models.train import load_prior, load_regressor

        reg, reg_meta = load_regressor()
        prior, mean, std, prior_meta = load_prior()
        return cls(BodyModel.load(smpl_path), reg, prior, mean, std, device or default_device(),
                   dict(regressor=reg_meta.get("command"), prior=prior_meta.get("command")))

    def _t(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def context(self, kp: torch.Tensor) -> torch.Tensor:
        """Standardised regressor features of keypoints (N,17,3) px -> (N,C)."""
        return (self.regressor(normalise_keypoints(kp))["features"] - self.context_mean) / self.context_std

    @torch.no_grad()
    def initial(self, kp, focal, principal) -> dict:
        """Built-in regressor estimate for keypoints (N,17,3) px; focal (N,), principal (N,2)."""
        return estimate_initial(self.regressor, self.body, kp, focal, principal)

    def _init_tensors(self, init: dict | None, kp, focal, pp) -> dict:
        if init is None:
            est = self.initial(kp, focal, pp)
            return dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"], source="built-in regressor")
        n = kp.shape[0]
        betas = self._t(init["betas"]).reshape(-1, 10).expand(n, 10)
        return dict(rotmats=pose_to_rotmats(self._t(init["global_orient"]), self._t(init["body_pose"])),
                    betas=betas.clone(), transl=self._t(init["transl"]).reshape(n, 3), source="given")

    # -- modes ---------------------------------------------------------------------------------
    def run(self, obs: dict, init: dict | None = None, mode: str = "video", options: EngineOptions | None = None,
            progress=None) -> dict:
        options = options or EngineOptions()
        t0 = time.time()
        loop, weights = options.resolved(mode)
        kp = self._t(obs["keypoints"])                        # (V,F,17,3)
        v, f = kp.shape[:2]
        focal = self._t(obs["focal_length"])[:, None].expand(v, f)
        pp = self._t(obs["principal_point"])[:, None].expand(v, f, 2)
        size = self._t(obs["image_size"])[:, None].expand(v, f, 2)
        flat = lambda x: x.reshape(v * f, *x.shape[2:])
        start = self._init_tensors(init if mode != "multiview" or init is None else
                                   {k: np.asarray(x).reshape(v * f, -1) if k != "betas" else x
                                    for k, x in init.items()}, flat(kp), flat(focal), flat(pp))
        ctx = self.context(flat(kp))
        if mode == "video":  # frames without keypoints start from their seen neighbours (a given init stays)
            start, ctx = gaps.bridge(start, ctx, kp[0], bridge_start=init is None)
        if mode == "frame":
            out = self._frames(kp[0], focal[0], pp[0], size[0], start, ctx, loop, weights, progress)
        elif mode == "video":
            out = self._video(kp[0], focal[0], pp[0], size[0], start, ctx, loop, weights, options, progress)
        elif mode == "multiview" and "cam_R" in obs:
            out = self._calibrated(kp, focal, pp, size, start, ctx, obs, loop, weights, progress)
        elif mode == "multiview":
            out = self._multiview(kp, focal, pp, size, start, ctx, loop, weights, progress)
        else:
            raise ValueError(f"unknown mode {mode!r}: use frame, video or multiview")
        info = dict(mode=mode, variant=options.variant, init=start["source"], device=str(self.device),
                    seconds=round(time.time() - t0, 3), frames=f, views=v,
                    iterations_mean=float(out.pop("iterations").float().mean()),
                    denoiser_evaluations=int(out.pop("evaluations")),
                    options=dict(loop=loop.as_dict(), weights=weights.__dict__, window=options.window,
                                 overlap=options.overlap, smoothing=options.smoothing,
                                 keypoint_trust=options.keypoint_trust),
                    focal_source=obs.get("focal_source", "given"), models=self.meta)
        result = self._assemble(out, start, kp, focal, pp, info, obs)
        if mode == "video":  # the world frame on the floor (backend.engine.world), or why not
            fields, info["world"] = world.out_fields(result)
            result.update(fields, info=np.array(json.dumps(info)))
        return result

    def _frames(self, kp, focal, pp, size, start, ctx, loop, w, progress):
        o = modes.Observations(kp[:, None], focal[:, None], pp[:, None], size[:, None])
        res = modes.run(self.prior, self.alphas, modes.frame_loss(self.body, o, start["betas"][:, None], w),
                        start["rotmats"][:, None], start["transl"][:, None], ctx[:, None], loop, progress)
        return dict(rotmats=res["rotmats"][:, 0], transl=res["transl"][:, 0], betas=start["betas"],
                    iterations=res["iterations"], evaluations=res["denoiser_evaluations"])

    def _video(self, kp, focal, pp, size, start, ctx, loop, w, options, progress):
        f = kp.shape[0]
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
            o = modes.Observations(kp[ids], focal[ids], pp[ids], size[ids])
            res = modes.run(self.prior, self.alphas, modes.video_loss(self.body, o, betas[ids], w),
                            start["rotmats"][ids], start["transl"][ids], ctx[ids], loop, progress)
            wts = blend[b:b + options.windows_per_batch]
            x6.index_add_(0, ids.reshape(-1), (matrix_to_rot6d(res["rotmats"]) * wts[..., None, None]).reshape(-1, 24, 6))
            transl.index_add_(0, ids.reshape(-1), (res["transl"] * wts[..., None]).reshape(-1, 3))
            iters.append(res["iterations"])
            evals += res["denoiser_evaluations"]
        return dict(rotmats=rot6d_to_matrix(x6), transl=transl, betas=betas, iterations=torch.cat(iters),
                    evaluations=evals)

    def _multiview(self, kp, focal, pp, size, start, ctx, loop, w, progress):
        v, f = kp.shape[:2]
        per = lambda x: x.reshape(v, f, *x.shape[1:]).transpose(0, 1)   # (V*F,...) -> (F,V,...)
        betas = start["betas"].mean(0, keepdim=True).expand(f, v, 10)
        o = modes.Observations(kp.transpose(0, 1), focal.T, pp.transpose(0, 1), size.transpose(0, 1))
        res = modes.run(self.prior, self.alphas, modes.multiview_loss(self.body, o, betas, w),
                        per(start["rotmats"]), per(start["transl"]), per(ctx), loop, progress)
        back = lambda x: x.transpose(0, 1).reshape(v * f, *x.shape[2:])
        return dict(rotmats=back(res["rotmats"]), transl=back(res["transl"]), betas=back(betas),
                    iterations=res["iterations"], evaluations=res["denoiser_evaluations"])

    def _calibrated(self, kp, focal, pp, size, start, ctx, obs, loop, w, progress):
        v, f = kp.shape[:2]
        R, t = self._t(obs["cam_R"]), self._t(obs["cam_t"])
        rel_R, rel_t = relative_cameras(R, t)
        betas = start["betas"].mean(0, keepdim=True).expand(f, 1, 10)
        transl0 = self._triangulated_translation(kp, focal, pp, R, t, start["rotmats"][:f], betas[:, 0],
                                                 start["transl"][:f])
        o = modes.Observations(kp.transpose(0, 1), focal.T, pp.transpose(0, 1), size.transpose(0, 1))
        res = modes.run(self.prior, self.alphas, modes.calibrated_loss(self.body, o, betas, rel_R, rel_t, w),
                        start["rotmats"][:f, None], transl0[:, None], ctx[:f, None], loop, progress)
        rotmats, transl = in_every_view(self.body, res["rotmats"][:, 0], res["transl"][:, 0], betas[:, 0], rel_R, rel_t)
        return dict(rotmats=rotmats, transl=transl, betas=betas[:, 0].repeat(v, 1), iterations=res["iterations"],
                    evaluations=res["denoiser_evaluations"], world_from_view0=(R[0], t[0]))

    def _triangulated_translation(self, kp, focal, pp, R, t, rotmats, betas, transl) -> torch.Tensor:
        """View 0's starting translation (F,3) moved so the body's hip centre sits on the triangulated one.

        A single view's depth is its weakest estimate; with calibrated views the hips' 3D position is
        known, so the refinement starts there (frames where a hip cannot be triangulated keep view 0's)."""
        f = kp.shape[1]
        hips = list(HIP_KP)
        pts, wts = triangulate(kp[:, :, hips].transpose(0, 1), focal.T, pp.transpose(0, 1),
                               R.expand(f, -1, -1, -1), t.expand(f, -1, -1))
        target = (pts @ R[0].T + t[0]).mean(1)                          # world -> view 0's camera
        body = self.body.joints_fast(rotmats, betas, transl).keypoints[:, hips].mean(1)
        ok = (wts > 0).all(1)[:, None]
        return torch.where(ok, transl + target - body, transl)

    # -- output ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _assemble(self, out, start, kp, focal, pp, info, obs) -> dict:
        v, f = kp.shape[:2]
        body = self.body.joints_fast(out["rotmats"], out["betas"], out["transl"])
        init_body = self.body.joints_fast(start["rotmats"], start["betas"], start["transl"])
        kp2d = project(body.keypoints[:, :NUM_KP], focal.reshape(-1), pp.reshape(-1, 2))
        obs_kp = kp.reshape(v * f, NUM_KP, 3)
        seen = obs_kp[..., 2] > 0
        err = ((kp2d - obs_kp[..., :2]).norm(dim=-1) * seen).sum(1) / seen.sum(1).clamp_min(1)
        err = torch.where(seen.any(1), err, torch.full_like(err, float("nan")))
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
        kp2d = project(body.keypoints[:, :NUM_KP], focal.reshape(-1), pp.reshape(-1, 2))
        seen = obs_kp[..., 2] > 0
        err = ((kp2d - obs_kp[..., :2]).norm(dim=-1) * seen).sum(1) / seen.sum(1).clamp_min(1)
        return torch.where(seen.any(1), err, torch.full_like(err, float("nan")))
