"""Matplotlib pictures of a body (flat-shaded mesh, joints, keypoints) for docs and demos."""
from __future__ import annotations

import numpy as np

# view -> (screen-x axis, its sign, depth axis towards the camera); Y is always up.
_VIEWS = {"front": (0, 1.0, 2), "side": (2, -1.0, 0)}


def draw_body(ax, vertices: np.ndarray, faces: np.ndarray, joints=None, keypoints=None,
              view: str = "front", title: str = "") -> None:
    """Painter's-algorithm render of a mesh seen from +Z (front) or +X (side)."""
    from matplotlib.collections import PolyCollection

    h, sign, d = _VIEWS[view]
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.zeros(3)
    light[d], light[1] = 1.0, 0.4
    shade = 0.25 + 0.75 * np.clip(normals @ (light / np.linalg.norm(light)), 0, 1)
    order = np.argsort(tri[:, :, d].mean(1))  # far to near
    polys = np.stack([sign * tri[order][:, :, h], tri[order][:, :, 1]], axis=-1)
    colors = np.clip(shade[order, None] * np.array([0.85, 0.72, 0.62]), 0, 1)
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="none"))

    def screen(p):
        return sign * p[:, h], p[:, 1]

    if joints is not None:
        ax.scatter(*screen(joints), s=12, c="crimson", zorder=3, label="24 joints")
    if keypoints is not None:
        ax.scatter(*screen(keypoints), s=14, c="royalblue", marker="x", zorder=3, label="keypoints")
    xs, ys = screen(vertices)
    ax.set_xlim(xs.min() - 0.05, xs.max() + 0.05)
    ax.set_ylim(ys.min() - 0.05, ys.max() + 0.05)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=6)
