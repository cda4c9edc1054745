"""Standard 3D human pose errors: MPJPE, PA-MPJPE and acceleration error.

Inputs are joint positions in metres, ``(..., J, 3)`` (numpy arrays, torch
tensors or nested sequences); outputs are numpy float64 in millimetres, one
value per sample (or per frame for :func:`accel_error`). Everything is
computed in float64 whatever the input dtype.
"""

import numpy as np

__all__ = ["SMPL24_TO_LSP14", "mpjpe", "procrustes_align", "pa_mpjpe", "accel_error", "jitter",
           "align_on_floor", "root_trajectory_error", "foot_skating", "floor_contact_errors", "facing_angles"]

# Indices into the 24 SMPL joints of the 14 LSP joints, in LSP order:
# r ankle, r knee, r hip, l hip, l knee, l ankle, r wrist, r elbow, r shoulder,
# l shoulder, l elbow, l wrist, neck, head top.
# Approximation: SMPL has no LSP neck / head-top joints, so SMPL's neck (12)
# and head (15, centre of the head, not its top) stand in for them.
# Use as ``joints[..., SMPL24_TO_LSP14, :]``.
SMPL24_TO_LSP14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)

_MM = 1000.0  # metres -> millimetres


def _as_f64(x):
    """Array-like or torch tensor -> float64 numpy array (torch is not imported here)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(pred, gt):
    """Converts and checks a (pred, gt) pair of joint arrays (..., J, 3)."""
    pred, gt = _as_f64(pred), _as_f64(gt)
    if pred.shape != gt.shape or pred.ndim < 2 or pred.shape[-1] != 3:
        raise ValueError(f"expected matching (..., J, 3) arrays, got {pred.shape} and {gt.shape}")
    return pred, gt


def mpjpe(pred, gt, root=0):
    """Mean per-joint position error.

    pred, gt: (..., J, 3) in metres. ``root``: index of the joint (the pelvis)
    both skeletons are translated to before comparing; ``None`` compares raw
    positions. Returns (...,) in mm: mean over joints of the Euclidean distance.
    """
    pred, gt = _pair(pred, gt)
    if root is not None:
        pred = pred - pred[..., root : root + 1, :]
        gt = gt - gt[..., root : root + 1, :]
    return np.linalg.norm(pred - gt, axis=-1).mean(-1) * _MM


def procrustes_align(pred, gt):
    """Similarity transform of ``pred`` best matching ``gt`` in least squares.

    pred, gt: (..., J, 3). Returns (..., J, 3) float64 ``s * pred @ R.T + t``
    where scale ``s``, proper rotation ``R`` (det +1, never a reflection) and
    translation ``t`` minimise the squared error to ``gt`` (Umeyama, 1991).
    """
    pred, gt = _pair(pred, gt)
    mu_p, mu_g = pred.mean(-2, keepdims=True), gt.mean(-2, keepdims=True)
    x, y = pred - mu_p, gt - mu_g
    # Cross-covariance (up to 1/J); its SVD gives the optimal rotation.
    cov = np.swapaxes(y, -1, -2) @ x
    u, sig, vt = np.linalg.svd(cov)
    # Flip the weakest axis when the best orthogonal map would be a reflection.
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    flip = np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)
    rot = (u * flip[..., None, :]) @ vt
    var_x = (x * x).sum((-2, -1))
    # A collapsed prediction (all joints equal) has no defined scale; use 0.
    scale = (sig * flip).sum(-1) / np.where(var_x > 0, var_x, 1.0)
    return scale[..., None, None] * x @ np.swapaxes(rot, -1, -2) + mu_g


def pa_mpjpe(pred, gt):
    """Procrustes-aligned MPJPE: pred, gt (..., J, 3) in metres -> (...,) in mm."""
    pred, gt = _pair(pred, gt)
    return mpjpe(procrustes_align(pred, gt), gt, root=None)


def accel_error(pred, gt):
    """Acceleration error of joint trajectories.

    pred, gt: (..., F, J, 3) in metres. The acceleration at frame t is the
    second difference ``x[t-1] - 2 x[t] + x[t+1]``. Returns (..., F-2) in
    mm/frame^2: per interior frame, mean over joints of the norm of the
    acceleration difference (empty when F < 3).
    """
    pred, gt = _pair(pred, gt)
    if pred.ndim < 3:
        raise ValueError(f"expected (..., F, J, 3) sequences, got {pred.shape}")

    def accel(x):
        return x[..., :-2, :, :] - 2 * x[..., 1:-1, :, :] + x[..., 2:, :, :]

    return np.linalg.norm(accel(pred) - accel(gt), axis=-1).mean(-1) * _MM


# -- animator measures: world frame (Y up, floor at 0), one clip (F,J,3) ---------------------------
def jitter(joints):
    """Mean acceleration magnitude (mm/frame^2) of joint trajectories (F,J,3) in metres: how much
    the motion shakes; compare with the true motion's."""
    j = _as_f64(joints)
    return float(np.linalg.norm(j[:-2] - 2 * j[1:-1] + j[2:], axis=-1).mean() * _MM) if len(j) > 2 else 0.0


