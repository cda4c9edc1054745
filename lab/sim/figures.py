"""docs/observations.png: synthetic detections drawn over the clean projections.

``python -m lab.sim.figures [--out docs/observations.png] [--seed 1]``
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from backend.body.body_model import BodyModel
from backend.body.example_poses import example_pose
from lab.sim.cameras import SENSOR_WIDTH_MM
from lab.sim.detector_noise import VISIBLE
from lab.sim.observations import (
    multiview_observations,
    single_view_observations,
    video_observations,
)

# COCO-17 limbs, then ankle -> big toe / small toe / heel; (i, j, side) with side 0 left, 1 right, 2 centre.
SKELETON = (
    (15, 13, 0), (13, 11, 0), (16, 14, 1), (14, 12, 1), (11, 12, 2), (5, 11, 0), (6, 12, 1), (5, 6, 2),
    (5, 7, 0), (7, 9, 0), (6, 8, 1), (8, 10, 1), (0, 1, 2), (0, 2, 2), (1, 3, 0), (2, 4, 1),
    (15, 17, 0), (15, 19, 0), (15, 21, 0), (16, 18, 1), (16, 20, 1), (16, 22, 1),
)
SIDE_COLOURS = ("tab:blue", "tab:orange", "0.45")


def _posed(names, rng: np.random.Generator, jitter=0.12) -> dict:
    """Example poses with a little random pose noise and a random heading, in the world frame."""
    aa = torch.stack([example_pose(n, torch.float64) for n in names])
    aa[:, 1:] += jitter * torch.as_tensor(rng.standard_normal(aa[:, 1:].shape))
    aa[:, 0] = 0.0
    aa[:, 0, 1] = torch.as_tensor(rng.uniform(-math.pi, math.pi, len(names)))
    return {"global_orient": aa[:, 0], "body_pose": aa[:, 1:].reshape(len(names), 69),
            "transl": torch.zeros(len(names), 3, dtype=torch.float64), "betas": torch.zeros(10, dtype=torch.float64)}


def _clip(frames: int) -> dict:
    """A squat-and-rise while turning and stepping sideways, (1, F) leading dims."""
    s = 0.5 - 0.5 * torch.cos(torch.linspace(0, 2 * math.pi, frames, dtype=torch.float64))[:, None, None]
    aa = (1 - s) * example_pose("arms_down", torch.float64) + s * example_pose("squat", torch.float64)
    aa[:, 0, 1] = torch.linspace(0.3, 1.2, frames, dtype=torch.float64)
    transl = torch.zeros(frames, 3, dtype=torch.float64)
    transl[:, 0] = torch.linspace(-0.4, 0.4, frames, dtype=torch.float64)
    transl[:, 1] = -0.35 * s[:, 0, 0]  # the pelvis drops in the squat
    return {"global_orient": aa[None, :, 0], "body_pose": aa[None, :, 1:].reshape(1, frames, 69),
            "transl": transl[None], "betas": torch.zeros(10, dtype=torch.float64)}


def _crop(clean, pad=0.12):
    """Square (x0, y0, side) around the person's clean keypoints."""
    lo, hi = clean.min(0), clean.max(0)
    side = (hi - lo).max() * (1 + 2 * pad)
    mid = (lo + hi) / 2
    return mid[0] - side / 2, mid[1] - side / 2, side


