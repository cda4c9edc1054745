"""Virtual perspective cameras with realistic intrinsics, aimed at a person.

Conventions
- OpenCV camera frame: x right, y down, z forward (depth).  Pixels: origin at the
  top-left corner of the image, x to the right, y down; ``image_size`` is [w, h].
- World frame: the body model's frame (Y up, metres).  ``R`` maps world to camera:
  ``X_cam = R @ X_world + t``.
- Focal length: full-frame equivalent with the 36 mm *sensor width* convention,
  ``f_px = f_mm / 36 * image_width_px`` (square pixels, fx = fy).

Everything is batch-first: K (B,3,3), R (B,3,3), t (B,3), image_size (B,2).
Randomness only comes from the generator passed in (torch or numpy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.rotations import smallest_rotation

SENSOR_WIDTH_MM = 36.0                 # full-frame sensor width for f_mm -> f_px
FOCAL_MM_RANGE = (35.0, 85.0)          # normal to short-tele lenses, full-frame equivalent
# The unknown-focal benchmark (sample_cameras(fov_deg_range=...)): field of view across the image's long side,
# the convention of the engine's default (backend.contract.observations.focal_from_fov), phone-wide to normal.
FOV_DEG_RANGE = (40.0, 75.0)
FILL_RANGE = (0.3, 0.9)                # person's projected height / frame height
MAX_WIDTH_FILL = 0.95                  # the camera backs off when the person gets wider than this
PITCH_DEG_RANGE = (-5.0, 15.0)         # camera elevation seen from the person (positive: looking down)
ROLL_DEG_MAX = 3.0                     # roll about the optical axis, uniform in +-this
FIT_ITERS = 8                          # distance fixed-point iterations (contracts ~10x per step)
MIN_CAMERA_HEIGHT_M = 0.5              # above the person's lowest point (the floor); overrides low pitch
MIN_EXTENT_M = 0.1                     # floor on the person's size for a degenerate point set
# Off-centre placement (sample_cameras(off_centre=True)): people anywhere in the frame, partly outside.
DISTANCE_M_RANGE = (1.5, 10.0)         # camera to the person's centre
MAX_HEIGHT_FILL = 1.0                  # the camera backs off (within the range) until the person fits the height
OUTSIDE_MAX = 0.2                      # the person's image box may leave the frame by up to this share of its size
RESOLUTIONS = (                        # (w, h): 16:9 and 4:3, 480p to 4K
    (854, 480), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160),
    (640, 480), (960, 720), (1440, 1080), (2880, 2160),
)


@dataclass
class Cameras:
    """A batch of pinhole cameras; see the module docstring for conventions."""
    K: torch.Tensor           # (B,3,3) intrinsics, fx = fy
    R: torch.Tensor           # (B,3,3) world-to-camera rotation
    t: torch.Tensor           # (B,3)   world-to-camera translation
    image_size: torch.Tensor  # (B,2)   [w, h] pixels

    def __len__(self) -> int:
        return self.K.shape[0]

    @property
    def focal_length(self) -> torch.Tensor:
        """(B,) pixels."""
        return self.K[:, 0, 0]

    @property
    def principal_point(self) -> torch.Tensor:
        """(B,2) pixels."""
        return self.K[:, :2, 2]

    @property
    def centre(self) -> torch.Tensor:
        """(B,3) camera position in the world, -R^T t."""
        return -(self.R.transpose(1, 2) @ self.t[..., None])[..., 0]

    def to_like(self, x: torch.Tensor) -> Cameras:
        """The cameras on x's device and dtype."""
        return Cameras(*(y.to(x.device, x.dtype) for y in (self.K, self.R, self.t, self.image_size)))

    def repeat_interleave(self, n: int) -> Cameras:
        """Each camera repeated n times in a row: (B,...) -> (B*n,...)."""
        return Cameras(*(x.repeat_interleave(n, dim=0) for x in (self.K, self.R, self.t, self.image_size)))


