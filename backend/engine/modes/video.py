"""Video with the per-frame loop: one clip seen by one camera, refined in overlapping windows (the loop
with Eq. 14's temporal term; its prior the learned per-frame one, or in variant 'ours' the GMM pose prior,
backend.engine.options.VIDEO_GMM_WEIGHT) and blended; the stretches around frames without keypoints redone
by the motion prior (options.gaps); then the final smoothing fit (backend.engine.polish)."""
from __future__ import annotations

import torch

from backend.engine import gaps, problems
from backend.engine.loaded import Denoiser, LoadedModels, Progress
from backend.engine.gmm import gmm_term
from backend.engine.modes import motion_video
from backend.engine.options import ModeOptions
from backend.engine.polish import polish_clip
from backend.engine.problems import Observations
from backend.engine.scorehmr import ClassicalPrior
from backend.engine.windows import refine_in_windows
from backend.rotations import matrix_to_rot6d, rot6d_to_matrix

# A gap's stretch has this many seen frames on each side (at least), and the motion prior's result is kept
# whole over the gap and this many frames around it.
GAP_MOTION_PAD, GAP_MOTION_HOLD = 12, 4


def refine(models: LoadedModels, obs: Observations, start: dict, options: ModeOptions,
           progress: Progress | None = None, denoiser: Denoiser | None = None) -> dict:
    """One clip: obs (F,...), start tensors (F,...), in windows of options.window frames."""
    eps_model = denoiser if denoiser is not None else models.prior if options.prior else \
        ClassicalPrior(gmm_term(models.pose_gmm(), options.gmm_weight))
    f = obs.focal.shape[0]
    betas = start["betas"].mean(0, keepdim=True).expand(f, 10)  # one body over the clip, as in the paper

    def refine_windows(ids: torch.Tensor) -> dict:
        res = problems.run(eps_model, models.alphas, problems.video_loss(models.body, obs[ids], betas[ids],
                                                                         options.weights),
                           start["rotmats"][ids], start["transl"][ids], start["context"][ids], options.loop,
                           progress=progress)
        return dict(res, evaluations=res["denoiser_evaluations"])

    out = refine_in_windows(f, min(options.window, f), options.overlap, options.windows_per_batch, refine_windows,
                            models.device)
    rotmats, transl, evaluations = out["rotmats"], out["transl"], out["evaluations"]
    if options.gaps is not None:
        rotmats, transl, more = bridge_gaps(models, obs, betas, rotmats, transl, options.gaps, progress)
        evaluations += more
    if options.polish is not None:
        rotmats, transl = polish_clip(models.body, obs, betas, rotmats, transl, options.polish)
    return dict(rotmats=rotmats, transl=transl, betas=betas, iterations=out["iterations"], evaluations=evaluations)


def bridge_gaps(models: LoadedModels, obs: Observations, betas: torch.Tensor, rotmats: torch.Tensor,
                transl: torch.Tensor, options: ModeOptions, progress: Progress | None = None, *,
                denoiser: Denoiser | None = None) -> tuple:
    """The stretches of a clip around its frames without keypoints (gaps.gap_stretches) refined by the
    motion prior (options: motion_video's), starting from rotmats (F,24,3,3) / transl (F,3), and blended in
    (gaps.stretch_weights).  ``denoiser`` replaces the motion prior's network (the ablation's variants).
    Returns rotmats, transl and the denoiser evaluations spent."""
    empty = gaps.empty_frames(obs.keypoints)
    frames = models.motion_prior(options.motion_prior)[0].frames
    evaluations = 0
    for s, e in gaps.gap_stretches(empty, frames, GAP_MOTION_PAD):
        part = slice(s, e)
        res = motion_video.refine(models, obs[part], dict(rotmats=rotmats[part], transl=transl[part],
                                                          betas=betas[part]), options, progress, denoiser)
        wt = gaps.stretch_weights(empty, s, e, GAP_MOTION_HOLD)
        x6 = matrix_to_rot6d(rotmats[part])
        x6 = x6 + wt[:, None, None] * (matrix_to_rot6d(res["rotmats"]) - x6)
        rotmats = torch.cat([rotmats[:s], rot6d_to_matrix(x6), rotmats[e:]])
        transl = torch.cat([transl[:s], transl[part] + wt[:, None] * (res["transl"] - transl[part]), transl[e:]])
        evaluations += res["evaluations"]
    return rotmats, transl, evaluations
