"""Picture of the body model: T-pose and a squat, front and side, with joints and keypoints.

    python -m lab body-figure [--smpl PATH] [--out docs/free_body_model.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from backend.body.body_model import BodyModel
from backend.body.example_poses import example_pose
from backend.rotations import axis_angle_to_matrix


def body_figure(model: BodyModel, path: Path, poses=("t_pose", "squat")) -> dict:
    """Front and side pictures of each pose; returns the posed outputs (numpy) by pose name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.plots import draw_body

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab body-figure")
    p.add_argument("--smpl", default=None, help="your SMPL model file (default: the free body model)")
    p.add_argument("--out", default="docs/free_body_model.png")
    args = p.parse_args(argv)
    body_figure(BodyModel.load(args.smpl, dtype=torch.float64), Path(args.out))
    print(f"wrote {args.out}")
    return 0
