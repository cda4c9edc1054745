"""The contract's typed values: ``Observations`` and ``Result`` (validated into and out of them), the one
numpy rotation module (bit-identical to the engine's torch twins where both exist), and the engine's
``run`` taking Observations (or the documented OBS dict) and returning a Result."""
import json

import numpy as np
import pytest
import torch

from backend import rotations as torch_rotations
from backend.contract import rotations
from backend.contract.errors import InputError
from backend.contract.observations import Observations, combine_views, validate_observations
from backend.contract.results import ENGINE_KEYS, IMPORT_KEYS, Result, read_results
from tests.support import result_fixture


def _obs_arrays(views: int = 1, frames: int = 4) -> dict:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(50, 500, (frames, 17, 2)), np.ones((frames, 17, 1))], -1)
    return dict(keypoints=np.stack([kp] * views) if views > 1 else kp, image_size=np.array([640.0, 480.0]))


# -- Observations ----------------------------------------------------------------------------------------

def test_observations_are_typed_and_read_like_the_obs_dict():
    obs = validate_observations(dict(_obs_arrays(), fps=25.0), "video")
    assert isinstance(obs, Observations) and (obs.num_views, obs.num_frames) == (1, 4)
    assert obs.keypoints.shape == (1, 4, 17, 3) and obs.fps == 25.0 and not obs.calibrated
    assert obs["focal_length"] is obs.focal_length and obs.get("fps") == 25.0
    assert "cam_R" not in obs and obs.get("cam_R") is None  # unset fields are not keys
    assert set(obs) == {"keypoints", "image_size", "focal_length", "principal_point", "missing_points",
                        "focal_source", "fps"}
    with pytest.raises(KeyError):
        obs["cam_t"]
    with pytest.raises(Exception):  # frozen
        obs.fps = 30.0


def test_observations_file_arrays_validate_back_to_the_same_values():
    obs = validate_observations(dict(_obs_arrays(), fps=25.0, focal_length=500.0), "frame")
    again = validate_observations(obs.file_arrays("frame"), "frame")
    for key in ("keypoints", "image_size", "focal_length", "principal_point"):
        assert np.array_equal(again[key], obs[key])
    assert again.fps == obs.fps and "missing_points" not in obs.file_arrays("frame")


def test_combined_views_are_observations_with_their_cameras():
    one = validate_observations(_obs_arrays(), "video")
    cams = (np.stack([np.eye(3)] * 2), np.zeros((2, 3)))
    both = combine_views([one, one], cams)
    assert isinstance(both, Observations) and both.num_views == 2 and both.calibrated
    assert both.file_arrays("multiview")["keypoints"].shape == (2, 4, 17, 3)


# -- Result ------------------------------------------------------------------------------------------------

def _out_arrays(tmp_path, **kw) -> dict:
    path = tmp_path / "fixture.npz"
    result_fixture.write_result(path, num_frames=6, fps=24.0, camera_in="arrays", **kw)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_result_round_trip_arrays_to_result_to_out_npz_to_result(tmp_path):
    arrays = _out_arrays(tmp_path)
    arrays["reprojection_error_px"][2] = np.nan  # a frame without keypoints
    arrays["extra_scores"] = np.arange(6, dtype=np.float32)  # other arrays are kept
    result = Result.from_arrays(arrays)
    assert result.num_frames == 6 and result.views == 1 and result.info == json.loads(str(arrays["info"]))
    assert result.fps == 24.0 and result.faces.dtype == np.int32 and result.joints.dtype == np.float32
    assert np.array_equal(result.extras["extra_scores"], arrays["extra_scores"])
    path = result.write(tmp_path / "OUT.npz")
    back = Result.read(path)
    assert back == result
    assert set(back.to_arrays()) == set(arrays)
    assert read_results(path)["info"] == result.info  # the file the dict reader sees is the same
    # A changed value is a different result (NaN still equal to NaN above).
    moved = dict(arrays, transl=arrays["transl"] + 1e-3)
    assert Result.from_arrays(moved) != result


