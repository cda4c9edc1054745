"""The guidance problems the modes (backend.engine.modes) pose to the loop: what the cameras saw
(:class:`Observations`), the weights of the guidance terms, one loss per kind of sample group, and
:func:`run`, the loop (backend.engine.scorehmr) on samples laid out (G,S,...).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from backend.engine import guidance
from backend.engine.scorehmr import LoopOptions, Problem, refine
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix


@dataclass
class GuidanceWeights:
    keypoints: float = 0.003                 # Eq. 12
    temporal: float = 30.0                   # Eq. 14 (video)
    multiview: float = 0.005 * 300 ** 2      # Eq. 13 (uncalibrated views)


@dataclass
class Observations:
    """What the cameras saw, one entry per sample; the leading dims (written ``...``) are the caller's
    layout: (V,F) views x frames in the engine, (G,S) groups x samples in the guidance losses.

    ``cam_R``/``cam_t`` (V,3,3)/(V,3) world-to-camera, only for calibrated views (not per sample)."""
    keypoints: torch.Tensor     # (...,17,3) [x_px, y_px, conf]
    focal: torch.Tensor         # (...)
    principal: torch.Tensor     # (...,2)
    image_size: torch.Tensor    # (...,2)
    cam_R: torch.Tensor | None = None
    cam_t: torch.Tensor | None = None
    fps: float = 30.0           # frames per second of a clip (the motion prior's world frame reads it)

    def map(self, fn) -> "Observations":
        """The same observations with ``fn`` applied to every per-sample tensor over its leading dims
        (fn sees the tensor and how many trailing dims are per-point: 2, 0, 1, 1); cameras unchanged."""
        tail = dict(keypoints=2, focal=0, principal=1, image_size=1)
        return replace(self, **{k: fn(getattr(self, k), n) for k, n in tail.items()})

    def reshape(self, *lead: int) -> "Observations":
        return self.map(lambda x, n: x.reshape(*lead, *x.shape[x.dim() - n:]))

    def transpose01(self) -> "Observations":
        """(A,B,...) -> (B,A,...), e.g. views x frames -> frames x views."""
        return self.map(lambda x, n: x.transpose(0, 1))

    def __getitem__(self, index) -> "Observations":
        return self.map(lambda x, n: x[index])


def shaped_bodies(body_model, betas: torch.Tensor):
    """Per-sample shaped bodies for betas (G,S,10), indexable by group (betas stay fixed in the loop)."""
    g, s = betas.shape[:2]
    flat = body_model.shaped(betas.reshape(g * s, -1))
    return type(flat)(flat.rest_joints.reshape(g, s, 24, 3), flat.kp_local.reshape(g, s, *flat.kp_local.shape[1:]))


def _rows(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """x (G,S,...) -> the groups' rows (g*S,...).  groups are increasing and distinct (the loop's active
    groups), so as many as G are all of them, in order: no copy then (the loop asks every step)."""
    return (x if len(groups) == x.shape[0] else x[groups]).flatten(0, 1)


def _flat_shape(shaped, groups):
    return type(shaped)(_rows(shaped.rest_joints, groups), _rows(shaped.kp_local, groups))


def _flat_obs(obs: Observations, groups) -> tuple:
    """keypoints, focal, principal, image_size of the groups, (g*S,...), as keypoint_reprojection takes them."""
    return tuple(_rows(x, groups) for x in (obs.keypoints, obs.focal, obs.principal, obs.image_size))


def _keypoint_term(body_model, obs: Observations, shaped, rotmats, transl, groups):
    """Reprojection loss per sample (g,S) and the posed joints (g,S,24,3)."""
    g, s = rotmats.shape[:2]
    out = body_model.joints_fast(rotmats.flatten(0, 1), _flat_shape(shaped, groups), transl.flatten(0, 1))
    kp = out.keypoints[:, : obs.keypoints.shape[-2]]
    loss = guidance.keypoint_reprojection(
        kp, *_flat_obs(obs, groups))
    return loss.reshape(g, s), out.joints.reshape(g, s, 24, 3)


def frame_loss(body_model, obs: Observations, betas: torch.Tensor, w: GuidanceWeights):
    """Single frames (S=1): keypoint reprojection only. betas (G,S,10)."""
    shaped = shaped_bodies(body_model, betas)

    def loss(rotmats, rot6d, transl, groups):
        kp, _ = _keypoint_term(body_model, obs, shaped, rotmats, transl, groups)
        return w.keypoints * kp.sum(1)
    return loss


def video_loss(body_model, obs: Observations, betas: torch.Tensor, w: GuidanceWeights):
    """Video windows (S=frames): keypoints + pose smoothness (Eq. 14).  The default variant smooths the
    result afterwards (backend.engine.polish) instead of adding terms here: translation-acceleration
    and foot terms in the loop (tried until issue 13) lost to it on the tuning subjects."""
    shaped = shaped_bodies(body_model, betas)

    def loss(rotmats, rot6d, transl, groups):
        kp, _ = _keypoint_term(body_model, obs, shaped, rotmats, transl, groups)
        return w.keypoints * kp.sum(1) + w.temporal * guidance.temporal_smoothness(rot6d)
    return loss


def multiview_loss(body_model, obs: Observations, betas: torch.Tensor, w: GuidanceWeights):
    """Uncalibrated views of one instant (S=views): per-view keypoints + Eq. 13 consistency."""
    shaped = shaped_bodies(body_model, betas)

    def loss(rotmats, rot6d, transl, groups):
        kp, _ = _keypoint_term(body_model, obs, shaped, rotmats, transl, groups)
        g, s = rot6d.shape[:2]
        return w.keypoints * kp.sum(1) + w.multiview * guidance.multiview_consistency(rot6d.reshape(g, s, 24, 6))
    return loss


def calibrated_loss(body_model, obs: Observations, betas: torch.Tensor, cam_R: torch.Tensor,
                    cam_t: torch.Tensor, w: GuidanceWeights):
    """One body per sample in its own camera frame (S=1), reprojected into every view with known cameras.

    obs laid out (G,V,...); cam_R (G,V,3,3), cam_t (G,V,3) map each group's frame to view v's camera.
    The reprojection is a mean over views, so the step does not grow with their number (summed, with the
    calibrated loop's unbounded steps, 8 views gave 42.5 instead of 28.9 mm MPJPE-14 on the tuning subjects)."""
    shaped = shaped_bodies(body_model, betas)

    def loss(rotmats, rot6d, transl, groups):
        g = rotmats.shape[0]
        out = body_model.joints_fast(rotmats[:, 0], _flat_shape(shaped, groups), transl[:, 0])
        kp3d = out.keypoints[:, : obs.keypoints.shape[-2]]                       # (g,K,3) the group's frame
        per_view = torch.einsum("gvij,gkj->gvki", cam_R[groups], kp3d) + cam_t[groups][:, :, None]
        L = guidance.keypoint_reprojection(per_view.flatten(0, 1), *_flat_obs(obs, groups))
        return w.keypoints * L.reshape(g, -1).mean(1)
    return loss


def run(eps_model, alphas_cumprod: torch.Tensor, loss_fn, rotmats0: torch.Tensor, transl0: torch.Tensor,
        context: torch.Tensor, opts: LoopOptions, *, progress=None, done=None) -> dict:
    """rotmats0 (G,S,24,3,3), transl0 (G,S,3), context (G,S,C) -> refined rotmats/transl + loop stats.
    done: Problem.done (an extra stop rule) or None."""
    g, s = rotmats0.shape[:2]
    x0 = matrix_to_rot6d(rotmats0).reshape(g, s, 144)
    out = refine(eps_model, alphas_cumprod, Problem(x0, transl0, context, loss_fn, done=done), opts, progress)
    out["rotmats"] = rot6d_to_matrix(out["x0"].reshape(g, s, 24, 6))
    return out
