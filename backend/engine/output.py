"""A mode's result as the OUT dict (backend.contract.results): axis-angle pose, joints, keypoints, the
reprojection error before and after, the rest body and skinning, the footage camera."""
from __future__ import annotations

import json

import numpy as np
import torch

from backend.engine.guidance import project
from backend.engine.loaded import LoadedModels
from backend.engine.problems import Observations
from backend.rotations import matrix_to_axis_angle

NUM_KP = 17


@torch.no_grad()
def assemble(models: LoadedModels, out: dict, start: dict, o: Observations, info: dict, obs: dict) -> dict:
    """The OUT dict (backend.contract.results) of a mode's output ``out`` (rotmats, betas, transl (V*F,...),
    optionally world_from_view0) from ``start`` for observations o (V,F,...); ``obs`` the OBS dict."""
    v, f = o.focal.shape
    kp, focal, pp = o.keypoints, o.focal, o.principal
    body = models.body.joints_fast(out["rotmats"], out["betas"], out["transl"])
    init_body = models.body.joints_fast(start["rotmats"], start["betas"], start["transl"])
    obs_kp = kp.reshape(v * f, NUM_KP, 3)
    err = reprojection_px(body, obs_kp, focal, pp)
    aa = matrix_to_axis_angle(out["rotmats"]).reshape(v * f, 72)
    shape = (v, f) if v > 1 else (f,)
    np_ = lambda x, *tail: x.detach().cpu().numpy().astype(np.float32).reshape(*shape, *tail)
    betas_mean = out["betas"].mean(0)
    rest = models.body(torch.eye(3, device=models.device).expand(1, 24, 3, 3), betas_mean)
    result = dict(
        global_orient=np_(aa[:, :3], 3), body_pose=np_(aa[:, 3:], 69), betas=np_(out["betas"], 10),
        transl=np_(out["transl"], 3), joints=np_(body.joints, 24, 3),
        keypoints3d=np_(body.keypoints[:, :NUM_KP], NUM_KP, 3), init_joints=np_(init_body.joints, 24, 3),
        reprojection_error_px=np_(err), init_reprojection_error_px=np_(reprojection_px(init_body, obs_kp, focal, pp)),
        info=np.array(json.dumps(info)),
        rest_joints=rest.joints[0].cpu().numpy().astype(np.float32),
        rest_vertices=rest.vertices[0].cpu().numpy().astype(np.float32),
        faces=models.body.faces.astype(np.int32),
        skin_weights=models.body.smpl.lbs_weights.cpu().numpy().astype(np.float32),
        fps=np.float32(obs.get("fps", 30.0)),
        # The footage camera (view 0), so the add-on can build a matching Blender camera.
        image_size=np.asarray(obs["image_size"][0], np.float32),
        focal_length=np.float32(obs["focal_length"][0]),
        principal_point=np.asarray(obs["principal_point"][0], np.float32),
    )
    if v > 1:  # every view's camera, so each can be built with its own lens
        result.update(view_intrinsics(obs))
    if "world_from_view0" in out:
        R0, t0 = out["world_from_view0"]
        j = body.joints.reshape(v, f, 24, 3)[0]
        result["joints_world"] = ((j - t0) @ R0).cpu().numpy().astype(np.float32)
    return result


def view_intrinsics(obs: dict) -> dict[str, np.ndarray]:
    """The multi-view OUT fields of the OBS dict's per-view cameras: ``view_image_size`` (V,2) px
    ``[width, height]``, ``view_focal_length`` (V,) px and ``view_principal_point`` (V,2) px."""
    return dict(view_image_size=np.asarray(obs["image_size"], np.float32),
                view_focal_length=np.asarray(obs["focal_length"], np.float32),
                view_principal_point=np.asarray(obs["principal_point"], np.float32))


def reprojection_px(body, obs_kp: torch.Tensor, focal: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """Mean reprojection error (px) over seen keypoints per sample (N,), NaN where none is seen."""
    kp2d = project(body.keypoints[:, :NUM_KP], focal.reshape(-1), pp.reshape(-1, 2))
    seen = obs_kp[..., 2] > 0
    err = ((kp2d - obs_kp[..., :2]).norm(dim=-1) * seen).sum(1) / seen.sum(1).clamp_min(1)
    return torch.where(seen.any(1), err, torch.full_like(err, float("nan")))
