"""The motion prior's window state (encode/decode, heading), its contact labels, packing and training."""
import json
from pathlib import Path
import math

import numpy as np
import pytest
import torch

from backend.models import motion
from backend.rotations import axis_angle_to_matrix


def _random_motion(b=3, w=16, seed=0):
    """Smooth-ish random windows: rotmats (B,W,24,3,3), transl (B,W,3), contacts (B,W,4) (float64)."""
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(b, 1, 24, 3, generator=g, dtype=torch.float64) * 0.6 \
        + torch.cumsum(torch.randn(b, w, 24, 3, generator=g, dtype=torch.float64) * 0.05, 1)
    transl = torch.cumsum(torch.randn(b, w, 3, generator=g, dtype=torch.float64) * 0.03, 1) \
        + torch.tensor([0.5, 0.9, -2.0], dtype=torch.float64)
    contacts = (torch.rand(b, w, 4, generator=g) > 0.5).double()
    return axis_angle_to_matrix(aa), transl, contacts


def test_encode_decode_round_trip():
    R, transl, contacts = _random_motion()
    x, anchor = motion.encode(R, transl, contacts)
    assert x.shape == (3, 16, motion.CHANNELS)
    back = motion.decode(x, anchor)
    assert (back["rotmats"] - R).abs().max() < 1e-5
    assert (back["transl"] - transl).abs().max() < 1e-5
    assert torch.equal(back["contacts"], contacts)
    # and the channels mean what the docstring says: frame 0 faces +z, velocity 0, height = y
    fwd = motion.rot6d_to_matrix(x[:, 0, :6])[..., :, 2]
    assert fwd[:, 0].abs().max() < 1e-9 and (fwd[:, 2] > 0).all()
    assert x[:, 0, motion.VELOCITY].abs().max() == 0
    torch.testing.assert_close(x[..., motion.HEIGHT], transl[..., 1])


