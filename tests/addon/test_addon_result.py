"""scorehmr_blender.result reads OUT.npz files and rejects bad ones with one-line errors."""

import json

import numpy as np
import pytest

from backend.body.free_model import load_free_model
from scorehmr_blender.result import MotionResult, ResultError, from_arrays, load

FRAMES = 5


@pytest.fixture(scope="module")
def model():
    return load_free_model()


def valid_arrays(model):
    """A small but well-formed result (rest pose of the free model, a static body)."""
    rng = np.random.default_rng(0)
    vertices = model["v_template"]
    return {
        "global_orient": np.tile([np.pi, 0, 0], (FRAMES, 1)),
        "body_pose": rng.normal(scale=0.1, size=(FRAMES, 69)),
        "transl": np.tile([0, 0, 3.0], (FRAMES, 1)),
        "betas": np.zeros(10),
        "joints": rng.normal(size=(FRAMES, 24, 3)),
        "rest_joints": model["J"],
        "rest_vertices": vertices,
        "faces": model["f"],
        "skin_weights": model["weights"],
        "fps": np.float64(30),
        "info": np.asarray(json.dumps({"mode": "video", "image_size": [640, 480], "focal_length": 600})),
    }


def test_valid_result_loads(model, tmp_path):
    arrays = valid_arrays(model)
    np.savez(tmp_path / "OUT.npz", **arrays)
    res = load(tmp_path / "OUT.npz")
    assert isinstance(res, MotionResult)
    assert res.num_frames == FRAMES and res.fps == 30.0
    assert res.info["mode"] == "video"
    assert res.image_size == (640.0, 480.0) and res.focal_length == 600.0 and res.principal_point is None
    assert res.has_camera
    np.testing.assert_array_equal(res.faces, model["f"])
    np.testing.assert_allclose(res.skin_weights, model["weights"])


def test_top_level_camera_arrays_win_over_info(model):
    arrays = valid_arrays(model)
    arrays.update(image_size=np.array([1920, 1080]), focal_length=np.array(1400.0),
                  principal_point=np.array([950.0, 545.0]))
    res = from_arrays(arrays)
    assert (res.image_size, res.focal_length, res.principal_point) == ((1920, 1080), 1400, (950, 545))


def test_info_and_camera_are_optional(model):
    arrays = valid_arrays(model)
    del arrays["info"]
    res = from_arrays(arrays)
    assert res.info == {} and not res.has_camera


def test_every_calibrated_view_has_its_lens_and_older_files_lend_view_zero_s(model):
    """A calibrated two-view result: view 1's camera gets view 1's image size, focal length and principal
    point; a file written before the engine kept them (view 0's only) gives view 1 view 0's lens."""
    arrays = valid_arrays(model)
    world = arrays["joints"]
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # view 1 looks from the side
    arrays.update(image_size=np.array([640.0, 480.0]), focal_length=np.array(600.0),
                  principal_point=np.array([320.0, 240.0]), joints_world=world,
                  view_joints=np.stack([world, world @ turn.T + [0.0, 0.0, 4.0]]))
    older = from_arrays(arrays)
    assert older.view_lenses == (((640, 480), 600, (320, 240)),) * 2
    arrays.update(view_image_size=np.array([[640.0, 480.0], [1280.0, 720.0]]),
                  view_focal_length=np.array([600.0, 1500.0]),
                  view_principal_point=np.array([[320.0, 240.0], [610.0, 350.0]]))
    res = from_arrays(arrays)
    assert res.view_lenses == (((640, 480), 600, (320, 240)), ((1280, 720), 1500, (610, 350)))
    np.testing.assert_allclose(res.view_cameras[1][:3, :3], turn.T, atol=1e-6)  # float32 joints


def test_per_frame_betas_accepted(model):
    arrays = valid_arrays(model)
    arrays["betas"] = np.zeros((FRAMES, 10))
    assert from_arrays(arrays).betas.shape == (FRAMES, 10)


def _drop(name):
    return lambda a: a.pop(name)


def _set(name, value):
    return lambda a: a.__setitem__(name, value(a) if callable(value) else value)


