"""Calibrated cameras: triangulation of keypoints and one body expressed in every view.

Cameras are world-to-camera (OpenCV): x_cam = R x_world + t.
"""
from __future__ import annotations

import math

import torch

from backend.body.body_model import move_body

# Triangulation: the best of the all-view and pairwise DLTs under a robust score, refined by re-weighted
# DLT passes (a view's weight halves at TRI_ROBUST_SIGMA_PX reprojection error: far-off swapped or
# outlying detections lose their pull, ordinary jitter keeps it; smaller sigmas made the 3D fit worse).
TRI_ROBUST_ITERATIONS = 3
TRI_ROBUST_SIGMA_PX = 200.0
TRI_MIN_CONF = 0.05         # a view 'sees' a point above this confidence
TRI_MIN_PARALLAX_DEG = 10.0  # rays closer than this to parallel (or anti-parallel: facing cameras) fix no depth


def relative_cameras(cam_R: torch.Tensor, cam_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """View 0's camera frame -> each view's: cam_R (V,3,3), cam_t (V,3) -> rel_R (V,3,3), rel_t (V,3)."""
    rel_R = cam_R @ cam_R[0].T
    return rel_R, cam_t - (rel_R @ cam_t[0][:, None])[..., 0]


def _dlt(xy: torch.Tensor, weight: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Weighted DLT. xy (B,V,K,2) normalised image coordinates, weight (B,V,K), P (B,V,3,4) -> (B,K,4)
    homogeneous points: the right singular vector of the smallest singular value of the stacked rows
    weight * (x P_3 - P_1), weight * (y P_3 - P_2)."""
    rows = xy[..., None] * P[:, :, None, 2:3, :] - P[:, :, None, :2, :]                    # (B,V,K,2,4)
    A = (weight[..., None, None] * rows).permute(0, 2, 1, 3, 4).flatten(2, 3)             # (B,K,2V,4)
    return torch.linalg.eigh(A.transpose(-1, -2) @ A)[1][..., 0]                          # eigenvalues ascend


def _view_errors(h: torch.Tensor, xy: torch.Tensor, P: torch.Tensor, f: torch.Tensor):
    """Reprojection errors (px) and depths of homogeneous points h (B,...,K,4) in every view.

    xy (B,V,K,2) normalised coordinates, P (B,V,3,4), f (B,V,1) focal -> r, depth (B,...,V,K)."""
    X = h / torch.where(h[..., 3:].abs() > 1e-12, h[..., 3:], torch.full_like(h[..., 3:], 1e-12))
    extra = X.dim() - 3                                                                   # candidate dims
    Pe = P.reshape(P.shape[0], *([1] * extra), *P.shape[1:])
    cam = torch.einsum("b...vij,b...kj->b...vki", Pe, X)                                  # (B,...,V,K,3)
    depth = cam[..., 2]
    xy_e = xy.reshape(xy.shape[0], *([1] * extra), *xy.shape[1:])
    f_e = f.reshape(f.shape[0], *([1] * extra), *f.shape[1:])
    r = (cam[..., :2] / depth[..., None].clamp_min(1e-9) - xy_e).norm(dim=-1) * f_e
    return r, depth


def _parallax(xy: torch.Tensor, R: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Largest |sin| of the angle between two seeing views' rays. xy (B,V,K,2), R (B,V,3,3), seen (B,V,K) -> (B,K)."""
    d = torch.einsum("bvji,bvkj->bvki", R, torch.cat([xy, torch.ones_like(xy[..., :1])], -1))   # world directions
    d = d / d.norm(dim=-1, keepdim=True)
    sin = torch.linalg.cross(d[:, :, None], d[:, None], dim=-1).norm(dim=-1)                # (B,V,V,K)
    both = seen[:, :, None] & seen[:, None]
    return torch.where(both, sin, torch.zeros_like(sin)).flatten(1, 2).amax(1)


def triangulate(keypoints: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor, cam_R: torch.Tensor,
                cam_t: torch.Tensor, *, min_views: int = 2, robust_iterations: int = TRI_ROBUST_ITERATIONS,
                robust_sigma_px: float = TRI_ROBUST_SIGMA_PX) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-weighted DLT of keypoints seen by V calibrated views, made robust to outlying views.

    keypoints (B,V,K,3) [x_px, y_px, conf], focal (B,V), principal (B,V,2), cam_R (B,V,3,3), cam_t (B,V,3)
    world-to-camera (OpenCV).  Rows are weighted by the confidence (normalised image coordinates
    x_n = (u - c_x) / f, P = [R | t]; float64).  With ``robust_iterations`` > 0: candidates are the DLT of
    all views and of every pair of views; each is scored by sum_v conf * GM(r_v) (r_v its reprojection
    error in px, Geman-McClure scale s = ``robust_sigma_px``, a full penalty behind a camera) and the best
    one is refined by re-weighted DLT (view weight conf * s^2 / (s^2 + r^2), 0 behind the camera), so one
    swapped or outlying detection cannot drag the point away.  Returns points (B,K,3) in the world frame
    and a weight (B,K): the mean confidence of the views that saw the point (conf > TRI_MIN_CONF), 0 (and
    a zero point) where fewer than ``min_views`` did or where no two of their rays are more than
    TRI_MIN_PARALLAX_DEG from parallel (depth along the rays is then unobservable)."""
    from itertools import combinations

    kp = keypoints.double()
    f = focal.double()[:, :, None]
    xy = (kp[..., :2] - principal.double()[:, :, None]) / f[..., None]                    # (B,V,K,2)
    conf = kp[..., 2]
    P = torch.cat([cam_R.double(), cam_t.double()[..., None]], -1)                        # (B,V,3,4)
    s2 = robust_sigma_px ** 2
    h = _dlt(xy, conf, P)
    if robust_iterations > 0:
        v = conf.shape[1]
        masks = [torch.ones(v, dtype=conf.dtype, device=conf.device)]
        for a, b in combinations(range(v), 2):
            m = torch.zeros(v, dtype=conf.dtype, device=conf.device)
            m[[a, b]] = 1.0
            masks.append(m)
        cands = torch.stack([_dlt(xy, conf * m[None, :, None], P) for m in masks], 1)     # (B,C,K,4)
        r, depth = _view_errors(cands, xy, P, f)                                          # (B,C,V,K)
        rho = torch.where(depth > 0, s2 * r ** 2 / (s2 + r ** 2), torch.full_like(r, s2))
        best = (conf[:, None] * rho).sum(2).argmin(1)                                     # (B,K)
        h = torch.gather(cands, 1, best[:, None, :, None].expand(-1, 1, -1, 4))[:, 0]
        for _ in range(robust_iterations):
            r, depth = _view_errors(h, xy, P, f)
            h = _dlt(xy, conf * s2 / (s2 + r ** 2) * (depth > 0), P)
    seen = conf > TRI_MIN_CONF
    n_seen = seen.sum(1)
    ok = (n_seen >= min_views) & (h[..., 3].abs() > 1e-12) & (_parallax(xy, cam_R.double(), seen) >
                                                                math.sin(math.radians(TRI_MIN_PARALLAX_DEG)))
    points = torch.where(ok[..., None], h[..., :3] / torch.where(ok, h[..., 3], 1.0)[..., None], 0.0)
    weight = torch.where(ok, (conf * seen).sum(1) / n_seen.clamp_min(1), 0.0)
    return points.to(keypoints.dtype), weight.to(keypoints.dtype)


def camera_changes(cam_R: torch.Tensor, cam_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every view's camera frame -> every view's: cam_R (V,3,3), cam_t (V,3) world-to-camera ->
    R (V,V,3,3), t (V,V,3) with x_b = R[a,b] x_a + t[a,b] (row a = relative_cameras from view a)."""
    R = cam_R[None] @ cam_R.transpose(1, 2)[:, None]                                    # R_b R_a^T
    return R, cam_t[None] - (R @ cam_t[:, None, :, None])[..., 0]


def move_bodies(body_model, rotmats, transl, betas, R, t=None):
    """Bodies re-expressed in another camera frame, x' = R x + t (body_model.move_body about the rest pelvis).

    rotmats (N,24,3,3), transl (N,3), betas (N,10), R (N,3,3), t (N,3) or None -> rotmats (N,24,3,3), transl (N,3)."""
    root, moved = move_body(rotmats[:, 0], transl, body_model.shaped(betas).rest_joints[:, 0], R, t)
    return torch.cat([root[:, None], rotmats[:, 1:]], 1), moved


def in_every_view(body_model, rot0, tr0, betas, rel_R, rel_t):
    """One body in view 0's camera frame -> the same body in each of V views (:func:`move_bodies`).
    rot0 (F,24,3,3), tr0 (F,3), betas (F,10), rel_R (V,3,3), rel_t (V,3) view 0 -> view v.
    Returns rotmats (V*F,24,3,3), transl (V*F,3), view-major."""
    v, f = len(rel_R), rot0.shape[0]
    rep = lambda x: x[None].expand(v, *x.shape).flatten(0, 1)
    return move_bodies(body_model, rep(rot0), rep(tr0), rep(betas), rel_R.repeat_interleave(f, 0),
                       rel_t.repeat_interleave(f, 0))


def rotation_mean(rotmats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted chordal mean of rotations: the rotation nearest (Frobenius) to the weighted mean matrix.

    rotmats (V,...,3,3), weights (V,...) (non-negative; all zero counts as equal) -> (...,3,3)."""
    w = torch.where(weights.sum(0, keepdim=True) > 0, weights, torch.ones_like(weights))
    M = (w[..., None, None] * rotmats).sum(0)
    U, _, Vh = torch.linalg.svd(M)
    flip = torch.ones_like(M[..., 0])
    flip[..., 2] = torch.sign(torch.linalg.det(U @ Vh))
    return U @ (flip[..., None] * Vh)
