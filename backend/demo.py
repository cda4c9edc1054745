"""The README's main job.  Today: build/load the free body model, pose it, check the fast
joints path against the full mesh path, and save a picture plus the numbers."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel
from backend.body.example_poses import EXAMPLE_POSES, example_pose
from backend.rotations import axis_angle_to_matrix


def body_figure(model: BodyModel, path: Path, poses=("t_pose", "squat")) -> dict:
    """Front and side pictures of each pose; returns the posed outputs (numpy) by pose name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backend.plots import draw_body

    results = {}
    fig, axes = plt.subplots(1, 2 * len(poses), figsize=(4.2 * len(poses) * 2, 6))
    for i, name in enumerate(poses):
        R = axis_angle_to_matrix(example_pose(name, model.dtype))[None]
        out = model(R, torch.zeros(10, dtype=model.dtype))
        v, j, k = (t[0].detach().numpy() for t in (out.vertices, out.joints, out.keypoints))
        results[name] = dict(vertices=v, joints=j, keypoints=k)
        for a, view in zip(axes[2 * i: 2 * i + 2], ("front", "side")):
            draw_body(a, v, model.faces, j, k, view=view, title=f"{name.replace('_', ' ')} ({view})")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle("Free SMPL-format body model (generated from Anny): mesh, 24 SMPL joints, COCO + foot keypoints",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return results


def run_demo(out_dir: Path, smpl_path: str | None = None) -> int:
    t0 = time.time()
    print("[1/3] loading the body model", flush=True)
    model = BodyModel.load(smpl_path, dtype=torch.float64)
    v_t = model.smpl.v_template.numpy()
    height = float(v_t[:, 1].max() - v_t[:, 1].min())
    print(f"      {model.source}: {v_t.shape[0]} vertices, {len(model.faces)} faces, "
          f"rest height {height:.3f} m, {len(model.keypoint_names)} keypoints")

    print("[2/3] posing it and checking the fast joints path against the full mesh path", flush=True)
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(0.4 * torch.randn(64, 24, 3, generator=g, dtype=torch.float64))
    betas = torch.randn(64, 10, generator=g, dtype=torch.float64)
    full, fast = model(R, betas), model.joints_fast(R, betas)
    diff = max(float((full.joints - fast.joints).abs().max()), float((full.keypoints - fast.keypoints).abs().max()))
    print(f"      64 random poses and shapes: max |fast - full| = {diff:.2e} m")

    print("[3/3] pictures of example poses", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    posed = body_figure(model, out_dir / "body_model.png")
    np.savez_compressed(out_dir / "body_model_poses.npz",
                        **{f"{pose}_{k}": v for pose, d in posed.items() for k, v in d.items()})
    summary = dict(model=model.source, vertices=int(v_t.shape[0]), faces=int(len(model.faces)),
                   rest_height_m=round(height, 4), fast_vs_full_max_abs_m=diff,
                   poses=list(EXAMPLE_POSES), seconds=round(time.time() - t0, 1))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done in {summary['seconds']} s; wrote {out_dir}/body_model.png, body_model_poses.npz, summary.json")
    return 0
