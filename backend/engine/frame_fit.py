"""Single frames, variant 'ours': which starts the ScoreHMR loop refines and which get a fit first.

The loop (guided DDIM, backend.engine.scorehmr) moves a start by small gradient steps: a near-perfect
start stays near-perfect, but a start far from the answer is not reached in its iterations (tuning
subjects, 64 frames, weak start: PA-MPJPE-14 57.4 mm after the loop, 48.3 after the DPoser-style fit;
20 iterations or tau 100: 55.0 / 54.7).  So the start's own evidence decides:

* a given start that explains the keypoints clearly worse than the built-in regressor's estimate does
  (:func:`start_residual`, a fraction of the person's size, more than ``excess_threshold`` above the
  estimate's) is far from the answer: it is fitted with the diffusion prior as a
  regulariser (DPoser-style score distillation, ``fitting.dposer_style``), Adam with a cosine-decaying
  rate (large steps to travel, small ones to settle);
* the built-in regressor's estimate gets the same fit: it reprojects well (it was made from the
  keypoints) but its depth is a guess, and the fit lowers its 3D error where the loop does not
  (tuning, 64 frames: PA-MPJPE-14 / MPJPE-14 50.4 / 71.8 -> fit 47.7 / 69.8, loop 48.3 / 72.2);
* any other given start (it explains the keypoints about as well as they can be) goes through the loop,
  which keeps what the keypoints cannot say (its depth).  Adam's normalised steps would not: from a
  near-perfect start the fit ends at 41.9 mm instead of 17.2 (the loop: 15.9).  The loop stops a frame
  by the discrepancy principle: once its residual is down to the regressor estimate's on the same
  keypoints (:func:`discrepancy_stop`), the level their noise allows; further steps fit the noise
  (near-perfect starts, 256 tuning frames: 16.15 -> 16.78 mm without the stop, 15.39 with it).

The loop after the fit made the fitted samples worse (tuning: 48.2 / 70.8 -> 48.4 / 72.4), so fitted
samples skip it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from backend.engine.fitting import DPoserOptions, dposer_style
from backend.engine.guidance import project
from backend.engine.problems import Observations
from backend.rotations import rot6d_to_matrix

REGRESSOR_SOURCE = "built-in regressor"   # LoadedModels.start's 'source' of its own estimate


@dataclass
class FrameFitOptions:
    """The single-frame fit stage of variant 'ours' (chosen on the tuning subjects, see module doc)."""
    # Adam 2e-2 -> 1e-3 (cosine) over 100 steps, prior weight 20.
    # Chosen on the tuning subjects: docs/tuning.md#frame-fit
    fit: DPoserOptions = field(default_factory=lambda: DPoserOptions(lr=2e-2, lr_end=1e-3, prior_weight=20.0))
    # A given start is fitted when its keypoint residual (start_residual: a fraction of the person's size)
    # exceeds that of the built-in regressor's estimate on the same keypoints by more than this: the start
    # explains the keypoints clearly worse than the keypoints alone do.  The excess separates the starts
    # where the residual itself does not (frames differ in how noisy their keypoints are).
    # Chosen on the tuning subjects: docs/tuning.md#frame-fit-excess-threshold
    excess_threshold: float = 0.025
    # The loop's discrepancy stop (a given start not fitted): a frame stops, or does not start, once its
    # keypoint residual is at most this x the regressor estimate's on the same keypoints, the level the
    # keypoints' own noise allows; past it the loop fits noise.  0: no such stop.
    # Chosen on the tuning subjects: docs/tuning.md#frame-fit-discrepancy
    discrepancy: float = 1.0
    fit_regressor: bool = True            # fit the built-in regressor's estimate (see module doc)
    seed: int = 0                         # the fit's draws of t and noise

    def as_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@torch.no_grad()
def start_residual(keypoints3d: torch.Tensor, observed: torch.Tensor, focal: torch.Tensor,
                   principal: torch.Tensor) -> torch.Tensor:
    """How far a start is from its keypoints, for the person's size: the conf^2-weighted RMS distance (px)
    between projected and observed keypoints over the size of the observed ones' box (its longer side).

    keypoints3d (B,K,3) camera frame, observed (B,K,3) [x_px, y_px, conf], focal (B,), principal (B,2) -> (B,);
    0 where no keypoint is seen."""
    conf2 = observed[..., 2] ** 2
    d2 = (project(keypoints3d, focal, principal) - observed[..., :2]).pow(2).sum(-1)
    rms = ((conf2 * d2).sum(1) / conf2.sum(1).clamp_min(1e-12)).sqrt()
    seen = (observed[..., 2] > 0)[..., None]
    hi = torch.where(seen, observed[..., :2], torch.full_like(observed[..., :2], -torch.inf)).amax(1)
    lo = torch.where(seen, observed[..., :2], torch.full_like(observed[..., :2], torch.inf)).amin(1)
    size = (hi - lo).amax(-1)
    return torch.where(seen.any(1)[:, 0] & (size > 0), rms / size.clamp_min(1e-6), torch.zeros_like(rms))


def needs_fit(residual: torch.Tensor, reference: torch.Tensor | None, source: str | None,
              opts: FrameFitOptions) -> torch.Tensor:
    """Which samples (B,) bool get the fit stage: residual (B,) of the start and reference (B,) of the
    built-in regressor's estimate (:func:`start_residual`; None when the start is that estimate), source
    the start's provenance (LoadedModels.start's 'source')."""
    if source == REGRESSOR_SOURCE or reference is None:
        return torch.full_like(residual, opts.fit_regressor, dtype=torch.bool)
    return residual - reference > opts.excess_threshold


def discrepancy_stop(body_model, keypoints, focal, principal, betas, reference: torch.Tensor, factor: float):
    """Problem.done for single frames (S=1): frame g is done when start_residual <= factor x reference[g].
    keypoints (G,K,3), focal (G,), principal (G,2), betas (G,10), reference (G,) of the same frames."""
    def done(x0: torch.Tensor, transl: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        rotmats = rot6d_to_matrix(x0[:, 0].reshape(-1, 24, 6))
        kp3d = body_model.joints_fast(rotmats, betas[groups], transl[:, 0]).keypoints[:, :keypoints.shape[1]]
        return start_residual(kp3d, keypoints[groups], focal[groups], principal[groups]) <= factor * reference[groups]
    return done


def fit(body_model, eps_model, alphas_cumprod: torch.Tensor, obs: Observations, start: dict, opts: FrameFitOptions,
        *, progress=None) -> dict:
    """The fit stage on the given samples: observations obs (B,...), start rotmats (B,24,3,3), betas (B,10),
    transl (B,3) and the prior's context (B,C) -> rotmats, transl, evaluations.  progress(done, total) after
    every step."""
    gen = torch.Generator().manual_seed(opts.seed)   # CPU draws: the same on every device
    res = dposer_style(body_model, eps_model, alphas_cumprod, obs, start["context"], start, opts.fit, generator=gen,
                       progress=progress)
    return dict(rotmats=res["rotmats"], transl=res["transl"], evaluations=res["denoiser_evaluations"])
