"""Single frames: each frame refined on its own.  Variant 'ours' fits the starts that need it
(backend.engine.frame_fit) and runs the loop, with the discrepancy stop, on the others; the paper runs
the loop on every frame."""
from __future__ import annotations

import torch

from backend.engine import frame_fit, problems
from backend.engine.frame_fit import FrameFitOptions
from backend.engine.loaded import Denoiser, LoadedModels, Progress
from backend.engine.options import ModeOptions
from backend.engine.problems import Observations

NUM_KP = 17


def refine(models: LoadedModels, obs: Observations, start: dict, options: ModeOptions,
           progress: Progress | None = None, denoiser: Denoiser | None = None) -> dict:
    """Independent frames: obs (F,...), start tensors (F,...) (+ its 'source').  options.frame_fit: the
    variant 'ours' fit stage for the starts it chooses, the loop for the others; None: the loop for every
    frame (the paper)."""
    eps_model = models.prior if denoiser is None else denoiser
    fit = options.frame_fit
    ctx = start["context"]
    chosen = torch.zeros(ctx.shape[0], dtype=torch.bool, device=models.device)
    reference = None
    if fit is not None:
        chosen, reference = fit_choice(models, obs, start, fit)
    rotmats, transl = start["rotmats"].clone(), start["transl"].clone()
    iterations = torch.zeros(ctx.shape[0], dtype=torch.long, device=models.device)
    evaluations = 0
    if chosen.any():
        sub = {k: start[k][chosen] for k in ("rotmats", "betas", "transl", "context")}
        res = frame_fit.fit(models.body, eps_model, models.alphas, obs[chosen], sub, fit, progress=progress)
        rotmats[chosen], transl[chosen] = res["rotmats"], res["transl"]
        evaluations += res["evaluations"]
    loop_ids = (~chosen).nonzero()[:, 0]
    if len(loop_ids):
        sub = obs[loop_ids]
        done = None
        if reference is not None and fit.discrepancy > 0:
            done = frame_fit.discrepancy_stop(models.body, sub.keypoints, sub.focal, sub.principal,
                                              start["betas"][loop_ids], reference[loop_ids], fit.discrepancy)
        loss = problems.frame_loss(models.body, sub.map(lambda x, n: x[:, None]), start["betas"][loop_ids, None],
                                   options.weights)
        res = problems.run(eps_model, models.alphas, loss, start["rotmats"][loop_ids, None],
                           start["transl"][loop_ids, None], ctx[loop_ids, None], options.loop,
                           progress=progress, done=done)
        rotmats[loop_ids], transl[loop_ids] = res["rotmats"][:, 0], res["transl"][:, 0]
        iterations[loop_ids] = res["iterations"]
        evaluations += res["denoiser_evaluations"]
    return dict(rotmats=rotmats, transl=transl, betas=start["betas"], iterations=iterations,
                evaluations=evaluations, fitted=chosen)


@torch.no_grad()
def fit_choice(models: LoadedModels, obs: Observations, start: dict, fit: FrameFitOptions) -> tuple:
    """frame_fit.needs_fit for frames obs (F,...) and their start: the start's keypoint residual against
    the built-in regressor's on the same keypoints (computed only for a given start).  Returns the
    choice (F,) bool and that reference residual (F,) (None for the regressor's own start)."""
    residual = lambda s: frame_fit.start_residual(
        models.body.joints_fast(s["rotmats"], s["betas"], s["transl"]).keypoints[:, :NUM_KP],
        obs.keypoints, obs.focal, obs.principal)
    own = start.get("source") == frame_fit.REGRESSOR_SOURCE
    reference = None if own else residual(models.initial(obs.keypoints, obs.focal, obs.principal))
    return frame_fit.needs_fit(residual(start), reference, start.get("source"), fit), reference