@pytest.mark.parametrize("change, message", [
    (_drop("rest_vertices"), "has no field 'rest_vertices'"),
    (_drop("fps"), "has no field 'fps'"),
    (_set("body_pose", np.zeros((FRAMES, 72))),
     f"'body_pose' has shape ({FRAMES}, 72), expected (F, 69) with F={FRAMES}"),
    (_set("transl", np.zeros((FRAMES + 1, 3))),
     f"'transl' has shape ({FRAMES + 1}, 3), expected (F, 3) with F={FRAMES}"),
    (_set("joints", np.zeros((FRAMES, 17, 3))),
     f"'joints' has shape ({FRAMES}, 17, 3), expected (F, 24, 3) with F={FRAMES}"),
    (_set("rest_joints", np.zeros(72)), "'rest_joints' has shape (72,), expected (24, 3)"),
    (_set("skin_weights", lambda a: a["skin_weights"][:-1]),
     "'skin_weights' has shape (13717, 24), expected (V, 24) with V=13718"),
    (_set("skin_weights", lambda a: a["skin_weights"] * 2),
     "'skin_weights' of vertex 0 are negative or do not sum to 1"),
    (_set("faces", lambda a: a["faces"].astype(float)), "'faces' must hold integer vertex indices"),
    (_set("faces", lambda a: a["faces"] + 1), "'faces' must hold integer vertex indices below the vertex count 13718"),
    (_set("global_orient", lambda a: np.where(np.eye(FRAMES, 3) > 0, np.nan, a["global_orient"])),
     "'global_orient' has 3 NaN/inf values"),
    (_set("global_orient", np.zeros((FRAMES, 4))), f"'global_orient' has shape ({FRAMES}, 4), expected (F, 3)"),
    (_set("fps", np.float64(0)), "'fps' is 0.0, expected positive numbers"),
    (_set("fps", np.array([30.0, 25.0])), "'fps' has shape (2,), expected ()"),
    (_set("betas", np.zeros((FRAMES + 2, 10))),
     f"'betas' has shape ({FRAMES + 2}, 10), expected (F, 10) or (10,) with F={FRAMES}"),
    (_set("info", np.asarray("not json")), "'info' is not a JSON object string"),
    (_set("image_size", np.array([640.0])), "'image_size' has shape (1,), expected (2,)"),
    (_set("rest_joints", lambda a: np.vstack([a["rest_joints"][:23], a["rest_joints"][21:22]])),
     "'rest_joints': right_hand sits on its parent right_wrist"),
])
def test_bad_result_gives_one_line_error_naming_the_field(model, tmp_path, change, message):
    arrays = valid_arrays(model)
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ResultError) as err:
        load(tmp_path / "bad.npz")
    text = str(err.value)
    assert text.startswith("bad.npz: ") and message in text and "\n" not in text


def test_empty_result_is_rejected(model):
    arrays = valid_arrays(model)
    for name in ("global_orient", "transl"):
        arrays[name] = np.zeros((0, 3))
    arrays.update(body_pose=np.zeros((0, 69)), joints=np.zeros((0, 24, 3)))
    with pytest.raises(ResultError, match="the result has no frames"):
        from_arrays(arrays)


def test_unreadable_files(tmp_path):
    with pytest.raises(ResultError, match="nothing.npz: file not found; choose the OUT.npz the refinement wrote$"):
        load(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ResultError, match="text.npz: holds text, not numpy arrays: expected a numpy .npz file"):
        load(tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", info=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ResultError, match=r"objects.npz: holds Python objects \(object arrays\)"):
        load(tmp_path / "objects.npz")


def test_damaged_npz_is_not_called_object_arrays(model, tmp_path):
    """A result cut short (an interrupted copy) and junk behind the zip magic are reported as damaged;
    only an intact .npz of object arrays is 'Python objects'."""
    np.savez(tmp_path / "whole.npz", **valid_arrays(model))
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    for name in ("cut.npz", "junk.npz"):
        with pytest.raises(ResultError) as err:
            load(tmp_path / name)
        text = str(err.value)
        assert f"{name}: is damaged" in text and "Python objects" not in text and "\n" not in text, text
