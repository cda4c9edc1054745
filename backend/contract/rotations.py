"""Rotations in numpy, one copy for the contract, the add-on, the engine's numpy code (the world
frame) and the data conversion.

(The engine's differentiable torch versions are in backend/rotations.py; :func:`matrix_to_quaternion`
and :func:`quaternion_to_matrix` here do the same float operations, so their results are identical.)
Conventions: axis-angle (..., 3) in radians, matrices (..., 3, 3) acting on
column vectors, quaternions (..., 4) as (w, x, y, z), Blender's order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["axis_angle_to_matrix", "axis_angle_matrices", "matrix_to_quaternion", "quaternion_to_matrix",
           "quaternion_to_axis_angle", "matrix_to_axis_angle", "continuous_quaternions", "slerp",
           "rotation_between", "smallest_rotations"]


def _skew(v):
    """(..., 3) -> (..., 3, 3) cross-product matrix: ``_skew(v) @ u == v x u``."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = np.zeros_like(x)
    return np.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape[:-1] + (3, 3))


def axis_angle_to_matrix(aa):
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (Rodrigues, Taylor series near 0)."""
    aa = np.asarray(aa, dtype=np.float64)
    sq = (aa * aa).sum(-1)[..., None, None]
    small = sq < 1e-12
    t = np.sqrt(np.where(small, 1.0, sq))
    a = np.where(small, 1.0 - sq / 6.0, np.sin(t) / t)
    # 2 sin^2(t/2) / t^2 instead of (1 - cos t) / t^2: no cancellation for small t.
    b = np.where(small, 0.5 - sq / 24.0, 2.0 * (np.sin(t / 2.0) / t) ** 2)
    K = _skew(aa)
    return np.eye(3) + a * K + b * (K @ K)


def axis_angle_matrices(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations by ``angle`` (N,) about unit ``axis`` (N, 3) (Rodrigues with sin / cos)."""
    k = np.zeros(axis.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    a = angle[..., None, None]
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def matrix_to_quaternion(R):
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z), w >= 0.

    Shepperd's method: recover q from its largest component, never dividing by a
    small number (accurate near 180 degrees)."""
    R = np.asarray(R, dtype=np.float64)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = np.moveaxis(R.reshape(R.shape[:-2] + (9,)), -1, 0)
    # Row i is 4 q_i (w, x, y, z) for the pivot i in (w, x, y, z).
    rows = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)
    pivot = np.diagonal(rows, axis1=-2, axis2=-1).argmax(-1)  # 4 q_i^2, summing to 4: the largest is >= 1
    q = np.take_along_axis(rows, pivot[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotations; non-unit ones are normalised by the
    ``2 / |q|^2`` factor."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q, -1, 0)
    s = 2 / (q * q).sum(-1)
    m = [
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ]
    return np.stack(m, -1).reshape(q.shape[:-1] + (3, 3))


def quaternion_to_axis_angle(q):
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3) axis-angle, angle in [0, pi]."""
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(n, q[..., :1])
    # angle / n -> 2 / w as n -> 0.
    return v * np.where(n > 1e-8, angle / np.maximum(n, 1e-300), 2.0 / q[..., :1])


def matrix_to_axis_angle(R):
    """(..., 3, 3) rotations -> (..., 3) axis-angle through the quaternion (accurate near 0 and pi)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def continuous_quaternions(q):
    """Flip signs along axis 0 so successive quaternions have dot >= 0: (F, ..., 4).

    q and -q are the same rotation, but F-curves interpolate the numbers: a sign
    jump between two keys would swing the bone the long way round."""
    q = np.array(q, dtype=np.float64)
    for i in range(1, len(q)):
        flip = (q[i] * q[i - 1]).sum(-1) < 0
        q[i][flip] *= -1.0
    return q


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) at t (broadcasting to (..., 1)), the short way."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    angle = np.arccos(dot)
    sin = np.sin(angle)
    near = sin < 1e-6  # nearly equal: linear interpolation is exact enough, and never divides by ~0
    safe = np.where(near, 1.0, sin)
    a = np.where(near, 1.0 - t, np.sin((1.0 - t) * angle) / safe)
    b = np.where(near, t, np.sin(t * angle) / safe)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def smallest_rotations(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3, 3) smallest rotations turning directions u (N, 3) onto v (N, 3), through the angle
    atan2(|u x v|, u . v) about u x v (no turn where that axis vanishes; :func:`rotation_between` for one
    pair, exact at 180 degrees)."""
    u, v = _unit(u), _unit(v)
    axis = np.cross(u, v)
    s, c = np.linalg.norm(axis, axis=-1), (u * v).sum(-1)
    return axis_angle_matrices(_unit(axis), np.arctan2(s, c))


def rotation_between(a, b, eps=1e-9):
    """The smallest rotation (3, 3) taking direction ``a`` (3,) to direction ``b`` (3,).

    Opposite directions turn by 180 degrees about an axis perpendicular to ``a``;
    a zero-length direction (nothing to align) gives the identity."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < eps or nb < eps:
        return np.eye(3)
    a, b = a / na, b / nb
    c = float(a @ b)
    if c < -1.0 + 1e-8:  # opposite: 1 + c vanishes, so turn half way round a perpendicular axis
        axis = np.cross(a, np.eye(3)[np.argmin(np.abs(a))])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    K = _skew(np.cross(a, b))
    return np.eye(3) + K + K @ K / (1.0 + c)