def torch_generator(generator: torch.Generator | np.random.Generator) -> torch.Generator:
    """A torch.Generator as is; a numpy Generator seeds a fresh CPU torch.Generator (advancing it)."""
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, np.random.Generator):
        return torch.Generator().manual_seed(int(generator.integers(0, 2**63 - 1)))
    raise TypeError(f"expected a torch.Generator or numpy.random.Generator, got {type(generator).__name__}")


def uniform(lo: float, hi: float, shape, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Uniform samples in [lo, hi) on the CPU."""
    return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=dtype)


def focal_mm_to_px(focal_mm: torch.Tensor, width_px: torch.Tensor) -> torch.Tensor:
    """Full-frame equivalent focal length (mm, 36 mm sensor width) -> pixels."""
    return focal_mm / SENSOR_WIDTH_MM * width_px


def focal_from_fov_px(fov_deg: torch.Tensor, long_side_px: torch.Tensor) -> torch.Tensor:
    """Field of view (deg) across the image's long side (B,) -> focal length (B,) in pixels."""
    return long_side_px / (2 * torch.tan(torch.deg2rad(fov_deg) / 2))


def fov_deg(focal_px: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Field of view (B,) in degrees across the long side of images (B,2) seen with focal lengths (B,) px."""
    return torch.rad2deg(2 * torch.atan(image_size.amax(-1) / (2 * focal_px)))


def intrinsics(focal_px: torch.Tensor, principal_point: torch.Tensor) -> torch.Tensor:
    """(B,) focal and (B,2) principal point -> K (B,3,3)."""
    K = torch.zeros(focal_px.shape[0], 3, 3, dtype=focal_px.dtype, device=focal_px.device)
    K[:, 0, 0] = K[:, 1, 1] = focal_px
    K[:, :2, 2] = principal_point
    K[:, 2, 2] = 1.0
    return K


def look_at(eye: torch.Tensor, target: torch.Tensor, roll: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera R (B,3,3) for a camera at eye (B,3) looking at target (B,3), world up = +Y.

    Rows of R are the camera axes in world coordinates: right, down, forward.  ``roll`` (B,)
    radians then rotates the camera about its optical axis."""
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.zeros_like(fwd)
    up[:, 1] = 1.0
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, up, dim=-1), dim=-1)
    down = torch.linalg.cross(fwd, right, dim=-1)
    R = torch.stack([right, down, fwd], dim=1)
    if roll is not None:
        c, s = torch.cos(roll), torch.sin(roll)
        o, i = torch.zeros_like(c), torch.ones_like(c)
        Rz = torch.stack([c, -s, o, s, c, o, o, o, i], dim=-1).reshape(-1, 3, 3)
        R = Rz @ R
    return R


def world_to_camera(points: torch.Tensor, cam: Cameras) -> torch.Tensor:
    """(B,N,3) world points -> (B,N,3) camera-frame points."""
    return points @ cam.R.transpose(1, 2) + cam.t[:, None]


