"""Tests for backend.rotations: round trips, scipy agreement, edge angles, gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from backend import rotations as rot

# Deterministic and quick: same examples on every run, no per-example deadline.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True)

DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def random_rotations(n, seed):
    return Rotation.random(n, random_state=seed)


def random_axis_angle(shape, seed, max_angle=math.pi - 1e-3, dtype=torch.float64):
    """Random axis-angle vectors with angles uniform in (0, max_angle)."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(*shape, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(*shape, 1, generator=g, dtype=torch.float64) * max_angle
    return (axis * angle).to(dtype)


def assert_rotation(R, tol):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=tol, rtol=0)


def same_quaternion(q1, q2, tol):
    """q and -q are the same rotation."""
    err = torch.minimum((q1 - q2).abs().amax(-1), (q1 + q2).abs().amax(-1))
    assert err.max().item() < tol, err.max().item()


axis_st = st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: sum(c * c for c in v) > 1e-4)
angle_st = st.floats(1e-9, math.pi - 1e-4)


def make_aa(axis, angle, dtype=torch.float64):
    a = torch.tensor(axis, dtype=torch.float64)
    return (a / a.norm() * angle).to(dtype)


# ---------------------------------------------------------------- properties


@PROPERTY
@given(axis=axis_st, angle=angle_st)
def test_axis_angle_round_trip(axis, angle):
    aa = make_aa(axis, angle)
    R = rot.axis_angle_to_matrix(aa)
    assert_rotation(R, 1e-12)
    # Near pi the axis is ill-conditioned (error ~ eps / (pi - angle)); 1e-4 margin -> ~1e-11.
    torch.testing.assert_close(rot.matrix_to_axis_angle(R), aa, atol=1e-10, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(aa)), aa, atol=1e-12, rtol=0)