def align_on_floor(pred, gt):
    """pred (F,J,3) turned about the vertical and shifted along the floor to best match gt (least
    squares over every joint and frame); heights are left alone (the floor is shared)."""
    pred, gt = _pair(pred, gt)
    p, g = pred[..., [0, 2]].reshape(-1, 2), gt[..., [0, 2]].reshape(-1, 2)
    mp, mg = p.mean(0), g.mean(0)
    x, y = p - mp, g - mg
    angle = np.arctan2((x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]).sum(), (x * y).sum())
    c, s = np.cos(angle), np.sin(angle)
    xz = (x @ np.array([[c, s], [-s, c]])) + mg
    out = pred.copy()
    out[..., 0], out[..., 2] = xz[:, 0].reshape(pred.shape[:-1]), xz[:, 1].reshape(pred.shape[:-1])
    return out


def root_trajectory_error(pred, gt, root=0):
    """Mean distance (mm) of the root joint's world path after align_on_floor; (F,J,3) metres."""
    aligned = align_on_floor(pred, gt)
    return float(np.linalg.norm(aligned[:, root] - _as_f64(gt)[:, root], axis=-1).mean() * _MM)


def foot_skating(feet, contacts):
    """Mean horizontal motion (mm/frame) of foot joints (F,4,3) over consecutive frames in which
    both are in contact (F,4) bool (use the true contacts); nan when there is no such pair."""
    feet = _as_f64(feet)
    both = contacts[1:] & contacts[:-1]
    step = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1)
    return float(step[both].mean() * _MM) if both.any() else float("nan")


def floor_contact_errors(feet, contacts, sole_offsets, tolerance_m=0.02):
    """Sole heights of feet in contact: feet (F,4,3) world joints (left ankle, right ankle, left
    ball, right ball), contacts (F,4), sole_offsets (4,) height of each joint above its sole.

    Per frame and foot in contact, the foot's lowest sole point; returns mean penetration and
    floating (mm), the worst of each, and the share of contact frames beyond ``tolerance_m``."""
    soles = _as_f64(feet)[..., 1] - np.asarray(sole_offsets, np.float64)
    heights, in_contact = [], []
    for foot in ((0, 2), (1, 3)):
        heights.append(soles[:, foot].min(1))
        in_contact.append(contacts[:, foot].any(1))
    h = np.stack(heights, 1)[np.stack(in_contact, 1)]
    if h.size == 0:
        nan = float("nan")
        return dict(penetration_mm=nan, floating_mm=nan, max_penetration_mm=nan, max_floating_mm=nan,
                    beyond_tolerance=nan)
    return dict(penetration_mm=float(np.maximum(-h, 0).mean() * _MM), floating_mm=float(np.maximum(h, 0).mean() * _MM),
                max_penetration_mm=float(np.maximum(-h, 0).max() * _MM),
                max_floating_mm=float(np.maximum(h, 0).max() * _MM),
                beyond_tolerance=float((np.abs(h) > tolerance_m).mean()))


def facing_angles(joints, up=(0.0, -1.0, 0.0)):
    """Facing direction (F,) radians about ``up`` of bodies (F,24,3): the normal of the hips'
    line (left hip 1 -> right hip 2) and up, laid on the floor; default up is the OpenCV camera's."""
    j = _as_f64(joints)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    across = j[:, 2] - j[:, 1]
    fwd = np.cross(across, up)
    ref = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    e1 = ref - (ref @ up) * up
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return np.arctan2(fwd @ e2, fwd @ e1)


def sample_joint_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Per-sample MPJPE / PA-MPJPE in mm on the 24 SMPL joints and the 14 LSP joints (pelvis-aligned).

    pred, gt (N,24,3) metres -> dict of (N,) arrays."""
    lsp = list(SMPL24_TO_LSP14)
    rel = lambda j: j - j[:, :1]
    return dict(mpjpe24=mpjpe(pred, gt), pa_mpjpe24=pa_mpjpe(pred, gt),
                mpjpe14=mpjpe(rel(pred)[:, lsp], rel(gt)[:, lsp], root=None),
                pa_mpjpe14=pa_mpjpe(pred[:, lsp], gt[:, lsp]))


def joint_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Mean MPJPE / PA-MPJPE in mm on the 24 SMPL joints and the 14 LSP joints (pelvis-aligned)."""
    return {k: float(v.mean()) for k, v in sample_joint_errors(pred, gt).items()}
