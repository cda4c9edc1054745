"""Rotation conversions between axis-angle, matrices, quaternions and the 6D representation.

Conventions (all functions are batched over arbitrary leading dims ``...``,
differentiable, and work in float32 and float64):

* axis-angle ``(..., 3)``: unit axis times angle in radians.
* matrix ``(..., 3, 3)``: rotations act on column vectors, ``x' = R @ x``.
* quaternion ``(..., 4)``: ``(w, x, y, z)``, scalar first (Blender's order).
* 6D ``(..., 6)``: the first two *columns* of ``R`` (Zhou et al. 2019), stored
  row-major as ``R[..., :, :2].reshape(..., 6)``, i.e.
  ``[R00, R01, R10, R11, R20, R21]``. Column 0 is ``x[..., 0::2]`` and
  column 1 is ``x[..., 1::2]``.
"""

import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "axis_angle_to_rot6d",
    "rot6d_to_axis_angle",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "smallest_rotation",
]


def _taylor_threshold(dtype, c):
    """Bound on ``x = t^2`` below which a series truncated after ``x^2`` is exact to
    machine precision, given that its first dropped term is ``x^3 / c``."""
    return (c * torch.finfo(dtype).eps) ** (1.0 / 3.0)


def _split_angle(sq, dtype):
    """Returns ``(small, t)`` for squared angles ``sq``: a mask of the Taylor regime
    and the angle ``sqrt(sq)`` with small entries replaced by 1.

    Replacing before the sqrt keeps the unused branch of ``torch.where`` finite,
    so its (masked) gradient is 0 rather than NaN at zero rotation.
    """
    # sin(t)/t drops t^6/5040 first; the other series used with it converge faster.
    small = sq < _taylor_threshold(dtype, 5040.0)
    return small, torch.sqrt(torch.where(small, torch.ones_like(sq), sq))


def _skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrix, ``_skew(v) @ u == v x u``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).unflatten(-1, (3, 3))


def smallest_rotation(a, b):
    """The smallest rotation (B,3,3) taking direction a (B,3) onto direction b (B,3) (any lengths, not opposite).

    Rodrigues with v = a x b, c = a . b (unit vectors): R = I + [v]x + [v]x^2 / (1 + c); it turns
    about the axis normal to both, so a camera turned by it pans and tilts without rolling."""
    a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    vx = _skew(torch.linalg.cross(a, b, dim=-1))
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(vx)
    return eye + vx + vx @ vx / (1.0 + (a * b).sum(-1))[..., None, None]


def axis_angle_to_matrix(aa):
    """Rodrigues' formula: (..., 3) axis-angle -> (..., 3, 3) rotation matrix.

    ``R = I + a K + b K^2`` with ``K = skew(aa)``, ``a = sin(t)/t`` and
    ``b = (1 - cos(t))/t^2``; both use Taylor series near ``t = 0``.
    """
    sq = (aa * aa).sum(-1)
    small, t = _split_angle(sq, aa.dtype)
    a = torch.where(small, 1 - sq / 6 + sq * sq / 120, torch.sin(t) / t)
    # 2 sin^2(t/2) instead of 1 - cos(t): no cancellation for small t.
    b = torch.where(small, 0.5 - sq / 24 + sq * sq / 720, 2 * (torch.sin(t / 2) / t) ** 2)
    K = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def axis_angle_to_quaternion(aa):
    """(..., 3) axis-angle -> (..., 4) unit quaternion (w, x, y, z).

    ``w >= 0`` whenever the angle is at most pi.
    """
    sq = (aa * aa).sum(-1)
    small, t = _split_angle(sq, aa.dtype)
    w = torch.where(small, 1 - sq / 8 + sq * sq / 384, torch.cos(t / 2))
    s = torch.where(small, 0.5 - sq / 48 + sq * sq / 3840, torch.sin(t / 2) / t)  # sin(t/2)/t
    return torch.cat([w[..., None], s[..., None] * aa], dim=-1)


def quaternion_to_axis_angle(q):
    """(..., 4) quaternion (w, x, y, z), not necessarily unit -> (..., 3) axis-angle.

    The angle is in [0, pi]: ``q`` and ``-q`` give the same result.
    """
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    sq = (v * v).sum(-1)
    # Taylor regime when |v|/w is small; the comparison is scale-invariant.
    small = sq < _taylor_threshold(q.dtype, 7.0) * w * w  # atan(r)/r drops r^6/7
    s = torch.sqrt(torch.where(small, torch.ones_like(sq), sq))
    w_safe = torch.where(small, w, torch.ones_like(w))
    # angle / |v| = 2 atan2(|v|, w) / |v| = (2 / w) atan(r) / r with r^2 = |v|^2 / w^2.
    r2 = sq / w_safe**2
    factor = torch.where(small, 2 / w_safe * (1 - r2 / 3 + r2 * r2 / 5), 2 * torch.atan2(s, w) / s)
    return factor[..., None] * v


def quaternion_to_matrix(q):
    """(..., 4) quaternion (w, x, y, z) -> (..., 3, 3) rotation matrix.

    Non-unit quaternions are normalised implicitly (the ``2 / |q|^2`` factor).
    """
    w, x, y, z = q.unbind(-1)
    s = 2 / (q * q).sum(-1)
    m = [
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ]
    return torch.stack(m, dim=-1).unflatten(-1, (3, 3))


def matrix_to_quaternion(R):
    """(..., 3, 3) rotation matrix -> (..., 4) unit quaternion (w, x, y, z) with ``w >= 0``.

    Shepperd's method: of the four ways to recover q from R, use the one whose
    pivot component is largest, so there is never a division by a small number
    (this is what keeps angles near pi accurate).
    """
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = R.flatten(-2).unbind(-1)
    # Each row is 4 * q_i * (w, x, y, z) for pivot i = w, x, y, z.
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], dim=-2)
    # The diagonal holds 4 q_i^2; they sum to 4, so the largest is >= 1.
    pivot = torch.diagonal(candidates, dim1=-2, dim2=-1).argmax(-1)
    q = torch.take_along_dim(candidates, pivot[..., None, None], dim=-2).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(R):
    """(..., 3, 3) rotation matrix -> (..., 3) axis-angle with angle in [0, pi].

    Goes through the quaternion, which stays well conditioned near 0 and pi.
    At exactly pi the sign of the axis is arbitrary (both are valid).
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def matrix_to_rot6d(R):
    """(..., 3, 3) rotation matrix -> (..., 6): first two columns, row-major.

    Layout ``[R00, R01, R10, R11, R20, R21]`` (see module docstring).
    """
    return R[..., :, :2].flatten(-2)


def rot6d_to_matrix(x):
    """(..., 6) 6D representation -> (..., 3, 3) rotation matrix via Gram-Schmidt.

    Any non-degenerate input maps to a proper rotation; exact inverse of
    :func:`matrix_to_rot6d` on rotations.
    """
    a1, a2 = x[..., 0::2], x[..., 1::2]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def axis_angle_to_rot6d(aa):
    """(..., 3) axis-angle -> (..., 6) 6D representation."""
    return matrix_to_rot6d(axis_angle_to_matrix(aa))


def rot6d_to_axis_angle(x):
    """(..., 6) 6D representation -> (..., 3) axis-angle with angle in [0, pi]."""
    return matrix_to_axis_angle(rot6d_to_matrix(x))
