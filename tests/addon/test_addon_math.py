"""The importer's maths (scorehmr_blender.convert), checked on numpy without Blender objects."""

import numpy as np
import pytest
import torch

from backend import rotations
from backend.contract import layout
from scorehmr_blender import convert

C, W = convert.MODEL_TO_BLENDER, convert.CAMERA_TO_WORLD


def random_axis_angles(rng, n):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, n - 4), [0.0, 1e-9, np.pi - 1e-7, np.pi]])
    return axes * angles[:, None]


def test_skeleton_tables_are_the_contracts():
    """One copy: the add-on's tables are the contract's objects, not equal copies."""
    assert convert.JOINT_NAMES is layout.SMPL_JOINT_NAMES
    assert convert.PARENTS is layout.SMPL_PARENTS


def test_axis_angle_to_matrix_matches_engine():
    aa = random_axis_angles(np.random.default_rng(0), 200)
    expected = rotations.axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
    np.testing.assert_allclose(convert.axis_angle_to_matrix(aa), expected, atol=1e-12)


def test_matrix_to_quaternion_matches_engine_including_half_turns():
    aa = random_axis_angles(np.random.default_rng(1), 200)
    R = convert.axis_angle_to_matrix(aa)
    q = convert.matrix_to_quaternion(R)
    expected = rotations.matrix_to_quaternion(torch.from_numpy(R)).numpy()
    # q and -q are one rotation: compare |<q, expected>| = 1.
    np.testing.assert_allclose(np.abs((q * expected).sum(-1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(rotations.quaternion_to_matrix(torch.from_numpy(q)).numpy(), R, atol=1e-9)
    assert (q[:, 0] >= 0).all()


def test_frame_conversions():
    for M in (C, W):
        np.testing.assert_allclose(M @ M.T, np.eye(3), atol=0)
        assert np.linalg.det(M) == pytest.approx(1.0)
    # Model frame: up +Y -> Blender +Z; facing +Z -> -Y (Blender's front); left +X -> +X.
    np.testing.assert_array_equal(C @ [0, 1, 0], [0, 0, 1])
    np.testing.assert_array_equal(C @ [0, 0, 1], [0, -1, 0])
    # Camera frame: forward +z -> +Y, down +y -> -Z, right +x -> +X.
    np.testing.assert_array_equal(W @ [0, 0, 1], [0, 1, 0])
    np.testing.assert_array_equal(W @ [0, 1, 0], [0, 0, -1])
    np.testing.assert_array_equal(W @ [1, 0, 0], [1, 0, 0])
    # The camera object's rotation (Euler XYZ) maps Blender camera axes (x, -y, -z) to W.
    rx = convert.axis_angle_to_matrix(np.array([convert.CAMERA_OBJECT_EULER[0], 0, 0]))
    np.testing.assert_allclose(rx @ np.diag([1, -1, -1]), W, atol=1e-15)


def test_upright_body_facing_the_camera_has_identity_root():
    # global_orient 180 deg about X: the model's Y-up frame turned into the camera's y-down one.
    q = convert.pose_quaternions(np.array([[np.pi, 0, 0]]), np.zeros((1, 69)), np.broadcast_to(np.eye(3), (24, 3, 3)))
    np.testing.assert_allclose(np.abs(q[0, :, 0]), 1.0, atol=1e-12)


def smpl_forward_kinematics(R, rest, transl):
    """SMPL joints (F, 24, 3) in the camera frame from local rotations (F, 24, 3, 3)."""
    G, P = np.empty_like(R), np.empty(R.shape[:2] + (3,))
    for j, p in enumerate(convert.PARENTS):
        if p < 0:
            G[:, j], P[:, j] = R[:, j], rest[j] + transl
        else:
            G[:, j] = G[:, p] @ R[:, j]
            P[:, j] = P[:, p] + G[:, p] @ (rest[j] - rest[p])
    return P


def quaternion_to_matrix(q):
    return rotations.quaternion_to_matrix(torch.from_numpy(q)).numpy()


def blender_pose_heads(heads, bone_rest, quaternions, root_location):
    """Posed bone heads (F, 24, 3) the way Blender chains pose bones:
    pose_j = pose_parent @ rest_parent^-1 @ rest_j @ basis_j (4x4, armature space)."""
    def affine(R, t):
        M = np.zeros(R.shape[:-2] + (4, 4))
        M[..., :3, :3], M[..., :3, 3], M[..., 3, 3] = R, t, 1.0
        return M

    rest = affine(bone_rest, heads)
    frames = len(quaternions)
    location = np.zeros((frames, 24, 3))
    location[:, 0] = root_location
    basis = affine(quaternion_to_matrix(quaternions), location)
    pose = np.empty((frames, 24, 4, 4))
    for j, p in enumerate(convert.PARENTS):
        pose[:, j] = rest[j] @ basis[:, j] if p < 0 else pose[:, p] @ np.linalg.inv(rest[p]) @ rest[j] @ basis[:, j]
    return pose[..., :3, 3]


def test_pose_quaternions_reproduce_smpl_joints_through_blenders_bone_chain():
    """The derivation in convert's docstring: any bone rest rotations B_j, Blender's
    chaining of pose bones puts every head at W @ (SMPL joint in the camera frame)."""
    rng = np.random.default_rng(2)
    frames = 6
    rest = rng.normal(scale=0.3, size=(24, 3))
    aa = random_axis_angles(rng, frames * 24).reshape(frames, 24, 3)
    transl = rng.normal(size=(frames, 3)) + [0, 0, 4]
    bone_rest = convert.axis_angle_to_matrix(random_axis_angles(rng, 24))

    q = convert.pose_quaternions(aa[:, 0], aa[:, 1:].reshape(frames, 69), bone_rest)
    loc = convert.root_locations(transl, rest[0], bone_rest[0])
    heads = blender_pose_heads(rest @ C.T, bone_rest, q, loc)

    expected = smpl_forward_kinematics(convert.local_rotations(aa[:, 0], aa[:, 1:].reshape(frames, 69)), rest, transl)
    np.testing.assert_allclose(heads, expected @ W.T, atol=1e-10)


def test_continuous_quaternions_keep_rotations_and_never_jump():
    rng = np.random.default_rng(3)
    q = convert.matrix_to_quaternion(convert.axis_angle_to_matrix(random_axis_angles(rng, 40))).reshape(10, 4, 4)
    signs = rng.choice([-1.0, 1.0], size=(10, 4, 1))
    fixed = convert.continuous_quaternions(q * signs)
    assert ((fixed[1:] * fixed[:-1]).sum(-1) >= 0).all()
    np.testing.assert_allclose(np.abs(fixed), np.abs(q))
    np.testing.assert_array_equal(fixed[0], (q * signs)[0])  # the first key is left alone


def test_a_full_turn_gives_continuous_keys():
    angles = np.linspace(0, 2 * np.pi, 50)
    aa = np.stack([np.zeros(50), np.zeros(50), angles], -1)
    raw = convert.matrix_to_quaternion(convert.axis_angle_to_matrix(aa))
    assert ((raw[1:] * raw[:-1]).sum(-1) < 0).any()  # w >= 0 makes a jump at 180 degrees
    q = convert.continuous_quaternions(raw)
    assert ((q[1:] * q[:-1]).sum(-1) > 0.9).all()


def test_scene_frames_retime_footage_to_the_scene_rate():
    np.testing.assert_allclose(convert.scene_frames(4, 10, 30.0, 24.0), [10, 10.8, 11.6, 12.4])
    np.testing.assert_allclose(convert.scene_frames(3, 1, 25.0, 25.0), [1, 2, 3])
    np.testing.assert_allclose(convert.scene_frames(3, 0, 12.0, 24.0), [0, 2, 4])


def test_bone_tails_point_at_the_child_on_the_midline_and_extend_leaves():
    from backend.body.free_model import load_free_model
    rest = load_free_model()["J"] @ C.T
    tails = convert.bone_tails(rest)
    index = convert.JOINT_NAMES.index
    np.testing.assert_array_equal(tails[index("pelvis")], rest[index("spine1")])
    np.testing.assert_array_equal(tails[index("spine3")], rest[index("neck")])
    np.testing.assert_array_equal(tails[index("left_knee")], rest[index("left_ankle")])
    head, neck = rest[index("head")], rest[index("neck")]
    np.testing.assert_allclose(tails[index("head")], head + 0.6 * (head - neck))
    assert tails[index("head")][2] > head[2]  # the head bone points up
    assert (np.linalg.norm(tails - rest, axis=1) > 0.02).all()


def test_camera_settings_from_intrinsics():
    centred = convert.camera_settings((1920, 1080), 1500.0)
    assert centred == {"sensor_fit": 'HORIZONTAL', "sensor_width": 36.0, "lens": 1500.0 * 36 / 1920,
                       "shift_x": 0.0, "shift_y": 0.0}
    # Principal point right of and above the centre: the view shifts left and down.
    off = convert.camera_settings((1000, 500), 800.0, (600.0, 200.0))
    assert off["shift_x"] == pytest.approx(-0.1) and off["shift_y"] == pytest.approx(-0.05)


def test_camera_intrinsics_invert_camera_settings():
    from types import SimpleNamespace
    settings = convert.camera_settings((1000, 500), 800.0, (600.0, 200.0))
    data = SimpleNamespace(sensor_height=24.0, **settings)
    focal, principal = convert.camera_intrinsics(data, (1000, 500))
    assert focal == pytest.approx(800.0) and principal == pytest.approx((600.0, 200.0))
    # AUTO fits the sensor width to the longer side (here the height); VERTICAL fits sensor_height.
    portrait = SimpleNamespace(lens=50.0, sensor_width=36.0, sensor_height=24.0, sensor_fit='AUTO', shift_x=0.0,
                               shift_y=0.0)
    assert convert.camera_intrinsics(portrait, (500, 1000))[0] == pytest.approx(50.0 * 1000 / 36)
    portrait.sensor_fit = 'VERTICAL'
    assert convert.camera_intrinsics(portrait, (500, 1000))[0] == pytest.approx(50.0 * 1000 / 24)


def test_opencv_camera_of_the_footage_camera_pose_is_w():
    x = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # CAMERA_OBJECT_EULER: 90 degrees about X
    matrix_world = np.eye(4)
    matrix_world[:3, :3], matrix_world[:3, 3] = 3.0 * x, (1.0, 2.0, 3.0)  # scale is left out
    pose = convert.opencv_camera_to_world(matrix_world)
    np.testing.assert_allclose(pose[:3, :3], W, atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], (1.0, 2.0, 3.0))