def project(points: torch.Tensor, cam: Cameras, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of world points (B,N,3) -> pixels (B,N,2) and depth (B,N) in metres.

    Points at depth <= 0 are behind the camera: their pixels are meaningless (the depth
    is clamped to +-eps only to keep them finite); callers mask them with ``depth``."""
    pc = world_to_camera(points, cam)
    z = pc[..., 2]
    z_safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    xy = pc[..., :2] / z_safe[..., None]
    f = cam.focal_length[:, None, None]
    return xy * f + cam.principal_point[:, None], z


def _points_box(points: torch.Tensor) -> torch.Tensor:
    """(B,2,3) is read as [min, max] box corners and expanded to the 8 corners; (B,N,3) passes."""
    if points.shape[1] != 2:
        return points
    lo, hi = points.amin(1), points.amax(1)
    corners = [torch.stack([(lo, hi)[i][:, 0], (lo, hi)[j][:, 1], (lo, hi)[k][:, 2]], -1)
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return torch.stack(corners, 1)


def _aim(target, dist, yaw, pitch, roll, ground):
    """R (B,3,3), t (B,3) of a camera at ``dist`` from ``target`` along (yaw, pitch), looking at it."""
    # Keep the camera at least MIN_CAMERA_HEIGHT_M above the person's lowest point.
    lowest = torch.asin(((ground + MIN_CAMERA_HEIGHT_M - target[:, 1]) / dist).clamp(-1.0, 1.0))
    p = torch.maximum(pitch, lowest)
    eye = target + dist[:, None] * torch.stack(
        [torch.sin(yaw) * torch.cos(p), torch.sin(p), torch.cos(yaw) * torch.cos(p)], -1)
    R = look_at(eye, target, roll)
    return R, -(R @ eye[..., None])[..., 0]


def sample_cameras(points3d_or_bbox: torch.Tensor, generator, *,
                   fill_range=FILL_RANGE, focal_mm_range=FOCAL_MM_RANGE, resolutions=RESOLUTIONS,
                   pitch_deg_range=PITCH_DEG_RANGE, roll_deg_max=ROLL_DEG_MAX, yaw: torch.Tensor | None = None,
                   principal_point_jitter: float = 0.0, max_width_fill=MAX_WIDTH_FILL,
                   off_centre: bool = False, fov_deg_range: tuple[float, float] | None = None) -> Cameras:
    """One random camera per batch entry, aimed at that entry's person.

    points3d_or_bbox: (B,N,3) world points of the person (joints/keypoints; for a video
    window pass all its frames' points so the whole window stays in view), or (B,2,3)
    [min, max] box corners.  Draws per camera: a resolution from ``resolutions``, a focal
    length uniform in ``focal_mm_range`` (full-frame mm; or, with ``fov_deg_range``, a field of view
    across the image's long side uniform in that range, degrees), a principal point at the image
    centre moved by up to ``principal_point_jitter`` x (w, h), a yaw around the person
    (uniform over 360 deg unless ``yaw`` (B,) radians is given; yaw 0 puts the camera on the
    world +Z side, in front of an unrotated body), an elevation pitch (camera above the
    person looking down when positive) and a roll, and a target fill: the distance along
    that direction is solved so that the points' projected height is ``fill`` x the frame
    height (unless they would then be wider than ``max_width_fill`` x the width, where the
    camera backs off further).  The
    camera looks at the person with the person's image box centred in the frame; its
    height follows from pitch and distance, and is kept at least ``MIN_CAMERA_HEIGHT_M``
    above the person's lowest point (which raises the pitch where needed).

    ``off_centre``: instead of a fill, a distance uniform in ``DISTANCE_M_RANGE`` (raised where
    needed, within the range, so that the person is at most ``MAX_HEIGHT_FILL`` x the frame height),
    then the camera turns about its centre so that the person's box centre lands anywhere in the frame
    (uniform over the positions where at most ``OUTSIDE_MAX`` of the box's width / height leaves
    it): people at the edges, partly outside (the detector model drops what is outside).  The
    draws for the centred placement come first, in the same order, so seeds keep their cameras.
    """
    g = torch_generator(generator)
    points = torch.as_tensor(points3d_or_bbox)
    pts = _points_box(points).detach().to("cpu", torch.float64)
    b = pts.shape[0]
    res = torch.tensor(resolutions, dtype=torch.float64)[torch.randint(len(resolutions), (b,), generator=g)]
    # Either draw is one uniform per camera, so the draws after it (and the seeds' cameras) stay in step.
    f_px = (focal_from_fov_px(uniform(*fov_deg_range, b, g), res.amax(-1)) if fov_deg_range
            else focal_mm_to_px(uniform(*focal_mm_range, b, g), res[:, 0]))
    pp = res / 2 + principal_point_jitter * uniform(-1.0, 1.0, (b, 2), g) * res
    K = intrinsics(f_px, pp)
    yaw = uniform(0.0, 2 * math.pi, b, g) if yaw is None else torch.as_tensor(yaw, dtype=torch.float64).cpu()
    pitch = torch.deg2rad(uniform(*pitch_deg_range, b, g))
    roll = torch.deg2rad(uniform(-roll_deg_max, roll_deg_max, b, g))
    fill = uniform(*fill_range, b, g)

    target = (pts.amin(1) + pts.amax(1)) / 2
    ground = pts[..., 1].amin(1)
    extent = (pts.amax(1) - pts.amin(1)).amax(-1).clamp_min(MIN_EXTENT_M)
    if off_centre:
        return _off_centre(pts, K, res, target, ground, extent, yaw, pitch, roll, g).to_like(points)
    dist = f_px * extent / (fill * res[:, 1]) + extent  # pinhole guess, refined below
    R, t, _ = _frame_person(pts, K, res, target, dist, yaw, pitch, roll, ground, (fill, max_width_fill))
    return Cameras(K, R, t, res).to_like(points)


def _frame_person(pts, K, res, target, dist, yaw, pitch, roll, ground, fill=None):
    """R, t of a camera along (yaw, pitch) from the person with the points' image box centred in the frame,
    and the box's size (B,2) px.  ``fill`` (height fill (B,), max width fill): the distance is solved for
    it; None keeps ``dist``."""
    b, f = len(pts), K[:, 0, 0]
    for _ in range(FIT_ITERS):
        R, t = _aim(target, dist, yaw, pitch, roll, ground)
        uv, _ = project(pts, Cameras(K, R, t, res))
        lo, hi = uv.amin(1), uv.amax(1)
        # Centre the person's image box in the frame: slide camera and target sideways by the
        # box's offset back-projected at the target's depth (perspective and roll shift it).
        shift = torch.cat([((lo + hi) / 2 - res / 2) * (dist / f)[:, None], torch.zeros(b, 1, dtype=dist.dtype)], -1)
        target = target + (R.transpose(1, 2) @ shift[..., None])[..., 0]
        if fill is not None:
            # The projected size goes as ~1/distance, so rescaling the distance by the size ratio
            # converges fast (the error shrinks by about depth-extent/distance per step).
            size = hi - lo
            dist = dist * torch.maximum(size[:, 1] / (fill[0] * res[:, 1]), size[:, 0] / (fill[1] * res[:, 0]))
    R, t = _aim(target, dist, yaw, pitch, roll, ground)
    uv, _ = project(pts, Cameras(K, R, t, res))
    return R, t, uv.amax(1) - uv.amin(1)


def _turn_towards(R, t, K, from_px, to_px):
    """The camera (R, t) turned about its centre so that what it saw at pixel from_px (B,2) is seen at to_px."""
    f, pp = K[:, 0, 0][:, None], K[:, :2, 2]
    ray = lambda px: torch.cat([(px - pp) / f, torch.ones_like(f)], -1)
    turn = smallest_rotation(ray(from_px), ray(to_px))
    return turn @ R, (turn @ t[..., None])[..., 0]


def _off_centre(pts, K, res, target, ground, extent, yaw, pitch, roll, g) -> Cameras:
    """sample_cameras(off_centre=True): distance drawn, then the camera turned to put the person anywhere."""
    lo_m, hi_m = DISTANCE_M_RANGE
    dist = uniform(lo_m, hi_m, len(pts), g)
    R, t, size = _frame_person(pts, K, res, target, dist, yaw, pitch, roll, ground)
    # Back off (within the range) where the person would be taller than the frame; size ~ 1/distance.
    dist = (dist * (size[:, 1] / (MAX_HEIGHT_FILL * res[:, 1])).clamp_min(1.0)).clamp_max(hi_m)
    R, t, size = _frame_person(pts, K, res, target, dist, yaw, pitch, roll, ground)
    half = size * (0.5 - OUTSIDE_MAX)
    lo, hi = half, res - half
    where = torch.where(lo < hi, lo + (hi - lo) * uniform(0.0, 1.0, (len(pts), 2), g), res / 2)
    R, t = _turn_towards(R, t, K, res / 2, where)
    return Cameras(K, R, t, res)