@PROPERTY
@given(axis=axis_st, angle=angle_st)
def test_axis_angle_round_trip_float32(axis, angle):
    aa = make_aa(axis, min(angle, math.pi - 1e-2), torch.float32)
    torch.testing.assert_close(rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(aa)), aa, atol=2e-5, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_round_trips(dtype):
    R = torch.tensor(random_rotations(500, 0).as_matrix(), dtype=dtype)
    tol = TOL[dtype]
    torch.testing.assert_close(rot.rot6d_to_matrix(rot.matrix_to_rot6d(R)), R, atol=tol, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_matrix(rot.matrix_to_quaternion(R)), R, atol=tol, rtol=0)
    torch.testing.assert_close(rot.axis_angle_to_matrix(rot.matrix_to_axis_angle(R)), R, atol=10 * tol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_are_rotations(dtype):
    g = torch.Generator().manual_seed(1)
    tol = 10 * TOL[dtype]
    assert_rotation(rot.axis_angle_to_matrix(3 * torch.randn(200, 3, generator=g, dtype=dtype)), tol)
    # Any (non-degenerate) 6D vector or quaternion maps to a proper rotation.
    assert_rotation(rot.rot6d_to_matrix(torch.randn(200, 6, generator=g, dtype=dtype)), tol)
    assert_rotation(rot.quaternion_to_matrix(torch.randn(200, 4, generator=g, dtype=dtype)), tol)


@PROPERTY
@given(x=st.tuples(*[st.floats(-10, 10)] * 6))
def test_rot6d_gram_schmidt_keeps_first_column_direction(x):
    x = torch.tensor(x, dtype=torch.float64)
    a1, a2 = x[0::2], x[1::2]
    # Skip (near-)degenerate inputs where Gram-Schmidt is undefined.
    assume(torch.linalg.cross(a1, a2, dim=-1).norm() > 1e-3 * (1 + a1.norm() * a2.norm()))
    R = rot.rot6d_to_matrix(x)
    assert_rotation(R, 1e-12)
    torch.testing.assert_close(R[:, 0], a1 / a1.norm(), atol=1e-12, rtol=0)
    # Second column lies in the plane of a1, a2, on a2's side.
    assert (R[:, 1] @ a2).item() > 0
    assert abs((R[:, 2] @ a2).item()) < 1e-9 * a2.norm().item()


def test_rot6d_layout():
    R = torch.arange(9, dtype=torch.float64).reshape(3, 3)
    assert rot.matrix_to_rot6d(R).tolist() == [0, 1, 3, 4, 6, 7]  # R00 R01 R10 R11 R20 R21
    Q = torch.tensor(random_rotations(1, 5).as_matrix()[0])
    torch.testing.assert_close(rot.matrix_to_rot6d(Q), Q[:, :2].reshape(6))


# ------------------------------------------------------------ scipy agreement


@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_scipy(dtype):
    r = random_rotations(1000, 2)
    tol = TOL[dtype]
    R = torch.tensor(r.as_matrix(), dtype=dtype)
    aa = torch.tensor(r.as_rotvec(), dtype=dtype)  # scipy: angle in [0, pi]
    q_xyzw = r.as_quat()
    q = torch.tensor(np.concatenate([q_xyzw[:, 3:], q_xyzw[:, :3]], axis=1), dtype=dtype)

    torch.testing.assert_close(rot.axis_angle_to_matrix(aa), R, atol=tol, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_matrix(q), R, atol=tol, rtol=0)
    same_quaternion(rot.matrix_to_quaternion(R), q, tol)
    same_quaternion(rot.axis_angle_to_quaternion(aa), q, tol)
    # Angles of random rotations stay away from pi, where the axis sign flips.
    assert aa.norm(dim=-1).max() < math.pi - 1e-3
    torch.testing.assert_close(rot.matrix_to_axis_angle(R), aa, atol=100 * tol, rtol=0)
    torch.testing.assert_close(rot.quaternion_to_axis_angle(q), aa, atol=10 * tol, rtol=0)


def test_large_angles_agree_with_scipy():
    # Angles beyond pi (and several turns) are valid inputs to the forward maps.
    aa = random_axis_angle((300,), 7, max_angle=4 * math.pi)
    r = Rotation.from_rotvec(aa.numpy())
    torch.testing.assert_close(rot.axis_angle_to_matrix(aa), torch.tensor(r.as_matrix()), atol=1e-12, rtol=0)
    qs = r.as_quat()
    same_quaternion(rot.axis_angle_to_quaternion(aa), torch.tensor(np.c_[qs[:, 3:], qs[:, :3]]), 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("angle", [1e-12, 1e-8, 1e-6, 3e-3, 6e-3, 1e-2, 0.1, 0.3, 1.0])
def test_agrees_with_scipy_around_taylor_thresholds(dtype, angle):
    axis = np.array([0.48, -0.6, 0.64])
    r = Rotation.from_rotvec(angle * axis)
    aa = torch.tensor(angle * axis, dtype=dtype)
    R = torch.tensor(r.as_matrix(), dtype=dtype)
    tol = TOL[dtype] / 10
    torch.testing.assert_close(rot.axis_angle_to_matrix(aa), R, atol=tol, rtol=0)
    q = rot.axis_angle_to_quaternion(aa)
    qs = r.as_quat()
    torch.testing.assert_close(q, torch.tensor([qs[3], *qs[:3]], dtype=dtype), atol=tol, rtol=0)
    # Relative accuracy of the recovered vector, even for tiny angles.
    back = rot.quaternion_to_axis_angle(q)
    torch.testing.assert_close(back, aa, atol=0, rtol=TOL[dtype])
    # float64 matrix input: off-diagonals keep full relative precision of tiny angles.
    exact = torch.tensor(angle * axis)
    torch.testing.assert_close(rot.matrix_to_axis_angle(torch.tensor(r.as_matrix())), exact, atol=0, rtol=1e-9)


def test_quaternion_convention_is_wxyz():
    # 90 degrees about +z: w = cos(45), z = sin(45).
    q = rot.axis_angle_to_quaternion(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(q, torch.tensor([math.sqrt(0.5), 0, 0, math.sqrt(0.5)], dtype=torch.float64))
    R = rot.quaternion_to_matrix(q)
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64))


def test_matrix_to_quaternion_canonical_w_nonnegative():
    R = torch.tensor(random_rotations(1000, 3).as_matrix())
    q = rot.matrix_to_quaternion(R)
    assert (q[..., 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(1000, dtype=torch.float64))


# ------------------------------------------------------------- edge angles


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_rotation(dtype):
    zero = torch.zeros(3, dtype=dtype)
    eye = torch.eye(3, dtype=dtype)
    assert torch.equal(rot.axis_angle_to_matrix(zero), eye)
    assert torch.equal(rot.matrix_to_axis_angle(eye), zero)
    assert torch.equal(rot.axis_angle_to_quaternion(zero), torch.tensor([1, 0, 0, 0], dtype=dtype))
    assert torch.equal(rot.matrix_to_quaternion(eye), torch.tensor([1, 0, 0, 0], dtype=dtype))
    assert torch.equal(rot.quaternion_to_axis_angle(torch.tensor([1, 0, 0, 0], dtype=dtype)), zero)
    assert torch.equal(rot.rot6d_to_matrix(rot.matrix_to_rot6d(eye)), eye)
    assert torch.equal(rot.rot6d_to_axis_angle(rot.axis_angle_to_rot6d(zero)), zero)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [(1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0), (0.48, -0.6, 0.64), (-0.36, 0.0, 0.8)])
def test_angle_pi(dtype, axis):
    axis = torch.tensor(axis, dtype=dtype) / torch.tensor(axis, dtype=dtype).norm()
    aa = math.pi * axis
    R = rot.axis_angle_to_matrix(aa)
    tol = 10 * TOL[dtype]
    # R = 2 n n^T - I at angle pi.
    torch.testing.assert_close(R, 2 * torch.outer(axis, axis) - torch.eye(3, dtype=dtype), atol=tol, rtol=0)
    back = rot.matrix_to_axis_angle(R)
    # Either sign of the axis is a valid answer at pi.
    err = torch.minimum((back - aa).abs().max(), (back + aa).abs().max())
    assert err.item() < 100 * TOL[dtype], err.item()
    torch.testing.assert_close(rot.axis_angle_to_matrix(back), R, atol=tol, rtol=0)
    q = rot.matrix_to_quaternion(R)
    assert q[0].item() >= 0 and abs(q[0].item()) < tol
    same_quaternion(q, torch.cat([torch.zeros(1, dtype=dtype), axis]), tol)


@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_near_pi_matches_scipy(delta):
    axis = np.array([0.48, -0.6, 0.64])
    r = Rotation.from_rotvec((math.pi - delta) * axis)
    aa = rot.matrix_to_axis_angle(torch.tensor(r.as_matrix()))
    torch.testing.assert_close(aa.norm(), torch.tensor(math.pi - delta, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.axis_angle_to_matrix(aa), torch.tensor(r.as_matrix()), atol=1e-12, rtol=0)


# --------------------------------------------------------- shapes & gradients


@pytest.mark.parametrize("dtype", DTYPES)
def test_leading_dims(dtype):
    aa = random_axis_angle((2, 5), 4, dtype=dtype)
    R = rot.axis_angle_to_matrix(aa)
    assert R.shape == (2, 5, 3, 3) and R.dtype == dtype
    assert rot.matrix_to_axis_angle(R).shape == (2, 5, 3)
    assert rot.matrix_to_rot6d(R).shape == (2, 5, 6)
    assert rot.rot6d_to_matrix(rot.matrix_to_rot6d(R)).shape == (2, 5, 3, 3)
    assert rot.axis_angle_to_rot6d(aa).shape == (2, 5, 6)
    assert rot.rot6d_to_axis_angle(rot.axis_angle_to_rot6d(aa)).shape == (2, 5, 3)
    assert rot.matrix_to_quaternion(R).shape == (2, 5, 4)
    assert rot.quaternion_to_matrix(rot.matrix_to_quaternion(R)).shape == (2, 5, 3, 3)
    assert rot.axis_angle_to_quaternion(aa).shape == (2, 5, 4)
    assert rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(aa)).shape == (2, 5, 3)
    # Batched result equals the per-element result.
    torch.testing.assert_close(R[1, 3], rot.axis_angle_to_matrix(aa[1, 3]))
    # No batch dims at all, and an empty batch.
    assert rot.axis_angle_to_matrix(aa[0, 0]).shape == (3, 3)
    assert rot.matrix_to_axis_angle(torch.zeros(0, 3, 3, dtype=dtype)).shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite_at_zero(dtype):
    zero = torch.zeros(3, dtype=dtype, requires_grad=True)
    # dR/d aa_i at 0 is the generator skew(e_i).
    jac = torch.autograd.functional.jacobian(rot.axis_angle_to_matrix, zero)
    gens = torch.stack([torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=dtype),
                        torch.tensor([[0, 0, 1], [0, 0, 0], [-1, 0, 0]], dtype=dtype),
                        torch.tensor([[0, -1, 0], [1, 0, 0], [0, 0, 0]], dtype=dtype)], dim=-1)
    torch.testing.assert_close(jac, gens)
    jq = torch.autograd.functional.jacobian(rot.axis_angle_to_quaternion, zero)
    torch.testing.assert_close(jq, torch.cat([torch.zeros(1, 3, dtype=dtype), 0.5 * torch.eye(3, dtype=dtype)]))
    jr = torch.autograd.functional.jacobian(rot.matrix_to_axis_angle, torch.eye(3, dtype=dtype))
    assert torch.isfinite(jr).all()
    # d aa / d R at identity: half the antisymmetric part, e.g. d aa_z / d R10 = 0.5.
    assert abs(jr[2, 1, 0].item() - 0.5) < TOL[dtype] and abs(jr[2, 0, 1].item() + 0.5) < TOL[dtype]
    jqa = torch.autograd.functional.jacobian(rot.quaternion_to_axis_angle, torch.tensor([1, 0, 0, 0], dtype=dtype))
    torch.testing.assert_close(jqa, torch.cat([torch.zeros(3, 1, dtype=dtype), 2 * torch.eye(3, dtype=dtype)], 1))
    for f, x in [(rot.axis_angle_to_rot6d, zero), (rot.rot6d_to_axis_angle, rot.axis_angle_to_rot6d(zero.detach()))]:
        x = x.detach().requires_grad_(True)
        f(x).sum().backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.5, 2.0])
