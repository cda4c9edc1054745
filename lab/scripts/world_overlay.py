"""Overlay and floor of the world output on the example shot: ``python lab/scripts/world_overlay.py OUT.npz ...``.

For each engine result (OUT.npz of ``python -m backend refine`` on ``examples/shot``, simulated keypoints or
BlazePose detections), the world body (``*_world`` fields) is taken back through the placed camera
(``camera_R_world``, ``camera_position``) and its COCO-17 keypoints compared with the true keypoints
(``examples/shot/ground_truth.npz`` ``keypoints2d``), as the camera-frame body's are; plus the contacts and
the world mesh's lowest vertex in contact frames (0 = on the floor).  Prints one line per file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from backend.body.body_model import BodyModel, pose_to_rotmats  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)

TRUTH = ROOT / "examples" / "shot" / "ground_truth.npz"


def frame_errors(bm: BodyModel, out: dict, truth_2d: np.ndarray, world: bool) -> np.ndarray:
    """Mean image distance (F,) px of the camera-frame or world body's COCO-17 keypoints from truth_2d (F,17,2)."""
    suffix = "_world" if world else ""
    rot = pose_to_rotmats(torch.as_tensor(out["global_orient" + suffix]), torch.as_tensor(out["body_pose" + suffix]))
    body = bm(rot, torch.as_tensor(out["betas"]).float(), torch.as_tensor(out["transl" + suffix]))
    kp = body.keypoints[:, :17].double().numpy()
    if world:
        kp = (kp - out["camera_position"]) @ out["camera_R_world"].astype(np.float64)
    uv = float(out["focal_length"]) * kp[..., :2] / kp[..., 2:3] + np.asarray(out["principal_point"], np.float64)
    return np.linalg.norm(uv - truth_2d, axis=-1).mean(1)


def lowest_vertex_in_contact(bm: BodyModel, out: dict) -> float:
    """Mean (m) over frames with a foot contact of the world mesh's lowest height (the floor is 0)."""
    body = bm(pose_to_rotmats(torch.as_tensor(out["global_orient_world"]), torch.as_tensor(out["body_pose_world"])),
              torch.as_tensor(out["betas"]).float(), torch.as_tensor(out["transl_world"]))
    return float(body.vertices[..., 1].numpy().min(1)[out["foot_contacts"].any(1)].mean())


def main(paths: list[str]) -> int:
    bm = BodyModel.load()
    truth_2d = np.load(TRUTH)["keypoints2d"].astype(np.float64)
    for path in paths:
        out = dict(np.load(path))
        cam = frame_errors(bm, out, truth_2d, world=False)
        if "joints_world" not in out:
            print(f"{path}: camera-frame {cam.mean():.2f} px (worst frame {cam.max():.2f}); no world frame")
            continue
        world = frame_errors(bm, out, truth_2d, world=True)
        print(f"{path}: camera-frame {cam.mean():.2f} px (worst frame {cam.max():.2f}), world {world.mean():.2f} px "
              f"(worst frame {world.max():.2f} = {world.max() / cam.max():.2f}x, {(world > 6).sum()} frames > 6 px); "
              f"contacts {np.round(out['foot_contacts'].mean(0), 2).tolist()}; lowest vertex in contact frames "
              f"{1000 * lowest_vertex_in_contact(bm, out):+.1f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