def test_result_is_the_engine_dict_of_before_as_a_mapping(tmp_path):
    result = Result.from_arrays(_out_arrays(tmp_path))
    assert result["joints"] is result.joints and json.loads(str(result["info"])) == result.info
    assert set(ENGINE_KEYS) <= set(result) and "joints_world" not in result
    np.savez(tmp_path / "as_mapping.npz", **result)  # a mapping of OUT.npz arrays
    assert Result.read(tmp_path / "as_mapping.npz") == result


@pytest.mark.parametrize("change, words", [
    (lambda a: a.pop("transl"), "has no field 'transl'"),
    (lambda a: a.update(joints=np.zeros((6, 23, 3))), "field 'joints' has shape (6, 23, 3)"),
    (lambda a: a.update(transl=np.full((6, 3), np.nan)), "field 'transl' has 18 NaN/inf values"),
    (lambda a: a.update(fps=np.float64(0)), "field 'fps' is 0.0, expected positive numbers"),
    (lambda a: a.update(info=np.array("[1, 2]")), "field 'info' is not a JSON object string"),
])
def test_result_validation_names_the_field(tmp_path, change, words):
    arrays = _out_arrays(tmp_path)
    change(arrays)
    with pytest.raises(InputError) as err:
        Result.from_arrays(arrays, "OUT.npz")
    assert str(err.value).startswith("OUT.npz: ") and words in str(err.value)


def test_result_needs_only_what_the_reader_asks_for(tmp_path):
    arrays = {k: v for k, v in _out_arrays(tmp_path).items() if k in IMPORT_KEYS + ("info",)}
    with pytest.raises(InputError, match="has no field 'keypoints3d'"):
        Result.from_arrays(arrays)
    result = Result.from_arrays(arrays, required=IMPORT_KEYS)
    assert result.keypoints3d is None and "keypoints3d" not in result


def test_multi_view_result_keeps_its_views_and_writes_view_zero(tmp_path):
    one = _out_arrays(tmp_path)
    per_view = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
                "reprojection_error_px")
    arrays = {k: np.stack([v, v + 1]) if k in per_view else v for k, v in one.items()}
    arrays["init_reprojection_error_px"] = np.stack([one["reprojection_error_px"]] * 2)
    result = Result.from_arrays(arrays, per_view=True)
    assert result.views == 2 and result.joints.shape == (2, 6, 24, 3) and result.num_frames == 6
    back = Result.read(result.write(tmp_path / "OUT.npz"))
    assert back.views == 1 and np.array_equal(back.joints, one["joints"].astype(np.float32))
    assert back.extras["view_joints"].shape == (2, 6, 24, 3)
    bad = dict(arrays, joints=arrays["joints"][:, :, :23])
    with pytest.raises(InputError, match="field 'joints' has shape"):
        Result.from_arrays(bad, per_view=True)


def test_multi_view_result_keeps_every_view_s_camera_and_checks_it(tmp_path):
    """Each view's camera (view_image_size / view_focal_length / view_principal_point) reaches OUT.npz; a
    lens that is not positive, or per-view fields that disagree on the view count, are refused by name."""
    one = _out_arrays(tmp_path)
    per_view = ("global_orient", "body_pose", "betas", "transl", "joints", "keypoints3d", "init_joints",
                "reprojection_error_px")
    arrays = {k: np.stack([v, v]) if k in per_view else v for k, v in one.items()}
    arrays["init_reprojection_error_px"] = arrays["reprojection_error_px"]
    lenses = dict(view_image_size=np.array([[640.0, 480.0], [1280.0, 720.0]], np.float32),
                  view_focal_length=np.array([500.0, 900.0], np.float32),
                  view_principal_point=np.array([[320.0, 240.0], [600.0, 380.0]], np.float32))
    back = read_results(Result.from_arrays(dict(arrays, **lenses), per_view=True).write(tmp_path / "OUT.npz"))
    for key, value in lenses.items():
        np.testing.assert_array_equal(back[key], value)
    with pytest.raises(InputError, match=r"field 'view_focal_length' is \[500.0, -1.0\], expected positive"):
        Result.from_arrays({**arrays, **lenses, "view_focal_length": np.array([500.0, -1.0])}, per_view=True)
    with pytest.raises(InputError, match="field 'view_principal_point' has shape"):
        Result.from_arrays({**arrays, **lenses, "view_principal_point": np.zeros((3, 2))}, per_view=True)


