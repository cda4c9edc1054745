"""The engine's world frame on 2 s clips of fast CMU motion (runs, leaps, stumbles): issue 20 item 8.

    python lab/scripts/world_clips.py [CLIP:START ...]     (needs the shared CMU data, lab.data.cmu)

Each clip is converted to the free body model's SMPL motion as the dataset converter does it
(make_example_shot.convert_clip's steps, any subject), 48 frames (2 s at 24 fps) from START are seen by
one static camera 30 deg to the side (simulated "medium" detections, seed 0) and refined in video mode.
Prints per window the world status, the camera's height / pitch errors against the truth, the world
body's overlay through the placed camera against the camera-frame body's (mean px added, worst frame
ratio), the feet's floor error at the true contacts (mm, the truth's rule) and the world mesh's lowest
vertex in contact frames (mm); then the count of windows with a world frame and the means.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "lab" / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import make_example_shot as shot  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from lab.bench_video import _true_camera  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from backend.body.body_model import BodyModel, pose_to_rotmats  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from backend.contract.observations import validate_observations  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from backend.engine import world as W  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from backend.engine.api import Engine  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from lab.sim.observations import engine_obs  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)

FRAMES, FPS = 48, 24.0
CLIPS = ("75_01:0 75_01:24 75_01:48 75_01:96 75_04:24 75_04:48 111_24:24 111_24:72 128_08:0 128_08:17 91_59:0 "
         "91_59:14 137_16:72 137_16:120 13_11:24 02_04:0 85_07:48 85_07:96 08_01:0 01_01:24 01_01:72 01_01:240").split()


def convert(clip_id: str) -> dict:
    """World-frame SMPL motion of one CMU clip (the converter's calibration and fit on this clip)."""
    from lab.data import cmu, convert as conv, retarget

    root = cmu.cmu_root()
    clip = {c.clip_id: c for c in cmu.read_clips(root)}[clip_id]
    bm = BodyModel.load(None)
    calib = conv.run_calibration(bm, cmu.load_skeleton(root), [clip], root)
    (fit,) = conv.ClipFitter(root, calib, retarget.FitConfig()).fit_job([clip])
    pose = fit["pose"].astype(np.float64)
    return dict(global_orient=pose[:, :3], body_pose=pose[:, 3:], transl=fit["transl"].astype(np.float64),
                betas=calib.betas.astype(np.float64), description=clip.description)


def posed(bm: BodyModel, orient, pose, transl, betas):
    rot = pose_to_rotmats(torch.as_tensor(np.asarray(orient)).float(), torch.as_tensor(np.asarray(pose)).float())
    return bm(rot, torch.as_tensor(np.asarray(betas)).float().reshape(-1, 10).expand(len(rot), 10),
              torch.as_tensor(np.asarray(transl)).float())


def window_row(bm: BodyModel, engine: Engine, motion: dict, start: int) -> dict:
    m = shot.cut(motion, start, FRAMES)
    yaw = shot.facing_yaw(m["global_orient"]) + np.radians(shot.CAMERA_SIDE_DEG)
    obs = shot.observe(bm, m, [yaw], seed=0, fps=FPS, focal_px=614.7)
    o = engine_obs(obs, 0)
    o["fps"] = np.float32(FPS)
    res = engine.run(validate_observations(o, "video"), None, "video")
    world = json.loads(str(res["info"]))["world"]
    row = dict(status=world["status"])
    if world["status"] != "ok":
        return row
    height, pitch = _true_camera(obs["cam_R"][0], obs["cam_t"][0])
    truth_2d = obs["gt_keypoints2d"][0].astype(np.float64)
    f, c = float(res["focal_length"]), np.asarray(res["principal_point"], np.float64)
    proj = lambda x: f * x[..., :2] / x[..., 2:3] + c
    cam = posed(bm, res["global_orient"], res["body_pose"], res["transl"], res["betas"][:1])
    wb = posed(bm, res["global_orient_world"], res["body_pose_world"], res["transl_world"], res["betas"][:1])
    e_cam = np.linalg.norm(proj(cam.keypoints[:, :17].double().numpy()) - truth_2d, axis=-1).mean(1)
    back = (wb.keypoints[:, :17].double().numpy() - res["camera_position"]) @ res["camera_R_world"].astype(float)
    e_world = np.linalg.norm(proj(back) - truth_2d, axis=-1).mean(1)
    rest = posed(bm, np.zeros((1, 3)), np.zeros((1, 69)), np.zeros((1, 3)), res["betas"][:1])
    off = np.asarray(W.sole_offsets(rest.joints[0].numpy(), rest.vertices[0].numpy()))
    truth_feet = posed(bm, m["global_orient"], m["body_pose"], m["transl"], m["betas"]).joints.double().numpy()
    truth = W.foot_contacts(truth_feet[:, list(W.FOOT_JOINTS)], FPS, off)
    soles = res["joints_world"][:, list(W.FOOT_JOINTS), 1] - off
    contact = res["foot_contacts"].any(1)
    row.update(height_err=abs(world["camera_height"] - height), pitch_err=abs(world["camera_pitch_deg"] - pitch),
               overlay_added=e_world.mean() - e_cam.mean(), worst_ratio=e_world.max() / e_cam.max(),
               floor_at_true_contacts_mm=1000 * np.abs(soles[truth]).mean() if truth.any() else np.nan,
               lowest_vertex_mm=1000 * wb.vertices[..., 1].numpy().min(1)[contact].mean() if contact.any() else np.nan)
    return row


def main(specs: list[str]) -> int:
    bm, engine, motions, rows = BodyModel.load(), Engine.load(device="cpu"), {}, []
    for spec in specs or CLIPS:
        clip_id, start = spec.split(":")
        if clip_id not in motions:
            motions[clip_id] = convert(clip_id)
        row = window_row(bm, engine, motions[clip_id], int(start))
        rows.append(row)
        print(spec, motions[clip_id]["description"], {k: round(float(v), 2) if not isinstance(v, str) else v
                                                      for k, v in row.items()}, flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    means = {k: round(float(np.nanmean([r[k] for r in ok])), 2) for k in ok[0] if k != "status"} if ok else {}
    print(f"world frame on {len(ok)}/{len(rows)} windows; means {means}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