def draw_detections(ax, keypoints, clean, status, swapped, image_size, title="", focal_px=None):
    """One frame, magnified on the person: image border, clean skeleton, detections coloured by
    confidence (ringed when left/right swapped), crosses at the true place of missing points;
    a thumbnail shows the whole frame."""
    from matplotlib.patches import Rectangle

    w, h = (float(x) for x in image_size)
    ax.add_patch(Rectangle((0, 0), w, h, fill=True, facecolor="0.96", edgecolor="black", lw=1.5, zorder=0))
    for i, j, side in SKELETON:
        if i < len(clean) and j < len(clean):
            ax.plot(*clean[[i, j]].T, color=SIDE_COLOURS[side], lw=1.6, alpha=0.8, zorder=1)
    seen = status == VISIBLE
    sc = ax.scatter(*keypoints[seen, :2].T, c=keypoints[seen, 2], cmap="viridis", vmin=0, vmax=1, s=26,
                    edgecolors="black", linewidths=0.4, zorder=3)
    ring = seen & swapped
    ax.scatter(*keypoints[ring, :2].T, s=110, facecolors="none", edgecolors="magenta", linewidths=1.3, zorder=4)
    ax.scatter(*clean[~seen].T, marker="x", c="crimson", s=40, linewidths=1.6, zorder=4)
    x0, y0, side = _crop(clean)
    ax.set_xlim(x0, x0 + side)
    ax.set_ylim(y0 + side, y0)  # image y points down
    ax.set_aspect("equal")
    ax.set_facecolor("0.8")  # outside the image
    ax.set_xticks([])
    ax.set_yticks([])
    if focal_px is not None:
        title += f"\n{int(w)}x{int(h)}, f = {float(focal_px) / w * SENSOR_WIDTH_MM:.0f} mm"
    ax.set_title(title, fontsize=8)

    thumb = ax.inset_axes([0.7, 0.77, 0.29, 0.22])
    thumb.add_patch(Rectangle((0, 0), w, h, facecolor="white", edgecolor="black", lw=0.8, alpha=0.6))
    thumb.add_patch(Rectangle((x0, y0), side, side, fill=False, edgecolor="crimson", lw=0.8))
    for i, j, _ in SKELETON:
        if i < len(clean) and j < len(clean):
            thumb.plot(*clean[[i, j]].T, color="0.3", lw=0.5)
    thumb.set_xlim(-0.03 * w, 1.03 * w)
    thumb.set_ylim(1.03 * h, -0.03 * h)
    thumb.set_aspect("equal")
    thumb.axis("off")
    return sc


def make_figure(path: Path, seed: int = 1) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bm = BodyModel.load(None, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    fig = plt.figure(figsize=(15, 8.6))
    grid = fig.add_gridspec(3, 6, height_ratios=[1, 1, 1], hspace=0.28, wspace=0.06)

    def panel(cell, obs, frame, camera, title):
        """Draw obs[...][frame] as seen by obs camera entries [camera]."""
        get = lambda key, i: obs[key][i].detach().cpu().numpy()
        return draw_detections(fig.add_subplot(cell), get("keypoints", frame), get("gt_keypoints2d", frame),
                               get("status", frame), get("swapped", frame), get("image_size", camera), title,
                               get("focal_length", camera))

    for col, level in enumerate(("low", "medium", "high")):
        obs = single_view_observations(bm, _posed(["arms_down", "squat"], rng), g, level, foot_points=True)
        for s in range(2):
            sc = panel(grid[0, 2 * col + s], obs, s, s, f"single view, {level}")

    mv = multiview_observations(bm, _posed(["squat"], rng), g, num_views=6, level="medium", foot_points=True)
    for v in range(6):
        panel(grid[1, v], mv, (0, v), (0, v), f"multi-view (medium), view {v + 1}/6")

    frames, stride = 36, 6
    vid = video_observations(bm, _clip(frames), g, "medium", fps=30.0, foot_points=True)
    for c, f in enumerate(range(0, frames, stride)):
        panel(grid[2, c], vid, (0, f), 0, f"video (medium), frame {f}")

    cax = fig.add_axes([0.915, 0.66, 0.01, 0.22])
    fig.colorbar(sc, cax=cax, label="confidence")
    fig.text(0.46, 0.99, "Synthetic detections (dots, colour = confidence) over the clean projection "
             "(lines: blue left, orange right).\nMagenta rings: left/right swapped; red crosses: missing points "
             "(occluded, hidden face points, outside the frame).\n"
             "Panels are magnified on the person (grey: outside the image); "
             "the thumbnail shows the whole frame and the magnified square.", ha="center", va="top", fontsize=9.5)
    fig.subplots_adjust(left=0.02, right=0.9, top=0.89, bottom=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/observations.png"))
    parser.add_argument("--seed", type=int, default=1)  # a seed whose draws include a swap
    args = parser.parse_args(argv)
    print(f"wrote {make_figure(args.out, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
