"""Synthetic observations in the engine's OBS layout, with camera-frame ground truth.

Input: SMPL parameters in the body model's world frame (Y up, metres, axis-angle):
``global_orient`` (...,3), ``body_pose`` (...,69), ``transl`` (...,3) (optional, zeros),
``betas`` (...,10) or (10,); numpy or torch.  A random camera is aimed at the person
(:mod:`lab.sim.cameras`), the model's keypoints are projected and passed through the
detector model (:mod:`lab.sim.detector_noise`).  ``landmarks="blazepose-fit"`` projects instead the
points a landmark model fitted to BlazePose's detections on renders places on the body, plus its
per-joint bias (:mod:`lab.sim.landmarks`), so that the simulated detector does not share the engine's
keypoint model; the default ``"regressor"`` keeps the body model's own keypoints.

Returned dict (torch tensors, or numpy with ``as_numpy=True``), leading dims L = (B,) for
single view, (B,F) for video windows, (B,V) for multi-view:
- ``mode``: "frame" | "video" | "multiview" (the engine's --mode), a str
- ``keypoints`` L+(K,3) [x_px, y_px, conf]; missing points (0,0,0); K = 17, or 23 with
  ``foot_points=True`` (COCO-17 then FOOT6_NAMES; needs the free model)
- per camera, with leading dims (B,) for single view and video (one static camera per
  window), (B,V) for multi-view: ``image_size`` (2,) [w,h], ``focal_length`` () px,
  ``principal_point`` (2,), ``cam_R`` (3,3), ``cam_t`` (3,) world-to-camera (OpenCV);
  the uncalibrated multi-view variant leaves out cam_R and cam_t
- ``fps`` () for video windows when given
- ground truth, in each camera's OpenCV frame: ``gt_joints`` L+(24,3), ``gt_keypoints3d``
  L+(K,3), ``gt_keypoints2d`` L+(K,2) (clean projection; the points the detector saw: the landmarks
  with ``landmarks=...``, without their image bias), ``gt_global_orient`` L+(3,),
  ``gt_body_pose`` L+(69,), ``gt_betas`` L+(10,), ``gt_transl`` L+(3,) such that the body
  model with these parameters gives ``gt_joints``; ``status`` L+(K,) int8 detector status
  codes and ``swapped`` L+(K,) bool (the slot holds its left/right partner's point);
  multi-view also ``gt_joints_world`` (B,24,3).
``engine_obs(obs, i)`` turns sample i into the arrays of one engine OBS.npz.

Randomness only comes from the generator passed in (torch.Generator or numpy Generator).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from backend.body.body_model import BodyModel, move_body, pose_to_rotmats
from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from lab.sim.cameras import (
    Cameras,
    project,
    sample_cameras,
    torch_generator,
    uniform,
)
from lab.sim.detector_noise import NoiseLevel, simulate_detections
from lab.sim.landmarks import detector_level, landmark_body

MULTIVIEW_YAW_JITTER = 0.5  # views are spread evenly around the person, each moved by up to +-half this x spacing
CAMERA_KEYS = ("image_size", "focal_length", "principal_point", "cam_R", "cam_t")
OBS_KEYS = ("keypoints", "fps") + CAMERA_KEYS


def _lead(params: dict, ndim: int) -> tuple[int, ...]:
    """The leading dims of the parameters (those of ``global_orient`` without its last)."""
    lead = tuple(np.shape(params["global_orient"]))[:-1]
    if len(lead) != ndim:
        raise ValueError(f"global_orient needs {ndim} leading dim(s), got shape {np.shape(params['global_orient'])}")
    return lead


def _params(bm: BodyModel, params: dict, lead: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """SMPL parameters as bm-dtype tensors with leading dims ``lead``; betas broadcast."""
    dev = bm.joint_template.device
    as_t = lambda x: torch.as_tensor(x).to(dev, bm.dtype)
    out = {"global_orient": as_t(params["global_orient"]).reshape(*lead, 3),
           "body_pose": as_t(params["body_pose"]).reshape(*lead, 69)}
    transl = params.get("transl")
    out["transl"] = (torch.zeros(*lead, 3, dtype=bm.dtype, device=dev) if transl is None
                     else as_t(transl).reshape(*lead, 3))
    betas = as_t(params["betas"])
    betas = betas.reshape(*betas.shape[:-1], 1, betas.shape[-1]) if betas.dim() == len(lead) else betas
    out["betas"] = betas.expand(*lead, betas.shape[-1])[..., :10]
    return out


def _flat(x: torch.Tensor, lead: int) -> torch.Tensor:
    return x.reshape(-1, *x.shape[lead:])


def rest_pelvis(bm: BodyModel, betas: torch.Tensor) -> torch.Tensor:
    """(N,10) betas -> (N,3) pelvis of the shaped body in the rest pose: SMPL rotates about it."""
    eye = torch.eye(3, dtype=bm.dtype, device=betas.device).expand(betas.shape[0], 24, 3, 3)
    return bm.joints_fast(eye, betas).joints[:, 0]


def camera_frame_params(bm: BodyModel, global_orient, transl, betas, R, t) -> tuple[torch.Tensor, torch.Tensor]:
    """World-frame global_orient (N,3), transl (N,3) -> the same body seen from a camera (R, t).

    The body model rotates about the rest pelvis J0 (body_model.move_body)."""
    root, moved = move_body(axis_angle_to_matrix(global_orient), transl, rest_pelvis(bm, betas), R, t)
    return matrix_to_axis_angle(root), moved


def _world_body(bm: BodyModel, p: dict, lead: int, k: int):
    """World joints (...,24,3) and keypoints (...,K,3) for parameters with ``lead`` leading dims."""
    shape = p["global_orient"].shape[:lead]
    rot = pose_to_rotmats(_flat(p["global_orient"], lead), _flat(p["body_pose"], lead))
    out = bm.joints_fast(rot, _flat(p["betas"], lead), _flat(p["transl"], lead))
    if out.keypoints.shape[1] < k:
        raise ValueError(f"foot points need a body model with 23 keypoints; this one has {out.keypoints.shape[1]}")
    return out.joints.reshape(*shape, 24, 3), out.keypoints[:, :k].reshape(*shape, k, 3)


def _observe(bm: BodyModel, p: dict, joints, keypoints, cams: Cameras, level, g) -> dict:
    """Everything for N people seen over F frames by N static cameras.

    p: parameters with leading (N,F); joints (N,F,24,3), keypoints (N,F,K,3) in the world."""
    n, f, k = keypoints.shape[:3]
    uv, depth = project(keypoints.reshape(n, f * k, 3), cams)
    uv, depth = uv.reshape(n, f, k, 2), depth.reshape(n, f, k)
    det = simulate_detections(uv, depth, cams.image_size, detector_level(level, getattr(bm, "landmarks", None)), g)

    R, t = cams.R.repeat_interleave(f, 0), cams.t.repeat_interleave(f, 0)
    to_cam = lambda x: (_flat(x, 2) @ R.transpose(1, 2) + t[:, None]).reshape(x.shape)
    orient, transl = camera_frame_params(bm, _flat(p["global_orient"], 2), _flat(p["transl"], 2),
                                         _flat(p["betas"], 2), R, t)
    return {
        "keypoints": det.keypoints, "status": det.status, "swapped": det.swapped,
        "image_size": cams.image_size, "focal_length": cams.focal_length, "principal_point": cams.principal_point,
        "cam_R": cams.R, "cam_t": cams.t,
        "gt_joints": to_cam(joints), "gt_keypoints3d": to_cam(keypoints), "gt_keypoints2d": uv,
        "gt_global_orient": orient.reshape(n, f, 3), "gt_body_pose": p["body_pose"],
        "gt_betas": p["betas"], "gt_transl": transl.reshape(n, f, 3),
    }


def _drop_frame_axis(out: dict) -> dict:
    """Per-frame entries (N,1,...) -> (N,...); camera entries are per camera already."""
    return {key: v if key in CAMERA_KEYS else v[:, 0] for key, v in out.items()}


def _finish(out: dict, mode: str, as_numpy: bool) -> dict:
    if as_numpy:
        out = {key: v.detach().cpu().numpy() for key, v in out.items()}
    return {"mode": mode, **out}


def single_view_observations(bm: BodyModel, params: dict, generator, level: NoiseLevel | str = "medium", *,
                             foot_points: bool = False, camera_kwargs: dict | None = None,
                             as_numpy: bool = False, landmarks: str | None = None) -> dict:
    """B independent frames, each seen by its own random camera.  params with leading dim (B,)."""
    g = torch_generator(generator)
    bm = landmark_body(bm, landmarks)
    p = _params(bm, params, _lead(params, 1) + (1,))
    joints, kps = _world_body(bm, p, 2, 23 if foot_points else 17)
    cams = sample_cameras(torch.cat([joints, kps], 2)[:, 0], g, **(camera_kwargs or {}))
    return _finish(_drop_frame_axis(_observe(bm, p, joints, kps, cams, level, g)), "frame", as_numpy)


def video_observations(bm: BodyModel, params: dict, generator, level: NoiseLevel | str = "medium", *,
                       fps: float | None = None, foot_points: bool = False, camera_kwargs: dict | None = None,
                       as_numpy: bool = False, landmarks: str | None = None) -> dict:
    """B windows of F consecutive frames, one static camera per window, temporally correlated noise.

    params with leading dims (B,F) (betas (B,10), (B,F,10) or (10,)); cut windows from clips first."""
    g = torch_generator(generator)
    bm = landmark_body(bm, landmarks)
    lead = _lead(params, 2)
    p = _params(bm, params, lead)
    joints, kps = _world_body(bm, p, 2, 23 if foot_points else 17)
    # The camera sees the whole window: fit it to all frames' points at once.
    cams = sample_cameras(torch.cat([joints, kps], 2).reshape(lead[0], -1, 3), g, **(camera_kwargs or {}))
    out = _observe(bm, p, joints, kps, cams, level, g)
    if fps is not None:
        out["fps"] = torch.tensor(float(fps), dtype=bm.dtype)
    return _finish(out, "video", as_numpy)


def multiview_observations(bm: BodyModel, params: dict, generator, num_views: int = 4,
                           level: NoiseLevel | str = "medium", *, calibrated: bool = True,
                           foot_points: bool = False, camera_kwargs: dict | None = None,
                           as_numpy: bool = False, landmarks: str | None = None) -> dict:
    """B instants, each seen at once by V cameras spread around the person.  params with leading dim (B,).

    Views are evenly spaced in yaw from a random start, each moved by up to
    +-MULTIVIEW_YAW_JITTER/2 of the spacing; the other camera draws are independent per view.
    ``calibrated=False`` leaves out cam_R and cam_t (only per-view keypoints and intrinsics).
    ``landmarks`` (all three generators): "regressor" / None (the body model's keypoints), "blazepose-fit"
    (lab.sim.landmarks), or ``bm`` may already be a LandmarkBody."""
    g = torch_generator(generator)
    bm = landmark_body(bm, landmarks)
    b, v = _lead(params, 1)[0], int(num_views)
    p = _params(bm, params, (b, 1))
    joints, kps = _world_body(bm, p, 2, 23 if foot_points else 17)
    spacing = 2 * math.pi / v
    yaw = (uniform(0.0, 2 * math.pi, (b, 1), g) + spacing * torch.arange(v, dtype=torch.float64)
           + MULTIVIEW_YAW_JITTER * spacing * uniform(-0.5, 0.5, (b, v), g)).reshape(-1)
    rep = lambda x: x.repeat_interleave(v, 0)
    cams = sample_cameras(rep(torch.cat([joints, kps], 2)[:, 0]), g, yaw=yaw, **(camera_kwargs or {}))
    out = _drop_frame_axis(_observe(bm, {key: rep(x) for key, x in p.items()}, rep(joints), rep(kps), cams, level, g))
    out = {key: x.reshape(b, v, *x.shape[1:]) for key, x in out.items()}
    out["gt_joints_world"] = joints[:, 0]
    if not calibrated:
        del out["cam_R"], out["cam_t"]
    return _finish(out, "multiview", as_numpy)


def engine_obs(obs: dict, i: int) -> dict[str, np.ndarray]:
    """Sample ``i`` of a generator's output as the arrays of one engine OBS.npz (see LAYOUT)."""
    mode = obs["mode"]
    as_np = lambda x: x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    out = {key: as_np(obs[key] if key == "fps" else obs[key][i]) for key in OBS_KEYS if key in obs}
    if mode == "frame":
        out["keypoints"] = out["keypoints"][None]
    elif mode == "multiview":
        out["keypoints"] = out["keypoints"][:, None]  # (V,1,K,3): one frame seen by V views
    if mode != "multiview":
        out.pop("cam_R"), out.pop("cam_t")  # OBS takes extrinsics for multi-view only
    return out
