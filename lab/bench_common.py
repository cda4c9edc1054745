"""What the benchmark sections share (lab.bench, lab.bench_video, lab.bench_detections, lab.sim.calibrate):
the validation subjects' two parts, the frame rate of the simulated clips, joint errors, the focal length the
engine is told (known or the CLI's default), markdown tables."""
from __future__ import annotations

import numpy as np
import torch

from backend.contract.observations import DEFAULT_FOV_DEG, focal_from_fov
from backend.metrics import accel_error, joint_errors

FPS = 24
# What the engine is told about the focal length: the camera's true one, or nothing (the CLI then assumes
# DEFAULT_FOV_DEG across the image's long side).
FOCAL_SETTINGS = ("known", "unknown")


# The validation subjects in two parts: settings (weights, loop constants, thresholds) are chosen on the
# tuning part; the committed report is measured on the report part.
SUBJECT_PARTS = dict(tuning=(8, 17, 24, 31, 106), report=(108, 115, 132, 135))


def select_subjects(data: dict, subjects) -> dict:
    """The clips of the given subjects from a load_split dict (per-frame arrays cut, clip indices renumbered)."""
    keep = np.isin(data["subject"], list(subjects))                      # (C,)
    frames = keep[data["clip_index"]]                                     # (N,)
    out = dict(data)
    for k in ("global_orient", "body_pose", "transl", "clip_index", "frame_index"):
        out[k] = data[k][frames]
    for k in ("clip_ids", "clip_start", "clip_length", "subject", "residual_mm", "residual_p95_mm",
              "ground_shift_mm"):
        if k in data:
            out[k] = data[k][keep]
    out["clip_index"] = (np.cumsum(keep) - 1)[out["clip_index"]].astype(data["clip_index"].dtype)
    out["clip_start"] = np.concatenate([[0], np.cumsum(out["clip_length"])[:-1]]).astype(data["clip_start"].dtype)
    return out


@torch.no_grad()
def joints_of(engine, res: dict) -> np.ndarray:
    """Camera-frame joints (N,24,3) of a result dict (rotmats, betas, transl)."""
    b = res["rotmats"].shape[0]
    return engine.body.joints_fast(res["rotmats"], res["betas"].reshape(-1, 10).expand(b, 10),
                                   res["transl"]).joints.cpu().double().numpy()


def errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    return {k: round(v, 2) for k, v in joint_errors(pred, gt).items()}


def video_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """pred, gt (N,F,24,3) for N sequences: joint errors plus acceleration errors (mm/frame^2)."""
    rel = lambda j: j - j[..., :1, :]
    out = errors(pred.reshape(-1, 24, 3), gt.reshape(-1, 24, 3))
    out["accel"] = round(float(accel_error(rel(pred), rel(gt)).mean()), 2)
    out["accel_abs"] = round(float(accel_error(pred, gt).mean()), 2)
    return out


def default_focal(image_size: np.ndarray) -> np.ndarray:
    """The focal length (...,) px the CLI assumes for images (...,2) [w, h] when the user gives none."""
    return focal_from_fov(np.asarray(image_size, np.float64), DEFAULT_FOV_DEG)


def told_focal(obs: dict, setting: str) -> dict:
    """Simulated observations (lab.sim.observations, torch) with the focal length the engine is told:
    the camera's ('known') or the CLI's default for the image size ('unknown'); ground truth untouched."""
    if setting == "known":
        return obs
    if setting != "unknown":
        raise ValueError(f"focal setting {setting!r}; expected one of {FOCAL_SETTINGS}")
    told = torch.as_tensor(default_focal(obs["image_size"].double().numpy()))
    return dict(obs, focal_length=told.to(obs["focal_length"].dtype))


def root_depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """pred, gt (...,24,3) camera-frame joints: the pelvis depth's error relative to the truth (%), mean of
    its size (depth_pct) and signed mean (depth_bias_pct: positive = placed too far)."""
    rel = pred[..., 0, 2] / gt[..., 0, 2] - 1
    return dict(depth_pct=round(100 * float(np.abs(rel).mean()), 2), depth_bias_pct=round(100 * float(rel.mean()), 2))


def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)
