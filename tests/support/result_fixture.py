"""TEST FIXTURE, NOT ENGINE OUTPUT: writes real OUT.npz-format results without the engine.

A smooth synthetic motion (blends of the example poses, a turning, travelling
root) is posed with the real body model, backend.body.body_model.BodyModel (the
free default model, float64), and every OUT.npz field is filled the way the
engine contract says: SMPL parameters and ``joints`` in the OpenCV camera frame,
``rest_*`` at the result's betas in the model frame.  The add-on's importer is
tested against these files; nothing here is used by the add-on or the engine.
"""

import json
import math
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel, pose_to_rotmats
from backend.body.example_poses import example_pose
from backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle

IMAGE_SIZE = (1280.0, 720.0)
FOCAL_PX = 1100.0
PRINCIPAL_POINT = (652.0, 347.0)

_MODEL = {}


def body_model():
    if "bm" not in _MODEL:
        _MODEL["bm"] = BodyModel.load(None, dtype=torch.float64)
    return _MODEL["bm"]


def synthetic_motion(num_frames=24, seed=0):
    """Smooth camera-frame motion: global_orient (F,3), body_pose (F,69), transl (F,3).

    The body stands upright ~3 m in front of the camera (180 deg about X takes the
    model's Y-up frame to the camera's y-down one) and turns 300 degrees about its
    vertical axis, so quaternion signs must be kept continuous."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    blend = (0.5 - 0.5 * torch.cos(2 * math.pi * t))[:, None, None]
    pose = (1 - blend) * example_pose("arms_down", torch.float64) + blend * example_pose("squat", torch.float64)
    wobble = (0.15 * torch.randn(1, 24, 3, generator=gen, dtype=torch.float64)
              * torch.sin(3 * math.pi * t)[:, None, None])
    pose = pose + wobble

    upright = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    yaw = torch.stack([torch.zeros_like(t), t * math.radians(300), 0.1 * torch.sin(2 * math.pi * t)], -1)
    global_orient = matrix_to_axis_angle(upright @ axis_angle_to_matrix(yaw))
    transl = torch.stack([0.6 * torch.sin(2 * math.pi * t), 0.1 + 0.05 * t, 3.0 + 1.0 * t], -1)
    return global_orient, pose[:, 1:].reshape(num_frames, 69), transl


def result_arrays(global_orient, body_pose, transl, betas, fps=30.0, camera_in="info"):
    """All OUT.npz fields (numpy) for one motion, posed with the real body model.

    camera_in: where the footage intrinsics go: "info" (keys of the info JSON),
    "arrays" (top-level fields) or None (left out)."""
    bm = body_model()
    betas = torch.as_tensor(betas, dtype=torch.float64)
    with torch.no_grad():
        posed = bm(pose_to_rotmats(global_orient, body_pose), betas, transl)
        rest = bm(torch.eye(3, dtype=torch.float64).expand(1, 24, 3, 3), betas)
    info = {"fixture": "tests/support/result_fixture.py (synthetic, not engine output)", "mode": "video"}
    arrays = {
        "global_orient": global_orient.numpy(),
        "body_pose": body_pose.numpy(),
        "betas": betas.numpy(),
        "transl": transl.numpy(),
        "joints": posed.joints.numpy(),
        "keypoints3d": posed.keypoints[:, :17].numpy(),
        "init_joints": posed.joints.numpy(),
        "reprojection_error_px": np.zeros(len(transl)),
        "rest_joints": rest.joints[0].numpy(),
        "rest_vertices": rest.vertices[0].numpy(),
        "faces": bm.faces.astype(np.int32),
        "skin_weights": bm.smpl.lbs_weights.numpy().astype(np.float32),
        "fps": np.float64(fps),
    }
    camera = {"image_size": IMAGE_SIZE, "focal_length": FOCAL_PX, "principal_point": PRINCIPAL_POINT}
    if camera_in == "info":
        info.update(camera)
    elif camera_in == "arrays":
        arrays.update({key: np.asarray(value) for key, value in camera.items()})
    arrays["info"] = np.asarray(json.dumps(info))
    return arrays


def write_result(path, num_frames=24, fps=30.0, seed=0, camera_in="info", **overrides):
    """Write a synthetic result to ``path``; ``overrides`` replace fields (None drops one).

    Returns the arrays written."""
    global_orient, body_pose, transl = synthetic_motion(num_frames, seed)
    betas = 0.8 * torch.randn(10, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    arrays = result_arrays(global_orient, body_pose, transl, betas, fps, camera_in)
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return arrays


def multiview_arrays(global_orient, body_pose, transl, betas, obs):
    """Engine.run's multi-view layout for one motion in view 0's camera frame: per-view fields with a
    leading V axis (the motion moved into each calibrated view, or repeated without calibration),
    view 0's intrinsics, every view's (``view_*``, the engine's own fields), and ``joints_world`` when
    ``obs`` has cam_R / cam_t."""
    from backend.engine.output import view_intrinsics
    from backend.engine.views import in_every_view, relative_cameras

    views, frames = obs["keypoints"].shape[:2]
    calibrated = "cam_R" in obs
    if calibrated:
        rel_R, rel_t = relative_cameras(torch.as_tensor(obs["cam_R"]), torch.as_tensor(obs["cam_t"]))
    else:
        rel_R, rel_t = torch.eye(3, dtype=torch.float64).expand(views, 3, 3), torch.zeros(views, 3, dtype=torch.float64)
    betas = torch.as_tensor(betas, dtype=torch.float64)
    rotmats, view_transl = in_every_view(body_model(), pose_to_rotmats(global_orient, body_pose), transl,
                                         betas.expand(frames, 10), rel_R, rel_t)
    aa = matrix_to_axis_angle(rotmats).reshape(views, frames, 72)
    per_view = [result_arrays(aa[v, :, :3], aa[v, :, 3:], view_transl.reshape(views, frames, 3)[v], betas,
                              fps=obs["fps"]) for v in range(views)]
    out = dict(per_view[0])
    for key in ("global_orient", "body_pose", "transl", "joints", "keypoints3d", "init_joints",
                "reprojection_error_px"):
        out[key] = np.stack([arrays[key] for arrays in per_view])
    out["betas"] = np.broadcast_to(out["betas"], (views, frames, 10)).copy()
    out["init_reprojection_error_px"] = out["reprojection_error_px"].copy()
    out.update(image_size=np.asarray(obs["image_size"][0]), focal_length=np.asarray(obs["focal_length"][0]),
               principal_point=np.asarray(obs["principal_point"][0]), **view_intrinsics(obs))
    if calibrated:
        R0, t0 = np.asarray(obs["cam_R"][0]), np.asarray(obs["cam_t"][0])
        out["joints_world"] = (out["joints"][0] - t0) @ R0
    return out


def write_openpose_folder(folder, keypoints, first_number):
    """One OpenPose BODY_25 ``*_keypoints.json`` per frame of ``keypoints`` (F, 17, 3), numbered from
    ``first_number``; returns the folder."""
    from backend.contract.keypoints import BODY25_TO_COCO17

    folder.mkdir(parents=True, exist_ok=True)
    for i, kp in enumerate(keypoints):
        body25 = np.zeros((25, 3))
        body25[list(BODY25_TO_COCO17)] = kp
        people = [{"pose_keypoints_2d": body25.reshape(-1).tolist()}]
        (folder / f"shot_{first_number + i:012d}_keypoints.json").write_text(json.dumps({"people": people}))
    return folder


EXAMPLE_SHOT = Path(__file__).resolve().parents[2] / "examples" / "shot"


def write_world_result(path):
    """A result with the world fields, written to ``path``: the example shot's true motion (CMU 115_08,
    camera frame, with the shot's intrinsics) posed with the real body model, and its world frame
    (floor, contacts, planted feet, camera pose) computed by the engine's own backend.engine.world.
    Returns the arrays written."""
    from backend.engine import world

    with np.load(EXAMPLE_SHOT / "ground_truth.npz") as truth, np.load(EXAMPLE_SHOT / "keypoints.npz") as kp:
        motion = [torch.as_tensor(truth[k], dtype=torch.float64) for k in ("global_orient", "body_pose", "transl")]
        betas, fps = truth["betas"], float(kp["fps"])
        camera = {k: np.asarray(kp[k], np.float64) for k in ("image_size", "focal_length", "principal_point")}
    arrays = result_arrays(*motion, betas, fps=fps, camera_in=None)
    fields, summary = world.out_fields(dict(arrays, fps=fps))
    info = json.loads(str(arrays["info"]))
    info["world"] = summary
    arrays.update(fields, **camera, info=np.asarray(json.dumps(info)))
    np.savez(path, **arrays)
    return arrays
