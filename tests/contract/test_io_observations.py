"""OBS.npz validation: shapes, intrinsics defaults, bad values."""
import numpy as np
import pytest

from backend.contract.errors import InputError
from backend.contract.observations import focal_from_fov, load_observations, validate_observations


def _obs(frames=4, views=None):
    rng = np.random.default_rng(0)
    shape = (frames, 17, 3) if views is None else (views, frames, 17, 3)
    kp = rng.uniform(100, 500, size=shape)
    kp[..., 2] = rng.uniform(0.3, 1.0, size=shape[:-1])
    return dict(keypoints=kp, image_size=np.array([1920, 1080]))


def test_single_camera_layout_and_defaults():
    out = validate_observations(_obs(), "video")
    assert out["keypoints"].shape == (1, 4, 17, 3)
    np.testing.assert_allclose(out["principal_point"], [[960, 540]])
    np.testing.assert_allclose(out["focal_length"], focal_from_fov(np.array([[1920, 1080]])))
    assert "estimated" in out["focal_source"]
    # 55 degrees across 1920 px: f = 960 / tan(27.5 deg)
    assert out["focal_length"][0] == pytest.approx(960 / np.tan(np.radians(27.5)))


def test_nan_keypoints_become_missing_not_fatal():
    obs = _obs()
    obs["keypoints"][1, 3, 0] = np.nan
    obs["keypoints"][2, 5, 2] = np.inf
    out = validate_observations(obs, "frame")
    assert out["keypoints"][0, 1, 3, 2] == 0 and out["keypoints"][0, 2, 5, 2] == 0
    assert out["missing_points"] == 2 and np.isfinite(out["keypoints"]).all()


@pytest.mark.parametrize("change, words", [
    (lambda o: o.update(keypoints=o["keypoints"][:, :16]), "'keypoints' has shape (4, 16, 3)"),
    (lambda o: o["keypoints"].__setitem__((Ellipsis, 2), 0.0), "confidence 0"),
    (lambda o: o.pop("image_size"), "missing field 'image_size'"),
    (lambda o: o.update(image_size=np.array([1920, -1])), "'image_size' must be positive"),
    (lambda o: o.update(focal_length=np.array([1.0, 2.0, 3.0])), "'focal_length' has shape (3,)"),
    (lambda o: o.update(keypoints=np.zeros((0, 17, 3))), "no frames"),
    (lambda o: o.update(cam_R=np.eye(3)[None]), "need both 'cam_R'"),
])
def test_bad_observations_name_the_field(change, words):
    obs = _obs()
    change(obs)
    with pytest.raises(InputError, match=None) as err:
        validate_observations(obs, "video")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_multiview_needs_views_and_checks_extrinsics():
    with pytest.raises(InputError, match="multiview"):
        validate_observations(_obs(), "multiview")
    obs = _obs(views=3)
    obs.update(cam_R=np.stack([np.eye(3)] * 3), cam_t=np.zeros((3, 3)))
    out = validate_observations(obs, "multiview")
    assert out["keypoints"].shape == (3, 4, 17, 3) and out["cam_R"].shape == (3, 3, 3)
    obs["cam_R"] = obs["cam_R"] * 2
    with pytest.raises(InputError, match="rotation matrices"):
        validate_observations(obs, "multiview")
    with pytest.raises(InputError, match="--mode multiview"):
        validate_observations(_obs(views=2), "video")


def test_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_observations(tmp_path / "nope.npz", "video")
    bad = tmp_path / "bad.npz"
    bad.write_text("not numpy")
    with pytest.raises(InputError, match="holds text, not numpy arrays"):
        load_observations(bad, "video")
    good = tmp_path / "obs.npz"
    np.savez(good, **_obs(), fps=29.97)
    assert load_observations(good, "video")["fps"] == pytest.approx(29.97)


def test_a_text_file_named_npz_is_named_as_text_not_pickled_data(tmp_path):
    """numpy's own message ("Cannot load file containing pickled data when allow_pickle=False") talks
    about its loader; every reader says what the file holds instead."""
    from backend.contract.init_estimates import load_init
    from backend.contract.keypoints import load_keypoints
    from backend.contract.results import read_results

    text = tmp_path / "notes.npz"
    text.write_text("frame,x,y\n0,1,2\n")
    for read in (lambda p: load_observations(p, "video"), load_keypoints, load_init, read_results):
        with pytest.raises(InputError) as err:
            read(text)
        assert "notes.npz: holds text, not numpy arrays" in str(err.value)
        assert "pickle" not in str(err.value)
