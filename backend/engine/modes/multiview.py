"""Uncalibrated views: per instant one body pose, seen from each view with that view's global orientation
and translation (the cameras are unknown); Eq. 13 pulls the views' poses together.

Variant 'ours' runs the loop without the prior (options.prior False: :func:`null_denoiser`), the paper
with it (backend.engine.options.MULTIVIEW_WITHOUT_PRIOR says why)."""
from __future__ import annotations

import torch

from backend.engine import problems
from backend.engine.loaded import Denoiser, LoadedModels, Progress
from backend.engine.options import ModeOptions
from backend.engine.problems import Observations
from backend.engine.scorehmr import null_denoiser
from backend.engine.views import rotation_mean


def refine(models: LoadedModels, obs: Observations, start: dict, options: ModeOptions,
           progress: Progress | None = None, denoiser: Denoiser | None = None) -> dict:
    """obs (V,F,...), start (V*F,...) view-major.

    After Eq. 13's loop every view gets the same body pose (joints 1-23: the chordal mean over views,
    weighted by each view's mean keypoint confidence); each keeps its own global orientation and
    translation.  Eq. 13 only pulls the views together; on the tuning subjects (32 instants, MPJPE-14
    change against the per-view start at 2 / 4 / 8 views) the loop alone gave -2.3% / -20.3% / -19.1%,
    with the common pose -2.8% / -21.2% / -20.5%."""
    eps_model = denoiser if denoiser is not None else models.prior if options.prior else null_denoiser
    v, f = obs.focal.shape
    per = lambda x: x.reshape(v, f, *x.shape[1:]).transpose(0, 1)   # (V*F,...) -> (F,V,...)
    betas = start["betas"].mean(0, keepdim=True).expand(f, v, 10)
    res = problems.run(eps_model, models.alphas,
                       problems.multiview_loss(models.body, obs.transpose01(), betas, options.weights),
                       per(start["rotmats"]), per(start["transl"]), per(start["context"]), options.loop,
                       progress=progress)
    rotmats = res["rotmats"].transpose(0, 1)                                       # (V,F,24,3,3)
    trust = obs.keypoints[..., 2].mean(-1)                                          # (V,F)
    pose = rotation_mean(rotmats[:, :, 1:], trust[..., None].expand(v, f, 23))
    rotmats = torch.cat([rotmats[:, :, :1], pose[None].expand(v, -1, -1, -1, -1)], 2)
    back = lambda x: x.transpose(0, 1).reshape(v * f, *x.shape[2:])
    return dict(rotmats=rotmats.reshape(v * f, 24, 3, 3), transl=back(res["transl"]), betas=back(betas),
                iterations=res["iterations"], evaluations=res["denoiser_evaluations"])
