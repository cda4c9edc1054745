"""Standard 3D human pose errors: MPJPE, PA-MPJPE and acceleration error.

Inputs are joint positions in metres, ``(..., J, 3)`` (numpy arrays, torch
tensors or nested sequences); outputs are numpy float64 in millimetres, one
value per sample (or per frame for :func:`accel_error`). Everything is
computed in float64 whatever the input dtype.
"""

import numpy as np

__all__ = ["SMPL24_TO_LSP14", "mpjpe", "procrustes_align", "pa_mpjpe", "accel_error"]

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
