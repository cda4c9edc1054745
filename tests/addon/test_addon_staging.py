"""The importer's staging maths (scorehmr_blender.staging): floor height from the skinned body,
resampling onto whole scene frames; numpy only (Blender reads the results back in
test_addon_import.py)."""

import math

import numpy as np
import pytest

from scorehmr_blender import convert, result, staging
from tests.support import result_fixture


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "Shot.npz"
    arrays = result_fixture.write_result(path, num_frames=40)
    return result.load(path), arrays


def test_lowest_heights_are_the_skinned_body_s_lowest_vertex(motion):
    """Against linear blend skinning written out vertex by vertex (float64), in the world."""
    res, arrays = motion
    M = staging.default_camera_to_world()
    M[:3, 3] = (0.3, -1.0, 0.7)
    G, P = staging.forward_kinematics(res.global_orient, res.body_pose, res.transl, res.rest_joints)
    np.testing.assert_allclose(P, arrays["joints"], atol=1e-6)  # the body model's own joints
    lowest = staging.lowest_heights(res, M)
    for i in (0, 17, 39):
        per_joint = np.einsum("jab,vjb->vja", G[i], res.rest_vertices[:, None] - res.rest_joints[None]) + P[i][None]
        verts = np.einsum("vj,vja->va", res.skin_weights, per_joint) @ M[:3, :3].T + M[:3, 3]
        assert lowest[i] == pytest.approx(verts[:, 2].min(), abs=1e-9)


def test_contact_height_ignores_a_few_frames_through_the_floor():
    lowest = np.full(40, 0.5)
    lowest[[3, 20]] = (-0.4, 0.2)  # two bad frames (5%) below the floor
    lowest[30:] = 0.9              # a jump: off the floor
    assert staging.contact_height(lowest) == pytest.approx(0.5)
    assert staging.contact_height([1.25]) == 1.25  # a single frame: its own lowest point


def test_floor_placement_is_a_translation_onto_the_floor_and_origin(motion):
    res, _ = motion
    before = staging.default_camera_to_world()
    for to_origin in (True, False):
        placement = staging.floor_placement(res, to_origin=to_origin)
        np.testing.assert_array_equal(placement[:3, :3], np.eye(3))  # rigid: camera and body move together
        after = placement @ before
        assert staging.contact_height(staging.lowest_heights(res, after)) == pytest.approx(0.0, abs=1e-9)
        pelvis = after[:3, :3] @ (res.rest_joints[0] + res.transl[0]) + after[:3, 3]
        if to_origin:
            np.testing.assert_allclose(pelvis[:2], 0.0, atol=1e-12)
        else:
            np.testing.assert_array_equal(placement[:2, 3], 0.0)


def quaternion_about_z(angle):
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def test_slerp_turns_at_constant_speed_the_short_way():
    q0, q1 = quaternion_about_z(0.0), quaternion_about_z(2.0)
    for t in (0.0, 0.25, 0.5, 1.0):
        got = staging.slerp(q0, q1, np.array([t]))
        assert abs(np.dot(got, quaternion_about_z(2.0 * t))) == pytest.approx(1.0, abs=1e-12)
    got = staging.slerp(q0, -q1, np.array([0.5]))  # the same rotation with the other sign
    assert abs(np.dot(got, quaternion_about_z(1.0))) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(staging.slerp(q0, q0, np.array([0.3])), q0)  # equal: no division by sin(0)


def test_whole_frame_keys_resample_a_24_fps_motion_for_a_30_fps_scene():
    frames = convert.scene_frames(9, 1, 24.0, 30.0)  # 1, 2.25, ..., 11
    angles = np.linspace(0.0, 1.6, 9)
    quaternions = np.stack([quaternion_about_z(a) for a in angles])[:, None]  # (9, 1, 4)
    locations = np.stack([angles, 2 * angles], -1)
    whole, q, loc = staging.whole_frame_keys(frames, quaternions, locations)
    np.testing.assert_array_equal(whole, np.arange(1, 12))
    expected_angle = 1.6 * (whole - 1) / 10  # the motion is linear in time
    np.testing.assert_allclose(loc[:, 0], expected_angle, atol=1e-12)
    np.testing.assert_allclose(2 * np.arctan2(q[:, 0, 3], q[:, 0, 0]), expected_angle, atol=1e-12)

    same = staging.whole_frame_keys(np.arange(5.0, 14.0), quaternions, locations)
    np.testing.assert_array_equal(same[1], quaternions)
    np.testing.assert_array_equal(same[2], locations)


@pytest.mark.parametrize("fps, rate", [(24.0, (24, 1.0)), (30000 / 1001, (30, 1.001)), (0.5, (1, 2.0))])
def test_scene_rate(fps, rate):
    whole, base = staging.scene_rate(fps)
    assert whole == rate[0] and base == pytest.approx(rate[1])
    assert whole / base == pytest.approx(fps)
