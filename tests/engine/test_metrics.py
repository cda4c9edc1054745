"""Tests for backend.metrics against hand-computed values."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend import metrics


def random_joints(shape, seed):
    return np.random.default_rng(seed).normal(scale=0.3, size=(*shape, 3))


# -------------------------------------------------------------------- mpjpe


def test_mpjpe_two_joint_skeleton_by_hand():
    # Root at the origin in both; second joint off by (0.03, 0.04, 0) m = 50 mm.
    gt = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pred = np.array([[0.0, 0.0, 0.0], [0.03, 1.04, 0.0]])
    # Errors: 0 and 50 mm -> mean 25 mm.
    assert metrics.mpjpe(pred, gt) == pytest.approx(25.0)
    # Translating pred does not matter once roots are aligned ...
    assert metrics.mpjpe(pred + [1.0, 2.0, 3.0], gt) == pytest.approx(25.0)
    # ... but does without alignment: a 1 m shift of the first joint only.
    shifted = pred.copy()
    shifted[0, 0] += 1.0
    assert metrics.mpjpe(shifted, gt, root=None) == pytest.approx((1000.0 + 50.0) / 2)
    # Aligning at joint 1 instead: joint 0 is then off by -(0.03, 0.04, 0).
    assert metrics.mpjpe(pred, gt, root=1) == pytest.approx(25.0)


def test_mpjpe_units_metres_to_mm():
    gt = np.zeros((3, 3))
    pred = np.zeros((3, 3))
    pred[:, 2] = 0.001  # 1 mm everywhere, so root alignment removes it
    assert metrics.mpjpe(pred, gt) == pytest.approx(0.0)
    assert metrics.mpjpe(pred, gt, root=None) == pytest.approx(1.0)


def test_mpjpe_batched_shapes_and_types():
    gt = random_joints((2, 5, 24), 0)
    pred = gt + random_joints((2, 5, 24), 1) * 0.1
    err = metrics.mpjpe(pred, gt)
    assert err.shape == (2, 5) and err.dtype == np.float64
    np.testing.assert_allclose(err[1, 2], metrics.mpjpe(pred[1, 2], gt[1, 2]))
    # torch tensors (float32, with grad) are accepted and give the same result.
    t = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(metrics.mpjpe(t, torch.tensor(gt)), err)
    np.testing.assert_allclose(metrics.mpjpe(t.float(), gt), err, rtol=1e-5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        metrics.mpjpe(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        metrics.pa_mpjpe(np.zeros((4, 2)), np.zeros((4, 2)))


# ------------------------------------------------------------------- procrustes


def test_pa_mpjpe_zero_for_similarity_transform():
    gt = random_joints((8, 24), 2)
    R = Rotation.random(8, random_state=3).as_matrix()
    scale = np.linspace(0.5, 2.0, 8)
    t = random_joints((8,), 4)
    pred = scale[:, None, None] * gt @ np.swapaxes(R, -1, -2) + t[:, None, :]
    assert metrics.mpjpe(pred, gt).min() > 1.0  # genuinely different before alignment
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), 0.0, atol=1e-9)
    np.testing.assert_allclose(metrics.procrustes_align(pred, gt), gt, atol=1e-12)


def test_procrustes_never_reflects():
    gt = random_joints((24,), 5)
    mirrored = gt * [-1.0, 1.0, 1.0]
    # A reflection could map one onto the other exactly; a rotation cannot.
    assert metrics.pa_mpjpe(mirrored, gt) > 10.0
    aligned = metrics.procrustes_align(mirrored, gt)
    # The fitted map is a proper similarity: recover it and check det > 0.
    a = aligned - aligned.mean(0)
    m = mirrored - mirrored.mean(0)
    A, *_ = np.linalg.lstsq(m, a, rcond=None)
    assert np.linalg.det(A) > 0


def test_procrustes_is_optimal_by_hand():
    # Planar 3-joint case: gt is a unit-scale copy of pred rotated 90 deg about z,
    # plus noise on one joint; the aligned error must not exceed that of the true map.
    pred = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    gt = pred @ Rz.T
    gt[1] += [0.0, 0.0, 0.1]
    pa = metrics.pa_mpjpe(pred, gt)
    naive = metrics.mpjpe(pred @ Rz.T, gt, root=None)
    assert 0 < pa <= naive + 1e-9
    # Perturbing the optimal alignment only increases the squared error.
    aligned = metrics.procrustes_align(pred, gt)
    best = ((aligned - gt) ** 2).sum()
    for eps in (1e-3, -1e-3):
        small = Rotation.from_rotvec([eps, eps, 0]).as_matrix()
        c = aligned.mean(0)
        assert (((aligned - c) @ small.T + c - gt) ** 2).sum() > best
        assert ((c + (1 + eps) * (aligned - c) - gt) ** 2).sum() > best


def test_procrustes_batched_matches_single():
    gt = random_joints((3, 4, 14), 6)
    pred = random_joints((3, 4, 14), 7)
    batched = metrics.pa_mpjpe(pred, gt)
    assert batched.shape == (3, 4)
    np.testing.assert_allclose(batched[2, 1], metrics.pa_mpjpe(pred[2, 1], gt[2, 1]))


def test_procrustes_collapsed_prediction_is_finite():
    gt = random_joints((5,), 8)
    aligned = metrics.procrustes_align(np.ones((5, 3)), gt)
    np.testing.assert_allclose(aligned, np.broadcast_to(gt.mean(0), (5, 3)))


# ----------------------------------------------------------------- accel error


def test_accel_error_constant_velocity_is_zero():
    t = np.arange(10.0)[:, None, None]
    gt = np.zeros((10, 2, 3))
    pred = gt + t * np.array([0.01, -0.02, 0.03])  # linear drift: zero acceleration
    err = metrics.accel_error(pred, gt)
    assert err.shape == (8,)
    np.testing.assert_allclose(err, 0.0, atol=1e-9)


def test_accel_error_quadratic_motion_by_hand():
    # x(t) = 0.5 * a * t^2 with a = 0.002 m/frame^2 on joint 0 only, gt static.
    # Second difference of 0.5 a t^2 is exactly a = 2 mm/frame^2; joint 1 has 0,
    # so the mean over the two joints is 1 mm/frame^2 on every frame.
    t = np.arange(6.0)
    pred = np.zeros((6, 2, 3))
    pred[:, 0, 1] = 0.5 * 0.002 * t**2
    err = metrics.accel_error(pred, np.zeros_like(pred))
    np.testing.assert_allclose(err, np.full(4, 1.0))
    # Symmetric in its arguments, and zero against itself.
    np.testing.assert_allclose(metrics.accel_error(np.zeros_like(pred), pred), err)
    np.testing.assert_allclose(metrics.accel_error(pred, pred), 0.0)


def test_accel_error_batched():
    gt = random_joints((2, 7, 5), 9)
    pred = random_joints((2, 7, 5), 10)
    err = metrics.accel_error(pred, gt)
    assert err.shape == (2, 5)
    np.testing.assert_allclose(err[1], metrics.accel_error(pred[1], gt[1]))


# --------------------------------------------------------------------- joints


def test_smpl24_to_lsp14():
    idx = metrics.SMPL24_TO_LSP14
    assert len(idx) == 14 and len(set(idx)) == 14 and all(0 <= i < 24 for i in idx)
    # Spot checks: LSP starts with right ankle (SMPL 8), ends with neck, head.
    assert idx[0] == 8 and idx[6] == 21 and idx[-2:] == (12, 15)
    joints = np.arange(24 * 3, dtype=float).reshape(24, 3)
    assert joints[..., idx, :].shape == (14, 3)
    assert torch.as_tensor(joints)[None][..., idx, :].shape == (1, 14, 3)
    np.testing.assert_array_equal(joints[..., idx, :][0], joints[8])