# -- the one numpy rotation module -------------------------------------------------------------------------

def _random_rotations(n: int = 4000) -> np.ndarray:
    aa = np.random.default_rng(3).normal(size=(n, 3)) * 1.5
    aa[: n // 10] *= 1e-6  # near identity
    return torch_rotations.axis_angle_to_matrix(torch.from_numpy(aa)).numpy()


def test_numpy_quaternions_are_bit_identical_to_the_torch_ones():
    """The data conversion moved from the torch functions to these: the same float operations."""
    R = _random_rotations().reshape(-1, 8, 3, 3)
    q = rotations.matrix_to_quaternion(R)
    assert np.array_equal(q, torch_rotations.matrix_to_quaternion(torch.from_numpy(R)).numpy())
    assert np.array_equal(rotations.quaternion_to_matrix(q),
                          torch_rotations.quaternion_to_matrix(torch.from_numpy(q)).numpy())
    assert np.allclose(rotations.quaternion_to_matrix(q), R, atol=1e-12)


def test_smallest_rotations_turn_each_direction_onto_the_other():
    rng = np.random.default_rng(4)
    u, v = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    R = rotations.smallest_rotations(u, v)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    assert np.allclose(np.einsum("nij,nj->ni", R, unit(u)), unit(v), atol=1e-12)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-12)
    # About u x v: that axis stays put; the single-pair version agrees.
    assert np.allclose(np.einsum("nij,nj->ni", R, np.cross(u, v)), np.cross(u, v), atol=1e-12)
    assert np.allclose(R[0], rotations.rotation_between(u[0], v[0]), atol=1e-12)


def test_slerp_goes_the_short_way_at_constant_speed():
    q0 = rotations.matrix_to_quaternion(np.eye(3))
    q1 = rotations.matrix_to_quaternion(rotations.axis_angle_to_matrix(np.array([0.0, 0.0, 1.2])))
    for t in (0.0, 0.25, 0.5, 1.0):
        got = rotations.slerp(q0, -q1, np.array([t]))  # -q1: the same rotation, the long way numerically
        angle = rotations.quaternion_to_axis_angle(got)
        assert np.allclose(angle, [0.0, 0.0, 1.2 * t], atol=1e-12)


# -- the engine's API ----------------------------------------------------------------------------------------

def test_engine_run_takes_observations_or_the_obs_dict_and_returns_a_result():
    from backend.engine.api import EngineOptions
    from backend.engine.scorehmr import LoopOptions
    from tests.contract.test_bad_inputs import tiny_engine

    engine = tiny_engine()
    obs = validate_observations(dict(_obs_arrays(frames=3), fps=30.0), "frame")
    options = EngineOptions(variant="paper", loop=LoopOptions(iterations=1))
    typed = engine.run(obs, None, "frame", options)
    plain = engine.run(dict(obs), None, "frame", options)  # the documented Python API's OBS dict
    assert isinstance(typed, Result) and isinstance(plain, Result)
    assert typed.num_frames == 3 and typed.info["mode"] == "frame" and typed.fps == 30.0
    assert set(typed) == set(plain) and all(
        np.array_equal(typed[key], plain[key], equal_nan=True) for key in typed if key != "info")