def test_state_is_invariant_to_heading_and_ground_position():
    """Turning the whole motion about the vertical and sliding it on the floor changes nothing;
    tilting it (not a heading) does."""
    R, transl, contacts = _random_motion(seed=1)
    x, _ = motion.encode(R, transl, contacts)
    turn = motion.rot_y(torch.tensor(2.1, dtype=torch.float64))
    # SMPL rotates about the pelvis joint: the rotated body's transl keeps the pelvis offset in place
    pelvis = torch.tensor([0.0, 0.2, 0.02], dtype=torch.float64)
    moved = (transl + pelvis) @ turn.T - pelvis + torch.tensor([3.0, 0.0, -1.5], dtype=torch.float64)
    R2 = R.clone()
    R2[:, :, 0] = turn @ R[:, :, 0]
    x2, _ = motion.encode(R2, moved, contacts)
    assert (x2 - x).abs().max() < 1e-9
    tilt = axis_angle_to_matrix(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    R3 = R.clone()
    R3[:, :, 0] = tilt @ R[:, :, 0]
    x3, _ = motion.encode(R3, transl, contacts)
    assert (x3 - x)[..., :6].abs().max() > 0.05


def test_contact_labels_on_a_synthetic_step():
    """A foot resting on the floor, lifted and carried forward, then set down again: contact while it
    rests, none in the swing; the other feet, high up and still, never."""
    fps, f = 24.0, 72
    feet = np.zeros((f, 4, 3))
    offsets = (0.07, 0.07, 0.03, 0.03)
    feet[:, :, 1] = np.asarray(offsets) + 0.005                      # soles 5 mm above the floor
    swing = np.arange(24, 48)
    phase = (swing - 24) / 23.0
    feet[swing, 0, 2] = 0.8 * phase                                  # 0.8 m in one second
    feet[swing, 0, 1] += 0.15 * np.sin(np.pi * phase)                # lifted up to 15 cm
    feet[48:, 0, 2] = 0.8
    feet[:, 1:, 1] += 0.5                                            # the others held up in the air
    c = motion.contact_labels(feet, fps, offsets)
    assert c.shape == (f, 4) and c.dtype == bool
    assert c[:20, 0].all() and c[52:, 0].all()
    assert not c[28:44, 0].any()
    assert not c[:, 1:].any()


def test_denoiser_shapes_and_statistics_round_trip():
    model = motion.MotionDenoiser(frames=8, width=32, layers=1, heads=2)
    model.set_statistics(torch.linspace(-1, 1, motion.CHANNELS), torch.full((motion.CHANNELS,), 1e-6))
    assert model.std[motion.POSE6D].min() == motion.STD_FLOOR_POSE  # a constant 6D entry is not blown up
    x = torch.randn(5, 8, motion.CHANNELS)
    z = model.standardise(x)
    assert z.shape == (5, 8 * motion.CHANNELS)
    torch.testing.assert_close(model.unstandardise(z), x)
    per_sample = model(z, torch.full((5,), 7), torch.zeros(5, 0))
    shared = model(z, torch.tensor(7), torch.zeros(5, 0))
    torch.testing.assert_close(per_sample, shared)
    assert per_sample.shape == z.shape


def _tiny_pack(clips=4, length=50, seed=0):
    """A pack in the layout of pack-motion, from random smooth motion."""
    arrays = {}
    rng = np.random.default_rng(seed)
    for prefix in ("", "val_"):
        n = clips * length
        pose = (np.cumsum(rng.normal(0, 0.03, (n, 72)), 0) * 0.3).astype(np.float16)
        transl = np.cumsum(rng.normal(0, 0.01, (n, 3)), 0).astype(np.float32)
        arrays.update({f"{prefix}pose": pose, f"{prefix}transl": transl,
                       f"{prefix}contacts": (rng.random((n, 4)) > 0.5).astype(np.uint8),
                       f"{prefix}clip_start": np.arange(clips) * length,
                       f"{prefix}clip_length": np.full(clips, length)})
    arrays["meta"] = dict(fps=24.0)
    return arrays


def test_windows_read_at_other_rates():
    """Rate 1 through the interpolating path is the plain window; rate 2 reads every other frame;
    rate 0.5 halves the root velocity (linear motion between frames)."""
    from lab.models.motion_train import MotionWindows

    pack = _tiny_pack()
    windows = MotionWindows(pack, "", 8, "cpu", time_scale=(0.5, 2.0))
    assert windows.span == 15 and windows.starts.max() == 3 * 50 + 50 - 15
    starts = np.array([0, 3, 150 + 35])
    plain = windows.encode(starts)
    torch.testing.assert_close(windows.encode(starts, np.ones(3)), plain, atol=1e-5, rtol=0)
    double = windows.encode(starts, np.full(3, 2.0))
    every_other = MotionWindows(pack, "", 15, "cpu").encode(starts)[:, ::2]
    torch.testing.assert_close(double[..., :motion.VELOCITY.start], every_other[..., :motion.VELOCITY.start],
                               atol=1e-5, rtol=0)
    half = windows.encode(starts, np.full(3, 0.5))
    torch.testing.assert_close(half[:, 1:3, motion.VELOCITY], plain[:, 1:2, motion.VELOCITY].expand(-1, 2, -1) / 2,
                               atol=1e-5, rtol=0)


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    from lab.models.motion_train import train_motion_prior

    pack = _tiny_pack()
    kw = dict(frames=8, batch=16, lr=2e-3, config=dict(width=32, layers=1, heads=2), log_every=1)
    full, log = train_motion_prior(pack, 40, 0, "cpu", **kw)
    assert np.mean([r["loss"] for r in log["curve"][-5:]]) < 0.8 * np.mean([r["loss"] for r in log["curve"][:5]])
    assert math.isfinite(log["val_loss"])
    # interrupted after 15 of the 40 steps (its training state saved), then resumed to the end
    state = tmp_path / "state"
    train_motion_prior(pack, 40, 0, "cpu", checkpoint=state, stop_at=15, **kw)
    resumed, _ = train_motion_prior(pack, 40, 0, "cpu", checkpoint=state, resume=True, **kw)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


@pytest.fixture(scope="module")
def random_prior_path(tmp_path_factory):
    """An untrained 16-frame motion prior checkpoint (the engine path does not depend on training)."""
    from lab.models.train import save_checkpoint

    path = tmp_path_factory.mktemp("motion") / "motion_prior.pt"
    save_checkpoint(path, motion.random_motion_prior(frames=16, width=32, layers=1, heads=2), dict(command="test"))
    return str(path)


def _video(random_prior_path, iterations, frames=40, motion_prior=True):
    from backend.engine.api import Engine, EngineOptions
    from backend.engine.scorehmr import LoopOptions
    from backend.io.shot import load_shot
    from tests.contract.test_bad_inputs import KEYPOINTS

    obs = load_shot(None, KEYPOINTS, (0, frames)).obs
    # The paper's variant: the loops alone (the default adds the final smoothing fit after either).
    options = EngineOptions(loop=LoopOptions(iterations=iterations), variant="paper",
                            motion_prior=random_prior_path if motion_prior else None)
    return Engine.load(device="cpu").run(obs, None, "video", options)


def test_video_with_a_motion_prior_starts_from_the_start(random_prior_path):
    """No iterations: the windows' states decode back to the starting estimate (world frame, heading
    and standardisation undone), through the overlapping windows' blend, and a short clip (12 < 16
    frames) is padded and cut back: the same body as the per-frame path's start (one shape per clip)."""
    for frames in (40, 12):
        out = _video(random_prior_path, 0, frames)
        start = _video(random_prior_path, 0, frames, motion_prior=False)
        assert out["joints"].shape == (frames, 24, 3)
        assert np.abs(out["joints"] - start["joints"]).max() < 1e-4


def test_video_with_a_motion_prior_runs_and_differs(random_prior_path):
    from tests.contract.test_bad_inputs import needs_weights  # noqa: F401 -- a fixture: the per-frame weights make the start

    with_prior = _video(random_prior_path, 2)
    without = _video(random_prior_path, 2, motion_prior=False)
    info = json.loads(str(with_prior["info"]))
    assert info["motion_prior"]["frames"] == 16 and info["options"]["motion_prior"] == random_prior_path
    weights = info["options"]["weights"]
    assert weights["temporal"] > 0 and "foot_skating" not in weights   # contacts are the prior's channel
    assert np.abs(with_prior["joints"] - with_prior["init_joints"]).max() > 0.01   # it moved the body
    assert np.linalg.norm(with_prior["joints"] - without["joints"], axis=-1).mean() > 0.005
    assert np.isfinite(with_prior["joints"]).all()
    if "foot_contacts" in with_prior:                           # the prior's contact channel, (F,4) bool
        assert with_prior["foot_contacts"].shape == (40, 4) and with_prior["foot_contacts"].dtype == bool


# -- the trained prior (backend/assets/motion_prior.pt, docs/motion_prior.md) -------------------------
needs_trained = pytest.mark.skipif(not motion.MOTION_PRIOR_PATH.is_file(),
                                   reason=f"{motion.MOTION_PRIOR_PATH} not found (docs/motion_prior.md)")
SHOT = Path(__file__).resolve().parents[2] / "examples" / "shot"


def _true_window(prior) -> torch.Tensor:
    """The example shot's true world motion (held-out subject 115, not in the prior's training data),
    its first window as the prior's standardised state (1, W*152); feet marked not in contact (the
    clip is a crouch that the labels mark 4% in contact)."""
    from backend.body.body_model import pose_to_rotmats

    z = np.load(SHOT / "ground_truth.npz")
    w = prior.frames
    R = pose_to_rotmats(torch.as_tensor(z["world_global_orient"]), torch.as_tensor(z["body_pose"]))[None, :w]
    x, _ = motion.encode(R, torch.as_tensor(z["world_transl"])[None, :w], torch.zeros(1, w, 4))
    return prior.standardise(x)


@needs_trained
def test_trained_prior_denoises_a_held_out_window():
    """From the true window noised to t = 100 the trained prior's x0 is much closer to the truth than
    the noised input (measured 0.41 of its distance); an untrained one is further (1.12)."""
    from backend.models.diffusion import cosine_alphas_cumprod, predict_x0, q_sample

    prior, _ = motion.load_motion_prior(motion.MOTION_PRIOR_PATH)
    x = _true_window(prior)
    a, t = cosine_alphas_cumprod(), torch.tensor([100])
    noisy = q_sample(x, t, torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), a)
    with torch.no_grad():
        x0 = predict_x0(noisy, prior(noisy, t, x.new_zeros(1, 0)), a[100])
    assert (x0 - x).norm() < 0.6 * (noisy - x).norm()
