"""Calibrated views: obs (V,F,...) with cam_R/cam_t; one body per instant, returned in every view.

Starts from the body fitted to the triangulated keypoints (view 0's estimate as the fit's start,
backend.engine.fitting.triangulate_and_fit).  That body is refined once per view, in that view's camera
frame with that view's context for the prior, by the prior and the reprojection into every view; the V
results, brought back to view 0, are averaged (joint rotations: chordal mean weighted by each view's mean
keypoint confidence).  Refining in view 0 alone lets one single-view context pull the whole result: on the
tuning subjects (32 instants, PA-MPJPE-14 / MPJPE-14) 2 / 4 / 8 views gave 51.6 / 74.4, 37.1 / 42.0,
20.7 / 28.7 mm in view 0 alone against 51.5 / 73.5, 36.0 / 40.8, 20.4 / 28.3 averaged over views (same
loop).  The translation stays the fit's (EngineOptions.resolved turns its optimisation off: the
triangulation fixes it better than an Adam step on the reprojection, which pushed it away).
"""
from __future__ import annotations

from backend.engine import body_size, problems
from backend.engine.fitting import triangulate_and_fit
from backend.engine.loaded import Denoiser, LoadedModels, Progress
from backend.engine.options import ModeOptions
from backend.engine.problems import Observations
from backend.engine.views import camera_changes, in_every_view, move_bodies, relative_cameras, rotation_mean


def refine(models: LoadedModels, obs: Observations, start: dict, options: ModeOptions,
           progress: Progress | None = None, denoiser: Denoiser | None = None) -> dict:
    """obs (V,F,...) with cam_R (V,3,3) / cam_t (V,3), start (V*F,...) view-major; the result in every
    view (V*F,...) and world_from_view0 (view 0's camera: R, t world-to-camera)."""
    v, f = obs.focal.shape
    R, t = obs.cam_R, obs.cam_t
    rel_R, rel_t = relative_cameras(R, t)
    fit = triangulate_and_fit(models.body, models.pose_gmm(), obs, start)
    # One body for the clip (the paper averages shape over views and frames; an armature has one rest
    # shape, so per-instant shapes would put the keyed rig centimetres off joints_world).
    betas = fit["betas"].mean(0, keepdim=True).expand(f, -1)
    if options.height:  # the cameras fix the distance; a known height still fixes the shape the fit found
        betas = body_size.betas_with_height(models.body, betas[0], options.height).expand(f, -1)
    each = lambda x: x.repeat_interleave(f, 0)                                  # (V,...) -> (V*F,...) view-major
    cams_R, cams_t = camera_changes(R, t)                                        # (V,V,...) view a -> view b
    rot_v, tr_v = in_every_view(models.body, fit["rotmats"], fit["transl"], betas, rel_R, rel_t)
    by_frame = obs.transpose01().map(lambda x, n: x.repeat(v, *([1] * (x.dim() - 1))))   # (V*F,V,...)
    betas_v = betas.repeat(v, 1)
    res = problems.run(models.prior if denoiser is None else denoiser, models.alphas,
                       problems.calibrated_loss(models.body, by_frame, betas_v[:, None], each(cams_R), each(cams_t),
                                                options.weights),
                       rot_v[:, None], tr_v[:, None], start["context"][:, None], options.loop, progress=progress)
    back_R, back_t = each(cams_R[:, 0]), each(cams_t[:, 0])                    # view a -> view 0
    rot0, tr0 = move_bodies(models.body, res["rotmats"][:, 0], res["transl"][:, 0], betas_v, back_R, back_t)
    trust = obs.keypoints[..., 2].mean(-1)                                       # (V,F)
    rot0 = rotation_mean(rot0.reshape(v, f, 24, 3, 3), trust[..., None].expand(v, f, 24))
    tr0 = tr0.reshape(v, f, 3).mean(0)                                           # the fit's: each view kept it
    rotmats, transl = in_every_view(models.body, rot0, tr0, betas, rel_R, rel_t)
    return dict(rotmats=rotmats, transl=transl, betas=betas.repeat(v, 1), iterations=res["iterations"],
                evaluations=res["denoiser_evaluations"], world_from_view0=(R[0], t[0]))
