"""The loaded models every mode reads: the body model, the regressor (the start and the prior's context),
the per-frame prior and its noise schedule on one device, with the motion priors and SMPLify's pose prior
loaded on first use; and the observations and the start as tensors on that device.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.engine.problems import Observations
from backend.models.context import build_context
from backend.models.diffusion import cosine_alphas_cumprod
from backend.models.regressor import estimate_initial

# The denoiser of the loop: eps(x (N,D), t, context (N,C)) -> (N,D).
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# progress(done, total): called on each outer iteration; raising stops the refinement.
Progress = Callable[[int, int], None]


class LoadedModels:
    """The models on one device (what every mode's ``models`` argument is; the Engine is one), and the inputs
    as its tensors: :meth:`observations` and :meth:`start`."""

    def __init__(self, body_model: BodyModel, regressor, prior, context_mean: torch.Tensor,
                 context_std: torch.Tensor, device: torch.device | str = "cpu", *, meta: dict | None = None,
                 context_layout: str = "features", virtual_camera: bool = True):
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
        # Chosen on the tuning subjects: docs/tuning.md#virtual-camera
        self.virtual_camera = virtual_camera
        self._motion_priors: dict = {}
        self._pose_gmm = None

    def as_tensor(self, a) -> torch.Tensor:
        """An array as a float32 tensor on the models' device."""
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def context(self, kp: torch.Tensor, focal: torch.Tensor | None = None,
                principal: torch.Tensor | None = None) -> torch.Tensor:
        """The prior's context for keypoints (N,17,3) px seen with focal (N,) and principal (N,2) px
        (None: unknown camera, marked missing in layouts that use it, and no virtual camera) -> (N,C)."""
        return build_context(self.regressor, kp, focal, principal, self.context_mean, self.context_std,
                             self.context_layout, self.virtual_camera)

    @torch.no_grad()
    def initial(self, kp: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> dict:
        """Built-in regressor estimate for keypoints (N,17,3) px; focal (N,), principal (N,2)."""
        return estimate_initial(self.regressor, self.body, kp, focal, principal, self.virtual_camera)

    def motion_prior(self, path: str) -> tuple:
        """The motion prior checkpoint at ``path`` on this device, loaded once: (MotionDenoiser, meta)."""
        from backend.models.motion import load_motion_prior

        if path not in self._motion_priors:
            self._motion_priors[path] = load_motion_prior(path, self.device)
        return self._motion_priors[path]

    def pose_gmm(self):
        """SMPLify's pose prior (backend/assets/pose_gmm.npz: the triangulation fit, video's loop), loaded once."""
        if self._pose_gmm is None:
            from backend.engine.gmm import GMM, MaxMixturePrior

            self._pose_gmm = MaxMixturePrior(GMM.load()).to(self.device)
        return self._pose_gmm

    def observations(self, obs: dict) -> Observations:
        """A validated OBS dict as tensors laid out (V,F,...) (per-view intrinsics repeated over frames)."""
        kp = self.as_tensor(obs["keypoints"])                        # (V,F,17,3)
        v, f = kp.shape[:2]
        cams = dict(cam_R=self.as_tensor(obs["cam_R"]), cam_t=self.as_tensor(obs["cam_t"])) if "cam_R" in obs else {}
        return Observations(kp, self.as_tensor(obs["focal_length"])[:, None].expand(v, f),
                            self.as_tensor(obs["principal_point"])[:, None].expand(v, f, 2),
                            self.as_tensor(obs["image_size"])[:, None].expand(v, f, 2), **cams,
                            fps=float(obs.get("fps", 30.0)))

    def start(self, o: Observations, init: dict | None, mode: str) -> dict:
        """The starting estimate for observations (V,F,...): ``init`` (multi-view: one row per view and
        frame) or the built-in regressor's; tensors (V*F,...) view-major (rotmats, betas, transl and the
        prior's context), plus its 'source'."""
        v, f = o.focal.shape
        if mode == "multiview" and init is not None:
            init = {k: np.asarray(x).reshape(v * f, -1) if k != "betas" else x for k, x in init.items()}
        flat = o.reshape(v * f)
        start = self._init_tensors(init, flat.keypoints, flat.focal, flat.principal)
        start["context"] = self.context(flat.keypoints, flat.focal, flat.principal)
        return start

    def _init_tensors(self, init: dict | None, kp, focal, pp) -> dict:
        if init is None:
            est = self.initial(kp, focal, pp)
            return dict(rotmats=est["rotmats"], betas=est["betas"], transl=est["transl"], source="built-in regressor")
        n = kp.shape[0]
        betas = self.as_tensor(init["betas"]).reshape(-1, 10).expand(n, 10)
        return dict(rotmats=pose_to_rotmats(self.as_tensor(init["global_orient"]), self.as_tensor(init["body_pose"])),
                    betas=betas.clone(), transl=self.as_tensor(init["transl"]).reshape(n, 3), source="given")
