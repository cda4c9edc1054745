"""Prior training options (issue 12): context layouts, any-width checkpoints, loop-range timesteps, the data pack."""
import numpy as np
import pytest
import torch

from backend.models import checkpoints
from backend.models.context import CAMERA_DIM, build_context, context_dim
from backend.models.denoiser import Denoiser
from backend.models.diffusion import sample_timesteps
from backend.models.regressor import KeypointRegressor, normalise_keypoints
from lab.models import train


def _keypoints(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = 300 + 80 * torch.randn(b, 17, 2, generator=g)
    return torch.cat([xy, torch.ones(b, 17, 1)], -1)


def _regressor():
    torch.manual_seed(0)
    return KeypointRegressor(width=32, blocks=1, feature_dim=16).eval()


def test_camera_context_sees_where_the_box_sits_and_features_do_not():
    reg, kp = _regressor(), _keypoints()
    focal, pp = torch.full((4,), 800.0), torch.full((4, 2), 320.0)
    raw_dim = 16 + CAMERA_DIM
    mean, std = torch.zeros(raw_dim), torch.ones(raw_dim)
    shifted = kp.clone()
    shifted[..., 0] += 150.0  # the same person, further right in the frame
    a = build_context(reg, kp, focal, pp, mean, std, "features+camera")
    b = build_context(reg, shifted, focal, pp, mean, std, "features+camera")
    assert a.shape == (4, context_dim(raw_dim, "features+camera"))
    torch.testing.assert_close(a[:, :16], b[:, :16], atol=1e-5, rtol=0)  # box-normalised: blind to the shift
    torch.testing.assert_close(b[:, 16] - a[:, 16], torch.full((4,), 150.0 / 800.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(a[:, 17:19], b[:, 17:19], atol=1e-5, rtol=0)  # same size, same focal
    assert torch.equal(a[:, -2:], torch.ones(4, 2))
    # The features-only layout is the original context: standardised regressor features.
    old = (reg(normalise_keypoints(kp))["features"] - mean[:16]) / std[:16]
    torch.testing.assert_close(build_context(reg, kp, focal, pp, mean[:16], std[:16], "features"), old)
    # Unknown camera: the camera part is zeros and flagged missing, the features are kept.
    c = build_context(reg, kp, None, None, mean, std, "features+camera")
    assert torch.equal(c[:, 16:16 + CAMERA_DIM], torch.zeros(4, CAMERA_DIM))
    assert torch.equal(c[:, -2:], torch.tensor([[1.0, 0.0]]).expand(4, 2))
    torch.testing.assert_close(c[:, :16], a[:, :16])


def test_prior_checkpoint_records_width_and_context_layout(tmp_path):
    from backend.body.body_model import BodyModel
    from backend.engine.api import Engine

    reg = _regressor()
    raw_dim = 16 + CAMERA_DIM
    model = Denoiser(context_dim=context_dim(raw_dim, "features+camera"), hidden=96, parameterisation="v")
    mean, std = torch.randn(raw_dim), torch.rand(raw_dim) + 0.5
    path = tmp_path / "prior.pt"
    train.save_checkpoint(path, model, dict(context_layout="features+camera"), dict(context_mean=mean, context_std=std))
    loaded, m, s, meta = checkpoints.load_prior(path)
    assert loaded.config["hidden"] == 96 and meta["context_layout"] == "features+camera"
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    engine = Engine(BodyModel.load(), reg, loaded, m, s, context_layout=meta["context_layout"])
    kp = _keypoints()
    ctx = engine.context(kp, torch.full((4,), 800.0), torch.full((4, 2), 320.0))
    assert ctx.shape == (4, loaded.config["context_dim"])
    assert loaded(torch.randn(4, 144), torch.tensor(10), ctx).shape == (4, 144)
    # A checkpoint from before layouts existed is read as the features layout.
    old = tmp_path / "old.pt"
    train.save_checkpoint(old, Denoiser(context_dim=16, hidden=64), {},
                          dict(context_mean=mean[:16], context_std=std[:16]))
    assert checkpoints.load_prior(old)[3]["context_layout"] == "features"


def test_timesteps_concentrate_on_the_loop_range():
    g = torch.Generator().manual_seed(0)
    full = sample_timesteps(20000, 1000, g)
    assert full.min() == 0 and full.max() == 999 and (full > 200).float().mean() > 0.75
    low = sample_timesteps(20000, 1000, g, t_max=200)
    assert low.min() == 0 and low.max() == 200
    mixed = sample_timesteps(20000, 1000, g, t_max=200, full_fraction=0.2)
    assert (mixed > 200).float().mean() == pytest.approx(0.2 * 799 / 1000, abs=0.015)


def test_pack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    split = lambda n: dict(global_orient=rng.standard_normal((n, 3)).astype(np.float32),
                           body_pose=rng.standard_normal((n, 69)).astype(np.float32), meta=dict(data_version="v9"))
    tr, val = split(1000), split(600)
    path = tmp_path / "pack.npz"
    train.write_pack(path, tr, val, stride=3, float16=True)
    got, vb = train.load_pack(path)
    assert got["global_orient"].dtype == np.float32 and len(got["global_orient"]) == 334
    np.testing.assert_allclose(got["body_pose"], tr["body_pose"][::3], atol=4e-3)
    assert not np.allclose(got["body_pose"][:333], tr["body_pose"][1::3])  # the stride, not the first third
    expected = train.make_val_batch(val)
    np.testing.assert_array_equal(vb["body_pose"], expected["body_pose"])
    assert got["meta"]["data_version"] == "pack:v9"

