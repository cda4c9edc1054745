"""The engine's Python API: observations (+ optional initial estimate) in, refined SMPL motion out.

    engine = Engine.load()                        # free body model, committed weights, CPU or GPU
    result = engine.run(obs, init=None, mode="video", options=EngineOptions(...))

``obs`` is validated ``Observations`` (backend.contract.observations; a validated OBS dict works too),
``init`` an INIT dict or None (then the built-in regressor makes it).  The result is a ``Result``, the
OUT.npz contract's fields validated (backend.contract.results).
The Engine loads the models (backend.engine.loaded) and dispatches to one module per mode
(backend.engine.modes); the output is assembled by backend.engine.output.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping

import numpy as np
import torch

from backend.body.body_model import BodyModel
from backend.contract.observations import Observations
from backend.contract.results import Result
from backend.engine import body_size, gaps, world
from backend.engine.loaded import LoadedModels, Progress
from backend.engine.modes import calibrated, frame, motion_video, multiview, video
from backend.engine.frame_fit import FrameFitOptions
from backend.engine.options import EngineOptions
from backend.engine.output import assemble
from backend.engine.polish import PolishOptions
from backend.engine.problems import GuidanceWeights
from backend.engine.scorehmr import LoopOptions

# The Python API: the Engine and every options type a caller builds EngineOptions from.
__all__ = ["Engine", "EngineOptions", "LoopOptions", "GuidanceWeights", "FrameFitOptions", "PolishOptions",
           "default_device", "mode_of"]

# Each mode's refine(models, obs, start, options, progress, denoiser) (backend.engine.modes).
MODES = {"frame": frame.refine, "video": video.refine, "motion video": motion_video.refine,
         "multiview": multiview.refine, "calibrated": calibrated.refine}
SINGLE_VIEW = ("frame", "video", "motion video")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mode_of(mode: str, calibrated_views: bool, options: EngineOptions) -> str:
    """The module (MODES) that runs a user's mode: 'multiview' with cameras is 'calibrated', 'video' with
    options.motion_prior is 'motion video'."""
    if mode not in ("frame", "video", "multiview"):
        raise ValueError(f"unknown mode {mode!r}: use frame, video or multiview")
    if mode == "multiview" and calibrated_views:
        return "calibrated"
    if mode == "video" and options.motion_prior:
        return "motion video"
    return mode


def _as_dict(options) -> dict | None:
    return None if options is None else options.as_dict()


class Engine(LoadedModels):
    """The loaded models (LoadedModels) and :meth:`run`, which dispatches observations to their mode."""

    @classmethod
    def load(cls, smpl_path=None, device=None, prior_path=None) -> "Engine":
        from backend.models.checkpoints import load_prior, load_regressor

        reg, reg_meta = load_regressor()
        prior, mean, std, prior_meta = load_prior(*([prior_path] if prior_path else []))
        return cls(BodyModel.load(smpl_path), reg, prior, mean, std, device or default_device(),
                   meta=dict(regressor=reg_meta.get("command"), prior=prior_meta.get("command")),
                   context_layout=prior_meta["context_layout"])

    def run(self, obs: Observations | Mapping, init: dict | None = None, mode: str = "video",
            options: EngineOptions | None = None, progress: Progress | None = None) -> Result:
        """Refine ``obs`` (:class:`Observations`, or a validated OBS dict) in ``mode`` ('frame', 'video' or
        'multiview'); progress(done, total) on each outer iteration.  The result is validated by the
        contract (a multi-view one keeps its view axis)."""
        options = options or EngineOptions()
        t0 = time.time()
        o = self.observations(obs)
        kind = mode_of(mode, o.cam_R is not None, options)
        settings = options.for_mode("calibrated" if kind == "calibrated" else mode)
        v, f = o.focal.shape
        start = self.start(o, init, mode)
        if options.height:
            start = body_size.with_height(self.body, start, options.height)
        if mode == "video":  # frames without keypoints start from their seen neighbours (a given init stays)
            start, context = gaps.bridge(start, start["context"], o.keypoints[0], bridge_start=init is None)
            start = dict(start, context=context)
        out = MODES[kind](self, o[0] if kind in SINGLE_VIEW else o, start, settings, progress)
        info = dict(mode=mode, variant=options.variant, init=start["source"], device=str(self.device),
                    seconds=round(time.time() - t0, 3), frames=f, views=v,
                    iterations_mean=float(out.pop("iterations").float().mean()),
                    denoiser_evaluations=int(out.pop("evaluations")),
                    options=dict(loop=settings.loop.as_dict(), weights=settings.weights.__dict__,
                                 window=options.window, overlap=options.overlap, smoothing=options.smoothing,
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
        result = assemble(self, out, start, o, info, obs)
        if mode == "video":  # the world frame on the floor (backend.engine.world), or why not
            fields, info["world"] = world.out_fields(result, contacts)
            result.update(fields, info=np.array(json.dumps(info)))
        return Result.from_arrays(result, per_view=v > 1)
