"""Tests for backend.contract.init_estimates: HMR 2.0 style and INIT-layout initial estimates."""

import os
import pickle

import numpy as np
import pytest
import torch

from backend.contract.errors import InputError
from backend.contract.init_estimates import (
    cam_crop_to_full,
    hmr2_focal_length,
    load_init,
    matrix_to_axis_angle,
    validate_init,
)
from backend.rotations import axis_angle_to_matrix

W, H = 1280, 720


def random_axis_angle(rng, shape, max_angle=np.pi):
    axis = rng.normal(size=shape + (3,))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis * rng.uniform(0, max_angle, size=shape + (1,))


def rotmat(aa):
    return axis_angle_to_matrix(torch.as_tensor(aa, dtype=torch.float64)).numpy()


def weak_perspective_from_projection(T, focal, center, box_size, rng):
    """Fits HMR's crop camera [s, tx, ty] to the perspective projection of a flat body at translation T.

    The body is a grid of points T + (dx, dy, 0): at a single depth the weak-perspective model
    x_crop = s (dx + tx), y_crop = s (dy + ty) in crop coordinates [-1, 1] is exact, so the
    least-squares fit recovers the camera that the regressor would predict.
    """
    d = np.c_[rng.uniform(-0.4, 0.4, 30), rng.uniform(-0.9, 0.9, 30), np.zeros(30)]
    P = T + d
    u = focal * P[:, 0] / P[:, 2] + W / 2
    v = focal * P[:, 1] / P[:, 2] + H / 2
    xn = (u - center[0]) / (box_size / 2)
    yn = (v - center[1]) / (box_size / 2)
    # Unknowns [s, s tx, s ty]: xn = s dx + s tx, yn = s dy + s ty.
    A = np.zeros((60, 3))
    A[:30, 0], A[:30, 1] = d[:, 0], 1
    A[30:, 0], A[30:, 2] = d[:, 1], 1
    (s, stx, sty), *_ = np.linalg.lstsq(A, np.r_[xn, yn], rcond=None)
    return np.array([s, stx / s, sty / s])


def hmr2_case(rng, frames=6, focal=None):
    T = np.c_[rng.uniform(-1, 1, frames), rng.uniform(-0.5, 0.5, frames), rng.uniform(3, 12, frames)]
    f = hmr2_focal_length((W, H)) if focal is None else focal
    center = np.c_[rng.uniform(200, 1000, frames), rng.uniform(150, 550, frames)]
    size = rng.uniform(150, 500, frames)
    cam = np.stack([weak_perspective_from_projection(T[i], f, center[i], size[i], rng) for i in range(frames)])
    go = random_axis_angle(rng, (frames,))
    bp = random_axis_angle(rng, (frames, 23), max_angle=1.0)
    data = {
        "global_orient": rotmat(go)[:, None].astype(np.float32),     # (F, 1, 3, 3)
        "body_pose": rotmat(bp).astype(np.float32),                   # (F, 23, 3, 3)
        "betas": rng.normal(size=(frames, 10)).astype(np.float32),
        "pred_cam": cam.astype(np.float32),
        "box_center": center.astype(np.float32),
        "box_size": size.astype(np.float32),
    }
    return data, T, go, bp


def assert_same_rotations(aa, expected, atol=1e-4):
    np.testing.assert_allclose(rotmat(aa.astype(np.float64)), rotmat(expected), atol=atol)


def test_hmr2_npz_round_trip_known_translation(tmp_path):
    rng = np.random.default_rng(0)
    data, T, go, bp = hmr2_case(rng, focal=1500.0)
    np.savez(tmp_path / "hmr2.npz", **data)
    init = load_init(tmp_path / "hmr2.npz", image_size=(W, H), focal_length=1500.0)
    assert set(init) == {"global_orient", "body_pose", "betas", "transl"}
    assert all(v.dtype == np.float32 for v in init.values())
    assert init["global_orient"].shape == (6, 3) and init["body_pose"].shape == (6, 69)
    np.testing.assert_allclose(init["transl"], T, rtol=2e-5, atol=2e-5)
    assert_same_rotations(init["global_orient"], go)
    assert_same_rotations(init["body_pose"].reshape(6, 23, 3), bp)
    np.testing.assert_array_equal(init["betas"], data["betas"])


def test_hmr2_default_focal_and_image_size_from_file(tmp_path):
    rng = np.random.default_rng(1)
    data, T, _, _ = hmr2_case(rng)  # projected with HMR 2.0's 5000 / 256 * max(W, H)
    assert hmr2_focal_length((W, H)) == pytest.approx(25000.0)
    data["img_size"] = np.tile(np.array([W, H], np.float32), (6, 1))
    np.savez(tmp_path / "hmr2.npz", **data)
    np.testing.assert_allclose(load_init(tmp_path / "hmr2.npz")["transl"], T, rtol=2e-5)
    # A wrong focal length scales the depth by the same factor.
    half = load_init(tmp_path / "hmr2.npz", focal_length=12500.0)["transl"]
    np.testing.assert_allclose(half[:, 2], T[:, 2] / 2, rtol=2e-5)


def test_hmr2_pickle_with_nested_params(tmp_path):
    rng = np.random.default_rng(2)
    data, T, go, _ = hmr2_case(rng, focal=2000.0)
    nested = {"pred_smpl_params": {k: data[k] for k in ("global_orient", "body_pose", "betas")},
              **{k: data[k] for k in ("pred_cam", "box_center", "box_size")},
              "img_size": np.array([W, H]), "focal_length": np.float32(2000.0)}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"out{protocol}.pkl"
        path.write_bytes(pickle.dumps(nested, protocol=protocol))
        init = load_init(path)
        np.testing.assert_allclose(init["transl"], T, rtol=2e-5)
        assert_same_rotations(init["global_orient"], go)