def test_gradcheck(scale):
    aa = (random_axis_angle((4,), 6) * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (aa,))
    assert torch.autograd.gradcheck(rot.axis_angle_to_quaternion, (aa,))
    q = rot.axis_angle_to_quaternion(aa.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(rot.quaternion_to_axis_angle, (q,))
    assert torch.autograd.gradcheck(rot.quaternion_to_matrix, (q,))
    R = rot.axis_angle_to_matrix(aa.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(rot.matrix_to_axis_angle, (R,))
    x = rot.matrix_to_rot6d(R.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(rot.rot6d_to_matrix, (x,))


def test_float32_jacobians_match_float64():
    # Catches precision loss of the exact branches just above the Taylor thresholds.
    axis = torch.tensor([0.48, -0.6, 0.64], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian
    for angle in np.geomspace(1e-6, 3.0, 10):
        aa = angle * axis
        q = rot.axis_angle_to_quaternion(aa)
        R = rot.axis_angle_to_matrix(aa)
        for f, x in [(rot.axis_angle_to_matrix, aa), (rot.axis_angle_to_quaternion, aa),
                     (rot.quaternion_to_axis_angle, q), (rot.matrix_to_axis_angle, R)]:
            j64, j32 = jac(f, x), jac(f, x.float()).double()
            assert (j64 - j32).abs().max() < 1e-5 * j64.abs().max(), (f.__name__, angle)