def test_pred_cam_t_full_is_used_as_is(tmp_path):
    rng = np.random.default_rng(3)
    data, T, _, _ = hmr2_case(rng)
    for k in ("pred_cam", "box_center", "box_size"):
        del data[k]
    data["pred_cam_t_full"] = T
    np.savez(tmp_path / "full.npz", **data)
    np.testing.assert_allclose(load_init(tmp_path / "full.npz")["transl"], T, rtol=1e-6)


def test_cam_crop_to_full_formula():
    # Box centred in the image: tx, ty pass through and tz = 2 f / (b s).
    t = cam_crop_to_full([[0.5, 0.1, -0.2]], [[W / 2, H / 2]], [200.0], (W, H), 1000.0)
    np.testing.assert_allclose(t, [[0.1, -0.2, 2 * 1000 / (200 * 0.5)]])
    t = cam_crop_to_full([[0.5, 0.0, 0.0]], [[W / 2 + 100, H / 2 - 50]], [200.0], (W, H), 1000.0)
    np.testing.assert_allclose(t, [[2 * 100 / 100, 2 * -50 / 100, 20.0]])


def test_init_layout_npz(tmp_path):
    rng = np.random.default_rng(4)
    init = {"global_orient": random_axis_angle(rng, (5,)), "body_pose": rng.normal(0, 0.3, (5, 69)),
            "betas": rng.normal(size=10), "transl": np.c_[np.zeros((5, 2)), np.full(5, 4.0)]}
    np.savez(tmp_path / "init.npz", **init)
    out = load_init(tmp_path / "init.npz")
    assert out["betas"].shape == (10,)
    for k in init:
        assert out[k].dtype == np.float32
        np.testing.assert_allclose(out[k], init[k], rtol=1e-6, atol=1e-6)
    # Rotation-matrix poses in the INIT layout convert too.
    mats = dict(init, global_orient=rotmat(init["global_orient"]),
                body_pose=rotmat(init["body_pose"].reshape(5, 23, 3)))
    np.testing.assert_allclose(validate_init(mats)["body_pose"], out["body_pose"], atol=1e-5)


def test_matrix_to_axis_angle_matches_rotations_module():
    rng = np.random.default_rng(5)
    aa = random_axis_angle(rng, (2000,))
    aa[:3] *= 1e-9                                               # ~identity
    aa[3:6] *= (np.pi - 1e-6) / np.linalg.norm(aa[3:6], axis=-1, keepdims=True)  # ~pi
    aa[6] = [np.pi, 0, 0]                                        # exactly pi about x
    out = matrix_to_axis_angle(rotmat(aa))
    np.testing.assert_allclose(rotmat(out), rotmat(aa), atol=1e-9)
    np.testing.assert_allclose(out[7:], aa[7:], atol=1e-9)       # unique below pi
    assert np.all(np.linalg.norm(out, axis=-1) <= np.pi + 1e-9)


def test_bad_inputs_name_the_field(tmp_path):
    rng = np.random.default_rng(6)
    data, _, _, _ = hmr2_case(rng)

    def fails(match, image_size=(W, H), **changes):
        d = {k: v for k, v in {**data, **changes}.items() if v is not None}
        path = tmp_path / "bad.npz"
        np.savez(path, **d)
        with pytest.raises(InputError, match=match) as exc:
            load_init(path, image_size=image_size)
        assert "\n" not in str(exc.value)

    fails("no field 'betas'", betas=None)
    fails("field 'body_pose' has shape \\(6, 60\\).*expected \\(F, 23, 3, 3\\)", body_pose=np.zeros((6, 60)))
    fails("field 'global_orient' holds matrices that are not rotations", global_orient=np.ones((6, 1, 3, 3)))
    fails("field 'betas' has shape \\(6, 16\\).*betas\\[..., :10\\]", betas=np.zeros((6, 16)))
    fails("field 'box_center' has shape \\(6, 3\\)", box_center=np.zeros((6, 3)))
    fails("field 'box_size'", box_size=np.zeros(6))
    fails("field 'pred_cam' has a non-positive scale", pred_cam=data["pred_cam"] * [-1, 1, 1])
    fails("field 'pred_cam' has NaN/inf", pred_cam=np.full((6, 3), np.nan))
    fails("no 'img_size'.*--image-size", image_size=None)
    fails("field 'body_pose' has 4 frames", body_pose=data["body_pose"][:4])
    fails("neither 'transl'.*nor 'pred_cam'", pred_cam=None)
    fails("field 'transl' puts the body at or behind the camera", pred_cam=None,
          transl=np.c_[np.zeros((6, 2)), -np.ones(6)])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickles_with_code_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"global_orient": _Evil()}))
    with pytest.raises(InputError, match="more than numpy arrays.*numpy.savez"):
        load_init(path)
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(InputError, match="expected a dict of arrays"):
        load_init(path)


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_init(tmp_path / "missing.npz")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="unknown initial-estimate file type '.json'"):
        load_init(tmp_path / "x.json")
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(InputError, match="holds text, not numpy arrays: expected a numpy .npz file"):
        load_init(tmp_path / "x.npz")
